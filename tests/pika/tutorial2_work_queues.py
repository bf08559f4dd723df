#!/usr/bin/env python
"""Tutorial 2, "Work Queues": new_task.py / worker.py as a self-checking test.

A durable queue, persistent messages, workers with basic_qos(prefetch_count=1)
and manual acks; each dot in a task is 0.05 s of work. Checked:
  * a worker killed (SIGKILL, a separate process) while holding an unacked
    task: the task is redelivered, redelivered=True, to another worker;
  * fair dispatch: while one worker is busy with a long task, the other worker
    gets all the quick tasks published after it;
  * a worker that closes its connection without acking: the task is
    redelivered (redelivered=True) to the other worker;
  * every task is acked exactly once; only those two are delivered twice;
  * re-declaring the queue with the same arguments is fine, with a different
    'durable' flag fails with 406 PRECONDITION_FAILED.
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pika
from pika.exceptions import ChannelClosedByBroker

from common import (TestFailure, Worker, check, check_eq, connect, main,
                    parse_args, pump_for, unique)

SECONDS_PER_DOT = 0.05


def extra_args(parser):
    # internal: run as the worker process that gets killed
    parser.add_argument('--crasher-queue', help=argparse.SUPPRESS)


args = parse_args(__doc__, extra_args)
QUEUE = args.crasher_queue or unique('task_queue')


# ---------------------------------------------------------------- new_task.py
class TaskPublisher:
    def __init__(self):
        self.connection = connect(args.pub_port)
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue=QUEUE, durable=True)

    def publish(self, message):
        self.channel.basic_publish(
            exchange='',
            routing_key=QUEUE,
            body=message,
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent
            ))
        print(f" [x] Sent {message}")


# ------------------------------------------------------------------ worker.py
LOCK = threading.Lock()
DELIVERIES = []  # (worker name, body, redelivered, acked)
WORKERS = []


def start_worker(name, crash_on=None):
    """A worker thread (own connection). If crash_on is given, a first delivery
    (redelivered=False) of a task starting with it is not acked: the worker
    closes its connection instead."""

    def run(w):
        connection = connect(args.sub_port)
        channel = connection.channel()
        channel.queue_declare(queue=QUEUE, durable=True)
        crashed = []

        def callback(ch, method, properties, body):
            text = body.decode()
            check_eq(properties.delivery_mode, 2, 'delivery mode of %r' % text)
            if crash_on and text.startswith(crash_on) and not method.redelivered:
                print(f" [{name}] Received {text}, closing without ack")
                with LOCK:
                    DELIVERIES.append((name, text, method.redelivered, False))
                crashed.append(text)
                return
            print(f" [{name}] Received {text} (redelivered={method.redelivered})")
            time.sleep(body.count(b'.') * SECONDS_PER_DOT)
            print(f" [{name}] Done {text}")
            with LOCK:
                DELIVERIES.append((name, text, method.redelivered, True))
            ch.basic_ack(delivery_tag=method.delivery_tag)

        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(queue=QUEUE, on_message_callback=callback)
        w.ready.set()
        while not w.stop.is_set() and not crashed:
            connection.process_data_events(time_limit=0.05)
        # a "crash" closes the connection with the delivery unacked
        connection.close()

    w = Worker(name, run)
    w.start()
    w.wait_ready()
    WORKERS.append(w)
    return w


def crasher_main():
    """Role of the process that gets SIGKILLed: a worker that never acks."""
    connection = connect(args.sub_port)
    channel = connection.channel()
    channel.queue_declare(queue=QUEUE, durable=True)

    def callback(ch, method, properties, body):
        print('GOT %s redelivered=%s' % (body.decode(), method.redelivered), flush=True)

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=QUEUE, on_message_callback=callback)
    print('READY', flush=True)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)
    os._exit(4)


def start_crasher():
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--pub-port', str(args.pub_port),
         '--sub-port', str(args.sub_port), '--crasher-queue', QUEUE],
        stdout=subprocess.PIPE, text=True)
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()

    def next_line(what):
        try:
            line = lines.get(timeout=10)
        except queue.Empty:
            raise TestFailure('crasher process: timed out waiting for %s' % what)
        if line is None:
            raise TestFailure('crasher process exited (%s) before %s' % (proc.poll(), what))
        return line

    check_eq(next_line('READY'), 'READY', 'crasher process first line')
    return proc, next_line


def acked(name_filter=None):
    with LOCK:
        return [d for d in DELIVERIES if d[3] and (name_filter is None or d[0] == name_filter)]


def wait_acked(tasks, what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        with LOCK:
            done = {d[1] for d in DELIVERIES if d[3]}
        if set(tasks) <= done:
            return
        for w in WORKERS:
            w.raise_if_failed()
        if time.monotonic() > deadline:
            raise TestFailure('timed out waiting for %s; missing: %s'
                              % (what, sorted(set(tasks) - done)))
        time.sleep(0.01)


def test():
    publisher = TaskPublisher()
    published = []

    def publish(task):
        publisher.publish(task)
        published.append(task)

    # --- 1. a worker killed with an unacked task: redelivered to another worker
    proc, next_line = start_crasher()
    try:
        publish('crash-kill.')
        check_eq(next_line('the task'), 'GOT crash-kill. redelivered=False',
                 'what the worker to be killed got')
        w1 = start_worker('worker1', crash_on='crash-close')
        w2 = start_worker('worker2', crash_on='crash-close')
        publisher.connection.process_data_events(time_limit=0.3)
        with LOCK:
            check_eq(DELIVERIES, [], 'deliveries while the task is unacked at another worker')
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_acked(['crash-kill.'], 'the task of the killed worker')
    [(_, _, redelivered, _)] = acked()
    check_eq(redelivered, True, 'redelivered flag of the task of the killed worker')

    # --- 2. fair dispatch: the busy worker gets nothing more
    long_task = 'long' + '.' * 30        # 1.5 s
    quick_tasks = ['quick%d.' % i for i in range(1, 6)]
    before = len(acked())
    publish(long_task)
    for t in quick_tasks:
        publish(t)
    wait_acked([long_task] + quick_tasks, 'the long task and the quick tasks')
    with LOCK:
        phase = [d for d in DELIVERIES if d[3]][before:]
    busy = [d[0] for d in phase if d[1] == long_task][0]
    other = 'worker2' if busy == 'worker1' else 'worker1'
    check_eq(sorted(d[1] for d in phase if d[0] == busy), [long_task],
             'tasks of %s, which got the long task' % busy)
    check_eq(sorted(d[1] for d in phase if d[0] == other), quick_tasks,
             'tasks of %s, the free worker' % other)
    check_eq(phase[-1][1], long_task, 'task finished last')

    # --- 3. a worker closing its connection without ack: redelivered
    publish('crash-close.')
    wait_acked(['crash-close.'], 'the task of the worker that closed without ack')
    with LOCK:
        crash = [d for d in DELIVERIES if d[1] == 'crash-close.']
    check_eq(len(crash), 2, 'deliveries of crash-close.')
    check_eq((crash[0][2], crash[0][3]), (False, False), 'first delivery (redelivered, acked)')
    check_eq((crash[1][2], crash[1][3]), (True, True), 'second delivery (redelivered, acked)')
    check(crash[0][0] != crash[1][0], 'crash-close. redelivered to the same worker %s',
          crash[0][0])
    dead, survivor = crash[0][0], crash[1][0]
    (w1 if dead == 'worker1' else w2).join_checked(5)

    # --- 4. the remaining worker gets all the rest
    rest = ['after%d..' % i for i in range(1, 5)]
    for t in rest:
        publish(t)
    wait_acked(rest, 'the last tasks')
    check_eq([d[1] for d in acked()[-4:]], rest, 'last tasks (in order)')
    check(all(d[0] == survivor for d in acked()[-4:]), 'last tasks not all done by %s: %s',
          survivor, acked()[-4:])

    # --- every task acked exactly once; only the two crash tasks redelivered
    with LOCK:
        all_deliveries = list(DELIVERIES)
    done = sorted(d[1] for d in all_deliveries if d[3])
    check_eq(done, sorted(published), 'tasks acked (each exactly once)')
    redelivered = sorted(d[1] for d in all_deliveries if d[2])
    check_eq(redelivered, ['crash-close.', 'crash-kill.'], 'redelivered tasks')
    pump_for(publisher.connection, 0.2)
    check_eq(len(DELIVERIES), len(all_deliveries), 'number of deliveries (late extra ones)')

    # --- re-declaring: same arguments fine, different 'durable' -> 406
    channel = publisher.connection.channel()
    ok = channel.queue_declare(queue=QUEUE, durable=True)
    check_eq(ok.method.message_count, 0, 'messages left in the queue')
    check_eq(ok.method.consumer_count, 1, 'consumers on the queue')
    try:
        channel.queue_declare(queue=QUEUE, durable=False)
        raise TestFailure('re-declaring a durable queue as non-durable succeeded')
    except ChannelClosedByBroker as e:
        print(' [x] non-durable re-declare: %s %s' % (e.reply_code, e.reply_text))
        check_eq(e.reply_code, 406, 'reply code of an inequivalent re-declare')
        check(e.reply_text.startswith('PRECONDITION_FAILED'), 'reply text %r', e.reply_text)

    w = w1 if survivor == 'worker1' else w2
    w.stop.set()
    w.join_checked(5)
    publisher.channel.queue_delete(queue=QUEUE)
    publisher.connection.close()
    return '%d tasks on %s, fair dispatch and 2 redeliveries ok' % (len(published), QUEUE)


if __name__ == '__main__':
    if args.crasher_queue:
        crasher_main()
    else:
        main('tutorial2_work_queues', test)
