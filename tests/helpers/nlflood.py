#!/usr/bin/env python3
"""Floods rtnetlink with requests an unprivileged user may send.

usage: nlflood.py COUNT [NAME_LEN] [--as-nobody]
  COUNT RTM_SETLINK requests, each with an IFLA_IFNAME of NAME_LEN bytes
  (default 4096, far beyond IFNAMSIZ; 0: no name) and a random ifindex, sent as fast as
  possible on one socket whose answers are never read. With --as-nobody the
  process drops to the user `nobody` before opening the socket: the kernel
  refuses every request (EPERM), but the syscall tracepoints see them all.
Prints its pid first, then the number of requests sent and the seconds taken.
"""
import os
import random
import socket
import struct
import sys
import time

RTM_SETLINK = 19
NLM_F_REQUEST, NLM_F_ACK = 1, 4
IFLA_IFNAME = 3


def drop_to_nobody():
    import pwd
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0])
    name_len = int(args[1]) if len(args) > 1 else 4096
    if "--as-nobody" in sys.argv:
        drop_to_nobody()
    print(os.getpid(), flush=True)
    attr = b""
    if name_len > 0:
        name = (b"x" * name_len) + b"\0"
        attr_len = 4 + len(name)
        attr = struct.pack("HH", attr_len, IFLA_IFNAME) + name + b"\0" * ((4 - attr_len % 4) % 4)
    # nlmsghdr (16) + ifinfomsg (16) + the name.
    msg = bytearray(struct.pack("IHHII", 32 + len(attr), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 0, 0)
                    + struct.pack("BBHiII", socket.AF_UNSPEC, 0, 0, 0, 0, 0) + attr)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    rnd = random.Random(1)
    sent = 0
    start = time.time()
    for i in range(count):
        struct.pack_into("I", msg, 8, i + 1)
        struct.pack_into("i", msg, 20, rnd.randrange(1, 1 << 31))
        try:
            s.send(msg)
            sent += 1
        except OSError:
            # ENOBUFS once the unread answers fill the receive buffer.
            pass
    print(sent, flush=True)
    print("%.3f" % (time.time() - start), flush=True)


if __name__ == "__main__":
    main()
