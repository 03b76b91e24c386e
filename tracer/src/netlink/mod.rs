//! Netlink audit: turns captured send buffers into one event per netlink
//! message, matches each with the kernel's answer, and renders them like
//! `ip monitor`, prefixed by who sent them and where.

pub mod decode;
pub mod enrich;
pub mod identity;
pub mod lookup;
pub mod nfgen;
pub mod route;
mod route_check;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value, json};
use tracer_common::netlink::{NetlinkAck, NetlinkSend, Syscall};

use crate::{
    bpf::event::{RawEvent, read_pod},
    output::Render,
    sys::{
        clock::{self, Clock},
        text::{self, MESSAGE_MAX},
    },
};
use decode::NlHeader;
use enrich::{EnrichStats, Enricher, IfName};
use identity::Identities;
use nfgen::GenlFamilies;
use route::TargetRef;

/// One netlink request, with its result once known.
#[derive(Clone, Debug)]
pub struct NetlinkEvent {
    pub wall_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    /// The sender's cgroup v2 id, as the kernel saw it (see `ns::identity`).
    pub cgroup_id: u64,
    pub comm: String,
    pub netns_ino: u32,
    pub netns_name: Option<String>,
    pub container: Option<Value>,
    pub protocol: u16,
    pub syscall: Syscall,
    pub header: NlHeader,
    /// `RTM_NEWLINK`, `NFT_MSG_NEWTABLE`, `genl:nl80211`...
    pub type_name: String,
    /// Decoded attributes (interface names filled in by enrichment).
    pub attrs: Map<String, Value>,
    /// `{inode, name, of}` when the request acts on another namespace.
    pub target_netns: Option<Value>,
    pub decode_error: Option<String>,
    /// The buffer ended before this message did.
    pub truncated: bool,
    /// Bytes of the message captured, header included (`header.len` is
    /// its real length).
    pub captured_len: usize,
    /// The bytes of a malformed message: sent whole, not decodable.
    pub raw: Option<Vec<u8>>,
    /// `Some(errno)` once the answer was seen (0: success).
    pub result: Option<i32>,
    pub extack: Option<String>,
    sock_id: u64,
    target: Option<TargetRef>,
    ns_fds: Vec<(u32, u32)>,
    /// (namespace, ifindex) whose names were being looked up when the
    /// request was read: it is held until they are in (see [`Correlator::ready`]).
    lookups: Vec<(u64, u32)>,
    /// About the memory it takes (see [`NetlinkEvent::mem_bytes`]).
    mem_bytes: usize,
}

impl NetlinkEvent {
    pub fn msg_type_name(&self) -> String {
        self.type_name.clone()
    }

    /// About the memory this event takes, from the length of its message:
    /// its attributes (names, addresses, decoded or as hex) are at most
    /// twice the bytes they came from, plus [`EVENT_BASE_BYTES`].
    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes
    }

    pub fn is_get(&self) -> bool {
        decode::is_get(self.protocol, self.header.msg_type, self.header.flags)
    }

    /// An RTM_NEWLINK with no interface and no attributes: iproute2 sends one
    /// before every link command to probe the kernel; it changes nothing.
    pub fn is_probe(&self) -> bool {
        self.protocol == decode::NETLINK_ROUTE && self.header.msg_type == 16 && self.attrs.is_empty() && self.decode_error.is_none()
    }

    /// Whether the kernel takes these bytes for a message and may answer
    /// it. Bytes it skips (a length that does not fit, a piece of a header)
    /// must not take the answer of a message with the same seq.
    fn answerable(&self) -> bool {
        let len = self.header.len as usize;
        self.captured_len >= NlHeader::SIZE && len >= NlHeader::SIZE && (self.truncated || self.captured_len == len)
    }

    /// Sent whole but not decodable: reported with its bytes, never hidden.
    pub fn is_malformed(&self) -> bool {
        self.raw.is_some()
    }
}

impl Render for NetlinkEvent {
    fn json(&self) -> Value {
        let result = self.result.map(|errno| {
            let mut r = json!({"errno": errno, "error": if errno == 0 { Value::Null } else { json!(decode::errno_text(errno)) }});
            if let Some(x) = &self.extack {
                r["extack"] = json!(x);
            }
            r
        });
        let mut v = json!({
            "type": "netlink",
            "time": clock::rfc3339(self.wall_ns),
            "pid": self.pid,
            "tid": self.tid,
            "comm": self.comm,
            "uid": self.uid,
            "netns": {"inode": self.netns_ino, "name": self.netns_name},
            "container": self.container,
            "protocol": decode::protocol_name(self.protocol),
            "syscall": self.syscall.name(),
            "msg_type": self.msg_type_name(),
            "flags": decode::flag_names(self.protocol, self.header.msg_type, self.header.flags),
            "seq": self.header.seq,
            "attrs": self.attrs,
            "target_netns": self.target_netns,
            "result": result,
        });
        if let Some(e) = &self.decode_error {
            v["decode_error"] = json!(e);
        }
        if self.truncated {
            v["truncated"] = json!(true);
            v["total_len"] = json!(self.header.len);
            v["captured_len"] = json!(self.captured_len);
        }
        if let Some(raw) = &self.raw {
            v["malformed"] = json!(true);
            v["raw"] = json!(hex(raw));
        }
        v
    }

    /// Names, attribute values and the extended ack come from the sender:
    /// each is cut ([`text::field`]); the Sink escapes the line.
    fn text(&self) -> String {
        let ns = match &self.netns_name {
            Some(n) => format!("{}({})", text::name(n), self.netns_ino),
            None => format!("{}", self.netns_ino),
        };
        let container = self
            .container
            .as_ref()
            .and_then(|c| c.get("name").and_then(Value::as_str).or_else(|| c.get("id").and_then(Value::as_str)))
            .map_or(std::borrow::Cow::Borrowed("-"), text::name);
        let result = match self.result {
            // The kernel answers only failures of requests without NLM_F_ACK.
            None if self.header.flags & decode::NLM_F_ACK == 0 => "-> (no ack requested, no error seen)".to_string(),
            None => "-> ?".to_string(),
            Some(0) => "-> ok".to_string(),
            Some(e) => {
                let mut s = format!("-> {}: {}", decode::errno_name(e), decode::errno_text(e));
                if let Some(x) = &self.extack {
                    s.push_str(&format!(" ({})", text::field(x, MESSAGE_MAX)));
                }
                s
            }
        };
        let trunc = if self.truncated {
            format!(" [truncated: {} of {} bytes captured]", self.captured_len, self.header.len)
        } else {
            String::new()
        };
        let summary = match (&self.raw, &self.decode_error) {
            (Some(raw), e) => {
                let shown = &raw[..raw.len().min(RAW_TEXT_MAX)];
                let more = if raw.len() > shown.len() { format!("... ({} bytes)", raw.len()) } else { String::new() };
                format!("malformed: {} raw {}{more}", e.as_deref().unwrap_or("?"), hex(shown))
            }
            (None, Some(e)) if self.attrs.is_empty() => format!("(not decoded: {e})"),
            _ => summary(self),
        };
        format!(
            "{} {}[{}] netns={} container={}  {} {}{}  {}",
            clock::hms_micros(self.wall_ns),
            text::name(&self.comm),
            self.pid,
            ns,
            container,
            self.type_name,
            summary,
            trunc,
            result
        )
    }
}

/// The exit line for malformed messages, when there were any.
pub fn report_malformed(corr: &Correlator) {
    if corr.malformed > 0 {
        eprintln!("tracer: {} netlink messages could not be decoded (reported as malformed, with their bytes)", corr.malformed);
    }
}

/// Bytes of a malformed message shown in text output (JSON has them all).
const RAW_TEXT_MAX: usize = 64;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How long a request waits for its answer before it is printed without one.
pub const ACK_WAIT_NS: u64 = 300_000_000;

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
    families: GenlFamilies,
    enricher: Enricher,
    identities: Identities,
    stats: CorrelatorStats,
    /// Messages that were sent whole but could not be decoded.
    pub malformed: u64,
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
            netns_ino: ev.header.netns_ino,
            netns_name: None,
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
            sock_id: meta.sock_id,
            target: msg.decoded.target,
            ns_fds: ns_fds.clone(),
            cgroup_id: ev.header.cgroup_id,
            lookups: Vec::new(),
            mem_bytes: EVENT_BASE_BYTES + 2 * (msg.header.len as usize).min(data.len()) + raw_len,
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
            families: GenlFamilies::load(),
            enricher,
            identities,
            stats: CorrelatorStats::default(),
            malformed: 0,
        }
    }

    pub fn stats(&self) -> CorrelatorStats {
        CorrelatorStats { enrich: self.enricher.stats(), ..self.stats }
    }

    /// One line for stderr at exit.
    pub fn summary(&self) -> String {
        let s = self.stats();
        let (asked, refused) = self.identities.counts();
        format!(
            "netlink: {} interface-name lookups ({} refused, lookup thread busy; {} names evicted), {asked} sender identities asked ({refused} refused, registry thread busy), {} requests printed before their answer ({} waiting at most, cap {MAX_PENDING})",
            s.enrich.lookups, s.enrich.over_budget, s.enrich.evicted, s.flushed_early, s.max_pending
        )
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
                self.by_key.insert((e.sock_id, e.header.seq), self.base + self.pending.len() as u64);
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
        // Print in send order: stop at the first request still waiting.
        let mut n = 0;
        for (i, p) in self.pending.iter().enumerate() {
            let waited = now_ns.saturating_sub(p.ts) >= ACK_WAIT_NS;
            let named = p.e.lookups.iter().all(|(ino, idx)| !self.enricher.awaiting(*ino, *idx))
                && !self.identities.awaiting((u64::from(p.e.netns_ino), p.e.pid, p.e.cgroup_id));
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
            }
            self.base += 1;
            self.pending_bytes -= p.bytes;
            self.enrich(&mut p.e);
            out.push(p.e);
        }
        out
    }

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
        self.learn_links(e);
    }

    /// Puts names next to interface indexes. The first pass (when the
    /// request is read) takes what the cache knows and starts lookups for
    /// the rest; the final pass (when it is printed) takes their answers,
    /// and a name that could not be found is reported as `null`.
    fn name_indexes(&mut self, e: &mut NetlinkEvent, final_pass: bool) {
        let ino = u64::from(e.netns_ino);
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
        let ino = u64::from(e.netns_ino);
        e.netns_name = self.enricher.netns_name(ino);
        // The registry's name (a container's, else /run/netns) wins over the
        // enricher's; the enricher still names Docker's sandboxes.
        if let Some(id) = self.identities.get((ino, e.pid, e.cgroup_id)) {
            if id.netns_name.is_some() {
                e.netns_name = id.netns_name.clone();
            }
            e.container = id.container.clone();
        }
        if e.protocol != decode::NETLINK_ROUTE || e.is_get() {
            return;
        }
        self.name_indexes(e, true);
        if e.target_netns.as_ref().is_none_or(|t| t["inode"].is_null())
            && let Some(t) = &e.target {
                e.target_netns = Some(self.enricher.target(t, e.pid, &e.ns_fds));
            }
        if e.result == Some(0) {
            self.learn_links(e);
        }
    }

    /// Learns the index of a link a request creates (and of its veth peer),
    /// so later requests that name it only by index are named.
    fn learn_links(&mut self, e: &NetlinkEvent) {
        let ino = u64::from(e.netns_ino);
        let created = e.header.msg_type == 16 && e.header.flags & decode::NLM_F_CREATE != 0;
        if created {
            // Where the new link lives: the target namespace when it moved there.
            let link_ns = match &e.target_netns {
                Some(t) if t["of"] == "link" => t["inode"].as_u64(),
                _ => Some(ino),
            };
            if let (Some(ns), Some(name)) = (link_ns, e.attrs.get("ifname").and_then(Value::as_str)) {
                let name = name.to_string();
                self.enricher.learn_created(ns, e.pid, &name);
            }
            let peer_ns = match &e.target_netns {
                Some(t) if t["of"] == "peer" => t["inode"].as_u64(),
                _ => Some(ino),
            };
            if let (Some(ns), Some(name)) = (peer_ns, e.attrs.get("peer").and_then(|p| p.get("ifname")).and_then(Value::as_str)) {
                let name = name.to_string();
                self.enricher.learn_created(ns, e.pid, &name);
            }
        }
    }
}

/// The `ip monitor`-like part of the text line, from the decoded attributes.
/// Every value is cut to [`text::NAME_MAX`] (names, addresses, kinds) or
/// [`MESSAGE_MAX`] (anything else), escaped.
pub fn summary(e: &NetlinkEvent) -> String {
    let a = &e.attrs;
    let s = |k: &str| a.get(k).and_then(|v| match v {
        Value::String(s) => Some(text::name(s).into_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let other = |k: &str, v: &Value| text::field(&format!("{k}={v}"), MESSAGE_MAX).into_owned();
    let dev = |name: &str, idx: &str| s(name).or_else(|| s(idx).map(|i| format!("if{i}")));
    let mut parts: Vec<String> = Vec::new();
    let ty = e.type_name.as_str();
    let verb = if ty.contains("_NEW") || ty.contains("MSG_NEW") {
        if e.header.flags & decode::NLM_F_CREATE != 0 { "create" } else { "set" }
    } else if ty.contains("_DEL") || ty.contains("MSG_DESTROY") {
        "delete"
    } else if ty.contains("_SET") {
        "set"
    } else {
        ""
    };
    if e.protocol == decode::NETLINK_ROUTE {
        if !verb.is_empty() {
            parts.push(verb.into());
        }
        if ty.ends_with("LINK") && a.is_empty() {
            // iproute2 sends one of these first to probe the kernel.
            parts.push("(no attributes)".into());
        } else if ty.ends_with("LINK") {
            if let Some(k) = s("kind") {
                parts.push(k);
            }
            if let Some(d) = dev("ifname", "ifindex") {
                parts.push(d);
            }
            if let Some(p) = a.get("peer").and_then(|p| p.get("ifname")).and_then(Value::as_str) {
                parts.push(format!("peer {}", text::name(p)));
            }
            if let Some(m) = dev("master", "master_index") {
                parts.push(format!("master {m}"));
            }
            if let Some(m) = s("mtu") {
                parts.push(format!("mtu {m}"));
            }
            if let Some(up) = a.get("up").and_then(Value::as_bool) {
                parts.push(if up { "up".into() } else { "down".into() });
            }
        } else if ty.ends_with("ADDR") {
            if let (Some(x), Some(p)) = (s("address"), s("prefixlen")) {
                parts.push(format!("{x}/{p}"));
            }
            if let Some(d) = dev("ifname", "ifindex") {
                parts.push(format!("dev {d}"));
            }
        } else if ty.ends_with("ROUTE") {
            if let Some(d) = s("dst") {
                parts.push(d);
            }
            if let Some(g) = s("gateway") {
                parts.push(format!("via {g}"));
            }
            if let Some(d) = dev("oif", "oif_index") {
                parts.push(format!("dev {d}"));
            }
            if let Some(t) = s("table")
                && t != "254" {
                    parts.push(format!("table {t}"));
                }
        } else if ty.ends_with("NEIGH") {
            if let Some(d) = s("dst") {
                parts.push(d);
            }
            if let Some(d) = dev("ifname", "ifindex") {
                parts.push(format!("dev {d}"));
            }
            if let Some(l) = s("lladdr") {
                parts.push(format!("lladdr {l}"));
            }
            if let Some(st) = s("state") {
                parts.push(st);
            }
        } else if ty.ends_with("QDISC") || ty.ends_with("TCLASS") || ty.ends_with("TFILTER") || ty.ends_with("CHAIN") {
            if let Some(k) = s("kind") {
                parts.push(k);
            }
            if let Some(d) = dev("ifname", "ifindex") {
                parts.push(format!("dev {d}"));
            }
            if let Some(h) = s("handle") {
                parts.push(format!("handle {h}"));
            }
            if let Some(p) = s("parent") {
                parts.push(format!("parent {p}"));
            }
        } else if ty.ends_with("RULE") {
            for k in ["src", "dst", "iif", "oif", "fwmark", "table", "priority"] {
                if let Some(v) = s(k) {
                    parts.push(format!("{k} {v}"));
                }
            }
        } else {
            for (k, v) in a {
                parts.push(other(k, v));
            }
        }
    } else if e.protocol == decode::NETLINK_NETFILTER && a.get("subsystem").is_some_and(|s| s == "nftables") {
        // nft's own words: `add table inet filter`, `delete chain inet filter input`.
        let (op, obj) = ty.strip_prefix("NFT_MSG_").map(|t| {
            for op in ["NEW", "DEL", "DESTROY", "GET"] {
                if let Some(o) = t.strip_prefix(op) {
                    let op = match op { "NEW" => "add", "GET" => "get", _ => "delete" };
                    return (op, o.to_ascii_lowercase());
                }
            }
            ("", t.to_ascii_lowercase())
        }).unwrap_or(("", String::new()));
        if !op.is_empty() {
            parts.push(op.into());
        }
        if !obj.is_empty() {
            parts.push(obj);
        }
        for k in ["family", "table", "chain", "name"] {
            if let Some(v) = s(k) {
                parts.push(v);
            }
        }
    } else {
        for (k, v) in a {
            match v {
                Value::String(x) => parts.push(text::field(&format!("{k} {x}"), MESSAGE_MAX).into_owned()),
                v => parts.push(other(k, v)),
            }
        }
    }
    if let Some(t) = &e.target_netns {
        let name = t.get("name").and_then(Value::as_str).map(|n| text::name(n).into_owned()).or_else(|| t.get("inode").filter(|v| !v.is_null()).map(|v| v.to_string()));
        let of = t.get("of").and_then(Value::as_str).unwrap_or("link");
        let what = if of == "peer" { "peer netns" } else { "netns" };
        parts.push(format!("{what} {}", name.unwrap_or_else(|| "?".into())));
    }
    parts.join(" ")
}

#[cfg(test)]
mod text_tests {
    use super::*;

    fn event(comm: &str, protocol: u16, msg_type: u16, type_name: &str, attrs: Value) -> NetlinkEvent {
        NetlinkEvent {
            wall_ns: 0,
            pid: 7,
            tid: 7,
            uid: 1000,
            comm: comm.into(),
            netns_ino: 4026531840,
            netns_name: Some("lab\x1b[2J".into()),
            container: Some(json!({"runtime": "docker", "id": "ab", "name": "c".repeat(300)})),
            protocol,
            syscall: Syscall::Sendmsg,
            header: NlHeader { len: 0, msg_type, flags: decode::NLM_F_ACK | decode::NLM_F_CREATE, seq: 1, pid: 0 },
            type_name: type_name.into(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            target_netns: Some(json!({"inode": 5, "name": "t\x07", "of": "peer"})),
            decode_error: None,
            truncated: false,
            result: Some(-22),
            extack: Some(format!("bad\x1b]0;x\x07{}", "e".repeat(1000))),
            sock_id: 0,
            target: None,
            ns_fds: vec![],
            cgroup_id: 0,
            lookups: Vec::new(),
            mem_bytes: 0,
            captured_len: 0,
            raw: None,
        }
    }

    #[test]
    fn text_escapes_and_cuts_what_the_sender_chose_and_json_keeps_it() {
        let comm = "py\x1b]0;pwn\x07\u{9b}";
        let e = event(comm, decode::NETLINK_ROUTE, 16, "RTM_NEWLINK", json!({"ifname": "e\x1b[31m", "kind": "veth", "peer": {"ifname": "p\u{85}"}}));
        let text = e.text();
        assert!(text.contains(r"py\x1b]0;pwn\x07\x9b[7] netns=lab\x1b[2J(4026531840) container=ccc"), "{text}");
        assert!(text.contains(r"create veth e\x1b[31m peer p\x85 peer netns t\x07"), "{text}");
        assert!(text.contains(&format!("container={}{} ", "c".repeat(crate::sys::text::NAME_MAX - 3), crate::sys::text::ELLIPSIS)), "{text}");
        // The extended ack is cut at MESSAGE_MAX.
        let extack = text.split(" (").last().expect("extack").trim_end_matches(')');
        assert!(extack.starts_with(r"bad\x1b]0;x\x07eee") && extack.ends_with("e..."), "{text}");
        assert_eq!(extack.chars().count(), MESSAGE_MAX);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        // JSON carries every byte.
        let j = e.json();
        assert_eq!(j["comm"], comm);
        assert_eq!(j["attrs"]["ifname"], "e\x1b[31m");
        assert_eq!(j["result"]["extack"].as_str().map(str::len), Some(1000 + 9));
        assert_eq!(j["container"]["name"].as_str().map(str::len), Some(300));
    }

    #[test]
    fn nftables_names_are_cut() {
        let long = format!("t\x1b{}", "x".repeat(400));
        let e = event("nft", decode::NETLINK_NETFILTER, 0xa00, "NFT_MSG_NEWCHAIN", json!({"subsystem": "nftables", "family": "inet", "table": long, "chain": "in\x7fput"}));
        let s = summary(&e);
        assert!(s.starts_with(&format!(r"add chain inet t\x1b{}... in\x7fput", "x".repeat(crate::sys::text::NAME_MAX - 8))), "{s}");
        // Attributes without a known shape are cut one by one.
        let e = event("x", 99, 16, "X", json!({"blob": "z".repeat(5000), "n": 1}));
        let s = summary(&e);
        assert!(s.len() < 2 * MESSAGE_MAX && s.contains("n=1"), "{s}");
    }
}
