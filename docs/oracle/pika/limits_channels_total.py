"""Is user max-channels counted per connection or across the user's connections?

  python limits_channels_total.py --vhost vlim --user u --password upass
"""
import json
import time

from common import parser, ctl, q, connect, describe


def main():
    a = parser(__doc__).parse_args()
    U = q(a.user)
    ctl(a, f"set_user_limits {U} {q(json.dumps({'max-channels': 2}))}")
    print("-- set_user_limits {\"max-channels\": 2}; sleeping 2s between steps")
    time.sleep(2)
    c1 = connect(a)
    c1.channel()
    print("   conn1 channel 1: OK")
    c2 = connect(a)
    c2.channel()
    print("   conn2 channel 1: OK")
    time.sleep(2)
    c3 = connect(a)
    try:
        c3.channel()
        print("   conn3 channel 1: OK -> limit is per connection")
    except Exception as e:
        print("   conn3 channel 1:", describe(e), "-> limit counts all the user's channels")
    for c in (c1, c2, c3):
        if c.is_open:
            c.close()
    c4 = connect(a)
    c4.channel()
    c4.channel()
    print("   after closing them, 2 channels on one connection: OK")
    c4.close()
    ctl(a, f"clear_user_limits {U} all")


if __name__ == "__main__":
    main()
