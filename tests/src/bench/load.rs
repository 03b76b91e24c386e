//! Loads made by threads of the benchmark itself, each socket opened from
//! a thread that entered the lab namespace it belongs to (a socket keeps
//! its namespace wherever it is used afterwards): one TCP stream (128 KiB
//! writes, as iperf3 makes them), a flood of 64-byte UDP datagrams as fast
//! as one sender goes, a loop of netlink address changes each waiting for
//! its answer; and the interfaces' own packet counters, read from
//! `/proc/thread-self/net/dev` inside a namespace.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Runs `f` on a new thread that first enters the network namespace at
/// `path` (the thread only: the rest of the process stays where it is).
pub fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // SAFETY: setns on this thread only, with an fd we hold open.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// (rx, tx) packets of every interface of a namespace (`None`: the
/// benchmark's own), by name.
pub fn if_packets(netns: Option<&str>) -> HashMap<String, (u64, u64)> {
    let read = || {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
        dev.lines()
            .skip(2)
            .filter_map(|l| {
                let (name, rest) = l.split_once(':')?;
                let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                Some((name.trim().to_string(), (*f.get(1)?, *f.get(9)?)))
            })
            .collect()
    };
    match netns {
        Some(p) => in_netns(p, read).join().unwrap_or_default(),
        None => read(),
    }
}

/// rx + tx packets of `ifname` in a namespace.
pub fn packets_of(netns: Option<&str>, ifname: &str) -> u64 {
    if_packets(netns).get(ifname).map(|(r, t)| r + t).unwrap_or(0)
}

const TCP_PORT: u16 = 5201;

/// One TCP stream from `a_ns` to `b_ip` in `b_ns` for `secs`: Gbit/s
/// received (bytes read by the receiver over the time from accept to EOF).
pub fn tcp_stream(a_ns: &str, b_ns: &str, b_ip: &str, secs: f64) -> f64 {
    let ip = b_ip.to_string();
    let listener = in_netns(b_ns, move || TcpListener::bind((ip.as_str(), TCP_PORT)).expect("listen")).join().expect("listener thread");
    let receiver = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        (n, t.elapsed())
    });
    let ip = b_ip.to_string();
    let mut c = in_netns(a_ns, move || TcpStream::connect((ip.as_str(), TCP_PORT)).expect("connect")).join().expect("connect thread");
    let buf = vec![b'y'; 128 << 10];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if c.write_all(&buf).is_err() {
            break;
        }
    }
    drop(c);
    let (n, took) = receiver.join().expect("receiver");
    n as f64 * 8.0 / took.as_secs_f64().max(1e-9) / 1e9
}

/// What a UDP flood did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flood {
    /// Datagrams the sender handed to the kernel.
    pub sent: u64,
    pub secs: f64,
    /// Packets the receiving interface counted meanwhile.
    pub delivered: u64,
}

impl Flood {
    pub fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }
}

const UDP_PORT: u16 = 9999;

/// 64-byte datagrams from `a_ns` to `b_ip` in `b_ns` as fast as one
/// sender goes, for `secs`, on one flow, to a bound socket nobody reads
/// (they are delivered, then dropped at its full buffer: no ICMP comes
/// back). `b_if` is the receiving interface, whose counter says how many arrived.
pub fn udp_flood(a_ns: &str, b_ns: &str, b_ip: &str, b_if: &str, secs: f64) -> Flood {
    flood(a_ns, b_ns, b_ip, b_if, secs, false)
}

/// [`udp_flood`], each datagram to the next of 50,000 ports: a new flow
/// for almost every packet (a flow table's worst case). Nothing listens
/// there; B answers some with ICMP errors (rate-limited by its kernel).
pub fn udp_flood_new_flows(a_ns: &str, b_ns: &str, b_ip: &str, b_if: &str, secs: f64) -> Flood {
    flood(a_ns, b_ns, b_ip, b_if, secs, true)
}

fn flood(a_ns: &str, b_ns: &str, b_ip: &str, b_if: &str, secs: f64, spread: bool) -> Flood {
    let ip = b_ip.to_string();
    let sink = in_netns(b_ns, move || UdpSocket::bind((ip.as_str(), UDP_PORT)).expect("bind")).join().expect("sink thread");
    let ip = b_ip.to_string();
    let s = in_netns(a_ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        if !spread {
            s.connect((ip.as_str(), UDP_PORT)).expect("connect");
        }
        s
    })
    .join()
    .expect("sender thread");
    let dst: std::net::Ipv4Addr = b_ip.parse().expect("an IPv4 address");
    let rx = |m: HashMap<String, (u64, u64)>| m.get(b_if).map(|(r, _)| *r).unwrap_or(0);
    let before = rx(if_packets(Some(b_ns)));
    let payload = [b'x'; 64];
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let mut port = 0u32;
    while Instant::now() < end {
        for _ in 0..256 {
            let r = if spread {
                port = (port + 1) % 50_000;
                s.send_to(&payload, (dst, 10_000 + port as u16))
            } else {
                s.send(&payload)
            };
            if r.is_ok() {
                sent += 1;
            }
        }
    }
    let took = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    let delivered = rx(if_packets(Some(b_ns))).saturating_sub(before);
    drop(sink);
    Flood { sent, secs: took, delivered }
}

/// A loop of `pairs` RTM_NEWADDR + RTM_DELADDR on `ifname` inside `ns`,
/// one request at a time, each waiting for its answer (2 * `pairs`
/// changes), sent from a thread of the benchmark. Addresses start at
/// 10.200.0.1. Returns the time the loop took and the answers with errno 0.
pub fn netlink_loop(ns: &str, ifname: &str, pairs: u32) -> (Duration, u64) {
    let ifname = std::ffi::CString::new(ifname).expect("interface name");
    in_netns(ns, move || {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        assert!(fd >= 0, "netlink socket: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        assert!(index > 0, "no interface {ifname:?}");
        let mut buf = vec![0u8; 65536];
        let mut ok = 0u64;
        let t = Instant::now();
        for i in 0..pairs {
            let addr = u32::from_be_bytes([10, 200, 0, 1]) + i % 65000;
            for (ty, flags) in [(20u16, 0x1 | 0x4 | 0x200 | 0x400), (21u16, 0x1 | 0x4)] {
                let msg = addr_msg(ty, flags, i, index, addr.to_be_bytes());
                // SAFETY: send(2) of a buffer we own, on our socket.
                let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
                if n < 0 {
                    continue;
                }
                // SAFETY: recv(2) into a buffer of buf.len() bytes.
                let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                // NLMSG_ERROR (2) with error 0 is the ack.
                if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 && i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) == 0 {
                    ok += 1;
                }
            }
        }
        (t.elapsed(), ok)
    })
    .join()
    .expect("netlink loop thread")
}

/// nlmsghdr + ifaddrmsg (AF_INET, /32) + IFA_LOCAL + IFA_ADDRESS.
fn addr_msg(ty: u16, flags: u16, seq: u32, index: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0]);
    m.extend_from_slice(&index.to_ne_bytes());
    for attr in [2u16, 1u16] {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(&ip);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_message_layout() {
        let m = addr_msg(20, 0x605, 7, 2, [10, 200, 0, 1]);
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 40);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 32, 0, 0]);
        assert_eq!(&m[24..26], &8u16.to_ne_bytes());
        assert_eq!(&m[28..32], &[10, 200, 0, 1]);
        assert_eq!(&m[36..40], &[10, 200, 0, 1]);
    }
}
