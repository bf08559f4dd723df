#!/usr/bin/env python
"""Streams over AMQP 0-9-1 with pika, as a self-checking script.

A publisher (on --pub-port) declares a stream and publishes with confirms;
consumers (on --sub-port, another shard on warren) read it from `first`, a
numeric offset, `last` and `next`, each delivery carrying its offset in the
`x-stream-offset` header (a long); several readers replay it at once;
acks only return credit; the refusals have RabbitMQ's codes and texts.
Run by tests/streams.rs; against RabbitMQ:
  target/pyenv/bin/python tests/pika/streams.py --pub-port 5672 --sub-port 5672
"""

import time

import pika

from common import (check, check_eq, connect, expect_channel_error, main,
                    parse_args, pump_for, pump_until, unique)

args = parse_args(__doc__)
STREAM = unique('stream')
N = 200


def resource(name):
    return "queue '%s' in vhost '/'" % name


class Reader:
    """A consumer on its own connection, acking what it gets."""

    def __init__(self, offset=None, prefetch=50, ack=True):
        self.connection = connect(args.sub_port)
        self.channel = self.connection.channel()
        self.channel.basic_qos(prefetch_count=prefetch)
        self.got = []
        self.ack = ack
        arguments = {} if offset is None else {'x-stream-offset': offset}
        self.channel.basic_consume(STREAM, self.on_message, arguments=arguments)

    def on_message(self, channel, method, properties, body):
        offset = properties.headers['x-stream-offset']
        check(isinstance(offset, int), 'x-stream-offset is an integer: %r', offset)
        self.got.append((offset, body.decode()))
        if self.ack:
            channel.basic_ack(method.delivery_tag)

    def wait_for(self, n, what):
        pump_until(self.connection, lambda: len(self.got) >= n, 10, what)
        return self.got


def publish(connection, bodies):
    channel = connection.channel()
    channel.confirm_delivery()
    for b in bodies:
        channel.basic_publish('', STREAM, b, pika.BasicProperties(delivery_mode=2))
    channel.close()


def test():
    pub = connect(args.pub_port)
    channel = pub.channel()
    channel.queue_declare(STREAM, durable=True, arguments={'x-queue-type': 'stream'})
    publish(pub, ['m%d' % i for i in range(N)])
    # RabbitMQ updates the count every few seconds; warren at once.
    deadline = time.monotonic() + 10
    while channel.queue_declare(STREAM, durable=True, passive=True).method.message_count != N:
        check(time.monotonic() < deadline, 'message count after publishing is not %d', N)
        time.sleep(0.2)

    # Several readers from the start, at once.
    readers = [Reader('first') for _ in range(4)]
    for r in readers:
        r.wait_for(N, 'a replay from first')
        check_eq(r.got, [(i, 'm%d' % i) for i in range(N)], 'replay from first')

    at = Reader(150)
    check_eq(at.wait_for(N - 150, 'offset 150')[0], (150, 'm150'), 'offset 150')
    nxt = Reader('next')
    last = Reader('last')
    check(last.wait_for(1, 'last')[0][0] < N, 'last is a kept message')
    pump_for(nxt.connection, 0.2)
    check_eq(nxt.got, [], 'next before a new message')
    publish(pub, ['new'])
    check_eq(nxt.wait_for(1, 'next')[0], (N, 'new'), 'next')
    check_eq(readers[0].wait_for(N + 1, 'live')[N], (N, 'new'), 'a live reader')

    # Acks are credit: a reader that does not ack stops at its prefetch.
    slow = Reader('first', prefetch=5, ack=False)
    slow.wait_for(5, 'the prefetch')
    pump_for(slow.connection, 0.3)
    check_eq(len(slow.got), 5, 'deliveries without acks')
    # (A nack would do the same in RabbitMQ 3.13 and warren; 3.10 closes
    # the connection: tests/streams.rs checks nacks.)
    slow.channel.basic_ack(delivery_tag=0, multiple=True)
    slow.wait_for(10, 'more after the acks')
    check_eq(slow.got[5], (5, 'm5'), 'the next after the acks')

    # Refusals.
    expect_channel_error(
        pub, 406,
        "PRECONDITION_FAILED - consumer prefetch count is not set for '%s'" % resource(STREAM),
        'consume without prefetch',
        lambda ch: ch.basic_consume(STREAM, lambda *a: None))
    expect_channel_error(
        pub, 406, "PRECONDITION_FAILED - invalid property 'non-durable'",
        'non-durable stream',
        lambda ch: ch.queue_declare(unique('nd'), arguments={'x-queue-type': 'stream'}))
    expect_channel_error(
        pub, 406,
        "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for %s of queue type "
        "rabbit_stream_queue" % resource(unique('ttl')),
        'a stream with a TTL',
        lambda ch: ch.queue_declare(unique('ttl'), durable=True,
                                    arguments={'x-queue-type': 'stream', 'x-message-ttl': 1}))
    for what, call, text in [
        ('basic.get', lambda ch: ch.basic_get(STREAM),
         'NOT_IMPLEMENTED - basic.get not supported by stream queues %s' % resource(STREAM)),
        ('auto-ack', lambda ch: (ch.basic_qos(prefetch_count=1),
                                 ch.basic_consume(STREAM, lambda *a: None, auto_ack=True)),
         'NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues %s'
         % resource(STREAM)),
    ]:
        c = connect(args.sub_port)
        try:
            call(c.channel())
            raise AssertionError('%s: no error' % what)
        except pika.exceptions.ConnectionClosedByBroker as e:
            check_eq((e.reply_code, e.reply_text), (540, text), what)

    channel.queue_delete(STREAM)
    return '%d messages, %d readers' % (N, len(readers) + 4)


main('streams', test)
