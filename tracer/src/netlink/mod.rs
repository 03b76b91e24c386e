//! Netlink audit: turns captured send buffers into one event per netlink
//! message, matches each with the kernel's answer, and renders them like
//! `ip monitor`, prefixed by who sent them and where.

pub mod decode;

use std::collections::HashMap;

use serde_json::{Value, json};
use tracer_common::netlink::{NetlinkAck, NetlinkSend, Syscall};

use crate::{
    clock::{self, Clock},
    event::{RawEvent, read_pod},
    output::Render,
};
use decode::{Decoded, NlHeader};

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
    pub decoded: Decoded,
    /// The buffer ended before this message did.
    pub truncated: bool,
    /// `Some(errno)` once the answer was seen (0: success).
    pub result: Option<i32>,
    pub extack: Option<String>,
    sock_id: u64,
}

impl NetlinkEvent {
    pub fn msg_type_name(&self) -> String {
        decode::msg_type_name(self.protocol, self.header.msg_type)
    }

    pub fn is_get(&self) -> bool {
        decode::is_get(self.protocol, self.header.msg_type, self.header.flags)
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
            "attrs": self.decoded.attrs,
            "result": result,
        });
        if let Some(t) = &self.decoded.target_netns {
            v["target_netns"] = t.clone();
        }
        if self.truncated {
            v["truncated"] = json!(true);
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
        let trunc = if self.truncated { " [truncated]" } else { "" };
        format!(
            "{} {}[{}] netns={} container={}  {} {}{}  {}",
            clock::hms_micros(self.wall_ns),
            self.comm,
            self.pid,
            ns,
            container,
            self.msg_type_name(),
            self.decoded.summary,
            trunc,
            result
        )
    }
}

/// How long a request waits for its answer before it is printed without one.
pub const ACK_WAIT_NS: u64 = 300_000_000;

/// Pairs requests with answers. Requests come out in the order they were sent.
#[derive(Default)]
pub struct Correlator {
    clock: Clock,
    pending: Vec<(u64, NetlinkEvent)>,
    by_key: HashMap<(u64, u32), usize>,
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Self { clock, ..Default::default() }
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
        let Some(meta) = read_pod::<NetlinkSend>(&ev.payload) else { return };
        let data = &ev.payload[size_of::<NetlinkSend>()..];
        let data = &data[..(meta.data_len as usize).min(data.len())];
        let syscall = Syscall::try_from(meta.syscall).unwrap_or(Syscall::Sendmsg);
        let wall_ns = self.clock.wall_ns(ev.header.ts_ns);
        for msg in decode::split_messages(meta.protocol, data, meta.truncated != 0) {
            let e = NetlinkEvent {
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
                decoded: msg.decoded,
                truncated: msg.truncated,
                result: None,
                extack: None,
                sock_id: meta.sock_id,
            };
            self.by_key.insert((meta.sock_id, e.header.seq), self.pending.len());
            self.pending.push((ev.header.ts_ns, e));
        }
    }

    fn push_ack(&mut self, ev: &RawEvent) {
        let Some(meta) = read_pod::<NetlinkAck>(&ev.payload) else { return };
        let data = &ev.payload[size_of::<NetlinkAck>()..];
        let data = &data[..(meta.data_len as usize).min(data.len())];
        for ack in decode::parse_acks(data) {
            if let Some(&i) = self.by_key.get(&(meta.sock_id, ack.seq)) {
                if let Some((_, e)) = self.pending.get_mut(i) {
                    if e.sock_id == meta.sock_id && e.header.seq == ack.seq && e.result.is_none() {
                        e.result = Some(ack.errno);
                        e.extack = ack.extack;
                    }
                }
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
        self.by_key.clear();
        for (i, (_, e)) in self.pending.iter().enumerate() {
            self.by_key.insert((e.sock_id, e.header.seq), i);
        }
        out
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
