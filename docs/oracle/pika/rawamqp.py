"""Minimal raw AMQP 0-9-1 client to see exactly which frame (or EOF) the
broker sends at each handshake step. Used by conn_level.py and limits.py.

  python rawamqp.py --host 192.0.2.2 --user guest --password guest --vhost /
"""
import socket
import struct
import time

FRAME_END = 0xCE


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def method_frame(ch, cls, mid, args=b""):
    payload = struct.pack(">HH", cls, mid) + args
    return struct.pack(">BHI", 1, ch, len(payload)) + payload + bytes([FRAME_END])


NAMES = {(10, 10): "connection.start", (10, 30): "connection.tune",
         (10, 41): "connection.open-ok", (10, 50): "connection.close",
         (10, 51): "connection.close-ok", (10, 60): "connection.blocked",
         (10, 20): "connection.secure",
         (20, 11): "channel.open-ok", (20, 40): "channel.close",
         (20, 41): "channel.close-ok"}


class Raw:
    def __init__(self, host, port, timeout=5.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.log = []

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError as e:
            self.log.append(f"send failed: {e!r}")
            return False

    def _read(self, n):
        while len(self.buf) < n:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            except OSError as e:
                self.log.append(f"recv error {e!r}")
                return b""
            if not d:
                return b""
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        """Return (desc, detail) for the next frame, 'EOF' or 'TIMEOUT'."""
        h = self._read(7)
        if h is None:
            return ("TIMEOUT", None)
        if len(h) < 7:
            if h.startswith(b"AMQP"):
                return ("protocol-header " + h.hex(), None)
            return ("EOF", None)
        if h.startswith(b"AMQP"):
            rest = self._read(1)
            return ("protocol-header " + (h + (rest or b"")).hex(), None)
        typ, ch, size = struct.unpack(">BHI", h)
        body = self._read(size + 1)
        if not body or len(body) < size + 1:
            return ("EOF", None)
        body = body[:-1]
        if typ != 1:
            return (f"frame type {typ} ch {ch}", body)
        cls, mid = struct.unpack(">HH", body[:4])
        name = NAMES.get((cls, mid), f"method {cls}.{mid}")
        if (cls, mid) in ((10, 50), (20, 40)):
            code, = struct.unpack(">H", body[4:6])
            ln = body[6]
            text = body[7:7 + ln].decode()
            c2, m2 = struct.unpack(">HH", body[7 + ln:11 + ln])
            return (f"{name} ch{ch}", f"{code} {text} (class {c2} method {m2})")
        if (cls, mid) == (10, 30):
            cm, fm, hb = struct.unpack(">HIH", body[4:12])
            return (f"{name} ch{ch}", f"channel_max={cm} frame_max={fm} heartbeat={hb}")
        return (f"{name} ch{ch}", None)

    def timed_frame(self):
        t0 = time.time()
        d, det = self.frame()
        return (f"{d} [{time.time() - t0:.2f}s]", det)

    def close(self):
        self.s.close()


def handshake(host, port, user, password, vhost, mechanism="PLAIN",
              channels=0, open_channels=0, verbose=True, auth_close_cap=True):
    """Walk the handshake; return list of (step, received) and the Raw.

    Stops at the first unexpected frame/EOF.
    """
    steps = []
    try:
        r = Raw(host, port)
    except OSError as e:
        return [("tcp connect", repr(e))], None
    r.send(b"AMQP\x00\x00\x09\x01")
    f = r.timed_frame()
    steps.append(("after protocol header", f))
    if not f[0].startswith("connection.start"):
        return steps, r
    resp = b"\x00" + user.encode() + b"\x00" + password.encode()
    props = b""  # empty client-properties table unless the capability is wanted
    if auth_close_cap:
        inner = shortstr("authentication_failure_close") + b"t\x01"
        props = shortstr("capabilities") + b"F" + longstr(inner)
    r.send(method_frame(0, 10, 11, longstr(props) + shortstr(mechanism) + longstr(resp) + shortstr("en_US")))
    f = r.timed_frame()
    steps.append(("after start-ok", f))
    if not f[0].startswith("connection.tune"):
        if f[0].startswith("connection.close"):
            r.send(method_frame(0, 10, 51))
            steps.append(("after close-ok", r.timed_frame()))
        return steps, r
    if not channels:
        channels = int(f[1].split()[0].split("=")[1])  # echo the server's channel_max
    r.send(method_frame(0, 10, 31, struct.pack(">HIH", channels, 131072, 0)))
    r.send(method_frame(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00"))
    f = r.timed_frame()
    steps.append(("after tune-ok+open", f))
    if not f[0].startswith("connection.open-ok"):
        if f[0].startswith("connection.close"):
            r.send(method_frame(0, 10, 51))
            steps.append(("after close-ok", r.timed_frame()))
        return steps, r
    for n in range(1, open_channels + 1):
        r.send(method_frame(n, 20, 10, shortstr("")))
        f = r.timed_frame()
        steps.append((f"after channel.open {n}", f))
        if not f[0].startswith("channel.open-ok"):
            break
    return steps, r


def show(label, steps):
    print(f"== {label}")
    for step, (desc, detail) in steps:
        print(f"   {step:24s} -> {desc}{'  ' + detail if detail else ''}")


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672)
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--vhost", default="/")
    p.add_argument("--mechanism", default="PLAIN")
    p.add_argument("--no-cap", action="store_true", help="omit authentication_failure_close capability")
    a = p.parse_args()
    steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost, a.mechanism, auth_close_cap=not a.no_cap)
    show(f"{a.user}@{a.host}/{a.vhost}", steps)
