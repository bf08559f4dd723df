"""Streams (x-queue-type=stream) over AMQP 0-9-1: refusals and edge cases.

  python streams.py --port 5672 [--host 127.0.0.1] [--user guest --password guest]
                    [--mgmt-url http://127.0.0.1:15672 --mgmt-out streams-queue.json]

Every case opens a fresh connection (and channel), uses unique queue names
and prints exactly one line:

  <case>: ok [details]
  <case>: <reply code> <reply text> (channel closed | connection closed)

Each case is bounded by an alarm (--case-timeout) so nothing hangs.
With --mgmt-out the script also keeps a stream with messages and a consumer
open, waits for the stats tick and saves GET /api/queues/<vhost>/<stream>.
"""
import argparse
import base64
import datetime
import decimal
import json
import os
import signal
import struct
import sys
import time
import urllib.parse
import urllib.request

import pika
import pika.data
import pika.exceptions as pe

# ---------------------------------------------------------------------------
# record the AMQP field-table type byte of every decoded header so that we can
# report e.g. that x-stream-offset arrives as 'l' (signed 64-bit).
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

# ---------------------------------------------------------------------------


class CaseTimeout(Exception):
    pass


def _alarm(_sig, _frm):
    raise CaseTimeout()


signal.signal(signal.SIGALRM, _alarm)

ARGS = None
SEQ = [0]


def qname(tag):
    SEQ[0] += 1
    return f"st-{os.getpid()}-{SEQ[0]}-{tag}"


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
    """If the broker closed the channel/connection asynchronously, say so."""
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
    """Run fn(conn, ch) on a fresh connection; print '<label>: <outcome>'."""
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
        extra = getattr(e, "_partial", None)
        if extra:
            out += f" [before: {extra}]"
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


def sdecl(ch, q, durable=True, exclusive=False, auto_delete=False, extra=None,
          passive=False):
    a = {"x-queue-type": "stream"}
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
            r = sdecl(ch, q, durable, exclusive, auto_delete, extra)
        m = r.method
        return (f"declare-ok queue={'<server-named>' if name == '' else m.queue == q} "
                f"messages={m.message_count} consumers={m.consumer_count}")
    case(label, fn)


def publish(conn, q, n, burst=False, headers=None, start=0):
    """Publish n messages m<start>.. to q (default exchange) and wait for
    confirms. burst=False: wait for each confirm (one chunk per message);
    burst=True: publish all, then wait for the confirms."""
    ch = conn.channel()
    ch.confirm_delivery()
    if not burst:
        for i in range(start, start + n):
            ch.basic_publish("", q, f"m{i}".encode(),
                             pika.BasicProperties(delivery_mode=2, headers=headers))
    else:
        # a non-confirm channel publishes the burst, a confirmed publish on the
        # other channel afterwards is not ordered with it, so wait a little
        ch2 = conn.channel()
        for i in range(start, start + n):
            ch2.basic_publish("", q, f"m{i}".encode(),
                              pika.BasicProperties(delivery_mode=2, headers=headers))
        conn.process_data_events(time_limit=0.5)
        ch2.close()
    ch.close()


def prepared_stream(conn, ch, tag, extra=None):
    """A stream with 10 messages: m0..m4 one chunk each, m5..m9 in a burst."""
    q = qname(tag)
    sdecl(ch, q, extra=extra)
    publish(conn, q, 5)
    publish(conn, q, 5, burst=True, start=5)
    return q


class Collector:
    def __init__(self):
        self.msgs = []
        self.cancelled = []

    def __call__(self, ch, method, props, body):
        self.msgs.append((method, props, body, dict(HEADER_TYPES)))

    def offsets(self):
        return [((p.headers or {}).get("x-stream-offset")) for (_m, p, _b, _t) in self.msgs]


def pump(conn, col, want=None, secs=1.5):
    """Process I/O until `want` deliveries arrived or secs elapsed."""
    t0 = time.time()
    while time.time() - t0 < secs:
        conn.process_data_events(time_limit=0.1)
        if want is not None and len(col.msgs) >= want:
            break


def consume_case(label, cargs=None, prefetch=10, no_ack=False, global_qos=None,
                 want=None, secs=1.5, after=None, exclusive=False, tag=None,
                 global_last=False):
    """prefetch: basic.qos(global=false) count (0: not sent); global_qos:
    basic.qos(global=true) count, sent before the per-consumer one unless
    global_last (NB: RabbitMQ's basic.qos global=false clears the global limit)."""
    def fn(conn, ch):
        q = prepared_stream(conn, ch, "c")
        if global_qos is not None and not global_last:
            ch.basic_qos(prefetch_count=global_qos, global_qos=True)
        if prefetch:
            ch.basic_qos(prefetch_count=prefetch)
        if global_qos is not None and global_last:
            ch.basic_qos(prefetch_count=global_qos, global_qos=True)
        col = Collector()
        kw = {}
        if tag:
            kw["consumer_tag"] = tag
        ct = ch.basic_consume(q, col, auto_ack=no_ack, exclusive=exclusive,
                              arguments=cargs or {}, **kw)
        pump(conn, col, want, secs)
        res = f"consume-ok offsets={col.offsets()}"
        if after:
            res += " " + after(conn, ch, q, col, ct)
        return res
    case(label, fn)


def publish_more(n=1, start=10):
    def after(conn, ch, q, col, ct):
        before = len(col.msgs)
        c2 = connect()
        publish(c2, q, n, start=start)
        c2.close()
        pump(conn, col, before + n, 1.5)
        return f"after publishing {n} more: offsets={col.offsets()}"
    return after


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
    p.add_argument("--mgmt-url", default=None,
                   help="management base URL, e.g. http://127.0.0.1:15672")
    p.add_argument("--mgmt-out", default=None, help="file for the queue JSON")
    p.add_argument("--skip-slow", action="store_true",
                   help="skip cases that wait for the 5 s stream stats tick")
    ARGS = p.parse_args()

    # ------------------------------------------------------------------ declare
    declare_case("declare stream (durable)")
    declare_case("declare stream exclusive", exclusive=True)
    declare_case("declare stream auto-delete", auto_delete=True)
    declare_case("declare stream non-durable", durable=False)
    declare_case("declare stream exclusive+auto-delete+non-durable",
                 durable=False, exclusive=True, auto_delete=True)
    declare_case("declare stream non-durable+auto-delete", durable=False, auto_delete=True)
    declare_case("declare stream server-named", name="")
    declare_case("declare stream server-named exclusive", name="", exclusive=True)
    declare_case("declare x-queue-type=STREAM (case)", args_only={"x-queue-type": "STREAM"})
    declare_case("declare stream name amq.foo", name=f"amq.st-{os.getpid()}")
    for k, v in [("x-message-ttl", 1000),
                 ("x-message-ttl", "abc"),
                 ("x-dead-letter-exchange", "dlx"),
                 ("x-dead-letter-routing-key", "rk"),
                 ("x-max-length", 10),
                 ("x-max-priority", 5),
                 ("x-overflow", "reject-publish"),
                 ("x-overflow", "bogus"),
                 ("x-expires", 10000),
                 ("x-single-active-consumer", True),
                 ("x-queue-mode", "lazy"),
                 ("x-queue-version", 2),
                 ("x-delivery-limit", 5),
                 ("x-quorum-initial-group-size", 1),
                 ("x-max-in-memory-length", 5),
                 ("x-queue-master-locator", "min-masters"),
                 ("x-dead-letter-strategy", "at-least-once"),
                 ("x-unknown-arg", "x")]:
        declare_case(f"declare stream {k}={v!r}", extra={k: v})
    # ordering: two refused args, and refused arg together with a bad property
    a = {"x-queue-type": "stream"}
    declare_case("declare [x-max-length, x-message-ttl] (table order)",
                 args_only=dict(a, **{"x-max-length": 1, "x-message-ttl": 1}))
    declare_case("declare [x-message-ttl, x-max-length] (table order)",
                 args_only=dict(a, **{"x-message-ttl": 1, "x-max-length": 1}))
    declare_case("declare x-max-length + exclusive", extra={"x-max-length": 1}, exclusive=True)
    declare_case("declare x-max-age=bogus + x-max-length",
                 extra={"x-max-length": 1, "x-max-age": "bogus"})
    declare_case("declare x-max-age=10x + exclusive", extra={"x-max-age": "10x"}, exclusive=True)
    declare_case("declare segment-size too big + auto-delete",
                 extra={"x-stream-max-segment-size-bytes": 3_000_000_001}, auto_delete=True)
    declare_case("declare x-queue-type first, x-max-length before it",
                 args_only={"x-max-length": 1, "x-queue-type": "stream"})
    # x-max-age
    for v in ["7D", "1h", "30m", "10s", "1Y", "1M", "0D", "7d", "1h30m", "bogus", "10x",
              "D", "", "-1h", " 1h", 3600]:
        declare_case(f"declare x-max-age={v!r}", extra={"x-max-age": v})
    # sizes and the other accepted arguments
    for k, v in [("x-stream-max-segment-size-bytes", 1_000_000),
                 ("x-stream-max-segment-size-bytes", 3_000_000_000),
                 ("x-stream-max-segment-size-bytes", 3_000_000_001),
                 ("x-stream-max-segment-size-bytes", -1),
                 ("x-stream-max-segment-size-bytes", "100"),
                 ("x-max-length-bytes", 1_000_000),
                 ("x-max-length-bytes", 0),
                 ("x-max-length-bytes", -1),
                 ("x-max-length-bytes", "100"),
                 ("x-initial-cluster-size", 1),
                 ("x-initial-cluster-size", 3),
                 ("x-initial-cluster-size", 0),
                 ("x-initial-cluster-size", -1),
                 ("x-queue-leader-locator", "client-local"),
                 ("x-queue-leader-locator", "balanced"),
                 ("x-queue-leader-locator", "least-leaders"),
                 ("x-queue-leader-locator", "random"),
                 ("x-queue-leader-locator", "bogus"),
                 ("x-stream-filter-size-bytes", 32),
                 ("x-stream-filter-size-bytes", 300),
                 ("x-stream-filter-size-bytes", 8),
                 ("x-stream-filter-size-bytes", "abc")]:
        declare_case(f"declare stream {k}={v!r}", extra={k: v})

    # redeclare
    def redeclare(second, **kw2):
        def fn(conn, ch):
            q = qname("r")
            sdecl(ch, q, extra={"x-max-age": "1h"})
            if second is None:
                r = ch.queue_declare(q, durable=kw2.get("durable", True),
                                     exclusive=kw2.get("exclusive", False),
                                     auto_delete=kw2.get("auto_delete", False),
                                     passive=kw2.get("passive", False))
            else:
                r = ch.queue_declare(q, durable=kw2.get("durable", True),
                                     exclusive=kw2.get("exclusive", False),
                                     auto_delete=kw2.get("auto_delete", False),
                                     arguments=second)
            return f"declare-ok messages={r.method.message_count}"
        return fn
    s = {"x-queue-type": "stream"}
    case("redeclare same args", redeclare(dict(s, **{"x-max-age": "1h"})))
    case("redeclare different x-max-age", redeclare(dict(s, **{"x-max-age": "2h"})))
    case("redeclare without x-max-age", redeclare(dict(s)))
    case("redeclare without any args", redeclare({}))
    case("redeclare x-queue-type=classic", redeclare({"x-queue-type": "classic", "x-max-age": "1h"}))
    case("redeclare x-queue-type=quorum", redeclare({"x-queue-type": "quorum", "x-max-age": "1h"}))
    case("redeclare adding x-message-ttl", redeclare(dict(s, **{"x-max-age": "1h", "x-message-ttl": 5})))
    case("redeclare adding x-max-length-bytes", redeclare(dict(s, **{"x-max-age": "1h", "x-max-length-bytes": 5})))
    case("redeclare non-durable", redeclare(dict(s, **{"x-max-age": "1h"}), durable=False))
    case("redeclare auto-delete", redeclare(dict(s, **{"x-max-age": "1h"}), auto_delete=True))
    case("redeclare exclusive", redeclare(dict(s, **{"x-max-age": "1h"}), exclusive=True))
    case("redeclare passive", redeclare(None, passive=True))

    # declare-ok message count after publishing
    def count_fn(conn, ch):
        q = qname("n")
        sdecl(ch, q)
        publish(conn, q, 7)
        r1 = ch.queue_declare(q, passive=True).method.message_count
        r2 = sdecl(ch, q).method.message_count
        if ARGS.skip_slow:
            return f"passive={r1} active={r2} (immediately)"
        time.sleep(6)
        r3 = ch.queue_declare(q, passive=True).method.message_count
        r4 = sdecl(ch, q).method.message_count
        return (f"after 7 publishes: passive={r1} active={r2} immediately; "
                f"passive={r3} active={r4} after 6s")
    case("declare-ok message_count after 7 publishes", count_fn, timeout=30)

    # ------------------------------------------------------------------ consume
    consume_case("consume without prefetch", prefetch=0)
    consume_case("consume no_ack=true with prefetch", no_ack=True)
    consume_case("consume no_ack=true without prefetch", no_ack=True, prefetch=0)
    consume_case("consume global qos only (prefetch 10 global)", prefetch=0, global_qos=10)
    consume_case("consume global qos 10 then consumer qos 10", prefetch=10, global_qos=10)
    consume_case("consume consumer qos 10 then global qos 10", prefetch=10, global_qos=10,
                 global_last=True)
    consume_case("consume consumer qos 10 then global qos 0", prefetch=10, global_qos=0,
                 global_last=True)
    consume_case("consume no_ack + consumer qos 10 then global qos 10", prefetch=10,
                 global_qos=10, global_last=True, no_ack=True)
    consume_case("consume no args (default offset)", want=10, after=publish_more())
    consume_case("consume x-stream-offset=first", {"x-stream-offset": "first"}, want=10)
    consume_case("consume x-stream-offset=last", {"x-stream-offset": "last"}, want=10)
    consume_case("consume x-stream-offset=next", {"x-stream-offset": "next"},
                 after=publish_more())
    consume_case("consume x-stream-offset=0", {"x-stream-offset": 0}, want=10)
    consume_case("consume x-stream-offset=5", {"x-stream-offset": 5}, want=10)
    consume_case("consume x-stream-offset=7", {"x-stream-offset": 7}, want=10)
    consume_case("consume x-stream-offset=-1", {"x-stream-offset": -1}, want=10)
    consume_case("consume x-stream-offset=10 (== next offset)", {"x-stream-offset": 10},
                 after=publish_more())
    consume_case("consume x-stream-offset=100 (beyond end)", {"x-stream-offset": 100},
                 after=publish_more(2))
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    consume_case("consume x-stream-offset=timestamp(now-1h)",
                 {"x-stream-offset": now - datetime.timedelta(hours=1)}, want=10)
    consume_case("consume x-stream-offset=timestamp(now+1h)",
                 {"x-stream-offset": now + datetime.timedelta(hours=1)},
                 after=publish_more())
    consume_case("consume x-stream-offset=timestamp(0)",
                 {"x-stream-offset": datetime.datetime(1970, 1, 1, 0, 0, 1)}, want=10)
    for v in ["1h", "30m", "7D", "10s", "bogus", "10x", "first ", "FIRST", "", "0s"]:
        consume_case(f"consume x-stream-offset={v!r}", {"x-stream-offset": v}, want=10)
    consume_case("consume x-stream-offset=true (bool)", {"x-stream-offset": True})
    consume_case("consume x-stream-offset=decimal 1.5", {"x-stream-offset": decimal.Decimal("1.5")})
    consume_case("consume x-stream-offset=[1] (array)", {"x-stream-offset": [1]})
    consume_case("consume x-priority=5", {"x-priority": 5})
    consume_case("consume x-cancel-on-ha-failover=true", {"x-cancel-on-ha-failover": True})
    consume_case("consume x-stream-filter=a (no filtering support in 3.10)",
                 {"x-stream-offset": "first", "x-stream-filter": "a"}, want=10)
    consume_case("consume x-stream-filter=[a,b] + match-unfiltered",
                 {"x-stream-offset": "first", "x-stream-filter": ["a", "b"],
                  "x-stream-match-unfiltered": True}, want=10)
    consume_case("consume x-unknown-consumer-arg", {"x-foo": 1, "x-stream-offset": "first"}, want=10)
    consume_case("consume exclusive=true", {"x-stream-offset": "first"}, exclusive=True, want=10)
    consume_case("consume prefetch=3 first (credit)", {"x-stream-offset": "first"},
                 prefetch=3, secs=1.5)

    # consumers on an empty stream
    def empty_consume(cargs):
        def fn(conn, ch):
            q = qname("z")
            sdecl(ch, q)
            ch.basic_qos(prefetch_count=10)
            col = Collector()
            ch.basic_consume(q, col, arguments=cargs)
            pump(conn, col, None, 0.5)
            c2 = connect()
            publish(c2, q, 2)
            c2.close()
            pump(conn, col, 2, 1.5)
            return f"consume-ok on empty stream; after publishing 2: offsets={col.offsets()}"
        return fn
    for v in ["first", "last", "next", 0, 5]:
        case(f"consume empty stream x-stream-offset={v!r}", empty_consume({"x-stream-offset": v}))

    # timestamp offsets have chunk granularity and second resolution
    def ts_between(conn, ch):
        q = qname("ts")
        sdecl(ch, q)
        publish(conn, q, 3)
        time.sleep(2.2)
        mid = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        time.sleep(1.2)
        publish(conn, q, 3, start=3)
        ch.basic_qos(prefetch_count=10)
        col = Collector()
        ch.basic_consume(q, col, arguments={"x-stream-offset": mid})
        pump(conn, col, 6, 1.5)
        col2 = Collector()
        ch.basic_consume(q, col2, arguments={"x-stream-offset": "2s"})
        pump(conn, col2, 6, 1.5)
        return (f"3 msgs, 3.4s pause, 3 msgs: timestamp(between)->{col.offsets()}; "
                f"'2s'->{col2.offsets()}")
    case("consume x-stream-offset=timestamp between two batches", ts_between)

    # delivery details for the first message
    def first_delivery(conn, ch):
        q = qname("h")
        sdecl(ch, q)
        c2 = connect()
        publish(c2, q, 1, headers={"x-stream-filter-value": "blue", "h1": "v"})
        c2.close()
        ch.basic_qos(prefetch_count=5)
        col = Collector()
        ch.basic_consume(q, col, arguments={"x-stream-offset": "first"})
        pump(conn, col, 1, 3)
        if not col.msgs:
            return "no delivery"
        m, props, body, types = col.msgs[0]
        hdr = props.headers or {}
        return (f"delivery_tag={m.delivery_tag} redelivered={m.redelivered} "
                f"exchange={m.exchange!r} routing_key={m.routing_key!r} "
                f"consumer_tag={m.consumer_tag!r} body={body!r} headers={hdr!r} "
                f"header_types={{{', '.join(f'{k}:{types.get(k)}' for k in hdr)}}} "
                f"delivery_mode={props.delivery_mode}")
    case("first delivery details", first_delivery)

    def delivery_tags(conn, ch):
        q = prepared_stream(conn, ch, "t")
        ch.basic_qos(prefetch_count=20)
        col = Collector()
        ch.basic_consume(q, col, arguments={"x-stream-offset": "first"})
        ch.basic_consume(q, col, arguments={"x-stream-offset": 8})
        pump(conn, col, 12, 2)
        return "deliveries (ctag-suffix, tag, offset, redelivered): " + str(
            [(m.consumer_tag[-4:], m.delivery_tag, (p.headers or {}).get("x-stream-offset"),
              m.redelivered) for (m, p, _b, _t) in col.msgs])
    case("delivery tags across two consumers on one channel", delivery_tags)

    # ack / nack / reject
    def settle_case(op):
        def fn(conn, ch):
            q = prepared_stream(conn, ch, "a")
            ch.basic_qos(prefetch_count=2)
            col = Collector()
            ch.basic_consume(q, col, arguments={"x-stream-offset": "first"})
            pump(conn, col, 2, 1.5)
            got0 = col.offsets()
            pump(conn, col, None, 0.7)
            got1 = col.offsets()
            tag = col.msgs[0][0].delivery_tag
            if op == "ack":
                ch.basic_ack(tag)
            elif op == "ack-multiple":
                ch.basic_ack(col.msgs[1][0].delivery_tag, multiple=True)
            elif op == "nack-requeue":
                ch.basic_nack(tag, requeue=True)
            elif op == "nack-discard":
                ch.basic_nack(tag, requeue=False)
            elif op == "reject-requeue":
                ch.basic_reject(tag, requeue=True)
            elif op == "reject-discard":
                ch.basic_reject(tag, requeue=False)
            elif op == "recover":
                ch.basic_recover(requeue=True)
            elif op == "ack-unknown-tag":
                ch.basic_ack(999)
            try:
                pump(conn, col, None, 1.5)
            except Exception as e:  # noqa
                e._partial = f"prefetch=2: got {got0}, after idle {got1}"
                raise
            return (f"prefetch=2: got {got0}, after idle {got1}, after {op}: {col.offsets()} "
                    f"redelivered={[m.redelivered for (m, _p, _b, _t) in col.msgs]}")
        return fn
    for op in ["ack", "ack-multiple", "nack-requeue", "nack-discard", "reject-requeue",
               "reject-discard", "recover", "ack-unknown-tag"]:
        case(f"settle {op} on stream delivery", settle_case(op))

    # cancel, get, purge, delete
    def cancel_fn(conn, ch):
        q = prepared_stream(conn, ch, "x")
        ch.basic_qos(prefetch_count=2)
        col = Collector()
        ct = ch.basic_consume(q, col, arguments={"x-stream-offset": "first"})
        pump(conn, col, 2, 1)
        ch.basic_cancel(ct)
        ch.basic_ack(col.msgs[0][0].delivery_tag)
        pump(conn, col, None, 1)
        return f"cancel-ok; deliveries={col.offsets()} (ack after cancel accepted)"
    case("basic.cancel then ack", cancel_fn)

    def two_exclusive(conn, ch):
        q = prepared_stream(conn, ch, "e")
        ch.basic_qos(prefetch_count=20)
        col = Collector()
        ch.basic_consume(q, col, exclusive=True, arguments={"x-stream-offset": "first"})
        c2 = connect()
        ch2 = c2.channel()
        ch2.basic_qos(prefetch_count=20)
        try:
            ch2.basic_consume(q, Collector(), exclusive=True)
            r = "second exclusive consumer (other connection): ok"
        except Exception as e:  # noqa
            r = f"second exclusive consumer (other connection): {describe(e)}"
        try:
            ch3 = c2.channel()
            ch3.basic_qos(prefetch_count=20)
            ch3.basic_consume(q, Collector())
            r += "; non-exclusive consumer after it: ok"
        except Exception as e:  # noqa
            r += f"; non-exclusive consumer after it: {describe(e)}"
        c2.close()
        return r
    case("two exclusive consumers", two_exclusive)

    def get_fn(conn, ch):
        q = prepared_stream(conn, ch, "g")
        r = ch.basic_get(q)
        return f"basic.get returned {r!r}"
    case("basic.get on stream", get_fn)

    def get_noack_fn(conn, ch):
        q = prepared_stream(conn, ch, "g")
        r = ch.basic_get(q, auto_ack=True)
        return f"basic.get returned {r!r}"
    case("basic.get no_ack on stream", get_noack_fn)

    def purge_fn(conn, ch):
        q = prepared_stream(conn, ch, "p")
        r = ch.queue_purge(q)
        return f"purge-ok count={r.method.message_count}"
    case("queue.purge on stream", purge_fn)

    def delete_fn(**kw):
        def fn(conn, ch):
            q = prepared_stream(conn, ch, "x")
            with_consumer = kw.pop("with_consumer", False)
            r = ""
            col = None
            if with_consumer:
                c2 = connect()
                ch2 = c2.channel()
                ch2.basic_qos(prefetch_count=20)
                col = Collector()
                ch2.add_on_cancel_callback(lambda m: col.cancelled.append(m.method.consumer_tag))
                ch2.basic_consume(q, col, arguments={"x-stream-offset": "first"})
                pump(c2, col, 10, 1.5)
            d = ch.queue_delete(q, **kw)
            r = f"delete-ok message_count={d.method.message_count}"
            if col is not None:
                pump(c2, col, None, 1.5)
                st = closing_state(c2, ch2)
                r += (f"; consumer got basic.cancel={bool(col.cancelled)} "
                      f"channel={'open' if st is None else st}")
                if c2.is_open:
                    c2.close()
            try:
                conn.channel().queue_declare(q, passive=True)
                r += "; passive declare after delete (other channel): ok"
            except Exception as e:  # noqa
                r += f"; passive declare after delete (other channel): {describe(e)}"
            return r
        return fn
    case("queue.delete stream with 10 messages", delete_fn())
    case("queue.delete if_empty=true (10 messages)", delete_fn(if_empty=True))
    case("queue.delete if_unused=true with consumer", delete_fn(if_unused=True, with_consumer=True))
    case("queue.delete with active consumer on other connection", delete_fn(with_consumer=True))

    # retention is per segment: tiny segments + max-length-bytes
    def retention_fn(conn, ch):
        q = qname("ret")
        sdecl(ch, q, extra={"x-max-length-bytes": 2000,
                            "x-stream-max-segment-size-bytes": 1000})
        pch = conn.channel()
        pch.confirm_delivery()
        for i in range(60):
            pch.basic_publish("", q, b"x" * 100 + str(i).encode())
        time.sleep(1)
        ch.basic_qos(prefetch_count=100)
        col = Collector()
        ch.basic_consume(q, col, arguments={"x-stream-offset": "first"})
        pump(conn, col, 60, 2)
        o = col.offsets()
        return (f"60 x ~100B published; from 'first' delivered {len(o)} "
                f"offsets={o} (bodies {[b[100:].decode() for (_m, _p, b, _t) in col.msgs]})")
    case("retention x-max-length-bytes=2000 segment=1000", retention_fn)

    if ARGS.mgmt_out:
        mgmt(ARGS)


def mgmt(a):
    base = (a.mgmt_url or f"http://{a.host}:15672").rstrip("/")
    conn = connect()
    ch = conn.channel()
    q = "st-mgmt-stream"
    try:
        ch.queue_delete(q)
    except Exception:  # noqa
        ch = conn.channel()
    sdecl(ch, q, extra={"x-max-age": "7D", "x-max-length-bytes": 100_000_000})
    publish(conn, q, 5)
    publish(conn, q, 15, burst=True, start=5)
    ch.basic_qos(prefetch_count=5)
    col = Collector()
    ch.basic_consume(q, col, consumer_tag="mgmt-ctag", arguments={"x-stream-offset": "first"})
    pump(conn, col, 5, 2)
    # wait for two stream stats ticks (5 s each) and the management collector
    t0 = time.time()
    while time.time() - t0 < 12:
        conn.process_data_events(time_limit=0.5)
    url = f"{base}/api/queues/{urllib.parse.quote(a.vhost, safe='')}/{q}"
    req = urllib.request.Request(url)
    tok = base64.b64encode(f"{a.user}:{a.password}".encode()).decode()
    req.add_header("Authorization", f"Basic {tok}")
    with urllib.request.urlopen(req, timeout=10) as r:
        data = json.loads(r.read())
    with open(a.mgmt_out, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"management: saved {url} to {a.mgmt_out} (delivered to consumer: {col.offsets()})")
    conn.close()


if __name__ == "__main__":
    main()
