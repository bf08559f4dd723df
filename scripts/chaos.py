"""Jepsen-style chaos run for warren's quorum queues (not part of CI).

Starts one etcd and three warren nodes (cluster "chaos") under
target/chaos/<timestamp>/ and declares the quorum queue `chaos`. For
--duration seconds, 2 publishers send unique ids (p<thread>-<n>, persistent,
mandatory, with publisher confirms) and 1 consumer (prefetch 100) acks
everything. Each client goes through a random live node and moves to another
node on any error or basic.cancel. Meanwhile a chaos thread hits one random
node every 5-15 s with one of: kill -9 and restart after 2-10 s, SIGSTOP for
3-12 s, or a clean SIGTERM restart. It never takes two nodes down at once.
A watcher polls the queue's etcd key (/warren/chaos/quorum/<store id>) every
100 ms. Then the cluster settles (until isr holds all three, or 30 s), the
queue is drained through one node, and the checker reports (printed and in
result.json):
  lost                            confirmed ids never consumed       (must be 0)
  duplicates_without_redelivered  repeat deliveries without the flag (must be 0)
  epoch_violations                epochs seen with two leaders       (must be 0)
It also reports confirmed, consumed, duplicates, unconfirmed_but_delivered,
nacked, elections and faults by kind. The exit code is 0 only when all three
checks hold; on a failure, confirmed.txt and deliveries.txt are also written.

Run: scripts/chaos.sh [--duration 1200] [--keep] [--seed N]
 or: target/pyenv/bin/python scripts/chaos.py --duration 90
chaos.log has every fault and client event with a timestamp, node-*.log the
nodes' logs. Without --keep only the logs and results stay; the data
directories are deleted.
"""
import argparse, base64, json, os, random, shutil, signal, socket, subprocess
import sys, threading, time, urllib.error, urllib.request
from collections import Counter, defaultdict

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
WARREN = os.environ.get("WARREN_BIN", os.path.join(TARGET, "release", "warren"))
CLUSTER = QUEUE = "chaos"
T0, LOG_LOCK, LOG = time.time(), threading.Lock(), []


def log(msg):
    line = "%s +%7.1fs %s" % (time.strftime("%H:%M:%S"), time.time() - T0, msg)
    with LOG_LOCK:
        print(line, flush=True)
        for f in LOG:
            f.write(line + "\n")
            f.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close(conn):
    try:
        if conn is not None and conn.is_open:
            conn.close()
    except Exception:
        pass


class Node:
    def __init__(self, short, work, etcd_url):
        self.name, self.etcd_url = "warren@" + short, etcd_url
        self.port, self.http = free_port(), free_port()
        self.data = os.path.join(work, "node-" + short)
        self.logpath = self.data + ".log"
        self.proc, self.down = None, False  # down: being killed, paused or restarted

    def start(self):
        os.makedirs(self.data, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARREN_")}
        env["WARREN_CONFIG"] = "/dev/null"
        with open(self.logpath, "ab") as out:
            out.write(("==== chaos: start %s at %s\n" % (self.name, time.ctime())).encode())
            out.flush()
            self.proc = subprocess.Popen(
                [WARREN, "--port", str(self.port), "--bind", "127.0.0.1", "--no-pin",
                 "--http-port", str(self.http), "--prometheus-port", "0",
                 "--data-dir", self.data, "--shards", "1", "--log-level", os.environ.get("CHAOS_LOG_LEVEL", "info"),
                 "--node-name", self.name, "--etcd", self.etcd_url, "--cluster-name",
                 CLUSTER, "--cluster-port", "0", "--advertise-address", "127.0.0.1"],
                stdout=out, stderr=out, env=env)

    def wait_up(self, secs=60):
        """Until the HTTP port answers (any status)."""
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s" % (self.name, self.proc.returncode))
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/api/overview" % self.http, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("%s: HTTP port %d silent for %d s" % (self.name, self.http, secs))

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=30):
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("%s: still up %d s after SIGTERM, SIGKILL" % (self.name, timeout))
            self.proc.kill()
            self.proc.wait()


class Run:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.stop_load, self.stop_consumer, self.stop_all = (threading.Event() for _ in range(3))
        self.lock = threading.Lock()
        self.confirmed, self.deliveries = set(), []  # deliveries: (id, redelivered), in order
        self.rejected = Counter()  # nacked / unroutable publishes
        self.leaders = defaultdict(set)  # epoch -> leaders seen
        self.last_state, self.faults = None, Counter()
        self.busy = {}  # client -> (since, connection) while in a pika call
        self.on = {}  # client -> the node it is connected to
        self.nodes, self.etcd = [], None

    def quorum_states(self):
        """The queue's etcd values, through the v3 JSON gateway."""
        prefix = ("/warren/%s/quorum/" % CLUSTER).encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = json.dumps({"key": base64.b64encode(prefix).decode(),
                           "range_end": base64.b64encode(end).decode()}).encode()
        req = urllib.request.Request(self.etcd_url + "/v3/kv/range", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            return [json.loads(base64.b64decode(kv["value"])) for kv in json.load(r).get("kvs", [])]

    def watcher(self):
        while not self.stop_all.is_set():
            try:
                for v in self.quorum_states():
                    with self.lock:
                        self.leaders[v.get("epoch")].add(v.get("leader"))
                        if v != self.last_state:
                            log("watcher: epoch %s leader %s isr %s" % (
                                v.get("epoch"), v.get("leader"), v.get("isr")))
                        self.last_state = v
            except Exception as e:
                log("watcher: %r" % e)
                time.sleep(0.5)
            time.sleep(0.1)

    def watchdog(self):
        """Shuts the socket of a client blocked over 60 s in one pika call
        (a confirm or a delivery that never comes), so that it reconnects."""
        while not self.stop_all.wait(1):
            for who, (since, conn) in list(self.busy.items()):
                if conn is not None and time.time() - since > 60:
                    log("%s: stuck for 60 s, shutting its socket" % who)
                    self.busy[who] = (time.time(), conn)
                    try:
                        conn._impl._transport._sock.shutdown(socket.SHUT_RDWR)
                    except Exception as e:
                        log("%s: socket shutdown: %r" % (who, e))

    def connect(self, who, node=None, avoid=None):
        if node is None:
            up = [n for n in self.nodes if not n.down] or self.nodes
            node = random.choice([n for n in up if n is not avoid] or up)
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", node.port, "/", pika.PlainCredentials("guest", "guest"), heartbeat=4,
            socket_timeout=5, stack_timeout=10, blocked_connection_timeout=30))
        self.busy[who] = (time.time(), conn)
        self.on[who] = node.name
        log("%s: on %s" % (who, node.name))
        return node, conn

    def client(self, who, stop, body):
        """Runs body(conn) through random nodes until `stop`; any exception
        or a return means: log, move to another node, go on."""
        node = conn = None
        while not stop.is_set():
            try:
                node, conn = self.connect(who, avoid=node)
                body(conn)
            except Exception as e:
                log("%s: %r" % (who, e))
                time.sleep(0.2)
            finally:
                self.busy.pop(who, None)
                close(conn)

    def publisher(self, t):
        who, n = "publisher %d" % t, [0]
        props = pika.BasicProperties(delivery_mode=2)

        def body(conn):
            ch = conn.channel()
            ch.confirm_delivery()
            while not self.stop_load.is_set():
                mid = "p%d-%d" % (t, n[0])
                n[0] += 1
                self.busy[who] = (time.time(), conn)
                try:
                    ch.basic_publish("", QUEUE, mid.encode(), props, mandatory=True)
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                    with self.lock:
                        self.rejected[type(e).__name__] += 1
                        self.rejected["%s on %s" % (who, self.on.get(who))] += 1
                    continue
                with self.lock:
                    self.confirmed.add(mid)
        self.client(who, self.stop_load, body)
        log("%s: stopped after %d publishes" % (who, n[0]))

    def consume(self, who, conn, stop, idle=None):
        """Consumes and acks until `stop`, a basic.cancel (returns False) or
        `idle` seconds without a message (returns True)."""
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)
        last = time.time()
        for method, _props, body in ch.consume(QUEUE, inactivity_timeout=1):
            self.busy[who] = (time.time(), conn)
            if method is not None:
                last = time.time()
                with self.lock:
                    self.deliveries.append((body.decode(errors="replace"), bool(method.redelivered)))
                ch.basic_ack(method.delivery_tag)
            if stop.is_set() or (idle and time.time() - last >= idle):
                return True
        log("%s: consumer cancelled by the broker" % who)
        return False

    def drain(self):
        """Through the leader (else any node) until idle for 5 s."""
        with self.lock:
            leader = (self.last_state or {}).get("leader")
        order = sorted(self.nodes, key=lambda n: n.name != leader)
        for attempt in range(10):
            conn = None
            try:
                _, conn = self.connect("drain", order[attempt % 3])
                if self.consume("drain", conn, threading.Event(), idle=5):
                    return True
            except Exception as e:
                log("drain: %r" % e)
                time.sleep(1)
            finally:
                self.busy.pop("drain", None)
                close(conn)
        return False

    def chaos(self):
        while not self.stop_load.wait(random.uniform(5, 15)):
            node, kind = random.choice(self.nodes), random.choice(["kill", "pause", "restart"])
            node.down = True
            self.faults[kind] += 1
            try:
                if kind == "kill":
                    d = random.uniform(2, 10)
                    log("FAULT kill -9 %s, restart in %.1f s" % (node.name, d))
                    node.signal(signal.SIGKILL)
                    node.proc.wait()
                    time.sleep(d)
                    node.start()
                elif kind == "pause":
                    d = random.uniform(3, 12)
                    log("FAULT SIGSTOP %s for %.1f s" % (node.name, d))
                    node.signal(signal.SIGSTOP)
                    time.sleep(d)
                    node.signal(signal.SIGCONT)
                else:
                    log("FAULT clean restart of %s" % node.name)
                    node.stop()
                    node.start()
                node.wait_up()
                log("FAULT over: %s is up" % node.name)
            except Exception as e:
                log("chaos: %r; starting %s again" % (e, node.name))
                try:
                    node.stop(5)
                    node.start()
                    node.wait_up()
                except Exception as e2:
                    log("chaos: %s does not come back: %r" % (node.name, e2))
            finally:
                node.down = False

    def start_cluster(self):
        ep, pp = free_port(), free_port()
        self.etcd_url, peer = "http://127.0.0.1:%d" % ep, "http://127.0.0.1:%d" % pp
        with open(os.path.join(self.work, "etcd.log"), "ab") as out:
            self.etcd = subprocess.Popen(
                ["etcd", "--name", "c", "--data-dir", os.path.join(self.work, "etcd"),
                 "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", "c=" + peer], stdout=out, stderr=out)
        deadline = time.time() + 20
        while True:
            try:
                self.quorum_states()
                break
            except Exception:
                if time.time() > deadline or self.etcd.poll() is not None:
                    raise RuntimeError("etcd did not come up (see etcd.log)")
                time.sleep(0.1)
        self.nodes = [Node(s, self.work, self.etcd_url) for s in "abc"]
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_up()
        log("etcd %s; %s" % (self.etcd_url, ", ".join(
            "%s amqp %d http %d" % (n.name, n.port, n.http) for n in self.nodes)))
        for attempt in range(30):
            conn = None
            try:
                _, conn = self.connect("declare", self.nodes[attempt % 3])
                conn.channel().queue_declare(QUEUE, durable=True,
                                             arguments={"x-queue-type": "quorum"})
                return
            except Exception as e:
                log("declare: %r" % e)
                time.sleep(1)
            finally:
                self.busy.pop("declare", None)
                close(conn)
        raise RuntimeError("could not declare the queue")

    def run(self):
        self.start_cluster()
        spawn = lambda f, *a: threading.Thread(target=guard(f), args=a, daemon=True, name=f.__name__)
        aux = [spawn(self.watcher), spawn(self.watchdog)]
        consumer = spawn(self.client, "consumer", self.stop_consumer,
                         lambda conn: self.consume("consumer", conn, self.stop_consumer))
        load = [spawn(self.publisher, 0), spawn(self.publisher, 1), spawn(self.chaos)]
        for t in aux + [consumer] + load:
            t.start()
        end = time.time() + self.args.duration
        while time.time() < end:
            time.sleep(min(10, max(0, end - time.time())))
            with self.lock:
                log("progress: %d confirmed, %d deliveries, faults %s, rejected %s" % (
                    len(self.confirmed), len(self.deliveries), dict(self.faults),
                    dict(self.rejected)))
        log("load and chaos stop")
        self.stop_load.set()
        for t in load:
            t.join(90)
            if t.is_alive():
                log("%s still blocked, going on without it" % t.name)
        for n in self.nodes:
            if n.proc.poll() is not None:
                log("%s is not running; starting it" % n.name)
                n.start()
            n.signal(signal.SIGCONT)
            n.wait_up()
        names, deadline = {n.name for n in self.nodes}, time.time() + 30
        while time.time() < deadline and not names <= set((self.last_state or {}).get("isr") or []):
            time.sleep(0.2)
        log("settled: isr %s" % (self.last_state or {}).get("isr"))
        self.stop_consumer.set()
        consumer.join(30)
        drained = self.drain()
        self.stop_all.set()
        for t in aux:
            t.join(5)
        return drained

    def shutdown(self):
        for n in self.nodes:
            try:
                n.stop(20)
            except Exception as e:
                log("stop %s: %r" % (n.name, e))
        if self.etcd:
            self.etcd.kill()
            self.etcd.wait()

    def check(self, drained):
        with self.lock:
            confirmed, deliveries = set(self.confirmed), list(self.deliveries)
        counts, dup_no_flag = Counter(), 0
        for mid, redelivered in deliveries:
            dup_no_flag += bool(counts[mid] and not redelivered)
            counts[mid] += 1
        lost = sorted(confirmed - counts.keys())
        violations = {str(e): sorted(map(str, ls)) for e, ls in self.leaders.items() if len(ls) > 1}
        epochs = sorted(self.leaders, key=lambda e: (e is None, e or 0))
        r = {"duration_s": self.args.duration, "seed": self.args.seed, "drained": drained,
             "confirmed": len(confirmed), "consumed": len(counts), "deliveries": len(deliveries),
             "lost": len(lost), "lost_sample": lost[:20],
             "duplicates": sum(1 for c in counts.values() if c > 1),
             "duplicates_without_redelivered": dup_no_flag,
             "unconfirmed_but_delivered": len(counts.keys() - confirmed),
             "nacked": self.rejected["NackError"], "unroutable": self.rejected["UnroutableError"],
             "elections": max(0, len(epochs) - 1), "epoch_violations": len(violations),
             "epoch_violation_detail": violations,
             "leaders_per_epoch": {str(e): sorted(map(str, self.leaders[e])) for e in epochs},
             "faults": dict(self.faults), "final_state": self.last_state}
        r["ok"] = not lost and dup_no_flag == 0 and not violations
        if not r["ok"]:
            with open(os.path.join(self.work, "confirmed.txt"), "w") as f:
                f.writelines(m + "\n" for m in sorted(confirmed))
            with open(os.path.join(self.work, "deliveries.txt"), "w") as f:
                f.writelines("%s %d\n" % d for d in deliveries)
        return r


def guard(f):
    def run(*a):
        try:
            f(*a)
        except BaseException as e:
            log("THREAD %s DIED: %r" % (threading.current_thread().name, e))
            raise
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=1200, help="seconds of load (1200)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()
    random.seed(args.seed)
    if not os.access(WARREN, os.X_OK):
        sys.exit("no warren binary at %s (BUILD=1 scripts/chaos.sh builds it)" % WARREN)
    work = os.path.join(TARGET, "chaos", time.strftime("%Y%m%dT%H%M%S"))
    os.makedirs(work)
    LOG.append(open(os.path.join(work, "chaos.log"), "a"))
    log("chaos: work dir %s, seed %d, duration %g s" % (work, args.seed, args.duration))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(args, work)
    try:
        result = run.check(run.run())
    finally:
        run.shutdown()
        if not args.keep:
            for d in ["etcd", "node-a", "node-b", "node-c"]:
                shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print("\n==== chaos summary (%s, seed %d)" % (work, args.seed))
    for k in ["confirmed", "consumed", "deliveries", "lost", "duplicates",
              "duplicates_without_redelivered", "unconfirmed_but_delivered", "nacked",
              "unroutable", "elections", "epoch_violations", "faults", "drained"]:
        print("  %-31s %s" % (k, result[k]))
    if result["lost"]:
        print("  lost (first 20): %s" % result["lost_sample"])
    if result["epoch_violations"]:
        print("  epochs with two leaders: %s" % result["epoch_violation_detail"])
    print("  RESULT: %s" % ("PASS" if result["ok"] else "FAIL"))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
