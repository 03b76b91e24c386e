//! TCP events decoded from their ring-buffer records, and their text and
//! JSON forms. What only the connection's history knows (time in the last
//! state, the peer's namespace, the summary at close) is filled in by the
//! [`super::tracker::Tracker`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value, json};
use tracer_common::{
    EventKind,
    tcp::{AF_INET, AF_INET6, TcpRecord, flags},
};

use crate::{
    bpf::{
        event::{RawEvent, read_pod},
        tp::EnumNames,
    },
    ns::{NetnsId, names::Naming},
    output::Render,
    sys::{
        clock::{self, Clock},
        text,
    },
};

/// The TCP states of `include/net/tcp_states.h` (unchanged since Linux 2.6).
pub fn state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

pub const TCP_CLOSE: u8 = 7;

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    State { old: u8, new: u8 },
    /// `err`: the negative errno of a failed attempt (then not a retransmission).
    /// `total_retrans`: the socket's running count of segments sent again.
    Retransmit { seq: Option<u32>, segs: u32, err: i32, total_retrans: u32 },
    ResetSent { reason: Option<String> },
    ResetReceived,
    Rtt { cwnd: u32 },
    /// The socket was destroyed; its kernel totals, where read.
    Close { bytes_acked: Option<u64>, bytes_received: Option<u64>, total_retrans: Option<u32> },
}

impl What {
    pub fn name(&self) -> &'static str {
        match self {
            What::State { .. } => "state",
            What::Retransmit { .. } => "retransmit",
            What::ResetSent { .. } => "reset_sent",
            What::ResetReceived => "reset_received",
            What::Rtt { .. } => "rtt",
            What::Close { .. } => "close",
        }
    }
}

/// A connection's history at its close, from the tracker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Since the first event seen (the connect, or tracing's start).
    pub duration_ns: u64,
    /// Whether the connection began while traced (else: before).
    pub seen_from_start: bool,
    /// The states it went through, in order.
    pub states: Vec<&'static str>,
    pub retransmits: u64,
    pub retransmitted_segs: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// min, avg, max smoothed RTT in microseconds, over the readings.
    pub rtt_us: Option<(u32, u32, u32)>,
    pub rtt_samples: u64,
}

/// One TCP event.
#[derive(Clone, Debug)]
pub struct TcpEvent {
    pub wall_ns: u64,
    /// Kernel monotonic time, for durations.
    pub mono_ns: u64,
    pub netns_ino: u32,
    /// The socket's namespace, with the container that owns it.
    pub netns: NetnsId,
    pub skaddr: u64,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// The socket's state at the event (the new one for state changes).
    pub state: u8,
    pub srtt_us: Option<u32>,
    pub what: What,
    /// There was no socket (a reset answering a segment nobody took).
    pub no_sock: bool,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// From the tracker: time spent in the state just left.
    pub in_state_ns: Option<u64>,
    /// From the tracker: the other end's namespace label and inode, when
    /// it is a socket on this host too.
    pub peer: Option<(String, u32)>,
    /// From the tracker, on `close`.
    pub summary: Option<Summary>,
}

fn addr(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*a);
        // A v4-mapped address of a dual-stack socket is shown as IPv4.
        v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

impl TcpEvent {
    /// Names the socket's namespace from `names` as it is now, when it was
    /// unnamed at decoding (the line is held a moment before it is printed).
    pub fn rename(&mut self, names: &impl Naming) {
        if self.netns.name.is_none() && !self.netns.host {
            let now = names.netns_id(self.netns.inode);
            if now.name.is_some() || now.host {
                self.netns = now;
            }
        }
    }

    /// Builds the event; `None` if malformed or not a TCP record.
    pub fn from_raw(ev: &RawEvent, clock: &Clock, names: &impl Naming, rst_reasons: &EnumNames) -> Option<Self> {
        let r: TcpRecord = read_pod(&ev.payload)?;
        if r.family != AF_INET && r.family != AF_INET6 {
            return None;
        }
        let srtt = (r.flags & flags::SRTT != 0).then_some(r.srtt_us);
        let what = match ev.kind {
            EventKind::TcpState => What::State { old: r.old_state, new: r.new_state },
            EventKind::TcpRetransmit => What::Retransmit {
                seq: (r.flags & flags::SEQ != 0).then_some(r.seq),
                segs: if r.flags & flags::SEGS != 0 { r.segs.max(1) } else { 1 },
                err: r.err,
                total_retrans: r.total_retrans,
            },
            EventKind::TcpResetSent => What::ResetSent {
                reason: (r.reason != u32::MAX)
                    .then(|| rst_reasons.name(u64::from(r.reason)).map(String::from).unwrap_or_else(|| format!("UNKNOWN_{}", r.reason))),
            },
            EventKind::TcpResetReceived => What::ResetReceived,
            EventKind::TcpRtt => What::Rtt { cwnd: r.snd_cwnd },
            EventKind::TcpDestroy => {
                let b = r.flags & flags::BYTES != 0;
                What::Close {
                    bytes_acked: b.then_some(r.bytes_acked),
                    bytes_received: b.then_some(r.bytes_received),
                    total_retrans: b.then_some(r.total_retrans),
                }
            }
            _ => return None,
        };
        let ns = u64::from(ev.header.netns_ino);
        let task = ev.header.pid_tgid != 0;
        Some(Self {
            wall_ns: clock.wall_ns(ev.header.ts_ns),
            mono_ns: ev.header.ts_ns,
            netns_ino: ev.header.netns_ino,
            netns: names.netns_id(ns),
            skaddr: r.skaddr,
            src: addr(r.family, &r.saddr),
            sport: r.sport,
            dst: addr(r.family, &r.daddr),
            dport: r.dport,
            state: r.new_state,
            srtt_us: srtt,
            what,
            no_sock: r.flags & flags::NO_SOCK != 0,
            pid: task.then(|| ev.tgid()),
            comm: task.then(|| ev.comm()),
            in_state_ns: None,
            peer: None,
            summary: None,
        })
    }

    fn endpoint(a: IpAddr, port: u16) -> String {
        match a {
            IpAddr::V6(_) => format!("[{a}]:{port}"),
            IpAddr::V4(_) => format!("{a}:{port}"),
        }
    }

    /// The connection as one raw-IP TCP segment from the socket's address
    /// and port to the peer's (no flags, no payload), for the packet filter
    /// (libpcap's, compiled for `DLT_RAW`): what `host`, `port`, `net`,
    /// `tcp` and `ip6` ask of a connection can be answered from it.
    pub fn segment(&self) -> Vec<u8> {
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&self.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dport.to_be_bytes());
        tcp[12] = 5 << 4;
        let mut p = Vec::with_capacity(60);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                // Version 4, 20-byte header, total length, TTL 64, TCP; no checksum.
                p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                // Version 6, payload length 20, next header TCP, hop limit 64.
                p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
                p.extend_from_slice(&v6(s).octets());
                p.extend_from_slice(&v6(d).octets());
            }
        }
        p.extend_from_slice(&tcp);
        p
    }

    /// `src:port > dst:port`.
    pub fn tuple_text(&self) -> String {
        format!("{} > {}", Self::endpoint(self.src, self.sport), Self::endpoint(self.dst, self.dport))
    }
}

/// `EBUSY`, `ENOMEM`, ... for a negative errno (the kernel's own names).
pub fn errno_name(err: i32) -> String {
    match -err {
        11 => "EAGAIN".into(),
        12 => "ENOMEM".into(),
        16 => "EBUSY".into(),
        105 => "ENOBUFS".into(),
        113 => "EHOSTUNREACH".into(),
        n => format!("errno {n}"),
    }
}

/// `1.23s`, `45.6ms`, `789us`.
pub fn duration_text(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

impl TcpEvent {
    /// How text names its namespace ([`NetnsId::label`]).
    pub fn label(&self) -> String {
        self.netns.label().into_owned()
    }
}

impl Render for TcpEvent {
    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), "tcp".into());
        m.insert("time".into(), clock::rfc3339(self.wall_ns).into());
        m.insert("netns".into(), serde_json::to_value(&self.netns).unwrap_or(Value::Null));
        m.insert("container".into(), serde_json::to_value(&self.netns.owner).unwrap_or(Value::Null));
        m.insert("event".into(), self.what.name().into());
        m.insert("src".into(), self.src.to_string().into());
        m.insert("sport".into(), self.sport.into());
        m.insert("dst".into(), self.dst.to_string().into());
        m.insert("dport".into(), self.dport.into());
        m.insert("state".into(), state_name(self.state).into());
        m.insert("socket".into(), format!("{:#x}", self.skaddr).into());
        if let Some((label, ino)) = &self.peer {
            m.insert("peer".into(), json!({"netns": ino, "label": label}));
        }
        if let Some(s) = self.srtt_us {
            m.insert("srtt_us".into(), s.into());
        }
        match &self.what {
            What::State { old, new } => {
                m.insert("old_state".into(), state_name(*old).into());
                m.insert("new_state".into(), state_name(*new).into());
                if let Some(d) = self.in_state_ns {
                    m.insert("old_state_ns".into(), d.into());
                }
            }
            What::Retransmit { seq, segs, err, total_retrans } => {
                m.insert("total_retrans".into(), (*total_retrans).into());
                m.insert("seq".into(), (*seq).into());
                m.insert("segs".into(), (*segs).into());
                m.insert("failed".into(), (*err != 0).into());
                if *err != 0 {
                    m.insert("error".into(), errno_name(*err).into());
                }
            }
            What::ResetSent { reason } => {
                m.insert("reason".into(), reason.clone().into());
                m.insert("no_socket".into(), self.no_sock.into());
            }
            What::ResetReceived => {}
            What::Rtt { cwnd } => {
                m.insert("snd_cwnd".into(), (*cwnd).into());
            }
            What::Close { bytes_acked, bytes_received, total_retrans } => {
                m.insert("bytes_acked".into(), (*bytes_acked).into());
                m.insert("bytes_received".into(), (*bytes_received).into());
                m.insert("total_retrans".into(), (*total_retrans).into());
                if let Some(s) = &self.summary {
                    m.insert("duration_ns".into(), s.duration_ns.into());
                    m.insert("seen_from_start".into(), s.seen_from_start.into());
                    m.insert("states".into(), s.states.clone().into());
                    m.insert("retransmits".into(), s.retransmits.into());
                    m.insert("retransmitted_segs".into(), s.retransmitted_segs.into());
                    m.insert("resets_sent".into(), s.resets_sent.into());
                    m.insert("resets_received".into(), s.resets_received.into());
                    m.insert("rtt_samples".into(), s.rtt_samples.into());
                    if let Some((lo, avg, hi)) = s.rtt_us {
                        m.insert("rtt_us".into(), json!({"min": lo, "avg": avg, "max": hi}));
                    }
                }
            }
        }
        if let Some(p) = self.pid {
            m.insert("pid".into(), p.into());
            m.insert("comm".into(), self.comm.clone().into());
        }
        Value::Object(m)
    }

    fn text(&self) -> String {
        let mut s = format!("{} {} {} ", clock::hms_micros(self.wall_ns), text::name(&self.label()), self.tuple_text());
        match &self.what {
            What::State { old, new } => {
                s.push_str(&format!("{} -> {}", state_name(*old), state_name(*new)));
                if let Some(d) = self.in_state_ns {
                    s.push_str(&format!(" (after {} in {})", duration_text(d), state_name(*old)));
                }
            }
            What::Retransmit { seq, segs, err, .. } => {
                s.push_str(if *err != 0 { "retransmit attempt failed" } else { "retransmit" });
                if *err != 0 {
                    s.push_str(&format!(" ({})", errno_name(*err)));
                }
                if let Some(q) = seq {
                    s.push_str(&format!(" seq {q}"));
                }
                if *segs > 1 {
                    s.push_str(&format!(" ({segs} segments)"));
                }
                s.push_str(&format!(" in {}", state_name(self.state)));
            }
            What::ResetSent { reason } => {
                s.push_str("reset sent");
                if let Some(r) = reason {
                    s.push_str(&format!(" ({r})"));
                }
                if self.no_sock {
                    s.push_str(" [no socket]");
                } else {
                    s.push_str(&format!(" in {}", state_name(self.state)));
                }
            }
            What::ResetReceived => s.push_str(&format!("reset received in {}", state_name(self.state))),
            What::Rtt { cwnd } => s.push_str(&format!("rtt cwnd {cwnd}")),
            What::Close { bytes_acked, bytes_received, .. } => {
                s.push_str("closed");
                if let Some(sum) = &self.summary {
                    let since = if sum.seen_from_start { "" } else { " (since tracing began)" };
                    s.push_str(&format!(" after {}{since}: {}", duration_text(sum.duration_ns), sum.states.join(">")));
                    s.push_str(&format!(", {} retransmits", sum.retransmits));
                    if sum.resets_sent + sum.resets_received > 0 {
                        s.push_str(&format!(", resets {} sent {} received", sum.resets_sent, sum.resets_received));
                    }
                    if let Some((lo, avg, hi)) = sum.rtt_us {
                        s.push_str(&format!(", rtt min/avg/max {lo}/{avg}/{hi} us"));
                    }
                }
                if let (Some(a), Some(r)) = (bytes_acked, bytes_received) {
                    s.push_str(&format!(", {a} bytes sent (acked), {r} received"));
                }
            }
        }
        if let Some(us) = self.srtt_us
            && us > 0
            && !matches!(self.what, What::Close { .. })
        {
            s.push_str(&format!(" srtt {us}us"));
        }
        if let Some((label, _)) = &self.peer {
            s.push_str(&format!(" [peer {}]", text::name(label)));
        }
        if let (Some(p), Some(c)) = (self.pid, &self.comm) {
            s.push_str(&format!(" by {}[{p}]", text::name(c)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tracer_common::EventHeader;

    use super::*;
    use crate::ns::names::NsNames;

    pub(crate) fn raw(kind: EventKind, r: TcpRecord, netns: u32, ts: u64) -> RawEvent {
        // SAFETY: TcpRecord is repr(C) POD.
        let payload = unsafe { std::slice::from_raw_parts(&r as *const _ as *const u8, size_of::<TcpRecord>()) }.to_vec();
        RawEvent {
            header: EventHeader {
                kind: kind as u32,
                cpu: 0,
                ts_ns: ts,
                pid_tgid: 0,
                uid_gid: 0,
                cgroup_id: 0,
                netns_ino: netns,
                payload_len: payload.len() as u32,
                comm: [0; 16],
            },
            kind,
            payload: Bytes::from(payload),
        }
    }

    pub(crate) fn rec(sport: u16, dport: u16) -> TcpRecord {
        let mut r = TcpRecord { skaddr: 0xffff_8880_0000_1000, family: AF_INET, sport, dport, reason: u32::MAX, ..Default::default() };
        r.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        r.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        r
    }

    /// The filter sees the connection as a segment from the socket's end:
    /// libpcap's own code (raw IP) answers host, port, net and family.
    #[test]
    fn the_segment_answers_libpcaps_filters() {
        use crate::tc::cbpf::{Dialect, Filter, LinkType};
        let names = NsNames::default();
        let rst = EnumNames::default();
        let c = Clock::new();
        let e = TcpEvent::from_raw(&raw(EventKind::TcpState, rec(40000, 80), 9, 1), &c, &names, &rst).expect("state");
        let mut r6 = rec(40000, 443);
        r6.family = AF_INET6;
        r6.saddr = "fd00::1".parse::<Ipv6Addr>().expect("v6").octets();
        r6.daddr = "fd00::2".parse::<Ipv6Addr>().expect("v6").octets();
        let e6 = TcpEvent::from_raw(&raw(EventKind::TcpState, r6, 9, 1), &c, &names, &rst).expect("state");
        let keeps = |expr: &str, e: &TcpEvent| {
            let f = Filter::compile(expr, LinkType::RawIp, Dialect::File).expect(expr);
            let seg = e.segment();
            f.matches(&seg, seg.len() as u32)
        };
        for (expr, v4, v6) in [
            ("tcp", true, true),
            ("udp", false, false),
            ("dst port 80 and src host 10.0.0.1", true, false),
            ("src port 80", false, false),
            ("net 10.0.0.0/24 and tcp port 40000", true, false),
            ("ip6 and dst host fd00::2 and port 443", false, true),
            ("not port 80", false, true),
        ] {
            assert_eq!((keeps(expr, &e), keeps(expr, &e6)), (v4, v6), "{expr}");
        }
    }

    #[test]
    fn decodes_each_kind() {
        let names = NsNames::default();
        let rst = EnumNames::from_members(vec![("SK_RST_REASON_NO_SOCKET".into(), 1)], &["SK_RST_REASON_"]);
        let c = Clock::new();
        let mut r = rec(40000, 80);
        r.old_state = 2;
        r.new_state = 1;
        let e = TcpEvent::from_raw(&raw(EventKind::TcpState, r, 9, 1), &c, &names, &rst).expect("state");
        assert_eq!(e.what, What::State { old: 2, new: 1 });
        assert!(e.text().ends_with(" 9 10.0.0.1:40000 > 10.0.0.2:80 SYN_SENT -> ESTABLISHED"), "{}", e.text());
        let j = e.json();
        assert_eq!((j["type"].as_str(), j["event"].as_str(), j["new_state"].as_str()), (Some("tcp"), Some("state"), Some("ESTABLISHED")));

        let mut r = rec(40000, 80);
        r.new_state = 1;
        r.seq = 1234;
        r.segs = 3;
        r.srtt_us = 50;
        r.flags = flags::SEQ | flags::SEGS | flags::SRTT;
        let e = TcpEvent::from_raw(&raw(EventKind::TcpRetransmit, r, 9, 1), &c, &names, &rst).expect("retrans");
        assert_eq!(e.what, What::Retransmit { seq: Some(1234), segs: 3, err: 0, total_retrans: 0 });
        assert!(e.text().contains("retransmit seq 1234 (3 segments) in ESTABLISHED srtt 50us"), "{}", e.text());
        r.err = -16;
        let e = TcpEvent::from_raw(&raw(EventKind::TcpRetransmit, r, 9, 1), &c, &names, &rst).expect("retrans");
        assert!(e.text().contains("retransmit attempt failed (EBUSY) seq 1234"), "{}", e.text());
        assert_eq!((e.json()["failed"].as_bool(), e.json()["error"].as_str()), (Some(true), Some("EBUSY")));

        let mut r = rec(80, 40000);
        r.reason = 1;
        r.flags = flags::NO_SOCK;
        let e = TcpEvent::from_raw(&raw(EventKind::TcpResetSent, r, 9, 1), &c, &names, &rst).expect("rst");
        assert!(e.text().contains("reset sent (NO_SOCKET) [no socket]"), "{}", e.text());
        assert_eq!(e.json()["no_socket"], true);

        // IPv6, v4-mapped shown as IPv4.
        let mut r = rec(1, 2);
        r.family = AF_INET6;
        r.saddr = Ipv6Addr::LOCALHOST.octets();
        r.daddr = Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped().octets();
        let e = TcpEvent::from_raw(&raw(EventKind::TcpResetReceived, r, 9, 1), &c, &names, &rst).expect("v6");
        assert_eq!(e.tuple_text(), "[::1]:1 > 10.0.0.9:2");
        // Unknown family, short payload, wrong kind: refused.
        let mut r = rec(1, 2);
        r.family = 99;
        assert!(TcpEvent::from_raw(&raw(EventKind::TcpRtt, r, 9, 1), &c, &names, &rst).is_none());
        let mut bad = raw(EventKind::TcpRtt, rec(1, 2), 9, 1);
        bad.payload = Bytes::from_static(&[0; 10]);
        assert!(TcpEvent::from_raw(&bad, &c, &names, &rst).is_none());
        assert!(TcpEvent::from_raw(&raw(EventKind::Packet, rec(1, 2), 9, 1), &c, &names, &rst).is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(789_000), "789us");
        assert_eq!(duration_text(45_600_000), "45.6ms");
        assert_eq!(duration_text(1_230_000_000), "1.23s");
    }
}
