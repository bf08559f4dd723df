"""Section 4: vhost and user limits.

  python limits.py --vhost vlim --user u --password upass
Creates the vhost (if missing) and grants the user full permissions there.
"""
import json
import time

from common import parser, ctl, q, connect, describe, attempt
from rawamqp import handshake, show


def main():
    a = parser(__doc__).parse_args()
    V, U = q(a.vhost), q(a.user)
    try:
        ctl(a, f"add_vhost {V}")
    except RuntimeError:
        pass
    ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")
    for cmd in (f"clear_vhost_limits -p {V}", f"clear_user_limits {U} all"):
        try:
            ctl(a, cmd)
        except RuntimeError:
            pass

    def vlim(d):
        ctl(a, f"set_vhost_limits -p {V} {q(json.dumps(d))}")
        print(f"-- set_vhost_limits {json.dumps(d)}")

    def ulim(d):
        ctl(a, f"set_user_limits {U} {q(json.dumps(d))}")
        print(f"-- set_user_limits {json.dumps(d)}")

    def raw(label, **kw):
        steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost, **kw)
        show(label, steps)
        return r

    # vhost max-connections
    vlim({"max-connections": 1})
    c1 = connect(a)
    r = raw("second connection, vhost max-connections 1")
    r and r.close()
    try:
        connect(a).close()
        print("   pika: OK?!")
    except Exception as e:
        print("   pika:", describe(e), getattr(e, "args", ""))
    c1.close()
    vlim({"max-connections": 0})
    r = raw("first connection, vhost max-connections 0")
    r and r.close()
    vlim({"max-connections": -1})
    r = raw("vhost max-connections -1 (unlimited)")
    r and r.close()
    ctl(a, f"clear_vhost_limits -p {V}")

    # vhost max-queues
    c = connect(a)
    ch = c.channel()
    for qn in ("lq1", "lq2", "lq3"):
        ch.queue_delete(qn)
    c.close()
    vlim({"max-queues": 1})
    attempt("declare lq1 (first queue, max-queues 1)", lambda ch: ch.queue_declare("lq1"), a)
    attempt("declare lq2 (second queue)", lambda ch: ch.queue_declare("lq2"), a)
    attempt("redeclare lq1 (exists)", lambda ch: ch.queue_declare("lq1"), a)
    attempt("declare lq2 passive", lambda ch: ch.queue_declare("lq2", passive=True), a)
    attempt("declare server-named", lambda ch: ch.queue_declare("", exclusive=True), a)
    attempt("declare quorum lq3", lambda ch: ch.queue_declare("lq3", durable=True, arguments={"x-queue-type": "quorum"}), a)
    vlim({"max-queues": 0})
    attempt("declare lq2 with max-queues 0", lambda ch: ch.queue_declare("lq2"), a)
    attempt("redeclare lq1 with max-queues 0 (exists)", lambda ch: ch.queue_declare("lq1"), a)
    ctl(a, f"clear_vhost_limits -p {V}")
    print(ctl(a, "list_vhost_limits --global").strip())

    # user max-connections
    ulim({"max-connections": 1})
    c1 = connect(a)
    r = raw("second connection, user max-connections 1")
    r and r.close()
    c1.close()
    ulim({"max-connections": 0})
    r = raw("first connection, user max-connections 0")
    r and r.close()
    ctl(a, f"clear_user_limits {U} all")

    # user max-channels
    ulim({"max-channels": 1})
    r = raw("raw: user max-channels 1, open 2 channels on one connection", open_channels=2)
    r and r.close()
    c1 = connect(a)
    ch1 = c1.channel()
    try:
        c1.channel()
        print("   pika second channel on same connection: OK?!")
    except Exception as e:
        print("   pika second channel on same connection:", describe(e))
    print("   first connection still open:", c1.is_open)
    c1 = connect(a) if not c1.is_open else c1
    if c1.is_open and not ch1.is_open:
        ch1 = c1.channel()
    c2 = connect(a)
    try:
        c2.channel()
        print("   pika channel on a second connection while first holds 1: OK (limit is per connection)")
    except Exception as e:
        print("   pika channel on a second connection while first holds 1:", describe(e),
              "(limit is total per user)")
    for c in (c1, c2):
        if c.is_open:
            c.close()
    ulim({"max-channels": 0})
    r = raw("raw: user max-channels 0, open 1 channel", open_channels=1)
    r and r.close()
    ctl(a, f"clear_user_limits {U} all")
    print(ctl(a, f"list_user_limits --user {U}").strip())


if __name__ == "__main__":
    main()
