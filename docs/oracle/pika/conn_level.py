"""Section 3: connection-level refusals, seen both on the wire (rawamqp)
and through pika.

  python conn_level.py --host 127.0.0.1 --nonloopback 192.0.2.2 --vhost v --user u --password upass
Setup done here with --ctl: vhost 'vnoperm' (u has no permissions),
user 'nopw' (password cleared) with full permissions on the vhost.
"""
import pika

from common import parser, ctl, q, params, describe
from rawamqp import handshake, show


def pika_try(label, p):
    try:
        c = pika.BlockingConnection(p)
        print(f"   pika: OK ({label})")
        c.close()
    except Exception as e:
        print(f"   pika: {describe(e)}")
        inner = getattr(e, "args", None)
        if inner:
            print(f"         args={inner!r}"[:300])


def main():
    ap = parser(__doc__)
    ap.add_argument("--nonloopback", default="192.0.2.2")
    a = ap.parse_args()
    for cmd in ("add_vhost vnoperm", "add_user nopw whatever",
                f"set_permissions -p {q(a.vhost)} nopw '.*' '.*' '.*'", "clear_password nopw"):
        try:
            ctl(a, cmd)
        except RuntimeError as e:
            print("setup:", str(e)[:200])

    cases = [
        ("valid user", a.host, a.user, a.password, a.vhost),
        ("wrong password", a.host, a.user, "wrong", a.vhost),
        ("unknown user", a.host, "nosuchuser", "x", a.vhost),
        ("missing vhost", a.host, a.user, a.password, "nosuchvhost"),
        ("vhost without permissions", a.host, a.user, a.password, "vnoperm"),
        ("guest via loopback", a.host, a.admin_user, a.admin_password, "/"),
        ("guest via non-loopback", a.nonloopback, a.admin_user, a.admin_password, "/"),
        ("guest via non-loopback wrong pw", a.nonloopback, a.admin_user, "wrong", "/"),
        ("guest via non-loopback missing vhost", a.nonloopback, a.admin_user, a.admin_password, "nosuchvhost"),
        ("u via non-loopback", a.nonloopback, a.user, a.password, a.vhost),
        ("cleared-password user, empty pw", a.host, "nopw", "", a.vhost),
        ("cleared-password user, some pw", a.host, "nopw", "whatever", a.vhost),
        ("empty password for u", a.host, a.user, "", a.vhost),
    ]
    for label, host, user, pw, vh in cases:
        for cap in (True, False):
            steps, r = handshake(host, a.port, user, pw, vh, auth_close_cap=cap)
            show(f"{label}: {user}@{host}/{vh} (authentication_failure_close={cap})", steps)
            if r:
                r.close()
        pika_try(label, params(a, user=user, password=pw, vhost=vh, host=host))
    steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost, mechanism="FOO")
    show("unknown SASL mechanism FOO", steps)
    steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost, mechanism="AMQPLAIN")
    show("AMQPLAIN mechanism with a PLAIN-style response", steps)


if __name__ == "__main__":
    main()
