#!/usr/bin/env python
"""pika sees warren's graceful shutdown: a consuming and a publishing
connection are open when the broker gets SIGTERM (pid --pid); both must be
closed by the broker with 320 CONNECTION_FORCED - broker shutdown.
Run by tests/shutdown.rs.
"""

import os
import signal
import time

import pika

from common import check_eq, connect, main, parse_args, unique

args = parse_args(__doc__, lambda p: p.add_argument('--pid', type=int, required=True))
QUEUE = unique('shutdown')


def test():
    pub = connect(args.pub_port)
    sub = connect(args.sub_port)
    pch = pub.channel()
    pch.queue_declare(QUEUE, durable=True)
    pch.confirm_delivery()
    for i in range(100):
        pch.basic_publish('', QUEUE, b'%d' % i, pika.BasicProperties(delivery_mode=2))
    sch = sub.channel()
    sch.basic_qos(prefetch_count=10)
    sch.basic_consume(QUEUE, lambda ch, m, p, b: None)
    os.kill(args.pid, signal.SIGTERM)
    closed = []
    for c in (pub, sub):
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                c.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as e:
            closed.append((e.reply_code, e.reply_text))
    check_eq(closed, [(320, 'CONNECTION_FORCED - broker shutdown')] * 2, 'both connections')
    return 'both closed with 320'


main('shutdown_320', test)
