//! The watcher's sockets and namespace-file facts: the monitor socket
//! (subscribed to the link, address, route and nsid groups of every
//! namespace that has an id here, each datagram tagged with that id), the
//! request socket (dumps and nsid questions), and what a namespace fd is
//! (inode, cookie).

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::msg::{Body, Msg, NLMSG_DONE, Request, split};

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;
/// `SO_NETNS_COOKIE` (Linux 5.14); not in every libc crate version.
const SO_NETNS_COOKIE: libc::c_int = 71;
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// The largest datagram rtnetlink sends (dumps fill up to 32 KiB).
pub const DATAGRAM_MAX: usize = 64 * 1024;
/// How long a request may wait for its answer: a namespace being torn
/// down must not hang the watcher.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// RTNLGRP_LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE, NSID.
pub const GROUPS: [u32; 6] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_IPV6_ROUTE,
    libc::RTNLGRP_NSID,
];

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt on an fd we own with a correctly sized int.
    let rc = unsafe { libc::setsockopt(fd, level, opt, (&raw const v).cast(), size_of::<libc::c_int>() as libc::socklen_t) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The notification socket, in the namespace of the thread that opened it.
pub struct Monitor {
    sock: Socket,
}

impl Monitor {
    /// Subscribes to [`GROUPS`] with `NETLINK_LISTEN_ALL_NSID`, so the
    /// notifications of every namespace this one has an id for arrive
    /// here, without a socket inside them (a socket holds its namespace
    /// alive: one per watched namespace would keep deleted namespaces and
    /// their veths around).
    pub fn open(rcvbuf: usize) -> io::Result<Monitor> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        for g in GROUPS {
            sock.add_membership(g)?;
        }
        sock.set_listen_all_namespaces(true)?;
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        // SO_RCVBUFFORCE goes past net.core.rmem_max (needs CAP_NET_ADMIN).
        if setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            sock.set_rx_buf_sz(rcvbuf)?;
        }
        sock.set_non_blocking(true)?;
        Ok(Monitor { sock })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The cookie of the namespace the socket is in.
    pub fn cookie(&self) -> Option<u64> {
        // SAFETY: the socket's fd stays open while `self` is borrowed.
        socket_cookie(unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) })
    }

    /// Reads one datagram into `buf`: `Ok(None)` when none is waiting;
    /// otherwise its length and the nsid (as this namespace numbers it)
    /// of the namespace it comes from, `None` for this namespace itself.
    /// `Err` with ENOBUFS means the kernel dropped notifications.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Option<i32>, bool)>> {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut cbuf = [0u64; 8];
        // SAFETY: a zeroed msghdr is a valid empty one; the fields set below
        // point to live buffers of the stated lengths.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &raw mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.as_mut_ptr().cast();
        mh.msg_controllen = size_of_val(&cbuf) as _;
        // SAFETY: recvmsg into the buffers described by `mh`.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &raw mut mh, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        let truncated = mh.msg_flags & libc::MSG_TRUNC != 0;
        let mut nsid = None;
        // SAFETY: CMSG_* walk the control buffer recvmsg filled, within
        // msg_controllen; the data of our cmsg type is one int.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const mh);
            while !c.is_null() {
                if (*c).cmsg_level == SOL_NETLINK
                    && (*c).cmsg_type == NETLINK_LISTEN_ALL_NSID
                    && (*c).cmsg_len as usize >= libc::CMSG_LEN(size_of::<i32>() as u32) as usize
                {
                    nsid = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
                }
                c = libc::CMSG_NXTHDR(&raw const mh, c);
            }
        }
        Ok(Some((n as usize, nsid, truncated)))
    }
}

/// What a dump answered.
pub struct Dump {
    pub msgs: Vec<Msg>,
    /// `NLM_F_DUMP_INTR`: the table changed during the dump; read it again.
    pub interrupted: bool,
    /// Answers that could not be read.
    pub malformed: u64,
}

/// The request socket (not subscribed to anything).
pub struct Requester {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Requester {
    pub fn open() -> io::Result<Requester> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        // Strict checking makes the kernel honour a target nsid in nsid dumps.
        sock.set_netlink_get_strict_chk(true)?;
        let tv = libc::timeval { tv_sec: REQUEST_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        // SAFETY: setsockopt on our own fd with a correctly sized timeval.
        let rc = unsafe {
            libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const tv).cast(), size_of::<libc::timeval>() as libc::socklen_t)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Requester { sock, seq: 0, buf: vec![0; DATAGRAM_MAX] })
    }

    /// Sends `req` and collects its answers: up to `NLMSG_DONE` for a dump,
    /// else the first answer (an ack is an empty list). An `NLMSG_ERROR`
    /// with an errno is an `Err`.
    pub fn ask(&mut self, req: &Request, dump: bool) -> io::Result<Dump> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.sock.send_to(&req.encode(seq), &SocketAddr::new(0, 0), 0)?;
        let mut out = Dump { msgs: Vec::new(), interrupted: false, malformed: 0 };
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "route socket closed"));
            }
            for m in split(&self.buf[..n.min(self.buf.len())]) {
                let Ok(m) = m else {
                    out.malformed += 1;
                    continue;
                };
                if m.hdr.seq != seq {
                    continue;
                }
                if m.hdr.flags & libc::NLM_F_DUMP_INTR as u16 != 0 {
                    out.interrupted = true;
                }
                match m.body {
                    Body::Error(0) => return Ok(out),
                    Body::Error(e) => return Err(io::Error::from_raw_os_error(e.saturating_neg())),
                    _ if m.hdr.ty == NLMSG_DONE => return Ok(out),
                    _ => {
                        out.msgs.push(m);
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

/// Checks that `fd` is a network namespace file and returns its inode.
pub fn netns_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: fstatfs/fstat/ioctl on a borrowed, open fd into zeroed structs.
    unsafe {
        let mut sfs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd.as_raw_fd(), &mut sfs) != 0 {
            return Err(io::Error::last_os_error());
        }
        if sfs.f_type as i64 != NSFS_MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a namespace file"));
        }
        let t = libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _);
        if t != libc::CLONE_NEWNET {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a network namespace"));
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_ino)
    }
}

/// The namespace file of the calling thread.
pub fn own_netns() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

/// A namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): the calling thread
/// enters it just long enough to make a socket there. `None` when the
/// kernel has no cookies or the namespace cannot be entered.
pub fn cookie_of(ns: BorrowedFd<'_>) -> Option<u64> {
    let home = own_netns().ok()?;
    // SAFETY: setns on fds we hold open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return None;
    }
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    // SAFETY: as above; returning home cannot be skipped.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // The thread is stranded in a foreign namespace; nothing sane can follow.
        eprintln!("tracer: cannot return to the original network namespace: {}", io::Error::last_os_error());
        std::process::abort();
    }
    if s < 0 {
        return None;
    }
    // SAFETY: `s` is a new fd nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    socket_cookie(s.as_fd())
}

/// The cookie of the namespace a socket belongs to.
pub fn socket_cookie(s: BorrowedFd<'_>) -> Option<u64> {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt into a u64 of the advertised length.
    let rc = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut v).cast(), &mut len) };
    (rc == 0 && len as usize == size_of::<u64>()).then_some(v)
}

/// An eventfd that wakes the watcher thread.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with constant flags; the fd is owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn wake(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: an 8-byte write to an eventfd; failure (counter full) still wakes.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

pub fn drain(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: an 8-byte read from a non-blocking eventfd.
    unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are.
pub fn poll(fds: &[RawFd], timeout: Duration) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll over a live array of pollfd of the stated length.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if rc <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_a_netns_and_other_files_are_not() {
        let me = own_netns().expect("own netns");
        let ino = netns_inode(me.as_fd()).expect("inode");
        let want = crate::sys::ns_inode(std::path::Path::new("/proc/self/ns/net")).expect("inode");
        assert_eq!(ino, want);
        let f = std::fs::File::open("/proc/self/status").expect("file");
        assert!(netns_inode(f.as_fd()).is_err());
        let uts = std::fs::File::open("/proc/self/ns/uts").expect("uts");
        assert!(netns_inode(uts.as_fd()).is_err());
    }

    #[test]
    fn requests_are_answered() {
        // Needs only a route socket in the own namespace (no privilege).
        let mut r = Requester::open().expect("socket");
        let d = r.ask(&Request::DumpLinks(None), true).expect("link dump");
        assert!(d.msgs.iter().any(|m| matches!(&m.body, Body::Link(l) if l.name.as_deref() == Some("lo"))));
    }
}
