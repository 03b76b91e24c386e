#!/usr/bin/env python3
"""Sends raw bytes to rtnetlink, one send() per argument, as whoever runs it.

usage: nlraw.py HEX|big:IFNAME:SIZE|newaddr:IP [...]
  HEX              the bytes of one send, hex-encoded (any bytes at all)
  big:IFNAME:SIZE  an RTM_NEWLINK naming IFNAME, padded with an unknown
                   attribute to SIZE bytes
  newaddr:IP       a valid RTM_NEWADDR of IP/32 on interface 1, with NLM_F_ACK
Prints its pid first, then one line per send: the errno of the kernel's
answer (0 ok, 1 EPERM, ...), or "-" when no answer came within 0.5 s.
The tests run it as nobody, through standard input, to show that an
unprivileged process reaches the audit before the kernel's permission check.
"""
import ipaddress
import os
import select
import socket
import struct
import sys

RTM_NEWLINK, RTM_NEWADDR = 16, 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400


def attr(ty, payload):
    length = 4 + len(payload)
    return struct.pack("HH", length, ty) + payload + b"\0" * ((4 - length % 4) % 4)


def msg(ty, flags, seq, body):
    return struct.pack("IHHII", 16 + len(body), ty, flags, seq, 0) + body


def build(arg, seq):
    if arg.startswith("big:"):
        _, name, size = arg.split(":")
        body = struct.pack("BBHiII", 0, 0, 0, 0, 0, 0) + attr(3, name.encode() + b"\0")
        pad = int(size) - 16 - len(body) - 4
        body += attr(0x7FF, b"\xaa" * pad)
        return msg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, body)
    if arg.startswith("newaddr:"):
        raw = ipaddress.IPv4Address(arg.split(":", 1)[1]).packed
        body = struct.pack("BBBBI", socket.AF_INET, 32, 0, 0, 1) + attr(2, raw) + attr(1, raw)
        return msg(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq, body)
    return bytes.fromhex(arg)


def main():
    print(os.getpid(), flush=True)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    for i, arg in enumerate(sys.argv[1:]):
        s.send(build(arg, 7000 + i))
        answer = "-"
        if select.select([s], [], [], 0.5)[0]:
            data = s.recv(65536)
            if len(data) >= 20 and struct.unpack_from("H", data, 4)[0] == 2:
                answer = str(-struct.unpack_from("i", data, 16)[0])
        print(answer, flush=True)


if __name__ == "__main__":
    main()
