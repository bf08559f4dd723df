"""Which class-id/method-id does the broker put in channel.close for the
refusals?  (pika does not expose them.)  Raw frames, one connection per case.

  python raw_close_ids.py --vhost v --user u --password upass
Needs queue q1 and direct exchange x1 in the vhost (perms.py creates them).
"""
import struct

from common import parser, ctl, q
from rawamqp import handshake, method_frame, shortstr, longstr


def qdeclare(name):
    return method_frame(1, 50, 10, struct.pack(">H", 0) + shortstr(name) + b"\x00" + longstr(b""))


def qbind(queue, x, rk):
    return method_frame(1, 50, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr(x) + shortstr(rk) + b"\x00" + longstr(b""))


def consume(queue):
    return method_frame(1, 60, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr("") + b"\x00" + longstr(b""))


def get(queue):
    return method_frame(1, 60, 70, struct.pack(">H", 0) + shortstr(queue) + b"\x00")


def publish(x, rk, body=b"x"):
    m = method_frame(1, 60, 40, struct.pack(">H", 0) + shortstr(x) + shortstr(rk) + b"\x00")
    hdr_payload = struct.pack(">HHQH", 60, 0, len(body), 0)
    h = struct.pack(">BHI", 2, 1, len(hdr_payload)) + hdr_payload + b"\xce"
    b = struct.pack(">BHI", 3, 1, len(body)) + body + b"\xce"
    return m + h + b


def main():
    a = parser(__doc__).parse_args()
    V, U = q(a.vhost), q(a.user)

    def run(label, perms, frames):
        ctl(a, f"set_permissions -p {V} {U} {q(perms[0])} {q(perms[1])} {q(perms[2])}")
        steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost, open_channels=1)
        if not r:
            print(label, steps)
            return
        r.send(frames)
        d, det = r.frame()
        print(f"{label:50s} -> {d} {det or ''}")
        r.close()

    run("queue.declare q1, configure denied", ("^$", ".*", ".*"), qdeclare("q1"))
    run("queue.declare amq.foo (reserved)", (".*", ".*", ".*"), qdeclare("amq.foo"))
    run("queue.bind q1<-x1, read on exchange denied", (".*", ".*", "^q"), qbind("q1", "x1", "k"))
    run("basic.consume q1, read denied", (".*", ".*", "^$"), consume("q1"))
    run("basic.get q1, read denied", (".*", ".*", "^$"), get("q1"))
    run("basic.publish x1, write denied", (".*", "^$", ".*"), publish("x1", "k"))
    run("basic.publish '' rk q1, write denied", (".*", "^$", ".*"), publish("", "q1"))
    ctl(a, f"set_topic_permissions -p {V} {U} amq.topic '^a' '^b'")
    run("basic.publish amq.topic rk x, topic write denied", (".*", ".*", ".*"), publish("amq.topic", "x"))
    run("queue.bind q1<-amq.topic rk x, topic read denied", (".*", ".*", ".*"), qbind("q1", "amq.topic", "x"))
    ctl(a, f"clear_topic_permissions -p {V} {U}")
    ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")


if __name__ == "__main__":
    main()
