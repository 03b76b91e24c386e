//! One packet seen on one interface, decoded from its ring-buffer record
//! and labelled with its namespace, container and interface: as a
//! `tcpdump -n`-style text line or one JSON object.

use serde_json::Value;
use tracer_common::packet::{DIR_INGRESS, PacketMeta};

use super::decode;
use crate::{
    frames::{HeaderJson, pcapng::Frame},
    bpf::event::{RawEvent, read_pod},
    output::Render,
    sys::{
        clock::{self, Clock},
        contain::contain,
        text,
    },
    ns::{Container, NetnsId},
    procs::{Endpoints, PacketProcs, render},
    tc::topology::Topology,
};

/// One packet seen on one interface, decoded.
#[derive(Clone, Debug)]
pub struct PacketEvent {
    pub wall_ns: u64,
    /// The interface's namespace, with the container that owns it.
    pub netns: NetnsId,
    pub ifindex: u32,
    pub ifname: String,
    pub direction: u8,
    /// Length of the frame on the wire (with a VLAN tag put back).
    pub len: u32,
    pub hash: u32,
    pub mark: u32,
    /// Whether `frame` starts with an Ethernet header (else with IP).
    pub ethernet: bool,
    /// The captured bytes.
    pub frame: Vec<u8>,
    pub decoded: decode::Decoded,
    /// The local processes at each end (see [`crate::procs`]).
    pub procs: PacketProcs,
}

#[cfg(test)]
impl PacketEvent {
    /// A test packet: `frame` (Ethernet) decoded, seen at `wall_ns` on
    /// interface 1 (`x`) of namespace 1, ingress; fields set as a test needs.
    pub(crate) fn sample(wall_ns: u64, frame: Vec<u8>) -> Self {
        PacketEvent {
            wall_ns,
            netns: NetnsId { inode: 1, ..Default::default() },
            ifindex: 1,
            ifname: "x".into(),
            direction: 0,
            len: frame.len() as u32,
            hash: 0,
            mark: 0,
            ethernet: true,
            decoded: decode::decode(&frame, true),
            frame,
            procs: PacketProcs::default(),
        }
    }
}

impl PacketEvent {
    /// Whether its namespace or interface is shown by number only (the
    /// attach thread had not named it when the packet was decoded).
    pub fn unnamed(&self) -> bool {
        (self.netns.name.is_none() && !self.netns.host) || crate::ns::label::is_index_name(&self.ifname, self.ifindex)
    }

    /// Names what was unnamed from `topo` as it is now: a packet is held a
    /// moment before it is printed, in which a new container's name or a
    /// moved interface's is usually found.
    pub fn rename(&mut self, topo: &Topology) {
        if self.netns.name.is_none() && !self.netns.host {
            let now = topo.netns(self.netns.inode);
            if now.name.is_some() || now.host {
                self.netns = now;
            }
        }
        if crate::ns::label::is_index_name(&self.ifname, self.ifindex) {
            self.ifname = topo.ifname(self.netns.inode, self.ifindex);
        }
    }

    /// Builds the event from a ring-buffer record; `None` if it is
    /// malformed. `decode_headers: false` leaves the headers undecoded (pcapng
    /// needs only the bytes).
    pub fn from_raw(ev: &RawEvent, clock: &Clock, topo: &Topology, decode_headers: bool) -> Option<Self> {
        let meta: PacketMeta = read_pod(&ev.payload)?;
        let data = &ev.payload[size_of::<PacketMeta>()..];
        let data = &data[..(meta.cap_len as usize).min(data.len())];
        let protocol = u16::from_be(meta.protocol);
        let ethernet = decode::starts_with_ethernet(data, protocol);
        let (frame, len) = if meta.vlan_present != 0 && ethernet {
            (decode::reinsert_vlan(data, u16::from_be(meta.vlan_proto), meta.vlan_tci), meta.len.saturating_add(4))
        } else {
            (data.to_vec(), meta.len)
        };
        // A decoder bug costs this packet only (counted as malformed).
        let decoded = if decode_headers { contain(|| decode::decode(&frame, ethernet)).ok()? } else { decode::Decoded::default() };
        let ns = u64::from(ev.header.netns_ino);
        Some(Self {
            wall_ns: clock.wall_ns(ev.header.ts_ns),
            netns: topo.netns(ns),
            ifindex: meta.ifindex,
            ifname: topo.ifname(ns, meta.ifindex),
            direction: meta.direction,
            len,
            hash: meta.hash,
            mark: meta.mark,
            ethernet,
            frame,
            decoded,
            procs: PacketProcs { cookie: meta.sock_cookie, mono_ns: ev.header.ts_ns, ..Default::default() },
        })
    }

    /// The addresses and ports, for finding the sockets at each end.
    pub fn endpoints(&self) -> Option<Endpoints> {
        let d = &self.decoded;
        Some(Endpoints { proto: d.proto?, src: d.src?, sport: d.sport?, dst: d.dst?, dport: d.dport? })
    }

    pub fn direction_name(&self) -> &'static str {
        if self.direction == DIR_INGRESS { "ingress" } else { "egress" }
    }

    /// `In`/`Out`, as `tcpdump -i any` prints it.
    pub fn dir_short(&self) -> &'static str {
        if self.direction == DIR_INGRESS { "In" } else { "Out" }
    }

    /// The container that owns the interface's namespace.
    pub fn container(&self) -> Option<&Container> {
        self.netns.owner.as_ref()
    }

    /// `NAMESPACE/INTERFACE` for text output: both names cut and escaped
    /// (a container's name and an interface's are chosen by its owner).
    pub fn where_text(&self) -> String {
        format!("{}/{}", text::name(&self.netns.label()), text::name(&self.ifname))
    }

    pub fn summary(&self) -> String {
        decode::summary(&self.decoded, self.len)
    }

    /// What pcapng writes of it.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            wall_ns: self.wall_ns,
            netns: &self.netns,
            ifindex: self.ifindex,
            ifname: &self.ifname,
            len: self.len,
            ethernet: self.ethernet,
            data: &self.frame,
            direction: Some(self.direction),
            // The sending and receiving processes, when attributed.
            note: self.procs.on.then(|| {
                format!(
                    "process={} peer_process={}",
                    crate::procs::render::token(self.procs.sender.as_deref()),
                    crate::procs::render::token(self.procs.receiver.as_deref())
                )
                .into()
            }),
        }
    }
}

/// The JSON form of a [`PacketEvent`] (DESIGN.md's contract plus extras,
/// which are left out when unknown), serialized without building a `Value`.
#[derive(serde::Serialize)]
struct PacketJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    time: String,
    netns: &'a NetnsId,
    container: Option<&'a Container>,
    ifname: &'a str,
    ifindex: u32,
    direction: &'static str,
    len: u32,
    caplen: usize,
    #[serde(flatten)]
    headers: HeaderJson,
    hash: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<u32>,
    /// Present (null when not local) when process attribution is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Option<render::ProcessJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_process: Option<Option<render::ProcessJson<'a>>>,
}

impl PacketEvent {
    fn to_json(&self) -> PacketJson<'_> {
        PacketJson {
            ty: "packet",
            time: clock::rfc3339(self.wall_ns),
            netns: &self.netns,
            container: self.container(),
            ifname: &self.ifname,
            ifindex: self.ifindex,
            direction: self.direction_name(),
            len: self.len,
            caplen: self.frame.len(),
            headers: HeaderJson::of(&self.decoded, self.len),
            hash: self.hash,
            mark: (self.mark != 0).then_some(self.mark),
            process: self.procs.on.then(|| self.procs.sender.as_deref().map(render::json)),
            peer_process: self.procs.on.then(|| self.procs.receiver.as_deref().map(render::json)),
        }
    }

    /// `  proc: SENDER -> RECEIVER` when attribution is on, else nothing.
    pub fn procs_text(&self) -> String {
        if self.procs.on { render::pair_text(self.procs.sender.as_deref(), self.procs.receiver.as_deref()) } else { String::new() }
    }
}

impl Render for PacketEvent {
    fn json(&self) -> Value {
        serde_json::to_value(self.to_json()).unwrap_or(Value::Null)
    }

    fn json_line(&self) -> String {
        serde_json::to_string(&self.to_json()).unwrap_or_default()
    }

    fn text(&self) -> String {
        format!("{} {} {} {}{}", clock::hms_micros(self.wall_ns), self.where_text(), self.dir_short(), self.summary(), self.procs_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::hops;

    #[test]
    fn text_escapes_and_cuts_names_and_json_keeps_them() {
        let f = vec![0u8; 20];
        let p = PacketEvent {
            wall_ns: 0,
            netns: NetnsId {
                inode: 1,
                owner: Some(Container { pod: None, runtime: "docker".into(), id: "ab".into(), name: Some(format!("w\x1b]0;x\x07{}", "w".repeat(100))) }),
                ..Default::default()
            },
            ifindex: 3,
            ifname: "e\x1b[31m\u{9b}".into(),
            direction: 0,
            len: 20,
            hash: 0,
            mark: 0,
            ethernet: true,
            decoded: decode::decode(&f, true),
            frame: f,
            procs: PacketProcs::default(),
        };
        let text = p.text();
        let want = format!(r"w\x1b]0;x\x07{}.../e\x1b[31m\x9b In ", "w".repeat(crate::sys::text::NAME_MAX - 3 - 13));
        assert!(text.contains(&want), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
        let j: Value = serde_json::from_str(&p.json_line()).expect("json");
        assert_eq!(j["ifname"], "e\x1b[31m\u{9b}");
        let mut g = hops::Grouper::default();
        g.push(p);
        let path = g.ready(0, true).pop().expect("path");
        assert!(path.text().ends_with(want.trim_end()), "{}", path.text());
    }

    #[test]
    fn a_packet_decoded_unnamed_is_named_when_printed() {
        let mut p = PacketEvent::sample(0, vec![0; 14]);
        p.netns = NetnsId { inode: 7, ..Default::default() };
        p.ifindex = 3;
        p.ifname = "if3".into();
        assert!(p.unnamed());
        let mut topo = Topology::default();
        topo.insert(8, Some("other".into()), None, &[(3, "eth9")]);
        p.rename(&topo);
        assert!(p.unnamed(), "another namespace's names are not taken");
        topo.insert(7, Some("web".into()), None, &[(3, "eth0")]);
        p.rename(&topo);
        assert_eq!((p.netns.name.as_deref(), p.ifname.as_str()), (Some("web"), "eth0"));
        assert!(!p.unnamed());
        topo.insert(7, Some("renamed".into()), None, &[(3, "eth1")]);
        p.rename(&topo);
        assert_eq!((p.netns.name.as_deref(), p.ifname.as_str()), (Some("web"), "eth0"), "a name, once given, stays");
    }
}
