//! Events as text, one line each, the way `ip monitor link address route`
//! prints them (iproute2's print_linkinfo, print_addrinfo, print_route),
//! so the two can be read side by side: index, name, `@peer`, flags, mtu,
//! master, state, link-layer address, `link-netns`, `new-netns`; addresses
//! as `inet A/P brd B scope S label`; routes as `[type] dst via gw dev X
//! table T proto P scope S src A metric M`; deletions prefixed `Deleted `.
//! Where `ip` falls back to `ifNNN` for a peer in another namespace, the
//! watcher names it when it can. Names come from outside and are escaped
//! for the terminal (control characters as `\xNN`).

use std::{fmt::Write as _, net::IpAddr};

use super::{
    msg::{AF_INET, AF_INET6, RouteMsg},
    types::{AddrView, EventKind, LinkView, NsHandle, Place, RouteView, SyncReason},
};
use crate::sys::text::name;

/// `IFF_*` names in the order iproute2 prints them.
const FLAGS: &[(u32, &str)] = &[
    (0x8, "LOOPBACK"),
    (0x2, "BROADCAST"),
    (0x10, "POINTOPOINT"),
    (0x1000, "MULTICAST"),
    (0x80, "NOARP"),
    (0x200, "ALLMULTI"),
    (0x100, "PROMISC"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x4, "DEBUG"),
    (0x8000, "DYNAMIC"),
    (0x4000, "AUTOMEDIA"),
    (0x2000, "PORTSEL"),
    (0x20, "NOTRAILERS"),
    (0x1, "UP"),
    (0x10000, "LOWER_UP"),
    (0x20000, "DORMANT"),
    (0x40000, "ECHO"),
];
const IFF_RUNNING: u32 = 0x40;
const IFF_UP: u32 = 0x1;

fn flags(f: u32, m_down: bool) -> String {
    let mut parts = Vec::new();
    if f & IFF_UP != 0 && f & IFF_RUNNING == 0 {
        parts.push("NO-CARRIER".to_string());
    }
    let mut rest = f & !IFF_RUNNING;
    for (bit, n) in FLAGS {
        if rest & bit != 0 {
            parts.push((*n).to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:x}"));
    }
    if m_down {
        parts.push("M-DOWN".into());
    }
    parts.join(",")
}

fn operstate(s: u8) -> &'static str {
    ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"].get(usize::from(s)).copied().unwrap_or("UNKNOWN")
}

fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// One event as a line; `label` names namespaces (`host`, a container, a
/// `/run/netns` name), `None` when it cannot.
pub fn line(kind: &EventKind, label: &dyn Fn(NsHandle) -> Option<String>) -> String {
    match kind {
        EventKind::LinkAdded(v) | EventKind::LinkChanged(v) | EventKind::PortChanged(v) => link(v, false, label),
        EventKind::LinkDeleted(v) | EventKind::PortDeleted(v) => link(v, true, label),
        EventKind::AddrAdded(a) => addr(a, false),
        EventKind::AddrDeleted(a) => addr(a, true),
        EventKind::RouteAdded(r) => route(r, false),
        EventKind::RouteDeleted(r) => route(r, true),
        EventKind::NsidAdded { nsid, peer } => format!("nsid {nsid}{}", ns_suffix(*peer, label)),
        EventKind::NsidDeleted { nsid, peer } => format!("Deleted nsid {nsid}{}", ns_suffix(*peer, label)),
        EventKind::NamespaceAppeared { nsid } => format!("netns appeared (nsid {nsid})"),
        EventKind::NamespaceIdentified { inode, label: l, .. } => {
            format!("netns is inode {inode}{}", l.as_deref().map(|l| format!(" ({})", name(l))).unwrap_or_default())
        }
        EventKind::NamespaceGone => "netns gone".into(),
        EventKind::Synced { reason, links, addrs } => {
            let why = match reason {
                SyncReason::Initial => "read",
                SyncReason::Appeared => "read (new)",
                SyncReason::Resync => "re-read after lost notifications",
            };
            format!("netns {why}: {links} links, {addrs} addresses")
        }
    }
}

fn ns_suffix(peer: Option<NsHandle>, label: &dyn Fn(NsHandle) -> Option<String>) -> String {
    peer.and_then(label).map(|l| format!(" (netns {})", name(&l))).unwrap_or_default()
}

fn ns_text(ns: Option<NsHandle>, netnsid: Option<i32>, label: &dyn Fn(NsHandle) -> Option<String>) -> String {
    match (ns.and_then(label), netnsid) {
        (Some(l), _) => name(&l).into_owned(),
        (None, Some(n)) => format!("nsid:{n}"),
        (None, None) => "?".into(),
    }
}

fn link(v: &LinkView, deleted: bool, label: &dyn Fn(NsHandle) -> Option<String>) -> String {
    let l = &v.link;
    let mut s = String::new();
    if deleted {
        s.push_str("Deleted ");
    }
    let _ = write!(s, "{}: {}", l.ifindex, name(&l.name));
    match (&v.peer, l.link) {
        (Some((_, _, Some(p))), _) => {
            let _ = write!(s, "@{}", name(p));
        }
        (Some((_, i, None)), _) => {
            let _ = write!(s, "@if{i}");
        }
        (None, Some(0)) => s.push_str("@NONE"),
        _ => {}
    }
    let _ = write!(s, ": <{}> mtu {}", flags(l.flags, v.peer_down), l.mtu);
    if let Some(m) = l.master {
        let _ = write!(s, " master {}", v.master_name.as_deref().map(name).map(|n| n.into_owned()).unwrap_or_else(|| format!("if{m}")));
    }
    let _ = write!(s, " state {}", operstate(l.operstate));
    if let Some(e) = v.event {
        let ev = match e {
            1 => "REBOOT",
            2 => "FEATURE CHANGE",
            3 => "BONDING FAILOVER",
            4 => "NOTIFY PEERS",
            5 => "IGMP RESEND",
            6 => "BONDING OPTIONS",
            _ => "",
        };
        if !ev.is_empty() {
            let _ = write!(s, " event {ev}");
        }
    }
    if let Some(a) = &l.lladdr {
        let kind = match l.arptype {
            1 => "ether".to_string(),
            772 => "loopback".into(),
            65534 => "none".into(),
            t => format!("[{t}]"),
        };
        let _ = write!(s, " link/{kind} {}", mac(a));
    }
    if let (Some((pns, _, _)), Some(n)) = (&v.peer, l.link_netnsid) {
        let _ = write!(s, " link-netns {}", ns_text(*pns, Some(n), label));
    }
    if let Some(Place { ns, netnsid, ifindex }) = &v.moved_to {
        let _ = write!(s, " new-netns {} new-ifindex {ifindex}", ns_text(*ns, *netnsid, label));
    }
    if let Some(Place { ns, ifindex, .. }) = &l.moved_from
        && !deleted
    {
        let _ = write!(s, " moved-from {} if{ifindex}", ns_text(*ns, None, label));
    }
    s
}

fn scope(s: u8) -> String {
    match s {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

const ADDR_FLAGS: &[(u32, &str, &str)] = &[
    (0x01, "secondary", "temporary"),
    (0x02, "nodad", "nodad"),
    (0x04, "optimistic", "optimistic"),
    (0x08, "dadfailed", "dadfailed"),
    (0x10, "home", "home"),
    (0x20, "deprecated", "deprecated"),
    (0x40, "tentative", "tentative"),
    (0x100, "mngtmpaddr", "mngtmpaddr"),
    (0x200, "noprefixroute", "noprefixroute"),
    (0x400, "autojoin", "autojoin"),
    (0x800, "stable-privacy", "stable-privacy"),
];
const IFA_F_PERMANENT: u32 = 0x80;

fn addr(v: &AddrView, deleted: bool) -> String {
    let a = &v.addr;
    let dev = v.dev.as_deref().map(|d| name(d).into_owned()).unwrap_or_else(|| format!("if{}", v.ifindex));
    let mut s = String::new();
    if deleted {
        s.push_str("Deleted ");
    }
    let fam = if a.family == AF_INET6 { "inet6" } else { "inet" };
    let _ = write!(s, "{}: {dev}    {fam} {}", v.ifindex, a.local);
    match a.peer {
        Some(p) => {
            let _ = write!(s, " peer {p}/{}", a.prefixlen);
        }
        None => {
            let _ = write!(s, "/{}", a.prefixlen);
        }
    }
    if let Some(b) = a.broadcast {
        let _ = write!(s, " brd {b}");
    }
    let _ = write!(s, " scope {}", scope(a.scope));
    for (bit, v4, v6) in ADDR_FLAGS {
        if a.flags & bit != 0 {
            let _ = write!(s, " {}", if a.family == AF_INET { v4 } else { v6 });
        }
    }
    if a.flags & IFA_F_PERMANENT == 0 {
        s.push_str(" dynamic");
    }
    if a.family == AF_INET
        && let Some(l) = &a.label
    {
        let _ = write!(s, " {}", name(l));
    }
    s
}

fn rtype(t: u8) -> Option<&'static str> {
    match t {
        2 => Some("local"),
        3 => Some("broadcast"),
        4 => Some("anycast"),
        5 => Some("multicast"),
        6 => Some("blackhole"),
        7 => Some("unreachable"),
        8 => Some("prohibit"),
        9 => Some("throw"),
        10 => Some("nat"),
        11 => Some("xresolve"),
        _ => None,
    }
}

fn proto(p: u8) -> String {
    match p {
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        8 => "gated".into(),
        9 => "ra".into(),
        10 => "mrt".into(),
        11 => "zebra".into(),
        12 => "bird".into(),
        13 => "dnrouted".into(),
        14 => "xorp".into(),
        15 => "ntk".into(),
        16 => "dhcp".into(),
        17 => "mrouted".into(),
        18 => "keepalived".into(),
        42 => "babel".into(),
        186 => "bgp".into(),
        187 => "isis".into(),
        188 => "ospf".into(),
        189 => "rip".into(),
        192 => "eigrp".into(),
        n => n.to_string(),
    }
}

fn prefix(a: Option<IpAddr>, len: u8, family: u8) -> String {
    let full = if family == AF_INET { 32 } else { 128 };
    match a {
        None if len == 0 => "default".into(),
        None => format!("0/{len}"),
        Some(a) if len == full => a.to_string(),
        Some(a) => format!("{a}/{len}"),
    }
}

fn route(v: &RouteView, deleted: bool) -> String {
    let r: &RouteMsg = &v.route;
    let mut s = String::new();
    if deleted {
        s.push_str("Deleted ");
    }
    if let Some(t) = rtype(r.rtype) {
        let _ = write!(s, "{t} ");
    }
    s.push_str(&prefix(r.dst, r.dst_len, r.family));
    if r.src.is_some() || r.src_len > 0 {
        let _ = write!(s, " from {}", prefix(r.src, r.src_len, r.family));
    }
    if let Some(g) = r.gateway {
        let _ = write!(s, " via {g}");
    }
    if let Some(oif) = r.oif {
        let _ = write!(s, " dev {}", v.dev.as_deref().map(|d| name(d).into_owned()).unwrap_or_else(|| format!("if{oif}")));
    }
    match r.table {
        254 => {}
        255 => s.push_str(" table local"),
        253 => s.push_str(" table default"),
        t => {
            let _ = write!(s, " table {t}");
        }
    }
    if r.protocol != 3 {
        let _ = write!(s, " proto {}", proto(r.protocol));
    }
    if r.scope != 0 {
        let _ = write!(s, " scope {}", scope(r.scope));
    }
    if let Some(p) = r.prefsrc {
        let _ = write!(s, " src {p}");
    }
    if let Some(m) = r.priority {
        let _ = write!(s, " metric {m}");
    }
    for (bit, n) in [(1u32, "dead"), (2, "pervasive"), (4, "onlink"), (8, "offload"), (64, "trap"), (16, "linkdown"), (32, "unresolved")] {
        if r.flags & bit != 0 {
            let _ = write!(s, " {n}");
        }
    }
    if r.family == AF_INET6
        && let Some(p) = r.pref
    {
        let _ = write!(s, " pref {}", match p {
            0 => "medium",
            1 => "high",
            3 => "low",
            _ => "?",
        });
    }
    for (i, nh) in r.multipath.iter().enumerate() {
        s.push_str(" nexthop");
        if let Some(g) = nh.gateway {
            let _ = write!(s, " via {g}");
        }
        let dev = v.nexthop_devs.get(i).cloned().flatten().map(|d| name(&d).into_owned()).unwrap_or_else(|| format!("if{}", nh.ifindex));
        let _ = write!(s, " dev {dev}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::watch::{
        msg::{AF_INET, NextHop},
        types::{Addr, Link},
    };

    fn lbl(h: NsHandle) -> Option<String> {
        Some(if h.0 == 0 { "host".into() } else { format!("lab{}", h.0) })
    }

    fn veth(ifindex: u32, n: &str) -> Link {
        Link {
            ifindex,
            name: n.into(),
            kind: Some("veth".into()),
            arptype: 1,
            master: None,
            link: None,
            link_netnsid: None,
            flags: 0x1002,
            operstate: 2,
            carrier: Some(false),
            mtu: 1500,
            lladdr: Some(vec![0xda, 0x44, 0x70, 0xa2, 0x5f, 0x89]),
            addrs: vec![],
            moved_from: None,
        }
    }

    #[test]
    fn links_as_ip_monitor_prints_them() {
        // 990: wtv1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN ...
        let v = LinkView { link: Link { link: Some(0), ..veth(990, "wtv1") }, master_name: None, peer: None, peer_down: false, moved_to: None, event: None };
        assert_eq!(line(&EventKind::LinkAdded(v), &lbl), "990: wtv1@NONE: <BROADCAST,MULTICAST> mtu 1500 state DOWN link/ether da:44:70:a2:5f:89");
        // 991: wtv0@wtv1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 master wtbr state LOWERLAYERDOWN
        let l = Link { flags: 0x1003, operstate: 3, master: Some(992), link: Some(990), ..veth(991, "wtv0") };
        let v = LinkView { link: l, master_name: Some("wtbr".into()), peer: Some((Some(NsHandle(0)), 990, Some("wtv1".into()))), peer_down: true, moved_to: None, event: None };
        assert!(
            line(&EventKind::LinkChanged(v), &lbl)
                .starts_with("991: wtv0@wtv1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 master wtbr state LOWERLAYERDOWN link/ether")
        );
        // Deleted 990: wtv1@wtv0: ... new-netns wtA new-ifindex 990
        let v = LinkView {
            link: Link { link: Some(991), ..veth(990, "wtv1") },
            master_name: None,
            peer: Some((Some(NsHandle(0)), 991, Some("wtv0".into()))),
            peer_down: false,
            moved_to: Some(Place { ns: Some(NsHandle(3)), netnsid: Some(0), ifindex: 990 }),
            event: None,
        };
        assert!(line(&EventKind::LinkDeleted(v), &lbl).ends_with("link/ether da:44:70:a2:5f:89 new-netns lab3 new-ifindex 990"));
        // A peer in another namespace: ip says @if991 and link-netnsid 0;
        // the watcher names the peer and its namespace when it knows them.
        let l = Link { link: Some(991), link_netnsid: Some(0), flags: 0x11043, operstate: 6, ..veth(990, "wtv1") };
        let mut v = LinkView { link: l, master_name: None, peer: Some((Some(NsHandle(0)), 991, None)), peer_down: false, moved_to: None, event: None };
        assert_eq!(
            line(&EventKind::LinkAdded(v.clone()), &lbl),
            "990: wtv1@if991: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP link/ether da:44:70:a2:5f:89 link-netns host"
        );
        v.peer = Some((Some(NsHandle(0)), 991, Some("wtv0".into())));
        assert!(line(&EventKind::LinkAdded(v), &lbl).starts_with("990: wtv1@wtv0: "));
    }

    #[test]
    fn addresses_and_routes_as_ip_monitor_prints_them() {
        let a = Addr {
            family: AF_INET,
            local: "10.99.0.2".parse().expect("ip"),
            prefixlen: 24,
            peer: None,
            broadcast: None,
            scope: 0,
            flags: 0x80,
            label: Some("wtv1".into()),
            metric: None,
        };
        let v = AddrView { ifindex: 990, dev: Some("wtv1".into()), addr: a.clone() };
        assert_eq!(line(&EventKind::AddrAdded(v.clone()), &lbl), "990: wtv1    inet 10.99.0.2/24 scope global wtv1");
        assert_eq!(line(&EventKind::AddrDeleted(v), &lbl), "Deleted 990: wtv1    inet 10.99.0.2/24 scope global wtv1");
        let a6 = Addr { family: AF_INET6, local: "fe80::1".parse().expect("ip"), prefixlen: 64, scope: 253, flags: 0xc0, label: None, ..a };
        let v = AddrView { ifindex: 991, dev: Some("wtv0".into()), addr: a6 };
        assert_eq!(line(&EventKind::AddrAdded(v), &lbl), "991: wtv0    inet6 fe80::1/64 scope link tentative");

        let ip = |s: &str| Some(s.parse().expect("ip"));
        let r = RouteMsg { family: AF_INET, dst_len: 24, table: 254, protocol: 2, scope: 253, rtype: 1, dst: ip("10.99.0.0"), prefsrc: ip("10.99.0.2"), oif: Some(990), ..Default::default() };
        let v = RouteView { route: r.clone(), dev: Some("wtv1".into()), nexthop_devs: vec![] };
        assert_eq!(line(&EventKind::RouteAdded(v.clone()), &lbl), "10.99.0.0/24 dev wtv1 proto kernel scope link src 10.99.0.2");
        let local = RouteMsg { dst_len: 32, table: 255, scope: 254, rtype: 2, dst: ip("10.99.0.2"), ..r.clone() };
        let v = RouteView { route: local, ..v };
        assert_eq!(line(&EventKind::RouteDeleted(v.clone()), &lbl), "Deleted local 10.99.0.2 dev wtv1 table local proto kernel scope host src 10.99.0.2");
        let via = RouteMsg { protocol: 3, scope: 0, dst: ip("10.98.0.0"), gateway: ip("10.99.0.1"), prefsrc: None, ..r.clone() };
        assert_eq!(line(&EventKind::RouteAdded(RouteView { route: via, ..v.clone() }), &lbl), "10.98.0.0/24 via 10.99.0.1 dev wtv1");
        let v6 = RouteMsg { family: AF_INET6, dst_len: 64, dst: ip("fe80::"), scope: 0, priority: Some(256), pref: Some(0), prefsrc: None, flags: 16, ..r.clone() };
        assert_eq!(line(&EventKind::RouteDeleted(RouteView { route: v6, ..v.clone() }), &lbl), "Deleted fe80::/64 dev wtv1 proto kernel metric 256 linkdown pref medium");
        let mp = RouteMsg {
            dst_len: 0,
            dst: None,
            oif: None,
            protocol: 4,
            scope: 0,
            prefsrc: None,
            multipath: vec![NextHop { gateway: ip("10.0.0.1"), ifindex: 7 }, NextHop { gateway: None, ifindex: 8 }],
            ..r
        };
        assert_eq!(
            line(&EventKind::RouteAdded(RouteView { route: mp, dev: None, nexthop_devs: vec![Some("a".into()), None] }), &lbl),
            "default proto static nexthop via 10.0.0.1 dev a nexthop dev if8"
        );
    }

    #[test]
    fn names_from_outside_are_escaped() {
        let v = LinkView { link: veth(5, "e\x1b[2J\u{202e}"), master_name: Some("b\x07".into()), peer: None, peer_down: false, moved_to: None, event: None };
        let s = line(&EventKind::LinkAdded(LinkView { link: Link { master: Some(4), ..v.link.clone() }, ..v }), &lbl);
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(s.starts_with(r"5: e\x1b[2J\u{202e}: ") && s.contains(r"master b\x07"), "{s}");
    }
}
