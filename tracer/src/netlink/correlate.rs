//! Pairs each netlink request with the kernel's answer, names what it
//! refers to (interfaces, namespaces, the sender's container) and hands the
//! requests out in the order they were sent, within bounded time and memory.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use serde_json::{Value, json};
use tracer_common::netlink::{NetlinkAck, NetlinkSend, Syscall};

use super::{
    decode,
    enrich::{EnrichStats, Enricher, IfName},
    event::NetlinkEvent,
    identity::Identities,
    nfgen::GenlFamilies,
};
use crate::{
    bpf::event::{RawEvent, read_pod},
    ns::{NetnsId, watch::Watcher},
    sys::clock::Clock,
};

/// How long a request waits for its answer before it is printed without one.
pub const ACK_WAIT_NS: u64 = 300_000_000;
/// How long a request into (or from) a Docker sandbox whose container does
/// not run yet is held at most, so that it is named by the container, not
/// the sandbox id: dockerd moves the veth in before it creates the
/// container's task, and only a running container's record names the
/// sandbox. Everything after it waits too (lines go out in send order), so
/// it is short (a container runs well within a second on an idle host,
/// two on a loaded one); the registry is asked again every
/// [`super::identity::STARTING_TTL`]. Requests from runc in a new
/// container's cgroup wait the same way (the sandbox is not mounted yet).
pub const SANDBOX_WAIT_NS: u64 = 3_000_000_000;

/// Requests waiting for their answer, at most. A sender that never reads
/// its answers (or sends faster than it reads) would otherwise make this
/// queue grow for as long as it sends: past the cap, the oldest requests
/// are printed at once without their result, and counted.
pub const MAX_PENDING: usize = 8192;
/// The same, by the memory the waiting requests take (estimated from their
/// length: each may carry up to 16 KiB of attributes).
pub const MAX_PENDING_BYTES: usize = 16 << 20;

/// What a request's event takes in memory besides its attributes' text:
/// the struct, its strings, and the attribute map's node (measured: a
/// little over 1 KiB for a request of a few attributes).
pub const EVENT_BASE_BYTES: usize = 1024;

/// A request waiting for its answer.
struct Pending {
    /// Kernel monotonic time it was sent at.
    ts: u64,
    /// Its estimated size in memory.
    bytes: usize,
    e: NetlinkEvent,
}

/// What the correlator had to give up on, for the summary at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Requests printed before their answer came because too many waited.
    pub flushed_early: u64,
    /// The most requests that waited at once.
    pub max_pending: usize,
    /// Requests whose bytes the kernel echoed differently from the capture.
    pub echo_mismatch: u64,
    pub enrich: EnrichStats,
}

/// Pairs requests with answers. Requests come out in the order they were sent.
pub struct Correlator {
    clock: Clock,
    pending: VecDeque<Pending>,
    /// The position of `pending[0]` in the sequence of all requests ever
    /// queued, so that `by_key` stays valid as requests leave the front.
    base: u64,
    pending_bytes: usize,
    /// (socket, seq) -> position in that sequence.
    by_key: HashMap<(u64, u32), u64>,
    /// Keys two waiting requests share: an answer cannot tell which of
    /// them it echoes, so its echo is not compared (at most `by_key`'s size).
    shared_keys: HashSet<(u64, u32)>,
    families: GenlFamilies,
    enricher: Enricher,
    identities: Identities,
    /// The tracer's own namespace, `host` in text.
    host: Option<u64>,
    stats: CorrelatorStats,
    /// Messages that were sent whole but could not be decoded.
    pub malformed: u64,
    /// The interface table and its notifications, when the job started it.
    watcher: Option<Arc<Watcher>>,
    /// Notifications no request took yet, and those ready to print alone.
    changes: watched::Changes,
}

/// One event per message of a captured send (a `NetlinkSend` record),
/// decoded, before any enrichment.
pub(crate) fn send_events(ev: &RawEvent, clock: &Clock, families: &GenlFamilies) -> Vec<NetlinkEvent> {
    let Some(meta) = read_pod::<NetlinkSend>(&ev.payload) else { return Vec::new() };
    let data = &ev.payload[size_of::<NetlinkSend>()..];
    let data = &data[..(meta.data_len as usize).min(data.len())];
    let syscall = Syscall::try_from(meta.syscall).unwrap_or(Syscall::Sendmsg);
    let wall_ns = clock.wall_ns(ev.header.ts_ns);
    let ns_fds: Vec<(u32, u32)> =
        meta.ns_fds.iter().zip(meta.ns_inos.iter()).filter(|(_, i)| **i != 0).map(|(f, i)| (*f, *i)).collect();
    // The kernel copies at most NL_DATA_MAX bytes and says how many were sent.
    let sent_len = (meta.total_len as usize).max(data.len());
    let mut out = Vec::new();
    for msg in decode::split_messages(meta.protocol, data, sent_len) {
        let type_name = match meta.protocol {
            _ if msg.captured_len < 6 => "?".to_string(),
            decode::NETLINK_GENERIC if msg.header.msg_type >= 16 => match families.name(msg.header.msg_type) {
                Some(n) => format!("genl:{n}"),
                None => format!("genl:{}", msg.header.msg_type),
            },
            p => decode::msg_type_name(p, msg.header.msg_type),
        };
        let raw_len = msg.raw.as_ref().map_or(0, |r| r.len());
        out.push(NetlinkEvent {
            wall_ns,
            pid: ev.tgid(),
            tid: ev.tid(),
            uid: ev.uid(),
            comm: ev.comm(),
            netns: NetnsId { inode: u64::from(ev.header.netns_ino), ..Default::default() },
            container: None,
            protocol: meta.protocol,
            syscall,
            header: msg.header,
            type_name,
            attrs: msg.decoded.attrs,
            target_netns: None,
            decode_error: msg.decoded.error,
            truncated: msg.truncated,
            captured_len: msg.captured_len,
            raw: msg.raw,
            result: None,
            extack: None,
            echo_mismatch: None,
            mem_bytes: EVENT_BASE_BYTES + 2 * (msg.header.len as usize).min(data.len()) + raw_len + msg.sent.len(),
            sent: msg.sent,
            sock_id: meta.sock_id,
            target: msg.decoded.target,
            ns_fds: ns_fds.clone(),
            cgroup_id: ev.header.cgroup_id,
            lookups: Vec::new(),
            portid: meta.portid,
            objects: Default::default(),
            effects: Vec::new(),
        });
    }
    out
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Self::with_parts(clock, Enricher::new(), Identities::new())
    }

    /// A correlator whose lookups go where the parts say (tests give fakes).
    pub fn with_parts(clock: Clock, enricher: Enricher, identities: Identities) -> Self {
        Self {
            clock,
            pending: VecDeque::new(),
            base: 0,
            pending_bytes: 0,
            by_key: HashMap::new(),
            shared_keys: HashSet::new(),
            families: GenlFamilies::load(),
            enricher,
            identities,
            host: crate::ns::tracer_netns(),
            stats: CorrelatorStats::default(),
            malformed: 0,
            watcher: None,
            changes: watched::Changes::default(),
        }
    }

    /// Names links from the watcher's table (also deleted ones, and after
    /// moves) and puts the notifications it hands in under the requests.
    pub fn with_watcher(mut self, w: Arc<Watcher>) -> Self {
        self.watcher = Some(w);
        self
    }

    pub fn stats(&self) -> CorrelatorStats {
        CorrelatorStats { enrich: self.enricher.stats(), ..self.stats }
    }

    /// One line for stderr at exit.
    pub fn summary(&self) -> String {
        let s = self.stats();
        let (asked, refused) = self.identities.counts();
        format!(
            "netlink: {} interface-name lookups ({} refused, lookup thread busy; {} names evicted), {asked} sender identities asked ({refused} refused, registry thread busy), {} requests printed before their answer ({} waiting at most, cap {MAX_PENDING}), {} changed during the call",
            s.enrich.lookups, s.enrich.over_budget, s.enrich.evicted, s.flushed_early, s.max_pending, s.echo_mismatch
        )
    }

    /// The interface watcher's line for stderr at exit, when it ran.
    pub fn watch_summary(&self) -> Option<String> {
        self.watch_lines()
    }

    /// Takes one raw event; sends become pending requests, acks fill results.
    pub fn push(&mut self, ev: &RawEvent) {
        match ev.kind {
            tracer_common::EventKind::NetlinkSend => self.push_send(ev),
            tracer_common::EventKind::NetlinkAck => self.push_ack(ev),
            _ => {}
        }
    }

    fn push_send(&mut self, ev: &RawEvent) {
        // Now, while the sender still exists: `ip` is gone long before its
        // request is printed.
        self.identities.request((u64::from(ev.header.netns_ino), ev.tgid(), ev.header.cgroup_id));
        for mut e in send_events(ev, &self.clock, &self.families) {
            if e.is_malformed() {
                self.malformed += 1;
            }
            self.resolve_early(&mut e);
            let bytes = e.mem_bytes;
            if e.answerable() {
                let key = (e.sock_id, e.header.seq);
                if self.by_key.insert(key, self.base + self.pending.len() as u64).is_some_and(|old| old >= self.base) {
                    self.shared_keys.insert(key);
                }
            }
            self.pending_bytes += bytes;
            self.pending.push_back(Pending { ts: ev.header.ts_ns, bytes, e });
            self.stats.max_pending = self.stats.max_pending.max(self.pending.len());
        }
    }

    fn push_ack(&mut self, ev: &RawEvent) {
        let Some(meta) = read_pod::<NetlinkAck>(&ev.payload) else { return };
        let data = &ev.payload[size_of::<NetlinkAck>()..];
        let data = &data[..(meta.data_len as usize).min(data.len())];
        for ack in decode::parse_acks(data) {
            if let Some(&i) = self.by_key.get(&(meta.sock_id, ack.seq))
                && let Some(p) = i.checked_sub(self.base).and_then(|i| self.pending.get_mut(i as usize))
                && p.e.sock_id == meta.sock_id
                && p.e.header.seq == ack.seq
                && p.e.result.is_none()
            {
                p.e.result = Some(ack.errno);
                if !self.shared_keys.contains(&(meta.sock_id, ack.seq)) && ack.differs_from(&p.e.sent) {
                    p.e.echo_mismatch = decode::NlHeader::parse(&ack.echoed);
                    self.stats.echo_mismatch += 1;
                }
                p.e.sent = Vec::new();
                p.e.extack = ack.extack;
            }
        }
    }

    /// Requests ready to print: answered (and their interface names looked
    /// up), or waited for long enough (`now_ns` in kernel monotonic time),
    /// or pushed out by the caps ([`MAX_PENDING`], [`MAX_PENDING_BYTES`]).
    /// `flush_all` empties the queue.
    pub fn ready(&mut self, now_ns: u64, flush_all: bool) -> Vec<NetlinkEvent> {
        self.enricher.poll();
        self.identities.poll();
        // Over the caps, the oldest go now, answered or not.
        let (mut forced, mut len, mut bytes) = (0, self.pending.len(), self.pending_bytes);
        for p in &self.pending {
            if len <= MAX_PENDING && bytes <= MAX_PENDING_BYTES {
                break;
            }
            forced += 1;
            len -= 1;
            bytes -= p.bytes;
        }
        // A move's target namespace often shows only in the notifications
        // that come after the request was read: found now, its owner is
        // asked for while the request still waits (see SANDBOX_WAIT_NS).
        let mut pending = std::mem::take(&mut self.pending);
        for p in pending.iter_mut() {
            if now_ns.saturating_sub(p.ts) < SANDBOX_WAIT_NS && p.e.target.is_some() && p.e.target_netns.as_ref().is_none_or(|t| t.inode.is_none()) {
                self.target_from_watcher(&mut p.e);
            }
        }
        self.pending = pending;
        // Print in send order: stop at the first request still waiting.
        let mut n = 0;
        for (i, p) in self.pending.iter().enumerate() {
            let age = now_ns.saturating_sub(p.ts);
            let mut starting = false;
            if age < SANDBOX_WAIT_NS && !flush_all {
                let target = p.e.target_netns.as_ref().and_then(|t| t.inode).map(|i| (i, 0, 0));
                let sender = Some((p.e.netns.inode, p.e.pid, p.e.cgroup_id));
                for k in [target, sender].into_iter().flatten().filter(|k| Some(k.0) != self.host) {
                    // The registry's first answer (a rescan, the runtimes
                    // asked) may take longer than the answer's wait, and
                    // between a stale answer and the next one the request
                    // keeps waiting if it was waiting.
                    let s = match self.identities.get(k) {
                        Some(id) => id.starting,
                        None => self.identities.awaiting(k),
                    };
                    if s {
                        self.identities.request(k);
                        starting = true;
                    }
                }
            }
            let waited = age >= ACK_WAIT_NS && !starting;
            // The kernel queues a request's notifications before its
            // answer, but the watcher reads them on its own thread.
            let effects_in = self.watcher.is_none() || now_ns.saturating_sub(p.ts) >= watched::EFFECT_WAIT_NS;
            let named = effects_in
                && !starting
                && p.e.lookups.iter().all(|(ino, idx)| !self.enricher.awaiting(*ino, *idx))
                && !self.identities.awaiting((p.e.netns.inode, p.e.pid, p.e.cgroup_id))
                && !p.e.target_netns.as_ref().and_then(|t| t.inode).is_some_and(|i| self.identities.awaiting((i, 0, 0)));
            if flush_all || i < forced || waited || (p.e.result.is_some() && named) {
                if !flush_all && !waited && p.e.result.is_none() {
                    self.stats.flushed_early += 1;
                }
                n += 1;
            } else {
                break;
            }
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(mut p) = self.pending.pop_front() else { break };
            let key = (p.e.sock_id, p.e.header.seq);
            if self.by_key.get(&key) == Some(&self.base) {
                self.by_key.remove(&key);
                self.shared_keys.remove(&key);
            }
            self.base += 1;
            self.pending_bytes -= p.bytes;
            self.enrich(&mut p.e);
            self.released(&mut p.e, p.ts);
            out.push(p.e);
        }
        out
    }

    /// The wall time of the oldest request still waiting: what a merged
    /// timeline may not let anything newer out before (a request into a
    /// starting container waits up to [`SANDBOX_WAIT_NS`], longer than
    /// any hold).
    pub fn oldest_waiting_wall_ns(&self) -> Option<u64> {
        let req = self.pending.front().map(|p| p.e.wall_ns);
        match (req, self.oldest_change_wall_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Names what can be named the moment a request is read: links it
    /// refers to by index may be gone by the time its answer comes (dockerd
    /// creates and deletes bridges within a few milliseconds), and the
    /// sender's fds and /proc entry may be gone too.
    fn resolve_early(&mut self, e: &mut NetlinkEvent) {
        if e.protocol != decode::NETLINK_ROUTE || e.is_get() || e.is_probe() {
            return;
        }
        self.name_indexes(e, false);
        if let Some(t) = &e.target {
            e.target_netns = Some(self.enricher.target(t, e.pid, &e.ns_fds));
        }
        self.target_from_watcher(e);
        self.name_target(e);
        self.learn_links(e);
        e.objects = self.objects_of(e);
    }

    /// Puts names next to interface indexes. The first pass (when the
    /// request is read) takes what the cache knows and starts lookups for
    /// the rest; the final pass (when it is printed) takes their answers,
    /// and a name that could not be found is reported as `null`.
    fn name_indexes(&mut self, e: &mut NetlinkEvent, final_pass: bool) {
        let ino = e.netns.inode;
        for (idx_key, name_key) in [("ifindex", "ifname"), ("master_index", "master"), ("oif_index", "oif"), ("iif_index", "iif"), ("link_index", "link")] {
            let Some(idx) = e.attrs.get(idx_key).and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()) else { continue };
            if let Some(n) = e.attrs.get(name_key).and_then(Value::as_str) {
                // Only a request the kernel accepted says what a link is
                // called: anyone may send any name (and unprivileged users
                // do), and the kernel refuses it.
                if final_pass && e.result == Some(0) {
                    let n = n.to_string();
                    self.enricher.learn(ino, idx, &n);
                }
                continue;
            }
            if let Some(name) = self.watched_name(ino, idx) {
                e.attrs.insert(name_key.to_string(), json!(name));
                continue;
            }
            if final_pass {
                let name = self.enricher.cached_name(ino, idx).map_or(Value::Null, Value::from);
                e.attrs.insert(name_key.to_string(), name);
                continue;
            }
            match self.enricher.ifname(ino, e.pid, idx) {
                IfName::Known(name) => {
                    e.attrs.insert(name_key.to_string(), json!(name));
                }
                IfName::Pending => e.lookups.push((ino, idx)),
                IfName::Unknown => {}
            }
        }
    }

    /// Fills in names: namespace, container, interfaces behind indexes,
    /// target namespace.
    fn enrich(&mut self, e: &mut NetlinkEvent) {
        let ino = e.netns.inode;
        e.netns.host = self.host == Some(ino);
        e.netns.name = self.enricher.netns_name(ino);
        // The registry's name (a container's, else /run/netns) wins over the
        // enricher's; the enricher still names Docker's sandboxes.
        if let Some(id) = self.identities.get((ino, e.pid, e.cgroup_id)) {
            if id.netns_name.is_some() {
                e.netns.name = id.netns_name.clone();
            }
            e.netns.owner = id.owner.clone();
            e.container = id.container.clone();
        }
        if e.protocol != decode::NETLINK_ROUTE || e.is_get() {
            return;
        }
        self.name_indexes(e, true);
        if e.target_netns.as_ref().is_none_or(|t| t.inode.is_none())
            && let Some(t) = &e.target {
                e.target_netns = Some(self.enricher.target(t, e.pid, &e.ns_fds));
            }
        self.target_from_watcher(e);
        self.name_target(e);
        if e.result == Some(0) {
            self.learn_links(e);
        }
    }

    /// Learns the index of a link a request creates (and of its veth peer),
    /// so later requests that name it only by index are named.
    fn learn_links(&mut self, e: &NetlinkEvent) {
        let ino = e.netns.inode;
        let created = e.header.msg_type == 16 && e.header.flags & decode::NLM_F_CREATE != 0;
        if created {
            // Where the new link lives: the target namespace when it moved there.
            let link_ns = match &e.target_netns {
                Some(t) if t.of == "link" => t.inode,
                _ => Some(ino),
            };
            if let (Some(ns), Some(name)) = (link_ns, e.attrs.get("ifname").and_then(Value::as_str)) {
                let name = name.to_string();
                self.enricher.learn_created(ns, e.pid, &name);
            }
            let peer_ns = match &e.target_netns {
                Some(t) if t.of == "peer" => t.inode,
                _ => Some(ino),
            };
            if let (Some(ns), Some(name)) = (peer_ns, e.attrs.get("peer").and_then(|p| p.get("ifname")).and_then(Value::as_str)) {
                let name = name.to_string();
                self.enricher.learn_created(ns, e.pid, &name);
            }
        }
    }
}

#[cfg(test)]
mod tests;
mod watched;
