//! The fuzz targets' inputs on stable Rust: the committed seeds and
//! regressions replayed, then a few thousand seeded mutations of them per
//! target, each within a time budget, so `cargo xtask test` catches a
//! decoder that panics again without nightly or libFuzzer. The seeds are
//! generated here (`cargo test -p tracer --lib write_seed_files -- --ignored`
//! rewrites `fuzz/seeds`); regressions are inputs that crashed a target once.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use netlink_packet_core::Emitable;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
    tc::{TcAttribute, TcMessage},
};

use super::*;
use crate::sys::nlmsg::build::attr;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The committed inputs of `target`: seeds, then regressions.
fn committed(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else { continue };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for p in files {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, b));
        }
    }
    out
}

fn entry(target: &str) -> Entry {
    TARGETS.iter().find(|(n, _)| *n == target).map(|(_, f)| *f).unwrap_or_else(|| panic!("no target {target}"))
}

#[test]
fn every_target_is_a_fuzz_binary_with_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml lacks [[bin]] {name}");
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).expect("target source");
        assert!(src.contains(&format!("tracer::fuzzing::{name}(data)")), "fuzz_targets/{name}.rs calls its entry point");
        let seeds = std::fs::read_dir(fuzz_dir().join("seeds").join(name)).map(|d| d.count()).unwrap_or(0);
        assert!(seeds >= 5, "fuzz/seeds/{name} has {seeds} inputs");
    }
}

#[test]
fn committed_inputs_replay_without_a_panic() {
    for (name, f) in TARGETS {
        let inputs = committed(name);
        assert!(!inputs.is_empty(), "{name}: no committed inputs");
        for (path, bytes) in &inputs {
            // A panic fails the test naming the file (the harness prints it).
            eprintln!("replaying {}", path.display());
            f(bytes);
        }
    }
}

/// The regressions: inputs that crashed a target (or the tracer) once.
#[test]
fn regressions_are_kept_and_decode_to_errors() {
    let route = committed("netlink_route");
    let bareudp = route.iter().find(|(p, _)| p.ends_with("bareudp-srcport-min")).expect("the bareudp regression");
    let (ty, body) = bareudp.1.split_at(2);
    let e = netlink::route::decode(u16::from_ne_bytes([ty[0], ty[1]]), body).expect_err("an error, not a panic");
    assert!(e.contains("bareudp"), "{e}");
    // Through the whole send path: one malformed event with its bytes.
    let (_, send) = committed("netlink_send").into_iter().find(|(p, _)| p.ends_with("bareudp-srcport-min")).expect("send regression");
    contain::strict();
    let evs = netlink::send_events(&send_record(decode::NETLINK_ROUTE, send.len() - 2, &send[2..]), &clock(), &GenlFamilies::default());
    assert_eq!(evs.len(), 1);
    let j = evs[0].json();
    assert_eq!(j["malformed"], true);
    assert_eq!(j["raw"], decode::tests::BAREUDP_PANIC);
    assert!(j["decode_error"].as_str().is_some_and(|e| e.contains("bareudp")), "{j}");
    let text = evs[0].text();
    assert!(text.contains("RTM_NEWLINK malformed: ") && text.contains(" raw 3c000000"), "{text}");

    // An answer whose error is i32::MIN (no negation): found by the stable run.
    let (_, acks) = committed("netlink_acks").into_iter().find(|(p, _)| p.ends_with("errno-i32-min")).expect("acks regression");
    assert_eq!(decode::parse_acks(&acks).first().map(|a| a.errno), Some(i32::MAX));
}

/// A small xorshift generator: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING_U16: [u16; 10] = [0, 1, 2, 3, 4, 5, 8, 0x7fff, 0x8000, 0xffff];
const MAX_INPUT: usize = 20 * 1024;

/// libFuzzer's kinds of mutation, simply: bit flips, interesting values
/// (lengths of 0..8 and the extremes, where decoders go wrong), inserted
/// and deleted ranges, truncation, duplicated chunks, and splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[(PathBuf, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = [0, 1, 0x7f, 0x80, 0xff, rng.next() as u8][rng.below(6)];
            }
            2 if len > 1 => {
                let i = rng.below(len - 1);
                let v = if rng.below(3) == 0 { (len - i) as u16 } else { INTERESTING_U16[rng.below(INTERESTING_U16.len())] };
                input[i..i + 2].copy_from_slice(&v.to_ne_bytes());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                input.drain(i..i + n);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(64.min(len - i));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            _ if !others.is_empty() => {
                let other = &others[rng.below(others.len())].1;
                let keep = rng.below(input.len() + 1);
                input.truncate(keep);
                input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
            _ => {}
        }
        input.truncate(MAX_INPUT);
    }
}

/// Runs `n` seeded mutations of `target`'s committed inputs through it,
/// within `budget` (a debug build on a busy machine is slow): returns how
/// many ran.
fn mutations(target: &str, n: usize, budget: Duration) -> usize {
    let f = entry(target);
    let seeds = committed(target);
    assert!(!seeds.is_empty(), "{target}: no committed inputs");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64 ^ (target.as_bytes()[0] as u64) << 32);
    let start = Instant::now();
    let mut ran = 0;
    while ran < n && start.elapsed() < budget {
        let mut input = seeds[rng.below(seeds.len())].1.clone();
        mutate(&mut rng, &mut input, &seeds);
        if std::panic::catch_unwind(|| f(&input)).is_err() {
            // Keep the input, so it can become a regression case.
            let dir = fuzz_dir().join("artifacts").join(target);
            let path = dir.join(format!("stable-crash-{ran}"));
            let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &input));
            panic!("{target} panicked on mutated input {ran}, kept in {}: fix it, then move it to fuzz/regressions/{target}/", path.display());
        }
        ran += 1;
    }
    eprintln!("{target}: {ran} mutated inputs in {:.1} s, no panic", start.elapsed().as_secs_f64());
    ran
}

macro_rules! mutation_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let target = stringify!($name).trim_start_matches("mutated_");
            let ran = mutations(target, 4000, Duration::from_secs(4));
            assert!(ran >= 200, "{target}: only {ran} inputs ran in the budget");
        }
    )*};
}

mutation_tests!(mutated_netlink_route, mutated_netlink_send, mutated_netlink_acks, mutated_packet, mutated_filter, mutated_ring_record);

// ---- seeds ------------------------------------------------------------

fn nlmsg(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    crate::sys::nlmsg::build::message(ty, flags, seq, 0, body)
}

fn emit(m: &RouteNetlinkMessage) -> (u16, Vec<u8>) {
    let mut b = vec![0u8; m.buffer_len()];
    m.emit(&mut b);
    (m.message_type(), b)
}

/// Payloads of the sizes decoders read: 0, 1, 2, 4, 8, 16 bytes.
fn sized(i: usize) -> Vec<u8> {
    let n = [4, 1, 2, 16, 0, 8][i % 6];
    (0..n).map(|b| (b as u8).wrapping_mul(29).wrapping_add(i as u8)).collect()
}

/// Link kinds netlink-packet-route has a decoder for.
const LINK_KINDS: &[&str] = &[
    "bareudp", "vxlan", "geneve", "bond", "bridge", "vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "veth", "vrf",
    "gre", "gretap", "ip6gre", "ip6gretap", "ipip", "sit", "ip6tnl", "vti", "vti6", "xfrm", "wireguard", "gtp", "hsr",
    "macsec", "tun", "netkit", "amt", "can", "ipoib", "team", "batadv", "vxcan", "wwan", "rmnet", "dsa", "dummy",
];

/// Qdisc, class and filter kinds with option decoders.
const TC_KINDS: &[&str] = &[
    "u32", "bpf", "matchall", "flower", "htb", "fq_codel", "ingress", "clsact", "tbf", "netem", "basic", "fw", "route",
    "prio", "sfq", "fq", "cake", "mqprio", "red",
];

fn route_seeds() -> Vec<(String, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: String, (ty, b): (u16, Vec<u8>)| out.push((name, ty, b));
    // Whole messages as iproute2 sends them, built by the library.
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName("eth0".into()));
    peer.attributes.push(LinkAttribute::NetNsFd(5));
    let mut veth = LinkMessage::default();
    veth.attributes.push(LinkAttribute::IfName("veth1".into()));
    veth.attributes.push(LinkAttribute::Controller(7));
    veth.attributes.push(LinkAttribute::Mtu(1500));
    veth.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]));
    add("lib-veth-peer".into(), emit(&RouteNetlinkMessage::NewLink(veth)));
    let mut vx = LinkMessage::default();
    vx.attributes.push(LinkAttribute::IfName("vx0".into()));
    vx.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Vxlan), LinkInfo::Data(InfoData::Vxlan(vec![InfoVxlan::Id(42), InfoVxlan::Port(4789)]))]));
    add("lib-vxlan".into(), emit(&RouteNetlinkMessage::NewLink(vx)));
    let mut mv = LinkMessage::default();
    mv.header.index = 4;
    mv.attributes.push(LinkAttribute::NetNsPid(1234));
    add("lib-link-netns-pid".into(), emit(&RouteNetlinkMessage::SetLink(mv)));
    for (name, ip) in [("v4", IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))), ("v6", IpAddr::V6(Ipv6Addr::LOCALHOST))] {
        let mut a = AddressMessage::default();
        a.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        a.header.prefix_len = 24;
        a.header.index = 3;
        a.attributes.push(AddressAttribute::Local(ip));
        a.attributes.push(AddressAttribute::Address(ip));
        a.attributes.push(AddressAttribute::Label("eth0".into()));
        add(format!("lib-addr-{name}"), emit(&RouteNetlinkMessage::NewAddress(a)));
    }
    let mut r = RouteMessage::default();
    r.header.address_family = AddressFamily::Inet;
    r.header.destination_prefix_length = 16;
    r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 9, 0, 0))));
    r.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 0, 1))));
    r.attributes.push(RouteAttribute::Oif(2));
    add("lib-route".into(), emit(&RouteNetlinkMessage::NewRoute(r)));
    let mut q = TcMessage::default();
    q.header.index = 5;
    q.attributes.push(TcAttribute::Kind("clsact".into()));
    add("lib-qdisc".into(), emit(&RouteNetlinkMessage::NewQueueDiscipline(q)));

    // Every link kind, with attributes 1..12 of assorted sizes, as data
    // and (for the port kinds) as port data.
    for kind in LINK_KINDS {
        let data: Vec<u8> = (1..=12u16).flat_map(|t| attr(t, &sized(usize::from(t)))).collect();
        let mut info = attr(1, format!("{kind}\0").as_bytes());
        info.extend(attr(2, &data));
        let mut body = vec![0u8; 16];
        body.extend(attr(3, b"x0\0"));
        body.extend(attr(18 | 0x8000, &info));
        out.push((format!("kind-{kind}"), 16, body));
        let mut port = attr(1, b"veth\0");
        port.extend(attr(4, format!("{kind}\0").as_bytes()));
        port.extend(attr(5, &data));
        let mut body = vec![0u8; 16];
        body.extend(attr(18, &port));
        out.push((format!("port-{kind}"), 19, body));
    }
    // Top-level attributes 1..64 of every message family, assorted sizes.
    for (ty, fixed) in [(16u16, 16usize), (20, 8), (24, 12), (28, 12), (32, 12), (36, 20), (44, 20), (88, 4), (104, 8), (112, 4), (84, 4), (64, 4)] {
        let mut body = vec![0u8; fixed];
        if let Some(b) = body.first_mut() {
            *b = if ty == 28 { 7 } else { 2 };
        }
        for t in 1..=64u16 {
            body.extend(attr(t, &sized(usize::from(t) + usize::from(ty))));
        }
        out.push((format!("attrs-{ty}"), ty, body));
    }
    // Route encapsulations (RTA_ENCAP_TYPE 21, RTA_ENCAP 22) and multipath (9).
    for encap in 1..=10u16 {
        let inner: Vec<u8> = (1..=8u16).flat_map(|t| attr(t, &sized(usize::from(t + encap)))).collect();
        let mut body = vec![2, 32, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        body.extend(attr(21, &encap.to_ne_bytes()));
        body.extend(attr(22 | 0x8000, &inner));
        out.push((format!("encap-{encap}"), 24, body));
    }
    // struct rtnexthop (len, flags, hops, ifindex 2), then RTA_GATEWAY.
    let mut nh = vec![0, 0, 0, 0, 2, 0, 0, 0];
    nh.extend(attr(5, &[10, 0, 0, 1]));
    nh[0] = nh.len() as u8;
    let mut body = vec![2, 0, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
    body.extend(attr(9, &nh));
    out.push(("multipath".into(), 24, body));
    // Qdiscs, classes and filters with options.
    for kind in TC_KINDS {
        let opts: Vec<u8> = (1..=10u16).flat_map(|t| attr(t, &sized(usize::from(t) * 3))).collect();
        let mut body = vec![0u8; 20];
        body[4] = 2;
        body.extend(attr(1, format!("{kind}\0").as_bytes()));
        body.extend(attr(2 | 0x8000, &opts));
        out.push((format!("tc-{kind}"), 36, body.clone()));
        out.push((format!("tcfilter-{kind}"), 44, body));
    }
    out
}

fn nft_batch() -> Vec<u8> {
    let mut v = nlmsg(0x10, 1, 1, &[0, 0, 0, 10]);
    let mut t = vec![1, 0, 0, 0];
    t.extend(attr(1, b"web\0"));
    v.extend(nlmsg(0x0a00, 0x405, 2, &t));
    let mut c = vec![1, 0, 0, 0];
    c.extend(attr(1, b"web\0"));
    c.extend(attr(3, b"input\0"));
    v.extend(nlmsg(0x0a03, 0x405, 3, &c));
    v.extend(nlmsg(0x11, 1, 4, &[0, 0, 0, 10]));
    v
}

fn ack(seq: u32, errno: i32, extack: Option<&str>, capped: bool) -> Vec<u8> {
    let mut body = (-errno).to_ne_bytes().to_vec();
    let echoed = nlmsg(16, 5, seq, &[0; 16]);
    body.extend_from_slice(if capped { &echoed[..16] } else { &echoed });
    let mut flags = if capped { 0x100 } else { 0 };
    if let Some(x) = extack {
        flags |= 0x200;
        body.extend(attr(1, format!("{x}\0").as_bytes()));
    }
    nlmsg(2, flags, seq, &body)
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let a = [10, 0, 0, 1];
    let b = [10, 0, 0, 2];
    let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    macro_rules! build {
        ($name:expr, $builder:expr, $payload:expr) => {{
            let mut f = Vec::new();
            $builder.write(&mut f, $payload).expect("a small frame");
            out.push(($name.to_string(), f));
        }};
    }
    let (ea, eb) = (ma, mb);
    build!("udp4", PacketBuilder::ethernet2(ea, eb).ipv4(a, b, 64).udp(40000, 53), b"hello");
    build!("tcp4-syn", PacketBuilder::ethernet2(ea, eb).ipv4(a, b, 64).tcp(40000, 80, 1000, 64240).syn(), &[]);
    build!("tcp4-data", PacketBuilder::ethernet2(ea, eb).ipv4(a, b, 64).tcp(40000, 80, 1000, 502).ack(7).psh(), &[0x41; 40]);
    build!("icmp4", PacketBuilder::ethernet2(ea, eb).ipv4(a, b, 64).icmpv4_echo_request(7, 3), &[0; 16]);
    let (x, y) = ([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    build!("udp6", PacketBuilder::ethernet2(ea, eb).ipv6(x, y, 64).udp(5353, 5353), b"mdns");
    build!("icmp6", PacketBuilder::ethernet2(ea, eb).ipv6(x, y, 64).icmpv6_echo_request(1, 2), &[]);
    build!("vlan-udp4", PacketBuilder::ethernet2(ea, eb).single_vlan(etherparse::VlanId::try_new(100).expect("vlan id")).ipv4(a, b, 64).udp(1, 2), b"v");
    build!("ip-only-udp4", PacketBuilder::ipv4(a, b, 64).udp(3, 4), b"raw");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&ma);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&ma);
    arp.extend_from_slice(&a);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&b);
    out.push(("arp".into(), arp));
    out
}

const FILTERS: &[&str] = &[
    "", "tcp port 80 and host 10.0.0.2", "not arp", "udp and net 10.1.0.0/16", "icmp or icmp6", "inbound", "outbound and tcp",
    "vlan 100 and udp", "ip6 and src net fe80::/10", "portrange 1000-2000", "(tcp or udp) and not port 22", "ether host 00:11:22:33:44:55",
    "tcp[13] & 2 != 0", "greater 100", "host example.com", "tcp and", "((((tcp))))", "port 99999", "net 10.0.0.0 mask 255.0.0.0",
    "src host 10.0.0.1 or dst host 10.0.0.2 and ip proto 17",
];

fn record_bytes(ev: &RawEvent) -> Vec<u8> {
    let mut v = bytes_of(&ev.header).to_vec();
    v.extend_from_slice(&ev.payload);
    v
}

/// Every seed, by target: (target, file name, bytes).
fn all_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let routes = route_seeds();
    for (name, ty, body) in &routes {
        let mut v = ty.to_ne_bytes().to_vec();
        v.extend_from_slice(body);
        out.push(("netlink_route", name.clone(), v));
    }
    // Sends: one message of each route seed, some batches and cut captures.
    for (name, ty, body) in routes.iter().step_by(3) {
        let m = nlmsg(*ty, 0x405, 1, body);
        out.push(("netlink_send", format!("route-{name}"), [vec![0, 0], m].concat()));
    }
    let batch: Vec<u8> = (0..20).flat_map(|i| nlmsg(20, 0x605, i, &routes[3].2)).collect();
    out.push(("netlink_send", "route-batch".into(), [vec![0, 0], batch.clone()].concat()));
    out.push(("netlink_send", "route-batch-cut".into(), [vec![0, 40], batch[..batch.len() - 100].to_vec()].concat()));
    out.push(("netlink_send", "nft-batch".into(), [vec![1, 0], nft_batch()].concat()));
    out.push(("netlink_send", "genl-ctrl".into(), [vec![2, 0], nlmsg(16, 0x301, 1, &[3, 1, 0, 0])].concat()));
    out.push(("netlink_send", "xfrm".into(), [vec![3, 0], nlmsg(16, 5, 1, &[0; 64])].concat()));
    out.push(("netlink_send", "junk-after".into(), [vec![0, 0], nlmsg(16, 5, 1, &[0; 16]), vec![1, 2, 3]].concat()));
    for (name, bytes) in [
        ("one", ack(1, 0, None, true)),
        ("extack", ack(2, 17, Some("File exists"), true)),
        ("uncapped", ack(3, 22, Some("Invalid argument"), false)),
        ("two", [ack(4, 0, None, true), ack(5, 1, None, true)].concat()),
        ("done", nlmsg(3, 2, 6, &[0; 4])),
    ] {
        out.push(("netlink_acks", name.to_string(), bytes));
    }
    for (name, f) in frames() {
        out.push(("packet", name.clone(), [vec![0, 0x08, 0x00, 0, 0], f.clone()].concat()));
        out.push(("packet", format!("{name}-offloaded-vlan"), [vec![3, 0x08, 0x00, 0x20, 0x64], f].concat()));
    }
    for (i, e) in FILTERS.iter().enumerate() {
        out.push(("filter", format!("expr-{i:02}"), e.as_bytes().to_vec()));
    }
    let rec = |ev: RawEvent| record_bytes(&ev);
    out.push(("ring_record", "send-nft".into(), rec(send_record(decode::NETLINK_NETFILTER, nft_batch().len(), &nft_batch()))));
    out.push(("ring_record", "send-route".into(), rec(send_record(0, batch.len(), &batch))));
    out.push(("ring_record", "send-route-cut".into(), rec(send_record(0, batch.len() + 4000, &batch))));
    let acks = [ack(1, 0, None, true), ack(2, 17, Some("File exists"), true)].concat();
    let meta = NetlinkAck { sock_id: 1, protocol: 0, syscall: 6, _pad: 0, fd: 3, total_len: acks.len() as u32, data_len: acks.len() as u32 };
    out.push(("ring_record", "ack".into(), rec(record(EventKind::NetlinkAck, 5, [bytes_of(&meta).to_vec(), acks].concat()))));
    for (name, f) in frames().into_iter().take(4) {
        let meta = PacketMeta {
            ifindex: 2, len: f.len() as u32, cap_len: f.len() as u32, hash: 1, protocol: 0x0800u16.to_be(), direction: 1,
            vlan_present: 0, mark: 0, vlan_tci: 0, vlan_proto: 0, _pad: 0, sock_cookie: 0,
        };
        out.push(("ring_record", format!("packet-{name}"), rec(record(EventKind::Packet, 9, [bytes_of(&meta).to_vec(), f].concat()))));
    }
    // Socket events (process attribution): a bind and a TCP connect.
    for (name, op, lport, rport) in [("sock-bind", tracer_common::sock::op::BIND, 5000, 0), ("sock-connected", tracer_common::sock::op::CONNECTED, 40000, 80)] {
        let mut se = tracer_common::sock::SockEvent { cookie: 77, start_ns: 1_000_000_000, op, flags: 1, family: 2, protocol: 6, lport, rport, ..Default::default() };
        se.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        se.raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        out.push(("ring_record", name.to_string(), rec(record(EventKind::Sock, 11, bytes_of(&se).to_vec()))));
    }
    out
}

#[test]
fn seeds_on_disk_are_the_generated_ones() {
    for (target, name, bytes) in all_seeds() {
        let p = fuzz_dir().join("seeds").join(target).join(&name);
        let on_disk = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run write_seed_files)", p.display()));
        assert!(on_disk == bytes, "{} differs from its generator (run write_seed_files)", p.display());
    }
}

/// Rewrites `fuzz/seeds` from the generators above.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing a generator"]
fn write_seed_files() {
    let seeds = fuzz_dir().join("seeds");
    let _ = std::fs::remove_dir_all(&seeds);
    for (target, name, bytes) in all_seeds() {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
