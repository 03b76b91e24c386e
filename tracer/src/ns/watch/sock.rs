//! The watcher's own sockets: the monitor socket (subscribed to the link,
//! address, route and nsid groups of every namespace that has an id here,
//! each datagram tagged with that id) and the eventfd that wakes its
//! thread. Its requests go through [`crate::ns::rtnl::Rtnl`].

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use crate::sys::netns::socket_cookie;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;
/// The largest datagram rtnetlink sends (dumps fill up to 32 KiB).
pub const DATAGRAM_MAX: usize = 64 * 1024;

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

