//! rtnetlink requests decoded with netlink-packet-route into the attributes
//! the audit reports: for links `ifname`, `kind`, `master`; for addresses
//! `address`, `prefixlen`, `ifname`; for routes `dst`, `gateway`, `oif`; for
//! neighbours `dst`, `lladdr`, `state`; for qdiscs/classes/filters `kind`,
//! `handle`, `parent`; and namespace references a request carries.
//!
//! Interface indexes are reported as `*_index`; names are filled in later by
//! enrichment, which knows the namespace (see `super::enrich`).

use netlink_packet_core::ParseableParametrized;
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
    nsid::NsidAttribute,
    route::{RouteAddress, RouteAttribute, RouteMessage},
    rule::{RuleAttribute, RuleMessage},
    tc::{TcAttribute, TcMessage},
};
use serde_json::{Map, Value, json};

pub use crate::ns::NsRef;

/// Which object of the request the reference is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRef {
    /// `"link"` (the interface itself moves/lives there) or `"peer"` (a veth peer).
    pub of: &'static str,
    pub ns: NsRef,
}

/// Decoded rtnetlink request: attributes and namespace references.
#[derive(Clone, Debug, Default)]
pub struct RouteDecoded {
    pub attrs: Map<String, Value>,
    pub target: Option<TargetRef>,
}

/// Decodes one rtnetlink message body; an error for any bytes it cannot
/// decode, never a panic (see `super::route_check`).
pub fn decode(msg_type: u16, body: &[u8]) -> Result<RouteDecoded, String> {
    super::route_check::check(msg_type, body)?;
    let msg = RouteNetlinkMessage::parse_with_param(body, msg_type).map_err(|e| e.to_string())?;
    let mut d = RouteDecoded::default();
    use RouteNetlinkMessage as M;
    match &msg {
        M::NewLink(l) | M::DelLink(l) | M::GetLink(l) | M::SetLink(l) => link(l, &mut d),
        M::NewAddress(a) | M::DelAddress(a) | M::GetAddress(a) => address(a, &mut d),
        M::NewRoute(r) | M::DelRoute(r) | M::GetRoute(r) => route(r, &mut d),
        M::NewNeighbour(n) | M::DelNeighbour(n) | M::GetNeighbour(n) => neighbour(n, &mut d),
        M::NewRule(r) | M::DelRule(r) | M::GetRule(r) => rule(r, &mut d),
        M::NewQueueDiscipline(t)
        | M::DelQueueDiscipline(t)
        | M::GetQueueDiscipline(t)
        | M::NewTrafficClass(t)
        | M::DelTrafficClass(t)
        | M::GetTrafficClass(t)
        | M::NewTrafficFilter(t)
        | M::DelTrafficFilter(t)
        | M::GetTrafficFilter(t)
        | M::NewTrafficChain(t)
        | M::DelTrafficChain(t)
        | M::GetTrafficChain(t) => tc(t, &mut d),
        M::NewNsId(n) | M::DelNsId(n) | M::GetNsId(n) => {
            for a in &n.attributes {
                match a {
                    NsidAttribute::Id(id) => ins(&mut d, "nsid", json!(id)),
                    NsidAttribute::Pid(p) => {
                        ins(&mut d, "pid", json!(p));
                        d.target = Some(TargetRef { of: "nsid", ns: NsRef::Pid(*p) });
                    }
                    NsidAttribute::Fd(fd) => {
                        ins(&mut d, "fd", json!(fd));
                        d.target = Some(TargetRef { of: "nsid", ns: NsRef::Fd(*fd as i32) });
                    }
                    NsidAttribute::TargetNsid(t) => ins(&mut d, "target_nsid", json!(t)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(d)
}

/// Size of the fixed header that comes before the attributes of an
/// rtnetlink message (`struct ifinfomsg`, `ifaddrmsg`, `rtmsg`, ...).
pub fn fixed_header_len(msg_type: u16) -> Option<usize> {
    Some(match msg_type {
        16..=19 => 16,                   // ifinfomsg
        20..=22 => 8,                    // ifaddrmsg
        24..=26 | 28..=30 | 32..=34 => 12, // rtmsg, ndmsg, fib_rule_hdr
        36..=46 | 100..=102 => 20,       // tcmsg
        88..=90 => 4,                    // rtgenmsg, aligned
        _ => return None,
    })
}

fn ins(d: &mut RouteDecoded, k: &str, v: Value) {
    d.attrs.insert(k.to_string(), v);
}

fn link(l: &LinkMessage, d: &mut RouteDecoded) {
    if l.header.index != 0 {
        ins(d, "ifindex", json!(l.header.index));
    }
    if l.header.change_mask.contains(LinkFlags::Up) || l.header.flags.contains(LinkFlags::Up) {
        ins(d, "up", json!(l.header.flags.contains(LinkFlags::Up)));
    }
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => ins(d, "ifname", json!(n)),
            LinkAttribute::Mtu(m) => ins(d, "mtu", json!(m)),
            LinkAttribute::Controller(m) => ins(d, "master_index", json!(m)),
            LinkAttribute::Address(mac) => ins(d, "lladdr", json!(mac_str(mac))),
            LinkAttribute::Link(i) => ins(d, "link_index", json!(i)),
            LinkAttribute::NetNsFd(fd) => d.target = Some(TargetRef { of: "link", ns: NsRef::Fd(*fd) }),
            LinkAttribute::NetNsPid(p) => d.target = Some(TargetRef { of: "link", ns: NsRef::Pid(*p) }),
            LinkAttribute::IfNetnsId(id) => d.target = Some(TargetRef { of: "link", ns: NsRef::Nsid(*id) }),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => ins(d, "kind", json!(k.to_string())),
                        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => {
                            let mut peer = Map::new();
                            for pa in &p.attributes {
                                match pa {
                                    LinkAttribute::IfName(n) => {
                                        peer.insert("ifname".into(), json!(n));
                                    }
                                    LinkAttribute::NetNsFd(fd) if d.target.is_none() => {
                                        d.target = Some(TargetRef { of: "peer", ns: NsRef::Fd(*fd) })
                                    }
                                    LinkAttribute::NetNsPid(pid) if d.target.is_none() => {
                                        d.target = Some(TargetRef { of: "peer", ns: NsRef::Pid(*pid) })
                                    }
                                    _ => {}
                                }
                            }
                            ins(d, "peer", Value::Object(peer));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn address(a: &AddressMessage, d: &mut RouteDecoded) {
    ins(d, "family", json!(family(u8::from(a.header.family))));
    ins(d, "prefixlen", json!(a.header.prefix_len));
    ins(d, "ifindex", json!(a.header.index));
    let mut local = None;
    let mut addr = None;
    for at in &a.attributes {
        match at {
            AddressAttribute::Local(ip) => local = Some(ip.to_string()),
            AddressAttribute::Address(ip) => addr = Some(ip.to_string()),
            AddressAttribute::Label(l) => ins(d, "label", json!(l)),
            AddressAttribute::Broadcast(b) => ins(d, "broadcast", json!(b.to_string())),
            _ => {}
        }
    }
    // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS the peer's).
    if let Some(a) = local.clone().or(addr.clone()) {
        ins(d, "address", json!(a));
    }
    if let (Some(l), Some(p)) = (local, addr)
        && l != p {
            ins(d, "peer", json!(p));
        }
}

fn route_addr(a: &RouteAddress) -> String {
    match a {
        RouteAddress::Inet(v) => v.to_string(),
        RouteAddress::Inet6(v) => v.to_string(),
        RouteAddress::Mpls(l) => format!("{l:?}"),
        RouteAddress::Other(b) => hex(b),
        other => format!("{other:?}"),
    }
}

fn route(r: &RouteMessage, d: &mut RouteDecoded) {
    let h = &r.header;
    ins(d, "family", json!(family(u8::from(h.address_family))));
    ins(d, "dst_len", json!(h.destination_prefix_length));
    ins(d, "table", json!(h.table));
    ins(d, "protocol", json!(h.protocol.to_string()));
    ins(d, "scope", json!(h.scope.to_string()));
    ins(d, "route_type", json!(format!("{:?}", h.kind).to_lowercase()));
    let mut dst = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(x) => dst = Some(route_addr(x)),
            RouteAttribute::Gateway(x) => ins(d, "gateway", json!(route_addr(x))),
            RouteAttribute::PrefSource(x) => ins(d, "prefsrc", json!(route_addr(x))),
            RouteAttribute::Source(x) => ins(d, "src", json!(route_addr(x))),
            RouteAttribute::Oif(i) => ins(d, "oif_index", json!(i)),
            RouteAttribute::Iif(i) => ins(d, "iif_index", json!(i)),
            RouteAttribute::Priority(p) => ins(d, "metric", json!(p)),
            RouteAttribute::Table(t) => ins(d, "table", json!(t)),
            _ => {}
        }
    }
    let dst = match dst {
        Some(a) => format!("{a}/{}", h.destination_prefix_length),
        None if h.destination_prefix_length == 0 => "default".to_string(),
        None => format!("?/{}", h.destination_prefix_length),
    };
    ins(d, "dst", json!(dst));
}

fn neighbour(n: &NeighbourMessage, d: &mut RouteDecoded) {
    ins(d, "family", json!(family(u8::from(n.header.family))));
    ins(d, "ifindex", json!(n.header.ifindex));
    ins(d, "state", json!(n.header.state.to_string()));
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(x) => {
                let s = match x {
                    NeighbourAddress::Inet(v) => v.to_string(),
                    NeighbourAddress::Inet6(v) => v.to_string(),
                    NeighbourAddress::Other(b) => mac_str(b),
                    other => format!("{other:?}"),
                };
                ins(d, "dst", json!(s));
            }
            NeighbourAttribute::LinkLayerAddress(m) => ins(d, "lladdr", json!(mac_str(m))),
            NeighbourAttribute::Vlan(v) => ins(d, "vlan", json!(v)),
            NeighbourAttribute::Controller(m) => ins(d, "master_index", json!(m)),
            _ => {}
        }
    }
}

fn rule(r: &RuleMessage, d: &mut RouteDecoded) {
    ins(d, "family", json!(family(u8::from(r.header.family))));
    ins(d, "table", json!(r.header.table));
    ins(d, "action", json!(format!("{:?}", r.header.action).to_lowercase()));
    for a in &r.attributes {
        match a {
            RuleAttribute::Destination(ip) => ins(d, "dst", json!(format!("{ip}/{}", r.header.dst_len))),
            RuleAttribute::Source(ip) => ins(d, "src", json!(format!("{ip}/{}", r.header.src_len))),
            RuleAttribute::Iifname(n) => ins(d, "iif", json!(n)),
            RuleAttribute::Oifname(n) => ins(d, "oif", json!(n)),
            RuleAttribute::Priority(p) => ins(d, "priority", json!(p)),
            RuleAttribute::FwMark(m) => ins(d, "fwmark", json!(m)),
            RuleAttribute::Table(t) => ins(d, "table", json!(t)),
            _ => {}
        }
    }
}

fn tc(t: &TcMessage, d: &mut RouteDecoded) {
    ins(d, "ifindex", json!(t.header.index));
    ins(d, "handle", json!(t.header.handle.to_string()));
    ins(d, "parent", json!(t.header.parent.to_string()));
    for a in &t.attributes {
        if let TcAttribute::Kind(k) = a {
            ins(d, "kind", json!(k));
        }
    }
}

pub fn family(f: u8) -> &'static str {
    match f {
        0 => "unspec",
        1 => "unix",
        2 => "inet",
        7 => "bridge",
        10 => "inet6",
        17 => "packet",
        28 => "mpls",
        _ => "other",
    }
}

pub fn mac_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use netlink_packet_core::Emitable;
    use netlink_packet_route::{
        AddressFamily,
        link::InfoKind,
        neighbour::NeighbourState,
        route::{RouteHeader, RouteProtocol},
    };

    use super::*;

    fn bytes(m: &RouteNetlinkMessage) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn veth_with_peer_in_another_namespace() {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName("eth0".into()));
        peer.attributes.push(LinkAttribute::NetNsFd(5));
        let mut l = LinkMessage::default();
        l.attributes.push(LinkAttribute::IfName("veth1".into()));
        l.attributes.push(LinkAttribute::Controller(7));
        l.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let d = decode(16, &bytes(&RouteNetlinkMessage::NewLink(l))).expect("decode");
        assert_eq!(d.attrs["ifname"], "veth1");
        assert_eq!(d.attrs["kind"], "veth");
        assert_eq!(d.attrs["master_index"], 7);
        assert_eq!(d.attrs["peer"]["ifname"], "eth0");
        assert_eq!(d.target, Some(TargetRef { of: "peer", ns: NsRef::Fd(5) }));
    }

    #[test]
    fn link_moved_by_pid() {
        let mut l = LinkMessage::default();
        l.header.index = 4;
        l.attributes.push(LinkAttribute::NetNsPid(1234));
        let d = decode(16, &bytes(&RouteNetlinkMessage::NewLink(l))).expect("decode");
        assert_eq!(d.attrs["ifindex"], 4);
        assert_eq!(d.target, Some(TargetRef { of: "link", ns: NsRef::Pid(1234) }));
    }

    #[test]
    fn address() {
        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet;
        a.header.prefix_len = 24;
        a.header.index = 3;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        a.attributes.push(AddressAttribute::Local(ip));
        a.attributes.push(AddressAttribute::Address(ip));
        let d = decode(20, &bytes(&RouteNetlinkMessage::NewAddress(a))).expect("decode");
        assert_eq!(d.attrs["address"], "10.1.2.3");
        assert_eq!(d.attrs["prefixlen"], 24);
        assert_eq!(d.attrs["ifindex"], 3);
        assert_eq!(d.attrs["family"], "inet");
        assert!(d.attrs.get("peer").is_none());
    }

    #[test]
    fn route_default_and_prefix() {
        let mut r = RouteMessage::default();
        r.header = RouteHeader { address_family: AddressFamily::Inet, table: 254, protocol: RouteProtocol::Static, ..Default::default() };
        r.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))));
        r.attributes.push(RouteAttribute::Oif(2));
        let d = decode(24, &bytes(&RouteNetlinkMessage::NewRoute(r.clone()))).expect("decode");
        assert_eq!(d.attrs["dst"], "default");
        assert_eq!(d.attrs["gateway"], "10.0.0.1");
        assert_eq!(d.attrs["oif_index"], 2);
        r.header.destination_prefix_length = 16;
        r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 9, 0, 0))));
        let d = decode(24, &bytes(&RouteNetlinkMessage::NewRoute(r))).expect("decode");
        assert_eq!(d.attrs["dst"], "10.9.0.0/16");
    }

    #[test]
    fn neighbour() {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 2;
        n.header.state = NeighbourState::Permanent;
        n.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 9))));
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]));
        let d = decode(28, &bytes(&RouteNetlinkMessage::NewNeighbour(n))).expect("decode");
        assert_eq!(d.attrs["dst"], "10.0.0.9");
        assert_eq!(d.attrs["lladdr"], "02:00:00:00:00:09");
        assert_eq!(d.attrs["state"], "permanent");
    }

    #[test]
    fn qdisc() {
        let mut t = TcMessage::default();
        t.header.index = 5;
        t.attributes.push(TcAttribute::Kind("clsact".into()));
        let d = decode(36, &bytes(&RouteNetlinkMessage::NewQueueDiscipline(t))).expect("decode");
        assert_eq!(d.attrs["kind"], "clsact");
        assert_eq!(d.attrs["ifindex"], 5);
    }

    #[test]
    fn bytes_that_are_no_message_are_errors() {
        let mut l = LinkMessage::default();
        l.attributes.push(LinkAttribute::IfName("veth-long-name".into()));
        let whole = bytes(&RouteNetlinkMessage::NewLink(l));
        assert_eq!(decode(16, &whole).expect("whole").attrs["ifname"], "veth-long-name", "the whole message decodes");
        // Cut inside the fixed header or inside the name attribute: an
        // error naming what is wrong, never attributes made up.
        for cut in (1..16).chain(17..whole.len() - 4) {
            let e = decode(16, &whole[..cut]).map(|d| d.attrs).expect_err(&format!("cut at {cut} of {}", whole.len()));
            assert!(!e.is_empty(), "cut at {cut}: an empty reason");
        }
        // An attribute whose length runs past the message.
        let mut long = whole.clone();
        long[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert!(decode(16, &long).is_err());
        // Every kind of message, from random bytes: an answer each time,
        // and the errors say something.
        let mut seed = 0x1234_5678u32;
        let mut errors = 0;
        for len in 0..200usize {
            for ty in [16u16, 17, 19, 20, 21, 24, 25, 28, 32, 36, 44, 88] {
                let junk: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                if let Err(e) = decode(ty, &junk) {
                    assert!(!e.is_empty());
                    errors += 1;
                }
            }
        }
        assert!(errors > 1000, "random bytes are mostly refused: {errors} of 2400");
    }
}
