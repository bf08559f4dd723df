"""Quorum queues (x-queue-type=quorum) over AMQP 0-9-1: declaration, acks,
delivery limit, dead-lettering, length limits, management fields.

  python quorum.py --port 5672 [--host 127.0.0.1] [--user guest --password guest]
                   [--mgmt-url http://127.0.0.1:15672 --mgmt-out quorum-queue.json]
                   [--prom-url http://127.0.0.1:15692] [--queues-cli rabbitmq-queues]
                   [--ctl rabbitmqctl]

Every case opens a fresh connection (and channel), uses unique queue names
(qq-<pid>-<n>-<tag>) and prints exactly one line:

  <case>: ok [details]
  <case>: <reply code> <reply text> (channel closed | connection closed)

Each case is bounded by an alarm (--case-timeout) so nothing hangs.
Every queue and exchange the script creates is deleted at the end.
The CLI cases (--queues-cli / --ctl) only read state, except add_member /
delete_member on the script's own queue (they fail on a single node).
"""
import argparse
import base64
import json
import os
import shlex
import signal
import struct
import subprocess
import time
import urllib.parse
import urllib.request

import pika
import pika.data
import pika.exceptions as pe

# ---------------------------------------------------------------------------
# record the AMQP field-table type byte of every decoded header (x-delivery-count)
HEADER_TYPES = {}
_orig_decode_value = pika.data.decode_value


def _decode_table(encoded, offset):
    result = {}
    tablesize = struct.unpack_from(">I", encoded, offset)[0]
    offset += 4
    limit = offset + tablesize
    while offset < limit:
        key, offset = pika.data.decode_short_string(encoded, offset)
        kind = encoded[offset:offset + 1].decode("latin-1")
        value, offset = _orig_decode_value(encoded, offset)
        result[key] = value
        HEADER_TYPES[key] = kind
    return result, offset


pika.data.decode_table = _decode_table


class CaseTimeout(Exception):
    pass


def _alarm(_sig, _frm):
    raise CaseTimeout()


signal.signal(signal.SIGALRM, _alarm)

ARGS = None
SEQ = [0]
CREATED_Q = set()
CREATED_X = set()


def qname(tag):
    SEQ[0] += 1
    n = f"qq-{os.getpid()}-{SEQ[0]}-{tag}"
    CREATED_Q.add(n)
    return n


def xname(tag):
    n = f"qqx-{os.getpid()}-{tag}"
    CREATED_X.add(n)
    return n


def params():
    return pika.ConnectionParameters(
        host=ARGS.host, port=ARGS.port, virtual_host=ARGS.vhost,
        credentials=pika.PlainCredentials(ARGS.user, ARGS.password),
        connection_attempts=1, retry_delay=0, socket_timeout=5,
        stack_timeout=10, blocked_connection_timeout=10, heartbeat=30)


def connect():
    return pika.BlockingConnection(params())


def describe(e):
    if isinstance(e, pe.ChannelClosedByBroker):
        return f"{e.reply_code} {e.reply_text} (channel closed)"
    if isinstance(e, pe.ConnectionClosedByBroker):
        return f"{e.reply_code} {e.reply_text} (connection closed)"
    if isinstance(e, CaseTimeout):
        return "TIMEOUT (no reply within the case timeout)"
    return f"{type(e).__name__}: {e!r}"


def closing_state(conn, ch):
    try:
        if conn.is_open:
            conn.process_data_events(time_limit=0.3)
    except Exception as e:  # noqa
        return describe(e)
    if not conn.is_open:
        r = getattr(conn._impl, "_error", None)
        if isinstance(r, pe.ConnectionClosedByBroker):
            return describe(r)
        return f"connection closed ({r!r})"
    if ch is not None and ch.is_closed:
        r = ch._closing_reason
        if isinstance(r, (pe.ChannelClosedByBroker, pe.ConnectionClosedByBroker)):
            return describe(r)
        return f"channel closed ({r!r})"
    return None


def case(label, fn, timeout=None):
    timeout = timeout or ARGS.case_timeout
    conn = ch = None
    signal.alarm(int(timeout))
    try:
        conn = connect()
        ch = conn.channel()
        res = fn(conn, ch)
        closed = closing_state(conn, ch)
        if closed:
            out = closed if res is None else f"{closed} [after: {res}]"
        else:
            out = "ok" if res is None else f"ok {res}"
    except Exception as e:  # noqa
        out = describe(e)
    finally:
        signal.alarm(0)
    try:
        if conn is not None and conn.is_open:
            signal.alarm(5)
            conn.close()
    except Exception:  # noqa
        pass
    finally:
        signal.alarm(0)
    print(f"{label}: {out}", flush=True)


def qdecl(ch, q, durable=True, exclusive=False, auto_delete=False, extra=None,
          passive=False):
    a = {"x-queue-type": "quorum"}
    if extra:
        a.update(extra)
    return ch.queue_declare(q, durable=durable, exclusive=exclusive,
                            auto_delete=auto_delete, arguments=a, passive=passive)


def declare_case(label, extra=None, durable=True, exclusive=False,
                 auto_delete=False, name=None, args_only=None):
    def fn(conn, ch):
        q = qname("d") if name is None else name
        if args_only is not None:
            r = ch.queue_declare(q, durable=durable, exclusive=exclusive,
                                 auto_delete=auto_delete, arguments=args_only)
        else:
            r = qdecl(ch, q, durable, exclusive, auto_delete, extra)
        m = r.method
        return (f"declare-ok queue={'<server-named>' if name == '' else m.queue == q} "
                f"messages={m.message_count} consumers={m.consumer_count}")
    case(label, fn)


def publish(conn, q, n, start=0, props=None, exchange=""):
    """Publish n messages m<start>.. with confirms; return the confirm results."""
    ch = conn.channel()
    ch.confirm_delivery()
    res = []
    for i in range(start, start + n):
        try:
            ch.basic_publish(exchange, q, f"m{i}".encode(),
                             props or pika.BasicProperties(delivery_mode=2))
            res.append("ack")
        except pe.NackError:
            res.append("nack")
        except pe.UnroutableError:
            res.append("returned")
    ch.close()
    return res


class Collector:
    def __init__(self):
        self.msgs = []

    def __call__(self, ch, method, props, body):
        self.msgs.append((method, props, body, dict(HEADER_TYPES)))

    def bodies(self):
        return [b.decode() for (_m, _p, b, _t) in self.msgs]


def pump(conn, col, want=None, secs=1.5):
    t0 = time.time()
    while time.time() - t0 < secs:
        conn.process_data_events(time_limit=0.1)
        if want is not None and len(col.msgs) >= want:
            break


def dc(props):
    h = props.headers or {}
    v = h.get("x-delivery-count")
    return "-" if v is None else f"{v}:{HEADER_TYPES.get('x-delivery-count', '?')}"


def fmt_delivery(m, p, b):
    return f"{b.decode()}(redel={int(m.redelivered)},dc={dc(p)})"


def get_all(ch, q, limit=50):
    """basic.get (auto-ack) until empty; return bodies."""
    out = []
    for _ in range(limit):
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        out.append(b.decode())
    return out


def death_summary(props):
    h = props.headers or {}
    xd = h.get("x-death")
    if not xd:
        return "no x-death"
    d = xd[0]
    keys = sorted(h.keys())
    return (f"headers={keys} x-death[0]={{reason:{d.get('reason')}, count:{d.get('count')}, "
            f"queue:{'<src>' if str(d.get('queue','')).startswith('qq-') else d.get('queue')}, "
            f"exchange:{d.get('exchange')!r}, routing-keys:{d.get('routing-keys')}}} "
            f"x-first-death-reason={h.get('x-first-death-reason')}")


def http_get(path, base=None):
    base = (base or ARGS.mgmt_url or f"http://{ARGS.host}:15672").rstrip("/")
    req = urllib.request.Request(base + path)
    tok = base64.b64encode(f"{ARGS.user}:{ARGS.password}".encode()).decode()
    req.add_header("Authorization", f"Basic {tok}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def run_cli(label, cmd):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip().replace("\n", " \\n ")
        print(f"{label}: rc={r.returncode} {out}", flush=True)
    except Exception as e:  # noqa
        print(f"{label}: {describe(e)}", flush=True)


# ---------------------------------------------------------------------------
def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672)
    p.add_argument("--vhost", default="/")
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--case-timeout", type=float, default=20)
    p.add_argument("--mgmt-url", default=None)
    p.add_argument("--mgmt-out", default=None, help="file for GET /api/queues/<vh>/<q>")
    p.add_argument("--prom-url", default=None, help="e.g. http://127.0.0.1:15692")
    p.add_argument("--queues-cli", default=None, help="e.g. rabbitmq-queues")
    p.add_argument("--ctl", default=None, help="e.g. rabbitmqctl")
    ARGS = p.parse_args()
    try:
        run_cases()
    finally:
        cleanup()


def run_cases():
    # ------------------------------------------------------------------ declare
    declare_case("declare quorum (durable)")
    declare_case("declare quorum exclusive", exclusive=True)
    declare_case("declare quorum auto-delete", auto_delete=True)
    declare_case("declare quorum non-durable", durable=False)
    declare_case("declare quorum exclusive+auto-delete+non-durable",
                 durable=False, exclusive=True, auto_delete=True)
    declare_case("declare quorum exclusive+non-durable", durable=False, exclusive=True)
    declare_case("declare quorum server-named", name="")
    declare_case("declare quorum server-named exclusive", name="", exclusive=True)
    declare_case("declare x-queue-type=QUORUM (case)", args_only={"x-queue-type": "QUORUM"})
    declare_case("declare x-queue-type=quorum as long (type)", args_only={"x-queue-type": 1})
    # accepted arguments and their validators
    for k, v in [("x-quorum-initial-group-size", 1),
                 ("x-quorum-initial-group-size", 5),
                 ("x-quorum-initial-group-size", 0),
                 ("x-quorum-initial-group-size", -1),
                 ("x-quorum-initial-group-size", "3"),
                 ("x-delivery-limit", 3),
                 ("x-delivery-limit", 0),
                 ("x-delivery-limit", -1),
                 ("x-delivery-limit", "5"),
                 ("x-dead-letter-exchange", "some-dlx"),
                 ("x-dead-letter-exchange", 5),
                 ("x-dead-letter-routing-key", "rk"),
                 ("x-dead-letter-strategy", "at-least-once"),
                 ("x-dead-letter-strategy", "at-most-once"),
                 ("x-dead-letter-strategy", "bogus"),
                 ("x-max-length", 10),
                 ("x-max-length", -1),
                 ("x-max-length", "10"),
                 ("x-max-length-bytes", 1000),
                 ("x-overflow", "drop-head"),
                 ("x-overflow", "reject-publish"),
                 ("x-overflow", "reject-publish-dlx"),
                 ("x-overflow", "bogus"),
                 ("x-expires", 10000),
                 ("x-expires", 0),
                 ("x-expires", -5),
                 ("x-message-ttl", 1000),
                 ("x-message-ttl", 0),
                 ("x-message-ttl", -1),
                 ("x-message-ttl", "abc"),
                 ("x-single-active-consumer", True),
                 ("x-single-active-consumer", "yes"),
                 ("x-queue-leader-locator", "client-local"),
                 ("x-queue-leader-locator", "balanced"),
                 ("x-queue-leader-locator", "random"),
                 ("x-queue-leader-locator", "bogus"),
                 ("x-max-in-memory-length", 5),
                 ("x-max-in-memory-bytes", 1000),
                 ("x-max-in-memory-length", -1),
                 # refused (other queue types)
                 ("x-max-priority", 5),
                 ("x-max-priority", 500),
                 ("x-queue-mode", "lazy"),
                 ("x-queue-master-locator", "min-masters"),
                 ("x-queue-version", 2),
                 ("x-max-age", "1D"),
                 ("x-stream-max-segment-size-bytes", 1000),
                 ("x-initial-cluster-size", 3),
                 ("x-unknown-arg", "x")]:
        declare_case(f"declare quorum {k}={v!r}", extra={k: v})
    declare_case("declare x-dead-letter-routing-key without dlx + exclusive",
                 extra={"x-dead-letter-routing-key": "rk"}, exclusive=True)
    # ordering
    a = {"x-queue-type": "quorum"}
    declare_case("declare [x-max-priority, x-queue-mode] (table order)",
                 args_only=dict(a, **{"x-max-priority": 1, "x-queue-mode": "lazy"}))
    declare_case("declare [x-queue-mode, x-max-priority] (table order)",
                 args_only=dict(a, **{"x-queue-mode": "lazy", "x-max-priority": 1}))
    declare_case("declare [x-max-length=-1, x-expires=0] (validator order)",
                 args_only=dict(a, **{"x-max-length": -1, "x-expires": 0}))
    declare_case("declare [x-max-priority=1, x-max-length=-1] (refused vs bad value)",
                 args_only=dict(a, **{"x-max-priority": 1, "x-max-length": -1}))
    declare_case("declare x-max-priority + exclusive", extra={"x-max-priority": 1},
                 exclusive=True)
    declare_case("declare x-max-length=-1 + exclusive", extra={"x-max-length": -1},
                 exclusive=True)
    declare_case("declare x-max-priority before x-queue-type",
                 args_only={"x-max-priority": 1, "x-queue-type": "quorum"})

    # ------------------------------------------------------------- redeclare
    def redecl(first, second, durable=True, exclusive=False, auto_delete=False,
               passive=False):
        def fn(conn, ch):
            q = qname("r")
            qdecl(ch, q, extra=first)
            if passive:
                r = ch.queue_declare(q, passive=True)
            else:
                r = ch.queue_declare(q, durable=durable, exclusive=exclusive,
                                     auto_delete=auto_delete, arguments=second)
            return f"declare-ok messages={r.method.message_count}"
        return fn
    qt = {"x-queue-type": "quorum"}
    case("redeclare same args", redecl({"x-max-length": 5}, dict(qt, **{"x-max-length": 5})))
    case("redeclare x-max-length 5 -> 6", redecl({"x-max-length": 5}, dict(qt, **{"x-max-length": 6})))
    case("redeclare without x-max-length", redecl({"x-max-length": 5}, qt))
    case("redeclare adding x-max-length", redecl({}, dict(qt, **{"x-max-length": 5})))
    case("redeclare without x-queue-type", redecl({}, {}))
    case("redeclare x-queue-type=classic", redecl({}, {"x-queue-type": "classic"}))
    case("redeclare x-queue-type=stream", redecl({}, {"x-queue-type": "stream"}))
    case("redeclare durable=false", redecl({}, qt, durable=False))
    case("redeclare exclusive", redecl({}, qt, exclusive=True))
    case("redeclare auto-delete", redecl({}, qt, auto_delete=True))
    case("redeclare adding refused x-max-priority", redecl({}, dict(qt, **{"x-max-priority": 5})))
    case("redeclare adding unknown x-foo", redecl({}, dict(qt, **{"x-foo": 1})))
    case("redeclare x-delivery-limit 3 -> 4",
         redecl({"x-delivery-limit": 3}, dict(qt, **{"x-delivery-limit": 4})))
    case("redeclare x-quorum-initial-group-size 1 -> 3",
         redecl({"x-quorum-initial-group-size": 1}, dict(qt, **{"x-quorum-initial-group-size": 3})))
    case("redeclare x-max-length=-1 (bad value) on existing",
         redecl({}, dict(qt, **{"x-max-length": -1})))
    case("redeclare passive", redecl({}, None, passive=True))

    # declare-ok message_count is live (not a lagging metric)
    def count_fn(conn, ch):
        q = qname("cnt")
        qdecl(ch, q)
        publish(conn, q, 7)
        r = ch.queue_declare(q, passive=True)
        return f"declare-ok after 7 confirmed publishes: messages={r.method.message_count}"
    case("declare-ok message_count", count_fn)

    # ------------------------------------------------------------- consuming
    def consume_fn(prefetch=None, global_qos=None, no_ack=False, cargs=None,
                   n=5, exclusive=False, global_after=False):
        def fn(conn, ch):
            q = qname("c")
            qdecl(ch, q)
            publish(conn, q, n)
            if global_qos is not None and not global_after:
                ch.basic_qos(prefetch_count=global_qos, global_qos=True)
            if prefetch is not None:
                ch.basic_qos(prefetch_count=prefetch)
            if global_qos is not None and global_after:
                ch.basic_qos(prefetch_count=global_qos, global_qos=True)
            col = Collector()
            ch.basic_consume(q, col, auto_ack=no_ack, exclusive=exclusive,
                             arguments=cargs or {})
            pump(conn, col, n, 1.5)
            return f"consume-ok delivered={col.bodies()}"
        return fn
    case("consume prefetch=2 (5 ready)", consume_fn(prefetch=2))
    case("consume no basic.qos (5 ready)", consume_fn())
    case("consume no_ack", consume_fn(no_ack=True))
    case("consume after basic.qos global=true 10", consume_fn(global_qos=10))
    case("consume after basic.qos global=true 0", consume_fn(global_qos=0))
    case("consume global=true 10 then per-consumer 2", consume_fn(global_qos=10, prefetch=2))
    case("consume per-consumer 2 then global=true 10",
         consume_fn(global_qos=10, prefetch=2, global_after=True))
    case("consume x-priority=5", consume_fn(cargs={"x-priority": 5}))
    case("consume x-priority='high'", consume_fn(cargs={"x-priority": "high"}))
    case("consume x-cancel-on-ha-failover=true", consume_fn(cargs={"x-cancel-on-ha-failover": True}))
    case("consume x-stream-offset=first", consume_fn(cargs={"x-stream-offset": "first"}))
    case("consume x-foo=1 (unknown)", consume_fn(cargs={"x-foo": 1}))
    case("consume exclusive=true", consume_fn(exclusive=True))

    def prefetch0_fn(conn, ch):
        q = qname("p0")
        qdecl(ch, q)
        pch = conn.channel()
        for i in range(2100):
            pch.basic_publish("", q, b"x")
        pch.close()
        publish(conn, q, 1)
        col = Collector()
        ch.basic_consume(q, col)
        pump(conn, col, 2101, 4)
        return f"prefetch 0, 2101 ready, no acks: delivered {len(col.msgs)}"
    case("consume prefetch=0 (unlimited?)", prefetch0_fn, timeout=40)

    def excl2_fn(conn, ch):
        q = qname("ex")
        qdecl(ch, q)
        ch.basic_consume(q, lambda *a: None, exclusive=True)
        ch2 = conn.channel()
        ch2.basic_consume(q, lambda *a: None)
        return "second (non-exclusive) consumer accepted"
    case("exclusive consumer, then another consumer", excl2_fn)

    def excl3_fn(conn, ch):
        q = qname("ex")
        qdecl(ch, q)
        ch.basic_consume(q, lambda *a: None)
        ch2 = conn.channel()
        ch2.basic_consume(q, lambda *a: None, exclusive=True)
        return "exclusive consumer accepted while another exists"
    case("consumer, then an exclusive consumer", excl3_fn)

    # ------------------------------------------------- nack / reject / requeue
    def requeue_fn(extra=None, op="nack", rounds=1):
        """m0..m2 in the queue; prefetch 1; settle the first delivery with
        requeue `rounds` times, then ack everything; report the delivery order."""
        def fn(conn, ch):
            q = qname("rq")
            qdecl(ch, q, extra=extra)
            publish(conn, q, 3)
            ch.basic_qos(prefetch_count=1)
            seen = []
            done = [0]

            def on(chn, m, p, b):
                seen.append(fmt_delivery(m, p, b))
                if done[0] < rounds:
                    done[0] += 1
                    if op == "nack":
                        chn.basic_nack(m.delivery_tag, requeue=True)
                    elif op == "reject":
                        chn.basic_reject(m.delivery_tag, requeue=True)
                else:
                    chn.basic_ack(m.delivery_tag)
            ch.basic_consume(q, on)
            t0 = time.time()
            while time.time() - t0 < 2.5 and len(seen) < 3 + rounds:
                conn.process_data_events(time_limit=0.1)
            return f"delivery order: {seen}"
        return fn
    case("nack requeue first delivery (no delivery-limit)", requeue_fn())
    case("reject requeue first delivery (no delivery-limit)", requeue_fn(op="reject"))
    case("nack requeue 3 times (no delivery-limit)", requeue_fn(rounds=3))
    case("nack requeue first delivery (x-delivery-limit=10)",
         requeue_fn(extra={"x-delivery-limit": 10}))
    case("nack requeue 3 times (x-delivery-limit=10)",
         requeue_fn(extra={"x-delivery-limit": 10}, rounds=3))

    def recover_fn(conn, ch):
        q = qname("rc")
        qdecl(ch, q)
        publish(conn, q, 2)
        ch.basic_qos(prefetch_count=10)
        col = Collector()
        ch.basic_consume(q, col)
        pump(conn, col, 2, 1)
        ch.basic_recover(requeue=True)
        pump(conn, col, 4, 1.5)
        return f"deliveries: {[fmt_delivery(m, p, b) for (m, p, b, _t) in col.msgs]}"
    case("basic.recover requeue=true", recover_fn)

    def close_requeue_fn(conn, ch):
        q = qname("cl")
        qdecl(ch, q)
        publish(conn, q, 2)
        c2 = connect()
        ch2 = c2.channel()
        ch2.basic_qos(prefetch_count=10)
        col = Collector()
        ch2.basic_consume(q, col)
        pump(c2, col, 2, 1)
        c2.close()
        time.sleep(0.3)
        out = []
        for _ in range(3):
            m, p, b = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            out.append(fmt_delivery(m, p, b))
        return f"after consumer connection closed with 2 unacked: basic.get -> {out}"
    case("unacked returned on connection close", close_requeue_fn)

    # --------------------------------------------------------------- basic.get
    def get_fn(conn, ch):
        q = qname("g")
        qdecl(ch, q)
        r0 = ch.basic_get(q)
        publish(conn, q, 3)
        m, p, b = ch.basic_get(q)
        first = f"{fmt_delivery(m, p, b)} message_count={m.message_count}"
        ch.basic_nack(m.delivery_tag, requeue=True)
        m2, p2, b2 = ch.basic_get(q)
        second = f"{fmt_delivery(m2, p2, b2)} message_count={m2.message_count}"
        ch.basic_reject(m2.delivery_tag, requeue=True)
        m3, p3, b3 = ch.basic_get(q, auto_ack=True)
        third = f"{fmt_delivery(m3, p3, b3)}"
        return (f"empty get -> {'get-empty' if r0[0] is None else r0}; get -> {first}; "
                f"nack requeue, get -> {second}; reject requeue, get(no_ack) -> {third}")
    case("basic.get", get_fn)

    # ------------------------------------------------------- delivery limit
    def dl_fn(limit, with_dlx, op="nack"):
        def fn(conn, ch):
            q = qname("dl")
            extra = {"x-delivery-limit": limit}
            dq = None
            if with_dlx:
                x = xname(f"dlx{limit}{op}")
                ch.exchange_declare(x, "fanout", durable=False, auto_delete=False)
                dq = qname("dlq")
                ch.queue_declare(dq, durable=True)
                ch.queue_bind(dq, x)
                extra["x-dead-letter-exchange"] = x
            qdecl(ch, q, extra=extra)
            publish(conn, q, 1)
            seen = []
            for _ in range(limit + 3):
                m, p, b = ch.basic_get(q)
                if m is None:
                    break
                seen.append(fmt_delivery(m, p, b))
                if op == "nack":
                    ch.basic_nack(m.delivery_tag, requeue=True)
                else:
                    ch.basic_reject(m.delivery_tag, requeue=True)
            time.sleep(0.3)
            left = ch.queue_declare(q, passive=True).method.message_count
            res = f"gets: {seen}; then queue has {left}"
            if dq:
                time.sleep(0.3)
                m, p, b = ch.basic_get(dq, auto_ack=True)
                res += (f"; DLQ got {b.decode() if b else None} "
                        f"{death_summary(p) if p else ''} dc={dc(p) if p else '-'}")
            return res
        return fn
    case("x-delivery-limit=2, nack requeue repeatedly, no DLX", dl_fn(2, False))
    case("x-delivery-limit=2, reject requeue repeatedly, DLX", dl_fn(2, True, op="reject"))
    case("x-delivery-limit=0, nack requeue once, DLX", dl_fn(0, True))

    # ----------------------------------------------------------- dead letter
    def dlx_fn(reason, strategy=None):
        def fn(conn, ch):
            x = xname(f"dlx-{reason}-{strategy}")
            ch.exchange_declare(x, "fanout", durable=False)
            dq = qname("dlq")
            ch.queue_declare(dq, durable=True)
            ch.queue_bind(dq, x)
            extra = {"x-dead-letter-exchange": x, "x-dead-letter-routing-key": "dlrk"}
            if strategy:
                extra["x-dead-letter-strategy"] = strategy
                extra["x-overflow"] = "reject-publish"
            if reason == "expired":
                extra["x-message-ttl"] = 100
            if reason == "maxlen":
                extra["x-max-length"] = 1
                extra.pop("x-overflow", None)
            q = qname("src")
            qdecl(ch, q, extra=extra)
            publish(conn, q, 2)
            if reason == "rejected":
                m, p, b = ch.basic_get(q)
                ch.basic_reject(m.delivery_tag, requeue=False)
                m, p, b = ch.basic_get(q)
                ch.basic_nack(m.delivery_tag, requeue=False)
            time.sleep(0.6)
            if reason == "expired":
                # expiry happens on the queue's timer or on the next read
                ch.basic_get(q, auto_ack=True)
                time.sleep(0.5)
            out = []
            for _ in range(3):
                m, p, b = ch.basic_get(dq, auto_ack=True)
                if m is None:
                    break
                out.append(f"{b.decode()} rk={m.routing_key} {death_summary(p)}")
            left = ch.queue_declare(q, passive=True).method.message_count
            return f"src left={left}; DLQ: {out}"
        return fn
    case("dead-letter reject/nack requeue=false (at-most-once)", dlx_fn("rejected"))
    case("dead-letter reject/nack requeue=false (at-least-once)",
         dlx_fn("rejected", "at-least-once"))
    case("dead-letter x-message-ttl=100", dlx_fn("expired"))
    case("dead-letter x-max-length=1 drop-head", dlx_fn("maxlen"))

    def reject_nodlx_fn(conn, ch):
        q = qname("rj")
        qdecl(ch, q)
        publish(conn, q, 1)
        m, p, b = ch.basic_get(q)
        ch.basic_reject(m.delivery_tag, requeue=False)
        time.sleep(0.2)
        return f"queue has {ch.queue_declare(q, passive=True).method.message_count}"
    case("reject requeue=false without DLX", reject_nodlx_fn)

    # --------------------------------------------------------- length limits
    def maxlen_fn(extra, n=5, body_bytes=None):
        def fn(conn, ch):
            q = qname("ml")
            qdecl(ch, q, extra=extra)
            res = publish(conn, q, n)
            time.sleep(0.3)
            return f"confirms={res}; queue now {get_all(ch, q)}"
        return fn
    case("x-max-length=2 (default overflow) publish 5", maxlen_fn({"x-max-length": 2}))
    case("x-max-length=2 drop-head publish 5",
         maxlen_fn({"x-max-length": 2, "x-overflow": "drop-head"}))
    case("x-max-length=2 reject-publish publish 5",
         maxlen_fn({"x-max-length": 2, "x-overflow": "reject-publish"}))
    case("x-max-length=2 reject-publish-dlx publish 5",
         maxlen_fn({"x-max-length": 2, "x-overflow": "reject-publish-dlx"}))
    case("x-max-length=0 reject-publish publish 3",
         maxlen_fn({"x-max-length": 0, "x-overflow": "reject-publish"}, n=3))
    case("x-max-length-bytes=4 (2-byte bodies) drop-head publish 5",
         maxlen_fn({"x-max-length-bytes": 4}))
    case("x-max-length-bytes=4 reject-publish publish 5",
         maxlen_fn({"x-max-length-bytes": 4, "x-overflow": "reject-publish"}))

    def reject_publish_recover_fn(conn, ch):
        q = qname("rp")
        qdecl(ch, q, extra={"x-max-length": 5, "x-overflow": "reject-publish"})
        r1 = publish(conn, q, 8)
        got = []
        for _ in range(3):
            m, p, b = ch.basic_get(q, auto_ack=True)
            got.append(b.decode())
        r2 = publish(conn, q, 2, start=8)
        for _ in range(2):
            m, p, b = ch.basic_get(q, auto_ack=True)
            got.append(b.decode())
        r3 = publish(conn, q, 2, start=10)
        return (f"publish 8 -> {r1}; get 3 {got[:3]}; publish 2 -> {r2}; get 2 {got[3:]}; "
                f"publish 2 -> {r3}; queue now {get_all(ch, q)}")
    case("x-max-length=5 reject-publish: 80% low watermark", reject_publish_recover_fn)

    def no_confirm_reject_fn(conn, ch):
        q = qname("rp")
        qdecl(ch, q, extra={"x-max-length": 1, "x-overflow": "reject-publish"})
        for i in range(4):
            ch.basic_publish("", q, f"m{i}".encode())
        time.sleep(0.5)
        return f"no confirms, published 4; queue now {get_all(ch, q)}"
    case("x-max-length=1 reject-publish without confirms", no_confirm_reject_fn)

    # ---------------------------------------------------------------- TTL
    def ttl_fn(conn, ch):
        q = qname("ttl")
        qdecl(ch, q)
        publish(conn, q, 1, props=pika.BasicProperties(expiration="100"))
        publish(conn, q, 1, start=1)
        time.sleep(0.4)
        return f"per-message expiration=100 then a plain message, 0.4 s later: {get_all(ch, q)}"
    case("per-message TTL (expiration)", ttl_fn)

    def qttl_fn(conn, ch):
        q = qname("qttl")
        qdecl(ch, q, extra={"x-message-ttl": 200})
        publish(conn, q, 2)
        a = ch.queue_declare(q, passive=True).method.message_count
        time.sleep(0.6)
        b = ch.queue_declare(q, passive=True).method.message_count
        c = get_all(ch, q)
        return f"x-message-ttl=200: count now {a}, after 0.6 s {b}, get -> {c}"
    case("x-message-ttl=200", qttl_fn)

    def expires_fn(redeclare):
        def fn(conn, ch):
            q = qname("exp")
            qdecl(ch, q, extra={"x-expires": 1000})
            t0 = time.time()
            if redeclare:
                time.sleep(0.5)
                qdecl(ch, q, extra={"x-expires": 1000})
            while time.time() - t0 < 15:
                time.sleep(0.5)
                pc = conn.channel()
                try:
                    pc.queue_declare(q, passive=True)
                    pc.close()
                except pe.ChannelClosedByBroker as e:
                    return (f"gone after {time.time() - t0:.1f} s "
                            f"(passive declare: {e.reply_code} {e.reply_text})")
            return "still there after 15 s"
        return fn
    case("x-expires=1000, polled with passive declare", expires_fn(False), timeout=30)
    case("x-expires=1000, redeclared at 0.5 s, polled", expires_fn(True), timeout=30)

    # ------------------------------------------------------- priorities / SAC
    def msg_priority_fn(conn, ch):
        q = qname("pri")
        qdecl(ch, q)
        for i, pr in enumerate([1, 9, 5, 0]):
            publish(conn, q, 1, start=i, props=pika.BasicProperties(priority=pr))
        return f"published m0(p1) m1(p9) m2(p5) m3(p0): get order {get_all(ch, q)}"
    case("message priority (no x-max-priority)", msg_priority_fn)

    def consumer_priority_fn(conn, ch):
        q = qname("cp")
        qdecl(ch, q)
        ch.basic_qos(prefetch_count=100)
        lo, hi = Collector(), Collector()
        ch.basic_consume(q, lo, arguments={"x-priority": 0})
        ch2 = conn.channel()
        ch2.basic_qos(prefetch_count=100)
        ch2.basic_consume(q, hi, arguments={"x-priority": 10})
        publish(conn, q, 6)
        pump(conn, lo, None, 1.0)
        return f"x-priority 10 got {len(hi.msgs)}, x-priority 0 got {len(lo.msgs)}"
    case("consumer priorities", consumer_priority_fn)

    def consumer_priority_full_fn(conn, ch):
        q = qname("cp")
        qdecl(ch, q)
        ch.basic_qos(prefetch_count=100)
        lo, hi = Collector(), Collector()
        ch.basic_consume(q, lo, arguments={"x-priority": 0})
        ch2 = conn.channel()
        ch2.basic_qos(prefetch_count=2)
        ch2.basic_consume(q, hi, arguments={"x-priority": 10})
        publish(conn, q, 6)
        pump(conn, lo, None, 1.0)
        return f"x-priority 10 (prefetch 2) got {hi.bodies()}, x-priority 0 got {lo.bodies()}"
    case("consumer priorities, high one at prefetch limit", consumer_priority_full_fn)

    def sac_fn(conn, ch):
        q = qname("sac")
        qdecl(ch, q, extra={"x-single-active-consumer": True})
        a, b = Collector(), Collector()
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(q, a, consumer_tag="sac-a")
        ch2 = conn.channel()
        ch2.basic_qos(prefetch_count=10)
        r = ch2.basic_consume(q, b, consumer_tag="sac-b")
        publish(conn, q, 3)
        pump(conn, a, 3, 1.0)
        t0 = time.time()
        while time.time() - t0 < 7:
            conn.process_data_events(time_limit=0.5)
        res = f"second consume-ok tag={r}; a got {a.bodies()}, b got {b.bodies()}"
        info = json.loads(http_get(f"/api/queues/{urllib.parse.quote(ARGS.vhost, safe='')}/{q}"))
        cds = sorted((c["consumer_tag"], c.get("active"), c.get("activity_status"))
                     for c in info.get("consumer_details", []))
        res += (f"; mgmt single_active_consumer_ctag={info.get('single_active_consumer_ctag')} "
                f"single_active_consumer_tag={info.get('single_active_consumer_tag', '<absent>')} "
                f"consumer_details={cds}")
        ch.basic_cancel("sac-a")  # a's 3 unacked stay with the cancelled consumer
        publish(conn, q, 1, start=3)
        pump(conn, b, 1, 1.5)
        res += (f"; after basic.cancel of a (3 unacked) and 1 more publish: "
                f"b got {[fmt_delivery(m, p, bb) for (m, p, bb, _t) in b.msgs]}")
        ch.close()  # closing a's channel returns its unacked messages
        pump(conn, b, 4, 1.5)
        res += f"; after a's channel closed: b got {[fmt_delivery(m, p, bb) for (m, p, bb, _t) in b.msgs]}"
        return res
    case("single active consumer", sac_fn)

    def sac_prio_fn(conn, ch):
        q = qname("sacp")
        qdecl(ch, q, extra={"x-single-active-consumer": True})
        a, b = Collector(), Collector()
        ch.basic_consume(q, a, consumer_tag="sac-lo", arguments={"x-priority": 1})
        ch2 = conn.channel()
        ch2.basic_consume(q, b, consumer_tag="sac-hi", arguments={"x-priority": 5})
        time.sleep(0.3)
        publish(conn, q, 2)
        pump(conn, a, None, 1.0)
        return f"SAC + x-priority: lo(1, first) got {a.bodies()}, hi(5, second) got {b.bodies()}"
    case("single active consumer with consumer priorities", sac_prio_fn)

    # ---------------------------------------------------------- misc methods
    def purge_fn(conn, ch):
        q = qname("pg")
        qdecl(ch, q)
        publish(conn, q, 4)
        ch.basic_qos(prefetch_count=1)
        col = Collector()
        ch.basic_consume(q, col)
        pump(conn, col, 1, 1)
        r = ch.queue_purge(q)
        left = ch.queue_declare(q, passive=True).method.message_count
        return f"4 messages, 1 unacked: purge-ok message_count={r.method.message_count}; after: {left}"
    case("queue.purge", purge_fn)

    def delete_fn(if_empty=False, if_unused=False, consumer=False):
        def fn(conn, ch):
            q = qname("del")
            qdecl(ch, q)
            publish(conn, q, 3)
            c2 = None
            cancelled = []
            if consumer:
                c2 = connect()
                ch2 = c2.channel()
                ch2.add_on_cancel_callback(lambda f: cancelled.append(f.method.consumer_tag))
                ch2.basic_qos(prefetch_count=1)
                ch2.basic_consume(q, lambda *a: None, consumer_tag="victim")
                c2.process_data_events(time_limit=0.3)
            r = ch.queue_delete(q, if_empty=if_empty, if_unused=if_unused)
            res = f"delete-ok message_count={r.method.message_count}"
            if c2:
                c2.process_data_events(time_limit=0.5)
                res += f"; other connection's consumer got basic.cancel {cancelled}, channel open={ch2.is_open}"
                c2.close()
            return res
        return fn
    case("queue.delete with 3 messages", delete_fn())
    case("queue.delete if_empty (3 messages)", delete_fn(if_empty=True))
    case("queue.delete if_unused with consumer", delete_fn(if_unused=True, consumer=True))
    case("queue.delete with consumer on other connection", delete_fn(consumer=True))

    def tx_fn(conn, ch):
        q = qname("tx")
        qdecl(ch, q)
        ch.tx_select()
        ch.basic_publish("", q, b"t0")
        mid = ch.queue_declare(q, passive=True).method.message_count
        ch.tx_commit()
        time.sleep(0.2)
        return f"before commit {mid}, after commit {ch.queue_declare(q, passive=True).method.message_count}"
    case("tx publish", tx_fn)

    def mandatory_fn(conn, ch):
        q = qname("mand")
        qdecl(ch, q)
        ch.confirm_delivery()
        ch.basic_publish("", q, b"x", mandatory=True)
        return "mandatory publish confirmed"
    case("mandatory publish confirmed", mandatory_fn)

    def headers_fn(conn, ch):
        q = qname("hd")
        qdecl(ch, q)
        props = pika.BasicProperties(delivery_mode=1, headers={"h": "v"}, priority=3,
                                     message_id="id1", content_type="text/plain")
        publish(conn, q, 1, props=props)
        m, p, b = ch.basic_get(q, auto_ack=True)
        return (f"delivery_mode={p.delivery_mode} headers={p.headers} priority={p.priority} "
                f"message_id={p.message_id} content_type={p.content_type} "
                f"exchange={m.exchange!r} routing_key={m.routing_key}")
    case("properties round trip (transient publish)", headers_fn)

    # ------------------------------------------------- management / CLI / prom
    mgmt_fn_case()


def mgmt_fn_case():
    conn = connect()
    ch = conn.channel()
    q = qname("mgmt")
    qdecl(ch, q, extra={"x-delivery-limit": 5, "x-max-length": 1000})
    publish(conn, q, 5)
    ch.basic_qos(prefetch_count=2)
    col = Collector()
    ch.basic_consume(q, col, consumer_tag="mgmt-ctag")
    pump(conn, col, 2, 2)
    t0 = time.time()
    while time.time() - t0 < 16:  # stats tick (5 s quorum tick + collector)
        conn.process_data_events(time_limit=0.5)
    vh = urllib.parse.quote(ARGS.vhost, safe="")
    try:
        data = json.loads(http_get(f"/api/queues/{vh}/{q}"))
        keys = sorted(data.keys())
        print(f"management GET /api/queues/{{vh}}/{{q}} keys: {keys}", flush=True)
        sel = {k: data.get(k) for k in ["type", "durable", "auto_delete", "exclusive", "node",
                                        "leader", "members", "online", "state", "messages",
                                        "messages_ready", "messages_unacknowledged",
                                        "message_bytes", "message_bytes_ready",
                                        "message_bytes_unacknowledged", "messages_ram",
                                        "message_bytes_ram", "messages_dlx", "message_bytes_dlx",
                                        "consumers", "consumer_utilisation",
                                        "single_active_consumer_tag",
                                        "single_active_consumer_ctag", "open_files",
                                        "arguments", "effective_policy_definition",
                                        "garbage_collection"]}
        sel["name"] = "<q>"
        print(f"management values: {json.dumps(sel, sort_keys=True)}", flush=True)
        cd = data.get("consumer_details", [{}])
        cd0 = {k: v for k, v in (cd[0] if cd else {}).items() if k != "channel_details"}
        print(f"management consumer_details[0]: {json.dumps(cd0, sort_keys=True)}", flush=True)
        if ARGS.mgmt_out:
            with open(ARGS.mgmt_out, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
            print(f"management: saved GET /api/queues/{{vh}}/{{q}} to {os.path.basename(ARGS.mgmt_out)}",
                  flush=True)
        lst = json.loads(http_get(f"/api/queues/{vh}?columns=name,type,leader,members,online,node"))
        mine = [x for x in lst if x.get("name") == q]
        print(f"management list columns name,type,leader,members,online,node: "
              f"{json.dumps(mine[0] if mine else None, sort_keys=True).replace(q, '<q>')}", flush=True)
    except Exception as e:  # noqa
        print(f"management: {describe(e)}", flush=True)
    if ARGS.prom_url:
        for path in ["/metrics", "/metrics/per-object"]:
            try:
                txt = http_get(path, base=ARGS.prom_url)
                lines = [ln for ln in txt.splitlines()
                         if (q in ln or (path == "/metrics" and "raft" in ln))
                         and not ln.startswith("# TYPE")]
                lines = [ln.replace(q, "<q>") for ln in lines]
                print(f"prometheus {path}: {len(lines)} lines: " + " | ".join(lines[:40]), flush=True)
            except Exception as e:  # noqa
                print(f"prometheus {path}: {describe(e)}", flush=True)
    vhq = shlex.quote(ARGS.vhost)
    if ARGS.queues_cli:
        qc = ARGS.queues_cli
        run_cli("rabbitmq-queues quorum_status", f"{qc} quorum_status -p {vhq} {q}")
        run_cli("rabbitmq-queues quorum_status (missing queue)", f"{qc} quorum_status -p {vhq} no-such-{q}")
        run_cli("rabbitmq-queues quorum_status (classic queue)",
                f"{qc} quorum_status -p {vhq} {classic_queue(conn)}")
        run_cli("rabbitmq-queues add_member (same node)",
                f"{qc} add_member -p {vhq} {q} $(hostname -s | sed 's/^/rabbit@/')")
        run_cli("rabbitmq-queues delete_member (unknown node)",
                f"{qc} delete_member -p {vhq} {q} rabbit@no-such-host")
        run_cli("rabbitmq-queues peek 1", f"{qc} peek -p {vhq} {q} 1")
        run_cli("rabbitmq-queues peek 99", f"{qc} peek -p {vhq} {q} 99")
        run_cli("rabbitmq-queues check_if_node_is_quorum_critical",
                f"{qc} check_if_node_is_quorum_critical")
        run_cli("rabbitmq-queues rebalance quorum (own queue only)",
                f"{qc} rebalance quorum --vhost-pattern '^{ARGS.vhost}$' --queue-pattern '^{q}$'")
    if ARGS.ctl:
        run_cli("rabbitmqctl list_queues name type leader members online messages",
                f"{ARGS.ctl} -q list_queues -p {vhq} name type leader members online messages "
                f"| grep -E '^(name|{q})'")
        run_cli("rabbitmqctl list_queues name type leader members online messages_ram "
                "message_bytes_ram pid state",
                f"{ARGS.ctl} -q list_queues -p {vhq} name type messages_ram message_bytes_ram "
                f"pid state | grep -E '^(name|{q})'")
    conn.close()


def classic_queue(conn):
    ch = conn.channel()
    q = qname("classic")
    ch.queue_declare(q, durable=True)
    ch.close()
    return q


def cleanup():
    signal.alarm(60)
    try:
        conn = connect()
        ch = conn.channel()
        n = 0
        for q in sorted(CREATED_Q):
            try:
                ch.queue_delete(q)
                n += 1
            except pe.ChannelClosedByBroker:
                ch = conn.channel()
        for x in sorted(CREATED_X):
            try:
                ch.exchange_delete(x)
            except pe.ChannelClosedByBroker:
                ch = conn.channel()
        conn.close()
        print(f"cleanup: deleted {n} queue names (404 for never-created ones is ignored), "
              f"{len(CREATED_X)} exchanges", flush=True)
    except Exception as e:  # noqa
        print(f"cleanup: {describe(e)}", flush=True)
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    main()
