#!/usr/bin/env python3
"""warren soak driver (issue 14, part 5). Started by scripts/soak.sh.

Subcommands:
  run        the orchestrator: broker, clients, chaos loop, drain, checks
  publisher  one publisher client process (confirm mode, SelectConnection)
  consumer   one consumer client process (manual acks, BlockingConnection)
  analyze    re-run the checks on a finished work dir

Record files (one line per event, append-only, under <workdir>/rec/):
  P <id> <queue> <persistent 0|1> <msg-ttl 0|1> <ts>   published
  A <id> | N <id> | T <id>                             acked / nacked / confirm timed out
  B <ts> | U <ts>                                      connection blocked / unblocked
  R <id> <queue> <redelivered 0|1> <x-death reason|-> <ts>   received
A consumer writes and flushes its R line before it sends the ack.
"""

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

EXCHANGE_DLX = 'soak.dlx'
QUEUE_DLQ = 'soak.dlq'
QUEUE_TTL_MS = 3000
CONFIRM_TIMEOUT = 30.0
HOT = 3


# ----------------------------------------------------------------------------
# Topology (every client declares what it uses with the same arguments)

def queue_specs(n):
    """(name, durable, arguments) for every queue but the DLQ."""
    n = max(n, 12)
    n_ttl = max(3, n // 10)
    n_tr = max(3, n * 15 // 100)
    n_dur = n - n_ttl - n_tr
    specs = []
    for i in range(n_dur):
        specs.append(('soak.dur.%03d' % i, True, {'x-dead-letter-exchange': EXCHANGE_DLX}))
    for i in range(n_tr):
        specs.append(('soak.tr.%03d' % i, False, {}))
    for i in range(n_ttl):
        specs.append(('soak.ttl.%03d' % i, True,
                      {'x-message-ttl': QUEUE_TTL_MS, 'x-dead-letter-exchange': EXCHANGE_DLX}))
    return specs


def queue_kind(name):
    if name == QUEUE_DLQ:
        return 'dlq'
    return name.split('.')[1]  # dur | tr | ttl


def declare_blocking(ch, specs, names):
    ch.exchange_declare(EXCHANGE_DLX, 'fanout', durable=True)
    ch.queue_declare(QUEUE_DLQ, durable=True)
    ch.queue_bind(QUEUE_DLQ, EXCHANGE_DLX)
    for name, durable, args in specs:
        if name in names:
            ch.queue_declare(name, durable=durable, arguments=args)


def conn_params(port):
    import pika
    return pika.ConnectionParameters(
        host='127.0.0.1', port=port,
        credentials=pika.PlainCredentials('guest', 'guest'),
        heartbeat=10, blocked_connection_timeout=None,
        connection_attempts=1, socket_timeout=5, stack_timeout=15)


def log(name, *msg):
    print('%s %s %s' % (time.strftime('%H:%M:%S'), name, ' '.join(str(m) for m in msg)), flush=True)


# ----------------------------------------------------------------------------
# Publisher

class Publisher:
    def __init__(self, a):
        self.a = a
        self.specs = queue_specs(a.queues)
        self.hot = [s for s in self.specs if s[0].startswith('soak.dur.')][:HOT]
        self.others = self.specs
        self.rec = open(os.path.join(a.dir, 'rec', 'pub-%s.rec' % a.name), 'a', buffering=1 << 16)
        self.stop = False
        self.counter = 0
        self.prefix = '%s.%d' % (a.name, os.getpid())
        self.rng = random.Random()

    def main(self):
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, 'stop', True))
        backoff = 0.3
        while not self.stop:
            opened = PubSession(self).run()
            self.rec.flush()
            if self.stop:
                break
            backoff = 0.3 if opened else min(backoff * 2, 5.0)
            time.sleep(backoff * (0.5 + self.rng.random()))
        self.rec.flush()

    def next_message(self):
        import pika
        r = self.rng.random()
        spec = self.rng.choice(self.hot) if r < 0.5 else self.rng.choice(self.others)
        name, durable, args = spec
        kind = queue_kind(name)
        persistent = self.rng.random() < (0.85 if durable else 0.5)
        expiration = None
        if kind == 'dur' and self.rng.random() < 0.05:
            expiration = str(self.rng.randint(1000, 6000))
        ttl = kind == 'ttl' or expiration is not None
        self.counter += 1
        mid = '%s.%d' % (self.prefix, self.counter)
        size = 200_000 if self.rng.random() < 0.005 else self.rng.randint(32, 1024)
        body = (mid + ' ').encode() + b'x' * size
        props = pika.BasicProperties(message_id=mid, delivery_mode=2 if persistent else 1,
                                     expiration=expiration, headers={'soak-id': mid})
        return mid, name, persistent, ttl, body, props


class PubSession:
    """One connection's life; run() returns when it is closed."""

    def __init__(self, p):
        self.p = p
        self.opened = False
        self.ch = None
        self.ready = False
        self.blocked = False
        self.seq = 0
        self.outstanding = collections.OrderedDict()  # seq -> (id, sent_at)
        self.tokens = 0.0
        self.last_tick = time.monotonic()
        self.stop_at = None
        self.closing = False
        self.watchdog = None

    def run(self):
        import pika
        try:
            self.conn = pika.SelectConnection(
                conn_params(self.p.a.port), on_open_callback=self.on_open,
                on_open_error_callback=self.on_open_error, on_close_callback=self.on_close)
            self.conn.ioloop.start()
        except Exception as e:  # noqa
            log(self.p.a.name, 'connection error:', repr(e))
        if self.watchdog:
            self.watchdog.cancel()
        return self.opened

    def on_open(self, conn):
        self.opened = True
        log(self.p.a.name, 'connected')
        conn.add_on_connection_blocked_callback(self.on_blocked)
        conn.add_on_connection_unblocked_callback(self.on_unblocked)
        conn.channel(on_open_callback=self.on_channel)

    def on_open_error(self, conn, err):
        log(self.p.a.name, 'open failed:', repr(err))
        conn.ioloop.stop()

    def on_close(self, conn, reason):
        log(self.p.a.name, 'closed:', repr(reason), 'unconfirmed:', len(self.outstanding))
        conn.ioloop.stop()

    def on_blocked(self, conn, frame):
        self.blocked = True
        self.p.rec.write('B %.3f\n' % time.time())
        log(self.p.a.name, 'blocked')

    def on_unblocked(self, conn, frame):
        self.blocked = False
        self.p.rec.write('U %.3f\n' % time.time())
        log(self.p.a.name, 'unblocked')

    def on_channel(self, ch):
        self.ch = ch
        ch.add_on_close_callback(self.on_channel_closed)
        ch.exchange_declare(EXCHANGE_DLX, 'fanout', durable=True)
        ch.queue_declare(QUEUE_DLQ, durable=True)
        ch.queue_bind(QUEUE_DLQ, EXCHANGE_DLX)
        for name, durable, args in self.p.specs:
            ch.queue_declare(name, durable=durable, arguments=args)
        ch.confirm_delivery(ack_nack_callback=self.on_confirm, callback=self.on_select_ok)

    def on_channel_closed(self, ch, reason):
        log(self.p.a.name, 'channel closed:', repr(reason))
        self.force_close()

    def on_select_ok(self, frame):
        self.ready = True
        self.last_tick = time.monotonic()
        self.conn.ioloop.call_later(0.05, self.tick)

    def force_close(self):
        if self.closing:
            return
        self.closing = True
        # A close that never completes (broker not reading) ends the process;
        # the orchestrator starts a new one.
        self.watchdog = threading.Timer(15.0, lambda: os._exit(3))
        self.watchdog.daemon = True
        self.watchdog.start()
        try:
            if self.conn.is_open:
                self.conn.close()
            else:
                self.conn.ioloop.stop()
        except Exception as e:  # noqa
            log(self.p.a.name, 'close error:', repr(e))
            self.conn.ioloop.stop()

    def on_confirm(self, frame):
        import pika
        m = frame.method
        code = 'A' if isinstance(m, pika.spec.Basic.Ack) else 'N'
        if m.multiple:
            while self.outstanding:
                seq = next(iter(self.outstanding))
                if seq > m.delivery_tag:
                    break
                mid, _ = self.outstanding.pop(seq)
                self.p.rec.write('%s %s\n' % (code, mid))
        else:
            item = self.outstanding.pop(m.delivery_tag, None)
            if item:
                self.p.rec.write('%s %s\n' % (code, item[0]))

    def tick(self):
        if self.closing or not self.conn.is_open:
            return
        self.conn.ioloop.call_later(0.05, self.tick)
        self.p.rec.flush()
        now = time.monotonic()
        dt, self.last_tick = now - self.last_tick, now
        if self.p.stop:
            if self.stop_at is None:
                self.stop_at = now
            if not self.outstanding or now - self.stop_at > 10:
                self.force_close()
            return
        if self.outstanding and not self.blocked:
            oldest = next(iter(self.outstanding.values()))[1]
            if now - oldest > CONFIRM_TIMEOUT:
                log(self.p.a.name, 'confirm timeout: %d unconfirmed' % len(self.outstanding))
                for mid, _ in self.outstanding.values():
                    self.p.rec.write('T %s\n' % mid)
                self.outstanding.clear()
                self.force_close()
                return
        if self.blocked:
            return
        self.tokens = min(self.tokens + self.p.a.rate * dt, self.p.a.rate)
        n = min(int(self.tokens), self.p.a.window - len(self.outstanding))
        for _ in range(max(n, 0)):
            mid, q, pers, ttl, body, props = self.p.next_message()
            self.seq += 1
            self.p.rec.write('P %s %s %d %d %.3f\n' % (mid, q, pers, ttl, time.time()))
            self.outstanding[self.seq] = (mid, now)
            self.ch.basic_publish('', q, body, props)
            self.tokens -= 1


# ----------------------------------------------------------------------------
# Consumer

def run_consumer(a):
    import pika
    specs = queue_specs(a.queues)
    names = set(a.consume.split(','))
    rng = random.Random()
    rec = open(os.path.join(a.dir, 'rec', 'con-%s.rec' % a.name), 'a')
    state = {'stop': False}
    signal.signal(signal.SIGTERM, lambda *_: state.__setitem__('stop', True))
    dmin, dmax = [float(x) / 1000 for x in a.delay_ms.split(':')]
    backoff = 0.3
    while not state['stop']:
        conn = None
        try:
            conn = pika.BlockingConnection(conn_params(a.port))
            ch = conn.channel()
            declare_blocking(ch, specs, names)
            ch.basic_qos(prefetch_count=a.prefetch)
            tags = {}

            def on_msg(ch, method, props, body, tags=tags):
                mid = props.message_id or '-'
                reason = '-'
                if props.headers and 'x-death' in props.headers:
                    try:
                        reason = props.headers['x-death'][0].get('reason', '?')
                        if isinstance(reason, bytes):
                            reason = reason.decode()
                    except Exception:  # noqa
                        reason = '?'
                q = tags.get(method.consumer_tag, '?')
                rec.write('R %s %s %d %s %.3f\n' % (mid, q, 1 if method.redelivered else 0,
                                                    reason, time.time()))
                rec.flush()
                if dmax > 0:
                    time.sleep(rng.uniform(dmin, dmax))
                if a.reject > 0 and rng.random() < a.reject:
                    ch.basic_reject(method.delivery_tag, requeue=True)
                else:
                    ch.basic_ack(method.delivery_tag)

            def consume_all():
                tags.clear()
                for q in sorted(names):
                    tags[ch.basic_consume(q, on_msg)] = q

            consume_all()
            log(a.name, 'consuming', len(names), 'queues')
            backoff = 0.3
            next_churn = time.monotonic() + rng.uniform(5, 20) if a.churn else float('inf')
            while not state['stop']:
                conn.process_data_events(time_limit=0.5)
                if time.monotonic() >= next_churn:
                    if rng.random() < 0.5:
                        log(a.name, 'churn: cancel and consume again')
                        for t in list(tags):
                            ch.basic_cancel(t)
                        conn.process_data_events(time_limit=1)
                        consume_all()
                        next_churn = time.monotonic() + rng.uniform(5, 20)
                    else:
                        log(a.name, 'churn: reconnect (unacked deliveries requeued)')
                        break
            conn.close()
        except Exception as e:  # noqa
            log(a.name, 'error:', repr(e))
            try:
                if conn is not None and conn.is_open:
                    conn.close()
            except Exception:  # noqa
                pass
            backoff = min(backoff * 2, 5.0)
        if not state['stop']:
            time.sleep(backoff * (0.5 + rng.random()))
    rec.flush()


# ----------------------------------------------------------------------------
# Orchestrator

def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def iso(t):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + '.%03dZ' % int((t % 1) * 1000)


class Broker:
    def __init__(self, o):
        self.o = o
        self.proc = None
        self.n = 0

    def start(self):
        self.n += 1
        logf = open(os.path.join(self.o.workdir, 'broker-%02d.log' % self.n), 'ab')
        cmd = [self.o.broker, '--port', str(self.o.port), '--bind', '127.0.0.1',
               '--data-dir', self.o.data, '--shards', '2', '--no-pin',
               '--http-port', '0', '--prometheus-port', '0',
               '--segment-size', str(8 << 20), '--disk-free-limit', str(32 << 20),
               '--queue-max-in-memory', '1000',
               '--log-level', 'info']
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('broker exited at start with %s' % self.proc.returncode)
            try:
                socket.create_connection(('127.0.0.1', self.o.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError('broker did not listen within 120 s')

    def stop(self, sig):
        p = self.proc
        p.send_signal(sig)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            self.o.event('broker_stop_timeout', 'no exit 30 s after %s; SIGKILL' % sig.name)
            p.kill()
            p.wait()
        return p.returncode


class Orchestrator:
    def __init__(self, a):
        self.a = a
        self.workdir = a.workdir
        self.data = a.data
        self.broker = a.broker
        self.port = free_port()
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.chaos_stop = threading.Event()
        self.clients = {}  # name -> [argv, Popen]
        self.clients_paused = False
        self.events = []
        self.counts = collections.Counter()
        self.peak = (0, None)
        self.chaos_log = open(os.path.join(self.workdir, 'chaos.log'), 'a', buffering=1)
        self.rss_log = open(os.path.join(self.workdir, 'rss.log'), 'a', buffering=1)
        self.b = Broker(self)
        os.makedirs(os.path.join(self.workdir, 'rec'), exist_ok=True)
        os.makedirs(os.path.join(self.workdir, 'clients'), exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        self.specs = queue_specs(a.queues)
        self.filler_dir = os.path.dirname(os.path.abspath(self.data))

    def event(self, kind, detail='', t=None):
        t = time.time() if t is None else t
        self.events.append({'t': t, 'kind': kind, 'detail': detail})
        self.chaos_log.write('%.3f %s %s %s\n' % (t, iso(t), kind, detail))
        log('chaos', kind, detail)

    # clients ---------------------------------------------------------------
    def client_specs(self):
        me = [sys.executable, os.path.abspath(__file__)]
        common = ['--port', str(self.port), '--dir', self.workdir, '--queues', str(self.a.queues)]
        out = []
        for i, rate in enumerate(self.a.pub_rates):
            out.append(('pub%d' % i, me + ['publisher', '--name', 'pub%d' % i, '--rate', str(rate),
                                          '--window', '200'] + common))
        names = [s[0] for s in self.specs]
        hot = names[:HOT]
        dur_tr = [n for n in names[HOT:] if queue_kind(n) in ('dur', 'tr')]
        cold = [n for n in dur_tr if queue_kind(n) == 'dur'][-2:]  # consumed only by the final drain
        dur_tr = [n for n in dur_tr if n not in cold]
        ttl = [n for n in names if queue_kind(n) == 'ttl']
        groups = {'fast0': hot[:2], 'fast1': hot[1:], 'fast2': [], 'slow0': []}
        for i, n in enumerate(dur_tr):
            groups[['fast0', 'fast1', 'fast2', 'slow0'][i % 4]].append(n)
        cons = [
            ('fast0', groups['fast0'], 50, '0:0', 0, 0.01),
            ('fast1', groups['fast1'], 50, '0:0', 0, 0.0),
            ('fast2', groups['fast2'], 50, '0:0', 0, 0.01),
            ('slow0', groups['slow0'], 10, '5:40', 0, 0.0),
            ('churn0', hot + groups['fast2'][:5], 30, '0:5', 1, 0.02),
            ('ttlslow', ttl, 5, '20:150', 0, 0.0),
            ('dlq', [QUEUE_DLQ], 50, '0:0', 0, 0.0),
        ]
        for name, qs, pf, delay, churn, reject in cons:
            argv = me + ['consumer', '--name', name, '--consume', ','.join(qs), '--prefetch', str(pf),
                         '--delay-ms', delay, '--reject', str(reject)] + common
            if churn:
                argv.append('--churn')
            out.append((name, argv))
        self.cold = cold
        return out

    def spawn(self, name, argv):
        logf = open(os.path.join(self.workdir, 'clients', name + '.log'), 'ab')
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        self.clients[name] = [argv, p]

    def stop_clients(self, timeout=20):
        self.clients_paused = True
        for argv, p in self.clients.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + timeout
        for name, (argv, p) in self.clients.items():
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log('orchestrator', 'client', name, 'did not stop; SIGKILL')
                p.kill()
                p.wait()

    # supervision ------------------------------------------------------------
    def supervise(self):
        while not self.stopping.is_set():
            with self.lock:
                if self.stopping.is_set():
                    break
                p = self.b.proc
                if p is not None and p.poll() is not None:
                    self.counts['unexpected_broker_exit'] += 1
                    self.event('UNEXPECTED_broker_exit', 'pid %d code %s' % (p.pid, p.returncode))
                    try:
                        self.b.start()
                        self.event('broker_started', 'pid %d' % self.b.proc.pid)
                    except Exception as e:  # noqa
                        self.event('UNEXPECTED_broker_start_failed', repr(e))
                if not self.clients_paused:
                    for name, (argv, cp) in list(self.clients.items()):
                        if cp.poll() is not None:
                            log('orchestrator', 'restart client', name, 'exit', cp.returncode)
                            self.spawn(name, argv)
                if p is not None and p.poll() is None:
                    r = rss_kib(p.pid)
                    if r:
                        self.rss_log.write('%.1f %d %d\n' % (time.time(), p.pid, r))
                        if r > self.peak[0]:
                            self.peak = (r, p.pid)
            self.stopping.wait(1.0)

    # chaos ------------------------------------------------------------------
    def chaos(self, end):
        lo, hi = self.a.chaos_interval
        kinds = ['kill_client', 'broker_sigterm', 'broker_sigkill']
        if self.a.disk_fill:
            kinds.append('disk_fill')
        rng = random.Random()
        bag = []
        while not self.chaos_stop.wait(rng.uniform(lo, hi)):
            if time.time() >= end:
                break
            if not bag:  # every kind once, in random order, then again
                bag = kinds[:]
                rng.shuffle(bag)
            kind = bag.pop()
            try:
                getattr(self, 'fault_' + kind)(rng)
            except Exception as e:  # noqa
                self.event('chaos_error', '%s: %r' % (kind, e))

    def fault_kill_client(self, rng):
        with self.lock:
            name = rng.choice(sorted(self.clients))
            p = self.clients[name][1]
            if p.poll() is None:
                p.kill()
            self.counts['client_kills'] += 1
            self.event('kill_client', '%s pid %d' % (name, p.pid))

    def restart_broker(self, sig, label):
        with self.lock:
            pid = self.b.proc.pid
            self.event(label, 'pid %d' % pid)
            t0 = time.time()
            code = self.b.stop(sig)
            self.event(label + '_exited', 'pid %d code %s after %.1f s' % (pid, code, time.time() - t0))
            self.b.start()
            self.event('broker_started', 'pid %d' % self.b.proc.pid)
            self.counts[label] += 1

    def fault_broker_sigterm(self, rng):
        self.restart_broker(signal.SIGTERM, 'broker_sigterm')

    def fault_broker_sigkill(self, rng):
        self.restart_broker(signal.SIGKILL, 'broker_sigkill')

    def fault_disk_fill(self, rng):
        filler = os.path.join(self.filler_dir, 'soak-filler')
        self.event('disk_fill_start', filler)
        r = subprocess.run(['dd', 'if=/dev/zero', 'of=' + filler, 'bs=1M'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        st = os.statvfs(self.filler_dir)
        hold = rng.uniform(5, 15)
        self.event('disk_full', 'dd rc %d (%s); free %d bytes; holding %.1f s'
                   % (r.returncode, r.stderr.strip().splitlines()[-2:] if r.stderr else '',
                      st.f_bavail * st.f_frsize, hold))
        self.chaos_stop.wait(hold)
        os.unlink(filler)
        self.counts['disk_fills'] += 1
        self.event('disk_fill_end', 'filler removed')

    # drain ------------------------------------------------------------------
    def queue_counts(self):
        import pika
        conn = pika.BlockingConnection(conn_params(self.port))
        counts = {}
        try:
            ch = conn.channel()
            for name in [s[0] for s in self.specs] + [QUEUE_DLQ]:
                try:
                    counts[name] = ch.queue_declare(name, passive=True).method.message_count
                except pika.exceptions.ChannelClosedByBroker:
                    counts[name] = 0  # a non-durable queue gone with a restart
                    ch = conn.channel()
        finally:
            conn.close()
        return counts

    def drain(self):
        names = [s[0] for s in self.specs] + [QUEUE_DLQ]
        me = [sys.executable, os.path.abspath(__file__)]
        argv = me + ['consumer', '--name', 'drain', '--consume', ','.join(names), '--prefetch', '200',
                     '--delay-ms', '0:0', '--reject', '0', '--port', str(self.port),
                     '--dir', self.workdir, '--queues', str(self.a.queues)]
        logf = open(os.path.join(self.workdir, 'clients', 'drain.log'), 'ab')
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
        recf = os.path.join(self.workdir, 'rec', 'con-drain.rec')
        t0 = time.time()
        zero_polls = 0
        ok = False
        last = None
        while time.time() - t0 < self.a.drain_timeout:
            time.sleep(2)
            try:
                c = self.queue_counts()
            except Exception as e:  # noqa
                log('drain', 'count error', repr(e))
                continue
            total = sum(c.values())
            size = os.path.getsize(recf) if os.path.exists(recf) else 0
            log('drain', 'messages ready: %d' % total)
            if total == 0 and size == last:
                zero_polls += 1
                if zero_polls >= 3:
                    ok = True
                    break
            else:
                zero_polls = 0
            last = size
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        left = {} if ok else {k: v for k, v in self.queue_counts().items() if v}
        return ok, time.time() - t0, left

    # main -------------------------------------------------------------------
    def run(self):
        a = self.a
        meta = {'minutes': a.minutes, 'port': self.port, 'queues': a.queues,
                'disk_fill': a.disk_fill, 'disk_fill_skip_reason': a.no_disk_fill_reason}
        t_start = time.time()
        self.b.start()
        self.event('broker_started', 'pid %d port %d' % (self.b.proc.pid, self.port))
        for name, argv in self.client_specs():
            self.spawn(name, argv)
        sup = threading.Thread(target=self.supervise, daemon=True)
        sup.start()
        time.sleep(min(15, a.minutes * 60 / 6))
        meta['rss_first_baseline_kib'] = rss_kib(self.b.proc.pid)
        end = t_start + a.minutes * 60
        chaos = threading.Thread(target=self.chaos, args=(end,), daemon=True)
        chaos.start()
        while time.time() < end:
            time.sleep(1)
        self.chaos_stop.set()
        chaos.join()
        self.event('chaos_stopped')
        filler = os.path.join(self.filler_dir, 'soak-filler')
        if os.path.exists(filler):
            os.unlink(filler)
        with self.lock:
            self.stop_clients()
            self.event('clients_stopped')
        meta['drain_ok'] = False
        try:
            self.restart_broker(signal.SIGTERM, 'final_restart')
            time.sleep(5)
            pid = self.b.proc.pid
            meta['rss_baseline_kib'] = rss_kib(pid)
            ok, secs, left = self.drain()
            self.event('drain_done', 'ok %s in %.0f s; left %s' % (ok, secs, left))
            meta['drain_ok'] = ok
            meta['drain_left'] = left
            time.sleep(5)
            meta['rss_final_kib'] = rss_kib(pid)  # None if that broker is gone
        except Exception as e:  # noqa: the report is still written
            self.event('UNEXPECTED_end_phase_error', repr(e))
            meta['drain_left'] = 'end phase failed: %r' % e
        meta['peak_rss_kib'] = self.peak[0]
        with self.lock:
            self.stopping.set()
            if self.b.proc is not None and self.b.proc.poll() is None:
                code = self.b.stop(signal.SIGTERM)
                self.event('broker_stopped', 'code %s' % code)
        meta['duration_s'] = time.time() - t_start
        meta['counts'] = dict(self.counts)
        meta['events'] = self.events
        with open(os.path.join(self.workdir, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=1)
        return analyze(self.workdir)

    def cleanup(self):
        self.stopping.set()
        self.chaos_stop.set()
        for argv, p in self.clients.values():
            if p.poll() is None:
                p.kill()
        if self.b.proc is not None and self.b.proc.poll() is None:
            self.b.proc.kill()


# ----------------------------------------------------------------------------
# Analysis

LOG_RE = re.compile(r'^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+(\w+)\s+([^\]]*)\]\s?(.*)$')
DISK_ERR_RE = re.compile(r'No space left|os error 28|write failed|fsync failed|fdatasync failed|'
                         r'page out|page file|compact|relocate|definitions log|final flush|not synced',
                         re.I)


def parse_iso(s):
    import calendar
    main, _, frac = s.partition('.')
    t = calendar.timegm(time.strptime(main, '%Y-%m-%dT%H:%M:%S'))
    return t + (float('0.' + frac) if frac else 0.0)


def analyze(workdir):
    with open(os.path.join(workdir, 'meta.json')) as f:
        meta = json.load(f)
    recdir = os.path.join(workdir, 'rec')
    pubs = {}
    acked, nacked, timedout = set(), set(), set()
    blocked = unblocked = 0
    receipts = collections.defaultdict(list)
    unknown_lines = 0
    for fn in sorted(os.listdir(recdir)):
        with open(os.path.join(recdir, fn), errors='replace') as f:
            for line in f:
                parts = line.split()
                try:
                    if not line.endswith('\n'):
                        raise ValueError('partial line')
                    c = parts[0]
                    if c == 'P':
                        pubs[parts[1]] = (parts[2], parts[3] == '1', parts[4] == '1', float(parts[5]))
                    elif c == 'A':
                        acked.add(parts[1])
                    elif c == 'N':
                        nacked.add(parts[1])
                    elif c == 'T':
                        timedout.add(parts[1])
                    elif c == 'B':
                        blocked += 1
                    elif c == 'U':
                        unblocked += 1
                    elif c == 'R':
                        receipts[parts[1]].append((float(parts[5]), parts[2], parts[3] == '1', parts[4], fn))
                    else:
                        raise ValueError(c)
                except (ValueError, IndexError):
                    unknown_lines += 1

    rep = []
    fails = []

    def out(s=''):
        rep.append(s)

    n_recv = sum(len(v) for v in receipts.values())
    n_drain = sum(1 for v in receipts.values() for r in v if r[4] == 'con-drain.rec')
    n_redel = sum(1 for v in receipts.values() for r in v if r[2])
    dlq_ids = {i for i, v in receipts.items() if any(r[1] == QUEUE_DLQ for r in v)}
    not_published = [i for i in receipts if i not in pubs]
    unconfirmed = len(pubs) - len(acked | nacked | timedout)

    # Invariant 1: confirmed persistent messages in durable queues, no TTL.
    must, ttl_set = [], []
    for i in acked:
        p = pubs.get(i)
        if p is None:
            continue
        q, pers, msg_ttl, _ = p
        kind = queue_kind(q)
        if not pers or kind not in ('dur', 'ttl'):
            continue
        if msg_ttl or kind == 'ttl':
            ttl_set.append(i)
        else:
            must.append(i)
    missing = sorted(i for i in must if i not in receipts)
    ttl_direct = sum(1 for i in ttl_set if any(r[1] != QUEUE_DLQ for r in receipts.get(i, ())))
    ttl_dlx = sum(1 for i in ttl_set if i in dlq_ids and not any(r[1] != QUEUE_DLQ for r in receipts[i]))
    ttl_unaccounted = len(ttl_set) - ttl_direct - ttl_dlx
    non_ttl_in_dlq = sorted(i for i in dlq_ids if i in pubs and not pubs[i][2]
                            and queue_kind(pubs[i][0]) != 'ttl')

    # Invariant 2: a second (third, ...) receipt of an id from the same source
    # (its queue, or the DLQ) carries redelivered.
    dup_ids = 0
    viol, dlq_viol = [], []
    for i, rs in receipts.items():
        rs.sort()
        for src in ('orig', 'dlq'):
            sub = [r for r in rs if (r[1] == QUEUE_DLQ) == (src == 'dlq')]
            if len(sub) > 1:
                dup_ids += 1
                bad = [r for r in sub[1:] if not r[2]]
                if bad:
                    (dlq_viol if src == 'dlq' else viol).append((i, sub))

    # Invariant 3: RSS.
    base = meta.get('rss_baseline_kib') or 0
    final = meta.get('rss_final_kib') or 0
    bound = max(base + 64 * 1024, int(base * 1.5))
    rss_ok = bool(base) and bool(final) and final <= bound

    # Invariant 4: broker log lines at ERROR (and panics) not explained by faults.
    events = meta.get('events', [])
    windows = []
    start = None
    for e in events:
        if e['kind'] == 'disk_fill_start':
            start = e['t']
        elif e['kind'] == 'disk_fill_end' and start is not None:
            windows.append((start - 1, e['t'] + 10))
            start = None
    if start is not None:
        windows.append((start - 1, float('inf')))
    err_total, explained, warn_total = 0, 0, 0
    unexplained = collections.Counter()
    example = {}
    for fn in sorted(os.listdir(workdir)):
        if not (fn.startswith('broker-') and fn.endswith('.log')):
            continue
        with open(os.path.join(workdir, fn), errors='replace') as f:
            for line in f:
                line = line.rstrip('\n')
                m = LOG_RE.match(line)
                if 'panicked at' in line:
                    err_total += 1
                    key = 'PANIC ' + re.sub(r'\d+', 'N', line)[:160]
                    unexplained[key] += 1
                    example.setdefault(key, '%s: %s' % (fn, line))
                    continue
                if not m:
                    continue
                level = m.group(2)
                if level == 'WARN':
                    warn_total += 1
                if level != 'ERROR':
                    continue
                err_total += 1
                t = parse_iso(m.group(1))
                msg = m.group(4)
                if any(a <= t <= b for a, b in windows) and DISK_ERR_RE.search(msg):
                    explained += 1
                    continue
                key = re.sub(r'\d+', 'N', msg)[:160]
                unexplained[key] += 1
                example.setdefault(key, '%s: %s' % (fn, line))

    counts = meta.get('counts', {})
    out('=' * 72)
    out('warren soak report: %s' % workdir)
    out('=' * 72)
    out('duration                %.1f min (traffic+chaos %s min)' % (meta.get('duration_s', 0) / 60,
                                                                  meta.get('minutes')))
    out('queues                  %d (+ %s)' % (len(queue_specs(meta.get('queues', 100))), QUEUE_DLQ))
    out('published               %d' % len(pubs))
    out('  confirmed (ack)       %d' % len(acked))
    out('  nacked                %d' % len(nacked))
    out('  confirm timed out     %d  (no confirm within %d s; publisher reconnected)' % (len(timedout), CONFIRM_TIMEOUT))
    out('  unconfirmed           %d  (connection lost before the confirm)' % unconfirmed)
    out('  blocked episodes      %d  (connection.blocked received; %d connection.unblocked)'
        % (blocked, unblocked))
    out('received                %d  (%d distinct ids)' % (n_recv, len(receipts)))
    out('  in the final drain    %d' % n_drain)
    out('  redelivered           %d' % n_redel)
    out('  ids received >1 time  %d' % dup_ids)
    out('  dead-lettered         %d distinct ids received from %s' % (len(dlq_ids), QUEUE_DLQ))
    out('TTL messages (confirmed, persistent, durable queue): %d' % len(ttl_set))
    out('  received directly     %d' % ttl_direct)
    out('  via DLX only          %d' % ttl_dlx)
    out('  expired-unaccounted   %d  (neither: not checked; dead-lettering is at-most-once)' % ttl_unaccounted)
    out('broker restarts         SIGTERM %d, SIGKILL %d, unexpected exits %d'
        % (counts.get('broker_sigterm', 0), counts.get('broker_sigkill', 0),
           counts.get('unexpected_broker_exit', 0)))
    out('client kills            %d' % counts.get('client_kills', 0))
    if meta.get('disk_fill'):
        out('disk fills              %d' % counts.get('disk_fills', 0))
    else:
        out('disk fills              skipped: %s' % meta.get('disk_fill_skip_reason'))
    out('RSS                     first baseline %s KiB; final-restart baseline %s KiB; peak %s KiB; '
        'after drain %s KiB' % (meta.get('rss_first_baseline_kib'), base, meta.get('peak_rss_kib'), final))
    out('drain                   %s' % ('complete' if meta.get('drain_ok') else
                                        'INCOMPLETE, left: %s' % meta.get('drain_left')))
    if unknown_lines:
        out('record lines skipped    %d (partial lines of killed clients)' % unknown_lines)
    if not_published:
        out('received, never recorded as published: %d (e.g. %s)' % (len(not_published), not_published[:5]))
    if non_ttl_in_dlq:
        out('WARN: %d ids without TTL reached the DLQ, e.g. %s' % (len(non_ttl_in_dlq), non_ttl_in_dlq[:5]))
    out('-' * 72)

    def inv(name, ok, detail):
        out('%-5s %s  %s' % ('PASS' if ok else 'FAIL', name, detail))
        if not ok:
            fails.append(name)

    inv('1 confirmed persistent delivered', not missing and meta.get('drain_ok'),
        '%d checked, %d missing' % (len(must), len(missing)))
    for i in missing[:20]:
        p = pubs[i]
        out('        missing %s queue %s published %s' % (i, p[0], iso(p[3])))
    inv('2 duplicates only redelivered', not viol,
        '%d ids received more than once, %d without redelivered' % (dup_ids, len(viol)))
    for i, sub in viol[:20]:
        out('        %s: %s' % (i, ', '.join('%s %s redelivered=%s (%s)' % (iso(r[0]), r[1], r[2], r[4])
                                             for r in sub)))
    if dlq_viol:
        out('WARN  %d ids dead-lettered twice without redelivered (at-least-once DLX across a crash), e.g. %s'
            % (len(dlq_viol), [v[0] for v in dlq_viol[:5]]))
    inv('3 RSS back to baseline', rss_ok,
        'after drain %d KiB <= bound %d KiB (baseline %d KiB +64 MiB or x1.5)' % (final, bound, base)
        if rss_ok else 'after drain %d KiB > bound %d KiB (baseline %d KiB)' % (final, bound, base))
    inv('4 no unexplained error log lines', not unexplained,
        '%d ERROR/panic lines, %d explained by disk fills, %d unexplained (%d WARN lines, not checked)'
        % (err_total, explained, sum(unexplained.values()), warn_total))
    for key, n in unexplained.most_common(20):
        out('        %dx %s' % (n, example[key][:300]))
    inv('5 broker never exited on its own', not counts.get('unexpected_broker_exit'),
        '%d unexpected exits' % counts.get('unexpected_broker_exit', 0))
    out('=' * 72)
    text = '\n'.join(rep)
    print(text)
    with open(os.path.join(workdir, 'report.txt'), 'w') as f:
        f.write(text + '\n')
    return 1 if fails else 0


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('run')
    r.add_argument('--minutes', type=float, default=30)
    r.add_argument('--workdir', required=True)
    r.add_argument('--data', required=True)
    r.add_argument('--broker', required=True)
    r.add_argument('--queues', type=int, default=100)
    r.add_argument('--pub-rates', default='100,100,50,50')
    r.add_argument('--chaos-interval', default='20:60')
    r.add_argument('--no-disk-fill', default=None, metavar='REASON')
    r.add_argument('--drain-timeout', type=float, default=600)
    for name in ('publisher', 'consumer'):
        c = sub.add_parser(name)
        c.add_argument('--name', required=True)
        c.add_argument('--port', type=int, required=True)
        c.add_argument('--dir', required=True)
        c.add_argument('--queues', type=int, default=100)
        if name == 'publisher':
            c.add_argument('--rate', type=float, default=100)
            c.add_argument('--window', type=int, default=200)
        else:
            c.add_argument('--consume', required=True)
            c.add_argument('--prefetch', type=int, default=50)
            c.add_argument('--delay-ms', default='0:0')
            c.add_argument('--reject', type=float, default=0.0)
            c.add_argument('--churn', action='store_true')
    an = sub.add_parser('analyze')
    an.add_argument('workdir')
    a = ap.parse_args()
    if a.cmd == 'publisher':
        import logging
        logging.basicConfig(level=logging.WARNING)
        Publisher(a).main()
    elif a.cmd == 'consumer':
        import logging
        logging.basicConfig(level=logging.CRITICAL)
        run_consumer(a)
    elif a.cmd == 'analyze':
        sys.exit(analyze(a.workdir))
    else:
        a.pub_rates = [float(x) for x in a.pub_rates.split(',')]
        a.chaos_interval = [float(x) for x in a.chaos_interval.split(':')]
        a.disk_fill = a.no_disk_fill is None
        a.no_disk_fill_reason = a.no_disk_fill
        o = Orchestrator(a)

        def on_term(signum, frame):
            raise KeyboardInterrupt('signal %d' % signum)
        signal.signal(signal.SIGTERM, on_term)
        try:
            rc = o.run()
        except KeyboardInterrupt as e:
            log('orchestrator', 'interrupted:', e)
            rc = 130
        finally:
            o.cleanup()
        sys.exit(rc)


if __name__ == '__main__':
    main()
