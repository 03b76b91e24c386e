//! The rtnetlink messages the tracer reads (link, address, route and nsid
//! answers and notifications) decoded into plain structs, and the few
//! requests it sends.
//!
//! Decoding is done here rather than with netlink-packet-route's message
//! types on purpose: that crate rejects a whole message when one attribute
//! is unexpected, e.g. an interface name that is not UTF-8 (the kernel
//! allows any byte but `/`, `:` and white space, and an unprivileged user
//! can name links in its own namespace). A link that cannot be decoded
//! would be missing (from the watcher's table, from discovery), so the
//! decoder here keeps what it can read, names lossily, and never panics.
//! Messages and attributes are walked by [`crate::sys::nlmsg`]; requests
//! are built with netlink-packet-route, whose encoding is not in doubt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
    nsid::{NsidAttribute, NsidMessage},
};

use crate::sys::nlmsg;

/// Longest interface name the kernel keeps (IFNAMSIZ - 1 bytes).
pub const IFNAME_MAX: usize = 15;
/// Longest kind (`veth`, `bridge`, ...) kept; the kernel's are short.
const KIND_MAX: usize = 32;
/// Longest link-layer address kept (InfiniBand's are 20 bytes).
const LLADDR_MAX: usize = 32;
/// Most next hops of one multipath route kept.
const NEXTHOPS_MAX: usize = 16;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
#[cfg(test)]
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWNSID: u16 = 88;
pub const RTM_DELNSID: u16 = 89;
pub const RTM_NEWSTATS: u16 = 92;
pub const RTM_GETSTATS: u16 = 94;
/// `IFLA_STATS_LINK_64`: a link's `struct rtnl_link_stats64` in an
/// `RTM_NEWSTATS` answer (and its bit, 1 << (1 - 1), in the filter mask).
const IFLA_STATS_LINK_64: u16 = 1;

pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
/// Link messages of this family are the bridge's view of its ports, not
/// the link itself: an RTM_DELLINK of it means "left the bridge".
pub const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_CARRIER: u16 = 33;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_EVENT: u16 = 44;
const IFLA_NEW_NETNSID: u16 = 45;
const IFLA_NEW_IFINDEX: u16 = 49;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_RT_PRIORITY: u16 = 9;

const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_IIF: u16 = 3;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_PREF: u16 = 20;

const NETNSA_NSID: u16 = 1;
const NETNSA_CURRENT_NSID: u16 = 5;

/// The parts of `struct nlmsghdr` the table and the consumers need: the
/// kernel sets `pid` and `seq` of a notification to the requester's portid
/// and sequence number when a request caused it (addresses and routes on
/// Linux 6.18; link notifications carry 0 there, measured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hdr {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl Hdr {
    pub fn is_del(&self) -> bool {
        matches!(self.ty, RTM_DELLINK | RTM_DELADDR | RTM_DELROUTE | RTM_DELNSID)
    }
}

/// A link message: the full state of one link (or, for [`AF_BRIDGE`], its
/// bridge-port view).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkMsg {
    pub family: u8,
    /// `ARPHRD_*` (1 Ethernet, 772 loopback, 65534 none).
    pub arptype: u16,
    pub ifindex: u32,
    /// `IFF_*` flags.
    pub flags: u32,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth its peer's ifindex; `Some(0)` when it has none yet.
    pub link: Option<u32>,
    /// The peer's namespace as this one numbers it.
    pub link_netnsid: Option<i32>,
    pub mtu: Option<u32>,
    pub operstate: Option<u8>,
    pub carrier: Option<u8>,
    pub lladdr: Option<Vec<u8>>,
    /// On an RTM_DELLINK of a move: the namespace it went to, as the old one numbers it.
    pub new_netnsid: Option<i32>,
    /// On an RTM_DELLINK of a move: its ifindex there.
    pub new_ifindex: Option<i32>,
    /// `IFLA_EVENT` (e.g. 2 = FEATURE CHANGE), which `ip monitor` prints.
    pub event: Option<u32>,
}

/// An address message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrMsg {
    pub family: u8,
    pub prefixlen: u8,
    pub scope: u8,
    pub ifindex: u32,
    /// `IFA_F_*` (the 32-bit `IFA_FLAGS` when present).
    pub flags: u32,
    /// `IFA_ADDRESS`: the peer on point-to-point links, else the address.
    pub address: Option<IpAddr>,
    /// `IFA_LOCAL` (IPv4): the address itself.
    pub local: Option<IpAddr>,
    pub broadcast: Option<IpAddr>,
    pub label: Option<String>,
    pub metric: Option<u32>,
}

impl AddrMsg {
    /// The interface's own address: `IFA_LOCAL` when present, else `IFA_ADDRESS`.
    pub fn addr(&self) -> Option<IpAddr> {
        self.local.or(self.address)
    }
}

/// One next hop of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
}

/// A route message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    pub tos: u8,
    /// `RTA_TABLE` when present, else the header's 8-bit table.
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    /// `RTN_*`: unicast, local, broadcast, multicast...
    pub rtype: u8,
    pub flags: u32,
    pub dst: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
    pub oif: Option<u32>,
    pub iif: Option<u32>,
    pub priority: Option<u32>,
    pub pref: Option<u8>,
    pub multipath: Vec<NextHop>,
}

/// An nsid message: `nsid` is the id the namespace it was sent in gives
/// another one; `current` (dump answers with a target) is the id the
/// requester's namespace gives that same one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsidMsg {
    pub nsid: Option<i32>,
    pub current: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Link(LinkMsg),
    Addr(AddrMsg),
    Route(RouteMsg),
    Nsid(NsidMsg),
    Stats(LinkStats),
    Done,
    /// `NLMSG_ERROR`: 0 is an ack, else a negative errno.
    Error(i32),
    /// A type (or address family) the watcher has no use for.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub hdr: Hdr,
    pub body: Body,
}

/// Why one message could not be read; the others in the buffer still are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("netlink message header is invalid")]
    Header,
    #[error("message type {0} is shorter than its fixed header")]
    Short(u16),
}

/// Cuts a datagram into its messages, decoding each. Stops at the first
/// invalid header (its length cannot be trusted to find the next one).
pub fn split(buf: &[u8]) -> Vec<Result<Msg, Malformed>> {
    let mut out = Vec::new();
    let mut walk = nlmsg::messages(buf);
    for m in walk.by_ref() {
        if !m.is_whole() {
            out.push(Err(Malformed::Header));
            return out;
        }
        let h = m.header;
        out.push(decode(Hdr { ty: h.msg_type, flags: h.flags, seq: h.seq, pid: h.pid }, m.payload));
    }
    if !walk.rest().is_empty() {
        out.push(Err(Malformed::Header));
    }
    out
}

/// Decodes one message's payload.
pub fn decode(hdr: Hdr, p: &[u8]) -> Result<Msg, Malformed> {
    let body = match hdr.ty {
        NLMSG_DONE => Body::Done,
        NLMSG_ERROR => Body::Error(i32_at(p, 0).ok_or(Malformed::Short(hdr.ty))?),
        RTM_NEWLINK | RTM_DELLINK => Body::Link(link(p).ok_or(Malformed::Short(hdr.ty))?),
        RTM_NEWADDR | RTM_DELADDR => match addr(p).ok_or(Malformed::Short(hdr.ty))? {
            Some(a) => Body::Addr(a),
            None => Body::Other,
        },
        RTM_NEWROUTE | RTM_DELROUTE => match route(p).ok_or(Malformed::Short(hdr.ty))? {
            Some(r) => Body::Route(r),
            None => Body::Other,
        },
        RTM_NEWNSID | RTM_DELNSID => Body::Nsid(nsid(p).ok_or(Malformed::Short(hdr.ty))?),
        RTM_NEWSTATS => match stats(p).ok_or(Malformed::Short(hdr.ty))? {
            Some(s) => Body::Stats(s),
            None => Body::Other,
        },
        _ => Body::Other,
    };
    Ok(Msg { hdr, body })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

/// The attributes after a fixed header of `fixed` bytes (aligned to 4),
/// as (type without the nested/byte-order bits, value). A malformed
/// attribute ends the walk; what came before it is kept.
fn attrs(p: &[u8], fixed: usize) -> impl Iterator<Item = (u16, &[u8])> {
    nlmsg::attrs(p.get(nlmsg::align(fixed)..).unwrap_or(&[]))
}

/// A NUL-terminated string attribute, cut to `max` bytes, invalid UTF-8 as U+FFFD.
fn text(v: &[u8], max: usize) -> String {
    let v = v.split(|b| *b == 0).next().unwrap_or(&[]);
    let v = &v[..v.len().min(max)];
    String::from_utf8_lossy(v).into_owned()
}

fn ip(family: u8, v: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v.get(..4)?).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v.get(..16)?).ok()?))),
        _ => None,
    }
}

fn link(p: &[u8]) -> Option<LinkMsg> {
    // struct ifinfomsg: family, pad, type(u16), index(i32), flags, change.
    let family = *p.first()?;
    let arptype = u16::from_ne_bytes([*p.get(2)?, *p.get(3)?]);
    let ifindex = u32_at(p, 4)?;
    let flags = u32_at(p, 8)?;
    let _change = u32_at(p, 12)?;
    let mut l = LinkMsg { family, arptype, ifindex, flags, ..Default::default() };
    for (t, v) in attrs(p, 16) {
        match t {
            IFLA_IFNAME => l.name = Some(text(v, IFNAME_MAX)),
            IFLA_MTU => l.mtu = u32_at(v, 0),
            IFLA_LINK => l.link = u32_at(v, 0),
            IFLA_MASTER => l.master = u32_at(v, 0).filter(|m| *m != 0),
            IFLA_OPERSTATE => l.operstate = v.first().copied(),
            IFLA_CARRIER => l.carrier = v.first().copied(),
            IFLA_ADDRESS => l.lladdr = Some(v[..v.len().min(LLADDR_MAX)].to_vec()),
            IFLA_LINK_NETNSID => l.link_netnsid = i32_at(v, 0).filter(|n| *n >= 0),
            IFLA_NEW_NETNSID => l.new_netnsid = i32_at(v, 0).filter(|n| *n >= 0),
            IFLA_NEW_IFINDEX => l.new_ifindex = i32_at(v, 0),
            IFLA_EVENT => l.event = u32_at(v, 0),
            IFLA_LINKINFO => {
                for (t2, v2) in attrs(v, 0) {
                    if t2 == IFLA_INFO_KIND {
                        l.kind = Some(text(v2, KIND_MAX));
                    }
                }
            }
            _ => {}
        }
    }
    Some(l)
}

/// `None` inside: a family other than IPv4/IPv6.
fn addr(p: &[u8]) -> Option<Option<AddrMsg>> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index(u32).
    let family = *p.first()?;
    let mut a = AddrMsg {
        family,
        prefixlen: *p.get(1)?,
        flags: u32::from(*p.get(2)?),
        scope: *p.get(3)?,
        ifindex: u32_at(p, 4)?,
        address: None,
        local: None,
        broadcast: None,
        label: None,
        metric: None,
    };
    if family != AF_INET && family != AF_INET6 {
        return Some(None);
    }
    for (t, v) in attrs(p, 8) {
        match t {
            IFA_ADDRESS => a.address = ip(family, v),
            IFA_LOCAL => a.local = ip(family, v),
            IFA_BROADCAST => a.broadcast = ip(family, v),
            IFA_LABEL => a.label = Some(text(v, IFNAME_MAX)),
            IFA_FLAGS => a.flags = u32_at(v, 0).unwrap_or(a.flags),
            IFA_RT_PRIORITY => a.metric = u32_at(v, 0),
            _ => {}
        }
    }
    Some(Some(a))
}

/// `None` inside: a family other than IPv4/IPv6.
fn route(p: &[u8]) -> Option<Option<RouteMsg>> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32).
    let h = p.get(..12)?;
    let family = h[0];
    let mut r = RouteMsg {
        family,
        dst_len: h[1],
        src_len: h[2],
        tos: h[3],
        table: u32::from(h[4]),
        protocol: h[5],
        scope: h[6],
        rtype: h[7],
        flags: u32_at(h, 8)?,
        ..Default::default()
    };
    if family != AF_INET && family != AF_INET6 {
        return Some(None);
    }
    for (t, v) in attrs(p, 12) {
        match t {
            RTA_DST => r.dst = ip(family, v),
            RTA_SRC => r.src = ip(family, v),
            RTA_GATEWAY => r.gateway = ip(family, v),
            RTA_PREFSRC => r.prefsrc = ip(family, v),
            RTA_OIF => r.oif = u32_at(v, 0),
            RTA_IIF => r.iif = u32_at(v, 0),
            RTA_PRIORITY => r.priority = u32_at(v, 0),
            RTA_TABLE => r.table = u32_at(v, 0).unwrap_or(r.table),
            RTA_PREF => r.pref = v.first().copied(),
            RTA_MULTIPATH => r.multipath = nexthops(family, v),
            _ => {}
        }
    }
    Some(Some(r))
}

/// `struct rtnexthop` records (len u16, flags, hops, ifindex i32, attributes).
fn nexthops(family: u8, mut v: &[u8]) -> Vec<NextHop> {
    let mut out = Vec::new();
    while v.len() >= 8 && out.len() < NEXTHOPS_MAX {
        let len = usize::from(u16::from_ne_bytes([v[0], v[1]]));
        if len < 8 || len > v.len() {
            break;
        }
        let ifindex = u32_at(v, 4).unwrap_or(0);
        let gateway = attrs(&v[..len], 8).find(|(t, _)| *t == RTA_GATEWAY).and_then(|(_, g)| ip(family, g));
        out.push(NextHop { gateway, ifindex });
        v = v.get((len + 3) & !3..).unwrap_or(&[]);
    }
    out
}

fn nsid(p: &[u8]) -> Option<NsidMsg> {
    // struct rtgenmsg, padded to 4 bytes.
    p.first()?;
    let mut n = NsidMsg::default();
    for (t, v) in attrs(p, 4) {
        match t {
            NETNSA_NSID => n.nsid = i32_at(v, 0),
            NETNSA_CURRENT_NSID => n.current = i32_at(v, 0),
            _ => {}
        }
    }
    Some(n)
}

/// A link's own packet and byte counters (`IFLA_STATS_LINK_64`), what
/// `ip -s link` shows: the kernel keeps them whatever is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub ifindex: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `struct if_stats_msg` (family, pads, ifindex, filter mask: 12 bytes),
/// then attributes; `None` (not malformed) without the 64-bit link stats.
fn stats(p: &[u8]) -> Option<Option<LinkStats>> {
    let ifindex = u32_at(p, 4)?;
    u32_at(p, 8)?;
    let Some((_, v)) = attrs(p, 12).find(|(t, _)| *t == IFLA_STATS_LINK_64) else { return Some(None) };
    let u = |i: usize| v.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes);
    // rx_packets, tx_packets, rx_bytes, tx_bytes lead the struct.
    Some(match (u(0), u(1), u(2), u(3)) {
        (Some(rx_packets), Some(tx_packets), Some(rx_bytes), Some(tx_bytes)) => Some(LinkStats { ifindex, rx_packets, tx_packets, rx_bytes, tx_bytes }),
        _ => None,
    })
}

/// The requests the watcher sends, each as a ready datagram.
pub enum Request {
    /// Every link of the namespace with this nsid (the requester's own when `None`).
    DumpLinks(Option<i32>),
    /// The link with this index.
    GetLink(u32),
    /// The link with this name.
    GetLinkByName(String),
    /// Every IPv4 and IPv6 address of the namespace with this nsid.
    DumpAddrs(Option<i32>),
    /// The nsid table of the namespace with this nsid: each entry's
    /// `nsid` is its id, `current` the requester's id for the same namespace.
    DumpNsids(Option<i32>),
    /// The id the requester's namespace (or, with a target, that
    /// namespace) gives the namespace open as this fd.
    NsidOfFd { fd: u32, target: Option<i32> },
    /// Gives the namespace open as this fd an id in the requester's
    /// namespace (the kernel picks it).
    AssignNsid { fd: u32 },
    /// Every link's 64-bit counters (`RTM_GETSTATS`, Linux >= 4.7).
    DumpStats,
}

impl Request {
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        use netlink_packet_core::NLM_F_ACK;
        let (msg, flags) = match self {
            Request::DumpLinks(target) => {
                let mut m = LinkMessage::default();
                if let Some(t) = target {
                    m.attributes.push(LinkAttribute::IfNetnsId(*t));
                }
                (RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST | NLM_F_DUMP)
            }
            Request::GetLink(index) => {
                let mut m = LinkMessage::default();
                m.header.index = *index;
                (RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST)
            }
            Request::GetLinkByName(name) => {
                let mut m = LinkMessage::default();
                m.attributes.push(LinkAttribute::IfName(name.clone()));
                (RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST)
            }
            Request::DumpAddrs(target) => {
                let mut m = AddressMessage::default();
                if let Some(t) = target {
                    m.attributes.push(AddressAttribute::TargetNetNsId(*t));
                }
                (RouteNetlinkMessage::GetAddress(m), NLM_F_REQUEST | NLM_F_DUMP)
            }
            Request::DumpNsids(target) => {
                let mut m = NsidMessage::default();
                if let Some(t) = target {
                    m.attributes.push(NsidAttribute::TargetNsid(*t));
                }
                (RouteNetlinkMessage::GetNsId(m), NLM_F_REQUEST | NLM_F_DUMP)
            }
            Request::NsidOfFd { fd, target } => {
                let mut m = NsidMessage::default();
                m.attributes.push(NsidAttribute::Fd(*fd));
                if let Some(t) = target {
                    m.attributes.push(NsidAttribute::TargetNsid(*t));
                }
                (RouteNetlinkMessage::GetNsId(m), NLM_F_REQUEST)
            }
            Request::AssignNsid { fd } => {
                let mut m = NsidMessage::default();
                m.attributes.push(NsidAttribute::Fd(*fd));
                m.attributes.push(NsidAttribute::Id(-1));
                (RouteNetlinkMessage::NewNsId(m), NLM_F_REQUEST | NLM_F_ACK)
            }
            Request::DumpStats => return stats_request(seq),
        };
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        buf
    }
}

/// netlink-packet-route has no stats request: the header, then a
/// `struct if_stats_msg` asking for `IFLA_STATS_LINK_64` of every link.
fn stats_request(seq: u32) -> Vec<u8> {
    const LEN: u32 = 16 + 12;
    let mut v = Vec::with_capacity(LEN as usize);
    v.extend_from_slice(&LEN.to_ne_bytes());
    v.extend_from_slice(&RTM_GETSTATS.to_ne_bytes());
    v.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    // family, pad1, pad2 and ifindex 0 (strict checking insists), the mask.
    v.extend_from_slice(&[0u8; 8]);
    v.extend_from_slice(&(1u32 << (IFLA_STATS_LINK_64 - 1)).to_ne_bytes());
    v
}

/// Builders of raw messages for the unit tests (here so the tests of the
/// table, the renderer and the decoder share them).
#[cfg(test)]
pub(crate) mod build {
    pub use crate::sys::nlmsg::build::{attr, message as nlmsg};

    use super::*;

    pub fn ifinfo(family: u8, ifindex: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![family, 0, 1, 0];
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for a in attrs {
            b.extend_from_slice(a);
        }
        b
    }

    pub fn name(n: &[u8]) -> Vec<u8> {
        let mut v = n.to_vec();
        v.push(0);
        attr(IFLA_IFNAME, &v)
    }

    pub fn kind(k: &str) -> Vec<u8> {
        let mut v = k.as_bytes().to_vec();
        v.push(0);
        attr(IFLA_LINKINFO, &attr(IFLA_INFO_KIND, &v))
    }

    pub fn u32a(t: u16, v: u32) -> Vec<u8> {
        attr(t, &v.to_ne_bytes())
    }

    pub fn link_peer(ifindex: u32) -> Vec<u8> {
        u32a(IFLA_LINK, ifindex)
    }

    pub fn link_netnsid(n: i32) -> Vec<u8> {
        u32a(IFLA_LINK_NETNSID, n as u32)
    }

    pub fn master(m: u32) -> Vec<u8> {
        u32a(IFLA_MASTER, m)
    }

    pub fn mtu(m: u32) -> Vec<u8> {
        u32a(IFLA_MTU, m)
    }

    pub fn operstate(s: u8) -> Vec<u8> {
        attr(IFLA_OPERSTATE, &[s])
    }

    pub fn lladdr(a: &[u8]) -> Vec<u8> {
        attr(IFLA_ADDRESS, a)
    }

    pub fn moved(new_netnsid: i32, new_ifindex: i32) -> Vec<u8> {
        let mut v = u32a(IFLA_NEW_NETNSID, new_netnsid as u32);
        v.extend(u32a(IFLA_NEW_IFINDEX, new_ifindex as u32));
        v
    }

    /// An IPv4 address message: `addr/plen` on `ifindex`, label `label`.
    pub fn ifaddr4(ifindex: u32, addr: [u8; 4], plen: u8, scope: u8, label: &[u8]) -> Vec<u8> {
        let mut b = vec![AF_INET, plen, 0, scope];
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b.extend(attr(IFA_ADDRESS, &addr));
        b.extend(attr(IFA_LOCAL, &addr));
        let mut l = label.to_vec();
        l.push(0);
        b.extend(attr(IFA_LABEL, &l));
        b
    }

    /// An IPv4 route: `dst/dst_len` (table main unless `table`), out of `oif`.
    #[expect(clippy::too_many_arguments, reason = "a test builder mirroring struct rtmsg")]
    pub fn rt4(dst: [u8; 4], dst_len: u8, table: u8, proto: u8, scope: u8, rtype: u8, oif: u32, extra: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![AF_INET, dst_len, 0, 0, table, proto, scope, rtype];
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend(attr(RTA_TABLE, &u32::from(table).to_ne_bytes()));
        if dst_len > 0 {
            b.extend(attr(RTA_DST, &dst));
        }
        b.extend(u32a(RTA_OIF, oif));
        for e in extra {
            b.extend_from_slice(e);
        }
        b
    }

    pub fn prefsrc4(a: [u8; 4]) -> Vec<u8> {
        attr(RTA_PREFSRC, &a)
    }

    pub fn gateway4(a: [u8; 4]) -> Vec<u8> {
        attr(RTA_GATEWAY, &a)
    }

    pub fn nsid_msg(id: i32) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        b.extend(u32a(NETNSA_NSID, id as u32));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::{build::*, *};

    #[test]
    fn link_with_every_field_the_table_uses() {
        let p = ifinfo(
            0,
            991,
            0x1003,
            &[name(b"wtv0"), kind("veth"), link_peer(990), link_netnsid(3), master(992), mtu(1500), operstate(6), lladdr(&[1, 2, 3, 4, 5, 6])],
        );
        let buf = nlmsg(RTM_NEWLINK, 0, 7, 42, &p);
        let msgs = split(&buf);
        assert_eq!(msgs.len(), 1);
        let m = msgs[0].clone().expect("decodes");
        assert_eq!(m.hdr, Hdr { ty: RTM_NEWLINK, flags: 0, seq: 7, pid: 42 });
        let Body::Link(l) = m.body else { panic!("not a link: {m:?}") };
        assert_eq!(l.ifindex, 991);
        assert_eq!(l.name.as_deref(), Some("wtv0"));
        assert_eq!(l.kind.as_deref(), Some("veth"));
        assert_eq!((l.link, l.link_netnsid, l.master, l.mtu, l.operstate), (Some(990), Some(3), Some(992), Some(1500), Some(6)));
        assert_eq!(l.lladdr.as_deref(), Some(&[1u8, 2, 3, 4, 5, 6][..]));
    }

    #[test]
    fn hostile_names_are_kept_lossy_and_cut() {
        // Not UTF-8, a terminal escape, and longer than IFNAMSIZ: the link is
        // still decoded (netlink-packet-route rejects the whole message).
        let p = ifinfo(0, 5, 0, &[name(b"\xff\x1b[2Jabcdefghijklmnop")]);
        let msgs = split(&nlmsg(RTM_NEWLINK, 0, 0, 0, &p));
        let Ok(Msg { body: Body::Link(l), .. }) = &msgs[0] else { panic!("{msgs:?}") };
        let n = l.name.as_deref().expect("name");
        assert!(n.starts_with("\u{fffd}\x1b[2J"), "{n:?}");
        assert_eq!(n.len(), "\u{fffd}".len() + IFNAME_MAX - 1, "{n:?}");
    }

    #[test]
    fn malformed_input_never_panics_and_keeps_the_good_messages() {
        let good = nlmsg(RTM_NEWLINK, 0, 0, 0, &ifinfo(0, 2, 0, &[name(b"eth0")]));
        // A link message too short for struct ifinfomsg, then the good one.
        let mut buf = nlmsg(RTM_NEWLINK, 0, 0, 0, &[0u8; 8]);
        buf.extend_from_slice(&good);
        let msgs = split(&buf);
        assert_eq!(msgs[0], Err(Malformed::Short(RTM_NEWLINK)));
        assert!(matches!(&msgs[1], Ok(Msg { body: Body::Link(l), .. }) if l.name.as_deref() == Some("eth0")));
        // An attribute whose length runs past the end: earlier ones are kept.
        let mut p = ifinfo(0, 3, 0, &[name(b"x")]);
        p.extend_from_slice(&[200, 0, 4, 0, 1]);
        let msgs = split(&nlmsg(RTM_NEWLINK, 0, 0, 0, &p));
        assert!(matches!(&msgs[0], Ok(Msg { body: Body::Link(l), .. }) if l.name.as_deref() == Some("x") && l.mtu.is_none()));
        // A header whose length lies.
        let mut bad = good.clone();
        bad[0] = 255;
        assert_eq!(split(&bad), vec![Err(Malformed::Header)]);
        // Every truncation of every kind of message: no panic.
        let samples = [
            good,
            nlmsg(RTM_NEWADDR, 0, 0, 0, &ifaddr4(2, [10, 0, 0, 1], 24, 0, b"eth0")),
            nlmsg(RTM_NEWROUTE, 0, 0, 0, &rt4([10, 0, 0, 0], 24, 254, 2, 253, 1, 2, &[prefsrc4([10, 0, 0, 1])])),
            nlmsg(RTM_NEWNSID, 0, 0, 0, &nsid_msg(3)),
        ];
        for s in samples {
            for cut in 0..s.len() {
                let _ = split(&s[..cut]);
                let mut lie = s[..cut].to_vec();
                if lie.len() >= 4 {
                    lie[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                }
                let _ = split(&lie);
            }
        }
    }

    #[test]
    fn address_route_and_nsid() {
        let m = split(&nlmsg(RTM_DELADDR, 0, 9, 77, &ifaddr4(2, [10, 0, 0, 1], 24, 0, b"eth0")));
        let Ok(Msg { hdr, body: Body::Addr(a) }) = &m[0] else { panic!("{m:?}") };
        assert!(hdr.is_del());
        assert_eq!((a.addr(), a.prefixlen, a.ifindex, a.label.as_deref()), (Some("10.0.0.1".parse().expect("ip")), 24, 2, Some("eth0")));

        let m = split(&nlmsg(RTM_NEWROUTE, 0, 0, 0, &rt4([0; 4], 0, 254, 4, 0, 1, 2, &[gateway4([10, 0, 0, 254])])));
        let Ok(Msg { body: Body::Route(r), .. }) = &m[0] else { panic!("{m:?}") };
        assert_eq!((r.dst, r.dst_len, r.gateway, r.oif, r.table), (None, 0, Some("10.0.0.254".parse().expect("ip")), Some(2), 254));

        let m = split(&nlmsg(RTM_NEWNSID, 0, 0, 0, &nsid_msg(4)));
        assert!(matches!(&m[0], Ok(Msg { body: Body::Nsid(NsidMsg { nsid: Some(4), current: None }), .. })));
    }

    #[test]
    fn requests_encode_with_their_sequence_number() {
        let b = Request::DumpLinks(Some(5)).encode(77);
        let m = split(&b);
        let Ok(Msg { hdr, .. }) = &m[0] else { panic!("{m:?}") };
        assert_eq!((hdr.ty, hdr.seq, hdr.flags), (RTM_GETLINK, 77, NLM_F_REQUEST | NLM_F_DUMP));
        let b = Request::AssignNsid { fd: 9 }.encode(1);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_NEWNSID);
    }
}
