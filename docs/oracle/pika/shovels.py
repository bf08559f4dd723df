"""Oracle for dynamic shovels (RabbitMQ 3.10.8 with rabbitmq_shovel,
rabbitmq_shovel_management, rabbitmq_management enabled).

Usage: python shovels.py [--host H] [--port 5672] [--http http://H:15672]
                         [--user guest] [--password guest] > shovels.out

Everything is done in vhost "/" (plus vhost "shv-other" for per-vhost listing).
Output: plain text sections "### title" followed by pretty-printed JSON.
"""
import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pika

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=5672)
ap.add_argument("--http", default="http://127.0.0.1:15672")
ap.add_argument("--user", default="guest")
ap.add_argument("--password", default="guest")
A = ap.parse_args()

AUTH = "Basic " + base64.b64encode(f"{A.user}:{A.password}".encode()).decode()
V = "%2F"


def http(method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(A.http + "/api" + path, data=data, method=method,
                                 headers={"Authorization": AUTH,
                                          "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        status = e.code
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return status, parsed


def out(title, obj=None):
    print(f"\n### {title}")
    if obj is not None:
        print(obj if isinstance(obj, str) else json.dumps(obj, indent=2, sort_keys=True))
    sys.stdout.flush()


def show(method, path, body=None, title=None):
    st, js = http(method, path, body)
    out(title or f"{method} /api{path}" + (f"  body={json.dumps(body)}" if body is not None and not isinstance(body, bytes) else ""),
        {"status": st, "body": js})
    return st, js


def conn(vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=A.host, port=A.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(A.user, A.password)))


def shovels():
    return http("GET", "/shovels")[1] or []


def find(name, vhost="/"):
    for s in shovels():
        if s.get("name") == name and s.get("vhost") == vhost:
            return s
    return None


def wait_for(pred, timeout=20.0, step=0.2):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = pred()
        if r:
            return r
        time.sleep(step)
    return None


def qlen(q, vhost="/"):
    """Exact message count via a passive queue.declare (None if the queue is absent)."""
    try:
        c = conn(vhost)
        try:
            return c.channel().queue_declare(q, passive=True).method.message_count
        finally:
            if c.is_open:
                c.close()
    except pika.exceptions.ChannelClosedByBroker:
        return None


def put_shovel(name, value, vhost=V):
    return http("PUT", f"/parameters/shovel/{vhost}/{name}", {"value": value})


def del_shovel(name, vhost=V):
    return http("DELETE", f"/parameters/shovel/{vhost}/{name}")


# --------------------------------------------------------------------------
st, ov = http("GET", "/overview")
print(f"RabbitMQ {ov['rabbitmq_version']} (management {ov['management_version']}, "
      f"erlang {ov['erlang_version']}, node {ov['node']}, cluster_name {ov.get('cluster_name')})")

# cleanup from earlier runs
for p in (http("GET", "/parameters/shovel")[1] or []):
    http("DELETE", f"/parameters/shovel/{urllib.parse.quote(p['vhost'], safe='')}/{p['name']}")
time.sleep(1)
MYQ = ["src-q", "dst-q", "len-q", "len-dst", "missing-src-q", "mode-src", "mode-dst",
          "x-dst", "dst-missing-x", "neg-src", "neg-dst", "red-src", "red-dst", "cnt-src", "cnt-dst"]
for q in MYQ:
    http("DELETE", f"/queues/{V}/{q}")
http("DELETE", "/vhosts/shv-other")
http("PUT", "/vhosts/shv-other", {})
http("PUT", f"/permissions/shv-other/{A.user}", {"configure": ".*", "write": ".*", "read": ".*"})

out("initial GET /api/shovels (no shovels)", {"status": http("GET", "/shovels")[0], "body": shovels()})

# --------------------------------------------------------------------------
# 1. 100 messages in src-q; one of them redelivered; properties + headers
c = conn()
ch = c.channel()
ch.queue_declare("src-q", durable=True)
for i in range(100):
    ch.basic_publish("", "src-q", f"m{i}".encode(), pika.BasicProperties(
        content_type="text/plain", delivery_mode=2, priority=3, correlation_id=f"c{i}",
        reply_to="rq", message_id=f"id{i}", timestamp=1700000000 + i, type="t",
        app_id="app", headers={"h1": "v1", "n": i}))
# make message 0 redelivered: get it, then nack-requeue
m, p, b = ch.basic_get("src-q", auto_ack=False)
ch.basic_nack(m.delivery_tag, requeue=True)
c.close()
out("src-q message count before shovel", qlen("src-q"))

s1 = {"src-protocol": "amqp091", "src-uri": "amqp://", "src-queue": "src-q",
      "dest-protocol": "amqp091", "dest-uri": "amqp://guest:guest@localhost:5672/%2F?heartbeat=10",
      "dest-queue": "dst-q", "dest-add-forward-headers": True, "dest-add-timestamp-header": True}
show("PUT", f"/parameters/shovel/{V}/s1", {"value": s1})
out("GET /api/shovels immediately after PUT", shovels())
wait_for(lambda: (find("s1") or {}).get("state") == "running")
out("GET /api/shovels while s1 running", shovels())
wait_for(lambda: qlen("dst-q") == 100, 30)
out("queue counts after move: src-q, dst-q", {"src-q": qlen("src-q"), "dst-q": qlen("dst-q")})
show("GET", "/shovels", title="GET /api/shovels after moving the messages")
show("GET", f"/shovels/{V}")
show("GET", "/shovels/shv-other")
show("GET", "/shovels/no-such-vhost")
show("GET", f"/shovels/vhost/{V}/s1")
show("GET", f"/shovels/vhost/{V}/nope")
st, qinfo = http("GET", f"/queues/{V}/src-q")
out("src-q consumers / details (shovel is a consumer)",
    {k: qinfo.get(k) for k in ("consumers", "durable", "arguments", "messages")})
st, dinfo = http("GET", f"/queues/{V}/dst-q")
out("dst-q (declared by shovel): durable/arguments",
    {k: dinfo.get(k) for k in ("durable", "auto_delete", "exclusive", "arguments", "messages")})
st, conns = http("GET", "/connections")
out("connections opened by shovels (name, user, vhost, client_properties.connection_name, type)",
    [{"name": x.get("name"), "user": x.get("user"), "vhost": x.get("vhost"), "type": x.get("type"),
      "protocol": x.get("protocol"),
      "connection_name": (x.get("client_properties") or {}).get("connection_name")} for x in conns])


def dump_msgs(q, n=2, vhost="/"):
    c = conn(vhost)
    ch = c.channel()
    res = []
    for _ in range(n):
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        hdrs = p.headers
        res.append({"body": b.decode(), "redelivered": m.redelivered, "exchange": m.exchange,
                    "routing_key": m.routing_key,
                    "props": {k: (v if not isinstance(v, bytes) else v.decode())
                              for k, v in vars(p).items() if v is not None and k != "headers"},
                    "headers": json.loads(json.dumps(hdrs, default=lambda o: o.decode() if isinstance(o, bytes) else str(o)))})
    c.close()
    return res


out("first 2 messages in dst-q (m0 was redelivered at the source)", dump_msgs("dst-q", 2))

# --------------------------------------------------------------------------
# 2. restart + delete via /api/shovels/vhost
show("DELETE", f"/shovels/vhost/{V}/s1/restart")
out("s1 right after restart", find("s1"))
wait_for(lambda: (find("s1") or {}).get("state") == "running")
out("s1 after restart settles", find("s1"))
show("DELETE", f"/shovels/vhost/{V}/nope/restart")
show("DELETE", f"/shovels/vhost/{V}/nope")
show("GET", "/parameters/shovel", title="GET /api/parameters/shovel (s1 present; passwords?)")
show("GET", f"/parameters/shovel/{V}/s1")
show("GET", f"/parameters/shovel/{V}/nope")
st, d = http("GET", "/definitions")
out("GET /api/definitions -> .parameters", {"status": st, "parameters": d.get("parameters"),
                                            "global_parameters": d.get("global_parameters")})
st, d = http("GET", f"/definitions/{V}")
out("GET /api/definitions/%2F -> .parameters (vhost export)", {"status": st, "keys": sorted(d.keys()),
                                                                "parameters": d.get("parameters")})
show("DELETE", f"/shovels/vhost/{V}/s1")
time.sleep(1)
out("after DELETE /api/shovels/vhost/%2F/s1: shovels + parameter",
    {"shovels": shovels(), "param": http("GET", f"/parameters/shovel/{V}/s1")})

# --------------------------------------------------------------------------
# 3. delete-after queue-length, and numeric delete-after
c = conn(); ch = c.channel()
ch.queue_declare("len-q", durable=True)
for i in range(10):
    ch.basic_publish("", "len-q", f"L{i}".encode())
c.close()
put_shovel("s-len", {"src-uri": "amqp://", "src-queue": "len-q", "src-delete-after": "queue-length",
                     "dest-uri": "amqp://", "dest-queue": "len-dst"})
wait_for(lambda: http("GET", f"/parameters/shovel/{V}/s-len")[0] == 404, 20)
out("s-len (queue-length) afterwards: parameter GET, shovels, queue counts",
    {"param_status": http("GET", f"/parameters/shovel/{V}/s-len")[0], "shovel": find("s-len"),
     "len-q": qlen("len-q"), "len-dst": qlen("len-dst")})

c = conn(); ch = c.channel()
ch.queue_declare("cnt-src", durable=True)
for i in range(10):
    ch.basic_publish("", "cnt-src", f"C{i}".encode())
c.close()
put_shovel("s-cnt", {"src-uri": "amqp://", "src-queue": "cnt-src", "src-delete-after": 4,
                     "dest-uri": "amqp://", "dest-queue": "cnt-dst", "ack-mode": "on-publish"})
wait_for(lambda: http("GET", f"/parameters/shovel/{V}/s-cnt")[0] == 404, 20)
time.sleep(1)
out("s-cnt (src-delete-after 4, on-publish) afterwards",
    {"param_status": http("GET", f"/parameters/shovel/{V}/s-cnt")[0], "shovel": find("s-cnt"),
     "cnt-src": qlen("cnt-src"), "cnt-dst": qlen("cnt-dst")})

# --------------------------------------------------------------------------
# 4. ack modes no-ack / on-publish, src-exchange, dest-exchange + key, uri list
c = conn(); ch = c.channel()
ch.queue_declare("mode-dst", durable=True)
ch.exchange_declare("shv-x", "topic", durable=True)
ch.queue_declare("x-dst", durable=True)
ch.queue_bind("x-dst", "amq.direct", "newkey")
c.close()
put_shovel("s-x", {"src-uri": ["amqp://", "amqp://localhost:5672"], "src-exchange": "shv-x",
                   "src-exchange-key": "a.#", "dest-uri": "amqp://", "dest-exchange": "amq.direct",
                   "dest-exchange-key": "newkey", "ack-mode": "no-ack", "dest-add-forward-headers": True,
                   "src-prefetch-count": 10, "reconnect-delay": 2})
wait_for(lambda: (find("s-x") or {}).get("state") == "running")
c = conn(); ch = c.channel()
ch.basic_publish("shv-x", "a.b", b"xmsg", pika.BasicProperties(headers={"orig": 1}))
ch.basic_publish("shv-x", "zzz", b"not-routed")
c.close()
wait_for(lambda: qlen("x-dst") == 1, 10)
out("s-x status (src-exchange, uri list, no-ack, dest-exchange)", find("s-x"))
out("message forwarded by s-x (source exchange shv-x key a.b -> amq.direct newkey)", dump_msgs("x-dst", 2))
st, qs = http("GET", f"/queues/{V}")
out("queues in / now (note the server-named exclusive queue from src-exchange)",
    [{"name": q["name"], "durable": q["durable"], "exclusive": q.get("exclusive"),
      "auto_delete": q["auto_delete"]} for q in qs
     if q["name"].startswith("amq.gen") or q["name"] in MYQ])
del_shovel("s-x")

# on-publish mode + dest-queue only, dest-publish-properties
c = conn(); ch = c.channel()
ch.queue_declare("mode-src", durable=True)
for i in range(5):
    ch.basic_publish("", "mode-src", f"P{i}".encode(), pika.BasicProperties(content_type="a/b"))
c.close()
put_shovel("s-pub", {"src-uri": "amqp://", "src-queue": "mode-src", "dest-uri": "amqp://",
                     "dest-queue": "mode-dst", "ack-mode": "on-publish",
                     "dest-publish-properties": {"delivery_mode": 2, "app_id": "shovel-set", "content_type": "x/y"}})
wait_for(lambda: qlen("mode-dst") == 5, 10)
out("s-pub (on-publish + dest-publish-properties) status", find("s-pub"))
out("message forwarded by s-pub", dump_msgs("mode-dst", 1))
del_shovel("s-pub")

# --------------------------------------------------------------------------
# 5. failures visible in status
put_shovel("s-missing-src", {"src-uri": "amqp://", "src-queue": "missing-src-q",
                             "dest-uri": "amqp://", "dest-queue": "dst-q"})
time.sleep(3)
st, q = http("GET", f"/queues/{V}/missing-src-q")
out("s-missing-src: status, and was missing-src-q declared?",
    {"shovel": find("s-missing-src"),
     "queue": {"status": st, "durable": q.get("durable"), "arguments": q.get("arguments")} if st == 200 else {"status": st, "body": q}})
del_shovel("s-missing-src")

put_shovel("s-missing-x", {"src-uri": "amqp://", "src-exchange": "no-such-exchange",
                           "dest-uri": "amqp://", "dest-queue": "dst-q", "reconnect-delay": 3})
samples = []
for i in range(8):
    samples.append({"t": i, "entry": find("s-missing-x")})
    time.sleep(0.5)
out("s-missing-x (src-exchange does not exist) status samples every 0.5s", samples)
del_shovel("s-missing-x")

put_shovel("s-missing-dest-x", {"src-uri": "amqp://", "src-queue": "neg-src",
                                "dest-uri": "amqp://", "dest-exchange": "no-such-dest-x"})
time.sleep(1)
c = conn(); ch = c.channel(); ch.basic_publish("", "neg-src", b"to-missing-x"); c.close()
time.sleep(2)
out("s-missing-dest-x (dest-exchange does not exist, after one message)",
    {"shovel": find("s-missing-dest-x"), "neg-src": qlen("neg-src")})
del_shovel("s-missing-dest-x")

for name, uri in [("s-bad-port", "amqp://localhost:5999"),
                  ("s-bad-auth", "amqp://nobody:wrong@localhost:5672"),
                  ("s-bad-host", "amqp://no-such-host.invalid"),
                  ("s-bad-vhost-net", "amqp://guest:guest@localhost:5672/no-such-vhost")]:
    st, body = put_shovel(name, {"src-uri": uri, "src-queue": "src-q", "dest-uri": "amqp://",
                                 "dest-queue": "dst-q", "reconnect-delay": 2})
    samples = []
    for i in range(10):
        samples.append({"t": round(i * 0.5, 1), "entry": find(name)})
        time.sleep(0.5)
    out(f"{name} src-uri={uri}: PUT status {st} {body}; status samples every 0.5s", samples)
    del_shovel(name)

put_shovel("s-neg-prefetch", {"src-uri": "amqp://", "src-queue": "neg-src", "src-prefetch-count": -1,
                              "dest-uri": "amqp://", "dest-queue": "neg-dst"})
time.sleep(3)
out("s-neg-prefetch (src-prefetch-count -1 accepted by validation) status", find("s-neg-prefetch"))
del_shovel("s-neg-prefetch")

put_shovel("s-reconnect0", {"src-uri": "amqp://localhost:5999", "src-queue": "src-q", "dest-uri": "amqp://",
                            "dest-queue": "dst-q", "reconnect-delay": 0})
samples = []
for i in range(8):
    samples.append({"t": i, "entry": find("s-reconnect0")})
    time.sleep(1)
out("s-reconnect0 (reconnect-delay 0, bad port): status samples every 1s, then parameter still there?",
    {"samples": samples, "param_status": http("GET", f"/parameters/shovel/{V}/s-reconnect0")[0]})
del_shovel("s-reconnect0")

# --------------------------------------------------------------------------
# 6. validation errors
base = {"src-uri": "amqp://", "src-queue": "q1", "dest-uri": "amqp://", "dest-queue": "q2"}


def without(*ks):
    return {k: v for k, v in base.items() if k not in ks}


def withv(**kw):
    d = dict(base)
    for k, v in kw.items():
        d[k.replace("_", "-")] = v
    return d


cases = [
    ("missing src-uri", without("src-uri")),
    ("missing dest-uri", without("dest-uri")),
    ("missing src-queue and src-exchange", without("src-queue")),
    ("both src-queue and src-exchange", withv(src_exchange="amq.direct")),
    ("both dest-queue and dest-exchange", withv(dest_exchange="amq.direct")),
    ("neither dest-queue nor dest-exchange (accepted)", without("dest-queue")),
    ("bad URI: not a uri", withv(src_uri="not a uri")),
    ("bad URI: http scheme", withv(src_uri="http://localhost")),
    ("bad URI: bad port", withv(src_uri="amqp://localhost:notaport")),
    ("bad URI: amqps without ssl options?", withv(src_uri="amqps://localhost")),
    ("bad URI in list", withv(src_uri=["amqp://", "foo://bar"])),
    ("src-uri empty list", withv(src_uri=[])),
    ("src-uri number", withv(src_uri=5)),
    ("dest-uri bad", withv(dest_uri="nope")),
    ("direct uri, missing vhost", withv(src_uri="amqp:///no-such-vhost")),
    ("ack-mode bogus", withv(ack_mode="bogus")),
    ("ack-mode number", withv(ack_mode=1)),
    ("src-prefetch-count -1 (accepted?)", withv(src_prefetch_count=-1)),
    ("src-prefetch-count string", withv(src_prefetch_count="10")),
    ("src-prefetch-count float (accepted?)", withv(src_prefetch_count=1.5)),
    ("src-delete-after -1", withv(src_delete_after=-1)),
    ("src-delete-after bogus", withv(src_delete_after="bogus")),
    ("no-ack + numeric delete-after", withv(ack_mode="no-ack", src_delete_after=5)),
    ("no-ack + queue-length (accepted)", withv(ack_mode="no-ack", src_delete_after="queue-length")),
    ("reconnect-delay string", withv(reconnect_delay="5")),
    ("reconnect-delay negative (accepted?)", withv(reconnect_delay=-1)),
    ("src-protocol bogus", withv(src_protocol="amqp09")),
    ("dest-protocol bogus", withv(dest_protocol="stomp")),
    ("dest-add-forward-headers string", withv(dest_add_forward_headers="yes")),
    ("dest-add-timestamp-header number", withv(dest_add_timestamp_header=1)),
    ("dest-publish-properties unknown key", withv(dest_publish_properties={"bogus": 1})),
    ("dest-publish-properties delivery_mode string", withv(dest_publish_properties={"delivery_mode": "2"})),
    ("dest-publish-properties not an object", withv(dest_publish_properties="x")),
    ("src-consumer-args unknown", withv(src_consumer_args={"x-foo": 1})),
    ("src-consumer-args x-priority ok", withv(src_consumer_args={"x-priority": 5})),
    ("src-queue-args bogus", withv(src_queue_args={"x-bogus": 1})),
    ("src-queue number", withv(src_queue=5)),
    ("dest-queue 300 chars", withv(dest_queue="q" * 300)),
    ("dest-exchange-key number", dict(without("dest-queue"), **{"dest-exchange": "amq.direct", "dest-exchange-key": 5})),
    ("unknown key", withv(foo="bar")),
    ("two unknown keys", withv(foo="bar", baz=1)),
    ("multiple errors at once", {"src-queue": "a", "src-exchange": "b", "ack-mode": "x", "dest-uri": 5}),
    ("amqp10 src missing src-address", dict(without("src-queue"), **{"src-protocol": "amqp10"})),
    ("amqp10 dest missing dest-address", dict(without("dest-queue"), **{"dest-protocol": "amqp10"})),
    ("amqp10 dest with dest-queue", dict(base, **{"dest-protocol": "amqp10", "dest-address": "x"})),
    ("empty value object", {}),
]
for title, val in cases:
    st, body = put_shovel("vtest", val)
    out(f"validation: {title}", {"value": val, "status": st, "body": body})
    if st in (201, 204):
        del_shovel("vtest")
time.sleep(1)

for title, path, raw in [
    ("value is a string", f"/parameters/shovel/{V}/vtest", json.dumps({"value": "str"}).encode()),
    ("value is a list", f"/parameters/shovel/{V}/vtest", json.dumps({"value": [1, 2]}).encode()),
    ("no value key", f"/parameters/shovel/{V}/vtest", json.dumps({"src-uri": "amqp://"}).encode()),
    ("invalid JSON body", f"/parameters/shovel/{V}/vtest", b"{not json"),
    ("vhost does not exist", "/parameters/shovel/no-such-vhost/vtest", json.dumps({"value": base}).encode()),
    ("component/vhost/name in body ignored? (matching)", f"/parameters/shovel/{V}/vtest",
     json.dumps({"vhost": "/", "component": "shovel", "name": "vtest", "value": base}).encode()),
    ("update existing (PUT again, same value)", f"/parameters/shovel/{V}/vtest", json.dumps({"value": base}).encode()),
]:
    st, body = http("PUT", path, raw)
    out(f"validation(raw body): {title}", {"status": st, "body": body})
st, body = show("GET", f"/parameters/shovel/{V}/vtest")
show("DELETE", f"/parameters/shovel/{V}/vtest")
show("DELETE", f"/parameters/shovel/{V}/vtest", title="DELETE /api/parameters/shovel/%2F/vtest again (already gone)")

# --------------------------------------------------------------------------
# 7. per-vhost listing + export with a shovel in another vhost and with passwords
put_shovel("s-other", {"src-uri": "amqp:///shv-other", "src-queue": "oq", "dest-uri": "amqp://guest:secret@localhost/shv-other",
                       "dest-queue": "oq2"}, vhost="shv-other")
put_shovel("s-keep", {"src-uri": "amqp://guest:guest@localhost:5672", "src-queue": "src-q", "dest-uri": "amqp://",
                      "dest-queue": "dst-q", "src-prefetch-count": 50, "ack-mode": "on-confirm",
                      "dest-add-forward-headers": False, "reconnect-delay": 5, "src-delete-after": "never"})
wait_for(lambda: (find("s-other", "shv-other") or {}).get("state") == "running" and
         (find("s-keep") or {}).get("state") == "running")
show("GET", "/shovels", title="GET /api/shovels with shovels in two vhosts")
show("GET", "/shovels/shv-other")
show("GET", "/parameters/shovel")
show("GET", "/parameters/shovel/shv-other")
st, d = http("GET", "/definitions")
out("GET /api/definitions -> .parameters (two shovels)", d.get("parameters"))
st, d = http("GET", "/definitions/shv-other")
out("GET /api/definitions/shv-other -> .parameters", d.get("parameters"))
for n, vh in [("s-other", "shv-other"), ("s-keep", V)]:
    del_shovel(n, vh)
time.sleep(1)
out("final GET /api/shovels", shovels())
http("DELETE", "/vhosts/shv-other")
