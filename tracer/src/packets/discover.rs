//! What packet tracing needs to know about the host: every network
//! namespace (from `/proc/*/ns/net` and the named bind mounts), a file to
//! `setns` into it, and its interfaces with their kinds (an rtnetlink link
//! dump made from inside the namespace).
//!
//! Nothing here keeps a namespace open between scans: a socket or an fd
//! held in a namespace would keep it alive after `ip netns del`, and its
//! veths with it.

use std::{
    collections::BTreeMap,
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    tc::{TcAttribute, TcHandle, TcMessage},
};

use crate::{ns, sys};

/// One network namespace as packet tracing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    pub inode: u64,
    /// A file to open for `setns`: a bind mount when there is one (it
    /// outlives processes), else `/proc/PID/ns/net`.
    pub path: PathBuf,
    /// Its `/run/netns` (or Docker sandbox) name.
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub ifindex: u32,
    pub name: String,
    /// rtnetlink's link kind (`veth`, `bridge`, ...); `None` for physical
    /// devices and loopback.
    pub kind: Option<String>,
    pub up: bool,
}

/// Every network namespace, by inode.
pub fn namespaces() -> BTreeMap<u64, Netns> {
    let mut out = BTreeMap::new();
    for (ino, name) in ns::named_namespaces() {
        for dir in ns::NAMED_NS_DIRS {
            let p = Path::new(dir).join(&name);
            if sys::ns_inode(&p).ok() == Some(ino) {
                out.insert(ino, Netns { inode: ino, path: p, name: Some(name.clone()) });
                break;
            }
        }
    }
    let Ok(dir) = fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        if !e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let p = e.path().join("ns/net");
        // Processes exit while we look, and kernel threads have no namespace.
        let Ok(ino) = sys::ns_inode(&p) else { continue };
        out.entry(ino).or_insert(Netns { inode: ino, path: p, name: None });
    }
    out
}

/// The interfaces of the namespace at `path`.
pub fn interfaces(path: &Path) -> io::Result<Vec<Iface>> {
    // A route socket answers for the namespace it was created in; it is
    // closed before returning.
    let sock = sys::in_netns(path, route_socket)??;
    dump_links(&sock)
}

fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // SAFETY: setsockopt with a correctly sized timeval, so a namespace being
    // torn down cannot hang discovery.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

fn dump_links(fd: &OwnedFd) -> io::Result<Vec<Iface>> {
    let msgs = request(fd, RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(iface(l)),
            _ => None,
        })
        .collect())
}

/// Removes the `clsact` qdisc of `ifindex` in the namespace of the thread
/// (used by the netlink-tc fallback, which must leave nothing behind).
pub fn del_clsact(ifindex: u32) -> io::Result<()> {
    let fd = route_socket()?;
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = TcHandle::CLSACT;
    m.header.handle = TcHandle { major: 0xffff, minor: 0 };
    m.attributes.push(TcAttribute::Kind("clsact".into()));
    request(&fd, RouteNetlinkMessage::DelQueueDiscipline(m), NLM_F_REQUEST | NLM_F_ACK).map(|_| ())
}

/// Sends one request and collects the answers until the dump ends, or the
/// acknowledgement of a plain request.
fn request(fd: &OwnedFd, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    // SAFETY: send of our own buffer on our own socket (the kernel is the default peer).
    if unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut rbuf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv into a buffer we own, bounded by its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), rbuf.as_mut_ptr().cast(), rbuf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let data = &rbuf[..n as usize];
        if data.is_empty() {
            return Ok(out);
        }
        let mut off = 0;
        while off + 16 <= data.len() {
            let len = u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
            if len < 16 || off + len > data.len() {
                break;
            }
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..off + len])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            off += (len + 3) & !3;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        None => Ok(out),
                    };
                }
                _ => {}
            }
        }
    }
}

fn iface(l: &LinkMessage) -> Iface {
    let mut r = Iface { ifindex: l.header.index, name: String::new(), kind: None, up: l.header.flags.contains(LinkFlags::Up) };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => r.name = n.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        r.kind = Some(kind_name(k));
                    }
                }
            }
            _ => {}
        }
    }
    r
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Other(s) => s.clone(),
        k => k.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_found_with_loopback() {
        let all = namespaces();
        let own = ns::resolve_pid(std::process::id()).expect("own netns");
        let me = all.get(&own).expect("own namespace listed");
        // Listing links of one's own namespace needs no privilege.
        let Ok(ifs) = interfaces(&me.path) else { return };
        let lo = ifs.iter().find(|i| i.name == "lo").expect("lo");
        assert_eq!((lo.ifindex, lo.kind.as_deref()), (1, None));
    }
}
