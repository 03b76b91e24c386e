#!/usr/bin/env python3
"""Renames itself and makes a link with a hostile name, as any program can
(here inside a lab namespace).

usage: hostile_name.py COMM_HEX IFNAME_HEX SECONDS
  Sets its own comm to COMM (prctl PR_SET_NAME), sends one RTM_NEWLINK that
  creates a bridge named IFNAME and reads the kernel's answer, prints its pid
  and the errno (0: created), then sleeps SECONDS so that `tracer ns` can
  see the process.
"""
import ctypes
import os
import socket
import struct
import sys
import time

RTM_NEWLINK = 16
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 18, 1
PR_SET_NAME = 15


def attr(ty, payload):
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("HH", length, ty) + payload + b"\0" * pad


def main():
    comm, ifname, seconds = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), float(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(comm), 0, 0, 0) != 0:
        sys.exit("prctl: errno %d" % ctypes.get_errno())
    print(os.getpid(), flush=True)
    # struct ifinfomsg: family, pad, type, index, flags, change.
    body = struct.pack("BBHiII", socket.AF_UNSPEC, 0, 0, 0, 0, 0)
    body += attr(IFLA_IFNAME, ifname + b"\0")
    body += attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
    msg = struct.pack("IHHII", 16 + len(body), RTM_NEWLINK, flags, 1, 0) + body
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    s.send(msg)
    data = s.recv(65536)
    errno = -struct.unpack_from("i", data, 16)[0] if struct.unpack_from("H", data, 4)[0] == NLMSG_ERROR else -1
    print(errno, flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
