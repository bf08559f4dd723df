"""Shared plumbing for the tutorial test scripts (argument parsing, connections,
a watchdog so that no script can hang, and small helpers to report failures).

Each tutorial script stays close to the official RabbitMQ tutorial code
(python/pika, BlockingConnection API); this module only holds what the
self-checking part needs.
"""

import argparse
import os
import sys
import threading
import time
import traceback
import uuid

import pika

HOST = '127.0.0.1'

# A unique suffix for this run, so that queue/exchange names never collide with
# another run against the same broker (e.g. the tests run against one RabbitMQ).
RUN_ID = uuid.uuid4().hex[:10]


class TestFailure(Exception):
    pass


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--pub-port', type=int, default=5672,
                        help='port the producers connect to')
    parser.add_argument('--sub-port', type=int, default=5672,
                        help='port the consumers/workers connect to')
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def unique(name):
    """A name for this run only: 'hello' -> 'hello.<run id>'."""
    return '%s.%s' % (name, RUN_ID)


def start_watchdog(seconds=30):
    """Hard deadline for the whole script: exit 3 if it is still running."""
    def watchdog():
        time.sleep(seconds)
        sys.stderr.write('FAIL: watchdog: script still running after %ss, '
                         'aborting\n' % seconds)
        dump_threads()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(3)

    t = threading.Thread(target=watchdog, name='watchdog', daemon=True)
    t.start()


def dump_threads():
    frames = sys._current_frames()
    for t in threading.enumerate():
        frame = frames.get(t.ident)
        if frame is None or t.name == 'watchdog':
            continue
        sys.stderr.write('--- thread %s:\n' % t.name)
        sys.stderr.write(''.join(traceback.format_stack(frame)))


def connect(port):
    """A new BlockingConnection to 127.0.0.1:port as guest/guest."""
    params = pika.ConnectionParameters(
        host=HOST,
        port=port,
        virtual_host='/',
        credentials=pika.PlainCredentials('guest', 'guest'),
        socket_timeout=5,
        stack_timeout=10,
        blocked_connection_timeout=10,
    )
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError as e:
        raise TestFailure('cannot connect to %s:%d: %r' % (HOST, port, e))


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure('%s: expected %r, got %r' % (what, expected, actual))


def pump_until(connection, pred, timeout, what):
    """Run the connection's I/O loop (delivering to consumer callbacks) until
    pred() is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TestFailure('timed out after %.1fs waiting for %s' % (timeout, what))
        connection.process_data_events(time_limit=min(0.05, remaining))


def pump_for(connection, seconds):
    """Run the connection's I/O loop for `seconds` (to catch extra deliveries)."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        connection.process_data_events(time_limit=min(0.05, remaining))


def wait_event(event, timeout, what):
    if not event.wait(timeout):
        raise TestFailure('timed out after %.1fs waiting for %s' % (timeout, what))


class Worker(threading.Thread):
    """A thread running `body(self)`; an exception in it is kept and re-raised by
    join_checked(). Each such thread opens its own connection (pika connections
    are not thread-safe)."""

    def __init__(self, name, body):
        super().__init__(name=name, daemon=True)
        self._body = body
        self.error = None
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self):
        try:
            self._body(self)
        except BaseException as e:  # noqa: B902 - reported by join_checked
            self.error = e
            self.error_tb = traceback.format_exc()
            self.ready.set()

    def join_checked(self, timeout=10):
        self.join(timeout)
        if self.is_alive():
            raise TestFailure('thread %s did not finish within %ss' % (self.name, timeout))
        self.raise_if_failed()

    def raise_if_failed(self):
        if self.error is not None:
            sys.stderr.write('thread %s failed:\n%s' % (self.name, self.error_tb))
            raise TestFailure('thread %s failed: %r' % (self.name, self.error))

    def wait_ready(self, timeout=10):
        wait_event(self.ready, timeout, '%s to be ready' % self.name)
        self.raise_if_failed()


def main(name, test):
    """Run test() with a watchdog; print PASS/FAIL and exit 0/1."""
    start_watchdog(30)
    started = time.monotonic()
    try:
        summary = test()
    except TestFailure as e:
        sys.stdout.flush()
        sys.stderr.write('FAIL: %s: %s\n' % (name, e))
        sys.stderr.flush()
        os._exit(1)
    except Exception:  # noqa: B902 - anything else is a failure too
        sys.stdout.flush()
        sys.stderr.write('FAIL: %s: unexpected exception:\n%s' % (name, traceback.format_exc()))
        sys.stderr.flush()
        os._exit(2)
    print('PASS: %s (%.2fs)%s' % (name, time.monotonic() - started,
                                   (': ' + summary) if summary else ''))
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: don't wait for any leftover daemon thread / half-closed connection.
    os._exit(0)


class LogSubscriber:
    """receive_logs*.py from tutorials 3-5 in a thread: its own connection on
    `port`, the exchange declared, an exclusive server-named queue bound with
    each of `binding_keys` (None: one binding without a key, as the fanout
    tutorial does), consuming with auto_ack. Deliveries are recorded as
    (routing_key, body) pairs."""

    def __init__(self, name, port, exchange, exchange_type, binding_keys=None):
        self.name = name
        self.port = port
        self.exchange = exchange
        self.exchange_type = exchange_type
        self.binding_keys = binding_keys
        self.received = []
        self.lock = threading.Lock()
        self.queue_name = None
        self.thread = Worker(name, self._run)
        self.thread.start()
        self.thread.wait_ready()

    def _run(self, w):
        connection = connect(self.port)
        channel = connection.channel()
        channel.exchange_declare(exchange=self.exchange, exchange_type=self.exchange_type)
        result = channel.queue_declare(queue='', exclusive=True)
        self.queue_name = result.method.queue
        if self.binding_keys is None:
            channel.queue_bind(exchange=self.exchange, queue=self.queue_name)
        else:
            for binding_key in self.binding_keys:
                channel.queue_bind(
                    exchange=self.exchange, queue=self.queue_name, routing_key=binding_key)

        def callback(ch, method, properties, body):
            print(f" [{self.name}] {method.routing_key}:{body}")
            check_eq(method.exchange, self.exchange, 'exchange of a delivery to %s' % self.name)
            with self.lock:
                self.received.append((method.routing_key, body.decode()))

        channel.basic_consume(
            queue=self.queue_name, on_message_callback=callback, auto_ack=True)
        w.ready.set()
        while not w.stop.is_set():
            connection.process_data_events(time_limit=0.05)
        connection.close()

    def messages(self):
        self.thread.raise_if_failed()
        with self.lock:
            return list(self.received)

    def close(self):
        self.thread.stop.set()
        self.thread.join_checked(5)


def wait_for_messages(expected, what, timeout=5, settle=0.3):
    """expected: {LogSubscriber: [(routing_key, body), ...]}. Waits until each
    subscriber has at least as many deliveries as expected, then a little more
    (for extra, wrong deliveries to show up), then compares exactly."""
    deadline = time.monotonic() + timeout
    while not all(len(s.messages()) >= len(msgs) for s, msgs in expected.items()):
        if time.monotonic() > deadline:
            raise TestFailure('timed out waiting for %s; got so far: %s' % (
                what, {s.name: s.messages() for s in expected}))
        time.sleep(0.01)
    time.sleep(settle)
    for s, msgs in expected.items():
        got = s.messages()
        if got != msgs:
            raise TestFailure('%s: %s (bound with %r) got\n  %r\nexpected\n  %r' % (
                what, s.name, s.binding_keys, got, msgs))


def expect_channel_error(connection, code, text_prefix, what, call):
    """Runs call(channel) on a new channel of `connection`; it must fail with a
    channel.close from the broker with `code` and a reply text starting with
    `text_prefix`. Returns the ChannelClosedByBroker exception."""
    channel = connection.channel()
    try:
        call(channel)
    except pika.exceptions.ChannelClosedByBroker as e:
        print(' [x] %s: %s %s' % (what, e.reply_code, e.reply_text))
        check_eq(e.reply_code, code, 'reply code (%s)' % what)
        check(e.reply_text.startswith(text_prefix),
              'reply text (%s): %r does not start with %r', what, e.reply_text, text_prefix)
        check(not channel.is_open, 'channel still open after %s', what)
        return e
    raise TestFailure('%s: no error (expected %d %s)' % (what, code, text_prefix))
