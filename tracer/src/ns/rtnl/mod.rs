//! rtnetlink from inside one namespace, the one client every part of the
//! tracer asks: links (all, or one by index or name), the netns id it gives
//! another namespace, the namespace's cookie, and the dumps the interface
//! watcher reads. A route socket answers for the namespace it was created
//! in, so [`Rtnl::open`] must run on a thread that is inside the namespace
//! (see `crate::sys::in_netns`); it keeps answering for that namespace
//! after the thread leaves.
//!
//! Answers are decoded by [`msg`], which keeps what it can read of a
//! message: netlink-packet-route rejects a whole link for one name that is
//! not UTF-8, and any user may name a link in a namespace of its own.

pub mod msg;

use std::{io, os::fd::RawFd, time::Duration};

use netlink_sys::protocols::NETLINK_ROUTE;

use crate::sys::nlmsg::{NlSocket, NlHeader};
use msg::{Body, Hdr, LinkMsg, LinkStats, Msg, Request};

/// Answers must come quickly: a namespace being torn down must not hang
/// discovery (or the watcher).
const TIMEOUT: Duration = Duration::from_secs(2);
/// `ARPHRD_LOOPBACK`, and `IFF_LOOPBACK`/`IFF_UP` of a link's flags.
const ARPHRD_LOOPBACK: u16 = 772;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

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

impl From<&LinkMsg> for RawLink {
    fn from(l: &LinkMsg) -> Self {
        let loopback = l.arptype == ARPHRD_LOOPBACK || l.flags & IFF_LOOPBACK != 0;
        RawLink {
            ifindex: l.ifindex,
            name: l.name.clone().unwrap_or_default(),
            kind: l.kind.clone().or_else(|| loopback.then(|| "loopback".to_string())),
            master: l.master,
            link: l.link.filter(|i| *i != 0),
            link_nsid: l.link_netnsid,
            up: l.flags & IFF_UP != 0,
        }
    }
}

/// What a request answered.
pub struct Dump {
    pub msgs: Vec<Msg>,
    /// `NLM_F_DUMP_INTR`: the table changed during the dump; read it again.
    pub interrupted: bool,
    /// Answers that could not be read.
    pub malformed: u64,
}

/// A route socket bound in the namespace the thread was in when it was opened.
pub struct Rtnl {
    sock: NlSocket,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        Self::open_with(TIMEOUT)
    }

    /// A socket whose answers must come within `timeout`.
    pub fn open_with(timeout: Duration) -> io::Result<Self> {
        let mut sock = NlSocket::open(NETLINK_ROUTE, timeout)?;
        // Strict checking makes the kernel honour a target nsid in dumps.
        sock.strict()?;
        Ok(Self { sock })
    }

    /// The namespace's cookie (`SO_NETNS_COOKIE`), the id eBPF programs see
    /// from `bpf_get_netns_cookie`; `None` on kernels before 5.14.
    pub fn cookie(&self) -> Option<u64> {
        self.sock.cookie()
    }

    /// Sends `req` and collects its answers: every one of a dump, else the
    /// first (an ack is none). An `NLMSG_ERROR` with an errno is an `Err`.
    pub fn ask(&mut self, req: &Request, dump: bool) -> io::Result<Dump> {
        let seq = self.sock.next_seq();
        let mut out = Dump { msgs: Vec::new(), interrupted: false, malformed: 0 };
        let done = self.sock.exchange(&req.encode(seq), seq, dump, |m| {
            let NlHeader { msg_type, flags, seq, pid, .. } = m.header;
            match msg::decode(Hdr { ty: msg_type, flags, seq, pid }, m.payload) {
                Ok(m) => out.msgs.push(m),
                Err(_) => out.malformed += 1,
            }
        })?;
        out.interrupted = done.interrupted;
        Ok(out)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<RawLink>> {
        let d = self.ask(&Request::DumpLinks(None), true)?;
        Ok(d.msgs.iter().filter_map(|m| match &m.body {
            Body::Link(l) => Some(RawLink::from(l)),
            _ => None,
        }).collect())
    }

    /// Every link's own counters (what `ip -s link` shows).
    pub fn stats(&mut self) -> io::Result<Vec<LinkStats>> {
        let d = self.ask(&Request::DumpStats, true)?;
        Ok(d.msgs.into_iter().filter_map(|m| match m.body {
            Body::Stats(s) => Some(s),
            _ => None,
        }).collect())
    }

    /// One link, by index or by name; `None` when there is no such link.
    pub fn link(&mut self, req: &Request) -> io::Result<Option<LinkMsg>> {
        match self.ask(req, false) {
            Ok(d) => Ok(d.msgs.into_iter().find_map(|m| match m.body {
                Body::Link(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id this namespace gives the namespace open as `fd`, if it gave one.
    pub fn nsid_of(&mut self, fd: RawFd) -> io::Result<Option<i32>> {
        let d = self.ask(&Request::NsidOfFd { fd: fd as u32, target: None }, false)?;
        Ok(d.msgs.iter().find_map(|m| match &m.body {
            Body::Nsid(n) => n.nsid,
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_loopback_and_a_cookie() {
        // A route socket in the own namespace needs no privilege: it must open.
        let mut rt = Rtnl::open().expect("route socket");
        let links = rt.links().expect("link dump");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!((lo.ifindex, lo.kind.as_deref(), lo.up), (1, Some("loopback"), true));
        if crate::sys::kernel_version() >= (5, 14) {
            assert!(rt.cookie().is_some_and(|c| c > 0));
        }
        let lo_stats = rt.stats().expect("stats dump");
        assert!(lo_stats.iter().any(|s| s.ifindex == 1), "{lo_stats:?}");
        let by_index = rt.link(&Request::GetLink(1)).expect("ask").expect("lo by index");
        assert_eq!(by_index.name.as_deref(), Some("lo"));
        let by_name = rt.link(&Request::GetLinkByName("lo".into())).expect("ask").expect("lo by name");
        assert_eq!(by_name.ifindex, 1);
        assert_eq!(rt.link(&Request::GetLink(0x7fff_fff0)).expect("ask"), None, "no such link");
    }

    #[test]
    fn a_dump_is_decoded_message_by_message() {
        let mut rt = Rtnl::open().expect("route socket");
        let d = rt.ask(&Request::DumpLinks(None), true).expect("link dump");
        assert!(d.msgs.iter().any(|m| matches!(&m.body, Body::Link(l) if l.name.as_deref() == Some("lo"))));
        assert_eq!(d.malformed, 0);
    }

    #[test]
    fn a_raw_link_takes_what_discovery_needs() {
        let veth = LinkMsg {
            ifindex: 5,
            flags: IFF_UP,
            name: Some("veth0".into()),
            kind: Some("veth".into()),
            link: Some(7),
            link_netnsid: Some(2),
            master: Some(3),
            ..Default::default()
        };
        let r = RawLink::from(&veth);
        assert_eq!(r, RawLink { ifindex: 5, name: "veth0".into(), kind: Some("veth".into()), master: Some(3), link: Some(7), link_nsid: Some(2), up: true });
        // A veth whose peer is not there yet says IFLA_LINK 0: no peer.
        let r = RawLink::from(&LinkMsg { link: Some(0), flags: 0, ..veth });
        assert_eq!((r.link, r.up), (None, false));
        let lo = RawLink::from(&LinkMsg { arptype: ARPHRD_LOOPBACK, name: Some("lo".into()), ..Default::default() });
        assert_eq!(lo.kind.as_deref(), Some("loopback"));
    }
}
