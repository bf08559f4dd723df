"""Section 5: admin actions against live connections.

  python lifecycle.py --vhost vdel --user udel --password udelpass
Creates (and deletes) the vhost and user itself.
"""
import time

import pika

from common import parser, ctl, q, connect, describe


def watch(conn, ch, secs=3.0):
    """Pump I/O for up to secs; report how the connection/channel ended."""
    t0 = time.time()
    try:
        while time.time() - t0 < secs:
            conn.process_data_events(time_limit=0.2)
            if not conn.is_open or (ch and not ch.is_open):
                break
        if conn.is_open and (ch is None or ch.is_open):
            return f"still open after {secs}s"
        if ch is not None and not ch.is_open and conn.is_open:
            return f"channel closed: {describe(ch._closing_reason)}"
        return "connection closed"
    except Exception as e:
        return f"{describe(e)} after {time.time() - t0:.2f}s"


def main():
    a = parser(__doc__).parse_args()
    V, U = q(a.vhost), q(a.user)

    def setup():
        for cmd in (f"add_vhost {V}", f"add_user {U} {q(a.password)}"):
            try:
                ctl(a, cmd)
            except RuntimeError:
                pass
        ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")

    setup()
    c = connect(a)
    ch = c.channel()
    ch.queue_declare("lq")
    ctl(a, f"delete_vhost {V}")
    print("delete_vhost with open connection:", watch(c, ch))

    setup()
    c = connect(a)
    ch = c.channel()
    ctl(a, f"delete_user {U}")
    print("delete_user with open connection:", watch(c, ch))
    if c.is_open:
        try:
            ch.queue_declare("lq2")
            print("   after delete_user, queue.declare on the old channel: OK")
        except Exception as e:
            print("   after delete_user, queue.declare on the old channel:", describe(e))
        try:
            ch2 = c.channel()
            ch2.queue_declare("lq3")
            print("   after delete_user, new channel + queue.declare: OK")
        except Exception as e:
            print("   after delete_user, new channel + queue.declare:", describe(e))
        if c.is_open:
            c.close()

    setup()
    c = connect(a)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("lx", "direct")
    ch.queue_declare("lq")
    ch.basic_publish("lx", "k", b"x")
    print("publish before clear_permissions: OK")
    ctl(a, f"clear_permissions -p {V} {U}")
    print("clear_permissions with open connection:", watch(c, ch, 1.5))
    for label, op in (
            ("publish to lx again (same channel, cached exchange)", lambda: ch.basic_publish("lx", "k", b"x")),
            ("queue.declare lq (same channel, cached?)", lambda: ch.queue_declare("lq")),
            ("queue.declare passive lq", lambda: ch.queue_declare("lq", passive=True)),
            ("basic.get lq", lambda: ch.basic_get("lq")),
    ):
        if not ch.is_open:
            ch = c.channel()
            ch.confirm_delivery()
        try:
            op()
            print(f"   after clear_permissions, {label}: OK")
        except Exception as e:
            print(f"   after clear_permissions, {label}: {describe(e)}")
    try:
        ch = c.channel()
        ch.confirm_delivery()
        ch.basic_publish("lx", "k", b"x")
        print("   after clear_permissions, fresh channel publish to lx: OK")
    except Exception as e:
        print("   after clear_permissions, fresh channel publish to lx:", describe(e))
    if c.is_open:
        c.close()
    try:
        connect(a).close()
        print("   new connection after clear_permissions: OK")
    except Exception as e:
        print("   new connection after clear_permissions:", describe(e), getattr(e, "args", ""))

    # change_password with open connection
    setup()
    c = connect(a)
    ch = c.channel()
    ctl(a, f"change_password {U} newpass")
    print("change_password with open connection:", watch(c, ch, 1.5))
    if c.is_open:
        c.close()
    # set_permissions narrowing with open channel
    ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")
    c = connect(a, password="newpass")
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("lx", "k", b"x")
    ctl(a, f"set_permissions -p {V} {U} '.*' '^$' '.*'")
    for i in range(3):
        try:
            ch.basic_publish("lx", "k", b"x")
            print(f"   after narrowing write to ^$, publish #{i+1} to lx on the old channel: OK")
        except Exception as e:
            print(f"   after narrowing write to ^$, publish #{i+1} to lx on the old channel: {describe(e)}")
            break
    for idle in (0.5, 1.0, 2.0, 5.0):
        ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")
        if not ch.is_open:
            ch = c.channel()
            ch.confirm_delivery()
        ch.basic_publish("lx", "k", b"x")
        ctl(a, f"set_permissions -p {V} {U} '.*' '^$' '.*'")
        c.process_data_events(time_limit=idle)
        try:
            ch.basic_publish("lx", "k", b"x")
            print(f"   narrowed write to ^$, channel idle {idle}s, publish to lx: OK (cached)")
        except Exception as e:
            print(f"   narrowed write to ^$, channel idle {idle}s, publish to lx: {describe(e)}")
    if c.is_open:
        c.close()
    ctl(a, f"delete_vhost {V}")
    ctl(a, f"delete_user {U}")


if __name__ == "__main__":
    main()
