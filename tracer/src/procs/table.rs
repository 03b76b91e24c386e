//! The join of process attribution: socket cookies and tuples to the
//! process that owns the socket, kept from the kernel's socket events
//! (see tracer-common's `sock`), the sockets that existed before the
//! tracer started ([`super::diag`]) and what packets teach.
//!
//! A packet names its sender's socket by cookie when it still carries it
//! (`skb->sk`: on the sending namespace's interfaces and across veths,
//! until a router in between orphans it). Otherwise, and always for the
//! receiver, the socket is found by port: every known local port holds
//! the sockets on it, each with its namespace, its bound address and, once
//! connected, its peer. A connected socket matches a packet of its exact
//! tuple on any interface; an unconnected or listening one only a packet
//! that arrives in (or leaves) its own namespace, where the kernel would
//! deliver it. Nothing is guessed: a packet no socket matches has no
//! process, and a cookie that names no known socket is counted.
//!
//! Every table is bounded: [`SOCKS_MAX`] sockets, [`PORTS_MAX`] ports of
//! at most [`PER_PORT_MAX`] sockets each, [`PROCESSES_MAX`] processes.
//! A closed socket is kept [`RELEASE_GRACE_NS`] (TCP's TIME_WAIT: its last
//! segments, sent after its process may have exited, are still named).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use tracer_common::sock::{RELEASE_GRACE_NS, SockEvent, flags, op};

use crate::{bpf::event::RawEvent, sys::bounded::BoundedMap};

/// Sockets remembered, at most (open ones, and closed ones for the grace
/// period); the oldest written go first.
pub const SOCKS_MAX: usize = 65_536;
/// Local ports (per protocol) with sockets on them, at most.
pub const PORTS_MAX: usize = 16_384;
/// Sockets on one port (in all namespaces together), at most: the newest stay.
pub const PER_PORT_MAX: usize = 32;
/// Processes remembered, at most.
pub const PROCESSES_MAX: usize = 16_384;
/// New processes waiting to be enriched between two calls of
/// [`Owners::take_new_processes`], at most; more are counted.
pub const NEW_PROCESSES_MAX: usize = 1024;

/// A process as the output names it. `start_ticks` (clock ticks since
/// boot, as `/proc/PID/stat` has it) tells it from a later process that
/// reuses the pid.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    pub pid: u32,
    /// The thread that created, bound, connected or sent (the owner's).
    pub tid: u32,
    pub uid: u32,
    pub comm: String,
    pub start_ticks: u64,
    /// cgroup v2 id at the time (0 when unknown): names the container
    /// after the process exited.
    pub cgroup_id: u64,
    /// The namespace its socket is in.
    pub netns_ino: u64,
    pub cmdline: Option<String>,
    /// `{runtime, id, name}`, as everywhere in the output.
    pub container: Option<crate::ns::Container>,
}

/// A process's identity across its sockets.
pub type ProcKey = (u32, u64);

impl Process {
    pub fn key(&self) -> ProcKey {
        (self.pid, self.start_ticks)
    }
}

/// The addresses and ports of a decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub proto: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// Where a packet was seen: the device's namespace and its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub netns_ino: u64,
    pub egress: bool,
}

/// What is known of one socket.
#[derive(Clone, Debug)]
struct Sock {
    owner: Option<Arc<Process>>,
    netns: u64,
    proto: u8,
    lport: u16,
    laddr: Option<IpAddr>,
    remote: Option<(IpAddr, u16)>,
    /// Monotonic ns of the close; `None` while open.
    released_ns: Option<u64>,
    /// The port it is filed under in [`Owners::ports`].
    indexed: Option<(u8, u16)>,
}

/// A socket on a port: [`Sock`]'s matching part, kept per port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PortEntry {
    cookie: u64,
    netns: u64,
    laddr: Option<IpAddr>,
    remote: Option<(IpAddr, u16)>,
}

/// How packets were attributed, so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    /// Sender found by the packet's socket cookie.
    pub sender_by_cookie: u64,
    /// Sender found by port and tuple.
    pub sender_by_port: u64,
    pub receiver_by_port: u64,
    /// Packets with a socket cookie that names no known socket and no
    /// socket matched by port: a kernel socket (TCP resets, ICMP errors),
    /// a request socket, or one whose events were lost.
    pub unknown_cookie: u64,
    /// Sockets and ports forgotten to make room (the caps).
    pub evicted: u64,
    /// Processes shown without container and command line: too many new
    /// ones at once ([`NEW_PROCESSES_MAX`]).
    pub unenriched: u64,
}

/// The tables. Times are monotonic ns (`bpf_ktime_get_ns`'s clock).
pub struct Owners {
    socks: BoundedMap<u64, Sock>,
    ports: BoundedMap<(u8, u16), Vec<PortEntry>>,
    procs: BoundedMap<ProcKey, Arc<Process>>,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    ticks_per_s: u64,
    /// Processes to enrich (container, command line), taken by the caller.
    new_procs: Vec<Arc<Process>>,
    pub counts: Counts,
}

impl Default for Owners {
    fn default() -> Self {
        Self::new(clock_ticks())
    }
}

/// `sysconf(_SC_CLK_TCK)`, 100 where it fails.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; the unspecified
/// address as none.
pub fn normalize(a: IpAddr) -> Option<IpAddr> {
    let a = match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    (!a.is_unspecified()).then_some(a)
}

/// The address in a `SockEvent` field.
fn event_addr(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    let a = match family {
        2 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        10 => IpAddr::V6(Ipv6Addr::from(*b)),
        _ => return None,
    };
    normalize(a)
}

impl Owners {
    pub fn new(ticks_per_s: u64) -> Self {
        Self {
            socks: BoundedMap::new(SOCKS_MAX),
            ports: BoundedMap::new(PORTS_MAX),
            procs: BoundedMap::new(PROCESSES_MAX),
            ticks_per_s: ticks_per_s.max(1),
            new_procs: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Processes seen for the first time since the last call.
    pub fn take_new_processes(&mut self) -> Vec<Arc<Process>> {
        std::mem::take(&mut self.new_procs)
    }

    /// Replaces a process with its enriched form (container, command
    /// line); sockets that name it show the new one from now on.
    pub fn enrich(&mut self, mut p: Process) {
        if let Some(old) = self.procs.get_mut(&p.key())
            && old.comm == p.comm
        {
            // What one source found is not undone by another that did not.
            if p.container.is_none() {
                p.container = old.container.clone();
            }
            if p.cmdline.is_none() {
                p.cmdline = old.cmdline.clone();
            }
            *old = Arc::new(p);
        }
    }

    /// The process, as it is known now (enriched if it was).
    pub fn newest(&self, p: &Arc<Process>) -> Arc<Process> {
        self.current(p)
    }

    fn current(&self, p: &Arc<Process>) -> Arc<Process> {
        match self.procs.get(&p.key()) {
            Some(q) if q.comm == p.comm && q.tid == p.tid => q.clone(),
            Some(q) if q.comm == p.comm => Arc::new(Process { tid: p.tid, ..(**q).clone() }),
            _ => p.clone(),
        }
    }

    /// The same process once per (pid, start, comm): a new comm (exec)
    /// makes a new record, to be enriched again.
    fn intern(&mut self, p: Process) -> Arc<Process> {
        if let Some(q) = self.procs.get(&p.key())
            && q.comm == p.comm
        {
            return if q.tid == p.tid { q.clone() } else { Arc::new(Process { tid: p.tid, ..(**q).clone() }) };
        }
        let p = Arc::new(p);
        self.procs.insert(p.key(), p.clone());
        if self.new_procs.len() < NEW_PROCESSES_MAX {
            self.new_procs.push(p.clone());
        } else {
            self.counts.unenriched += 1;
        }
        p
    }

    /// Takes in one socket event from the ring buffer.
    pub fn push(&mut self, ev: &RawEvent) {
        let Some(se) = crate::bpf::event::read_pod::<SockEvent>(&ev.payload) else { return };
        self.counts.events += 1;
        let netns = u64::from(ev.header.netns_ino);
        let owner = (se.flags & flags::TASK != 0).then(|| {
            self.intern(Process {
                pid: ev.tgid(),
                tid: ev.tid(),
                uid: ev.uid(),
                comm: crate::sys::bounded::cut(&ev.comm(), super::COMM_MAX).to_string(),
                start_ticks: se.start_ns / (1_000_000_000 / self.ticks_per_s).max(1),
                cgroup_id: ev.header.cgroup_id,
                netns_ino: netns,
                cmdline: None,
                container: None,
            })
        });
        let laddr = event_addr(se.family, &se.laddr);
        let raddr = event_addr(se.family, &se.raddr);
        match se.op {
            op::CREATE => {
                let s = Sock { owner, netns, proto: se.protocol, lport: 0, laddr: None, remote: None, released_ns: None, indexed: None };
                self.put_sock(se.cookie, s);
            }
            op::BIND | op::LISTEN => {
                if let Some(s) = self.sock_for(se.cookie, netns, se.protocol, owner) {
                    s.lport = se.lport;
                    s.laddr = laddr;
                }
                self.index(se.cookie);
            }
            op::CONNECT => {
                if let Some(s) = self.sock_for(se.cookie, netns, se.protocol, owner) {
                    s.remote = raddr.map(|a| (a, se.rport));
                }
                self.index(se.cookie);
            }
            op::SEND => {
                if let Some(s) = self.sock_for(se.cookie, netns, se.protocol, owner) {
                    s.lport = se.lport;
                }
                self.index(se.cookie);
            }
            op::CONNECTED => {
                if let Some(s) = self.sock_for(se.cookie, netns, se.protocol, owner) {
                    s.lport = se.lport;
                    s.laddr = laddr;
                    s.remote = raddr.map(|a| (a, se.rport));
                }
                self.index(se.cookie);
            }
            op::ACCEPTED => {
                // The listener's owner: the socket on the port, in this
                // namespace, that has no peer.
                let listener = self.ports.get(&(se.protocol, se.lport)).and_then(|v| {
                    v.iter()
                        .rev()
                        .find(|e| e.netns == netns && e.remote.is_none() && e.laddr.is_none_or(|l| Some(l) == laddr))
                        .map(|e| e.cookie)
                });
                let owner = listener.and_then(|c| self.socks.get(&c)).and_then(|s| s.owner.clone());
                let s = Sock {
                    owner,
                    netns,
                    proto: se.protocol,
                    lport: se.lport,
                    laddr,
                    remote: raddr.map(|a| (a, se.rport)),
                    released_ns: None,
                    indexed: None,
                };
                self.put_sock(se.cookie, s);
                self.index(se.cookie);
            }
            op::RELEASE => {
                if let Some(s) = self.socks.get_mut(&se.cookie) {
                    s.released_ns = Some(ev.header.ts_ns);
                }
            }
            _ => {}
        }
    }

    /// A socket that existed before the tracer started, from sock_diag.
    #[expect(clippy::too_many_arguments, reason = "one socket's fields, as sock_diag gives them")]
    pub fn add_existing(
        &mut self,
        cookie: u64,
        netns: u64,
        proto: u8,
        local: (IpAddr, u16),
        remote: Option<(IpAddr, u16)>,
        listening: bool,
        owner: Option<Process>,
    ) {
        if self.socks.contains_key(&cookie) {
            // The hooks saw it already (made while the dump ran): theirs stands.
            return;
        }
        let owner = owner.map(|p| self.intern(p));
        let remote = if listening { None } else { remote.and_then(|(a, p)| normalize(a).map(|a| (a, p))) };
        let s = Sock { owner, netns, proto, lport: local.1, laddr: normalize(local.0), remote, released_ns: None, indexed: None };
        self.put_sock(cookie, s);
        self.index(cookie);
    }

    fn put_sock(&mut self, cookie: u64, s: Sock) {
        // A reused slot: the old socket's port entries go with it.
        self.unindex(cookie);
        let before = self.socks.evicted;
        self.socks.insert(cookie, s);
        if self.socks.evicted > before {
            self.counts.evicted += self.socks.evicted - before;
            // Entries of evicted sockets are found and dropped lazily.
        }
    }

    /// The record of `cookie`, made when the hooks never saw it created
    /// (it existed before, or its creation was lost), with its owner
    /// updated. `None` only if the table could not keep it.
    fn sock_for(&mut self, cookie: u64, netns: u64, proto: u8, owner: Option<Arc<Process>>) -> Option<&mut Sock> {
        if !self.socks.contains_key(&cookie) {
            let s = Sock { owner: None, netns, proto, lport: 0, laddr: None, remote: None, released_ns: None, indexed: None };
            self.put_sock(cookie, s);
        }
        let s = self.socks.get_mut(&cookie)?;
        if owner.is_some() {
            s.owner = owner;
        }
        if netns != 0 {
            s.netns = netns;
        }
        Some(s)
    }

    /// (Re)files a socket under its local port.
    fn index(&mut self, cookie: u64) {
        self.unindex(cookie);
        let Some(s) = self.socks.get(&cookie) else { return };
        if s.lport == 0 {
            return;
        }
        let entry = PortEntry { cookie, netns: s.netns, laddr: s.laddr, remote: s.remote };
        let key = (s.proto, s.lport);
        if let Some(s) = self.socks.get_mut(&cookie) {
            s.indexed = Some(key);
        }
        let mut v = self.ports.remove(&key).unwrap_or_default();
        // Entries of sockets forgotten since go first, then the oldest.
        v.retain(|e| self.socks.contains_key(&e.cookie));
        if v.len() >= PER_PORT_MAX {
            let n = v.len() + 1 - PER_PORT_MAX;
            v.drain(..n);
            self.counts.evicted += n as u64;
        }
        v.push(entry);
        let before = self.ports.evicted;
        self.ports.insert(key, v);
        self.counts.evicted += self.ports.evicted - before;
    }

    fn unindex(&mut self, cookie: u64) {
        let Some(key) = self.socks.get_mut(&cookie).and_then(|s| s.indexed.take()) else { return };
        if let Some(v) = self.ports.get_mut(&key) {
            v.retain(|e| e.cookie != cookie);
            if v.is_empty() {
                self.ports.remove(&key);
            }
        }
    }

    /// Forgets sockets closed longer than the grace period ago.
    pub fn sweep(&mut self, now_ns: u64) {
        let gone: Vec<u64> = self
            .socks
            .iter()
            .filter(|(_, s)| s.released_ns.is_some_and(|r| now_ns.saturating_sub(r) > RELEASE_GRACE_NS))
            .map(|(c, _)| *c)
            .collect();
        for c in gone {
            self.unindex(c);
            self.socks.remove(&c);
        }
    }

    fn live(&self, cookie: u64, now_ns: u64) -> Option<&Sock> {
        let s = self.socks.get(&cookie)?;
        match s.released_ns {
            Some(r) if now_ns.saturating_sub(r) > RELEASE_GRACE_NS => None,
            _ => Some(s),
        }
    }

    /// The socket holding `addr:port` (talking to `peer`), as seen at
    /// `hop`; `local`: the packet leaves or enters the socket's own stack
    /// there (an unconnected socket matches only then).
    fn by_port(&self, proto: u8, (addr, port): (IpAddr, u16), peer: (IpAddr, u16), hop: Hop, local: bool, now_ns: u64) -> Option<&Sock> {
        let v = self.ports.get(&(proto, port))?;
        let addr = normalize(addr);
        let peer_addr = normalize(peer.0);
        let mut best: Option<(u8, &Sock)> = None;
        for e in v.iter() {
            if e.laddr.is_some() && e.laddr != addr {
                continue;
            }
            let mut score = match e.remote {
                Some((a, p)) if Some(a) == peer_addr && p == peer.1 => 4,
                Some(_) => continue,
                None if local && e.netns == hop.netns_ino => 0,
                None => continue,
            };
            if e.laddr.is_some() {
                score += 2;
            }
            let Some(s) = self.live(e.cookie, now_ns) else { continue };
            if s.released_ns.is_none() {
                score += 1;
            }
            // Later entries are newer: on a tie the newest wins.
            if best.is_none_or(|(b, _)| score >= b) {
                best = Some((score, s));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Learns the local port of a socket from a packet it sent (a
    /// connected UDP socket is bound after its `connect` hook ran).
    pub fn learn(&mut self, cookie: u64, hop: Hop, ep: &Endpoints) {
        if cookie == 0 || !hop.egress {
            return;
        }
        let Some(s) = self.socks.get_mut(&cookie) else { return };
        if s.lport != 0 || s.released_ns.is_some() || s.netns != hop.netns_ino || s.proto != ep.proto {
            return;
        }
        s.lport = ep.sport;
        s.laddr = normalize(ep.src);
        if s.remote.is_none() {
            // Unconnected: it listens on its port for anyone.
            s.laddr = None;
        }
        self.index(cookie);
    }

    /// The sending and the receiving process of a packet seen at `hop`
    /// with socket cookie `cookie` (0: none) and, when decoded, `ep`.
    pub fn attribute(&mut self, now_ns: u64, cookie: u64, hop: Hop, ep: Option<&Endpoints>) -> (Option<Arc<Process>>, Option<Arc<Process>>) {
        if let Some(ep) = ep {
            self.learn(cookie, hop, ep);
        }
        let mut sender = if cookie != 0 { self.live(cookie, now_ns).and_then(|s| s.owner.clone()) } else { None };
        if sender.is_some() {
            self.counts.sender_by_cookie += 1;
        }
        let mut receiver = None;
        if let Some(ep) = ep {
            if sender.is_none() {
                sender = self
                    .by_port(ep.proto, (ep.src, ep.sport), (ep.dst, ep.dport), hop, hop.egress, now_ns)
                    .and_then(|s| s.owner.clone());
                if sender.is_some() {
                    self.counts.sender_by_port += 1;
                }
            }
            receiver = self
                .by_port(ep.proto, (ep.dst, ep.dport), (ep.src, ep.sport), hop, !hop.egress, now_ns)
                .and_then(|s| s.owner.clone());
            if receiver.is_some() {
                self.counts.receiver_by_port += 1;
            }
        }
        if sender.is_none() && cookie != 0 && !self.socks.contains_key(&cookie) {
            self.counts.unknown_cookie += 1;
        }
        (sender.map(|p| self.current(&p)), receiver.map(|p| self.current(&p)))
    }

    /// Sockets and ports held now.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.socks.len(), self.ports.len(), self.procs.len())
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
