//! Unit tests of the filter: frames built with etherparse from a plain
//! description, expressions compiled, and the verdicts compared with what
//! the description says they must be.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};
use tracer_common::packet::{DIR_EGRESS, DIR_INGRESS, FILTER_MAX_CLAUSES, FILTER_MAX_INSNS, key_flags};

use super::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[derive(Clone, Copy, Debug)]
enum L3 {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
    Arp(Ipv4Addr, Ipv4Addr),
    Other(u16),
}

#[derive(Clone, Copy, Debug)]
enum L4 {
    Udp(u16, u16),
    Tcp(u16, u16),
    Icmp,
    None,
}

/// What a test frame is, independent of how it is encoded.
#[derive(Clone, Copy, Debug)]
struct Spec {
    vlan: Option<u16>,
    l3: L3,
    l4: L4,
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4 literal")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 literal")
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    macro_rules! l4 {
        ($ip:expr, $icmp:ident) => {
            match spec.l4 {
                L4::Udp(s, d) => $ip.udp(s, d).write(&mut out, b"payload"),
                L4::Tcp(s, d) => $ip.tcp(s, d, 1, 1024).write(&mut out, b"payload"),
                L4::Icmp => $ip.$icmp(1, 1).write(&mut out, b"ping"),
                L4::None => panic!("IP frames in these tests carry a transport"),
            }
            .expect("write frame")
        };
    }
    macro_rules! l3 {
        ($step:expr) => {
            match spec.l3 {
                L3::V4(s, d) => l4!($step.ipv4(s.octets(), d.octets(), 64), icmpv4_echo_request),
                L3::V6(s, d) => l4!($step.ipv6(s.octets(), d.octets(), 64), icmpv6_echo_request),
                L3::Arp(s, d) => {
                    let arp = ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation::REQUEST, &MAC_A, &s.octets(), &[0; 6], &d.octets())
                        .expect("ARP packet");
                    $step.arp(arp).write(&mut out).expect("write ARP")
                }
                L3::Other(et) => unreachable!("built by hand: {et:#x}"),
            }
        };
    }
    if let L3::Other(et) = spec.l3 {
        out.extend_from_slice(&MAC_B);
        out.extend_from_slice(&MAC_A);
        if let Some(id) = spec.vlan {
            out.extend_from_slice(&0x8100u16.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&et.to_be_bytes());
        out.extend_from_slice(&[0u8; 46]);
        return out;
    }
    match spec.vlan {
        Some(id) => l3!(eth.single_vlan(VlanId::try_new(id).expect("vlan id"))),
        None => l3!(eth),
    }
    out
}

/// Frames of every kind the tests use.
fn specs() -> Vec<Spec> {
    let s = |vlan, l3, l4| Spec { vlan, l3, l4 };
    vec![
        s(None, L3::V4(v4("10.0.0.1"), v4("10.0.0.2")), L4::Udp(5353, 53)),
        s(None, L3::V4(v4("10.0.0.2"), v4("10.0.1.9")), L4::Tcp(80, 40000)),
        s(None, L3::V4(v4("10.0.0.1"), v4("10.0.0.3")), L4::Icmp),
        s(None, L3::V4(v4("192.168.7.7"), v4("10.0.0.1")), L4::Tcp(22, 1023)),
        s(None, L3::V6(v6("fd00::1"), v6("fd00::2")), L4::Udp(1000, 53)),
        s(None, L3::V6(v6("fd00::2"), v6("2001:db8::5")), L4::Tcp(443, 5000)),
        s(None, L3::V6(v6("fd00::1"), v6("fd00::2")), L4::Icmp),
        s(None, L3::Arp(v4("10.0.0.1"), v4("10.0.0.2")), L4::None),
        s(Some(100), L3::V4(v4("10.0.0.5"), v4("10.0.0.1")), L4::Udp(53, 1234)),
        s(Some(200), L3::V4(v4("10.0.1.1"), v4("10.0.0.2")), L4::Tcp(22, 80)),
        s(Some(100), L3::V6(v6("fd00::9"), v6("fd00::1")), L4::Tcp(8080, 80)),
        s(None, L3::Other(0x88cc), L4::None),
        s(Some(300), L3::Other(0x88cc), L4::None),
    ]
}

// ---- the reference semantics, written on the description ----

fn v4_addrs(s: &Spec, with_arp: bool) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match s.l3 {
        L3::V4(a, b) => Some((a, b)),
        L3::Arp(a, b) if with_arp => Some((a, b)),
        _ => None,
    }
}

fn ports(s: &Spec) -> Option<(u16, u16)> {
    match (s.l3, s.l4) {
        (L3::V4(..) | L3::V6(..), L4::Udp(a, b) | L4::Tcp(a, b)) => Some((a, b)),
        _ => None,
    }
}

fn in_net4(a: Ipv4Addr, net: &str, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(v4(net)) & mask
}

/// Primitives with their meaning on a description and a direction.
type Meaning = Box<dyn Fn(&Spec, u8) -> bool>;

fn primitives() -> Vec<(&'static str, Meaning)> {
    vec![
        ("tcp", Box::new(|s, _| matches!((s.l3, s.l4), (L3::V4(..) | L3::V6(..), L4::Tcp(..))))),
        ("udp", Box::new(|s, _| matches!((s.l3, s.l4), (L3::V4(..) | L3::V6(..), L4::Udp(..))))),
        ("icmp", Box::new(|s, _| matches!((s.l3, s.l4), (L3::V4(..), L4::Icmp)))),
        ("icmp6", Box::new(|s, _| matches!((s.l3, s.l4), (L3::V6(..), L4::Icmp)))),
        ("arp", Box::new(|s, _| matches!(s.l3, L3::Arp(..)))),
        ("ip", Box::new(|s, _| matches!(s.l3, L3::V4(..)))),
        ("ip6", Box::new(|s, _| matches!(s.l3, L3::V6(..)))),
        ("vlan", Box::new(|s, _| s.vlan.is_some())),
        ("vlan 100", Box::new(|s, _| s.vlan == Some(100))),
        ("host 10.0.0.2", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(a, b)| a == v4("10.0.0.2") || b == v4("10.0.0.2"))),),
        ("ip host 10.0.0.2", Box::new(|s, _| v4_addrs(s, false).is_some_and(|(a, b)| a == v4("10.0.0.2") || b == v4("10.0.0.2")))),
        ("src host 10.0.0.1", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(a, _)| a == v4("10.0.0.1")))),
        ("dst host 10.0.0.2", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(_, b)| b == v4("10.0.0.2")))),
        ("net 10.0.0.0/24", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(a, b)| in_net4(a, "10.0.0.0", 24) || in_net4(b, "10.0.0.0", 24)))),
        ("src net 10.0.1.0/24", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(a, _)| in_net4(a, "10.0.1.0", 24)))),
        ("src and dst net 10", Box::new(|s, _| v4_addrs(s, true).is_some_and(|(a, b)| in_net4(a, "10.0.0.0", 8) && in_net4(b, "10.0.0.0", 8)))),
        ("host fd00::2", Box::new(|s, _| matches!(s.l3, L3::V6(a, b) if a == v6("fd00::2") || b == v6("fd00::2")))),
        ("dst net 2001:db8::/32", Box::new(|s, _| matches!(s.l3, L3::V6(_, b) if b.segments()[..2] == [0x2001, 0xdb8]))),
        ("port 53", Box::new(|s, _| ports(s).is_some_and(|(a, b)| a == 53 || b == 53))),
        ("src port 80", Box::new(|s, _| ports(s).is_some_and(|(a, _)| a == 80))),
        ("dst port domain", Box::new(|s, _| ports(s).is_some_and(|(_, b)| b == 53))),
        ("portrange 1-1024", Box::new(|s, _| ports(s).is_some_and(|(a, b)| (1..=1024).contains(&a) || (1..=1024).contains(&b)))),
        ("tcp port 80", Box::new(|s, _| matches!(s.l4, L4::Tcp(..)) && ports(s).is_some_and(|(a, b)| a == 80 || b == 80))),
        ("udp dst port 53", Box::new(|s, _| matches!(s.l4, L4::Udp(..)) && ports(s).is_some_and(|(_, b)| b == 53))),
        ("ip proto 17", Box::new(|s, _| matches!((s.l3, s.l4), (L3::V4(..), L4::Udp(..))))),
        ("inbound", Box::new(|_, d| d == DIR_INGRESS)),
        ("outbound", Box::new(|_, d| d == DIR_EGRESS)),
    ]
}

/// The frames and directions every expression is tried on.
fn cases() -> Vec<(Spec, Vec<u8>, u8)> {
    specs().into_iter().flat_map(|s| {
        let f = build(&s);
        [(s, f.clone(), DIR_INGRESS), (s, f, DIR_EGRESS)]
    }).collect()
}

fn ok(expr: &str) -> FilterProgram {
    compile(expr).unwrap_or_else(|e| panic!("{expr:?} does not compile: {e}"))
}

#[test]
fn each_primitive_matches_what_it_names() {
    let cases = cases();
    for (expr, want) in primitives() {
        let prog = ok(expr);
        let mut hits = 0;
        for (spec, frame, dir) in &cases {
            let got = matches(&prog, frame, *dir);
            assert_eq!(got, want(spec, *dir), "{expr:?} on {spec:?} {dir}");
            hits += got as usize;
        }
        // Every primitive must select some frames and reject others, or the table proves nothing.
        assert!(hits > 0 && hits < cases.len(), "{expr:?} matched {hits} of {}", cases.len());
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random expression as text and its reference verdict function.
enum Tree {
    Prim(usize),
    Not(Box<Tree>),
    And(Box<Tree>, Box<Tree>),
    Or(Box<Tree>, Box<Tree>),
}

fn random_tree(rng: &mut Rng, depth: u32, n_prims: usize) -> Tree {
    if depth == 0 || rng.below(3) == 0 {
        return Tree::Prim(rng.below(n_prims));
    }
    match rng.below(3) {
        0 => Tree::Not(Box::new(random_tree(rng, depth - 1, n_prims))),
        1 => Tree::And(Box::new(random_tree(rng, depth - 1, n_prims)), Box::new(random_tree(rng, depth - 1, n_prims))),
        _ => Tree::Or(Box::new(random_tree(rng, depth - 1, n_prims)), Box::new(random_tree(rng, depth - 1, n_prims))),
    }
}

/// Fully parenthesised text, mixing the spellings of each operator.
fn text(t: &Tree, prims: &[&str], rng: &mut Rng) -> String {
    match t {
        Tree::Prim(i) => prims[*i].to_string(),
        Tree::Not(x) => format!("{} ({})", if rng.below(2) == 0 { "not" } else { "!" }, text(x, prims, rng)),
        Tree::And(a, b) => format!("({}) {} ({})", text(a, prims, rng), if rng.below(2) == 0 { "and" } else { "&&" }, text(b, prims, rng)),
        Tree::Or(a, b) => format!("({}) {} ({})", text(a, prims, rng), if rng.below(2) == 0 { "or" } else { "||" }, text(b, prims, rng)),
    }
}

fn eval(t: &Tree, f: &[Meaning], s: &Spec, d: u8) -> bool {
    match t {
        Tree::Prim(i) => f[*i](s, d),
        Tree::Not(x) => !eval(x, f, s, d),
        Tree::And(a, b) => eval(a, f, s, d) && eval(b, f, s, d),
        Tree::Or(a, b) => eval(a, f, s, d) || eval(b, f, s, d),
    }
}

#[test]
fn random_expressions_agree_with_the_reference() {
    let prims = primitives();
    let names: Vec<&str> = prims.iter().map(|(n, _)| *n).collect();
    let funcs: Vec<_> = prims.into_iter().map(|(_, f)| f).collect();
    let cases = cases();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut compiled, mut refused) = (0, 0);
    for _ in 0..3000 {
        let tree = random_tree(&mut rng, 4, names.len());
        let expr = text(&tree, &names, &mut rng);
        match compile(&expr) {
            Ok(prog) => {
                compiled += 1;
                for (spec, frame, dir) in &cases {
                    assert_eq!(matches(&prog, frame, *dir), eval(&tree, &funcs, spec, *dir), "{expr:?} on {spec:?} dir {dir}; {prog:?}");
                }
            }
            // Only the kernel's size limits may refuse a well-formed expression.
            Err(FilterError::TooComplex(_)) => refused += 1,
            Err(e) => panic!("{expr:?}: {e}"),
        }
    }
    assert!(compiled > 2000, "only {compiled} compiled, {refused} too complex");
}

#[test]
fn and_or_are_equal_and_left_associative_as_in_tcpdump() {
    let cases = cases();
    let prims = primitives();
    let names: Vec<&str> = prims.iter().map(|(n, _)| *n).collect();
    let funcs: Vec<_> = prims.into_iter().map(|(_, f)| f).collect();
    let mut rng = Rng(42);
    for _ in 0..500 {
        // p0 op p1 op p2 ... without parentheses, some primitives negated.
        let n = 2 + rng.below(4);
        let mut expr = String::new();
        let mut items = Vec::new();
        for i in 0..n {
            let p = rng.below(names.len());
            let neg = rng.below(4) == 0;
            let and = rng.below(2) == 0;
            if i > 0 {
                expr.push_str(if and { " and " } else { " or " });
            }
            if neg {
                expr.push_str("not ");
            }
            expr.push_str(names[p]);
            items.push((p, neg, and));
        }
        let Ok(prog) = compile(&expr) else { continue };
        for (spec, frame, dir) in &cases {
            let mut want = false;
            for (i, &(p, neg, and)) in items.iter().enumerate() {
                let v = funcs[p](spec, *dir) != neg;
                want = if i == 0 { v } else if and { want && v } else { want || v };
            }
            assert_eq!(matches(&prog, frame, *dir), want, "{expr:?} on {spec:?}");
        }
    }
    // The classic case, spelled out: tcp port 80 is TCP, so it passes `tcp or udp and port 53`
    // only under C-like precedence; tcpdump's says (tcp or udp) and port 53.
    let http = build(&Spec { vlan: None, l3: L3::V4(v4("10.0.0.1"), v4("10.0.0.2")), l4: L4::Tcp(40000, 80) });
    assert!(!matches(&ok("tcp or udp and port 53"), &http, DIR_INGRESS));
    assert!(matches(&ok("tcp or (udp and port 53)"), &http, DIR_INGRESS));
    assert!(!matches(&ok("not tcp and udp"), &http, DIR_INGRESS), "not binds tighter than and");
    assert!(matches(&ok("not (tcp and udp)"), &http, DIR_INGRESS));
}

#[test]
fn negation() {
    let cases = cases();
    let not_arp = ok("not arp");
    let bang = ok("!arp");
    let double = ok("not ! arp");
    for (spec, frame, dir) in &cases {
        let is_arp = matches!(spec.l3, L3::Arp(..));
        assert_eq!(matches(&not_arp, frame, *dir), !is_arp, "{spec:?}");
        assert_eq!(matches(&bang, frame, *dir), !is_arp, "{spec:?}");
        assert_eq!(matches(&double, frame, *dir), is_arp, "{spec:?}");
    }
    // `not port 53` keeps what has no ports at all, as tcpdump does.
    let p = ok("not port 53");
    let arp = build(&specs()[7]);
    assert!(matches(&p, &arp, DIR_INGRESS));
    // De Morgan: one clause of two forbidden tests.
    let p = ok("not (host 10.0.0.1 or host 10.0.0.2)");
    assert_eq!(p.clauses().len(), 1);
    assert_eq!(p.clauses()[0].forbidden.count_ones(), 2);
    assert_eq!(p.clauses()[0].required, 0);
}

#[test]
fn implied_qualifiers_repeat_the_previous_ones() {
    let cases = cases();
    for (short, long) in [
        ("port 80 or 53", "port 80 or port 53"),
        ("tcp dst port 80 or 22", "tcp dst port 80 or tcp dst port 22"),
        ("host 10.0.0.1 and not 10.0.0.2", "host 10.0.0.1 and not host 10.0.0.2"),
        ("src net 10.0.0.0/24 or 192.168.0.0/16", "src net 10.0.0.0/24 or src net 192.168.0.0/16"),
        ("10.0.0.2", "host 10.0.0.2"),
        ("src 10.0.0.1", "src host 10.0.0.1"),
        ("ip 10.0.0.2", "ip host 10.0.0.2"),
        ("src or dst port 53", "port 53"),
        ("ip proto 6 or 17", "ip proto 6 or ip proto 17"),
        ("ip proto \\tcp", "ip proto 6"),
        ("net 10.0.0.0 mask 255.255.255.0", "net 10.0.0.0/24"),
        ("net 10.0.0", "net 10.0.0.0/24"),
        ("portrange 53-22", "portrange 22-53"),
        ("port http", "port 80"),
        ("TCP PORT 80", "tcp port 80"),
        ("ingress", "inbound"),
        ("egress", "outbound"),
    ] {
        let (a, b) = (ok(short), ok(long));
        for (spec, frame, dir) in &cases {
            assert_eq!(matches(&a, frame, *dir), matches(&b, frame, *dir), "{short:?} vs {long:?} on {spec:?}");
        }
        assert_eq!(a.predicates(), b.predicates(), "{short:?} vs {long:?}");
    }
}

#[test]
fn vlan_tags_in_the_frame_and_offloaded() {
    let tagged = build(&Spec { vlan: Some(42), l3: L3::V4(v4("10.0.0.1"), v4("10.0.0.2")), l4: L4::Udp(1, 53) });
    let plain = build(&Spec { vlan: None, l3: L3::V4(v4("10.0.0.1"), v4("10.0.0.2")), l4: L4::Udp(1, 53) });
    // Primitives look through the tag.
    for e in ["vlan", "vlan 42", "udp port 53 and host 10.0.0.2", "vlan and ip", "not vlan 41"] {
        assert!(matches(&ok(e), &tagged, DIR_INGRESS), "{e}");
    }
    assert!(!matches(&ok("vlan"), &plain, DIR_INGRESS));
    assert!(!matches(&ok("vlan 41"), &tagged, DIR_INGRESS));
    // A tag the kernel took out of the frame counts as a tag.
    let p = ok("vlan 42 and udp");
    assert!(!p.matches_key(&frame_key(&plain, DIR_INGRESS, None)));
    assert!(p.matches_key(&frame_key(&plain, DIR_INGRESS, Some(0x2000 | 42))), "PCP bits must be ignored");
    // 802.1ad outer tag.
    let mut ad = tagged.clone();
    ad[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    assert!(matches(&ok("vlan 42 and udp port 53"), &ad, DIR_EGRESS));
    // Only one tag is looked through: QinQ's inner frame is not IP to the filter.
    let mut qinq = ad[..16].to_vec();
    qinq.extend_from_slice(&0x8100u16.to_be_bytes());
    qinq.extend_from_slice(&7u16.to_be_bytes());
    qinq.extend_from_slice(&tagged[16..]);
    let k = frame_key(&qinq, DIR_INGRESS, None);
    assert_eq!(k.ethertype, 0x8100u16.to_be_bytes());
    assert_eq!(k.flags, key_flags::VLAN);
}

#[test]
fn ipv6_addresses_nets_and_next_header() {
    let f = build(&Spec { vlan: None, l3: L3::V6(v6("fd00:1::10"), v6("2001:db8:0:1::20")), l4: L4::Tcp(3000, 443) });
    for e in [
        "ip6",
        "host fd00:1::10",
        "src host fd00:1::10",
        "dst net 2001:db8::/32",
        "net 2001:db8:0:1::/64",
        "ip6 net fd00::/8",
        "tcp port 443",
        "ip6 proto 6",
        "proto tcp",
        "not ip",
        "not host 10.0.0.1",
    ] {
        assert!(matches(&ok(e), &f, DIR_INGRESS), "{e}");
    }
    for e in ["ip", "dst host fd00:1::10", "net 2001:db8:0:2::/64", "ip proto 6", "udp", "icmp6", "host 0.0.0.0", "net 0.0.0.0/0"] {
        assert!(!matches(&ok(e), &f, DIR_INGRESS), "{e}");
    }
    // `net ::/0` is every IPv6 packet and nothing else.
    let all6 = ok("net ::/0");
    for (spec, frame, dir) in cases() {
        assert_eq!(matches(&all6, &frame, dir), matches!(spec.l3, L3::V6(..)), "{spec:?}");
    }
    // A hop-by-hop header before TCP: the next header is 0, so no `tcp`, no ports.
    let mut hbh = f[..14 + 40].to_vec();
    hbh[14 + 6] = 0;
    hbh.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    hbh.extend_from_slice(&f[14 + 40..]);
    assert!(!matches(&ok("tcp"), &hbh, DIR_INGRESS));
    assert!(!matches(&ok("port 443"), &hbh, DIR_INGRESS));
    assert!(matches(&ok("ip6 proto 0 and host fd00:1::10"), &hbh, DIR_INGRESS));
}

#[test]
fn ipv4_fragments_options_and_short_frames() {
    let f = build(&Spec { vlan: None, l3: L3::V4(v4("10.0.0.1"), v4("10.0.0.2")), l4: L4::Udp(5000, 53) });
    let port = ok("udp port 53");
    assert!(matches(&port, &f, DIR_INGRESS));
    // A later fragment has no ports, but is still UDP from that host.
    let mut frag = f.clone();
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0x10;
    assert!(!matches(&port, &frag, DIR_INGRESS));
    assert!(matches(&ok("udp and src host 10.0.0.1"), &frag, DIR_INGRESS));
    assert!(matches(&ok("not port 53"), &frag, DIR_INGRESS));
    // The first fragment (more-fragments set, offset 0) keeps its ports.
    let mut first = f.clone();
    first[14 + 6] = 0x20;
    assert!(matches(&port, &first, DIR_INGRESS));
    // Options: the ports come after IHL words.
    let mut opts = f[..14 + 20].to_vec();
    opts[14] = 0x46;
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&f[14 + 20..]);
    assert!(matches(&port, &opts, DIR_INGRESS));
    // Truncated in the options: not IPv4 to the filter, still EtherType IPv4.
    let cut = &opts[..14 + 22];
    assert!(!matches(&ok("host 10.0.0.1"), cut, DIR_INGRESS));
    assert!(matches(&ok("ip"), cut, DIR_INGRESS));
    // Truncated in the transport header: addresses yes, ports no.
    let cut = &f[..14 + 20 + 3];
    assert!(matches(&ok("host 10.0.0.2 and udp"), cut, DIR_INGRESS));
    assert!(!matches(&ok("port 53"), cut, DIR_INGRESS));
    // A wrong version nibble is not IPv4.
    let mut bad = f.clone();
    bad[14] = 0x65;
    assert!(!matches(&ok("udp"), &bad, DIR_INGRESS));
    // Nothing matches on a frame too short for an EtherType, except negations.
    for short in [&[][..], &f[..5], &f[..13]] {
        assert!(!matches(&ok("ip or ip6 or arp or vlan or port 53"), short, DIR_INGRESS));
        assert!(matches(&ok("not ip"), short, DIR_INGRESS));
        assert!(matches(&ok("inbound"), short, DIR_INGRESS));
    }
}

#[test]
fn arp_addresses_count_for_ipv4_hosts() {
    let arp = build(&Spec { vlan: None, l3: L3::Arp(v4("10.9.0.1"), v4("10.9.0.2")), l4: L4::None });
    for e in ["arp", "host 10.9.0.1", "arp src host 10.9.0.1", "dst host 10.9.0.2", "net 10.9.0.0/16", "arp net 10.9.0.0/24"] {
        assert!(matches(&ok(e), &arp, DIR_INGRESS), "{e}");
    }
    for e in ["ip host 10.9.0.1", "ip", "src host 10.9.0.2", "port 0", "tcp"] {
        assert!(!matches(&ok(e), &arp, DIR_INGRESS), "{e}");
    }
    // Not Ethernet/IPv4 ARP: no addresses.
    let mut odd = arp.clone();
    odd[14 + 5] = 16;
    assert!(!matches(&ok("host 10.9.0.1"), &odd, DIR_INGRESS));
    assert!(matches(&ok("arp"), &odd, DIR_INGRESS));
}

#[test]
fn empty_expression_matches_everything() {
    for e in ["", "   ", "\t\n"] {
        let p = ok(e);
        assert!(p.is_match_all());
        assert_eq!(p.table().enabled, 0);
        for (_, frame, dir) in cases() {
            assert!(matches(&p, &frame, dir));
        }
        assert!(matches(&p, &[], DIR_INGRESS));
    }
    assert!(!ok("tcp").is_match_all());
}

#[test]
fn compiled_form_is_small_and_shared() {
    let p = ok("tcp port 80 and host 10.0.0.2");
    assert_eq!(p.predicates().len(), 3, "{p:?}");
    assert_eq!(p.clauses().len(), 1);
    assert_eq!(p.clauses()[0].required, 0b111);
    // The same test written twice is one predicate.
    let p = ok("(tcp and port 80) or (tcp and port 443)");
    assert_eq!(p.predicates().len(), 3);
    assert_eq!(p.clauses().len(), 2);
    // Absorption: `tcp or (tcp and port 80)` is `tcp`.
    let p = ok("tcp or (tcp and port 80)");
    assert_eq!(p.predicates().len(), 1);
    assert_eq!(p.clauses().len(), 1);
    // A contradiction matches nothing, and says so with no clause.
    let p = ok("tcp and not tcp");
    assert_eq!(p.clauses().len(), 0);
    assert!(!p.is_match_all());
    for (_, frame, dir) in cases() {
        assert!(!matches(&p, &frame, dir));
    }
    // A tautology matches everything.
    let p = ok("tcp or not tcp");
    assert!(cases().iter().all(|(_, f, d)| matches(&p, f, *d)));
    // Both qualifiers: two predicates in one clause.
    let p = ok("src and dst net 10.0.0.0/8");
    assert_eq!((p.predicates().len(), p.clauses().len()), (2, 1));
    assert_eq!(p.to_string(), "\"src and dst net 10.0.0.0/8\" (2 tests, 1 clauses)");
}

fn err(expr: &str) -> FilterError {
    match compile(expr) {
        Ok(p) => panic!("{expr:?} compiled: {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn unsupported_parts_are_named() {
    for (expr, part) in [
        ("greater 100", "greater 100"),
        ("tcp and less 64", "less 64"),
        ("ether host 00:11:22:33:44:55", "ether host 00:11:22:33:44:55"),
        ("tcp[13] & 2 != 0", "tcp[13] & 2 != 0"),
        ("udp and (len > 100)", "len > 100"),
        ("ip[0] == 0x45", "ip[0] == 0x45"),
        ("host example.com", "host example.com"),
        ("gateway 10.0.0.1", "gateway 10.0.0.1"),
        ("broadcast or multicast", "broadcast"),
        ("tcp host 10.0.0.1", "tcp host 10.0.0.1"),
        ("udp net 10.0.0.0/8", "udp net 10.0.0.0/8"),
        ("icmp port 3", "icmp port 3"),
        ("arp port 53", "arp port 53"),
        ("tcp proto 6", "tcp proto 6"),
        ("mpls 100 and tcp", "mpls 100"),
        ("frobnicate", "frobnicate"),
        ("tcp and \u{00e9}t\u{00e9}", "\u{00e9}t\u{00e9}"),
    ] {
        let e = err(expr);
        let msg = e.to_string();
        assert!(matches!(e, FilterError::Unsupported { .. }), "{expr:?}: {msg}");
        assert!(msg.starts_with(&format!("unsupported filter: \"{part}\"")), "{expr:?}: {msg}");
        assert!(msg.contains("(supported: tcp, udp"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    }
    let msg = err("tcp[13] & 2 != 0").to_string();
    assert!(msg.contains("byte offsets"), "{msg}");
    let msg = err("host example.com").to_string();
    assert!(msg.contains("host names are not resolved"), "{msg}");
}

#[test]
fn malformed_expressions_are_syntax_errors() {
    for (expr, needle) in [
        ("tcp and", "ends where a primitive"),
        ("and tcp", "\"and\" where a primitive"),
        ("(tcp", "\"(\" without \")\""),
        ("tcp)", "\")\" without \"(\""),
        ("()", "\")\" where a primitive"),
        ("tcp udp", "expected \"and\" or \"or\" before \"udp\""),
        ("port", "expected a value after \"port\""),
        ("port and tcp", "expected a value after \"port\""),
        ("port 99999", "not a port number"),
        ("port -1", "not a port number"),
        ("portrange 10", "expected a range"),
        ("vlan 5000", "0-4095"),
        ("net 10.0.0.1/8", "non-network bits"),
        ("net 10.0.0.0/33", "exceeds 32"),
        ("net fd00::/129", "exceeds 128"),
        ("net 10.0.0.0 mask 255.0.255.0", "contiguous"),
        ("net 300.1", "not an IPv4 network"),
        ("host 10.0.0.0/8", "use net"),
        ("ip6 host 10.0.0.1", "cannot be ip6"),
        ("ip host fd00::1", "cannot be ip"),
        ("arp host fd00::1", "cannot be arp"),
        ("80", "needs a qualifier"),
        ("src port", "expected a value"),
        ("ip proto 256", "not a protocol"),
        ("src proto 6", "no src/dst"),
        ("not", "ends where a primitive"),
        ("!", "ends where a primitive"),
        ("tcp or or udp", "\"or\" where a primitive"),
        ("mask 255.0.0.0", "must follow"),
    ] {
        let e = err(expr);
        let msg = e.to_string();
        assert!(matches!(e, FilterError::Syntax(_)), "{expr:?}: {msg}");
        assert!(msg.contains(needle), "{expr:?}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }
}

#[test]
fn limits_are_enforced_with_a_clear_error() {
    // One distinct test too many.
    let hosts: Vec<String> = (1..=FILTER_MAX_INSNS + 1).map(|i| format!("host 10.0.0.{i}")).collect();
    let e = err(&hosts.join(" or "));
    assert!(matches!(e, FilterError::TooComplex(_)), "{e}");
    assert!(e.to_string().contains(&format!("at most {FILTER_MAX_INSNS}")), "{e}");
    // Exactly at the limit is fine.
    assert!(compile(&hosts[..FILTER_MAX_INSNS].join(" or ")).is_ok());
    // Too many clauses: (a or b) and (c or d) and ... is 2^n terms.
    let pairs: Vec<String> = (0..6).map(|i| format!("(port {} or port {})", 2 * i + 1, 2 * i + 2)).collect();
    let e = err(&pairs.join(" and "));
    assert!(e.to_string().contains(&format!("at most {FILTER_MAX_CLAUSES}")), "{e}");
    // 2^5 = 32 terms fit.
    assert_eq!(ok(&pairs[..5].join(" and ")).clauses().len(), 32);
    // Far past the working limit: refused early, not expanded.
    let many: Vec<String> = (0..11).map(|i| format!("(port {} or port {})", 2 * i + 1, 2 * i + 2)).collect();
    assert!(matches!(err(&many.join(" and ")), FilterError::TooComplex(_)));
    // Nesting and length.
    let deep = format!("{}tcp{}", "(".repeat(40), ")".repeat(40));
    assert!(matches!(err(&deep), FilterError::TooComplex(_)));
    assert!(compile(&format!("{}tcp{}", "(".repeat(30), ")".repeat(30))).is_ok());
    let long = "tcp or ".repeat(1000) + "udp";
    assert!(matches!(err(&long), FilterError::TooComplex(_)));
    // A long but simple expression of repeated tests is fine.
    assert_eq!(ok("not not tcp and ".repeat(100).trim_end_matches(" and ")).predicates().len(), 1);
}

/// Random token soup and random frames: every call returns, none panics.
#[test]
fn garbage_never_panics() {
    const VOCAB: &[&str] = &[
        "tcp", "udp", "icmp", "icmp6", "arp", "ip", "ip6", "vlan", "host", "net", "port", "portrange", "src", "dst",
        "and", "or", "not", "&&", "||", "!", "(", ")", "proto", "mask", "inbound", "outbound", "10.0.0.1",
        "10.0.0.0/8", "fd00::1", "::/0", "53", "1-100", "65536", "4095", "greater", "ether", "[", "]", "&", "|",
        "=", "tcp[13]", "\\tcp", "", " ", "\u{00e9}", "0x45", "255.255.0.0", "-", "/", ":", "10.", ".", "999",
    ];
    let frames: Vec<Vec<u8>> = cases().into_iter().map(|(_, f, _)| f).collect();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut outcomes = [0usize; 4];
    for _ in 0..20000 {
        let n = rng.below(12);
        let sep = if rng.below(4) == 0 { "" } else { " " };
        let expr: Vec<&str> = (0..n).map(|_| VOCAB[rng.below(VOCAB.len())]).collect();
        let expr = expr.join(sep);
        match compile(&expr) {
            Ok(p) => {
                outcomes[0] += 1;
                for f in &frames {
                    let cut = rng.below(f.len() + 1);
                    matches(&p, &f[..cut], DIR_INGRESS);
                }
            }
            Err(FilterError::Unsupported { .. }) => outcomes[1] += 1,
            Err(FilterError::Syntax(_)) => outcomes[2] += 1,
            Err(_) => outcomes[3] += 1,
        }
    }
    assert!(outcomes[0] > 100 && outcomes[1] > 100 && outcomes[2] > 100, "{outcomes:?}");
    // Random bytes as expressions and as frames.
    let p = ok("tcp port 80 or udp or vlan 7 or arp host 10.0.0.1 or ip6 net fd00::/8");
    for _ in 0..20000 {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = compile(&String::from_utf8_lossy(&bytes));
        matches(&p, &bytes, DIR_EGRESS);
        // Random frames that at least look like IPv4, IPv6 or ARP get deeper.
        let mut framed = bytes.clone();
        if framed.len() > 14 {
            let et: [u16; 5] = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8];
            framed[12..14].copy_from_slice(&et[rng.below(5)].to_be_bytes());
            if framed.len() > 15 {
                framed[14] = [0x45, 0x60, 0x00][rng.below(3)];
            }
            matches(&p, &framed, DIR_INGRESS);
        }
    }
}

/// Keys userspace builds must be the ones the kernel builds: pin the layout
/// of a few so a change to either parser shows up here.
#[test]
fn keys_have_the_kernel_layout() {
    let f = build(&Spec { vlan: Some(5), l3: L3::V4(v4("1.2.3.4"), v4("5.6.7.8")), l4: L4::Tcp(0x1234, 0x5678) });
    let k = frame_key(&f, DIR_EGRESS, None);
    assert_eq!(k.flags, key_flags::IP4 | key_flags::PORTS | key_flags::VLAN);
    assert_eq!(k.direction, DIR_EGRESS);
    assert_eq!(k.ethertype, [0x08, 0x00]);
    assert_eq!(k.vlan_id, [0, 5]);
    assert_eq!(k.proto, 6);
    assert_eq!((k.sport, k.dport), ([0x12, 0x34], [0x56, 0x78]));
    assert_eq!(&k.src[..4], &[1, 2, 3, 4]);
    assert_eq!(&k.dst[..], &[5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let w = k.words();
    assert_eq!(w[2].to_ne_bytes()[..4], [1, 2, 3, 4]);
}

#[test]
fn direction_option_wraps_the_expression() {
    let cases = cases();
    let p = compile_with_direction("udp or tcp", Some(DIR_INGRESS)).expect("compiles");
    let q = ok("(udp or tcp) and inbound");
    for (spec, frame, dir) in &cases {
        assert_eq!(matches(&p, frame, *dir), matches(&q, frame, *dir), "{spec:?}");
    }
    assert!(p.expression().contains("only inbound"));
    let out = compile_with_direction("", Some(DIR_EGRESS)).expect("compiles");
    assert!(cases.iter().all(|(_, f, d)| matches(&out, f, *d) == (*d == DIR_EGRESS)));
    assert!(compile_with_direction("", None).expect("compiles").is_match_all());
    // The user's own errors still name their part.
    let e = compile_with_direction("greater 5", Some(DIR_INGRESS)).expect_err("unsupported");
    assert!(e.to_string().starts_with("unsupported filter: \"greater 5\""), "{e}");
}

