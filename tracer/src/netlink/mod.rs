//! Netlink audit: turns captured send buffers into one event per netlink
//! message, matches each with the kernel's answer, and renders them like
//! `ip monitor`, prefixed by who sent them and where.

pub mod decode;
pub mod enrich;
pub mod nfgen;
pub mod route;
mod route_check;

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tracer_common::netlink::{NetlinkAck, NetlinkSend, Syscall};

use crate::{
    clock::{self, Clock},
    event::{RawEvent, read_pod},
    output::Render,
};
use decode::NlHeader;
use enrich::Enricher;
use nfgen::GenlFamilies;
use route::TargetRef;

/// One netlink request, with its result once known.
#[derive(Clone, Debug)]
pub struct NetlinkEvent {
    pub wall_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
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
}

impl NetlinkEvent {
    pub fn msg_type_name(&self) -> String {
        self.type_name.clone()
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

    fn text(&self) -> String {
        let ns = match &self.netns_name {
            Some(n) => format!("{n}({})", self.netns_ino),
            None => format!("{}", self.netns_ino),
        };
        let container = self
            .container
            .as_ref()
            .and_then(|c| c.get("name").and_then(Value::as_str).or_else(|| c.get("id").and_then(Value::as_str)))
            .unwrap_or("-");
        let result = match self.result {
            // The kernel answers only failures of requests without NLM_F_ACK.
            None if self.header.flags & decode::NLM_F_ACK == 0 => "-> (no ack requested, no error seen)".to_string(),
            None => "-> ?".to_string(),
            Some(0) => "-> ok".to_string(),
            Some(e) => {
                let mut s = format!("-> {}: {}", decode::errno_name(e), decode::errno_text(e));
                if let Some(x) = &self.extack {
                    s.push_str(&format!(" ({x})"));
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
            self.comm,
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

/// Pairs requests with answers. Requests come out in the order they were sent.
pub struct Correlator {
    clock: Clock,
    pending: Vec<(u64, NetlinkEvent)>,
    by_key: HashMap<(u64, u32), usize>,
    families: GenlFamilies,
    enricher: Enricher,
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
        });
    }
    out
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            pending: Vec::new(),
            by_key: HashMap::new(),
            families: GenlFamilies::load(),
            enricher: Enricher::new(),
            malformed: 0,
        }
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
        for mut e in send_events(ev, &self.clock, &self.families) {
            if e.is_malformed() {
                self.malformed += 1;
            }
            self.resolve_early(&mut e);
            if e.answerable() {
                self.by_key.insert((e.sock_id, e.header.seq), self.pending.len());
            }
            self.pending.push((ev.header.ts_ns, e));
        }
    }

    fn push_ack(&mut self, ev: &RawEvent) {
        let Some(meta) = read_pod::<NetlinkAck>(&ev.payload) else { return };
        let data = &ev.payload[size_of::<NetlinkAck>()..];
        let data = &data[..(meta.data_len as usize).min(data.len())];
        for ack in decode::parse_acks(data) {
            if let Some(&i) = self.by_key.get(&(meta.sock_id, ack.seq))
                && let Some((_, e)) = self.pending.get_mut(i)
                    && e.sock_id == meta.sock_id && e.header.seq == ack.seq && e.result.is_none() {
                        e.result = Some(ack.errno);
                        e.extack = ack.extack;
                    }
        }
    }

    /// Requests ready to print: answered, or waited for long enough
    /// (`now_ns` in kernel monotonic time). `flush_all` empties the queue.
    pub fn ready(&mut self, now_ns: u64, flush_all: bool) -> Vec<NetlinkEvent> {
        // Print in send order: stop at the first request still waiting.
        let mut n = 0;
        for (ts, e) in &self.pending {
            let waited = now_ns.saturating_sub(*ts) >= ACK_WAIT_NS;
            if flush_all || e.result.is_some() || waited {
                n += 1;
            } else {
                break;
            }
        }
        if n == 0 {
            return Vec::new();
        }
        let out: Vec<NetlinkEvent> = self.pending.drain(..n).map(|(_, e)| e).collect();
        let out = out.into_iter().map(|mut e| {
            self.enrich(&mut e);
            e
        }).collect();
        self.by_key.clear();
        for (i, (_, e)) in self.pending.iter().enumerate().filter(|(_, (_, e))| e.answerable()) {
            self.by_key.insert((e.sock_id, e.header.seq), i);
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

    /// Puts names next to interface indexes; with `final_pass`, a name that
    /// cannot be found is reported as `null`.
    fn name_indexes(&mut self, e: &mut NetlinkEvent, final_pass: bool) {
        let ino = u64::from(e.netns_ino);
        for (idx_key, name_key) in [("ifindex", "ifname"), ("master_index", "master"), ("oif_index", "oif"), ("iif_index", "iif"), ("link_index", "link")] {
            let Some(idx) = e.attrs.get(idx_key).and_then(Value::as_u64) else { continue };
            if let Some(n) = e.attrs.get(name_key).and_then(Value::as_str) {
                let n = n.to_string();
                self.enricher.learn(ino, idx as u32, &n);
                continue;
            }
            match self.enricher.ifname(ino, e.pid, idx as u32) {
                Some(name) => {
                    e.attrs.insert(name_key.to_string(), json!(name));
                }
                None if final_pass => {
                    e.attrs.insert(name_key.to_string(), Value::Null);
                }
                None => {}
            }
        }
    }

    /// Fills in names: namespace, interfaces behind indexes, target namespace.
    fn enrich(&mut self, e: &mut NetlinkEvent) {
        let ino = u64::from(e.netns_ino);
        e.netns_name = self.enricher.netns_name(ino);
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
pub fn summary(e: &NetlinkEvent) -> String {
    let a = &e.attrs;
    let s = |k: &str| a.get(k).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
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
                parts.push(format!("peer {p}"));
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
                parts.push(format!("{k}={v}"));
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
                Value::String(x) => parts.push(format!("{k} {x}")),
                other => parts.push(format!("{k} {other}")),
            }
        }
    }
    if let Some(t) = &e.target_netns {
        let name = t.get("name").and_then(Value::as_str).map(String::from).or_else(|| t.get("inode").filter(|v| !v.is_null()).map(|v| v.to_string()));
        let of = t.get("of").and_then(Value::as_str).unwrap_or("link");
        let what = if of == "peer" { "peer netns" } else { "netns" };
        parts.push(format!("{what} {}", name.unwrap_or_else(|| "?".into())));
    }
    parts.join(" ")
}
