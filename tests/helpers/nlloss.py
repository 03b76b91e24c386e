#!/usr/bin/env python3
"""Makes the netlink capture give up in each way userspace can provoke, so
the tests can check that every such loss is counted with its source.

usage: nlloss.py MODE IFNAME BASE_IP [WAY]
  iov       one sendmsg with 10 iovecs, one RTM_NEWADDR each (8 are looked at)
  writev    the same by writev
  mmsg      one sendmmsg of 10 messages, each of 2 iovecs with one RTM_NEWADDR
            each (8 messages looked at, and only the first iovec of each)
  badbuf    a request the kernel refuses with EFAULT, pointing at memory that
            is not there in one WAY: sendto or write from an unmapped buffer,
            sendmsg with an unmapped msghdr, iovec array or iov_base
  bigerr    one failing request 2000 bytes long, acked without
            NETLINK_CAP_ACK: the error echoes it, an answer over 1 KiB
  recvargs  4096 threads blocked in recvmsg on a netlink socket (the most
            the in-flight table holds), then one request with its answer
Prints its pid first, then the acks with errno 0 (iov, writev, mmsg) or
the errno of the call or its answer (badbuf, bigerr, recvargs).
"""
import ctypes
import ipaddress
import os
import socket
import struct
import sys
import threading
import time

RTM_NEWADDR = 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSG_ERROR = 2
SYS_RECVFROM, SYS_RECVMSG = "45", "47"  # x86_64; recv() is recvfrom
# An address no process maps: the first page.
UNMAPPED = 8

libc = ctypes.CDLL(None, use_errno=True)


def attr(ty, payload):
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("HH", length, ty) + payload + b"\0" * pad


def newaddr(seq, index, ip, extra=b""):
    raw = ipaddress.IPv4Address(ip).packed
    body = struct.pack("BBBBI", socket.AF_INET, 32, 0, 0, index)
    body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw) + extra
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
    return struct.pack("IHHII", 16 + len(body), RTM_NEWADDR, flags, seq, 0) + body


def acks(s, count):
    """Reads `count` answers; returns their errnos."""
    out = []
    while len(out) < count:
        data = s.recv(65536)
        off = 0
        while off + 20 <= len(data):
            length, ty = struct.unpack_from("IH", data, off)
            if ty == NLMSG_ERROR:
                out.append(-struct.unpack_from("i", data, off + 16)[0])
            off += max((length + 3) & ~3, 16)
    return out


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


def errno_of(rc):
    return ctypes.get_errno() if rc < 0 else 0


def main():
    mode, ifname, base = sys.argv[1], sys.argv[2], sys.argv[3]
    print(os.getpid(), flush=True)
    index = socket.if_nametoindex(ifname)
    first = ipaddress.IPv4Address(base)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    fd = s.fileno()
    if mode in ("iov", "writev"):
        msgs = [newaddr(1000 + i, index, str(first + i)) for i in range(10)]
        if mode == "iov":
            s.sendmsg(msgs)
        else:
            os.writev(fd, msgs)
        print(acks(s, 10).count(0), flush=True)
    elif mode == "mmsg":
        msgs = [newaddr(1000 + i, index, str(first + i)) for i in range(20)]
        bufs = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
        iovs = (Iovec * 20)(*[Iovec(ctypes.cast(b, ctypes.c_void_p), len(m)) for b, m in zip(bufs, msgs)])
        vec = (Mmsghdr * 10)()
        for i in range(10):
            vec[i].hdr.iov = ctypes.addressof(iovs) + 2 * i * ctypes.sizeof(Iovec)
            vec[i].hdr.iovlen = 2
        n = libc.sendmmsg(fd, vec, 10, 0)
        if n != 10:
            sys.exit("sendmmsg sent %d: errno %d" % (n, ctypes.get_errno()))
        print(acks(s, 20).count(0), flush=True)
    elif mode == "badbuf":
        # One way per run (argv[4]), so the test can check each count.
        msg = newaddr(1, index, str(first))
        addr = ctypes.create_string_buffer(struct.pack("HHII", socket.AF_NETLINK, 0, 0, 0), 12)
        bad_base = Iovec(UNMAPPED, len(msg))
        way = sys.argv[4]
        if way == "sendto":
            rc = libc.sendto(fd, ctypes.c_void_p(UNMAPPED), len(msg), 0, addr, 12)
        elif way == "write":
            rc = libc.write(fd, ctypes.c_void_p(UNMAPPED), len(msg))
        elif way == "msghdr":
            rc = libc.sendmsg(fd, ctypes.c_void_p(UNMAPPED), 0)
        elif way == "iovec":
            hdr = Msghdr(iov=UNMAPPED, iovlen=1)
            rc = libc.sendmsg(fd, ctypes.byref(hdr), 0)
        elif way == "iov_base":
            hdr = Msghdr(iov=ctypes.addressof(bad_base), iovlen=1)
            rc = libc.sendmsg(fd, ctypes.byref(hdr), 0)
        else:
            sys.exit("unknown way " + way)
        print(errno_of(rc), flush=True)
    elif mode == "bigerr":
        # No such interface: ENODEV, with the whole request echoed back.
        msg = newaddr(7, 999999, str(first), attr(0x7ff, b"\0" * 2000))
        s.send(msg)
        print(acks(s, 1)[0], flush=True)
    elif mode == "recvargs":
        threading.stack_size(64 * 1024)
        blocker = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        blocker.bind((0, 0))
        n = 4096
        threads = [threading.Thread(target=blocker.recv, args=(64,), daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while True:
            inside = 0
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open("/proc/self/task/%s/syscall" % tid) as f:
                        if f.read().split()[0] in (SYS_RECVFROM, SYS_RECVMSG):
                            inside += 1
                except OSError:
                    pass
            if inside >= n:
                break
            if time.time() > deadline:
                sys.exit("only %d threads inside recvmsg" % inside)
            time.sleep(0.1)
        s.send(newaddr(9, 999999, str(first)))
        print(acks(s, 1)[0], flush=True)
        # The blocked threads end with the process.
        os._exit(0)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
