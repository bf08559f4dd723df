"""RabbitMQ's own AMQP 1.0 client library for Python
(rabbitmq-amqp-python-client, the one RabbitMQ 4 documents) against the
broker: it checks the broker's `open` (product RabbitMQ, version >= 4.0.0),
declares everything over the management link pair (/management), publishes
with outcomes, consumes with credit, and cleans up. Run by
tests/amqp10_proton.rs.

Usage: rabbitmq_amqp_client.py --port P
"""

import argparse
import sys
import threading

from rabbitmq_amqp_python_client import (
    AddressHelper,
    AMQPMessagingHandler,
    ClassicQueueSpecification,
    Converter,
    Environment,
    Event,
    ExchangeSpecification,
    ExchangeToQueueBindingSpecification,
    Message,
    OutcomeState,
    QuorumQueueSpecification,
)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


class Consumed(Exception):
    """Raised by the handler to end consumer.run(), as the client's own
    examples do."""


class Counter(AMQPMessagingHandler):
    def __init__(self, want, done):
        super().__init__()
        self.want, self.done, self.bodies = want, done, []

    def on_amqp_message(self, event: Event):
        self.bodies.append(Converter.bytes_to_string(event.message.body))
        self.delivery_context.accept(event)
        if len(self.bodies) == self.want:
            self.done.set()
            raise Consumed()


def main(port):
    env = Environment(uri="amqp://guest:guest@127.0.0.1:%d/" % port)
    conn = env.connection()
    conn.dial()
    m = conn.management()
    for q in ["rq", "rq-quorum"]:
        m.delete_queue(q)  # 200 also when there is none

    m.declare_queue(ClassicQueueSpecification(name="rq", is_durable=True))
    # Equivalent re-declare: fine (200).
    m.declare_queue(ClassicQueueSpecification(name="rq", is_durable=True))
    m.declare_queue(QuorumQueueSpecification(name="rq-quorum"))
    m.declare_exchange(ExchangeSpecification(name="rx"))
    binding = m.bind(
        ExchangeToQueueBindingSpecification(source_exchange="rx", destination_queue="rq", binding_key="k")
    )
    expect(binding.startswith("/bindings/src=rx;dstq=rq;key=k"), "binding path %r" % binding)

    publisher = conn.publisher(AddressHelper.exchange_address("rx", "k"))
    for i in range(10):
        status = publisher.publish(Message(body=Converter.string_to_bytes("m%d" % i)))
        expect(status.remote_state == OutcomeState.ACCEPTED, "publish %d: %r" % (i, status.remote_state))
    # Routed nowhere: released.
    lost = conn.publisher(AddressHelper.exchange_address("rx", "nokey"))
    try:
        status = lost.publish(Message(body=Converter.string_to_bytes("nowhere"))).remote_state
    except Exception as e:  # the client raises SendException(state) for it
        status = getattr(e, "state", None) or (e.args[0] if e.args else None)
    expect(status == OutcomeState.RELEASED, "unroutable: %r" % status)

    info = m.queue_info("rq")
    expect(int(info.message_count) == 10, "message_count %r" % info.message_count)
    info = m.queue_info("rq-quorum")
    expect(str(info.queue_type).endswith("quorum"), "queue type %r" % info.queue_type)

    done = threading.Event()
    counter = Counter(10, done)
    consumer = conn.consumer(AddressHelper.queue_address("rq"), message_handler=counter)
    try:
        consumer.run()
    except Consumed:
        pass
    consumer.close()
    expect(done.is_set(), "consumed %d of 10" % len(counter.bodies))
    expect(counter.bodies == ["m%d" % i for i in range(10)], "bodies %r" % counter.bodies)

    conn2 = env.connection()
    conn2.dial()
    m = conn2.management()
    expect(int(m.queue_info("rq").message_count) == 0, "queue not empty after consuming")
    m.unbind(binding)
    m.delete_exchange("rx")
    m.delete_queue("rq")
    m.delete_queue("rq-quorum")
    m.close()
    conn2.close()
    env.close()
    print("management, publish, consume: ok")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    main(p.parse_args().port)
