use std::net::{IpAddr, Ipv4Addr};

use aya::Pod;
use tracer_common::{EventHeader, EventKind, sock::SockEvent};

use super::*;

const NS_A: u64 = 4_026_532_100;
const NS_B: u64 = 4_026_532_200;
const SEC: u64 = 1_000_000_000;

fn bytes_of<T: Pod>(v: &T) -> Vec<u8> {
    // SAFETY: T is Pod (plain old data), so its bytes are initialized.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn v4(s: &str) -> [u8; 16] {
    let a: Ipv4Addr = s.parse().expect("v4");
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a.octets());
    out
}

/// A socket event as the kernel writes it, parsed as the reader does.
#[allow(clippy::too_many_arguments)]
fn ev(ts: u64, op: u8, task: Option<(u32, &str, u64)>, netns: u64, cookie: u64, proto: u8, l: (&str, u16), r: (&str, u16)) -> RawEvent {
    let mut comm = [0u8; 16];
    let (pid, name, start_ns) = task.unwrap_or((0, "", 0));
    comm[..name.len()].copy_from_slice(name.as_bytes());
    let hdr = EventHeader {
        kind: EventKind::Sock as u32,
        cpu: 0,
        ts_ns: ts,
        pid_tgid: (u64::from(pid) << 32) | u64::from(pid),
        uid_gid: 1000,
        cgroup_id: 7,
        netns_ino: netns as u32,
        payload_len: size_of::<SockEvent>() as u32,
        comm,
    };
    let se = SockEvent {
        cookie,
        start_ns,
        op,
        flags: if task.is_some() { flags::TASK } else { 0 },
        family: 2,
        protocol: proto,
        lport: l.1,
        rport: r.1,
        laddr: v4(l.0),
        raddr: v4(r.0),
    };
    let rec = [bytes_of(&hdr), bytes_of(&se)].concat();
    RawEvent::parse(&rec).expect("record")
}

fn ep(proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> Endpoints {
    Endpoints { proto, src: ip(src), sport, dst: ip(dst), dport }
}

type Named = Option<(u32, String)>;

fn names(p: (Option<Arc<Process>>, Option<Arc<Process>>)) -> (Named, Named) {
    (p.0.map(|p| (p.pid, p.comm.clone())), p.1.map(|p| (p.pid, p.comm.clone())))
}

fn some(pid: u32, comm: &str) -> Named {
    Some((pid, comm.to_string()))
}

const ANY: (&str, u16) = ("0.0.0.0", 0);
const EGRESS_A: Hop = Hop { netns_ino: NS_A, egress: true };
const INGRESS_A: Hop = Hop { netns_ino: NS_A, egress: false };
const EGRESS_B: Hop = Hop { netns_ino: NS_B, egress: true };
const INGRESS_B: Hop = Hop { netns_ino: NS_B, egress: false };
const HOST_IN: Hop = Hop { netns_ino: 1, egress: false };

/// A UDP server bound in B, a client in A sending with sendto.
fn udp_pair(o: &mut Owners) {
    o.push(&ev(1, op::CREATE, Some((200, "server", 5 * SEC)), NS_B, 20, 17, ANY, ANY));
    o.push(&ev(2, op::BIND, Some((200, "server", 5 * SEC)), NS_B, 20, 17, ("0.0.0.0", 5000), ANY));
    o.push(&ev(3, op::CREATE, Some((100, "client", 6 * SEC)), NS_A, 10, 17, ANY, ANY));
    o.push(&ev(4, op::SEND, Some((100, "client", 6 * SEC)), NS_A, 10, 17, ("0.0.0.0", 40000), ("10.0.0.2", 5000)));
}

#[test]
fn udp_sender_by_cookie_receiver_by_port_in_its_own_namespace() {
    let mut o = Owners::new(100);
    udp_pair(&mut o);
    let req = ep(17, "10.0.0.1", 40000, "10.0.0.2", 5000);
    // The client's eth0: its socket rides on the packet; the server is elsewhere.
    assert_eq!(names(o.attribute(5, 10, EGRESS_A, Some(&req))), (some(100, "client"), None));
    // The server's eth0: no socket on the packet (a router orphaned it);
    // the server's unconnected socket receives what arrives on its port.
    assert_eq!(names(o.attribute(6, 0, INGRESS_B, Some(&req))), (None, some(200, "server")));
    // In the host's namespace nobody holds port 5000 there: nobody.
    assert_eq!(names(o.attribute(6, 0, HOST_IN, Some(&req))), (None, None));
    // The answer: the server sends (its send reports its port), the client receives.
    o.push(&ev(7, op::SEND, Some((200, "server", 5 * SEC)), NS_B, 20, 17, ("0.0.0.0", 5000), ("10.0.0.1", 40000)));
    let rep = ep(17, "10.0.0.2", 5000, "10.0.0.1", 40000);
    assert_eq!(names(o.attribute(8, 20, EGRESS_B, Some(&rep))), (some(200, "server"), None));
    assert_eq!(names(o.attribute(9, 0, INGRESS_A, Some(&rep))), (None, some(100, "client")));
    // Start times are clock ticks (100 per second here).
    let p = o.attribute(9, 10, EGRESS_A, Some(&req)).0.expect("client");
    assert_eq!((p.start_ticks, p.uid, p.tid, p.netns_ino), (600, 1000, 100, NS_A));
    assert_eq!((o.counts.sender_by_cookie, o.counts.receiver_by_port), (3, 2));
}

#[test]
fn tcp_connection_is_named_on_every_hop_and_accepted_socket_gets_the_listener_owner() {
    let mut o = Owners::new(100);
    let srv = Some((200, "nginx", SEC));
    let cli = Some((100, "curl", 2 * SEC));
    o.push(&ev(1, op::CREATE, srv, NS_B, 20, 6, ANY, ANY));
    o.push(&ev(2, op::BIND, srv, NS_B, 20, 6, ("0.0.0.0", 80), ANY));
    o.push(&ev(3, op::LISTEN, None, NS_B, 20, 6, ("0.0.0.0", 80), ANY));
    o.push(&ev(4, op::CREATE, cli, NS_A, 10, 6, ANY, ANY));
    o.push(&ev(5, op::CONNECT, cli, NS_A, 10, 6, ANY, ("10.0.0.2", 80)));
    o.push(&ev(6, op::CONNECTED, None, NS_A, 10, 6, ("10.0.0.1", 50000), ("10.0.0.2", 80)));
    let syn = ep(6, "10.0.0.1", 50000, "10.0.0.2", 80);
    // Exact tuple: on any interface, the host's included.
    assert_eq!(names(o.attribute(7, 0, HOST_IN, Some(&syn))), (some(100, "curl"), None));
    // Before the accept, the listener receives.
    assert_eq!(names(o.attribute(7, 0, INGRESS_B, Some(&syn))), (some(100, "curl"), some(200, "nginx")));
    // The SYN-ACK leaves with a request socket's cookie nobody knows: by port.
    let synack = ep(6, "10.0.0.2", 80, "10.0.0.1", 50000);
    assert_eq!(names(o.attribute(8, 999, EGRESS_B, Some(&synack))), (some(200, "nginx"), some(100, "curl")));
    o.push(&ev(9, op::ACCEPTED, None, NS_B, 30, 6, ("10.0.0.2", 80), ("10.0.0.1", 50000)));
    assert_eq!(names(o.attribute(10, 30, EGRESS_B, Some(&synack))), (some(200, "nginx"), some(100, "curl")));
    assert_eq!(names(o.attribute(10, 0, HOST_IN, Some(&synack))), (some(200, "nginx"), some(100, "curl")));
    assert_eq!(o.counts.unknown_cookie, 0, "999 was matched by port");
    // A reset from the kernel's own socket to a port nobody holds: counted.
    let rst = ep(6, "10.0.0.2", 81, "10.0.0.1", 50001);
    assert_eq!(names(o.attribute(11, 12345, EGRESS_B, Some(&rst))), (None, None));
    assert_eq!(o.counts.unknown_cookie, 1);
}

#[test]
fn a_short_lived_process_is_named_through_the_grace_period_only() {
    let mut o = Owners::new(100);
    udp_pair(&mut o);
    o.push(&ev(10 * SEC, op::RELEASE, None, 0, 10, 17, ANY, ANY));
    let req = ep(17, "10.0.0.1", 40000, "10.0.0.2", 5000);
    let t = 10 * SEC + RELEASE_GRACE_NS - 1;
    assert_eq!(names(o.attribute(t, 10, EGRESS_A, Some(&req))).0, some(100, "client"));
    o.sweep(t);
    let rep = ep(17, "10.0.0.2", 5000, "10.0.0.1", 40000);
    assert_eq!(names(o.attribute(t, 0, INGRESS_A, Some(&rep))).1, some(100, "client"));
    let later = 10 * SEC + RELEASE_GRACE_NS + 1;
    assert_eq!(names(o.attribute(later, 10, EGRESS_A, Some(&req))).0, None);
    o.sweep(later);
    assert_eq!(o.sizes().0, 1, "only the server's socket is left");
    assert_eq!(names(o.attribute(later, 0, INGRESS_A, Some(&rep))).1, None);
}

#[test]
fn pid_reuse_makes_another_process_and_enrichment_stays_with_its_own() {
    let mut o = Owners::new(100);
    o.push(&ev(1, op::CREATE, Some((100, "old", SEC)), NS_A, 10, 17, ANY, ANY));
    o.push(&ev(2, op::CREATE, Some((100, "new", 9 * SEC)), NS_A, 11, 17, ANY, ANY));
    let fresh = o.take_new_processes();
    assert_eq!(fresh.len(), 2);
    let mut old = (*fresh[0]).clone();
    old.cmdline = Some("old --serve".into());
    o.enrich(old);
    let a = o.attribute(3, 10, EGRESS_A, None).0.expect("old");
    let b = o.attribute(3, 11, EGRESS_A, None).0.expect("new");
    assert_eq!((a.comm.as_str(), a.cmdline.as_deref()), ("old", Some("old --serve")));
    assert_eq!((b.comm.as_str(), b.cmdline.as_deref()), ("new", None));
    // The same process again: not asked twice.
    o.push(&ev(4, op::CREATE, Some((100, "new", 9 * SEC)), NS_A, 12, 17, ANY, ANY));
    assert!(o.take_new_processes().is_empty());
}

#[test]
fn two_processes_sending_to_one_server_are_told_apart() {
    let mut o = Owners::new(100);
    udp_pair(&mut o);
    o.push(&ev(5, op::CREATE, Some((101, "other", 7 * SEC)), NS_A, 11, 17, ANY, ANY));
    o.push(&ev(6, op::SEND, Some((101, "other", 7 * SEC)), NS_A, 11, 17, ("0.0.0.0", 40001), ("10.0.0.2", 5000)));
    let a = ep(17, "10.0.0.1", 40000, "10.0.0.2", 5000);
    let b = ep(17, "10.0.0.1", 40001, "10.0.0.2", 5000);
    assert_eq!(names(o.attribute(7, 10, EGRESS_A, Some(&a))).0, some(100, "client"));
    assert_eq!(names(o.attribute(7, 11, EGRESS_A, Some(&b))).0, some(101, "other"));
    // Without cookies (the port decides, in the sender's namespace).
    assert_eq!(names(o.attribute(7, 0, EGRESS_A, Some(&b))).0, some(101, "other"));
    // A socket handed to another process: the next send names the sender.
    o.push(&ev(8, op::SEND, Some((102, "heir", 8 * SEC)), NS_A, 11, 17, ("0.0.0.0", 40001), ("10.0.0.2", 5000)));
    assert_eq!(names(o.attribute(9, 11, EGRESS_A, Some(&b))).0, some(102, "heir"));
}

#[test]
fn connected_udp_learns_its_port_from_its_first_packet() {
    let mut o = Owners::new(100);
    let c = Some((100, "dig", SEC));
    o.push(&ev(1, op::CREATE, c, NS_A, 10, 17, ANY, ANY));
    o.push(&ev(2, op::CONNECT, c, NS_A, 10, 17, ANY, ("10.0.0.53", 53)));
    let q = ep(17, "10.0.0.1", 33333, "10.0.0.53", 53);
    let r = ep(17, "10.0.0.53", 53, "10.0.0.1", 33333);
    assert_eq!(names(o.attribute(3, 0, INGRESS_A, Some(&r))).1, None, "port not known yet");
    assert_eq!(names(o.attribute(4, 10, EGRESS_A, Some(&q))).0, some(100, "dig"));
    // Connected: the exact tuple matches anywhere.
    assert_eq!(names(o.attribute(5, 0, HOST_IN, Some(&r))).1, some(100, "dig"));
}

#[test]
fn sockets_from_before_the_start_and_their_accepted_connections() {
    let mut o = Owners::new(100);
    let owner = Process { pid: 300, tid: 300, uid: 0, comm: "old-srv".into(), start_ticks: 5, cgroup_id: 0, netns_ino: NS_B, cmdline: None, container: None };
    o.add_existing(40, NS_B, 6, (ip("0.0.0.0"), 8080), None, true, Some(owner));
    o.add_existing(41, NS_B, 6, (ip("::ffff:10.0.0.2"), 8080), Some((ip("::ffff:10.0.0.1"), 1234)), false, None);
    o.push(&ev(1, op::ACCEPTED, None, NS_B, 42, 6, ("10.0.0.2", 8080), ("10.0.0.1", 5555)));
    let e = ep(6, "10.0.0.2", 8080, "10.0.0.1", 5555);
    assert_eq!(names(o.attribute(2, 42, EGRESS_B, Some(&e))).0, some(300, "old-srv"));
    // A socket whose process was not found: matched, but names nobody.
    let e2 = ep(6, "10.0.0.1", 1234, "10.0.0.2", 8080);
    assert_eq!(names(o.attribute(2, 0, INGRESS_B, Some(&e2))), (None, None));
}

#[test]
fn tables_stay_within_their_caps_under_a_flood() {
    let mut o = Owners::new(100);
    for i in 0..(SOCKS_MAX as u64 + 5_000) {
        let netns = 1000 + i % 300;
        let t = Some((1 + (i % 50_000) as u32, "flood", i));
        o.push(&ev(i, op::CREATE, t, netns, i + 1, 17, ANY, ANY));
        o.push(&ev(i, op::BIND, t, netns, i + 1, 17, ("0.0.0.0", (i % 200) as u16 + 1), ANY));
    }
    let (socks, ports, procs) = o.sizes();
    assert!(socks <= SOCKS_MAX && ports <= PORTS_MAX && procs <= PROCESSES_MAX, "{socks} {ports} {procs}");
    assert!(o.ports.iter().all(|(_, v)| v.len() <= PER_PORT_MAX));
    assert!(o.counts.evicted > 0);
    // The newest are there.
    let last = SOCKS_MAX as u64 + 5_000;
    assert!(o.attribute(last, last, Hop { netns_ino: 1000 + (last - 1) % 300, egress: true }, None).0.is_some());
    assert!(o.take_new_processes().len() <= NEW_PROCESSES_MAX);
    assert!(o.counts.unenriched > 0);
}
