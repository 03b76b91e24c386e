//! One netlink request as an event: what the audit prints for it, `ip
//! monitor`-like text prefixed by who sent it and where, or one JSON object.

use serde_json::{Map, Value, json};
use tracer_common::netlink::Syscall;

use super::{
    decode::{self, NlHeader},
    effects::{Change, Objects},
    route::TargetRef,
};
use crate::{
    ns::{Container, NetnsId, TargetNetns},
    output::Render,
    sys::{
        clock,
        text::{self, MESSAGE_MAX},
    },
};

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
    /// The sender's socket's namespace (the registry names it when the
    /// request is printed).
    pub netns: NetnsId,
    /// The container that owns that namespace, else the one the sender is in.
    pub container: Option<Container>,
    pub protocol: u16,
    pub syscall: Syscall,
    pub header: NlHeader,
    /// `RTM_NEWLINK`, `NFT_MSG_NEWTABLE`, `genl:nl80211`...
    pub type_name: String,
    /// Decoded attributes (interface names filled in by enrichment).
    pub attrs: Map<String, Value>,
    /// When the request acts on another namespace.
    pub target_netns: Option<TargetNetns>,
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
    /// The request's header as the kernel echoed it in its answer, when
    /// that echo differs from what was captured (see
    /// [`decode::Ack::differs_from`]): the bytes printed are then not the
    /// ones the kernel acted on.
    pub echo_mismatch: Option<NlHeader>,
    /// The first captured bytes, kept until the answer (then dropped).
    pub(super) sent: Vec<u8>,
    pub(super) sock_id: u64,
    pub(super) target: Option<TargetRef>,
    pub(super) ns_fds: Vec<(u32, u32)>,
    /// (namespace, ifindex) whose names were being looked up when the
    /// request was read: it is held until they are in (see [`super::Correlator::ready`]).
    pub(super) lookups: Vec<(u64, u32)>,
    /// About the memory it takes (see [`NetlinkEvent::mem_bytes`]).
    pub(super) mem_bytes: usize,
    /// The sending socket's netlink port id: notifications the request
    /// caused carry it.
    pub(super) portid: u32,
    /// What the request touched, to match the kernel's notifications.
    pub(super) objects: Objects,
    /// The notifications the request caused, in the order they came.
    pub effects: Vec<Change>,
}

impl NetlinkEvent {
    pub fn msg_type_name(&self) -> String {
        self.type_name.clone()
    }

    /// About the memory this event takes, from the length of its message:
    /// its attributes (names, addresses, decoded or as hex) are at most
    /// twice the bytes they came from, plus [`super::correlate::EVENT_BASE_BYTES`].
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
    pub(super) fn answerable(&self) -> bool {
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
            "netns": self.netns,
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
        if !self.effects.is_empty() {
            v["effects"] = Value::Array(self.effects.iter().map(Change::effect_json).collect());
        }
        if let Some(e) = &self.decode_error {
            v["decode_error"] = json!(e);
        }
        if self.truncated {
            v["truncated"] = json!(true);
            v["total_len"] = json!(self.header.len);
            v["captured_len"] = json!(self.captured_len);
        }
        if let Some(h) = &self.echo_mismatch {
            v["echo_mismatch"] = json!(true);
            v["echoed"] = json!({
                "len": h.len,
                "msg_type": decode::msg_type_name(self.protocol, h.msg_type),
                "flags": decode::flag_names(self.protocol, h.msg_type, h.flags),
                "seq": h.seq,
            });
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
        let ns = match self.netns.label() {
            l if l == self.netns.inode.to_string() => l.into_owned(),
            l => format!("{}({})", text::name(&l), self.netns.inode),
        };
        let container = self.container.as_ref().map_or(std::borrow::Cow::Borrowed("-"), |c| text::name(c.label()));
        let result = match self.result {
            // The kernel answers only failures of requests without NLM_F_ACK.
            None if self.header.flags & decode::NLM_F_ACK == 0 => "-> no answer requested (and no error seen)".to_string(),
            None => format!("-> no answer seen in {} ms", super::ACK_WAIT_NS / 1_000_000),
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
        let trunc = match &self.echo_mismatch {
            Some(h) => format!(
                "{trunc} [changed during the call: the kernel's echo is {} len {} seq {}]",
                decode::msg_type_name(self.protocol, h.msg_type),
                h.len,
                h.seq
            ),
            None => trunc,
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

    fn more_lines(&self) -> Vec<String> {
        self.effects.iter().map(Change::effect_text).collect()
    }
}

/// Bytes of a malformed message shown in text output (JSON has them all).
const RAW_TEXT_MAX: usize = 64;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
            if let Some(l) = s("lladdr") {
                parts.push(format!("address {l}"));
            }
            if let Some(l) = dev("link", "link_index") {
                parts.push(format!("link {l}"));
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
        let what = if t.of == "peer" { "peer netns" } else { "netns" };
        parts.push(format!("{what} {}", text::name(&t.label())));
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
            netns: NetnsId { inode: 4026531840, name: Some("lab\x1b[2J".into()), ..Default::default() },
            container: Some(Container { pod: None, runtime: "docker".into(), id: "ab".into(), name: Some("c".repeat(300)) }),
            protocol,
            syscall: Syscall::Sendmsg,
            header: NlHeader { len: 0, msg_type, flags: decode::NLM_F_ACK | decode::NLM_F_CREATE, seq: 1, pid: 0 },
            type_name: type_name.into(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            target_netns: Some(TargetNetns { inode: Some(5), name: Some("t\x07".into()), host: false, of: "peer", by: crate::ns::NsRef::Fd(3) }),
            decode_error: None,
            truncated: false,
            result: Some(-22),
            extack: Some(format!("bad\x1b]0;x\x07{}", "e".repeat(1000))),
            echo_mismatch: None,
            sent: Vec::new(),
            sock_id: 0,
            target: None,
            ns_fds: vec![],
            cgroup_id: 0,
            lookups: Vec::new(),
            mem_bytes: 0,
            portid: 0,
            objects: Default::default(),
            effects: Vec::new(),
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
    fn results_say_what_was_seen_and_set_requests_what_they_set() {
        let mut e = event("ip", decode::NETLINK_ROUTE, 19, "RTM_SETLINK", json!({"ifname": "eth0", "lladdr": "02:42:ac:11:00:02", "mtu": 1400}));
        e.target_netns = None;
        e.result = None;
        e.extack = None;
        let t = e.text();
        assert!(t.contains("set eth0 mtu 1400 address 02:42:ac:11:00:02"), "{t}");
        assert!(t.ends_with("-> no answer seen in 300 ms"), "{t}");
        e.header.flags = 0;
        assert!(e.text().ends_with("-> no answer requested (and no error seen)"), "{}", e.text());
        assert!(!e.text().contains('?'));
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

