#!/usr/bin/env python
"""Tutorial 4, "Routing": emit_log_direct.py / receive_logs_direct.py as a
self-checking test.

A direct exchange 'direct_logs'. Subscribers (on --sub-port), each with an
exclusive server-named queue:
  * 'warn+err' bound with 'warning' and 'error' (and 'warning' a second time:
    a duplicate binding changes nothing),
  * 'info' bound with 'info',
  * 'err' bound with 'error' (two queues bound with the same key both get it).
The emitter (on --pub-port) publishes info/warning/error/debug messages (debug
is bound by nobody, 'Error' differs in case). Each subscriber must get exactly
the messages of its severities, once each, in order, with the severity as
routing key.
"""

from common import (LogSubscriber, connect, main, parse_args, unique,
                    wait_for_messages)

args = parse_args(__doc__)
EXCHANGE = unique('direct_logs')


def test():
    # receive_logs_direct.py warning error / info / error
    warn_err = LogSubscriber('warn+err', args.sub_port, EXCHANGE, 'direct',
                             ['warning', 'error', 'warning'])
    info = LogSubscriber('info', args.sub_port, EXCHANGE, 'direct', ['info'])
    err = LogSubscriber('err', args.sub_port, EXCHANGE, 'direct', ['error'])

    # emit_log_direct.py <severity> <message>, several times
    connection = connect(args.pub_port)
    channel = connection.channel()
    channel.exchange_declare(exchange=EXCHANGE, exchange_type='direct')
    logs = []
    for i in range(4):
        for severity, message in [('info', 'Hello World!'),
                                  ('warning', 'disk 90% full'),
                                  ('debug', 'nobody listens to this'),
                                  ('error', 'disk full'),
                                  ('Error', 'wrong case, unrouted'),
                                  ('info', 'still running')]:
            message = '%s #%d' % (message, i)
            channel.basic_publish(exchange=EXCHANGE, routing_key=severity, body=message)
            print(f" [x] Sent {severity}:{message}")
            logs.append((severity, message))

    def of(*severities):
        return [(s, m) for s, m in logs if s in severities]

    wait_for_messages({warn_err: of('warning', 'error'),
                       info: of('info'),
                       err: of('error')},
                      'direct routing by severity')

    for s in (warn_err, info, err):
        s.close()
    channel.exchange_delete(exchange=EXCHANGE)
    connection.close()
    return 'direct %s: %d messages, %d/%d/%d delivered as bound' % (
        EXCHANGE, len(logs), len(of('warning', 'error')), len(of('info')), len(of('error')))


if __name__ == '__main__':
    main('tutorial4_routing', test)
