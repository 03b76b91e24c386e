//! The in-kernel packet filter: the TC programs load with it on this kernel,
//! drop what the expression excludes before anything reaches the ring
//! buffer, and decide every frame exactly as the userspace evaluator does.
//!
//! Programs are attached (TCX, ingress and egress) to `eth0` inside the lab
//! namespaces; events are read with the tracer's ring reader.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::Path,
    time::Duration,
};

use aya::programs::{
    SchedClassifier,
    links::LinkOrder,
    tc::{TcAttachOptions, TcAttachType},
};
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    VlanId,
};
use tracer::testing::{LoadOptions, Loaded, RawEvent, Reader, filter, in_netns, load, read_pod};
use tracer_common::{
    EventKind,
    packet::{DIR_EGRESS, DIR_INGRESS, PacketMeta},
    programs,
};
use tracer_tests::{Lab, LabNs};

/// One packet event as the test sees it.
#[derive(Clone, Debug)]
struct Seen {
    netns: u64,
    direction: u8,
    frame: Vec<u8>,
}

/// The loaded object with its programs attached in some lab namespaces.
struct Capture {
    // Dropped before the object and the runtime it registered with.
    reader: Reader,
    loaded: Loaded,
    _rt: tokio::runtime::Runtime,
}

impl Capture {
    /// Loads the object (without installing any filter) and attaches both
    /// programs to `eth0` of each namespace.
    fn attach(namespaces: &[&LabNs]) -> Capture {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
        let _guard = rt.enter();
        // Snaplen 256: every frame of these tests is shorter, so events carry whole frames.
        let mut loaded = load(&LoadOptions { snaplen: 256, ..LoadOptions::default() }).expect("load the eBPF object");
        for (name, kind) in [(programs::PKT_INGRESS, TcAttachType::Ingress), (programs::PKT_EGRESS, TcAttachType::Egress)] {
            let prog: &mut SchedClassifier =
                loaded.ebpf.program_mut(name).expect("program in object").try_into().expect("a classifier");
            // The verifier's verdict on the filter code: it must load on this kernel.
            prog.load().unwrap_or_else(|e| panic!("{name} refused by the verifier: {e:?}"));
            let info = prog.info().expect("program info");
            eprintln!(
                "{name}: {} instructions after verification, verifier processed {}",
                info.size_translated().unwrap_or(0) / 8,
                info.verified_instruction_count().unwrap_or(0)
            );
            // A loop the verifier had to walk instruction by instruction would show here.
            assert!(info.verified_instruction_count().unwrap_or(0) < 100_000, "{name} is too costly to verify");
            for ns in namespaces {
                in_netns(Path::new(&ns.path()), || prog.attach_with_options("eth0", kind, TcAttachOptions::TcxOrder(LinkOrder::default())))
                    .expect("enter the namespace")
                    .unwrap_or_else(|e| panic!("attach {name} to {}/eth0: {e:?}", ns.name));
            }
        }
        let reader = Reader::new(&mut loaded.ebpf).expect("ring buffer reader");
        Capture { reader, loaded, _rt: rt }
    }

    /// Installs a filter and drops the events of packets seen before it.
    fn install(&mut self, expr: &str) -> filter::FilterProgram {
        let prog = filter::compile(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        filter::install(&mut self.loaded.ebpf, &prog).expect("install the filter");
        // Let programs already running under the old table finish, then discard.
        std::thread::sleep(Duration::from_millis(50));
        self.reader.drain_until_now(&mut Vec::new());
        prog
    }

    /// Every packet event that arrived since the last call, after letting
    /// the traffic settle.
    fn take(&mut self) -> Vec<Seen> {
        std::thread::sleep(Duration::from_millis(300));
        let mut raw: Vec<RawEvent> = Vec::new();
        self.reader.drain_until_now(&mut raw);
        let lost: u64 = self.reader.lost().iter().map(|(_, n)| n).sum();
        assert_eq!(lost, 0, "events lost");
        raw.iter()
            .filter(|e| e.kind == EventKind::Packet)
            .map(|e| {
                let meta: PacketMeta = read_pod(&e.payload).expect("packet meta");
                let start = size_of::<PacketMeta>();
                let frame = e.payload[start..start + meta.cap_len as usize].to_vec();
                Seen { netns: u64::from(e.header.netns_ino), direction: meta.direction, frame }
            })
            .collect()
    }
}

fn mac_of(ns: &LabNs) -> [u8; 6] {
    let out = ns.sh("cat /sys/class/net/eth0/address");
    let bytes: Vec<u8> = out.trim().split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
    bytes.try_into().expect("6 bytes")
}

/// Source MAC of the i-th crafted frame: how a frame is recognised in events
/// whatever the kernel did to the rest of it (the filter never reads MACs).
fn marker(i: usize) -> [u8; 6] {
    [0x02, 0x99, 0, 0, (i >> 8) as u8, i as u8]
}

fn marker_index(frame: &[u8]) -> Option<usize> {
    (frame.len() >= 12 && frame[6..10] == [0x02, 0x99, 0, 0]).then(|| (usize::from(frame[10]) << 8) | usize::from(frame[11]))
}

/// Frames of every shape the kernel parser handles, including odd and cut ones.
fn crafted_frames(dst_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let a = [10, 77, 0, 1];
    let b = [10, 77, 0, 2];
    let c = [192, 168, 9, 9];
    let a6: [u8; 16] = "fd77::1".parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let b6: [u8; 16] = "fd77::2".parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let x6: [u8; 16] = "2001:db8::5".parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let src = [0u8; 6];
    let eth = || PacketBuilder::ethernet2(src, dst_mac);
    let vlan = |id| eth().single_vlan(VlanId::try_new(id).expect("vlan id"));
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut push = |f: Result<(), etherparse::err::packet::BuildWriteError>, buf: Vec<u8>| {
        f.expect("build frame");
        frames.push(buf);
    };
    macro_rules! frame {
        ($b:expr, udp $s:expr, $d:expr) => {{ let mut v = Vec::new(); let r = $b.udp($s, $d).write(&mut v, b"filter-test"); push(r, v); }};
        ($b:expr, tcp $s:expr, $d:expr) => {{ let mut v = Vec::new(); let r = $b.tcp($s, $d, 7, 512).write(&mut v, b"filter-test"); push(r, v); }};
        ($b:expr, icmp4) => {{ let mut v = Vec::new(); let r = $b.icmpv4_echo_request(9, 1).write(&mut v, b"ping"); push(r, v); }};
        ($b:expr, icmp6) => {{ let mut v = Vec::new(); let r = $b.icmpv6_echo_request(9, 1).write(&mut v, b"ping"); push(r, v); }};
    }
    frame!(eth().ipv4(a, b, 64), udp 5353, 53);
    frame!(eth().ipv4(b, a, 64), udp 53, 5353);
    frame!(eth().ipv4(a, b, 64), tcp 40000, 80);
    frame!(eth().ipv4(c, a, 64), tcp 22, 1023);
    frame!(eth().ipv4(a, c, 64), icmp4);
    frame!(eth().ipv4(a, b, 64), udp 1000, 2000);
    frame!(eth().ipv6(a6, b6, 64), udp 1000, 53);
    frame!(eth().ipv6(b6, x6, 64), tcp 443, 5000);
    frame!(eth().ipv6(a6, b6, 64), icmp6);
    frame!(vlan(100).ipv4(a, b, 64), udp 53, 1234);
    frame!(vlan(200).ipv4(c, b, 64), tcp 22, 80);
    frame!(vlan(100).ipv6(b6, a6, 64), tcp 8080, 80);
    frame!(eth().ipv4(a, b, 64), udp 4789, 4789);
    frame!(eth().ipv4(a, b, 64), tcp 80, 80);
    // ARP request and reply, then an ARP with IPv6-sized protocol addresses.
    for (s, t) in [(a, b), (b, a)] {
        let arp = ArpPacket::new(ArpHardwareId::ETHERNET, EtherType::IPV4, ArpOperation::REQUEST, &src, &s, &[0; 6], &t).expect("ARP");
        let mut v = Vec::new();
        let r = eth().arp(arp).write(&mut v);
        push(r, v);
    }
    let first_udp = frames[0].clone();
    let tcp_frame = frames[2].clone();
    let v6_tcp = frames[7].clone();
    let vlan_udp = frames[9].clone();
    let arp_frame = frames[frames.len() - 2].clone();
    let mut odd = arp_frame.clone();
    odd[14 + 5] = 16;
    frames.push(odd);
    // A later IPv4 fragment (no ports), and a first fragment (ports).
    let mut f = first_udp.clone();
    f[14 + 6] = 0x00;
    f[14 + 7] = 0x20;
    fix_ipv4(&mut f, true);
    frames.push(f);
    let mut f = first_udp.clone();
    f[14 + 6] = 0x20;
    fix_ipv4(&mut f, true);
    frames.push(f);
    // IPv4 options: ports after IHL words.
    let mut f = tcp_frame[..34].to_vec();
    f[14] = 0x46;
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&tcp_frame[34..]);
    fix_ipv4(&mut f, true);
    frames.push(f);
    // IHL says options that are not there.
    let mut f = first_udp[..14 + 20].to_vec();
    f[14] = 0x4f;
    frames.push(f);
    // Cut inside the UDP header: addresses, no ports.
    frames.push(first_udp[..14 + 20 + 3].to_vec());
    // Cut inside the IPv4 and IPv6 headers.
    frames.push(first_udp[..14 + 10].to_vec());
    frames.push(v6_tcp[..14 + 30].to_vec());
    // Wrong IP version nibble.
    let mut f = first_udp.clone();
    f[14] = 0x65;
    frames.push(f);
    // IPv6 hop-by-hop header before TCP: next header 0, not followed.
    let mut f = v6_tcp[..14 + 40].to_vec();
    f[14 + 6] = 0;
    f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&v6_tcp[14 + 40..]);
    frames.push(f);
    // 802.1ad outer tag, and QinQ (802.1ad then 802.1Q).
    let mut ad = vlan_udp.clone();
    ad[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    frames.push(ad.clone());
    let mut q = ad[..16].to_vec();
    q.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    q.extend_from_slice(&vlan_udp[16..]);
    frames.push(q);
    // A tag cut short, an unknown EtherType, and a bare Ethernet header.
    let mut f = vlan_udp[..16].to_vec();
    f.truncate(16);
    frames.push(f);
    let mut f = first_udp[..12].to_vec();
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&[0u8; 46]);
    frames.push(f);
    frames.push(first_udp[..14].to_vec());
    for (i, f) in frames.iter_mut().enumerate() {
        f[6..12].copy_from_slice(&marker(i));
    }
    frames
}

/// Crafted frames the bridge surely forwards to the receiver. The host's
/// br_netfilter (when enabled) drops IPv4 and IPv6 frames with cut or
/// inconsistent headers and holds fragments for reassembly, and the
/// receiving device drops a cut VLAN tag; those are still checked on the
/// sender's egress, and on the receiver's ingress if they arrive.
const DELIVERED: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 25, 26, 27, 29];

/// Makes an edited IPv4 header consistent again: total length (for a
/// whole packet) and header checksum.
fn fix_ipv4(f: &mut [u8], whole: bool) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if whole {
        let tot = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
    }
    f[24..26].copy_from_slice(&[0, 0]);
    let sum: u32 = f[14..14 + ihl].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Sends raw frames out of `eth0` of `ns` with a packet socket.
fn send_frames(ns: &LabNs, frames: &[Vec<u8>], dir: &Path) {
    let data = dir.join("frames.bin");
    let mut bytes = Vec::new();
    for f in frames {
        bytes.extend_from_slice(&(f.len() as u16).to_be_bytes());
        bytes.extend_from_slice(f);
    }
    std::fs::write(&data, bytes).expect("write frames");
    let script = "
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
d = open(sys.argv[1], 'rb').read()
i = 0
while i < len(d):
    n = struct.unpack('>H', d[i:i + 2])[0]
    s.send(d[i + 2:i + 2 + n])
    i += 2 + n
";
    let py = dir.join("send.py");
    std::fs::write(&py, script).expect("write script");
    ns.sh(&format!("python3 {} {}", py.display(), data.display()));
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tracer-{tag}-{}", tracer_tests::unique_id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Indices of crafted frames among the events of one namespace and direction.
fn marked(seen: &[Seen], netns: u64, direction: u8) -> BTreeSet<usize> {
    seen.iter().filter(|s| s.netns == netns && s.direction == direction).filter_map(|s| marker_index(&s.frame)).collect()
}

/// Crafted frames, sent from one namespace to another, pass the kernel filter
/// exactly when the userspace evaluator says they match: on the sender's
/// egress (frames as built) and on the receiver's ingress (where the kernel
/// has taken VLAN tags out of the frame into skb metadata).
#[test]
fn kernel_filter_agrees_with_userspace_on_crafted_frames() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let tmp = TempDir::new("filter");
    let frames = crafted_frames(mac_of(b));
    let mut cap = Capture::attach(&[a, b]);
    let (ino_a, ino_b) = (a.inode(), b.inode());

    // No filter installed: everything passes. This also finds which frames
    // the receiving side gets at all (a cut VLAN tag is dropped before TC).
    send_frames(a, &frames, &tmp.0);
    let seen = cap.take();
    let sent_all: BTreeSet<usize> = (0..frames.len()).collect();
    assert_eq!(marked(&seen, ino_a, DIR_EGRESS), sent_all, "without a filter every frame leaves");
    let arrived = marked(&seen, ino_b, DIR_INGRESS);
    let delivered: BTreeSet<usize> = DELIVERED.iter().copied().collect();
    assert!(arrived.is_superset(&delivered), "only {arrived:?} of {delivered:?} arrived");

    let exprs = [
        "udp",
        "tcp",
        "icmp",
        "icmp6",
        "arp",
        "ip",
        "ip6",
        "not arp",
        "vlan",
        "vlan 100",
        "not vlan",
        "vlan 100 and udp port 53",
        "host 10.77.0.2",
        "ip host 10.77.0.2",
        "src host 10.77.0.1",
        "dst net 192.168.0.0/16",
        "src and dst net 10.77.0.0/24",
        "host fd77::2",
        "ip6 net 2001:db8::/32 or icmp6",
        "port 53",
        "src port 53",
        "dst port 80 or 1023",
        "portrange 1-1023",
        "tcp port 80",
        "udp dst port 53",
        "not port 53",
        "ip proto 17",
        "ip6 proto 0",
        "tcp or udp and port 53",
        "not tcp and not udp",
        "(udp or tcp) and not host 10.77.0.2",
        "inbound",
        "outbound",
        "inbound and udp or arp",
        "tcp and not vlan and src host 10.77.0.1 or ip6 and port 53",
    ];
    let tagged = |f: &[u8]| f.get(12..14).is_some_and(|t| t == [0x81, 0x00] || t == [0x88, 0xa8]);
    for expr in exprs {
        let prog = cap.install(expr);
        send_frames(a, &frames, &tmp.0);
        let seen = cap.take();
        let want_out: BTreeSet<usize> = (0..frames.len()).filter(|&i| filter::matches(&prog, &frames[i], DIR_EGRESS)).collect();
        assert_eq!(marked(&seen, ino_a, DIR_EGRESS), want_out, "{expr:?} on {}/eth0 egress", a.name);
        let want_in: BTreeSet<usize> = delivered.iter().copied().filter(|&i| filter::matches(&prog, &frames[i], DIR_INGRESS)).collect();
        let got_in: BTreeSet<usize> = marked(&seen, ino_b, DIR_INGRESS).intersection(&delivered).copied().collect();
        assert_eq!(got_in, want_in, "{expr:?} on {}/eth0 ingress", b.name);
        // Every event that passed, crafted or not (replies, neighbour
        // discovery, whatever the bridge made of odd frames), is one the
        // userspace evaluator accepts too. A tag the receiving device took
        // out of the frame is judged on the frame as sent.
        for s in &seen {
            let frame = match marker_index(&s.frame) {
                Some(i) if tagged(&frames[i]) => &frames[i],
                _ => &s.frame,
            };
            assert!(filter::matches(&prog, frame, s.direction), "{expr:?} let through {s:?}");
        }
    }
    // Back to everything.
    cap.install("");
    send_frames(a, &frames, &tmp.0);
    assert_eq!(marked(&cap.take(), ino_a, DIR_EGRESS), sent_all);
}

/// What a real packet was, decoded independently of the filter.
#[derive(Debug, Clone, PartialEq)]
struct Pkt {
    netns: u64,
    direction: u8,
    proto: &'static str,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: u16,
    dport: u16,
    icmp_type: Option<u8>,
}

fn decode(s: &Seen) -> Pkt {
    let mut p = Pkt { netns: s.netns, direction: s.direction, proto: "other", src: None, dst: None, sport: 0, dport: 0, icmp_type: None };
    let Ok(sp) = SlicedPacket::from_ethernet(&s.frame) else { return p };
    match &sp.net {
        Some(NetSlice::Ipv4(ip)) => {
            p.src = Some(IpAddr::from(ip.header().source()));
            p.dst = Some(IpAddr::from(ip.header().destination()));
        }
        Some(NetSlice::Ipv6(ip)) => {
            p.src = Some(IpAddr::from(ip.header().source()));
            p.dst = Some(IpAddr::from(ip.header().destination()));
        }
        Some(NetSlice::Arp(_)) => p.proto = "arp",
        None => {}
    }
    match &sp.transport {
        Some(TransportSlice::Udp(u)) => (p.proto, p.sport, p.dport) = ("udp", u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (p.proto, p.sport, p.dport) = ("tcp", t.source_port(), t.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => (p.proto, p.icmp_type) = ("icmp", Some(i.type_u8())),
        Some(TransportSlice::Icmpv6(i)) => (p.proto, p.icmp_type) = ("icmp6", Some(i.type_u8())),
        _ => {}
    }
    p
}

/// Traffic made by ordinary sockets: UDP to two ports and TCP from `a` and
/// `c` to `b`, and ICMP echo from `a` to `b`.
fn real_traffic(a: &LabNs, b: &LabNs, c: &LabNs) {
    // Servers that end by themselves, even if the test dies first.
    let server = format!(
        "
import socket, threading, time
u = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
u[0].bind(('{b}', 5353))
u[1].bind(('{b}', 9999))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('{b}', 8080))
t.listen(8)
def serve():
    while True:
        c, _ = t.accept()
        c.sendall(c.recv(100))
        c.close()
threading.Thread(target=serve, daemon=True).start()
print('up', flush=True)
time.sleep(8)
",
        b = b.ip
    );
    let mut srv = b.spawn(&format!("exec python3 -u -c {}", tracer_tests::shell_quote(&server)));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(srv.stdout.take().expect("stdout")), &mut line).expect("server up");
    assert_eq!(line.trim(), "up");
    let client = format!(
        "
import socket, struct
def checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    u.sendto(b'mdns', ('{b}', 5353))
    u.sendto(b'other', ('{b}', 9999))
t = socket.create_connection(('{b}', 8080), timeout=3)
t.sendall(b'hello')
assert t.recv(100) == b'hello'
t.close()
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(2):
    h = struct.pack('!BBHHH', 8, 0, 0, 0x4242, seq) + b'filtertest'
    r.sendto(struct.pack('!BBHHH', 8, 0, checksum(h), 0x4242, seq) + b'filtertest', ('{b}', 0))
",
        b = b.ip
    );
    a.sh(&format!("python3 -c {}", tracer_tests::shell_quote(&client)));
    let from_c = format!(
        "
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    u.sendto(b'mdns', ('{b}', 5353))
",
        b = b.ip
    );
    c.sh(&format!("python3 -c {}", tracer_tests::shell_quote(&from_c)));
    // Replies (echo replies, the TCP close) need a moment.
    std::thread::sleep(Duration::from_millis(200));
    let _ = srv.kill();
    let _ = srv.wait();
}

/// Real UDP, TCP and ICMP between three namespaces on a bridge: what the
/// filter excludes never reaches userspace, and what it includes does.
#[test]
fn filters_real_traffic_between_namespaces() {
    let lab = Lab::new(3);
    let (a, b, c) = (&lab.ns[0], &lab.ns[1], &lab.ns[2]);
    let (ia, ib, ic) = (a.inode(), b.inode(), c.inode());
    let ip = |ns: &LabNs| Some(ns.ip.parse::<IpAddr>().expect("lab address"));
    let mut cap = Capture::attach(&[a, b, c]);

    // Only port-5353 UDP to or from a: never port 9999, never c's, never TCP or ICMP.
    cap.install(&format!("udp port 5353 and host {}", a.ip));
    real_traffic(a, b, c);
    let pkts: Vec<Pkt> = cap.take().iter().map(decode).collect();
    assert!(!pkts.is_empty(), "nothing passed");
    for p in &pkts {
        assert_eq!((p.proto, p.dport, p.src, p.dst), ("udp", 5353, ip(a), ip(b)), "{p:?}");
        assert_ne!(p.netns, ic, "{p:?}");
    }
    // All three datagrams, leaving a and entering b.
    let count = |ns, dir| pkts.iter().filter(|p| p.netns == ns && p.direction == dir).count();
    assert_eq!(count(ia, DIR_EGRESS), 3, "{pkts:?}");
    assert_eq!(count(ib, DIR_INGRESS), 3, "{pkts:?}");

    // Excluding a protocol: no UDP at all, while TCP and ICMP come through.
    cap.install("not udp");
    real_traffic(a, b, c);
    let pkts: Vec<Pkt> = cap.take().iter().map(decode).collect();
    assert!(pkts.iter().all(|p| p.proto != "udp"), "{pkts:?}");
    let tcp_in_b = pkts.iter().filter(|p| p.proto == "tcp" && p.netns == ib && p.direction == DIR_INGRESS && p.dport == 8080).count();
    assert!(tcp_in_b >= 3, "SYN, data, ACKs, FIN into b: {tcp_in_b}");
    let echo = |ns, dir, ty| pkts.iter().filter(|p| p.proto == "icmp" && p.netns == ns && p.direction == dir && p.icmp_type == Some(ty)).count();
    assert_eq!(echo(ia, DIR_EGRESS, 8), 2, "echo requests out of a: {pkts:?}");
    assert_eq!(echo(ib, DIR_INGRESS, 8), 2, "echo requests into b");
    assert_eq!(echo(ib, DIR_EGRESS, 0), 2, "echo replies out of b");
    assert_eq!(echo(ia, DIR_INGRESS, 0), 2, "echo replies into a");

    // tcpdump precedence and direction: (icmp or tcp port 8080) and inbound.
    cap.install("icmp or tcp port 8080 and inbound");
    real_traffic(a, b, c);
    let pkts: Vec<Pkt> = cap.take().iter().map(decode).collect();
    assert!(pkts.iter().all(|p| p.direction == DIR_INGRESS), "{pkts:?}");
    assert!(pkts.iter().all(|p| p.proto == "icmp" || (p.proto == "tcp" && (p.sport == 8080 || p.dport == 8080))), "{pkts:?}");
    assert!(pkts.iter().any(|p| p.proto == "icmp" && p.netns == ib), "{pkts:?}");
    assert!(pkts.iter().any(|p| p.proto == "tcp" && p.netns == ia && p.sport == 8080), "{pkts:?}");

    // Source host only: c's datagrams and nothing of a's or b's.
    cap.install(&format!("src host {}", c.ip));
    real_traffic(a, b, c);
    let pkts: Vec<Pkt> = cap.take().iter().map(decode).collect();
    assert!(pkts.iter().filter(|p| p.proto != "arp").all(|p| p.src == ip(c)), "{pkts:?}");
    assert_eq!(pkts.iter().filter(|p| p.proto == "udp" && p.netns == ib && p.direction == DIR_INGRESS).count(), 3, "{pkts:?}");
}
