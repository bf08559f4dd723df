"""Drains a queue of a running RabbitMQ into warren with a warren shovel,
checks the counts, and times it next to RabbitMQ's own shovel moving the
same backlog into itself. Run through scripts/shovel-from-rabbitmq.sh.

Steps (each printed as it goes):
  1. start warren (a fresh data dir) on WARREN_PORT / WARREN_HTTP_PORT;
  2. fill RabbitMQ's queue `mig-src` (durable, persistent 100 B bodies,
     publisher confirms) with MESSAGES messages (warren-loadgen);
  3. PUT a shovel on warren: src-uri = RabbitMQ, src-queue mig-src,
     dest-uri amqp:// (warren itself), dest-queue mig-dst, ack-mode
     on-confirm; time until RabbitMQ's queue is empty and warren's holds
     every message; check the counts (and that no message is left
     unacknowledged on either side); delete the shovel;
  4. the same backlog in RabbitMQ's `mig-src2`, moved by RabbitMQ's own
     shovel (on RabbitMQ, amqp:// to amqp://) into `mig-dst2`: the figure
     next to warren's;
  5. the same backlog in warren's `w-src`, moved by warren's shovel into
     `w-dst` (both ends warren): the shovel's own speed, without
     RabbitMQ's delivery rate as the ceiling.
PREFETCH (1000) sets src-prefetch-count of all three.
Exit status 0 only if every count matched.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import base64

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN", os.path.join(ROOT, "target", "release"))
RABBIT_HOST = os.environ.get("RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("RABBIT_PORT", "5672"))
RABBIT_HTTP = int(os.environ.get("RABBIT_HTTP_PORT", "15672"))
WARREN_PORT = int(os.environ.get("WARREN_PORT", "5690"))
WARREN_HTTP = int(os.environ.get("WARREN_HTTP_PORT", "15690"))
MESSAGES = int(os.environ.get("MESSAGES", "1000000"))
SIZE = int(os.environ.get("SIZE", "100"))
PREFETCH = int(os.environ.get("PREFETCH", "1000"))
RABBIT_URI = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/%2f"
WARREN_URI = f"amqp://guest:guest@127.0.0.1:{WARREN_PORT}/%2f"


def say(*a):
    print(*a, flush=True)


def http(port, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def count(host, port, queue):
    """Messages ready in `queue` (passive declare); 0 if it does not exist."""
    c = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
    try:
        ok = c.channel().queue_declare(queue, passive=True)
        return ok.method.message_count
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return 0
        raise
    finally:
        if c.is_open:
            c.close()


def queue_json(port, queue):
    st, q = http(port, "GET", f"/api/queues/%2f/{queue}")
    return q if st == 200 else {}


def delete_queue(host, port, queue):
    c = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
    try:
        c.channel().queue_delete(queue)
    finally:
        c.close()


def fill(queue, n, uri=RABBIT_URI, host=RABBIT_HOST, port=RABBIT_PORT):
    """Publishes until `queue` (at `uri`, counted at host:port) holds at
    least n messages; returns the exact count."""
    delete_queue(host, port, queue)
    have = 0
    while have < n:
        secs = max(1.0, min(30.0, (n - have) / 40000))
        subprocess.run(
            [os.path.join(BIN, "warren-loadgen"), "throughput", "--uri", uri,
             "--queue", queue, "--durable", "--persistent", "--consumers", "0",
             "--confirm", "1000", "--size", str(SIZE), "--duration", str(secs),
             "--warmup", "0"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # exit 1: "nothing was delivered"
        have = count(host, port, queue)
        say(f"   {queue}: {have} messages")
    return have


def timed_shovel(http_port, host, port, src, dst, n):
    """PUTs shovel `self` (amqp:// to amqp://, on-confirm) on the broker at
    http_port, waits until `dst` holds n and `src` is empty, deletes it;
    returns the seconds taken."""
    t0 = time.monotonic()
    st, body = http(http_port, "PUT", "/api/parameters/shovel/%2f/self", {"value": {
        "src-uri": "amqp://", "src-queue": src,
        "dest-uri": "amqp://", "dest-queue": dst, "ack-mode": "on-confirm",
        "src-prefetch-count": PREFETCH}})
    assert st in (201, 204), (st, body)
    time_until(
        f"the move {src} -> {dst}",
        lambda: count(host, port, dst) >= n and count(host, port, src) == 0, 3600)
    secs = time.monotonic() - t0
    http(http_port, "DELETE", "/api/shovels/vhost/%2f/self")
    return secs


def time_until(what, probe, timeout):
    t0 = time.monotonic()
    while not probe():
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def main():
    data = tempfile.mkdtemp(prefix="warren-shovel-")
    say(f"1. warren on {WARREN_PORT} (HTTP {WARREN_HTTP}), data in {data}")
    warren = subprocess.Popen(
        [os.path.join(BIN, "warren"), "--port", str(WARREN_PORT), "--bind", "127.0.0.1",
         "--http-port", str(WARREN_HTTP), "--prometheus-port", "0", "--data-dir", data,
         "--log-level", "warn"],
        env=dict(os.environ, WARREN_CONFIG="/dev/null"))
    ok = True
    try:
        time_until("warren's HTTP API", lambda: _up(WARREN_HTTP), 30)
        if not _up(RABBIT_HTTP):
            raise SystemExit(f"RabbitMQ's management API is not on {RABBIT_HTTP}")

        say(f"2. filling RabbitMQ's mig-src with {MESSAGES} x {SIZE} B (persistent)")
        n = fill("mig-src", MESSAGES)

        say("3. warren shovel: RabbitMQ mig-src -> warren mig-dst (on-confirm)")
        t0 = time.monotonic()
        st, body = http(WARREN_HTTP, "PUT", "/api/parameters/shovel/%2f/migrate", {"value": {
            "src-uri": RABBIT_URI, "src-queue": "mig-src",
            "dest-uri": "amqp://", "dest-queue": "mig-dst", "ack-mode": "on-confirm",
            "src-prefetch-count": PREFETCH}})
        assert st in (201, 204), (st, body)
        secs = time_until(
            "the move",
            lambda: count("127.0.0.1", WARREN_PORT, "mig-dst") >= n
            and count(RABBIT_HOST, RABBIT_PORT, "mig-src") == 0, 3600)
        secs = time.monotonic() - t0
        st, status = http(WARREN_HTTP, "GET", "/api/shovels/%2f")
        say(f"   status: {json.dumps(status)}")
        got = count("127.0.0.1", WARREN_PORT, "mig-dst")
        left = count(RABBIT_HOST, RABBIT_PORT, "mig-src")
        st, _ = http(WARREN_HTTP, "DELETE", "/api/shovels/vhost/%2f/migrate")
        assert st == 204, st
        # Unacked at the source would show once the shovel's connection is
        # gone: wait for it, then count again.
        time_until("the shovel's connection to close", lambda: not any(
            (c.get("client_properties") or {}).get("connection_name") == "Shovel migrate"
            for c in http(RABBIT_HTTP, "GET", "/api/connections")[1]), 60)
        left = count(RABBIT_HOST, RABBIT_PORT, "mig-src")
        warren_rate = n / secs
        say(f"   moved {got} of {n} in {secs:.2f} s: {warren_rate:,.0f} msg/s; "
            f"left in RabbitMQ: {left}")
        if got != n or left != 0:
            say("   COUNT MISMATCH")
            ok = False

        say("4. RabbitMQ's own shovel: mig-src2 -> mig-dst2 on RabbitMQ")
        n2 = fill("mig-src2", MESSAGES)
        delete_queue(RABBIT_HOST, RABBIT_PORT, "mig-dst2")
        secs2 = timed_shovel(RABBIT_HTTP, RABBIT_HOST, RABBIT_PORT, "mig-src2", "mig-dst2", n2)
        rabbit_rate = n2 / secs2
        say(f"   moved {n2} in {secs2:.2f} s: {rabbit_rate:,.0f} msg/s")
        say("5. warren's shovel inside warren: w-src -> w-dst (the same backlog)")
        n3 = fill("w-src", n, WARREN_URI, "127.0.0.1", WARREN_PORT)
        secs3 = timed_shovel(WARREN_HTTP, "127.0.0.1", WARREN_PORT, "w-src", "w-dst", n3)
        self_rate = n3 / secs3
        say(f"   moved {n3} in {secs3:.2f} s: {self_rate:,.0f} msg/s")
        say("")
        say(f"RESULT warren shovel (RabbitMQ -> warren): {n} msgs, {secs:.2f} s, {warren_rate:,.0f} msg/s")
        say(f"RESULT RabbitMQ shovel (RabbitMQ -> RabbitMQ): {n2} msgs, {secs2:.2f} s, {rabbit_rate:,.0f} msg/s")
        say(f"RESULT warren shovel (warren -> warren): {n3} msgs, {secs3:.2f} s, {self_rate:,.0f} msg/s")
        for q in ("mig-src", "mig-src2", "mig-dst2"):
            delete_queue(RABBIT_HOST, RABBIT_PORT, q)
    finally:
        warren.terminate()
        warren.wait(timeout=30)
        subprocess.run(["rm", "-rf", data])
    sys.exit(0 if ok else 1)


def _up(port):
    try:
        return http(port, "GET", "/api/overview")[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
