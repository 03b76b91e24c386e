//! The whole pcap-filter language in the kernel, checked against libpcap
//! itself: for every expression and every frame of a varied corpus,
//! libpcap's own interpreter (the verdict `tcpdump -r` gives) equals the
//! verdict of the translated eBPF program run by this kernel
//! (`BPF_PROG_TEST_RUN`), and the verifier accepts every program. Then the
//! tail-call chain the capture programs will use, and VLAN tags the veth
//! took out of the frame, matched as `tcpdump -i` on that device matches
//! them.
//!
//! Root (CAP_BPF) for everything; the VLAN test also makes namespaces.

use std::{ffi::CString, os::fd::AsFd, process::Command};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};
use tracer::testing::cbpf::{
    self, Action, Dialect, Direction, Filter, KernelFilter, LinkType, Options, TC_ACT_UNSPEC,
    insn::{Insn, R0, R1, R2, R3, R6},
    sys, translate,
};
use tracer_tests::{Lab, sh, sh_out};

/// A named test frame.
struct Frame {
    name: String,
    bytes: Vec<u8>,
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const BCAST: [u8; 6] = [0xff; 6];
const IP_A: [u8; 4] = [10, 0, 0, 1];
const IP_B: [u8; 4] = [10, 0, 0, 2];
const IP_DNS: [u8; 4] = [10, 0, 0, 53];
const IP_LAN: [u8; 4] = [192, 168, 1, 7];
const IP6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const IP6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const LL6_A: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SOLICITED_B: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];

/// The corpus: a TCP exchange with every flag combination it has (SYN,
/// SYN-ACK, ACK, PSH-ACK with an HTTP request, FIN-ACK, RST, RST-ACK, and
/// URG/ECE/CWR), UDP (DNS, DHCP broadcast, mDNS multicast, a large
/// datagram), ICMP of four types, IPv4 with options, fragments, IPv6 TCP,
/// UDP and four ICMPv6 types (two to multicast), ARP request and reply,
/// 802.1Q and 802.1ad (QinQ) tagged frames, MPLS, PPPoE, Geneve, LLC/STP,
/// and truncated frames.
fn ethernet_frames() -> Vec<Frame> {
    let mut out = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| out.push(Frame { name: name.to_string(), bytes });
    let ab = || PacketBuilder::ethernet2(MAC_A, MAC_B);
    let ba = || PacketBuilder::ethernet2(MAC_B, MAC_A);
    let http = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    macro_rules! build {
        ($b:expr, $payload:expr) => {{
            let mut v = Vec::new();
            $b.write(&mut v, $payload).expect("frame");
            v
        }};
    }
    let v4 = |b: etherparse::PacketBuilderStep<etherparse::Ethernet2Header>, s, d| b.ipv4(s, d, 64);
    add("tcp syn", build!(v4(ab(), IP_A, IP_B).tcp(40000, 80, 1, 64240).syn(), &[]));
    add("tcp syn-ack", build!(v4(ba(), IP_B, IP_A).tcp(80, 40000, 9, 65160).syn().ack(2), &[]));
    add("tcp ack", build!(v4(ab(), IP_A, IP_B).tcp(40000, 80, 2, 502).ack(10), &[]));
    add("tcp psh-ack http", build!(v4(ab(), IP_A, IP_B).tcp(40000, 80, 2, 502).ack(10).psh(), http));
    add("tcp fin-ack", build!(v4(ba(), IP_B, IP_A).tcp(80, 40000, 10, 509).ack(30).fin(), &[]));
    add("tcp rst", build!(v4(ab(), IP_A, IP_B).tcp(40001, 443, 5, 0).rst(), &[]));
    add("tcp rst-ack", build!(v4(ba(), IP_B, IP_A).tcp(443, 40001, 0, 0).rst().ack(6), &[]));
    add("tcp urg-ece-cwr", build!(v4(ab(), IP_A, IP_B).tcp(40002, 8080, 7, 100).ack(1).urg(3).ece().cwr(), b"x"));
    add("udp dns", build!(v4(ab(), IP_A, IP_DNS).udp(5353, 53), b"\x12\x34\x01\x00\x00\x01"));
    add("udp dhcp broadcast", build!(PacketBuilder::ethernet2(MAC_A, BCAST).ipv4([0; 4], [255; 4], 64).udp(68, 67), &[0u8; 40]));
    add(
        "udp mdns multicast",
        build!(PacketBuilder::ethernet2(MAC_A, [1, 0, 0x5e, 0, 0, 0xfb]).ipv4(IP_A, [224, 0, 0, 251], 255).udp(5353, 5353), b"mdns"),
    );
    add("udp large", build!(v4(ab(), IP_LAN, IP_B).udp(61000, 9000), &[0u8; 1400]));
    add("icmp echo", build!(v4(ab(), IP_A, IP_B).icmpv4_echo_request(7, 1), b"ping"));
    add("icmp echo reply", build!(v4(ba(), IP_B, IP_A).icmpv4_echo_reply(7, 1), b"ping"));
    add("icmp unreachable", build!(v4(ba(), IP_B, IP_A).icmpv4_raw(3, 3, [0; 4]), &[0x45, 0, 0, 28]));
    add("icmp time exceeded ttl1", build!(ba().ipv4(IP_LAN, IP_A, 1).icmpv4_raw(11, 0, [0; 4]), &[0x45, 0, 0, 28]));
    // IPv4 with options (IHL 6): every transport offset moves by 4.
    let mut opts = build!(v4(ab(), IP_A, IP_B).tcp(40003, 80, 1, 1000).syn(), &[]);
    opts.splice(34..34, [1, 1, 1, 0]);
    opts[14] = 0x46;
    let total = u16::from_be_bytes([opts[16], opts[17]]) + 4;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    add("tcp syn ip options", opts);
    // Fragments of one UDP datagram: the first (MF), a later one (offset 185).
    let mut first = build!(v4(ab(), IP_A, IP_B).udp(7000, 7001), &[0u8; 64]);
    first[20] = 0x20;
    add("ip first fragment", first);
    let mut later = build!(v4(ab(), IP_A, IP_B).udp(7000, 7001), &[0u8; 64]);
    later[20..22].copy_from_slice(&185u16.to_be_bytes());
    add("ip later fragment", later);
    let v6 = |b: etherparse::PacketBuilderStep<etherparse::Ethernet2Header>, s, d| b.ipv6(s, d, 64);
    add("ip6 tcp syn", build!(v6(ab(), IP6_A, IP6_B).tcp(50000, 443, 1, 64800).syn(), &[]));
    add("ip6 tcp psh-ack", build!(v6(ba(), IP6_B, IP6_A).tcp(443, 50000, 1, 500).ack(2).psh(), b"hello"));
    add("ip6 udp", build!(v6(ab(), IP6_A, IP6_B).udp(50001, 53), b"q"));
    add("icmp6 echo", build!(v6(ab(), IP6_A, IP6_B).icmpv6_echo_request(3, 1), b"ping"));
    add("icmp6 echo reply", build!(v6(ba(), IP6_B, IP6_A).icmpv6_echo_reply(3, 1), b"ping"));
    add(
        "icmp6 neighbor solicitation",
        build!(PacketBuilder::ethernet2(MAC_A, [0x33, 0x33, 0xff, 0, 0, 2]).ipv6(LL6_A, SOLICITED_B, 255).icmpv6_raw(135, 0, [0; 4]), &IP6_B),
    );
    add(
        "icmp6 router advertisement",
        build!(PacketBuilder::ethernet2(MAC_B, [0x33, 0x33, 0, 0, 0, 1]).ipv6(LL6_A, ALL_NODES, 255).icmpv6_raw(134, 0, [64, 0, 7, 8]), &[0; 8]),
    );
    let arp_req = ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation::REQUEST, &MAC_A, &IP_A, &[0; 6], &IP_B).expect("arp");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, BCAST).arp(arp_req).write(&mut v).expect("arp frame");
    let arp_request = v.clone();
    add("arp request", v);
    let arp_rep = ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation::REPLY, &MAC_B, &IP_B, &MAC_A, &IP_A).expect("arp");
    let mut v = Vec::new();
    ba().arp(arp_rep).write(&mut v).expect("arp frame");
    add("arp reply", v);
    let vid = |n| VlanId::try_new(n).expect("vlan id");
    add("vlan10 tcp syn", build!(ab().single_vlan(vid(10)).ipv4(IP_A, IP_B, 64).tcp(40010, 80, 1, 100).syn(), &[]));
    add("vlan20 ip6 udp", build!(ab().single_vlan(vid(20)).ipv6(IP6_A, IP6_B, 64).udp(50002, 53), b"q"));
    add("vlan10 arp-less icmp", build!(ba().single_vlan(vid(10)).ipv4(IP_B, IP_A, 64).icmpv4_echo_reply(1, 1), b"p"));
    let mut qinq = build!(ab().double_vlan(vid(100), vid(10)).ipv4(IP_A, IP_B, 64).icmpv4_echo_request(2, 2), b"qinq");
    qinq[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    add("qinq 100/10 icmp", qinq);
    // Encapsulations: MPLS (label 100), a PPPoE session, Geneve (an inner
    // Ethernet frame), and an 802.3 frame with LLC carrying an STP BPDU.
    let dns = build!(v4(ab(), IP_A, IP_DNS).udp(5353, 53), b"\x12\x34\x01\x00\x00\x01");
    let mut mpls = dns[..12].to_vec();
    mpls.extend([0x88, 0x47]);
    mpls.extend(((100u32 << 12) | (1 << 8) | 64).to_be_bytes());
    mpls.extend(&dns[14..]);
    add("mpls 100 udp dns", mpls);
    let mut pppoe = dns[..12].to_vec();
    pppoe.extend([0x88, 0x64, 0x11, 0x00, 0x00, 0x01]);
    pppoe.extend((dns.len() as u16 - 14 + 2).to_be_bytes());
    pppoe.extend([0x00, 0x21]);
    pppoe.extend(&dns[14..]);
    add("pppoe session udp dns", pppoe);
    let inner = build!(v4(ab(), IP_A, IP_B).tcp(40000, 80, 1, 64240).syn(), &[]);
    let mut geneve = vec![0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x07, 0x00];
    geneve.extend(&inner);
    add("geneve tcp syn", build!(v4(ab(), IP_LAN, IP_B).udp(50000, 6081), &geneve));
    let mut stp = vec![0x01, 0x80, 0xc2, 0, 0, 0];
    stp.extend(MAC_A);
    stp.extend(38u16.to_be_bytes());
    stp.extend([0x42, 0x42, 0x03]);
    stp.extend([0u8; 35]);
    add("llc stp bpdu", stp);
    // Truncated captures: cut inside the TCP header (IPv4 and IPv6), the
    // ARP body, the VLAN tag; and an Ethernet header alone. (This kernel's
    // BPF_PROG_TEST_RUN refuses IPv4 and IPv6 frames shorter than their IP
    // header, so none is cut there.)
    let syn = build!(v4(ab(), IP_A, IP_B).tcp(40000, 80, 1, 64240).syn(), &[]);
    add("truncated in tcp header", syn[..14 + 20 + 10].to_vec());
    let syn6 = build!(v6(ab(), IP6_A, IP6_B).tcp(50000, 443, 1, 64800).syn(), &[]);
    add("truncated in ip6 tcp header", syn6[..14 + 40 + 13].to_vec());
    add("truncated in arp", arp_request[..14 + 10].to_vec());
    let mut lldp = syn[..14].to_vec();
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    add("ethernet header only", lldp);
    let tagged = build!(ab().single_vlan(vid(10)).ipv4(IP_A, IP_B, 64).udp(1, 2), &[]);
    add("truncated vlan tag", tagged[..16].to_vec());
    out
}

/// The IP packets of the untagged IPv4 and IPv6 frames, for raw-IP devices.
fn raw_ip_frames() -> Vec<Frame> {
    ethernet_frames()
        .into_iter()
        .filter(|f| f.bytes.len() >= 14 + 20 && matches!(f.bytes[12..14], [0x08, 0x00] | [0x86, 0xdd]))
        .map(|f| Frame { name: format!("raw {}", f.name), bytes: f.bytes[14..].to_vec() })
        .collect()
}

/// At least one expression per primitive family of pcap-filter(7).
const EXPRESSIONS: &[&str] = &[
    // ether
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:01",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x0806",
    "ether proto \\ip6",
    "ether[0] & 1 != 0",
    "ether[12:2] = 0x86dd",
    "arp",
    "rarp",
    // host, net with src/dst
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "ip host 10.0.0.53",
    "net 10.0.0.0/24",
    "src net 192.168.1.0/24",
    "dst net 10.0.0.0 mask 255.255.255.0",
    "host 2001:db8::1",
    "net 2001:db8::/64",
    "ip6 dst host ff02::1",
    "arp host 10.0.0.2",
    // ports and port ranges
    "port 80",
    "src port 40000",
    "dst port 53",
    "tcp port 443",
    "udp port 5353",
    "portrange 50-100",
    "src portrange 1024-65535",
    "tcp dst portrange 1-1023",
    "udp dst portrange 60-70",
    // protocols
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip proto 1",
    "ip6 proto 58",
    "proto \\tcp",
    "ip proto \\udp",
    "ip6 proto \\tcp",
    // vlan (tags in the frame data here)
    "vlan",
    "vlan 10",
    "vlan 20 and ip6",
    "vlan 100 and vlan 10",
    "vlan 10 and tcp port 80",
    "not vlan",
    "vlan and icmp",
    // lengths
    "less 64",
    "greater 1000",
    "len > 100",
    "len <= 60",
    // broadcast and multicast
    "broadcast",
    "multicast",
    "ip broadcast",
    "ip multicast",
    "ip6 multicast",
    // bytes, masks and named fields
    "ip[8] = 1",
    "ip[1] & 0xfc != 0",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    "ip[0] & 0xf > 5",
    "ip6[6] = 17",
    "ip6[40] = 135",
    "tcp[13] = 2",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "tcp[tcpflags] & tcp-rst != 0",
    "tcp[tcpflags] & tcp-fin != 0",
    "tcp[tcpflags] & tcp-push != 0",
    "tcp[tcpflags] == tcp-ack",
    "tcp[tcpflags] & (tcp-urg|tcp-ece|tcp-cwr) != 0",
    "tcp[0:2] > 1023",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "udp[2:2] = 53",
    "udp[4:2] > 20",
    "udp[8:4] = 0x12340100",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] = icmp-echoreply",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp[icmpcode] = 3",
    "icmp6[icmp6type] = icmp6-neighborsolicit",
    "icmp6[icmp6type] == icmp6-echo or icmp6[icmp6type] == icmp6-routeradvert",
    "ether[1000] = 0",
    "ether[40000] = 0",
    // arithmetic (with X-relative loads, division and shifts by packet data)
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 100",
    "ip[8] * 2 + 1 > 100",
    "ip[8] % 3 = 1",
    "(ip[8] ^ 0xff) & 0x0f = 0x0e",
    "ip[8] / (ip[1] & 0x3) > 1",
    "ether[0] << (ether[5] & 0x3f) != 0",
    "ether[6] >> (ether[11] + 31) = 0",
    "-ip[8] & 0xff = 0xc0",
    "len - 14 = ip[2:2]",
    // nested and/or/not
    "(tcp and dst port 80) or (udp and not port 53)",
    "not (arp or icmp) and ip",
    "host 10.0.0.1 and (port 80 or port 443) and not tcp[tcpflags] & tcp-rst != 0",
    "ip and not net 10.0.0.0/8 or ip6 and not ip6 multicast",
    "(icmp or icmp6) and not (ip multicast or ip6 multicast)",
    "not not tcp",
    // encapsulations and older link-layer protocols (variable offsets)
    "mpls",
    "mpls 100 and udp port 53",
    "pppoes and ip",
    "pppoes 1 and udp port 53",
    "geneve and ip",
    "geneve and tcp[tcpflags] & tcp-syn != 0",
    "vlan and mpls",
    "stp",
    "llc",
    "ether proto \\ipx",
    "atalk",
    "decnet host 1.2",
    "",
];

/// The expressions that make sense on a device without link-layer header.
const RAW_EXPRESSIONS: &[&str] = &[
    "ip",
    "ip6",
    "tcp",
    "udp port 53",
    "host 10.0.0.1",
    "src net 192.168.1.0/24",
    "ip6 and tcp dst port 443",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "icmp[icmptype] == icmp-echo",
    "ip[6:2] & 0x1fff != 0",
    "greater 100",
    "ip broadcast or ip multicast",
    "icmp6[icmp6type] = icmp6-neighborsolicit",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
];

fn need_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN)");
    }
    root
}

/// Return 1 on a match, 0 otherwise: what BPF_PROG_TEST_RUN reports.
fn verdict_options(direction: Option<Direction>) -> Options {
    Options { direction, on_match: Action::Return(1), on_no_match: Action::Return(0) }
}

/// Checks every (expression, frame) pair; returns (pairs checked, largest program).
fn differential(link: LinkType, exprs: &[&str], frames: &[Frame]) -> (usize, usize) {
    let mut checked = 0;
    let mut largest = (0, "");
    let mut wrong = Vec::new();
    for expr in exprs {
        let file = Filter::compile(expr, link, Dialect::File).unwrap_or_else(|e| panic!("libpcap refused {expr:?}: {e}"));
        let kernel = Filter::compile(expr, link, Dialect::Kernel).unwrap_or_else(|e| panic!("libpcap refused {expr:?}: {e}"));
        if !expr.contains("vlan") {
            // The live Linux code differs from the file code only for VLANs.
            assert_eq!(file.instructions(), kernel.instructions(), "{expr:?}: live and file code differ");
        }
        let ebpf = translate(kernel.instructions(), &verdict_options(None)).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        let prog = sys::load_sched_cls("pcap_test", &ebpf).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        if ebpf.len() > largest.0 {
            largest = (ebpf.len(), expr);
        }
        eprintln!("{:>4} cBPF -> {:>4} eBPF  {:?}  [{}]", kernel.instructions().len(), ebpf.len(), expr, prog.verifier_stats.lines().find(|l| l.starts_with("processed")).unwrap_or(""));
        for f in frames {
            let want = file.matches(&f.bytes, f.bytes.len() as u32);
            let got = sys::test_run(prog.fd.as_fd(), &f.bytes).unwrap_or_else(|e| panic!("{expr:?} on {}: {e}", f.name)) == 1;
            checked += 1;
            if want != got {
                wrong.push(format!("{expr:?} on {:?}: libpcap {want}, kernel {got}", f.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} verdicts differ from libpcap:\n{}", wrong.len(), wrong.join("\n"));
    (checked, largest.0)
}

#[test]
fn every_expression_agrees_with_libpcap_on_every_ethernet_frame() {
    if !need_root() {
        return;
    }
    let frames = ethernet_frames();
    // The corpus really holds what the expressions look for.
    let count = |e: &str| frames.iter().filter(|f| cbpf::matches(e, &f.bytes, f.bytes.len() as u32).expect("compiles")).count();
    for (e, at_least) in [("tcp[tcpflags] & tcp-syn != 0", 3), ("vlan", 4), ("icmp6", 4), ("arp", 2), ("ip[6:2] & 0x1fff != 0", 1), ("multicast", 3), ("mpls", 1), ("pppoes", 1), ("geneve", 1), ("stp", 1)] {
        assert!(count(e) >= at_least, "the corpus has too few frames for {e:?}");
    }
    assert!(EXPRESSIONS.len() >= 60);
    let (checked, largest) = differential(LinkType::Ethernet, EXPRESSIONS, &frames);
    eprintln!("{} expressions x {} frames = {checked} verdicts, all equal to libpcap's; largest program {largest} eBPF instructions", EXPRESSIONS.len(), frames.len());
}

#[test]
fn raw_ip_programs_agree_with_libpcap() {
    if !need_root() {
        return;
    }
    let frames = raw_ip_frames();
    assert!(frames.len() >= 15);
    let (checked, _) = differential(LinkType::RawIp, RAW_EXPRESSIONS, &frames);
    eprintln!("raw IP: {checked} verdicts, all equal to libpcap's");
}

/// What a filter costs per packet, as the kernel times BPF_PROG_TEST_RUN
/// (100,000 runs each, on the HTTP request frame), beside the empty filter.
#[test]
fn cost_per_packet() {
    if !need_root() {
        return;
    }
    let frames = ethernet_frames();
    let http = &frames.iter().find(|f| f.name == "tcp psh-ack http").expect("http frame").bytes;
    for expr in [
        "",
        "tcp",
        "tcp[tcpflags] & tcp-push != 0",
        "host 10.0.0.1 and (port 80 or port 443) and not tcp[tcpflags] & tcp-rst != 0",
        "vlan 10 and tcp port 80",
        "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    ] {
        let f = Filter::compile(expr, LinkType::Ethernet, Dialect::Kernel).expect("compiles");
        let ebpf = translate(f.instructions(), &verdict_options(None)).expect("translates");
        let prog = sys::load_sched_cls("pcap_test", &ebpf).expect("loads");
        let (ret, ns) = sys::test_run_repeat(prog.fd.as_fd(), http, 100_000).expect("runs");
        let want = Filter::compile(expr, LinkType::Ethernet, Dialect::File).expect("compiles").matches(http, http.len() as u32);
        assert_eq!(ret == 1, want, "{expr:?}");
        eprintln!("{ns:>4} ns/packet  {:>3} eBPF  match={want}  {expr:?}", ebpf.len());
    }
}

/// `inbound`, `outbound` and `ifindex` exist only in live Linux code.
#[test]
fn packet_type_and_ifindex_come_from_the_skb() {
    if !need_root() {
        return;
    }
    let frame = &ethernet_frames()[0].bytes;
    let run = |expr: &str, dir: Option<Direction>| {
        let f = Filter::compile(expr, LinkType::Ethernet, Dialect::Kernel).expect("compiles");
        let ebpf = translate(f.instructions(), &verdict_options(dir)).expect("translates");
        let prog = sys::load_sched_cls("pcap_test", &ebpf).expect("loads");
        sys::test_run(prog.fd.as_fd(), frame).expect("runs") == 1
    };
    assert!(run("inbound", Some(Direction::Ingress)));
    assert!(!run("outbound", Some(Direction::Ingress)));
    assert!(run("outbound", Some(Direction::Egress)));
    assert!(!run("inbound", Some(Direction::Egress)));
    // BPF_PROG_TEST_RUN runs the frame on the loopback device (ifindex 1).
    assert!(run("ifindex 1", None));
    assert!(!run("ifindex 2", None));
    // libpcap's interpreter has no packet type: in userspace it never matches.
    let file = Filter::compile("inbound", LinkType::Ethernet, Dialect::File).expect("compiles");
    assert!(!file.matches(frame, frame.len() as u32));
}

/// entry --tail call--> filter --tail call on match--> capture body.
#[test]
fn tail_call_chain_reaches_the_capture_only_on_a_match() {
    if !need_root() {
        return;
    }
    let array = sys::create_prog_array("pcap_test", cbpf::layout::SLOTS).expect("prog array");
    let entry_code: Vec<Insn> = {
        let mut v = vec![Insn::mov64_reg(R6, R1), Insn::mov64_reg(R1, R6)];
        v.extend(Insn::ld_map_fd(R2, std::os::fd::AsRawFd::as_raw_fd(&array)));
        v.extend([Insn::mov64_imm(R3, cbpf::layout::FILTER_ETH_INGRESS as i32), Insn::call(12), Insn::mov64_imm(R0, 99), Insn::exit()]);
        v
    };
    let entry = sys::load_sched_cls("pcap_test_entry", &entry_code).expect("entry loads");
    let capture = sys::load_sched_cls("pcap_test_capt", &[Insn::mov64_imm(R0, 7), Insn::exit()]).expect("capture loads");
    let frames = ethernet_frames();
    let syn = &frames[0].bytes;
    let arp = &frames.iter().find(|f| f.name == "arp request").expect("arp frame").bytes;
    let run = |frame: &[u8]| sys::test_run(entry.fd.as_fd(), frame).expect("runs") as i32;

    // No filter installed: the entry's tail call fails and it goes on.
    assert_eq!(run(syn), 99);
    let filters = cbpf::FilterSet::install("tcp[tcpflags] & tcp-syn != 0", array.as_fd()).expect("filters install");
    assert_eq!(filters.filters.len(), 4);
    // A match with no capture body installed: the filter gives up, untouched.
    assert_eq!(run(syn), TC_ACT_UNSPEC);
    sys::prog_array_set(array.as_fd(), cbpf::layout::CAPTURE_INGRESS, capture.fd.as_fd()).expect("capture installs");
    assert_eq!(run(syn), 7, "a matching frame reaches the capture body");
    assert_eq!(run(arp), TC_ACT_UNSPEC, "a frame that does not match goes on");
    // An Ethernet-only expression has no code on raw IP: that filter never matches.
    let eth_only = KernelFilter::load("ether broadcast", LinkType::RawIp, Direction::Ingress, array.as_fd(), 5).expect("loads");
    assert!(eth_only.cbpf.is_none() && eth_only.unavailable.is_some());
}

/// bpffs mounted on a private directory for the length of the test, so `tc` can take the program.
struct Bpffs(String);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = format!("/tmp/trpf{}", tracer_tests::unique_id());
        sh(&format!("mkdir -p {dir} && mount -t bpf bpf {dir}"));
        Bpffs(dir)
    }
    fn pin(&self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> String {
        let path = format!("{}/{name}", self.0);
        let c = CString::new(path.clone()).expect("path");
        #[repr(C)]
        struct ObjPin {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        let mut attr = ObjPin { pathname: c.as_ptr() as u64, bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32, file_flags: 0 };
        // SAFETY: BPF_OBJ_PIN (6) reads this prefix of bpf_attr; the path is
        // NUL-terminated and outlives the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 6, &mut attr as *mut ObjPin, size_of::<ObjPin>()) };
        assert_eq!(r, 0, "pinning {path}: {}", std::io::Error::last_os_error());
        path
    }
}

/// A `tcpdump -w` running in a namespace, stopped (SIGINT) on drop.
struct Dump {
    child: std::process::Child,
    file: String,
}

impl Dump {
    fn start(ns: &str, iface: &str, expr: &str, file: String) -> Dump {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", iface, "-Q", "in", "-U", "-w", &file, expr])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump");
        Dump { child, file }
    }
    /// Stops it and counts the packets it wrote.
    fn count(mut self) -> u64 {
        self.stop();
        sh(&format!("tcpdump -r {} 2>/dev/null | wc -l", self.file)).trim().parse().expect("count")
    }
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = sh_out(&format!("umount {d} && rmdir {d}", d = self.0));
    }
}

/// A `BPF_MAP_TYPE_ARRAY` of `n` u64 counters, and reading one back.
struct Counters(std::os::fd::OwnedFd);

impl Counters {
    fn new(n: u32) -> Counters {
        #[repr(C)]
        struct Create {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
        }
        let mut attr = Create { map_type: 2, key_size: 4, value_size: 8, max_entries: n };
        // SAFETY: BPF_MAP_CREATE (0) reads this prefix of bpf_attr, which has no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, &mut attr as *mut Create, size_of::<Create>()) };
        assert!(fd >= 0, "creating the counters: {}", std::io::Error::last_os_error());
        // SAFETY: BPF_MAP_CREATE returned a new descriptor, ours to own.
        Counters(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
    }
    fn get(&self, i: u32) -> u64 {
        #[repr(C)]
        struct Elem {
            map_fd: u32,
            pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let mut value = 0u64;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0) as u32;
        let mut attr = Elem { map_fd: fd, pad: 0, key: &i as *const u32 as u64, value: &mut value as *mut u64 as u64, flags: 0 };
        // SAFETY: BPF_MAP_LOOKUP_ELEM (1) reads the 4-byte key and writes
        // the 8-byte value through these pointers, both alive for the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 1, &mut attr as *mut Elem, size_of::<Elem>()) };
        assert_eq!(r, 0, "reading counter {i}: {}", std::io::Error::last_os_error());
        value
    }
    /// A program that adds 1 to counter `i` and returns TC_ACT_UNSPEC (the
    /// next TC filter runs): what a matching filter tail-calls here.
    fn counter_program(&self, i: u32) -> Vec<Insn> {
        use cbpf::insn::e;
        let mut v = Vec::new();
        v.extend(Insn::ld_map_fd(R1, std::os::fd::AsRawFd::as_raw_fd(&self.0)));
        v.extend([
            Insn::st_mem(e::W, cbpf::insn::R10, -4, i as i32),
            Insn::mov64_reg(R2, cbpf::insn::R10),
            Insn::alu64_imm(e::ADD, R2, -4),
            Insn::call(1), // bpf_map_lookup_elem
            Insn::new(e::JMP | e::JEQ | e::K, R0, 0, 2, 0),
            Insn::mov64_imm(R1, 1),
            Insn::new(e::STX | 0xc0 | e::DW, R0, R1, 0, 0), // atomic add
            Insn::mov64_imm(R0, TC_ACT_UNSPEC),
            Insn::exit(),
        ]);
        v
    }
}

/// A TC egress program for the sending side: IPv4 packets with TOS 0x10
/// (`ping -Q 16`) get VLAN tag 10 with `bpf_skb_vlan_push`, which puts it
/// in the skb metadata (veths offload tags), as a VLAN device would; this
/// kernel has no 8021q module to make one.
fn vlan_tagger() -> Vec<Insn> {
    use cbpf::insn::{R4, e};
    let jne = |r, imm, off| Insn::new(e::JMP | e::JNE | e::K, r, 0, off, imm);
    vec![
        Insn::mov64_reg(R6, R1),
        Insn::ldx_mem(e::W, R2, R6, 16), // skb->protocol, network order
        jne(R2, 0x0008, 11),             // htons(ETH_P_IP)
        Insn::ldx_mem(e::W, R1, R6, 76),
        Insn::ldx_mem(e::W, R2, R6, 80),
        Insn::mov64_reg(R3, R1),
        Insn::alu64_imm(e::ADD, R3, 16),
        Insn::new(e::JMP | e::JGT | e::X, R3, R2, 6, 0),
        Insn::ldx_mem(e::B, R4, R1, 15), // IPv4 TOS
        jne(R4, 0x10, 4),
        Insn::mov64_reg(R1, R6),
        Insn::mov64_imm(R2, 0x0081), // htons(ETH_P_8021Q)
        Insn::mov64_imm(R3, 10),
        Insn::call(18), // bpf_skb_vlan_push
        Insn::mov64_imm(R0, 0), // TC_ACT_OK
        Insn::exit(),
    ]
}

/// VLAN tags offloaded into skb metadata (not in the frame data at TC
/// ingress): each filter, attached at ingress of the receiving `eth0`,
/// matches as many frames as `tcpdump -i eth0 -Q in` with the same
/// expression captures there.
#[test]
fn offloaded_vlan_tags_match_as_tcpdump_on_the_interface() {
    if !need_root() {
        return;
    }
    // Two namespaces joined by one veth pair, without IPv6 from the start:
    // no frame comes but the test's own (autoconfiguration or a bridge's
    // traffic would come at random times, and the counts must be exact).
    let lab = Lab::new(0);
    let (a, b) = (lab.extra_ns("a"), lab.extra_ns("b"));
    for ns in [&a, &b] {
        sh(&format!("ip netns exec {} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1", ns.name));
    }
    sh(&format!(
        "ip -n {a} link add eth0 type veth peer name eth0 netns {b} && \
         ip -n {a} addr add 192.0.2.1/24 dev eth0 && ip -n {b} addr add 192.0.2.2/24 dev eth0 && \
         ip -n {a} link set eth0 up && ip -n {b} link set eth0 up",
        a = a.name,
        b = b.name
    ));
    let fs = Bpffs::new();
    let tagger = sys::load_sched_cls("pcap_test_vlan", &vlan_tagger()).expect("tagger loads");
    let path = fs.pin("tagger", tagger.fd.as_fd());
    sh(&format!("ip netns exec {n} tc qdisc add dev eth0 clsact && ip netns exec {n} tc filter add dev eth0 egress bpf da object-pinned {path}", n = a.name));
    let exprs = ["vlan", "vlan 10", "vlan 20", "vlan 10 and icmp", "not vlan", "icmp", "ether[12:2] = 0x8100", "vlan and arp"];
    sh(&format!("ip netns exec {} tc qdisc add dev eth0 clsact", b.name));
    // Each filter tail-calls its own counter on a match; all return
    // TC_ACT_UNSPEC, so every filter sees every frame.
    let n = exprs.len() as u32;
    let counters = Counters::new(n);
    let array = sys::create_prog_array("pcap_test", n).expect("prog array");
    let mut progs = Vec::new();
    for (i, expr) in exprs.iter().enumerate() {
        let i = i as u32;
        let count = sys::load_sched_cls("pcap_test_count", &counters.counter_program(i)).expect("counter loads");
        sys::prog_array_set(array.as_fd(), i, count.fd.as_fd()).expect("counter installs");
        let f = KernelFilter::load(expr, LinkType::Ethernet, Direction::Ingress, array.as_fd(), i).expect("filter loads");
        let path = fs.pin(&format!("f{i}"), f.fd());
        sh(&format!("ip netns exec {} tc filter add dev eth0 ingress pref {} bpf da object-pinned {path}", b.name, i + 1));
        progs.push((count, f));
    }
    let dumps: Vec<Dump> = exprs.iter().enumerate().map(|(i, e)| Dump::start(&b.name, "eth0", e, format!("{}-t{i}.pcap", fs.0))).collect();
    // tcpdump writes the file header once it listens.
    for d in &dumps {
        let file = &d.file;
        assert!(tracer_tests::wait_until(std::time::Duration::from_secs(10), || std::fs::metadata(file).map(|m| m.len() >= 24).unwrap_or(false)), "tcpdump did not start");
    }
    // Count from here: frames that came before the tcpdumps listened
    // (IPv6 autoconfiguration of the fresh interfaces) are not compared.
    let before: Vec<u64> = (0..n).map(|i| counters.get(i)).collect();
    sh(&format!("ip netns exec {} ping -c 3 -i 0.2 -W 1 192.0.2.2", a.name));
    // Tagged: b has no VLAN 10, so these go unanswered.
    let _ = sh_out(&format!("ip netns exec {} ping -Q 16 -c 4 -i 0.2 -W 1 192.0.2.2", a.name));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let kernel: Vec<u64> = (0..n).map(|i| counters.get(i) - before[i as usize]).collect();
    let tcpdump: Vec<u64> = dumps.into_iter().map(Dump::count).collect();
    for (i, e) in exprs.iter().enumerate() {
        eprintln!("{e:?}: kernel {} tcpdump {}", kernel[i], tcpdump[i]);
    }
    assert_eq!(kernel, tcpdump, "kernel filters and tcpdump disagree on {exprs:?}");
    assert_eq!(kernel[1], 4, "the four tagged echo requests match `vlan 10`");
    assert_eq!(kernel[5], 7, "`icmp` matches tagged and untagged echo requests, as tcpdump -i does on Linux");
    assert_eq!(kernel[4], 4, "untagged: three echo requests and one ARP request");
    assert_eq!(kernel[6], 0, "the tags are offloaded: never in the frame data at TC ingress");
    drop(progs);
}

