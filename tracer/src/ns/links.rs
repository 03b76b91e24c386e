//! rtnetlink from inside one namespace: its links, the netns id it gives
//! another namespace, and its cookie. A route socket answers for the
//! namespace it was created in, so [`Rtnl::open`] must run on a thread that
//! is inside the namespace (see `crate::sys::in_netns`); the socket keeps
//! answering for that namespace after the thread leaves.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage},
    nsid::{NsidAttribute, NsidMessage},
    tc::{TcAttribute, TcHandle, TcMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A link as its own namespace reports it; peers are resolved across
/// namespaces later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLink {
    pub ifindex: u32,
    pub name: String,
    pub kind: Option<String>,
    /// ifindex of the bridge or bond this link is enslaved to.
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, the peer's ifindex.
    pub link: Option<u32>,
    /// IFLA_LINK_NETNSID: the namespace of `link`, as this namespace numbers
    /// it; `None` when `link` is in this same namespace.
    pub link_nsid: Option<i32>,
    pub up: bool,
}

/// A route socket bound in the namespace the thread was in when it was opened.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

/// Answers must come quickly: a namespace being torn down must not hang discovery.
const TIMEOUT: Duration = Duration::from_secs(2);
/// `SO_NETNS_COOKIE` (Linux 5.14); not in every libc crate version.
const SO_NETNS_COOKIE: libc::c_int = 71;

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        let tv = libc::timeval { tv_sec: TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        // SAFETY: setsockopt on our own fd with a correctly sized timeval.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { sock, seq: 0 })
    }

    /// The namespace's cookie (`SO_NETNS_COOKIE`), the id eBPF programs see
    /// from `bpf_get_netns_cookie`; `None` on kernels before 5.14.
    pub fn cookie(&self) -> Option<u64> {
        let mut v: u64 = 0;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: getsockopt into a u64 of the advertised length.
        let rc = unsafe { libc::getsockopt(self.sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut v).cast(), &mut len) };
        (rc == 0 && len as usize == size_of::<u64>()).then_some(v)
    }

    /// Sends one request and collects the answers until the dump ends (or,
    /// for a plain request, the first answer).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            if data.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "route socket closed"));
            }
            let mut off = 0;
            while off + 16 <= data.len() {
                let len = u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
                if len < 16 || off + len > data.len() {
                    break;
                }
                let chunk = &data[off..off + len];
                off += (len + 3) & !3;
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump {
                            return Ok(out);
                        }
                    }
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

    /// Removes the `clsact` qdisc of `ifindex`: the cleanup of packet
    /// tracing's netlink-tc fallback, which must leave nothing behind.
    pub fn del_clsact(&mut self, ifindex: u32) -> io::Result<()> {
        let mut m = TcMessage::with_index(ifindex as i32);
        m.header.parent = TcHandle::CLSACT;
        m.header.handle = TcHandle { major: 0xffff, minor: 0 };
        m.attributes.push(TcAttribute::Kind("clsact".into()));
        self.request(RouteNetlinkMessage::DelQueueDiscipline(m), NLM_F_REQUEST | NLM_F_ACK).map(|_| ())
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<RawLink>> {
        let msgs = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(raw_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// The id this namespace gives the namespace open as `fd`, if it gave one.
    pub fn nsid_of(&mut self, fd: RawFd) -> io::Result<Option<i32>> {
        let mut m = NsidMessage::default();
        m.attributes.push(NsidAttribute::Fd(fd as u32));
        let msgs = self.request(RouteNetlinkMessage::GetNsId(m), NLM_F_REQUEST)?;
        Ok(msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
                NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
    }
}

fn raw_link(l: &LinkMessage) -> RawLink {
    let mut r = RawLink {
        ifindex: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        link: None,
        link_nsid: None,
        up: l.header.flags.contains(LinkFlags::Up),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => r.name = n.clone(),
            LinkAttribute::Controller(m) if *m != 0 => r.master = Some(*m),
            LinkAttribute::Link(i) if *i != 0 => r.link = Some(*i),
            LinkAttribute::LinkNetNsId(id) if *id >= 0 => r.link_nsid = Some(*id),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        r.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if r.kind.is_none() && (l.header.link_layer_type == LinkLayerType::Loopback || l.header.flags.contains(LinkFlags::Loopback)) {
        r.kind = Some("loopback".into());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_loopback_and_a_cookie() {
        let Ok(mut rt) = Rtnl::open() else { return };
        let links = rt.links().expect("link dump");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.kind.as_deref(), Some("loopback"));
        assert!(lo.up);
        if crate::sys::kernel_version() >= (5, 14) {
            assert!(rt.cookie().is_some_and(|c| c > 0));
        }
    }
}
