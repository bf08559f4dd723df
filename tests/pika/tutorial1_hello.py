#!/usr/bin/env python
"""Tutorial 1, "Hello World!": send.py / receive.py as a self-checking test.

The producer (on --pub-port) declares the queue and publishes "Hello World!" to
the default exchange; the consumer (on --sub-port) declares the same queue and
consumes with auto_ack. Checked twice: once with the message waiting in the
queue before the consumer starts (send.py then receive.py), once with the
consumer already running when the message is published. Each time the message
must arrive exactly once, unchanged.
"""

from common import (check_eq, connect, main, parse_args, pump_for,
                    pump_until, unique, Worker)

args = parse_args(__doc__)
QUEUE = unique('hello')
BODY = 'Hello World!'


def send():
    # send.py
    connection = connect(args.pub_port)
    channel = connection.channel()
    channel.queue_declare(queue=QUEUE)
    channel.basic_publish(exchange='', routing_key=QUEUE, body=BODY)
    print(" [x] Sent 'Hello World!'")
    connection.close()


class Receiver:
    # receive.py, with the deliveries recorded instead of only printed
    def __init__(self):
        self.received = []
        self.connection = connect(args.sub_port)
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue=QUEUE)
        self.consumer_tag = self.channel.basic_consume(
            queue=QUEUE, on_message_callback=self.callback, auto_ack=True)

    def callback(self, ch, method, properties, body):
        print(f" [x] Received {body}")
        self.received.append((method, properties, body))

    def check_one(self, phase):
        pump_until(self.connection, lambda: self.received, 5, '%s: the message' % phase)
        # keep consuming a little: a duplicate would show up here
        pump_for(self.connection, 0.3)
        check_eq(len(self.received), 1, '%s: number of deliveries' % phase)
        method, properties, body = self.received[0]
        check_eq(body, BODY.encode(), '%s: body' % phase)
        check_eq(method.exchange, '', '%s: exchange' % phase)
        check_eq(method.routing_key, QUEUE, '%s: routing key' % phase)
        check_eq(method.redelivered, False, '%s: redelivered' % phase)
        check_eq(method.consumer_tag, self.consumer_tag, '%s: consumer tag' % phase)

    def close(self):
        self.channel.basic_cancel(self.consumer_tag)
        self.connection.close()


def test():
    # Phase 1: send.py first, the message waits in the queue; then receive.py.
    send()
    receiver = Receiver()
    receiver.check_one('message published before the consumer started')
    receiver.close()

    # Phase 2: receive.py already running when send.py publishes.
    def consume(w):
        r = Receiver()
        w.ready.set()
        r.check_one('message published while consuming')
        r.close()

    t = Worker('receiver', consume)
    t.start()
    t.wait_ready()
    send()
    t.join_checked(10)

    # Nothing left behind: the queue is empty and has no consumer.
    connection = connect(args.sub_port)
    channel = connection.channel()
    ok = channel.queue_declare(queue=QUEUE, passive=True)
    check_eq(ok.method.message_count, 0, 'messages left in the queue')
    check_eq(ok.method.consumer_count, 0, 'consumers left on the queue')
    channel.queue_delete(queue=QUEUE)
    connection.close()
    return 'queue %s: "Hello World!" received exactly once, twice over' % QUEUE


if __name__ == '__main__':
    main('tutorial1_hello', test)
