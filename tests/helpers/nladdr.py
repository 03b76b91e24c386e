#!/usr/bin/env python3
"""Adds one IPv4 address with a chosen netlink portid and sequence number.

usage: nladdr.py PORTID SEQ IFNAME ADDR/PLEN
Binds a route socket to PORTID, sends RTM_NEWADDR with SEQ, and exits 0
when the kernel acks it; the notification must carry PORTID and SEQ.
"""
import socket
import struct
import sys

RTM_NEWADDR = 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2


def attr(ty, payload):
    length = 4 + len(payload)
    return struct.pack("HH", length, ty) + payload + b"\0" * ((4 - length % 4) % 4)


portid, seq, ifname, cidr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
addr, plen = cidr.split("/")
index = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((portid, 0))
a = socket.inet_aton(addr)
body = struct.pack("BBBBi", socket.AF_INET, int(plen), 0, 0, index) + attr(IFA_LOCAL, a) + attr(IFA_ADDRESS, a)
flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
s.send(struct.pack("IHHII", 16 + len(body), RTM_NEWADDR, flags, seq, portid) + body)
answer = s.recv(4096)
err = struct.unpack_from("i", answer, 16)[0]
sys.exit(0 if err == 0 else 1)
