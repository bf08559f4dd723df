#!/usr/bin/env python
"""Tutorial 6, "RPC": rpc_server.py / rpc_client.py as a self-checking test.

Two RPC servers (on --sub-port; the tutorial's way to scale out) consume
'rpc_queue' with basic_qos(prefetch_count=1) and manual acks, answer fib(n) to
the request's reply_to with its correlation_id. Clients (on --pub-port) each
have an exclusive server-named callback queue. Checked: a series of calls from
one client, then two clients calling at the same time, each also with several
requests in flight at once; every call gets its own correct answer, and no
client ever sees a reply it did not ask for.
"""

import threading
import time
import uuid

import pika

from common import (TestFailure, Worker, check, check_eq, connect, main,
                    parse_args, unique)

args = parse_args(__doc__)
RPC_QUEUE = unique('rpc_queue')


# ------------------------------------------------------------- rpc_server.py
def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


FIB = [0, 1]
while len(FIB) < 40:
    FIB.append(FIB[-1] + FIB[-2])

HANDLED = {}  # server name -> number of requests answered
HANDLED_LOCK = threading.Lock()


def rpc_server(w):
    connection = connect(args.sub_port)
    channel = connection.channel()
    channel.queue_declare(queue=RPC_QUEUE)

    def on_request(ch, method, props, body):
        n = int(body)
        print(f" [{w.name}] fib({n})")
        response = fib(n)
        ch.basic_publish(exchange='',
                         routing_key=props.reply_to,
                         properties=pika.BasicProperties(
                             correlation_id=props.correlation_id),
                         body=str(response))
        ch.basic_ack(delivery_tag=method.delivery_tag)
        with HANDLED_LOCK:
            HANDLED[w.name] = HANDLED.get(w.name, 0) + 1

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=RPC_QUEUE, on_message_callback=on_request)
    print(f" [{w.name}] Awaiting RPC requests")
    w.ready.set()
    while not w.stop.is_set():
        connection.process_data_events(time_limit=0.05)
    connection.close()


# ------------------------------------------------------------- rpc_client.py
class FibonacciRpcClient(object):

    def __init__(self, name):
        self.name = name
        self.connection = connect(args.pub_port)
        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue='', exclusive=True)
        self.callback_queue = result.method.queue
        check(self.callback_queue.startswith('amq.gen-'),
              'callback queue %r does not start with amq.gen-', self.callback_queue)

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.pending = {}    # correlation id -> n
        self.responses = {}  # correlation id -> body
        self.stray = []      # replies nobody here asked for (or duplicates)

    def on_response(self, ch, method, props, body):
        corr_id = props.correlation_id
        if corr_id in self.pending and corr_id not in self.responses:
            check_eq(method.routing_key, self.callback_queue, 'routing key of a reply')
            self.responses[corr_id] = body
        else:
            self.stray.append((corr_id, body))

    def send(self, n):
        corr_id = str(uuid.uuid4())
        self.pending[corr_id] = n
        self.channel.basic_publish(
            exchange='',
            routing_key=RPC_QUEUE,
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=corr_id,
            ),
            body=str(n))
        return corr_id

    def wait(self, corr_ids, timeout=10):
        deadline = time.monotonic() + timeout
        while not all(c in self.responses for c in corr_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [self.pending[c] for c in corr_ids if c not in self.responses]
                raise TestFailure('%s: no reply within %ss for fib(%s)'
                                  % (self.name, timeout, missing))
            self.connection.process_data_events(time_limit=min(0.05, remaining))
        check_eq(self.stray, [], '%s: unexpected replies' % self.name)
        return [int(self.responses[c]) for c in corr_ids]

    def call(self, n):
        [response] = self.wait([self.send(n)])
        return response

    def call_many(self, ns):
        """Several requests in flight at once: answers told apart by correlation id."""
        return self.wait([self.send(n) for n in ns])

    def close(self):
        self.connection.process_data_events(time_limit=0.1)
        check_eq(self.stray, [], '%s: unexpected replies' % self.name)
        self.connection.close()


def run_client(name, ns, results):
    def body(w):
        client = FibonacciRpcClient(name)
        w.ready.set()
        for n in ns:
            print(f" [{name}] Requesting fib({n})")
            response = client.call(n)
            print(f" [{name}] Got {response}")
            check_eq(response, FIB[n], '%s: fib(%d)' % (name, n))
        batch = list(reversed(ns))
        check_eq(client.call_many(batch), [FIB[n] for n in batch],
                 '%s: answers to %d requests in flight at once' % (name, len(batch)))
        results[name] = len(ns) + len(batch)
        client.close()

    w = Worker(name, body)
    w.start()
    return w


def test():
    servers = [Worker('server%d' % i, rpc_server) for i in (1, 2)]
    for s in servers:
        s.start()
        s.wait_ready()

    # One client, one call at a time (rpc_client.py).
    client = FibonacciRpcClient('client0')
    for n in [9, 0, 1, 2, 10, 20]:
        print(f" [client0] Requesting fib({n})")
        response = client.call(n)
        print(f" [client0] Got {response}")
        check_eq(response, FIB[n], 'client0: fib(%d)' % n)
    client.close()

    # Two clients at the same time, each with its own callback queue.
    results = {}
    clients = [run_client('client1', list(range(0, 16)), results),
               run_client('client2', list(range(18, 2, -1)), results)]
    for c in clients:
        c.join_checked(20)
    check_eq(sorted(results), ['client1', 'client2'], 'clients that finished')

    for s in servers:
        s.stop.set()
    for s in servers:
        s.join_checked(5)

    connection = connect(args.sub_port)
    channel = connection.channel()
    ok = channel.queue_declare(queue=RPC_QUEUE, passive=True)
    check_eq(ok.method.message_count, 0, 'requests left in %s' % RPC_QUEUE)
    channel.queue_delete(queue=RPC_QUEUE)
    connection.close()
    return '%d calls answered correctly (by server: %s)' % (
        sum(HANDLED.values()), ', '.join('%s %d' % kv for kv in sorted(HANDLED.items())))


if __name__ == '__main__':
    main('tutorial6_rpc', test)
