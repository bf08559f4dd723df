#!/usr/bin/env python
"""pika over TLS: connects to --port with an ssl.SSLContext that trusts --ca
(and, with --tls-version, speaks only that TLS version), publishes a small and
a large message to a fresh queue, consumes them and checks they arrived
whole. Exits 0 on success; run by tests/tls.rs.
"""

import argparse
import ssl
import sys
import threading
import os
import uuid

import pika


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--ca', required=True)
    parser.add_argument('--tls-version', choices=['1.2', '1.3'])
    args = parser.parse_args()

    # No script may hang the test run.
    watchdog = threading.Timer(30, lambda: (sys.stderr.write('FAIL: watchdog\n'), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=args.ca)
    if args.tls_version:
        v = {'1.2': ssl.TLSVersion.TLSv1_2, '1.3': ssl.TLSVersion.TLSv1_3}[args.tls_version]
        context.minimum_version = v
        context.maximum_version = v
    params = pika.ConnectionParameters(
        host='127.0.0.1', port=args.port,
        ssl_options=pika.SSLOptions(context, server_hostname='localhost'))
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    queue = 'tls.%s' % uuid.uuid4().hex[:10]
    channel.queue_declare(queue=queue, exclusive=True)
    bodies = [b'Hello over TLS!', bytes(range(256)) * 400]
    for body in bodies:
        channel.basic_publish(exchange='', routing_key=queue, body=body)
    received = []
    for method, _properties, body in channel.consume(queue, auto_ack=True,
                                                     inactivity_timeout=10):
        if method is None:
            break
        received.append(body)
        if len(received) == len(bodies):
            break
    channel.cancel()
    version = connection._impl._transport._sock.version()
    connection.close()
    if received != bodies:
        sys.stderr.write('FAIL: got %r bodies of sizes %r\n'
                         % (len(received), [len(b) for b in received]))
        sys.exit(1)
    if args.tls_version and version != 'TLSv' + args.tls_version:
        sys.stderr.write('FAIL: negotiated %s\n' % version)
        sys.exit(1)
    print('ok: %s, %d messages' % (version, len(received)))


if __name__ == '__main__':
    main()
