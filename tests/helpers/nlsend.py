#!/usr/bin/env python3
"""Sends rtnetlink requests by the syscall paths the audit must see.

usage: nlsend.py MODE IFNAME BASE_IP COUNT
  MODE: sendmsg-batch (COUNT RTM_NEWADDR in one sendmsg), write, writev,
        sendmmsg (one RTM_NEWADDR per mmsghdr), sendto, loop (add then delete
        each address, one request at a time, waiting for each answer: 2*COUNT
        changes)
Prints its pid first, then the number of acks with errno 0.
"""
import ctypes
import ipaddress
import os
import socket
import struct
import sys

RTM_NEWADDR = 20
RTM_DELADDR = 21
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2


def attr(ty, payload):
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("HH", length, ty) + payload + b"\0" * pad


def newaddr(seq, index, ip):
    raw = ipaddress.IPv4Address(ip).packed
    body = struct.pack("BBBBI", socket.AF_INET, 32, 0, 0, index)
    body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
    return struct.pack("IHHII", 16 + len(body), RTM_NEWADDR, flags, seq, 0) + body


def main():
    mode, ifname, base, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(os.getpid(), flush=True)
    index = socket.if_nametoindex(ifname)
    first = ipaddress.IPv4Address(base)
    msgs = [newaddr(1000 + i, index, str(first + i)) for i in range(count)]
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    if mode == "loop":
        ok = 0
        for i in range(count):
            for ty in (RTM_NEWADDR, RTM_DELADDR):
                m = bytearray(newaddr(i, index, str(first + i % 65000)))
                struct.pack_into("H", m, 4, ty)
                if ty == RTM_DELADDR:
                    struct.pack_into("H", m, 6, NLM_F_REQUEST | NLM_F_ACK)
                s.send(bytes(m))
                data = s.recv(65536)
                if struct.unpack_from("H", data, 4)[0] == 2 and struct.unpack_from("i", data, 16)[0] == 0:
                    ok += 1
        print(ok, flush=True)
        return
    if mode in ("fire", "fire-big"):
        # No NLM_F_ACK: the kernel answers only failures; nothing is read.
        # fire-big makes every other message 6000 bytes longer (an unknown
        # attribute), more than a 4 KiB ring buffer can ever hold.
        for i, m in enumerate(msgs):
            m = bytearray(m)
            struct.pack_into("H", m, 6, NLM_F_REQUEST | NLM_F_EXCL | NLM_F_CREATE)
            if mode == "fire-big" and i % 2 == 1:
                m += attr(0x7ff, b"\0" * 6000)
                struct.pack_into("I", m, 0, len(m))
            s.send(bytes(m))
        print(0, flush=True)
        return
    if mode == "sendmsg-batch":
        s.sendmsg([b"".join(msgs)])
    elif mode == "sendto":
        for m in msgs:
            s.sendto(m, (0, 0))
    elif mode == "write":
        for m in msgs:
            os.write(s.fileno(), m)
    elif mode == "writev":
        os.writev(s.fileno(), msgs)
    elif mode == "sendmmsg":
        sendmmsg(s.fileno(), msgs)
    else:
        sys.exit("unknown mode " + mode)
    ok = 0
    seen = 0
    while seen < count:
        data = s.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, ty = struct.unpack_from("IH", data, off)
            if ty == 2:
                seen += 1
                if struct.unpack_from("i", data, off + 16)[0] == 0:
                    ok += 1
            off += (length + 3) & ~3
    print(ok, flush=True)


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


def sendmmsg(fd, msgs):
    libc = ctypes.CDLL(None, use_errno=True)
    bufs = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
    iovs = [Iovec(ctypes.cast(b, ctypes.c_void_p), len(m)) for b, m in zip(bufs, msgs)]
    vec = (Mmsghdr * len(msgs))()
    for i, iov in enumerate(iovs):
        vec[i].hdr.iov = ctypes.pointer(iov)
        vec[i].hdr.iovlen = 1
    n = libc.sendmmsg(fd, vec, len(msgs), 0)
    if n != len(msgs):
        sys.exit("sendmmsg sent %d: errno %d" % (n, ctypes.get_errno()))


if __name__ == "__main__":
    main()
