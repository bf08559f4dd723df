"""Shared helpers for the tenancy oracle scripts.

Every script takes --host/--port/--vhost/--user/--password (and, for the
parts that need broker-side setup, --ctl: the command used to run
rabbitmqctl-compatible admin commands, default "rabbitmqctl").
"""
import argparse
import shlex
import subprocess
import time

import pika
import pika.exceptions as pe


def parser(desc):
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672)
    p.add_argument("--vhost", default="v")
    p.add_argument("--user", default="u")
    p.add_argument("--password", default="upass")
    p.add_argument("--admin-user", default="guest")
    p.add_argument("--admin-password", default="guest")
    p.add_argument("--ctl", default="rabbitmqctl",
                   help="admin CLI (rabbitmqctl-compatible), run via shell")
    return p


def ctl(args, cmd):
    """Run an admin command; return stdout. Raises on failure."""
    full = f"{args.ctl} {cmd}"
    r = subprocess.run(full, shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{full}: rc={r.returncode} {r.stderr.strip()} {r.stdout.strip()}")
    return r.stdout


def q(s):
    return shlex.quote(s)


def params(args, user=None, password=None, vhost=None, host=None, **kw):
    return pika.ConnectionParameters(
        host=host or args.host, port=args.port,
        virtual_host=args.vhost if vhost is None else vhost,
        credentials=pika.PlainCredentials(user or args.user,
                                          password if password is not None else args.password,
                                          erase_on_connect=False),
        connection_attempts=1, retry_delay=0, socket_timeout=5,
        blocked_connection_timeout=None, **kw)


def connect(args, **kw):
    return pika.BlockingConnection(params(args, **kw))


def admin(args, vhost=None):
    return connect(args, user=args.admin_user, password=args.admin_password,
                   vhost=vhost)


def describe(e):
    """Render an exception the way the notes record it."""
    if isinstance(e, (pe.ChannelClosedByBroker, pe.ConnectionClosedByBroker)):
        kind = "channel.close" if isinstance(e, pe.ChannelClosedByBroker) else "connection.close"
        return f"{kind} {e.reply_code} {e.reply_text}"
    return f"{type(e).__name__}: {e!r}"


def attempt(label, fn, args, settle=0.3, **connkw):
    """Open a fresh connection+channel as the test user, run fn(ch), report.

    After fn returns, wait `settle` seconds and poke the channel so that an
    asynchronous channel.close (e.g. after basic.publish) is observed.
    """
    try:
        conn = connect(args, **connkw)
    except Exception as e:  # noqa
        print(f"{label:60s} | CONNECT FAILED {describe(e)}")
        return
    try:
        ch = conn.channel()
        res = fn(ch)
        if settle:
            conn.process_data_events(time_limit=settle)
        if ch.is_closed:
            print(f"{label:60s} | async {describe(ch._closing_reason)}")
        else:
            # a cheap synchronous round trip flushes any pending close
            ch.basic_qos(prefetch_count=0)
            print(f"{label:60s} | OK {res if res is not None else ''}")
    except Exception as e:  # noqa
        print(f"{label:60s} | {describe(e)}")
    finally:
        try:
            if conn.is_open:
                conn.close()
        except Exception:
            pass
