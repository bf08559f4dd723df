"""Section 1: per-operation permission refusals.

For each row: reset fixtures as admin, set the test user's permissions on the
vhost (configure, write, read) so that (ideally) exactly one access is denied,
run the operation as the test user on a fresh connection, print the outcome.

  python perms.py --host 127.0.0.1 --vhost v --user u --password upass
Needs: vhost exists, user exists, admin user has full permissions on vhost.
"""
import time

import pika

from common import parser, ctl, q, attempt, admin, describe

ALL = ".*"


def reset(args):
    c = admin(args)
    ch = c.channel()
    for qn in ("q1", "qd", "qe", "qnew"):
        ch.queue_delete(qn)
    for xn in ("xa", "xnew"):
        ch.exchange_delete(xn)
    ch.queue_declare("q1")
    for xn in ("x1", "x2", "dlx", "ae"):
        ch.exchange_declare(xn, "direct")
    ch.queue_bind("q1", "x1", "k")
    ch.exchange_bind("x2", "x1", "k")
    c.close()


def setperm(args, c, w, r):
    ctl(args, f"set_permissions -p {q(args.vhost)} {q(args.user)} {q(c)} {q(w)} {q(r)}")


def publish(exchange, rk, confirm=False, **props):
    def f(ch):
        if confirm:
            ch.confirm_delivery()
        ch.basic_publish(exchange, rk, b"x", pika.BasicProperties(**props))
    return f


def consume(queue, **kw):
    def f(ch):
        return ch.basic_consume(queue, lambda *a: None, **kw)
    return f


ROWS = [
    # label, (configure, write, read), op
    ("queue.declare q1 (exists) | conf denied", ("^x", ALL, ALL),
     lambda ch: ch.queue_declare("q1")),
    ("queue.declare qnew (new) | conf denied", ("^x", ALL, ALL),
     lambda ch: ch.queue_declare("qnew")),
    ("queue.declare passive q1 | all ^$", ("^$", "^$", "^$"),
     lambda ch: ch.queue_declare("q1", passive=True).method.message_count),
    ("queue.declare passive missing | all ^$", ("^$", "^$", "^$"),
     lambda ch: ch.queue_declare("nope", passive=True)),
    ("queue.declare exclusive qe | conf denied", ("^x", ALL, ALL),
     lambda ch: ch.queue_declare("qe", exclusive=True)),
    ("queue.declare server-named '' | conf ^$", ("^$", ALL, ALL),
     lambda ch: ch.queue_declare("").method.queue),
    ("queue.declare server-named '' | conf ^amq\\.gen-", ("^amq\\.gen-", ALL, ALL),
     lambda ch: ch.queue_declare("").method.queue),
    ("queue.declare 'amq.foo' (reserved) | all .*", (ALL, ALL, ALL),
     lambda ch: ch.queue_declare("amq.foo")),
    ("queue.delete q1 | conf denied", ("^x", ALL, ALL),
     lambda ch: ch.queue_delete("q1")),
    ("queue.delete missing | conf denied", ("^x", ALL, ALL),
     lambda ch: ch.queue_delete("nope")),
    ("queue.purge q1 | read denied", (ALL, ALL, "^x"),
     lambda ch: ch.queue_purge("q1")),
    ("queue.purge q1 | conf denied (only)", ("^x", ALL, ALL),
     lambda ch: ch.queue_purge("q1")),
    ("exchange.declare x1 (exists) | conf denied", ("^q", ALL, ALL),
     lambda ch: ch.exchange_declare("x1", "direct")),
    ("exchange.declare xnew | conf denied", ("^q", ALL, ALL),
     lambda ch: ch.exchange_declare("xnew", "direct")),
    ("exchange.declare passive x1 | all ^$", ("^$", "^$", "^$"),
     lambda ch: ch.exchange_declare("x1", passive=True)),
    ("exchange.declare passive missing | all ^$", ("^$", "^$", "^$"),
     lambda ch: ch.exchange_declare("nope", passive=True)),
    ("exchange.declare 'amq.foo' (reserved) | all .*", (ALL, ALL, ALL),
     lambda ch: ch.exchange_declare("amq.foo", "direct")),
    ("exchange.delete x2 | conf denied", ("^q", ALL, ALL),
     lambda ch: ch.exchange_delete("x2")),
    ("exchange.delete missing | conf denied", ("^q", ALL, ALL),
     lambda ch: ch.exchange_delete("nope")),
    ("queue.bind q1<-x1 | write on queue denied", (ALL, "^x", ALL),
     lambda ch: ch.queue_bind("q1", "x1", "k2")),
    ("queue.bind q1<-x1 | read on exchange denied", (ALL, ALL, "^q"),
     lambda ch: ch.queue_bind("q1", "x1", "k2")),
    ("queue.bind q1<-x1 | both denied (order)", (ALL, "^x", "^q"),
     lambda ch: ch.queue_bind("q1", "x1", "k2")),
    ("queue.bind q1<-x1 | conf denied only", ("^$", ALL, ALL),
     lambda ch: ch.queue_bind("q1", "x1", "k2")),
    ("queue.bind missing q <- x1 | write denied", (ALL, "^x", ALL),
     lambda ch: ch.queue_bind("nope", "x1", "k2")),
    ("queue.unbind q1<-x1 | write on queue denied", (ALL, "^x", ALL),
     lambda ch: ch.queue_unbind("q1", "x1", "k")),
    ("queue.unbind q1<-x1 | read on exchange denied", (ALL, ALL, "^q"),
     lambda ch: ch.queue_unbind("q1", "x1", "k")),
    ("exchange.bind x2<-x1 | write on dest denied", (ALL, "^x1$", ALL),
     lambda ch: ch.exchange_bind("x2", "x1", "k2")),
    ("exchange.bind x2<-x1 | read on source denied", (ALL, ALL, "^x2$"),
     lambda ch: ch.exchange_bind("x2", "x1", "k2")),
    ("exchange.bind x2<-x1 | both denied (order)", (ALL, "^x1$", "^x2$"),
     lambda ch: ch.exchange_bind("x2", "x1", "k2")),
    ("exchange.unbind x2<-x1 | write on dest denied", (ALL, "^x1$", ALL),
     lambda ch: ch.exchange_unbind("x2", "x1", "k")),
    ("exchange.unbind x2<-x1 | read on source denied", (ALL, ALL, "^x2$"),
     lambda ch: ch.exchange_unbind("x2", "x1", "k")),
    ("basic.publish x1 | write denied (no confirms)", (ALL, "^q", ALL),
     publish("x1", "k")),
    ("basic.publish x1 | write denied (confirms)", (ALL, "^q", ALL),
     publish("x1", "k", confirm=True)),
    ("basic.publish missing exch | write denied", (ALL, "^q", ALL),
     publish("nope", "k")),
    ("basic.publish '' rk=q1 | write ^q", (ALL, "^q", ALL),
     publish("", "q1")),
    ("basic.publish '' rk=q1 | write ^$", (ALL, "^$", ALL),
     publish("", "q1", confirm=True)),
    ("basic.publish '' rk=q1 | write ^amq\\.default$", (ALL, "^amq\\.default$", ALL),
     publish("", "q1", confirm=True)),
    ("basic.publish 'amq.default' rk=q1 | all .*", (ALL, ALL, ALL),
     publish("amq.default", "q1", confirm=True)),
    ("basic.consume q1 | read denied", (ALL, ALL, "^x"),
     consume("q1")),
    ("basic.consume missing | read denied", (ALL, ALL, "^x"),
     consume("nope")),
    ("basic.get q1 | read denied", (ALL, ALL, "^x"),
     lambda ch: ch.basic_get("q1")),
    ("queue.declare qd x-dlx=dlx | conf on dlx denied", ("^q", ALL, ALL),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": "dlx"})),
    ("queue.declare qd x-dlx=dlx | write on dlx denied", (ALL, "^q", ALL),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": "dlx"})),
    ("queue.declare qd x-dlx=dlx | read on dlx denied", (ALL, ALL, "^q"),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": "dlx"})),
    ("queue.declare qd x-dlx=dlx | read on queue denied", (ALL, ALL, "^d"),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": "dlx"})),
    ("queue.declare qd x-dlx=missingx | write ^q", (ALL, "^q", ALL),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": "missingx"})),
    ("queue.declare qd x-dlx='' (default) | write ^q", (ALL, "^q", ALL),
     lambda ch: ch.queue_declare("qd", arguments={"x-dead-letter-exchange": ""})),
    ("exchange.declare xa alternate-exchange=ae | conf on ae denied", ("^x", ALL, ALL),
     lambda ch: ch.exchange_declare("xa", "direct", arguments={"alternate-exchange": "ae"})),
    ("exchange.declare xa alternate-exchange=ae | write on ae denied", (ALL, "^x", ALL),
     lambda ch: ch.exchange_declare("xa", "direct", arguments={"alternate-exchange": "ae"})),
    ("exchange.declare xa alternate-exchange=ae | read on xa denied", (ALL, ALL, "^a"),
     lambda ch: ch.exchange_declare("xa", "direct", arguments={"alternate-exchange": "ae"})),
    ("exchange.declare xa alternate-exchange=ae | read on ae denied", (ALL, ALL, "^x"),
     lambda ch: ch.exchange_declare("xa", "direct", arguments={"alternate-exchange": "ae"})),
    ("exchange.declare xa alternate-exchange=ae | write on xa denied", (ALL, "^a", ALL),
     lambda ch: ch.exchange_declare("xa", "direct", arguments={"alternate-exchange": "ae"})),
    ("basic.consume amq.rabbitmq.reply-to | all ^$", ("^$", "^$", "^$"),
     consume("amq.rabbitmq.reply-to", auto_ack=True)),
    ("reply-to consume + publish ''/q1 reply_to | conf ^$ write .* read ^$", ("^$", ALL, "^$"),
     lambda ch: (ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True),
                 ch.basic_publish("", "q1", b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")))),
    ("reply-to consume + publish ''/q1 reply_to | write ^$", (ALL, "^$", ALL),
     lambda ch: (ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True),
                 ch.basic_publish("", "q1", b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")))),
    ("publish ''/amq.rabbitmq.reply-to.bogus | write ^q", (ALL, "^q", ALL),
     publish("", "amq.rabbitmq.reply-to.bogus")),
    ("publish ''/amq.rabbitmq.reply-to.bogus | all .*", (ALL, ALL, ALL),
     publish("", "amq.rabbitmq.reply-to.bogus", confirm=True)),
]


def reply_to_roundtrip(args):
    """A user with write on '' only replies through direct reply-to."""
    setperm(args, "^q", "^$", "^q")
    print("-- direct reply-to round trip, responder perms conf ^q write ^$ read ^q")
    req = admin(args)
    rch = req.channel()
    got = []
    rch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: got.append((m.routing_key, b)), auto_ack=True)
    rch.basic_publish("", "q1", b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    req.process_data_events(time_limit=0.3)
    conn = None
    try:
        from common import connect
        conn = connect(args)
        ch = conn.channel()
        m, p, b = ch.basic_get("q1", auto_ack=True)
        print("   responder got reply_to =", p.reply_to)
        ch.confirm_delivery()
        ch.basic_publish("", p.reply_to, b"pong")
        print("   responder publish ok")
    except Exception as e:
        print("   responder:", describe(e))
    req.process_data_events(time_limit=0.5)
    print("   requester got:", got)
    req.close()
    if conn and conn.is_open:
        conn.close()


def main():
    a = parser(__doc__).parse_args()
    for label, (c, w, r), op in ROWS:
        reset(a)
        setperm(a, c, w, r)
        attempt(f"{label} [{c} {w} {r}]", op, a)
    reset(a)
    reply_to_roundtrip(a)
    # async publish refusal: what happens to later frames on that channel
    setperm(a, ALL, "^q", ALL)
    from common import connect
    conn = connect(a)
    ch = conn.channel()
    t0 = time.time()
    ch.basic_publish("x1", "k", b"x")
    print(f"-- async publish returned in {time.time()-t0:.4f}s, channel open={ch.is_open}")
    try:
        ch.queue_declare("q1", passive=True)
        print("   next sync op OK?!")
    except Exception as e:
        print("   next sync op on same channel:", describe(e))
    print("   connection still open:", conn.is_open)
    ch2 = conn.channel()
    print("   new channel on same connection works:", ch2.queue_declare("q1", passive=True).method.queue)
    conn.close()
    setperm(a, ALL, ALL, ALL)


if __name__ == "__main__":
    main()
