"""AMQP 1.0 over TLS with SASL EXTERNAL (python-qpid-proton): the client
certificate names the user. Run by tests/tls.rs.

Usage: tls_external.py --port TLS_PORT --plain-port PORT --ca CA --cert C --key K
"""

import argparse
import sys

import pika
from proton import Message, SSLDomain
from proton.utils import BlockingConnection


def main(a):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", a.plain_port))
    c.channel().queue_declare("tls10")
    c.close()
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(a.ca)
    domain.set_credentials(a.cert, a.key, None)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER)
    conn = BlockingConnection(
        "amqps://127.0.0.1:%d" % a.port, ssl_domain=domain, allowed_mechs="EXTERNAL", timeout=20
    )
    s = conn.create_sender("/queues/tls10")
    s.send(Message(body="over tls"))
    r = conn.create_receiver("/queues/tls10", credit=1)
    m = r.receive(timeout=20)
    r.accept()
    conn.close()
    if m.body != "over tls":
        print("FAIL: got %r" % m.body)
        sys.exit(1)
    print("EXTERNAL over TLS: ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for f in ["--port", "--plain-port"]:
        p.add_argument(f, type=int, required=True)
    for f in ["--ca", "--cert", "--key"]:
        p.add_argument(f, required=True)
    main(p.parse_args())
