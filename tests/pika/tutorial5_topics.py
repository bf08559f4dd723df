#!/usr/bin/env python
"""Tutorial 5, "Topics": emit_log_topic.py / receive_logs_topic.py as a
self-checking test.

A topic exchange 'topic_logs'. Subscribers (on --sub-port), each with an
exclusive server-named queue, bound as in the tutorial:
  * Q1: "*.orange.*"
  * Q2: "*.*.rabbit" and "lazy.#"
  * all: "#"
  * kern: "kern.*" and "*.critical"
The emitter (on --pub-port) publishes the tutorial's example routing keys and
a few more; each queue must get exactly the matching ones, in order, and a
message matching two patterns of the same queue only once.
"""

from common import (LogSubscriber, connect, main, parse_args, unique,
                    wait_for_messages)

args = parse_args(__doc__)
EXCHANGE = unique('topic_logs')

# routing key -> the subscribers that must get it (besides 'all', which gets all)
EXPECTED = [
    ('quick.orange.rabbit', {'Q1', 'Q2'}),
    ('lazy.orange.elephant', {'Q1', 'Q2'}),
    ('quick.orange.fox', {'Q1'}),
    ('lazy.brown.fox', {'Q2'}),
    ('lazy.pink.rabbit', {'Q2'}),          # matches both of Q2's bindings: once
    ('quick.brown.fox', set()),
    ('orange', set()),
    ('quick.orange.new.rabbit', set()),
    ('lazy.orange.new.rabbit', {'Q2'}),
    ('quick.orange.male.rabbit', set()),
    ('lazy', {'Q2'}),                       # '#' matches zero words
    ('kern.critical', {'kern'}),            # matches both of kern's bindings: once
    ('kern.info', {'kern'}),
    ('cron.critical', {'kern'}),
    ('kern.disk.critical', set()),
    ('anonymous.info', set()),
    ('', set()),                            # '#' matches the empty key too
]


def test():
    # receive_logs_topic.py <binding keys...>
    subs = {
        'Q1': LogSubscriber('Q1', args.sub_port, EXCHANGE, 'topic', ['*.orange.*']),
        'Q2': LogSubscriber('Q2', args.sub_port, EXCHANGE, 'topic', ['*.*.rabbit', 'lazy.#']),
        'all': LogSubscriber('all', args.sub_port, EXCHANGE, 'topic', ['#']),
        'kern': LogSubscriber('kern', args.sub_port, EXCHANGE, 'topic',
                              ['kern.*', '*.critical']),
    }

    # emit_log_topic.py <routing key> <message>
    connection = connect(args.pub_port)
    channel = connection.channel()
    channel.exchange_declare(exchange=EXCHANGE, exchange_type='topic')
    expected = {s: [] for s in subs.values()}
    for routing_key, receivers in EXPECTED:
        message = 'Hello World! (%s)' % routing_key
        channel.basic_publish(exchange=EXCHANGE, routing_key=routing_key, body=message)
        print(f" [x] Sent {routing_key}:{message}")
        for name in receivers | {'all'}:
            expected[subs[name]].append((routing_key, message))

    wait_for_messages(expected, 'topic routing')

    for s in subs.values():
        s.close()
    channel.exchange_delete(exchange=EXCHANGE)
    connection.close()
    return 'topic %s: %d routing keys delivered as bound (%s)' % (
        EXCHANGE, len(EXPECTED),
        ', '.join('%s %d' % (s.name, len(m)) for s, m in expected.items()))


if __name__ == '__main__':
    main('tutorial5_topics', test)
