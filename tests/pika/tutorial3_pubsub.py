#!/usr/bin/env python
"""Tutorial 3, "Publish/Subscribe": emit_log.py / receive_logs.py as a
self-checking test.

A fanout exchange 'logs'; two subscribers (on --sub-port), each with an
exclusive server-named queue bound to it; the emitter (on --pub-port) publishes
log lines. Checked: the queue names are server-generated ('amq.gen-...'), both
subscribers get every message in order, and once a subscriber's connection is
closed its queue is gone (a passive declare fails with 404 NOT_FOUND) and
later messages go to the remaining subscriber only. Also: a passive declare of
the live exclusive queue from another connection fails with 405
RESOURCE_LOCKED.
"""

from common import (LogSubscriber, check, check_eq, connect, expect_channel_error,
                    main, parse_args, unique, wait_for_messages)

args = parse_args(__doc__)
EXCHANGE = unique('logs')


def test():
    # receive_logs.py, twice
    sub1 = LogSubscriber('sub1', args.sub_port, EXCHANGE, 'fanout')
    sub2 = LogSubscriber('sub2', args.sub_port, EXCHANGE, 'fanout')
    for s in (sub1, sub2):
        check(s.queue_name.startswith('amq.gen-'),
              'server-named queue %r does not start with amq.gen-', s.queue_name)
    check(sub1.queue_name != sub2.queue_name, 'both subscribers got queue %s', sub1.queue_name)

    # emit_log.py
    connection = connect(args.pub_port)
    channel = connection.channel()
    channel.exchange_declare(exchange=EXCHANGE, exchange_type='fanout')
    first = ['info: Hello World! #%d' % i for i in range(10)]
    for message in first:
        channel.basic_publish(exchange=EXCHANGE, routing_key='', body=message)
        print(f" [x] Sent {message}")
    expected = [('', m) for m in first]
    wait_for_messages({sub1: expected, sub2: expected}, 'first batch, both subscribers')

    # A live exclusive queue cannot be used from another connection.
    expect_channel_error(
        connection, 405, 'RESOURCE_LOCKED',
        "passive declare of another connection's exclusive queue",
        lambda ch: ch.queue_declare(queue=sub2.queue_name, passive=True))

    # Closing sub1's connection deletes its exclusive queue.
    sub1.close()
    e = expect_channel_error(
        connection, 404, 'NOT_FOUND',
        "passive declare of the closed subscriber's queue",
        lambda ch: ch.queue_declare(queue=sub1.queue_name, passive=True))
    check(sub1.queue_name in e.reply_text, 'reply text %r does not name the queue',
          e.reply_text)

    second = ['warning: only sub2 is left #%d' % i for i in range(5)]
    for message in second:
        channel.basic_publish(exchange=EXCHANGE, routing_key='', body=message)
        print(f" [x] Sent {message}")
    wait_for_messages({sub2: expected + [('', m) for m in second]},
                      'second batch, remaining subscriber')
    check_eq(sub1.messages(), expected, 'messages of the closed subscriber')

    sub2.close()
    channel.exchange_delete(exchange=EXCHANGE)
    connection.close()
    return 'fanout %s: %d + %d messages, exclusive queues ok' % (
        EXCHANGE, len(first), len(second))


if __name__ == '__main__':
    main('tutorial3_pubsub', test)
