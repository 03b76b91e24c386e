//! tcpdump parity (#14), live: `tracer packets EXPR -w` and `tcpdump -i
//! eth0 -w EXPR` run side by side on the same interface while the same
//! varied frames cross it, and must keep exactly the same packets; the
//! tracer's capture is also read back with `tracer packets -r FILE EXPR`
//! and must keep what `tcpdump -r FILE EXPR` keeps.
//!
//! The frames are sent from namespace A through the lab bridge to B's
//! `eth0`, where both tools listen: IPv4, IPv6, ARP, ICMP and ICMPv6 of
//! several types, TCP with every flag combination of a real exchange, UDP,
//! fragments (IPv4 and an IPv6 fragment header), 802.1Q-tagged frames (the
//! veth takes the tag out of the data on receive: the offloaded path),
//! broadcast and multicast, IP options, small and large frames; and B's
//! own answers (ARP replies, echo replies, resets) on egress. IPv6 is
//! switched off on B and A so that nothing else is sent meanwhile.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use etherparse::{IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, PacketBuilder};
use tracer_tests::{Lab, LabNs, Tracer, tracer_run};

const SETTLE: Duration = Duration::from_millis(800);

fn need_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

fn mac(ns: &LabNs) -> [u8; 6] {
    let s = ns.sh("cat /sys/class/net/eth0/address");
    let v: Vec<u8> = s.trim().split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
    v.try_into().expect("six bytes")
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().expect("IPv4").octets()
}

/// The frames A sends, as bytes on the wire.
fn frames(a: &LabNs, b: &LabNs, am: [u8; 6], bm: [u8; 6]) -> Vec<Vec<u8>> {
    let (ai, bi) = (ip4(&a.ip), ip4(&b.ip));
    let bcast4 = [bi[0], bi[1], bi[2], 255];
    let (a6, b6): ([u8; 16], [u8; 16]) = ("fd00::a".parse::<std::net::Ipv6Addr>().expect("v6").octets(), "fd00::b".parse::<std::net::Ipv6Addr>().expect("v6").octets());
    let all_nodes: [u8; 16] = "ff02::1".parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let mut out = Vec::new();
    // TCP: a whole exchange's flags, to B (B answers with resets) and on other ports.
    for (sport, dport, flags) in [
        (40000u16, 80u16, "S"), (80, 40000, "SA"), (40000, 80, "A"), (40000, 80, "PA"), (40000, 80, "FA"),
        (80, 40000, "R"), (40001, 443, "RA"), (40002, 22, "S"), (40003, 8080, "U"), (40004, 1234, "FPU"), (40005, 6000, "SE"),
    ] {
        let mut t = PacketBuilder::ethernet2(am, bm).ipv4(ai, bi, 64).tcp(sport, dport, 1000, 64240);
        for f in flags.chars() {
            t = match f {
                'S' => t.syn(),
                'A' => t.ack(1),
                'P' => t.psh(),
                'F' => t.fin(),
                'R' => t.rst(),
                'U' => t.urg(7),
                'E' => t.ece(),
                _ => t,
            };
        }
        out.push(t.write_all(if flags.contains('P') { b"GET / HTTP/1.0\r\n\r\n" } else { b"" }));
    }
    // UDP: DNS, NTP, a port range, DHCP to broadcast, mDNS to multicast, a large datagram.
    for (dst_mac, dst, sport, dport, len) in [
        (bm, bi, 5353u16, 53u16, 30usize), (bm, bi, 123, 123, 48), (bm, bi, 40000, 1500, 10), (bm, bi, 40000, 2100, 10),
        ([0xff; 6], bcast4, 68, 67, 300), ([0x01, 0x00, 0x5e, 0, 0, 0xfb], [224, 0, 0, 251], 5353, 5353, 40), (bm, bi, 40000, 9000, 1200),
    ] {
        out.push(PacketBuilder::ethernet2(am, dst_mac).ipv4(ai, dst, 64).udp(sport, dport).write_all(&vec![0x61; len]));
    }
    // ICMP: echo request (B answers), reply, unreachable, time exceeded.
    for (ty, code) in [(8u8, 0u8), (0, 0), (3, 3), (11, 0)] {
        let t = PacketBuilder::ethernet2(am, bm).ipv4(ai, bi, 64);
        let t = match ty {
            8 => t.icmpv4_echo_request(7, 1),
            0 => t.icmpv4_echo_reply(7, 1),
            _ => t.icmpv4_raw(ty, code, [0; 4]),
        };
        out.push(t.write_all(&[0x42; 28]));
    }
    // IPv6: TCP, UDP, ICMPv6 echo, neighbour solicitation, router advertisement to all nodes.
    out.push(PacketBuilder::ethernet2(am, bm).ipv6(a6, b6, 64).tcp(40010, 443, 1, 64240).syn().write_all(&[]));
    out.push(PacketBuilder::ethernet2(am, bm).ipv6(a6, b6, 64).udp(40011, 53).write_all(&[1; 20]));
    out.push(PacketBuilder::ethernet2(am, bm).ipv6(a6, b6, 64).icmpv6_echo_request(1, 1).write_all(&[2; 16]));
    out.push(PacketBuilder::ethernet2(am, [0x33, 0x33, 0xff, 0, 0, 0x0b]).ipv6(a6, b6, 255).icmpv6_raw(135, 0, [0; 4]).write_all(&b6));
    out.push(PacketBuilder::ethernet2(am, [0x33, 0x33, 0, 0, 0, 1]).ipv6(a6, all_nodes, 255).icmpv6_raw(134, 0, [64, 0, 0, 0]).write_all(&[0; 8]));
    // ARP: a request for B (B replies) and a gratuitous reply.
    out.push(arp(1, am, ai, [0; 6], bi, [0xff; 6]));
    out.push(arp(2, am, ai, [0xff; 6], ai, [0xff; 6]));
    // IPv4 fragments: the first (more fragments) and a later one, of UDP to B.
    out.push(ipv4_raw(am, bm, ai, bi, 17, 0x2000, &udp_bytes(40020, 7000, 64)[..48]));
    out.push(ipv4_raw(am, bm, ai, bi, 17, 6, &[0x55; 24]));
    // IPv4 with an option (router alert): header length 24.
    out.push(ipv4_options(am, bm, ai, bi));
    // IPv6 with a fragment header in front of UDP.
    out.push(ipv6_fragment(am, bm, a6, b6));
    // 802.1Q: VLAN 10 with UDP, VLAN 20 with TCP, VLAN 10 with ARP.
    out.push(vlan(10, &PacketBuilder::ethernet2(am, bm).ipv4(ai, bi, 64).udp(40030, 4789).write_all(&[3; 20])));
    out.push(vlan(20, &PacketBuilder::ethernet2(am, bm).ipv4(ai, bi, 64).tcp(40031, 80, 5, 1000).syn().write_all(&[])));
    out.push(vlan(10, &arp(1, am, ai, [0; 6], bi, [0xff; 6])));
    out
}

trait WriteAll {
    fn write_all(self, payload: &[u8]) -> Vec<u8>;
}

macro_rules! write_all {
    ($($t:ty),*) => {$(
        impl WriteAll for etherparse::PacketBuilderStep<$t> {
            fn write_all(self, payload: &[u8]) -> Vec<u8> {
                let mut v = Vec::with_capacity(self.size(payload.len()));
                self.write(&mut v, payload).expect("frame builds");
                v
            }
        }
    )*};
}
write_all!(etherparse::TcpHeader, etherparse::UdpHeader, etherparse::Icmpv4Header, etherparse::Icmpv6Header);

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut f = eth(dst, sha, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

fn udp_bytes(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(len, 0x77);
    u
}

/// An IPv4 packet with the given protocol and flags/fragment-offset word.
fn ipv4_raw(sm: [u8; 6], dm: [u8; 6], s: [u8; 4], d: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), s, d).expect("header");
    h.identification = 0x1234;
    h.more_fragments = frag & 0x2000 != 0;
    h.fragment_offset = etherparse::IpFragOffset::try_new(frag & 0x1fff).expect("offset");
    h.header_checksum = h.calc_header_checksum();
    let mut f = eth(dm, sm, 0x0800);
    h.write(&mut f).expect("write");
    f.extend_from_slice(payload);
    f
}

fn ipv4_options(sm: [u8; 6], dm: [u8; 6], s: [u8; 4], d: [u8; 4]) -> Vec<u8> {
    let udp = udp_bytes(40040, 5000, 16);
    let mut h = Ipv4Header::new(udp.len() as u16, 1, IpNumber::UDP, s, d).expect("header");
    h.options = [0x94, 0x04, 0, 0][..].try_into().expect("options");
    h.header_checksum = h.calc_header_checksum();
    let mut f = eth(dm, sm, 0x0800);
    h.write(&mut f).expect("write");
    f.extend_from_slice(&udp);
    f
}

fn ipv6_fragment(sm: [u8; 6], dm: [u8; 6], s: [u8; 16], d: [u8; 16]) -> Vec<u8> {
    let udp = udp_bytes(40050, 6000, 24);
    let frag = Ipv6FragmentHeader::new(IpNumber::UDP, etherparse::IpFragOffset::ZERO, true, 99);
    let h = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (8 + udp.len()) as u16,
        next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
        hop_limit: 64,
        source: s,
        destination: d,
    };
    let mut f = eth(dm, sm, 0x86dd);
    h.write(&mut f).expect("write");
    frag.write(&mut f).expect("write");
    f.extend_from_slice(&udp);
    f
}

fn vlan(id: u16, frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// At least 60 expressions over every primitive family of pcap-filter(7).
fn expressions(a: &LabNs, b: &LabNs, am: [u8; 6], bm: [u8; 6]) -> Vec<String> {
    let m = |x: [u8; 6]| x.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let net = {
        let p = &b.ip[..b.ip.rfind('.').expect("dotted")];
        format!("{p}.0/24")
    };
    let (ai, bi, am, bm) = (a.ip.as_str(), b.ip.as_str(), m(am), m(bm));
    [
        "ip", "ip6", "arp", "tcp", "udp", "icmp", "icmp6", "vlan", "vlan 10", "vlan 20", "vlan and udp", "vlan 10 and arp",
        "not vlan", "ether broadcast", "ether multicast", "ip broadcast", "ip multicast", "ip6 multicast", "broadcast or multicast",
        &format!("ether host {am}"), &format!("ether src {am}"), &format!("ether dst {bm}"), &format!("ether dst {bm} and not vlan"),
        &format!("host {bi}"), &format!("src host {ai}"), &format!("dst host {bi}"), &format!("net {net}"), &format!("dst net {net}"),
        &format!("src net {net} and tcp"), "host fd00::b", "ip6 src net fd00::/64", &format!("arp host {bi}"), &format!("arp src {ai}"),
        "port 80", "src port 80", "dst port 80", "tcp port 443", "udp port 53", "port 53 or port 123", "portrange 1000-2000",
        "dst portrange 1000-2000", "udp src portrange 5000-6000", "ip proto 17", "ip6 proto 6", "proto \\udp", "ip proto \\icmp",
        "less 64", "greater 1000", "len > 100 and len < 400", "tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
        "tcp[tcpflags] & tcp-rst != 0", "tcp[tcpflags] & (tcp-fin|tcp-urg) != 0", "tcp[13] = 0x02", "tcp[tcpflags] & tcp-ece != 0",
        "icmp[icmptype] == icmp-echo", "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply", "icmp[0] = 3 and icmp[1] = 3",
        "icmp6 and ip6[40] == 135", "icmp6[icmp6type] == icmp6-routeradvert", "ip[6:2] & 0x1fff != 0", "ip[6:2] & 0x3fff != 0",
        "ip[0] & 0xf > 5", "ip[8] = 1", "ip[2:2] > 500", "ether[12:2] = 0x0806", "ether[0] & 1 != 0", "ether[6:4] + 1 > 0",
        "udp[4:2] - 8 > 100", "tcp[2:2] * 2 >= 160 and tcp[2:2] / 2 <= 40", "ip6[6] == 44", "ip6[6] = 17 or ip6[6] = 44",
        "tcp and (port 80 or port 22) and not src port 80", "(udp or icmp) and not (broadcast or multicast)",
        "not (tcp or udp or icmp)", "ip and not ip[6:2] & 0x1fff != 0 and udp", "arp or (ip6 and not icmp6) or (vlan and tcp)",
        &format!("not host {bi} and not arp"), "tcp[tcpflags] & tcp-push != 0 and tcp[20:4] = 0x47455420",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A tcpdump capturing `expr` on B's eth0 into `file`.
fn tcpdump(ns: &LabNs, expr: &str, file: &str) -> Child {
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.name, "tcpdump", "-n", "-p", "--immediate-mode", "-U", "-i", "eth0", "-w", file, expr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump runs");
    wait_listening(&mut c, expr);
    c
}

/// Waits for tcpdump's "listening on", which says its filter is attached.
fn wait_listening(c: &mut Child, expr: &str) {
    let err = c.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("listening on") => break,
            Ok(l) => assert!(!l.contains("syntax error"), "tcpdump refused {expr:?}: {l}"),
            Err(_) => assert!(Instant::now() < deadline, "tcpdump {expr:?} never started listening"),
        }
    }
}

fn stop(mut c: Child) {
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let _ = c.wait();
}

/// The frames of a pcap or pcapng file, in order, as tcpdump itself reads them.
fn read_frames(file: &str) -> Vec<Vec<u8>> {
    let out = Command::new("tcpdump").args(["-r", file, "-n", "-xx", "-q"]).output().expect("tcpdump -r");
    assert!(out.status.success(), "tcpdump -r {file}: {}", String::from_utf8_lossy(&out.stderr));
    let mut frames = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(hex) = line.trim_start().strip_prefix("0x").and_then(|l| l.split_once(':')).map(|(_, h)| h) {
            let cur: &mut Vec<u8> = frames.last_mut().expect("a packet line first");
            for w in hex.split_whitespace() {
                for i in (0..w.len()).step_by(2) {
                    cur.push(u8::from_str_radix(&w[i..i + 2], 16).expect("hex"));
                }
            }
        } else {
            frames.push(Vec::new());
        }
    }
    frames.retain(|f| !f.is_empty());
    frames
}

fn multiset(frames: &[Vec<u8>]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for f in frames {
        *m.entry(f.clone()).or_insert(0) += 1;
    }
    m
}

fn send(ns: &LabNs, frames: &[Vec<u8>], dir: &Path) {
    let list = dir.join("frames.hex");
    std::fs::write(&list, frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect::<String>()).expect("write frames");
    let py = format!(
        "import socket,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
         for l in open('{}'):\n    s.send(bytes.fromhex(l.strip()))\n    time.sleep(0.002)\n",
        list.display()
    );
    let out = Command::new("ip").args(["netns", "exec", &ns.name, "python3", "-c", &py]).output().expect("python3");
    assert!(out.status.success(), "sending frames failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tracer_keeps_what_tcpdump_keeps_live_and_from_a_file() {
    if !need_root() {
        return;
    }
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    for ns in [a, b] {
        ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    }
    // The bridge and its ports would send router solicitations and MLD reports.
    for dev in [lab.bridge.as_str(), a.host_veth.as_str(), b.host_veth.as_str()] {
        tracer_tests::sh(&format!("sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=1"));
    }
    let (am, bm) = (mac(a), mac(b));
    // Fixed neighbours: no ARP probe of their own (sent seconds later, in
    // one tool's window and not the other's) between the frames.
    let hex = |m: [u8; 6]| m.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    a.sh(&format!("ip neigh replace {} lladdr {} dev eth0 nud permanent", b.ip, hex(bm)));
    b.sh(&format!("ip neigh replace {} lladdr {} dev eth0 nud permanent", a.ip, hex(am)));
    let frames = frames(a, b, am, bm);
    let exprs = expressions(a, b, am, bm);
    assert!(exprs.len() >= 60, "{} expressions", exprs.len());
    let dir = std::env::temp_dir().join(format!("tracer-parity-{}", lab.id));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Let the links settle (no more frames of their own).
    std::thread::sleep(Duration::from_secs(2));

    let mut failures = Vec::new();
    let mut kept_counts = Vec::new();
    // tcpdump's own capture of everything, for `-r` on a file of tcpdump's (classic pcap).
    let everything = dir.join("everything.pcap").display().to_string();
    let mut whole = Some(tcpdump(b, "", &everything));
    for (batch_no, batch) in exprs.chunks(8).enumerate() {
        let mut running = Vec::new();
        for (i, expr) in batch.iter().enumerate() {
            let tag = format!("{batch_no}-{i}");
            let (ours, theirs) = (dir.join(format!("tracer-{tag}.pcapng")), dir.join(format!("tcpdump-{tag}.pcap")));
            let (ours, theirs) = (ours.display().to_string(), theirs.display().to_string());
            let t = Tracer::start(&["packets", "--netns", &b.name, "-i", "eth0", "-B", "1024", "-w", &ours, "--filter", expr]);
            let d = tcpdump(b, expr, &theirs);
            running.push((expr.clone(), t, d, ours, theirs));
        }
        send(a, &frames, &dir);
        std::thread::sleep(SETTLE);
        if let Some(w) = whole.take() {
            stop(w);
        }
        for (expr, mut t, d, ours, theirs) in running {
            stop(d);
            assert_eq!(t.stop(), 0, "tracer {expr:?}: {}", t.stderr());
            let (mine, want) = (read_frames(&ours), read_frames(&theirs));
            kept_counts.push(want.len());
            if multiset(&mine) != multiset(&want) {
                failures.push(format!("live {expr:?}: tracer kept {}, tcpdump {}", mine.len(), want.len()));
                continue;
            }
            // The same expression on the tracer's file, in userspace.
            let back = format!("{ours}.r.pcapng");
            let (code, _, err) = tracer_run(&["packets", "-r", &ours, "-w", &back, "--filter", &expr]);
            assert_eq!(code, 0, "tracer packets -r {ours} {expr:?}: {err}");
            let tcpdump_back = format!("{theirs}.r.pcap");
            let st = Command::new("tcpdump").args(["-r", &ours, "-w", &tcpdump_back, &expr]).stderr(Stdio::null()).status().expect("tcpdump -r");
            assert!(st.success());
            if read_frames(&back) != read_frames(&tcpdump_back) {
                failures.push(format!("-r {expr:?}: tracer kept {}, tcpdump {}", read_frames(&back).len(), read_frames(&tcpdump_back).len()));
            }
        }
    }
    let all = read_frames(&everything);
    assert!(all.len() >= frames.len(), "tcpdump saw {} of {} frames", all.len(), frames.len());
    for expr in &exprs {
        let (code, _, err) = tracer_run(&["packets", "-r", &everything, "-w", &format!("{everything}.r.pcapng"), "--filter", expr]);
        assert_eq!(code, 0, "tracer packets -r {everything} {expr:?}: {err}");
        let want = Command::new("tcpdump").args(["-r", &everything, "-w", &format!("{everything}.t.pcap"), expr]).stderr(Stdio::null()).status().expect("tcpdump -r");
        assert!(want.success());
        let (mine, theirs) = (read_frames(&format!("{everything}.r.pcapng")), read_frames(&format!("{everything}.t.pcap")));
        if mine != theirs {
            failures.push(format!("-r tcpdump's file {expr:?}: tracer kept {}, tcpdump {}", mine.len(), theirs.len()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{} frames sent; kept per expression: {kept_counts:?}", frames.len());
    assert!(failures.is_empty(), "{} of {} expressions differ:\n{}", failures.len(), exprs.len(), failures.join("\n"));
    // Not vacuous: the expressions split the traffic many ways.
    let distinct: std::collections::BTreeSet<usize> = kept_counts.iter().copied().collect();
    assert!(distinct.len() >= 15, "kept counts {kept_counts:?}");
    assert!(kept_counts.iter().filter(|&&n| n > 0).count() >= exprs.len() * 3 / 4, "too many expressions kept nothing: {kept_counts:?}");
}

#[test]
fn refused_expressions_give_libpcaps_sentence_and_exit_2() {
    for (expr, want) in [("tcp[", "syntax error"), ("port 99999999", "port"), ("frobnicate", "frobnicate"), ("ip and", "syntax error")] {
        for cmd in ["packets", "top"] {
            let (code, out, err) = tracer_run(&[cmd, "--filter", expr]);
            assert_eq!(code, 2, "{cmd} {expr:?}: {err}");
            assert!(out.is_empty());
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{cmd} {expr:?}: one sentence, got {err:?}");
            assert!(lines[0].contains(want) && !lines[0].contains("panicked"), "{cmd} {expr:?}: {err}");
        }
    }
}

/// Packets in a capture file, as tcpdump counts them (it refuses a file that is not complete).
fn count_in(file: &Path) -> usize {
    read_frames(&file.display().to_string()).len()
}

fn files_in(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    v.sort();
    v
}

fn written(t: &Tracer) -> usize {
    let err = t.stderr();
    let line = err.lines().find(|l| l.contains("packets written to")).unwrap_or_else(|| panic!("no count line: {err}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "packets").expect("packets");
    words[at - 1].parse().unwrap_or_else(|_| panic!("a count in {line:?}"))
}

#[test]
fn size_rotation_makes_complete_files_and_a_ring_keeps_w_of_them() {
    if !need_root() {
        return;
    }
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let dir = std::env::temp_dir().join(format!("tracer-rotate-{}", lab.id));
    std::fs::create_dir_all(&dir).expect("dir");
    let (all, ring) = (dir.join("all.pcapng"), dir.join("ring.pcapng"));
    let (all_s, ring_s) = (all.display().to_string(), ring.display().to_string());
    let mut t_all = Tracer::start(&["packets", "--netns", &b.name, "-i", "eth0", "-B", "1024", "-w", &all_s, "-C", "10k", "icmp"]);
    let mut t_ring = Tracer::start(&["packets", "--netns", &b.name, "-i", "eth0", "-B", "1024", "-w", &ring_s, "-C", "10k", "-W", "3", "icmp"]);
    a.sh(&format!("ping -c 100 -i 0.01 -s 500 -q {}", b.ip));
    std::thread::sleep(SETTLE);
    assert_eq!(t_all.stop(), 0, "{}", t_all.stderr());
    assert_eq!(t_ring.stop(), 0, "{}", t_ring.stderr());
    // 200 packets of ~650 bytes in 10 KiB files: about 13 of them, all,
    // first without a number, then 1, 2, ... as tcpdump names them.
    let files = files_in(&dir, "all.pcapng");
    assert!(files.len() >= 10, "{files:?}");
    for i in 0..files.len() {
        let want = if i == 0 { all.clone() } else { dir.join(format!("all.pcapng{i}")) };
        assert!(files.contains(&want), "{want:?} missing from {files:?}");
    }
    let total: usize = files.iter().map(|f| count_in(f)).sum();
    assert_eq!(total, 200, "every echo and reply, once, across the files");
    assert_eq!(written(&t_all), 200);
    for f in &files {
        let len = std::fs::metadata(f).expect("meta").len();
        // A file is closed at the first packet that finds it over 10 KiB.
        assert!(len < 10 * 1024 + 2048, "{f:?}: {len} bytes");
    }
    // The ring: exactly ring.pcapng0..2, each complete, holding the last packets.
    let files = files_in(&dir, "ring.pcapng");
    assert_eq!(files, (0..3).map(|i| dir.join(format!("ring.pcapng{i}"))).collect::<Vec<_>>());
    let kept: usize = files.iter().map(|f| count_in(f)).sum();
    assert!(kept > 0 && kept < 200, "the ring kept {kept}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn time_rotation_names_files_by_strftime_and_stops_after_w() {
    if !need_root() {
        return;
    }
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let dir = std::env::temp_dir().join(format!("tracer-rotate-g-{}", lab.id));
    std::fs::create_dir_all(&dir).expect("dir");
    let pattern = dir.join("g-%s.pcapng").display().to_string();
    let mut t = Tracer::start(&["packets", "--netns", &b.name, "-i", "eth0", "-B", "1024", "-w", &pattern, "-G", "1", "-W", "2", "icmp"]);
    let mut ping = a.spawn(&format!("ping -i 0.1 -w 6 {}", b.ip));
    // The second file is complete at the first packet after two periods: the tracer stops itself.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !t.stderr().contains("files is complete; stopping") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.stderr().contains("the last of the -W 2 files is complete; stopping"), "{}", t.stderr());
    assert_eq!(t.stop(), 0);
    let _ = ping.kill();
    let _ = ping.wait();
    let files = files_in(&dir, "g-");
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let secs: u64 = name.trim_start_matches("g-").trim_end_matches(".pcapng").parse().unwrap_or_else(|_| panic!("{name}: no %s"));
        assert!(secs > 1_600_000_000);
        assert!(count_in(f) > 0, "{name} holds packets");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tshark_reads_packets_live_through_a_pipe() {
    if !need_root() {
        return;
    }
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let cmd = format!(
        "{} packets --netns {} -i eth0 -w - -c 6 icmp | tshark -r - -T fields -e icmp.type 2>/dev/null",
        tracer_tests::tracer_bin().display(),
        b.name
    );
    let mut pipe = Command::new("sh").args(["-c", &cmd]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("pipeline");
    // The tracer's stderr (tshark's goes nowhere): ping once it says ready,
    // which takes more than a few seconds in a slow guest.
    let err = pipe.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready_by = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("ready")) {
        assert!(Instant::now() < ready_by, "the tracer never said ready: {said:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            said.push(l);
        }
    }
    a.sh(&format!("ping -c 3 -i 0.2 -q {}", b.ip));
    let deadline = Instant::now() + Duration::from_secs(20);
    while pipe.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the pipeline did not end after 6 packets");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = pipe.wait_with_output().expect("output");
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    said.extend(rx.try_iter());
    assert_eq!(types, ["8", "0", "8", "0", "8", "0"], "stderr: {said:?}");
}

/// IP packets for a tun device's far end (10.79.0.2) to write towards the
/// namespace's own address (10.79.0.1): echo requests, a datagram to a
/// closed port, a SYN to a closed port, a fragment; the kernel answers
/// each on egress (replies, port unreachable, reset).
fn tun_packets() -> Vec<Vec<u8>> {
    let (far, near) = ([10, 79, 0, 2], [10, 79, 0, 1]);
    let mut out = Vec::new();
    for seq in 0..3u16 {
        let b = PacketBuilder::ipv4(far, near, 64).icmpv4_echo_request(0x77, seq);
        let mut v = Vec::new();
        b.write(&mut v, &[0xab; 32]).expect("build");
        out.push(v);
    }
    let mut v = Vec::new();
    PacketBuilder::ipv4(far, near, 64).udp(40000, 9).write(&mut v, &[1; 20]).expect("build");
    out.push(v);
    let mut v = Vec::new();
    PacketBuilder::ipv4(far, near, 32).tcp(40001, 7, 1000, 8192).syn().write(&mut v, &[]).expect("build");
    out.push(v);
    out
}

#[test]
fn on_a_raw_ip_device_live_the_tracer_keeps_what_tcpdump_keeps() {
    if !need_root() {
        return;
    }
    // A tun device (no link-layer header: libpcap's LINKTYPE_RAW) in a
    // namespace of the lab's; a helper process holds it open and writes
    // the far end's packets into it (the kernel receives them: ingress);
    // the kernel's answers leave through it (egress).
    let lab = Lab::new(1);
    let ns = lab.extra_ns("tun");
    ns.sh(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip tuntap add dev tun0 mode tun && ip addr add 10.79.0.1/32 peer 10.79.0.2 dev tun0 && \
         ip link set tun0 up && ip link set lo up",
    );
    let dir = std::env::temp_dir().join(format!("tracer-parity-tun-{}", lab.id));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("packets.hex");
    let packets = tun_packets();
    std::fs::write(&list, packets.iter().map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect::<String>()).expect("write");
    // IFF_TUN | IFF_NO_PI on the persistent device; held open until told to go.
    let go = dir.join("go");
    let py = format!(
        "import fcntl,struct,os,time\nfd=os.open('/dev/net/tun',os.O_RDWR)\n\
         fcntl.ioctl(fd,0x400454ca,struct.pack('16sH',b'tun0',0x1001))\n\
         while not os.path.exists('{go}'):\n    time.sleep(0.05)\n\
         for l in open('{list}'):\n    os.write(fd,bytes.fromhex(l.strip()))\n    time.sleep(0.01)\n\
         time.sleep(1.5)\n",
        go = go.display(),
        list = list.display()
    );
    let mut holder = ns.spawn(&format!("python3 -c {}", tracer_tests::shell_quote(&py)));
    std::thread::sleep(Duration::from_millis(500));

    // Six at once, as the other batches here (a slow guest must start them all in time).
    let exprs = ["", "icmp[icmptype] == icmp-echoreply", "src host 10.79.0.1", "tcp[tcpflags] & tcp-rst != 0", "ip[9] == 6 or ip[9] == 17", "len > 50"];
    let mut running = Vec::new();
    for (i, expr) in exprs.iter().enumerate() {
        let (ours, theirs) = (dir.join(format!("tracer-{i}.pcapng")).display().to_string(), dir.join(format!("tcpdump-{i}.pcap")).display().to_string());
        let mut args = vec!["packets", "--netns", &ns.name, "-i", "tun0", "-w", &ours];
        if !expr.is_empty() {
            args.extend(["--filter", expr]);
        }
        let t = Tracer::start(&args);
        let d = tcpdump_on(&ns, "tun0", expr, &theirs);
        running.push((expr, t, d, ours, theirs));
    }
    let mut json = Tracer::start(&["packets", "--netns", &ns.name, "-i", "tun0", "--json", "icmp"]);
    std::fs::write(&go, b"").expect("go");
    let _ = holder.wait();
    std::thread::sleep(SETTLE);

    let mut kept = Vec::new();
    for (expr, mut t, d, ours, theirs) in running {
        stop(d);
        assert_eq!(t.stop(), 0, "tracer {expr:?}: {}", t.stderr());
        // The tracer's pcapng is Ethernet (a made-up header on a raw-IP
        // device, so that one file holds every interface); tcpdump's is raw IP.
        let mine: Vec<Vec<u8>> = read_frames(&ours).into_iter().map(|f| f[14..].to_vec()).collect();
        let want = read_frames(&theirs);
        assert_eq!(multiset(&mine), multiset(&want), "{expr:?}: tracer kept {}, tcpdump {}", mine.len(), want.len());
        kept.push(want.len());
    }
    // 5 written in, 5 answers out (3 replies, a port unreachable, a reset).
    assert_eq!(kept[0], 10, "everything: {kept:?}");
    assert_eq!(&kept[1..], &[3, 5, 1, 3, 7], "{kept:?}");
    assert_eq!(json.stop(), 0);
    let ev = json.events();
    assert_eq!(ev.len(), 7, "{ev:?}");
    assert!(ev.iter().all(|e| e["ifname"] == "tun0" && e["netns"]["name"] == ns.name.as_str()), "{ev:?}");
    assert_eq!(ev.iter().filter(|e| e["direction"] == "ingress").count(), 3, "{ev:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tcpdump capturing `expr` on `dev` in `ns` into `file`.
fn tcpdump_on(ns: &LabNs, dev: &str, expr: &str, file: &str) -> Child {
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.name, "tcpdump", "-n", "-p", "--immediate-mode", "-U", "-i", dev, "-w", file, expr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump runs");
    wait_listening(&mut c, expr);
    c
}
