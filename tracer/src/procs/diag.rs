//! Sockets that existed before the tracer started: a `sock_diag` dump
//! (TCP and UDP, IPv4 and IPv6) inside each network namespace gives every
//! socket's cookie (the same one `bpf_get_socket_cookie` returns), inode,
//! addresses and state; [`super::fdmap`] finds the process holding each
//! inode. The kernel's messages are parsed with netlink-packet-sock-diag.
//! Runs on a thread of its own before the job is ready, bounded by
//! [`DUMP_MAX`] sockets per namespace.

use std::{
    net::IpAddr,
    os::fd::AsRawFd,
    path::Path,
    time::Duration,
};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// Sockets read from one namespace, at most; the rest are counted.
pub const DUMP_MAX: usize = 65_536;
/// How long one dump may wait for the kernel.
const RECV_TIMEOUT: Duration = Duration::from_millis(500);
/// TCP_LISTEN in `inet_diag_msg.idiag_state`.
const TCP_LISTEN: u8 = 10;

/// One socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSock {
    pub cookie: u64,
    pub inode: u64,
    pub proto: u8,
    pub local: (IpAddr, u16),
    /// Unspecified address and port 0 when unconnected.
    pub remote: (IpAddr, u16),
    pub listening: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("sock_diag: {0}")]
    Io(#[from] std::io::Error),
}

/// The cookie as `inet_diag` writes it: two native-endian u32, low half first.
pub fn cookie_of(c: &[u8; 8]) -> u64 {
    let lo = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    let hi = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Every TCP and UDP socket of the namespace `ns_file` names, and how
/// many were left out past [`DUMP_MAX`].
pub fn dump_netns(ns_file: &Path) -> Result<(Vec<DiagSock>, u64), DiagError> {
    crate::sys::in_netns(ns_file, dump_here)?
}

/// The same in the calling thread's namespace.
pub fn dump_here() -> Result<(Vec<DiagSock>, u64), DiagError> {
    let mut out = Vec::new();
    let mut skipped = 0;
    for family in [AF_INET, AF_INET6] {
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            skipped += dump_one(family, proto, &mut out)?;
        }
    }
    Ok((out, skipped))
}

fn dump_one(family: u8, proto: u8, out: &mut Vec<DiagSock>) -> Result<u64, DiagError> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
    let tv = libc::timeval { tv_sec: 0, tv_usec: RECV_TIMEOUT.as_micros() as libc::suseconds_t };
    // SAFETY: SO_RCVTIMEO with a timeval of the size given, on a socket we own.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let req = InetRequest { family, protocol: proto, extensions: ExtensionFlags::empty(), states: StateFlags::all(), socket_id };
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(SockDiagMessage::InetRequest(req)));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut skipped = 0u64;
    loop {
        let (data, _) = sock.recv_from_full()?;
        if data.is_empty() {
            return Ok(skipped);
        }
        let mut off = 0usize;
        while off < data.len() {
            let Ok(m) = NetlinkMessage::<SockDiagMessage>::deserialize(&data[off..]) else { return Ok(skipped) };
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    if out.len() >= DUMP_MAX {
                        skipped += 1;
                    } else {
                        let id = &r.header.socket_id;
                        out.push(DiagSock {
                            cookie: cookie_of(&id.cookie),
                            inode: u64::from(r.header.inode),
                            proto,
                            local: (id.source_address, id.source_port),
                            remote: (id.destination_address, id.destination_port),
                            listening: proto == IPPROTO_TCP && r.header.state == TCP_LISTEN,
                        });
                    }
                }
                NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => return Ok(skipped),
                _ => {}
            }
            if len == 0 {
                return Ok(skipped);
            }
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_halves_are_native_u32s() {
        let c = 0x1122_3344_5566_7788u64;
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(c as u32).to_ne_bytes());
        b[4..].copy_from_slice(&((c >> 32) as u32).to_ne_bytes());
        assert_eq!(cookie_of(&b), c);
    }

    /// Needs no privilege: a socket of this very process is in the dump
    /// of its own namespace, with the cookie SO_COOKIE reports for it.
    #[test]
    fn own_listener_is_in_the_dump_with_its_cookie() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = l.local_addr().expect("addr").port();
        let mut cookie = 0u64;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: SO_COOKIE writes a u64 into `cookie`.
        let rc = unsafe { libc::getsockopt(l.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE, (&mut cookie as *mut u64).cast(), &mut len) };
        assert_eq!(rc, 0);
        let (socks, skipped) = dump_here().expect("dump");
        assert_eq!(skipped, 0);
        let me = socks.iter().find(|s| s.local.1 == port && s.proto == IPPROTO_TCP).expect("own listener in the dump");
        assert!(me.listening);
        assert_eq!(me.cookie, cookie);
        assert!(me.inode > 0);
    }
}
