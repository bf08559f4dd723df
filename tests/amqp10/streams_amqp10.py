"""Streams over AMQP 1.0 with RabbitMQ's own client library
(rabbitmq-amqp-python-client), as RabbitMQ 4 serves them: declared over
the management link, published with outcomes, read from an offset given
as the source filter `rabbitmq:stream-offset-spec`, each message carrying
its offset in the `x-stream-offset` message annotation. (The client asks
for RabbitMQ 4.1 before it sends `rabbitmq:stream-filter`; warren says it
is 4.0.5, so filters over 1.0 are not tried here.) Run by
tests/amqp10_proton.rs.

Usage: streams_amqp10.py --port P
"""

import argparse
import sys
import threading

from rabbitmq_amqp_python_client import (
    AddressHelper,
    AMQPMessagingHandler,
    Converter,
    Environment,
    Event,
    Message,
    OffsetSpecification,
    OutcomeState,
    StreamConsumerOptions,
    StreamSpecification,
)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


class Done(Exception):
    pass


class Reader(AMQPMessagingHandler):
    def __init__(self, want):
        super().__init__()
        self.want, self.got = want, []

    def on_amqp_message(self, event: Event):
        ann = event.message.annotations or {}
        self.got.append((ann.get("x-stream-offset"), Converter.bytes_to_string(event.message.body)))
        self.delivery_context.accept(event)
        if len(self.got) == self.want:
            raise Done()


def read(conn, name, want, options):
    r = Reader(want)
    consumer = conn.consumer(
        AddressHelper.queue_address(name), message_handler=r, consumer_options=options
    )
    try:
        consumer.run()
    except Done:
        pass
    consumer.close()
    return r.got


def main(port):
    env = Environment(uri="amqp://guest:guest@127.0.0.1:%d/" % port)
    conn = env.connection()
    conn.dial()
    m = conn.management()
    m.delete_queue("s10")
    m.declare_queue(StreamSpecification(name="s10", max_len_bytes=10_000_000))
    info = m.queue_info("s10")
    expect(str(info.queue_type).endswith("stream"), "queue type %r" % info.queue_type)

    publisher = conn.publisher(AddressHelper.queue_address("s10"))
    for i in range(10):
        msg = Message(body=Converter.string_to_bytes("m%d" % i))
        status = publisher.publish(msg)
        expect(status.remote_state == OutcomeState.ACCEPTED, "publish %d: %r" % (i, status.remote_state))
    publisher.close()

    got = read(conn, "s10", 10, StreamConsumerOptions(offset_specification=OffsetSpecification.first))
    expect(got == [(i, "m%d" % i) for i in range(10)], "from first: %r" % got)
    got = read(conn, "s10", 3, StreamConsumerOptions(offset_specification=7))
    expect(got == [(i, "m%d" % i) for i in range(7, 10)], "from 7: %r" % got)
    got = read(conn, "s10", 1, StreamConsumerOptions(offset_specification=OffsetSpecification.last))
    expect(got[0][0] in range(10), "last: %r" % got)

    m.delete_queue("s10")
    m.close()
    conn.close()
    env.close()
    print("streams over AMQP 1.0: ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    main(p.parse_args().port)
