//! One dropped packet, decoded from its ring-buffer record, and its text
//! and JSON forms.
//!
//! The packet's headers are decoded as `tracer packets` decodes them, by
//! the layer both share ([`crate::frames`]): an Ethernet frame
//! (synthesised when the kernel gave the network header first) gives the
//! summary and the JSON fields.

use serde_json::{Map, Value};
use tracer_common::drops::{DropMeta, REASON_NONE, attrib, layer};

use crate::{
    bpf::{
        event::{RawEvent, read_pod},
        tp::EnumNames,
    },
    frames::{Headers, pcapng::Frame},
    ns::{Container, NetnsId, names::Naming},
    output::Render,
    sys::{
        clock::{self, Clock},
        text,
    },
    tc::cbpf::Filter,
};

/// The drop reason `NOT_SPECIFIED`: the kernel gave none (marked in output).
pub const NOT_SPECIFIED: &str = "NOT_SPECIFIED";

/// One dropped packet.
#[derive(Clone, Debug)]
pub struct DropEvent {
    pub wall_ns: u64,
    /// `None` when neither a device nor a socket told.
    pub netns: Option<NetnsId>,
    /// How the namespace was found: `device`, `socket` or `unknown`.
    pub attributed_by: &'static str,
    pub ifindex: Option<u32>,
    pub ifname: Option<String>,
    /// The kernel's reason value, `None` on kernels without reasons.
    pub reason_code: Option<u32>,
    /// Its name from the running kernel's `enum skb_drop_reason`.
    pub reason: Option<String>,
    pub location: u64,
    /// `location` symbolised (`nf_hook_slow+0x9c`).
    pub function: Option<String>,
    /// `skb->len`.
    pub len: u32,
    /// The copied bytes as an Ethernet frame (a zeroed Ethernet header
    /// put in front when the kernel copied from the network header); empty
    /// when nothing was copied.
    pub frame: Vec<u8>,
    /// The Ethernet header in `frame` is made up (the kernel copied from
    /// the network header): `len` does not count it.
    pub synthesized_eth: bool,
    pub headers: Headers,
    /// The task the drop happened in (a system call), when not in an interrupt.
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// The Ethernet frame of what the kernel copied.
fn frame_of(meta: &DropMeta, data: &[u8]) -> Vec<u8> {
    match meta.layer {
        layer::L2 => data.to_vec(),
        layer::L3 if !data.is_empty() => {
            let mut et = u16::from_be(meta.protocol);
            // A locally made skb may have no protocol yet: the IP version says.
            if et == 0 {
                et = match data[0] >> 4 {
                    6 => ETH_P_IPV6,
                    _ => ETH_P_IP,
                };
            }
            let mut v = Vec::with_capacity(14 + data.len());
            v.extend_from_slice(&[0; 12]);
            v.extend_from_slice(&et.to_be_bytes());
            v.extend_from_slice(data);
            v
        }
        _ => Vec::new(),
    }
}

impl DropEvent {
    /// Names what was unnamed from `names` as it is now (the line is held
    /// a moment before it is printed, in which a new container's name or
    /// an interface's is usually found).
    pub fn rename(&mut self, names: &impl Naming) {
        if let Some(n) = &mut self.netns
            && n.name.is_none()
            && !n.host
        {
            let now = names.netns_id(n.inode);
            if now.name.is_some() || now.host {
                *n = now;
            }
        }
        if let (Some(ns), Some(idx), Some(name)) = (&self.netns, self.ifindex, &mut self.ifname)
            && crate::ns::label::is_index_name(name, idx)
            && let Some(now) = names.ifname_of(ns.inode, idx)
        {
            *name = now;
        }
    }

    /// Builds the event; `None` if the record is malformed.
    pub fn from_raw(
        ev: &RawEvent,
        clock: &Clock,
        names: &impl Naming,
        reasons: &EnumNames,
        symbolise: &mut dyn FnMut(u64) -> Option<String>,
    ) -> Option<Self> {
        let meta: DropMeta = read_pod(&ev.payload)?;
        let data = &ev.payload[size_of::<DropMeta>()..];
        let data = &data[..(meta.cap_len as usize).min(data.len())];
        let frame = frame_of(&meta, data);
        let mut headers = if frame.is_empty() { Headers::default() } else { Headers::of_ethernet(&frame, meta.len) };
        if meta.layer == layer::L3 {
            // The zeroed MAC addresses are ours, not the packet's.
            headers.fields.remove("eth_src");
            headers.fields.remove("eth_dst");
        }
        let ns = u64::from(ev.header.netns_ino);
        let (ifindex, ifname) = if meta.attrib == attrib::DEVICE && meta.ifindex != 0 {
            (Some(meta.ifindex), Some(names.ifname_of(ns, meta.ifindex).unwrap_or_else(|| format!("if{}", meta.ifindex))))
        } else {
            (None, None)
        };
        let reason_code = (meta.reason != REASON_NONE).then_some(meta.reason);
        let reason = reason_code.map(|r| reasons.name(u64::from(r)).map(String::from).unwrap_or_else(|| format!("UNKNOWN_{r}")));
        let task = ev.header.pid_tgid != 0;
        Some(Self {
            wall_ns: clock.wall_ns(ev.header.ts_ns),
            netns: (ns != 0).then(|| names.netns_id(ns)),
            attributed_by: match meta.attrib {
                attrib::DEVICE => "device",
                attrib::SOCKET => "socket",
                _ => "unknown",
            },
            ifindex,
            ifname,
            reason_code,
            reason,
            location: meta.location,
            function: if meta.location == 0 { None } else { symbolise(meta.location) },
            len: meta.len,
            synthesized_eth: meta.layer == layer::L3 && !frame.is_empty(),
            frame,
            headers,
            pid: task.then(|| ev.tgid()),
            comm: task.then(|| ev.comm()),
        })
    }

    /// The kernel said why (anything but `NOT_SPECIFIED` or no reason at all).
    pub fn specified(&self) -> bool {
        self.reason.as_deref().is_some_and(|r| r != NOT_SPECIFIED)
    }

    /// `REASON` for text: `NOT_SPECIFIED(unspecified)` marked, `-` on
    /// kernels without reasons.
    pub fn reason_text(&self) -> String {
        match self.reason.as_deref() {
            None => "-".into(),
            Some(NOT_SPECIFIED) => format!("{NOT_SPECIFIED}(unspecified)"),
            Some(r) => r.to_string(),
        }
    }

    /// Whether `filter` (libpcap's, for Ethernet) keeps the drop: run on
    /// the copied frame with its length on the wire (a made-up Ethernet
    /// header counted in). Nothing copied: no match.
    pub fn passes(&self, filter: Option<&Filter>) -> bool {
        match filter {
            None => true,
            Some(_) if self.frame.is_empty() => false,
            Some(f) => f.matches(&self.frame, self.len.saturating_add(if self.synthesized_eth { 14 } else { 0 })),
        }
    }

    /// For the pcapng packet comment: `reason=R function=F`.
    pub fn comment(&self) -> String {
        format!("reason={} function={}", self.reason.as_deref().unwrap_or("-"), self.function.as_deref().unwrap_or("?"))
    }

    /// The container that owns the namespace.
    pub fn container(&self) -> Option<&Container> {
        self.netns.as_ref().and_then(|n| n.owner.as_ref())
    }

    /// How text names the namespace: [`NetnsId::label`], `?` for none.
    pub fn label(&self) -> String {
        self.netns.as_ref().map_or_else(|| "?".into(), |n| n.label().into_owned())
    }

    /// What pcapng writes of it: no direction (a dropped packet went
    /// nowhere), the reason and function in the comment (`note`, from
    /// [`Self::comment`]); `unknown` names a drop with no namespace.
    pub fn frame<'a>(&'a self, unknown: &'a NetnsId, note: &'a str) -> Frame<'a> {
        Frame {
            wall_ns: self.wall_ns,
            netns: self.netns.as_ref().unwrap_or(unknown),
            ifindex: self.ifindex.unwrap_or(0),
            ifname: self.ifname.as_deref().unwrap_or("-"),
            len: self.len + if self.synthesized_eth { 14 } else { 0 },
            ethernet: true,
            data: &self.frame,
            direction: None,
            note: Some(note.into()),
        }
    }
}

/// The JSON form: the contract's `type`, `time`, `netns`, `container`,
/// then where and why, then the header fields `tracer packets` prints.
impl Render for DropEvent {
    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), "drop".into());
        m.insert("time".into(), clock::rfc3339(self.wall_ns).into());
        m.insert("netns".into(), serde_json::to_value(&self.netns).unwrap_or(Value::Null));
        m.insert("container".into(), serde_json::to_value(self.container()).unwrap_or(Value::Null));
        m.insert("attributed_by".into(), self.attributed_by.into());
        m.insert("ifname".into(), self.ifname.clone().into());
        m.insert("ifindex".into(), self.ifindex.into());
        m.insert("reason".into(), self.reason.clone().into());
        m.insert("reason_code".into(), self.reason_code.into());
        m.insert("unspecified".into(), (!self.specified()).into());
        m.insert("function".into(), self.function.clone().into());
        m.insert("location".into(), format!("{:#x}", self.location).into());
        m.insert("len".into(), self.len.into());
        m.insert("caplen".into(), self.frame.len().into());
        for (k, v) in &self.headers.fields {
            // The drop's own fields win over a decoder's of the same name.
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(p) = self.pid {
            m.insert("pid".into(), p.into());
            m.insert("comm".into(), self.comm.clone().into());
        }
        Value::Object(m)
    }

    fn text(&self) -> String {
        let at = self.function.as_deref().map(|f| format!(" at {f}")).unwrap_or_default();
        let by = match (self.pid, &self.comm) {
            (Some(p), Some(c)) => format!(" by {}[{p}]", text::name(c)),
            _ => String::new(),
        };
        let summary = if self.headers.summary.is_empty() { format!("length {}", self.len) } else { self.headers.summary.clone() };
        format!(
            "{} {}/{} drop {}{at}{by}: {summary}",
            clock::hms_micros(self.wall_ns),
            text::name(&self.label()),
            text::name(self.ifname.as_deref().unwrap_or("-")),
            self.reason_text(),
        )
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tracer_common::{EventHeader, EventKind};

    use super::*;
    use crate::ns::names::NsNames;

    fn raw(meta: DropMeta, data: &[u8], netns: u32, pid: u64) -> RawEvent {
        let mut payload = Vec::new();
        // SAFETY: DropMeta is repr(C) POD.
        payload.extend_from_slice(unsafe { std::slice::from_raw_parts(&meta as *const _ as *const u8, size_of::<DropMeta>()) });
        payload.extend_from_slice(data);
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"nc");
        RawEvent {
            header: EventHeader {
                kind: EventKind::Drop as u32,
                cpu: 1,
                ts_ns: 5,
                pid_tgid: pid << 32 | pid,
                uid_gid: 0,
                cgroup_id: 0,
                netns_ino: netns,
                payload_len: payload.len() as u32,
                comm,
            },
            kind: EventKind::Drop,
            payload: Bytes::from(payload),
        }
    }

    fn reasons() -> EnumNames {
        EnumNames::from_members(vec![("SKB_DROP_REASON_NOT_SPECIFIED".into(), 2), ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12)], &["SKB_DROP_REASON_"])
    }

    /// IPv4 + UDP 10.0.0.1:5000 -> 10.0.0.2:53 with 4 bytes of payload.
    const UDP: [u8; 32] = [
        0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4,
    ];

    fn names() -> NsNames {
        let mut n = NsNames::new(Some(1));
        n.insert(7, Some("lab-a"), None, &[(2, "eth0")]);
        n
    }

    #[test]
    fn l3_data_gets_an_ethernet_header_and_names() {
        let meta = DropMeta { location: 0x1234, reason: 12, ifindex: 2, len: 32, cap_len: 32, protocol: ETH_P_IP.to_be(), attrib: attrib::DEVICE, layer: layer::L3, _pad: 0 };
        let ip = UDP;
        let mut sym = |a: u64| Some(format!("nf_hook_slow+{:#x}", a - 0x1200));
        let e = DropEvent::from_raw(&raw(meta, &ip, 7, 0), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert_eq!(e.frame.len(), 46);
        assert_eq!(&e.frame[12..14], &[0x08, 0x00]);
        assert_eq!((e.reason.as_deref(), e.function.as_deref()), (Some("NETFILTER_DROP"), Some("nf_hook_slow+0x34")));
        assert_eq!((e.label().as_str(), e.ifname.as_deref(), e.pid), ("lab-a", Some("eth0"), None));
        let t = e.text();
        assert!(t.ends_with(" lab-a/eth0 drop NETFILTER_DROP at nf_hook_slow+0x34: IP 10.0.0.1.5000 > 10.0.0.2.53: UDP, length 4"), "{t}");
        let j = e.json();
        assert_eq!(j["type"], "drop");
        assert_eq!(j["netns"], serde_json::json!({"inode": 7, "name": "lab-a"}));
        assert_eq!((j["reason"].as_str(), j["reason_code"].as_u64(), j["unspecified"].as_bool()), (Some("NETFILTER_DROP"), Some(12), Some(false)));
        assert_eq!((j["ifname"].as_str(), j["attributed_by"].as_str(), j["location"].as_str()), (Some("eth0"), Some("device"), Some("0x1234")));
        // The header fields exactly as `tracer packets` names them.
        assert_eq!((j["l3"].as_str(), j["proto"].as_str(), j["sport"].as_u64(), j["dport"].as_u64()), (Some("ipv4"), Some("udp"), Some(5000), Some(53)));
        assert_eq!(j["summary"], "IP 10.0.0.1.5000 > 10.0.0.2.53: UDP, length 4");
        assert!(j.get("eth_src").is_none(), "synthesised MACs are not reported");
        assert_eq!((j["len"].as_u64(), j["caplen"].as_u64()), (Some(32), Some(46)));
        assert!(j["container"].is_null());
        assert!(j.get("pid").is_none());
    }

    #[test]
    fn a_drop_decoded_unnamed_is_named_when_the_names_come() {
        let meta = DropMeta { location: 0x1234, reason: 12, ifindex: 3, len: 32, cap_len: 32, protocol: ETH_P_IP.to_be(), attrib: attrib::DEVICE, layer: layer::L3, _pad: 0 };
        let mut sym = |_: u64| None;
        let mut e = DropEvent::from_raw(&raw(meta, &UDP, 9, 0), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert_eq!((e.label().as_str(), e.ifname.as_deref()), ("9", Some("if3")));
        // Meanwhile the namespace became a container's, with its eth0.
        let mut later = names();
        later.insert(9, Some("web"), None, &[(3, "eth0")]);
        e.rename(&later);
        assert_eq!((e.label().as_str(), e.ifname.as_deref()), ("web", Some("eth0")));
        assert!(e.text().contains(" web/eth0 drop NETFILTER_DROP"), "{}", e.text());
    }

    #[test]
    fn socket_unknown_unspecified_and_no_reason() {
        let mut sym = |_| None;
        let meta = DropMeta { reason: 2, len: 10, attrib: attrib::SOCKET, ..Default::default() };
        let e = DropEvent::from_raw(&raw(meta, &[], 7, 42), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert!(!e.specified());
        assert_eq!((e.ifname.as_deref(), e.attributed_by, e.pid, e.comm.as_deref()), (None, "socket", Some(42), Some("nc")));
        assert!(e.text().contains(" lab-a/- drop NOT_SPECIFIED(unspecified) by nc[42]: length 10"), "{}", e.text());
        assert_eq!(e.json()["unspecified"], true);
        // No namespace at all, and a kernel without reasons.
        let meta = DropMeta { reason: REASON_NONE, attrib: attrib::UNKNOWN, ..Default::default() };
        let e = DropEvent::from_raw(&raw(meta, &[], 0, 0), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert!(e.text().contains(" ?/- drop -: length 0"), "{}", e.text());
        let j = e.json();
        assert!(j["netns"].is_null() && j["reason"].is_null());
        // A value this kernel's enum does not name.
        let meta = DropMeta { reason: 500, ..Default::default() };
        let e = DropEvent::from_raw(&raw(meta, &[], 7, 0), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert_eq!(e.reason.as_deref(), Some("UNKNOWN_500"));
    }

    #[test]
    fn hostile_records_never_panic() {
        let mut sym = |_| None;
        // Claimed cap_len beyond the bytes present; L3 with one byte; short payloads.
        let meta = DropMeta { cap_len: 4000, layer: layer::L3, ..Default::default() };
        let e = DropEvent::from_raw(&raw(meta, &[0x60], 7, 0), &Clock::new(), &names(), &reasons(), &mut sym).expect("event");
        assert_eq!(&e.frame[12..14], &[0x86, 0xdd]);
        let mut r = raw(DropMeta::default(), &[], 7, 0);
        r.payload = Bytes::from_static(&[1, 2, 3]);
        assert!(DropEvent::from_raw(&r, &Clock::new(), &names(), &reasons(), &mut sym).is_none());
        // A hostile interface name is escaped in text, exact in JSON.
        let mut n = names();
        n.insert(7, Some("lab\x1b[2J"), None, &[(3, "e\u{202e}x")]);
        let meta = DropMeta { ifindex: 3, attrib: attrib::DEVICE, ..Default::default() };
        let e = DropEvent::from_raw(&raw(meta, &[], 7, 0), &Clock::new(), &n, &reasons(), &mut sym).expect("event");
        let t = e.text();
        assert!(!t.chars().any(|c| c.is_control()), "{t:?}");
        assert_eq!(e.json()["ifname"], "e\u{202e}x");
    }
}
