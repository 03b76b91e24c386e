//! The table fed synthetic messages (built as the kernel lays them out and
//! decoded by `msg::split`), with the scenarios measured on Linux 6.18:
//! veth pairs, bridges and their `AF_BRIDGE` port messages, moves between
//! namespaces, namespaces that go away, and every bound.

use super::*;
use crate::ns::rtnl::msg::{
    AF_BRIDGE, RTM_DELADDR, RTM_DELLINK, RTM_DELNSID, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNSID, build::*, split,
};

const S: u64 = 1_000_000_000;
const MAC1: [u8; 6] = [0xda, 0x44, 0x70, 0xa2, 0x5f, 0x89];
const MAC0: [u8; 6] = [0x72, 0x40, 0xa5, 0x55, 0x95, 0x77];

fn msg(ty: u16, payload: &[u8]) -> Msg {
    msg_from(ty, 0, 0, payload)
}

fn msg_from(ty: u16, seq: u32, pid: u32, payload: &[u8]) -> Msg {
    split(&nlmsg(ty, 0, seq, pid, payload)).remove(0).expect("decodes")
}

fn veth(ifindex: u32, name: &[u8], mac: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut a = vec![crate::ns::rtnl::msg::build::name(name), kind("veth"), mtu(1500), operstate(2), lladdr(mac)];
    a.extend_from_slice(extra);
    ifinfo(0, ifindex, 0x1002, &a)
}

fn kinds(out: &[Out]) -> Vec<&'static str> {
    out.iter()
        .map(|(_, k)| match k {
            EventKind::LinkAdded(_) => "LinkAdded",
            EventKind::LinkChanged(_) => "LinkChanged",
            EventKind::LinkDeleted(_) => "LinkDeleted",
            EventKind::PortChanged(_) => "PortChanged",
            EventKind::PortDeleted(_) => "PortDeleted",
            EventKind::AddrAdded(_) => "AddrAdded",
            EventKind::AddrDeleted(_) => "AddrDeleted",
            EventKind::RouteAdded(_) => "RouteAdded",
            EventKind::RouteDeleted(_) => "RouteDeleted",
            EventKind::NsidAdded { .. } => "NsidAdded",
            EventKind::NsidDeleted { .. } => "NsidDeleted",
            EventKind::NamespaceAppeared { .. } => "NamespaceAppeared",
            EventKind::NamespaceIdentified { .. } => "NamespaceIdentified",
            EventKind::NamespaceGone => "NamespaceGone",
            EventKind::Synced { .. } => "Synced",
        })
        .collect()
}

fn link_view(out: &[Out]) -> &LinkView {
    match &out[0].1 {
        EventKind::LinkAdded(v) | EventKind::LinkChanged(v) | EventKind::LinkDeleted(v) | EventKind::PortChanged(v) | EventKind::PortDeleted(v) => v,
        k => panic!("not a link event: {k:?}"),
    }
}

/// Home plus namespace `a`, which home calls nsid 0 and which calls home 0.
fn two() -> (Table, NsHandle, NsHandle) {
    let mut t = Table::new(Limits::default(), Some(4026531840), Some(1));
    let a = t.add_ns(0).expect("room");
    t.set_xlate(a, HashMap::new(), Some(0));
    let h = t.home();
    (t, h, a)
}

#[test]
fn veth_pair_and_bridge_in_one_namespace() {
    let (mut t, h, _) = two();
    // The kernel announces the second end first, before its peer exists.
    let out = t.apply(h, &msg(RTM_NEWLINK, &veth(990, b"wtv1", &MAC1, &[link_peer(0)])), S);
    assert_eq!(kinds(&out), ["LinkAdded"]);
    assert_eq!(link_view(&out).peer, None);
    let out = t.apply(h, &msg(RTM_NEWLINK, &veth(991, b"wtv0", &MAC0, &[link_peer(990)])), S);
    assert_eq!(link_view(&out).peer, Some((Some(h), 990, Some("wtv1".into()))));
    assert!(link_view(&out).peer_down, "the peer is down: ip prints M-DOWN");
    assert_eq!(t.peer(h, 991), Some((h, 990)));
    // wtv1 said IFLA_LINK 0: its peer is found from the other end.
    assert_eq!(t.peer(h, 990), Some((h, 991)));
    assert_eq!(t.index(h, "wtv0"), Some(991));

    t.apply(h, &msg(RTM_NEWLINK, &ifinfo(0, 992, 0x1043, &[name(b"wtbr"), kind("bridge"), lladdr(&MAC0)])), S);
    let out = t.apply(h, &msg(RTM_NEWLINK, &veth(991, b"wtv0", &MAC0, &[link_peer(990), master(992)])), S);
    assert_eq!(kinds(&out), ["LinkChanged"]);
    assert_eq!(link_view(&out).master_name.as_deref(), Some("wtbr"));
    // The bridge's own view of its port: merged, and its delete means the
    // port left the bridge, not that the link is gone.
    let port = ifinfo(AF_BRIDGE, 991, 0x1003, &[name(b"wtv0"), master(992), mtu(1500), operstate(3)]);
    assert_eq!(kinds(&t.apply(h, &msg(RTM_NEWLINK, &port), S)), ["PortChanged"]);
    let out = t.apply(h, &msg(RTM_DELLINK, &port), S);
    assert_eq!(kinds(&out), ["PortDeleted"]);
    assert_eq!(t.name(h, 991).as_deref(), Some("wtv0"));
    assert!(matches!(t.link(h, 991), Some(LinkState::Live(_))), "still live");
    // A link-only view (no kind in the bridge message) keeps the kind.
    assert_eq!(t.links(h).iter().find(|l| l.ifindex == 991).and_then(|l| l.kind.clone()).as_deref(), Some("veth"));
}

#[test]
fn deleted_links_are_named_from_their_tombstone_until_it_expires() {
    let (mut t, h, _) = two();
    t.apply(h, &msg(RTM_NEWLINK, &veth(901, b"vethab12", &MAC1, &[])), S);
    t.apply(h, &msg(RTM_NEWADDR, &ifaddr4(901, [10, 0, 0, 1], 24, 0, b"vethab12")), S);
    let out = t.apply(h, &msg(RTM_DELLINK, &veth(901, b"vethab12", &MAC1, &[])), 2 * S);
    assert_eq!(kinds(&out), ["LinkDeleted"]);
    assert_eq!(link_view(&out).link.addrs.len(), 1, "the addresses it had are kept");
    assert_eq!(t.index(h, "vethab12"), None, "not live");
    assert_eq!(t.name(h, 901).as_deref(), Some("vethab12"));
    assert!(matches!(t.link(h, 901), Some(LinkState::Deleted(Tomb { deleted_at, .. })) if deleted_at == 2 * S));
    assert_eq!(t.addresses(h, 901).len(), 1);
    // A route notification arriving after the delete is still named.
    let r = msg(RTM_DELROUTE, &rt4([10, 0, 0, 0], 24, 254, 2, 253, 1, 901, &[prefsrc4([10, 0, 0, 1])]));
    let out = t.apply(h, &r, 2 * S);
    assert!(matches!(&out[0].1, EventKind::RouteDeleted(v) if v.dev.as_deref() == Some("vethab12")), "{out:?}");
    t.expire(2 * S + Limits::default().tombstone_ns - 1);
    assert!(t.name(h, 901).is_some());
    t.expire(2 * S + Limits::default().tombstone_ns);
    assert_eq!(t.name(h, 901), None);
    assert_eq!(t.stats().tombstones, 0);
}

#[test]
fn a_move_is_recorded_at_both_ends() {
    let (mut t, h, a) = two();
    t.apply(h, &msg(RTM_NEWLINK, &veth(990, b"wtv1", &MAC1, &[link_peer(991)])), S);
    t.apply(h, &msg(RTM_NEWLINK, &veth(991, b"wtv0", &MAC0, &[link_peer(990)])), S);
    // ip link set wtv1 netns A: DELLINK at home with IFLA_NEW_NETNSID...
    let out = t.apply(h, &msg(RTM_DELLINK, &veth(990, b"wtv1", &MAC1, &[link_peer(991), moved(0, 990)])), 2 * S);
    let v = link_view(&out);
    assert_eq!(v.moved_to, Some(Place { ns: Some(a), netnsid: Some(0), ifindex: 990 }));
    // ...then NEWLINK in A, its peer in home (A calls home 0).
    let out = t.apply(a, &msg(RTM_NEWLINK, &veth(990, b"wtv1", &MAC1, &[link_peer(991), link_netnsid(0)])), 2 * S + 1000);
    assert_eq!(kinds(&out), ["LinkAdded"]);
    let v = link_view(&out);
    assert_eq!(v.link.moved_from, Some(Place { ns: Some(h), netnsid: None, ifindex: 990 }));
    assert_eq!(v.peer, Some((Some(h), 991, Some("wtv0".into()))));
    let m = t.moved(h, 990).expect("left home");
    assert_eq!((m.name.as_str(), m.to.ns, m.to.ifindex), ("wtv1", Some(a), 990));
    let m = t.moved(a, 990).expect("arrived in a");
    assert_eq!((m.from.ns, m.from.ifindex), (Some(h), 990));
    assert_eq!(t.peer(a, 990), Some((h, 991)));
    // The kernel says nothing to the end that stayed: its peer is followed.
    assert_eq!(t.peer(h, 991), Some((a, 990)));
    // The home end now points into A: its peer is resolved through nsid 0.
    t.apply(h, &msg(RTM_NEWLINK, &veth(991, b"wtv0", &MAC0, &[link_peer(990), link_netnsid(0)])), 3 * S);
    assert_eq!(t.peer(h, 991), Some((a, 990)));
    assert_eq!(t.name(a, 990).as_deref(), Some("wtv1"));
}

#[test]
fn a_move_whose_target_id_was_unknown_is_matched_by_address() {
    let (mut t, h, a) = two();
    t.apply(h, &msg(RTM_NEWLINK, &veth(990, b"wtv1", &MAC1, &[])), S);
    // Home's nsid 7 is not tracked yet when the delete is applied.
    let out = t.apply(h, &msg(RTM_DELLINK, &veth(990, b"wtv1", &MAC1, &[moved(7, 5)])), S);
    assert_eq!(link_view(&out).moved_to, Some(Place { ns: None, netnsid: Some(7), ifindex: 5 }));
    t.apply(a, &msg(RTM_NEWLINK, &veth(5, b"wtv1", &MAC1, &[])), S + 10);
    assert_eq!(t.moved(h, 990).map(|m| m.to.ns), Some(Some(a)));
    assert_eq!(t.moved(a, 5).map(|m| (m.from.ns, m.from.ifindex)), Some((Some(h), 990)));
    // A different hardware address is another link, not the moved one.
    t.apply(h, &msg(RTM_NEWLINK, &veth(992, b"x", &MAC0, &[])), S);
    t.apply(h, &msg(RTM_DELLINK, &veth(992, b"x", &MAC0, &[moved(8, 6)])), S);
    t.apply(a, &msg(RTM_NEWLINK, &veth(6, b"x", &MAC1, &[])), S + 10);
    assert_eq!(t.moved(a, 6), None);
}

#[test]
fn a_veth_created_with_its_peer_in_another_namespace() {
    // ip link add wtv2 type veth peer name eth0 netns B: B hears of eth0
    // with IFLA_LINK 0; home hears of wtv2 with its peer (B, 2).
    let (mut t, h, a) = two();
    t.apply(a, &msg(RTM_NEWLINK, &veth(2, b"eth0", &MAC1, &[link_peer(0)])), S);
    t.apply(h, &msg(RTM_NEWLINK, &veth(993, b"wtv2", &MAC0, &[link_peer(2), link_netnsid(0)])), S);
    assert_eq!(t.peer(h, 993), Some((a, 2)));
    assert_eq!(t.peer(a, 2), Some((h, 993)));
}

#[test]
fn addresses_follow_their_link() {
    let (mut t, h, _) = two();
    t.apply(h, &msg(RTM_NEWLINK, &veth(2, b"eth0", &MAC1, &[])), S);
    let out = t.apply(h, &msg_from(RTM_NEWADDR, 4242, 0x7a11, &ifaddr4(2, [10, 0, 0, 1], 24, 0, b"eth0")), S);
    assert!(matches!(&out[0].1, EventKind::AddrAdded(v) if v.dev.as_deref() == Some("eth0")));
    // The same address again replaces it, a second one is added.
    t.apply(h, &msg(RTM_NEWADDR, &ifaddr4(2, [10, 0, 0, 1], 24, 0, b"eth0")), S);
    t.apply(h, &msg(RTM_NEWADDR, &ifaddr4(2, [10, 0, 1, 1], 24, 0, b"eth0")), S);
    let got: Vec<String> = t.addresses(h, 2).iter().map(|a| format!("{}/{}", a.local, a.prefixlen)).collect();
    assert_eq!(got, ["10.0.0.1/24", "10.0.1.1/24"]);
    t.apply(h, &msg(RTM_DELADDR, &ifaddr4(2, [10, 0, 0, 1], 24, 0, b"eth0")), S);
    assert_eq!(t.addresses(h, 2).len(), 1);
}

#[test]
fn a_namespace_that_goes_keeps_its_names_and_its_id_is_reused_for_another() {
    let (mut t, h, a) = two();
    t.bind(a, 4026532300, Some(9), Some("lab".into()), None);
    t.apply(a, &msg(RTM_NEWLINK, &veth(2, b"eth0", &MAC1, &[])), S);
    let out = t.apply(h, &msg(RTM_DELNSID, &nsid_msg(0)), 2 * S);
    assert_eq!(kinds(&out), ["NsidDeleted", "NamespaceGone"]);
    assert_eq!(out[1].0, a);
    assert_eq!(t.by_nsid(0), None);
    assert_eq!(t.name(a, 2).as_deref(), Some("eth0"), "named after it went");
    assert_eq!(t.by_inode(4026532300), Some(a), "the gone one, while no other has the inode");
    assert!(t.apply(a, &msg(RTM_NEWLINK, &veth(3, b"x", &MAC1, &[])), 2 * S).is_empty());
    // The kernel reuses the id (and the inode) at once: a new handle.
    let b = t.add_ns(0).expect("room");
    assert_ne!(a, b);
    assert!(t.bind(b, 4026532300, Some(10), None, None).is_some());
    assert_eq!(t.by_inode(4026532300), Some(b));
    assert_eq!(t.name(b, 2), None);
    let out = t.apply(h, &msg(RTM_NEWNSID, &nsid_msg(0)), 3 * S);
    assert_eq!(out[0].1, EventKind::NsidAdded { nsid: 0, peer: Some(b) });
    t.expire(2 * S + Limits::default().tombstone_ns);
    assert_eq!(t.info(a), None);
}

#[test]
fn dumps_start_the_table_and_resyncs_report_the_differences() {
    let (mut t, h, _) = two();
    let lo = LinkMsg { ifindex: 1, name: Some("lo".into()), arptype: 772, flags: 0x49, ..Default::default() };
    let e0 = LinkMsg { ifindex: 2, name: Some("eth0".into()), kind: Some("veth".into()), ..Default::default() };
    let a1 = crate::ns::rtnl::msg::AddrMsg {
        family: crate::ns::rtnl::msg::AF_INET,
        prefixlen: 24,
        scope: 0,
        ifindex: 2,
        flags: 0x80,
        address: Some("10.0.0.1".parse().expect("ip")),
        local: Some("10.0.0.1".parse().expect("ip")),
        broadcast: None,
        label: Some("eth0".into()),
        metric: None,
    };
    let out = t.sync(h, &[lo.clone(), e0.clone()], std::slice::from_ref(&a1), SyncReason::Initial, S);
    assert_eq!(out, vec![(h, EventKind::Synced { reason: SyncReason::Initial, links: 2, addrs: 1 })]);
    // Lost notifications: eth0 went, eth1 came with an address, lo went up.
    let e1 = LinkMsg { ifindex: 3, name: Some("eth1".into()), ..Default::default() };
    let a2 = crate::ns::rtnl::msg::AddrMsg { ifindex: 3, ..a1 };
    let lo_up = LinkMsg { flags: 0x10049, ..lo };
    let out = t.sync(h, &[lo_up, e1], &[a2], SyncReason::Resync, 2 * S);
    assert_eq!(kinds(&out), ["LinkChanged", "LinkAdded", "AddrAdded", "LinkDeleted", "Synced"]);
    assert_eq!(t.name(h, 2).as_deref(), Some("eth0"), "tombstone");
    assert_eq!(t.index(h, "eth1"), Some(3));
}

#[test]
fn every_table_is_bounded_and_what_is_turned_away_is_counted() {
    let limits = Limits { namespaces: 3, links_per_ns: 2, links_total: 3, addrs_per_link: 2, tombstones: 2, ..Limits::default() };
    let mut t = Table::new(limits, None, None);
    let h = t.home();
    for i in 1..=3 {
        t.apply(h, &msg(RTM_NEWLINK, &veth(i, format!("v{i}").as_bytes(), &MAC1, &[])), S);
    }
    assert_eq!(t.links(h).len(), 2);
    assert_eq!(t.stats().links_refused, 1);
    for o in 1..=3u8 {
        t.apply(h, &msg(RTM_NEWADDR, &ifaddr4(1, [10, 0, 0, o], 24, 0, b"v1")), S);
    }
    assert_eq!(t.addresses(h, 1).iter().map(|a| a.local.to_string()).collect::<Vec<_>>(), ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(t.stats().addrs_evicted, 1);
    // Total links: home holds 2, a gets 1, then the total cap refuses.
    let a = t.add_ns(0).expect("room");
    t.apply(a, &msg(RTM_NEWLINK, &veth(7, b"a7", &MAC1, &[])), S);
    t.apply(a, &msg(RTM_NEWLINK, &veth(8, b"a8", &MAC1, &[])), S);
    assert_eq!(t.stats().links, 3);
    assert_eq!(t.stats().links_refused, 2);
    // Tombstones: the oldest is evicted.
    for i in [1, 2, 7] {
        let ns = if i == 7 { a } else { h };
        t.apply(ns, &msg(RTM_DELLINK, &veth(i, b"x", &MAC1, &[])), S + u64::from(i));
    }
    assert_eq!(t.stats().tombstones, 2);
    assert_eq!(t.stats().tombs_evicted, 1);
    assert_eq!(t.name(h, 1), None);
    assert_eq!(t.stats().links, 0);
    // Namespaces: full of live ones, a new one is refused...
    let _b = t.add_ns(1).expect("room");
    assert!(t.add_ns(2).is_err());
    assert_eq!(t.stats().ns_refused, 1);
    // ...and a gone one makes room.
    t.ns_gone(a, 5 * S);
    assert!(t.add_ns(2).is_ok());
    assert_eq!(t.stats().ns_evicted, 1);
    assert_eq!(t.stats().namespaces, 3);
}

#[test]
fn labels_are_bounded() {
    let mut t = Table::new(Limits::default(), None, None);
    let a = t.add_ns(1).expect("room");
    t.set_label(a, "\u{e9}".repeat(1000));
    let l = t.info(a).and_then(|i| i.label).expect("label");
    assert!(l.len() <= 256 && l.len() >= 254 && l.chars().all(|c| c == '\u{e9}'), "{}", l.len());
    t.bind(a, 7, None, Some("w".repeat(300)), None);
    assert_eq!(t.info(a).and_then(|i| i.label).map(|l| l.len()), Some(256));
}

#[test]
fn ids_other_namespaces_give_are_translated() {
    let mut t = Table::new(Limits::default(), None, None);
    let a = t.add_ns(4).expect("room");
    let b = t.add_ns(5).expect("room");
    // a calls b 1, and calls home 0; 9 means something home has no id for.
    assert!(t.needs_xlate(a, 1));
    t.set_xlate(a, HashMap::from([(1, 5), (9, -1)]), Some(0));
    assert!(!t.needs_xlate(a, 1) && !t.needs_xlate(a, 0) && !t.needs_xlate(a, 9));
    assert_eq!(t.resolve(a, 1), Some(b));
    assert_eq!(t.resolve(a, 0), Some(t.home()));
    assert_eq!(t.resolve(a, 9), None);
    assert_eq!(t.resolve(t.home(), 5), Some(b));
    t.forget_unresolved();
    assert!(t.needs_xlate(a, 9), "asked again after home gave a new id");
    t.unresolved(a, 9);
    assert!(!t.needs_xlate(a, 9), "not asked again per message");
    assert_eq!(t.resolve(a, 9), None);
    let out = t.apply(a, &msg(RTM_DELNSID, &nsid_msg(1)), S);
    assert_eq!(out[0].1, EventKind::NsidDeleted { nsid: 1, peer: Some(b) });
    assert!(t.needs_xlate(a, 1));
}
