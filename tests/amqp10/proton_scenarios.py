"""AMQP 1.0 scenarios with python-qpid-proton (Apache Qpid's client), run
against a broker by tests/amqp10_proton.rs. Each scenario checks what it
received and exits non-zero with a message when something is wrong.

The first three follow the shape of proton's own examples (simple_send /
simple_recv with the event API, helloworld, a server that answers through an
anonymous sender to each request's reply-to); neither the pip package nor
npm's rhea ships those examples, so they are written here. Queues are declared
with pika over AMQP 0-9-1 on the same port (the management link pair is not
used here).

Usage: proton_scenarios.py --port P SCENARIO
"""

import argparse
import sys
import time
import uuid

import pika
from proton import Message, symbol, ulong, Timeout
from proton.handlers import MessagingHandler
from proton.reactor import Container
from proton.utils import BlockingConnection

DEADLINE = 20  # seconds per scenario phase


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def declare(port, *queues, arguments=None):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    for q in queues:
        ch.queue_delete(q)
        ch.queue_declare(q, durable=True, arguments=arguments)
    c.close()


def url(port, user="guest:guest@"):
    return "amqp://%s127.0.0.1:%d" % (user, port)


class Send(MessagingHandler):
    """simple_send: sends `total` messages as credit allows, counts accepts."""

    def __init__(self, url, address, total):
        super().__init__()
        self.url, self.address, self.total = url, address, total
        self.sent = self.confirmed = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        event.container.create_sender(conn, self.address)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.total:
            n = self.sent + 1
            event.sender.send(Message(id=n, body={"sequence": n}, durable=True))
            self.sent += 1

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.total:
            event.connection.close()

    def on_rejected(self, event):
        fail("message rejected")

    def on_released(self, event):
        fail("message released")


class Recv(MessagingHandler):
    """simple_recv: receives `total` messages, checks their order."""

    def __init__(self, url, address, total):
        super().__init__()
        self.url, self.address, self.total = url, address, total
        self.received = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        event.container.create_receiver(conn, self.address)

    def on_message(self, event):
        n = self.received + 1
        m = event.message
        expect(m.id == n, "message %d has id %r" % (n, m.id))
        expect(m.body == {"sequence": n}, "message %d has body %r" % (n, m.body))
        expect(m.durable, "message %d is not durable" % n)
        self.received += 1
        if self.received == self.total:
            event.receiver.close()
            event.connection.close()


def simple_send_recv(port):
    declare(port, "examples")
    Container(Send(url(port), "/queues/examples", 100)).run()
    Container(Recv(url(port), "/queues/examples", 100)).run()
    print("100 sent, accepted and received in order")


class HelloWorld(MessagingHandler):
    def __init__(self, url, address):
        super().__init__()
        self.url, self.address, self.got = url, address, None

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        event.container.create_receiver(conn, self.address)
        event.container.create_sender(conn, self.address)

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello World!"))
        event.sender.close()

    def on_message(self, event):
        self.got = event.message.body
        event.connection.close()


def helloworld(port):
    declare(port, "hello")
    h = HelloWorld(url(port), "/queues/hello")
    Container(h).run()
    expect(h.got == "Hello World!", "got %r" % h.got)
    print(h.got)


class Server(MessagingHandler):
    """The examples' server: upper-cases each request's body and answers on
    an anonymous sender (null target) to the request's reply-to."""

    def __init__(self, url, address, total):
        super().__init__()
        self.url, self.address, self.total, self.answered = url, address, total, 0

    def on_start(self, event):
        self.conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        event.container.create_receiver(self.conn, self.address)
        self.sender = event.container.create_sender(self.conn, None)

    def on_message(self, event):
        m = event.message
        self.sender.send(
            Message(address=m.reply_to, body=m.body.upper(), correlation_id=m.correlation_id)
        )

    def on_accepted(self, event):
        self.answered += 1
        if self.answered == self.total:
            event.connection.close()


def request_response(port):
    import threading

    declare(port, "requests", "replies")
    requests = ["Twas brillig", "and the slithy toves", "did gire and gymble"]
    server = Server(url(port), "/queues/requests", len(requests))
    t = threading.Thread(target=Container(server).run, daemon=True)
    t.start()
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    s = c.create_sender("/queues/requests")
    r = c.create_receiver("/queues/replies", credit=10)
    for i, text in enumerate(requests):
        s.send(Message(body=text, reply_to="/queues/replies", correlation_id=i))
    got = {}
    for _ in requests:
        m = r.receive(timeout=DEADLINE)
        r.accept()
        got[m.correlation_id] = m.body
    c.close()
    t.join(DEADLINE)
    for i, text in enumerate(requests):
        expect(got.get(i) == text.upper(), "reply %d is %r" % (i, got.get(i)))
    print("3 requests answered through the anonymous relay")


def body_types(port):
    """Bodies and properties a 1.0 client sends come back the same."""
    declare(port, "types")
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    s = c.create_sender("/queues/types")
    mid = uuid.uuid4()
    sent = [
        Message(body="a string"),
        Message(body=42),
        Message(body=[1, "two", 3.5]),
        Message(body={"k": "v", "n": 7}),
        Message(body=b"\x00\x01binary", inferred=True),
        Message(body=None),
        Message(
            body="props",
            id=mid,
            correlation_id=ulong(77),
            subject="the subject",
            content_type="text/plain",
            content_encoding="utf-8",
            user_id=b"guest",
            group_id="g1",
            group_sequence=5,
            reply_to_group_id="rg",
            creation_time=1700000000.0,
            priority=7,
            ttl=60.0,
            durable=True,
            properties={"s": "str", "i": 5, "b": True, "f": 2.5},
            annotations={symbol("x-opt-custom"): "ann"},
        ),
    ]
    for m in sent:
        s.send(m)
    r = c.create_receiver("/queues/types", credit=len(sent))
    for want in sent:
        got = r.receive(timeout=DEADLINE)
        r.accept()
        body = bytes(got.body) if isinstance(got.body, memoryview) else got.body
        expect(body == want.body and type(body) is type(want.body),
               "body %r (%s) came back as %r (%s)" % (want.body, type(want.body).__name__,
                                                     body, type(body).__name__))
        for attr in ["id", "correlation_id", "subject", "content_type", "content_encoding",
                     "user_id", "group_id", "group_sequence", "reply_to_group_id",
                     "creation_time", "priority", "durable", "properties"]:
            expect(getattr(got, attr) == getattr(want, attr),
                   "%s: sent %r, got %r" % (attr, getattr(want, attr), getattr(got, attr)))
        if want.annotations:
            expect(got.annotations.get(symbol("x-opt-custom")) == "ann",
                   "annotations %r" % got.annotations)
        expect(got.annotations.get(symbol("x-routing-key")) == "types",
               "x-routing-key missing: %r" % got.annotations)
    c.close()
    print("%d bodies and their properties came back the same" % len(sent))


class CreditOne(MessagingHandler):
    """Grants one credit, checks that one message comes and no more for
    0.3 s, then grants two and gets the other two."""

    def __init__(self, url, address):
        super().__init__(prefetch=0)
        self.url, self.address, self.got, self.error = url, address, [], None

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        self.receiver = event.container.create_receiver(conn, self.address)
        self.receiver.flow(1)

    def on_message(self, event):
        self.got.append(event.message.body)
        if len(self.got) == 1:
            event.container.schedule(0.3, self)
        elif len(self.got) == 3:
            event.connection.close()

    def on_timer_task(self, event):
        if len(self.got) != 1:
            self.error = "credit 1 gave %d messages" % len(self.got)
            self.receiver.connection.close()
            return
        self.receiver.flow(2)


def credit_one(port):
    """A receiver that grants one credit gets one message."""
    declare(port, "credit")
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    s = c.create_sender("/queues/credit")
    for i in range(3):
        s.send(Message(body=i))
    c.close()
    h = CreditOne(url(port), "/queues/credit")
    Container(h).run()
    expect(h.error is None, str(h.error))
    expect(h.got == [0, 1, 2], "got %r" % h.got)
    print("credit 1: one message; credit 2: the other two")


def anonymous_login(port):
    """SASL ANONYMOUS logs in as --anonymous-user (the test sets guest)."""
    declare(port, "anon")
    c = BlockingConnection(url(port, user=""), allowed_mechs="ANONYMOUS", timeout=DEADLINE)
    s = c.create_sender("/queues/anon")
    s.send(Message(body="hi"))
    r = c.create_receiver("/queues/anon", credit=1)
    expect(r.receive(timeout=DEADLINE).body == "hi", "anonymous round trip")
    r.accept()
    c.close()
    print("ANONYMOUS ok")


def bad_login(port):
    """A wrong password fails the connection; a right one still works."""
    try:
        c = BlockingConnection(url(port, user="guest:wrong@"), allowed_mechs="PLAIN", timeout=5)
        c.create_sender("/queues/x")
        fail("logged in with a wrong password")
    except Exception as e:  # proton raises ConnectionException / LinkDetached
        print("refused as expected: %s" % type(e).__name__)
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    c.close()


def durable_publish(port):
    """50 durable messages, each accepted (fsynced) before the next: the
    broker is then killed with SIGKILL by the test."""
    c0 = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    c0.channel().queue_declare("kill9", durable=True)
    c0.close()
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    s = c.create_sender("/queues/kill9")
    for i in range(50):
        s.send(Message(body="durable %d" % i, durable=True))  # waits for accepted
    c.close()
    print("50 durable messages accepted")


def durable_consume(port):
    """After kill -9 and a restart: all 50, in order, durable."""
    c = BlockingConnection(url(port), allowed_mechs="PLAIN", timeout=DEADLINE)
    r = c.create_receiver("/queues/kill9", credit=50)
    for i in range(50):
        m = r.receive(timeout=DEADLINE)
        expect(m.body == "durable %d" % i, "message %d is %r" % (i, m.body))
        expect(m.durable, "message %d lost durable" % i)
        r.accept()
    c.close()
    print("50 durable messages back after kill -9")


SCENARIOS = {
    "durable_publish": durable_publish,
    "durable_consume": durable_consume,
    "simple_send_recv": simple_send_recv,
    "helloworld": helloworld,
    "request_response": request_response,
    "body_types": body_types,
    "credit_one": credit_one,
    "anonymous_login": anonymous_login,
    "bad_login": bad_login,
}

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    a = p.parse_args()
    SCENARIOS[a.scenario](a.port)
