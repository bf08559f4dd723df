"""Broker-wide connection_max: open N+1 connections (raw handshakes) and
show what the extra one sees.  Broker must be started with connection_max=N.

  python connection_max.py --vhost v --user u --password upass -n 3
"""
from common import parser
from rawamqp import handshake, show


def main():
    ap = parser(__doc__)
    ap.add_argument("-n", type=int, default=3)
    a = ap.parse_args()
    keep = []
    for i in range(a.n):
        steps, r = handshake(a.host, a.port, a.user, a.password, a.vhost)
        show(f"connection {i + 1}", steps)
        keep.append(r)
    for r in keep:
        r and r.close()


if __name__ == "__main__":
    main()
