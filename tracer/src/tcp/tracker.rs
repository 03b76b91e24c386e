//! Connection history for `tracer tcp`: per socket, the states it went
//! through and when, its retransmissions, resets and RTT readings, so each
//! event can say how long the state it left lasted, which namespace the
//! other end is in (when it is a socket on this host), and a socket's
//! close can carry its summary.
//!
//! Keyed by the socket's kernel address, which identifies a connection
//! from its first state change to its destruction (the address is reused
//! only after). Bounded: at most [`MAX_CONNS`] connections (the oldest
//! go first, counted in [`Tracker::evicted`]; a socket whose destruction
//! was lost would otherwise stay for ever) and [`MAX_STATES`] states each.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use super::event::{Summary, TCP_CLOSE, TcpEvent, What, state_name};

pub const MAX_CONNS: usize = 65_536;
pub const MAX_STATES: usize = 32;

const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_LISTEN: u8 = 10;

type Tuple = (IpAddr, u16, IpAddr, u16);

#[derive(Debug)]
struct Conn {
    generation: u64,
    netns: u32,
    label: String,
    tuple: Tuple,
    first_ns: u64,
    from_start: bool,
    state_since_ns: Option<u64>,
    states: Vec<&'static str>,
    retransmits: u64,
    segs: u64,
    resets_sent: u64,
    resets_received: u64,
    rtt_min: u32,
    rtt_max: u32,
    rtt_sum: u64,
    rtt_n: u64,
}

impl Conn {
    fn rtt(&mut self, us: u32) {
        // Before the first measurement the kernel's srtt is 0.
        if us == 0 {
            return;
        }
        if self.rtt_n == 0 {
            self.rtt_min = us;
            self.rtt_max = us;
        }
        self.rtt_min = self.rtt_min.min(us);
        self.rtt_max = self.rtt_max.max(us);
        self.rtt_sum += u64::from(us);
        self.rtt_n += 1;
    }

    fn push_state(&mut self, s: &'static str) {
        if self.states.len() < MAX_STATES && self.states.last() != Some(&s) {
            self.states.push(s);
        }
    }

    fn summary(&self, now_ns: u64) -> Summary {
        Summary {
            duration_ns: now_ns.saturating_sub(self.first_ns),
            seen_from_start: self.from_start,
            states: self.states.clone(),
            retransmits: self.retransmits,
            retransmitted_segs: self.segs,
            resets_sent: self.resets_sent,
            resets_received: self.resets_received,
            rtt_us: (self.rtt_n > 0).then(|| (self.rtt_min, (self.rtt_sum / self.rtt_n) as u32, self.rtt_max)),
            rtt_samples: self.rtt_n,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    conns: HashMap<u64, Conn>,
    /// Connections in the order they were first seen (with their
    /// generation, so an entry re-created under the same address is not
    /// evicted for its predecessor).
    order: VecDeque<(u64, u64)>,
    by_tuple: HashMap<Tuple, u64>,
    generation: u64,
    /// Connections forgotten before their close to stay within [`MAX_CONNS`].
    pub evicted: u64,
    max: usize,
}

impl Tracker {
    pub fn new() -> Self {
        Self::with_max(MAX_CONNS)
    }

    pub fn with_max(max: usize) -> Self {
        Self { max: max.max(1), ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Adds an event to its connection's history and fills in what the
    /// history knows. Returns false for an event not worth printing: the
    /// close of a socket that never connected nor listened.
    pub fn observe(&mut self, e: &mut TcpEvent) -> bool {
        let tuple = (e.src, e.sport, e.dst, e.dport);
        if e.no_sock {
            e.peer = self.peer_of(&tuple);
            return true;
        }
        let known = self.conns.contains_key(&e.skaddr);
        if !known {
            if matches!(e.what, What::Close { .. }) && e.dport == 0 {
                return false;
            }
            self.insert(e, tuple);
        }
        let Some(c) = self.conns.get_mut(&e.skaddr) else { return true };
        // The kernel clears the local port when it unhashes a closing
        // socket: its last events keep the connection's known ends.
        if (e.sport == 0 || e.dport == 0) && c.tuple.1 != 0 && c.tuple.3 != 0 {
            (e.src, e.sport, e.dst, e.dport) = c.tuple;
        }
        let tuple = (e.src, e.sport, e.dst, e.dport);
        if c.tuple != tuple {
            self.by_tuple.remove(&c.tuple);
            c.tuple = tuple;
        }
        self.by_tuple.insert(tuple, e.skaddr);
        if let Some(s) = e.srtt_us {
            c.rtt(s);
        }
        match &e.what {
            What::State { new, .. } => {
                e.in_state_ns = c.state_since_ns.map(|t| e.mono_ns.saturating_sub(t));
                c.state_since_ns = Some(e.mono_ns);
                c.push_state(state_name(*new));
            }
            What::Retransmit { segs, err: 0, .. } => {
                c.retransmits += 1;
                c.segs += u64::from(*segs);
            }
            What::Retransmit { .. } => {}
            What::ResetSent { .. } => c.resets_sent += 1,
            What::ResetReceived => c.resets_received += 1,
            What::Rtt { .. } => {}
            What::Close { .. } => {
                c.push_state(state_name(e.state));
                e.summary = Some(c.summary(e.mono_ns));
            }
        }
        e.peer = self.peer_of(&tuple);
        if matches!(e.what, What::Close { .. }) {
            self.remove(e.skaddr);
        }
        true
    }

    fn insert(&mut self, e: &TcpEvent, tuple: Tuple) {
        while self.conns.len() >= self.max {
            let Some((addr, generation)) = self.order.pop_front() else { break };
            if self.conns.get(&addr).is_some_and(|c| c.generation == generation) {
                self.remove(addr);
                self.evicted += 1;
            }
        }
        self.generation += 1;
        // Seen from its start: a connect, a passive open's child, a listen.
        let (from_start, first) = match e.what {
            What::State { old, new } if (old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN)) || new == TCP_SYN_RECV => {
                (true, state_name(old))
            }
            What::State { old, .. } => (false, state_name(old)),
            _ => (false, state_name(e.state)),
        };
        let mut c = Conn {
            generation: self.generation,
            netns: e.netns_ino,
            label: e.label(),
            tuple,
            first_ns: e.mono_ns,
            from_start,
            state_since_ns: None,
            states: Vec::new(),
            retransmits: 0,
            segs: 0,
            resets_sent: 0,
            resets_received: 0,
            rtt_min: 0,
            rtt_max: 0,
            rtt_sum: 0,
            rtt_n: 0,
        };
        c.push_state(first);
        self.conns.insert(e.skaddr, c);
        self.order.push_back((e.skaddr, self.generation));
        // The order queue holds stale entries of closed connections; keep
        // it from growing past twice the table.
        if self.order.len() > 2 * self.max {
            let conns = &self.conns;
            self.order.retain(|(a, g)| conns.get(a).is_some_and(|c| c.generation == *g));
        }
    }

    fn remove(&mut self, addr: u64) {
        if let Some(c) = self.conns.remove(&addr)
            && self.by_tuple.get(&c.tuple) == Some(&addr)
        {
            self.by_tuple.remove(&c.tuple);
        }
    }

    /// The namespace of the socket at the other end of `tuple`, if traced.
    fn peer_of(&self, t: &Tuple) -> Option<(String, u32)> {
        let back = (t.2, t.3, t.0, t.1);
        let addr = self.by_tuple.get(&back)?;
        let c = self.conns.get(addr)?;
        Some((c.label.clone(), c.netns))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::output::Render as _;

    // One argument per field a test varies: clearer than a builder here.
    #[allow(clippy::too_many_arguments)]
    fn ev(skaddr: u64, netns: u32, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, t: u64, what: What) -> TcpEvent {
        let state = match what {
            What::State { new, .. } => new,
            _ => 1,
        };
        TcpEvent {
            wall_ns: t,
            mono_ns: t,
            netns_ino: netns,
            netns: crate::ns::NetnsId { inode: u64::from(netns), name: Some(format!("ns{netns}")), ..Default::default() },
            skaddr,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            sport,
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            dport,
            state,
            srtt_us: None,
            what,
            no_sock: false,
            pid: None,
            comm: None,
            in_state_ns: None,
            peer: None,
            summary: None,
        }
    }

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    #[test]
    fn a_connection_from_connect_to_close() {
        let mut t = Tracker::new();
        let st = |old, new| What::State { old, new };
        let mut e = ev(1, 7, A, 5000, B, 80, 1_000, st(7, 2));
        assert!(t.observe(&mut e));
        assert_eq!(e.in_state_ns, None);
        // The server's listener and its child, in another namespace.
        let mut l = ev(2, 8, B, 80, [0; 4], 0, 500, st(7, 10));
        t.observe(&mut l);
        let mut child = ev(3, 8, B, 80, A, 5000, 1_500, st(7, 3));
        t.observe(&mut child);
        assert_eq!(child.peer, Some(("ns7".into(), 7)), "the client is the child's peer");
        let mut e = ev(1, 7, A, 5000, B, 80, 2_000, st(2, 1));
        t.observe(&mut e);
        assert_eq!(e.in_state_ns, Some(1_000));
        assert_eq!(e.peer, Some(("ns8".into(), 8)));
        for (i, us) in [(0u64, 0u32), (1, 40), (2, 60), (3, 20)] {
            let mut r = ev(1, 7, A, 5000, B, 80, 3_000 + i, What::Rtt { cwnd: 10 });
            r.srtt_us = Some(us);
            t.observe(&mut r);
        }
        let mut r = ev(1, 7, A, 5000, B, 80, 4_000, What::Retransmit { seq: Some(9), segs: 2, err: 0, total_retrans: 0 });
        t.observe(&mut r);
        t.observe(&mut ev(1, 7, A, 5000, B, 80, 5_000, st(1, 4)));
        t.observe(&mut ev(1, 7, A, 5000, B, 80, 6_000, st(4, 5)));
        // Unhashed at its close: the kernel's local port is 0 by then.
        let mut e = ev(1, 7, A, 0, B, 80, 7_000, st(5, 7));
        t.observe(&mut e);
        assert_eq!((e.sport, e.peer.clone()), (5000, Some(("ns8".into(), 8))));
        let mut c = ev(1, 7, A, 0, B, 80, 8_000, What::Close { bytes_acked: Some(10), bytes_received: Some(3), total_retrans: Some(2) });
        c.state = TCP_CLOSE;
        assert!(t.observe(&mut c));
        let s = c.summary.clone().expect("summary");
        assert_eq!(s.states, ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]);
        assert_eq!((s.duration_ns, s.seen_from_start, s.retransmits, s.retransmitted_segs), (7_000, true, 1, 2));
        assert_eq!((s.rtt_us, s.rtt_samples), (Some((20, 40, 60)), 3), "the 0 before the first measurement is no reading");
        assert_eq!(t.len(), 2, "closed connections are forgotten");
        assert!(c.text().contains("closed after 7us: CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE, 1 retransmits, rtt min/avg/max 20/40/60 us, 10 bytes sent (acked), 3 received"), "{}", c.text());
    }

    #[test]
    fn mid_connection_unconnected_and_resets() {
        let mut t = Tracker::new();
        // First seen with a retransmission: started before tracing.
        t.observe(&mut ev(1, 7, A, 5000, B, 80, 100, What::Retransmit { seq: None, segs: 1, err: 0, total_retrans: 0 }));
        t.observe(&mut ev(1, 7, A, 5000, B, 80, 200, What::ResetReceived));
        let mut c = ev(1, 7, A, 5000, B, 80, 300, What::Close { bytes_acked: None, bytes_received: None, total_retrans: None });
        c.state = TCP_CLOSE;
        t.observe(&mut c);
        let s = c.summary.clone().expect("summary");
        assert!(!s.seen_from_start);
        assert_eq!((s.states.clone(), s.resets_received), (vec!["ESTABLISHED", "CLOSE"], 1));
        assert!(c.text().contains("(since tracing began)"), "{}", c.text());
        // A socket closed without ever connecting: not worth a line.
        let mut c = ev(5, 7, [0; 4], 0, [0; 4], 0, 400, What::Close { bytes_acked: None, bytes_received: None, total_retrans: None });
        assert!(!t.observe(&mut c));
        assert_eq!(t.len(), 0);
        // A reset with no socket names the peer by the tuple.
        t.observe(&mut ev(9, 8, B, 80, A, 6000, 500, What::State { old: 7, new: 3 }));
        let mut r = ev(0, 7, A, 6000, B, 80, 600, What::ResetSent { reason: None });
        r.no_sock = true;
        assert!(t.observe(&mut r));
        assert_eq!(r.peer, Some(("ns8".into(), 8)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn bounded_oldest_first() {
        let mut t = Tracker::with_max(100);
        for i in 0..1000u64 {
            t.observe(&mut ev(i + 1, 7, A, (i % 60000) as u16 + 1, B, 80, i, What::State { old: 7, new: 2 }));
            if i % 3 == 0 {
                let mut c = ev(i + 1, 7, A, (i % 60000) as u16 + 1, B, 80, i, What::Close { bytes_acked: None, bytes_received: None, total_retrans: None });
                t.observe(&mut c);
            }
        }
        assert!(t.len() <= 100);
        assert!(t.order.len() <= 200);
        assert!(t.by_tuple.len() <= 100);
        assert!(t.evicted > 0);
        // The newest are kept (999: i = 998, not closed).
        assert!(t.conns.contains_key(&999));
        assert!(!t.conns.contains_key(&2));
        for _ in 0..(MAX_STATES + 10) {
            t.observe(&mut ev(999, 7, A, 999, B, 80, 1, What::State { old: 1, new: 4 }));
            t.observe(&mut ev(999, 7, A, 999, B, 80, 1, What::State { old: 4, new: 1 }));
        }
        assert_eq!(t.conns[&999].states.len(), MAX_STATES);
    }
}
