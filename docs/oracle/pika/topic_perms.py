"""Section 2: topic permissions (set_topic_permissions).

  python topic_perms.py --vhost v --user u --password upass
"""
import pika

from common import parser, ctl, q, attempt, admin


def pub(x, rk):
    def f(ch):
        ch.confirm_delivery()
        ch.basic_publish(x, rk, b"x")
    return f


def main():
    a = parser(__doc__).parse_args()
    V, U = q(a.vhost), q(a.user)
    c = admin(a)
    ch = c.channel()
    ch.queue_declare("q1")
    ch.exchange_declare("x1", "direct")
    ch.exchange_declare("t1", "topic")
    ch.exchange_declare("x2", "direct")
    c.close()
    ctl(a, f"set_permissions -p {V} {U} '.*' '.*' '.*'")
    ctl(a, f"clear_topic_permissions -p {V} {U}")

    def tp(x, w, r):
        ctl(a, f"set_topic_permissions -p {V} {U} {q(x)} {q(w)} {q(r)}")
        print(f"== topic permissions {x}: write {w!r} read {r!r}")

    tp("amq.topic", r"^a\.", r"^b\.")
    attempt("publish amq.topic rk=x.y", pub("amq.topic", "x.y"), a)
    attempt("publish amq.topic rk=a.1", pub("amq.topic", "a.1"), a)
    attempt("publish amq.topic rk=a.1 (no confirms)", lambda ch: ch.basic_publish("amq.topic", "a.1", b"x"), a)
    attempt("publish amq.topic rk=x.y (no confirms)", lambda ch: ch.basic_publish("amq.topic", "x.y", b"x"), a)
    attempt("queue.bind q1 <- amq.topic key z", lambda ch: ch.queue_bind("q1", "amq.topic", "z"), a)
    attempt("queue.bind q1 <- amq.topic key b.1", lambda ch: ch.queue_bind("q1", "amq.topic", "b.1"), a)
    attempt("queue.unbind q1 <- amq.topic key z", lambda ch: ch.queue_unbind("q1", "amq.topic", "z"), a)
    attempt("exchange.bind x2 <- amq.topic key z", lambda ch: ch.exchange_bind("x2", "amq.topic", "z"), a)
    attempt("exchange.bind t1 <- x1(direct) key z (dest topic)", lambda ch: ch.exchange_bind("t1", "x1", "z"), a)
    attempt("publish t1 (topic, no topic-perm entry) rk=x.y", pub("t1", "x.y"), a)
    tp("x1", r"^a\.", r"^b\.")
    attempt("publish x1 (direct, topic-perm entry) rk=x.y", pub("x1", "x.y"), a)
    attempt("queue.bind q1 <- x1 (direct) key z", lambda ch: ch.queue_bind("q1", "x1", "z"), a)
    tp("amq.topic", r"^{username}\.", r"^{vhost}\.")
    attempt(f"publish amq.topic rk={a.user}.1 ({{username}})", pub("amq.topic", f"{a.user}.1"), a)
    attempt("publish amq.topic rk=other.1 ({username})", pub("amq.topic", "other.1"), a)
    attempt(f"queue.bind amq.topic key {a.vhost}.1 ({{vhost}})", lambda ch: ch.queue_bind("q1", "amq.topic", f"{a.vhost}.1"), a)
    attempt("queue.bind amq.topic key other.1 ({vhost})", lambda ch: ch.queue_bind("q1", "amq.topic", "other.1"), a)
    tp("amq.topic", "", "")
    attempt("publish amq.topic rk=x.y (write '')", pub("amq.topic", "x.y"), a)
    attempt("publish amq.topic rk='' (write '')", pub("amq.topic", ""), a)
    attempt("queue.bind amq.topic key z (read '')", lambda ch: ch.queue_bind("q1", "amq.topic", "z"), a)
    ctl(a, f"clear_topic_permissions -p {V} {U}")
    tp("^amq", r"^a\.", r"^b\.")
    attempt("publish amq.topic rk=x.y (entry keyed by regex-like name '^amq')", pub("amq.topic", "x.y"), a)
    ctl(a, f"clear_topic_permissions -p {V} {U}")
    print(ctl(a, f"list_topic_permissions -p {V}"))


if __name__ == "__main__":
    main()
