//! Packet tracing: the TC programs on every selected interface of every
//! selected namespace, followed as namespaces and interfaces come and go,
//! and the packets they see as text, JSON lines, pcapng or per-packet paths.
//!
//! Layers, data flowing one way: discovery ([`crate::ns::Registry`]) ->
//! [`attach`] (on a thread of its own, since it enters namespaces) -> the
//! shared ring buffer ([`crate::reader`]) -> [`decode`] -> output (the
//! [`crate::output::Sink`], [`pcapng`] to what [`capfile`] opened, or
//! [`hops`]). [`run`] also carries
//! the default job, where netlink requests and packets are merged into one
//! timeline. [`filter`] compiles tcpdump-style expressions for the kernel.

pub mod attach;
pub mod capfile;
pub mod clsact;
pub mod decode;
pub mod filter;
pub mod follow;
pub mod hops;
pub mod pcapng;
pub mod stale;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_common::{
    EventKind,
    packet::{DIR_INGRESS, PKT_DATA_MAX, PacketMeta},
};

use crate::{
    Error, NetlinkJob,
    cli::{CommonArgs, PacketArgs},
    clock::{self, Clock},
    contain::contain,
    ebpf,
    event::{RawEvent, read_pod},
    hooks,
    netlink::{self, NetlinkEvent},
    ns::{self, Iface},
    output::{self, Render, Sink, Stream},
    reader::{LostTracker, Reader},
    shutdown::Shutdown,
};
use attach::{Attacher, PACKET_PROGRAMS, TcMode};
use filter::FilterProgram;
pub use follow::{DEFAULT_KINDS, FOLLOW_INTERVAL, Follower, Scope, Selection, Topology, glob_match};

/// Bytes captured per packet when printing: enough for Ethernet, a VLAN
/// tag, IPv6 and a TCP header with options.
pub const DEFAULT_SNAPLEN: u32 = 128;

/// How often the ring buffer is drained without being woken.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Output bytes deferred before they are written anyway.
const SINK_MAX_BUFFERED: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PacketsError {
    #[error(transparent)]
    Pcapng(#[from] pcapng::PcapngError),
    #[error(transparent)]
    Capture(#[from] capfile::CaptureError),
    #[error("the attach thread stopped unexpectedly")]
    Follower,
    #[error(transparent)]
    Filter(#[from] filter::FilterError),
}

/// The validated form of `tracer packets`.
#[derive(Clone, Debug)]
pub struct PacketsJob {
    /// Namespaces and interfaces.
    pub select: Selection,
    pub snaplen: u32,
    pub write: Option<PathBuf>,
    pub hops: bool,
    /// Runs in the kernel; matches everything when no expression was given.
    pub filter: FilterProgram,
}

impl Default for PacketsJob {
    /// What the default job traces: everything.
    fn default() -> Self {
        Self {
            select: Selection::default(),
            snaplen: DEFAULT_SNAPLEN,
            write: None,
            hops: false,
            filter: FilterProgram::match_all(),
        }
    }
}

impl PacketsJob {
    pub fn from_args(a: &PacketArgs) -> Result<Self, Error> {
        let select = Selection::from_args(&a.sel, a.all, a.iface.as_deref())?;
        let filter = filter::from_args(a.filter.as_deref(), &a.expr)?;
        let max = PKT_DATA_MAX as u32;
        let snaplen = match a.snaplen {
            // As tcpdump: 0 means as much as possible.
            Some(0) => max,
            Some(n) if n > max => {
                eprintln!("tracer: --snaplen {n} lowered to {max}, the most the kernel side copies");
                max
            }
            Some(n) => n,
            // A file is for later reading: whole frames, as tcpdump -w.
            None if a.write.is_some() => max,
            None => DEFAULT_SNAPLEN,
        };
        Ok(Self { select, snaplen, write: a.write.clone(), hops: a.hops, filter })
    }

    /// Whether an interface is traced.
    pub fn wants(&self, i: &Iface) -> bool {
        self.select.wants(i)
    }
}

/// One packet seen on one interface, decoded.
#[derive(Clone, Debug)]
pub struct PacketEvent {
    pub wall_ns: u64,
    pub cpu: u32,
    pub netns_ino: u32,
    pub netns_name: Option<String>,
    /// The tracer's own (the host's) namespace.
    pub host_netns: bool,
    pub container: Option<Value>,
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
}

impl PacketEvent {
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
            cpu: ev.header.cpu,
            netns_ino: ev.header.netns_ino,
            netns_name: topo.ns_name(ns),
            host_netns: topo.host_netns == Some(ns),
            container: topo.container(ns),
            ifindex: meta.ifindex,
            ifname: topo.ifname(ns, meta.ifindex),
            direction: meta.direction,
            len,
            hash: meta.hash,
            mark: meta.mark,
            ethernet,
            frame,
            decoded,
        })
    }

    pub fn direction_name(&self) -> &'static str {
        if self.direction == DIR_INGRESS { "ingress" } else { "egress" }
    }

    /// `In`/`Out`, as `tcpdump -i any` prints it.
    pub fn dir_short(&self) -> &'static str {
        if self.direction == DIR_INGRESS { "In" } else { "Out" }
    }

    pub fn container_label(&self) -> Option<&str> {
        let c = self.container.as_ref()?;
        c.get("name").and_then(Value::as_str).or_else(|| c.get("id").and_then(Value::as_str))
    }

    /// The container's name, else the namespace's, else `host` for the
    /// tracer's own namespace, else the inode.
    pub fn ns_label(&self) -> String {
        match (self.container_label(), &self.netns_name) {
            (Some(c), _) => c.to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) if self.host_netns => "host".into(),
            (None, None) => self.netns_ino.to_string(),
        }
    }

    /// `NAMESPACE/INTERFACE` for text output: both names cut and escaped
    /// (a container's name and an interface's are chosen by its owner).
    pub fn where_text(&self) -> String {
        format!("{}/{}", output::name(&self.ns_label()), output::name(&self.ifname))
    }

    pub fn summary(&self) -> String {
        decode::summary(&self.decoded, self.len)
    }
}

/// The JSON form of a [`PacketEvent`] (DESIGN.md's contract plus extras,
/// which are left out when unknown), serialized without building a `Value`.
#[derive(serde::Serialize)]
struct PacketJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    time: String,
    netns: NetnsJson<'a>,
    container: &'a Option<Value>,
    ifname: &'a str,
    ifindex: u32,
    direction: &'static str,
    len: u32,
    caplen: usize,
    l3: Option<String>,
    proto: Option<String>,
    src: Option<std::net::IpAddr>,
    dst: Option<std::net::IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    tcp_flags: Option<Vec<&'static str>>,
    hash: u32,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    eth_src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eth_dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_len: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arp_op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<u32>,
}

#[derive(serde::Serialize)]
struct NetnsJson<'a> {
    inode: u32,
    name: &'a Option<String>,
}

impl PacketEvent {
    fn to_json(&self) -> PacketJson<'_> {
        let d = &self.decoded;
        PacketJson {
            ty: "packet",
            time: clock::rfc3339(self.wall_ns),
            netns: NetnsJson { inode: self.netns_ino, name: &self.netns_name },
            container: &self.container,
            ifname: &self.ifname,
            ifindex: self.ifindex,
            direction: self.direction_name(),
            len: self.len,
            caplen: self.frame.len(),
            l3: d.l3(),
            proto: d.proto_name(),
            src: d.src,
            dst: d.dst,
            sport: d.sport,
            dport: d.dport,
            tcp_flags: d.tcp_flag_names(),
            hash: self.hash,
            summary: self.summary(),
            eth_src: d.eth_src.as_ref().map(decode::mac_string),
            eth_dst: d.eth_dst.as_ref().map(decode::mac_string),
            vlan: d.vlan,
            ttl: d.ttl,
            ip_id: d.ip_id,
            payload_len: d.payload_len,
            seq: d.tcp.map(|t| t.seq),
            ack: d.tcp.map(|t| t.ack),
            icmp_type: d.icmp.map(|i| i.ty),
            icmp_code: d.icmp.map(|i| i.code),
            arp_op: d.arp.map(|a| match a.op {
                1 => "request",
                2 => "reply",
                _ => "other",
            }),
            mark: (self.mark != 0).then_some(self.mark),
        }
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
        format!("{} {} {} {}", clock::hms_micros(self.wall_ns), self.where_text(), self.dir_short(), self.summary())
    }
}

/// The headers of an Ethernet frame of wire length `len` as `tracer
/// packets` prints them (its summary and JSON header fields), for other
/// commands that show packets (`tracer drops`).
pub fn frame_headers(frame: &[u8], len: u32) -> crate::drops::event::Headers {
    let decoded = contain(|| decode::decode(frame, true)).unwrap_or_default();
    let p = PacketEvent {
        wall_ns: 0,
        cpu: 0,
        netns_ino: 0,
        netns_name: None,
        host_netns: false,
        container: None,
        ifindex: 0,
        ifname: String::new(),
        direction: DIR_INGRESS,
        len,
        hash: 0,
        mark: 0,
        ethernet: true,
        frame: Vec::new(),
        decoded,
    };
    let mut fields = match serde_json::to_value(p.to_json()) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    // What belongs to the capture point, not to the headers.
    for k in ["type", "time", "netns", "container", "ifname", "ifindex", "direction", "len", "caplen", "hash", "mark"] {
        fields.remove(k);
    }
    crate::drops::event::Headers { summary: p.summary(), fields }
}

/// Something to print, ordered by time in the merged timeline.
enum Item {
    Netlink(Box<NetlinkEvent>),
    Packet(Box<PacketEvent>),
    Path(hops::PacketPath),
}

impl Item {
    /// About the memory it takes: the captured bytes and a fixed part for
    /// the decoded fields and names.
    fn bytes(&self) -> usize {
        match self {
            Item::Netlink(e) => e.mem_bytes(),
            Item::Packet(p) => 512 + p.frame.len(),
            Item::Path(p) => p.hops.iter().map(|h| 512 + h.frame.len()).sum(),
        }
    }

    fn wall_ns(&self) -> u64 {
        match self {
            Item::Netlink(e) => e.wall_ns,
            Item::Packet(p) => p.wall_ns,
            Item::Path(p) => p.hops.first().map(|h| h.wall_ns).unwrap_or(0),
        }
    }

    fn render(&self) -> &dyn Render {
        match self {
            Item::Netlink(e) => e.as_ref(),
            Item::Packet(p) => p.as_ref(),
            Item::Path(p) => p,
        }
    }
}

/// Items the merger holds, at most, by count and by estimated memory. The
/// hold is ~400 ms of everything traced (at 250k packets/s, 100,000
/// packets, 60 MiB): past either cap, the oldest come out before their hold is
/// over, counted, which may put a late netlink request after packets that
/// followed it.
const MERGER_MAX_ITEMS: usize = 16_384;
const MERGER_MAX_BYTES: usize = 16 << 20;

/// Holds items for `hold_ns` so that late ones (netlink requests wait for
/// their answer) still come out in time order.
struct Merger {
    hold_ns: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    items: HashMap<u64, (Item, usize)>,
    bytes: usize,
    /// Items let out before their hold was over because of the caps.
    early: u64,
}

impl Merger {
    fn new(hold_ns: u64) -> Self {
        Self { hold_ns, seq: 0, heap: BinaryHeap::new(), items: HashMap::new(), bytes: 0, early: 0 }
    }

    fn push(&mut self, item: Item) {
        self.seq += 1;
        let bytes = item.bytes();
        self.bytes += bytes;
        self.heap.push(Reverse((item.wall_ns(), self.seq)));
        self.items.insert(self.seq, (item, bytes));
    }

    fn pop_ready(&mut self, now_wall_ns: u64, flush: bool) -> Option<Item> {
        let Reverse((t, id)) = *self.heap.peek()?;
        if !flush && t + self.hold_ns > now_wall_ns {
            if self.items.len() <= MERGER_MAX_ITEMS && self.bytes <= MERGER_MAX_BYTES {
                return None;
            }
            self.early += 1;
        }
        self.heap.pop();
        let (item, bytes) = self.items.remove(&id)?;
        self.bytes -= bytes;
        Some(item)
    }
}

/// Where printed items go.
enum Out {
    Sink(Sink),
    Pcapng(pcapng::PcapngOut, Sink),
}

/// Traces packets (and, with `netlink`, netlink requests too, merged into
/// one timeline) until `--count`, `--duration` or `shutdown`. Returns the
/// number of events written.
pub async fn run(
    netlink_job: Option<NetlinkJob>,
    job: PacketsJob,
    common: CommonArgs,
    stop: Shutdown,
) -> Result<u64, Error> {
    let shutdown = stop.clone().wait();
    tokio::pin!(shutdown);
    let forever = Duration::from_secs(u64::MAX / 4);
    let deadline = tokio::time::sleep(common.duration.map(Duration::from_secs_f64).unwrap_or(forever));
    tokio::pin!(deadline);
    // The capture target first: a refused path fails before anything is
    // loaded, and a FIFO's reader is waited for (stoppable) before attaching.
    let target = job.write.as_deref().map(capfile::Target::from_arg);
    let capture = match &target {
        Some(t) => {
            let stop = async {
                tokio::select! {
                    _ = &mut shutdown => {}
                    _ = &mut deadline => {}
                }
            };
            match capfile::open(t, stop).await.map_err(PacketsError::from)? {
                Some(f) => Some(f),
                None => return Ok(0),
            }
        }
        None => None,
    };
    let mut opts = ebpf::LoadOptions { snaplen: job.snaplen, ..Default::default() };
    if let Some(kib) = common.buffer_kib {
        opts.ring_bytes = kib * 1024;
    }
    let mut loaded = ebpf::load(&opts)?;
    if !loaded.missing_fields.is_empty() {
        return Err(Error::Kernel(format!("its BTF lacks {}", loaded.missing_fields.join(", "))));
    }
    if netlink_job.is_some() {
        hooks::attach_tracepoints(&mut loaded.ebpf, hooks::NETLINK_HOOKS)?;
    }
    // Before any program is attached: a table replaced while packets flow
    // may be read half-written.
    filter::install(&mut loaded.ebpf, &job.filter).map_err(PacketsError::from)?;
    let mut reader = Reader::new(&mut loaded.ebpf)?;
    let attacher = Attacher::new(&mut loaded.ebpf, TcMode::detect(), PACKET_PROGRAMS)?;
    // With `-w -` stdout carries pcapng: every line goes to stderr.
    let lines = if target == Some(capfile::Target::Stdout) { Stream::Stderr } else { Stream::Stdout };
    let mut out = match capture {
        Some(f) => Out::Pcapng(pcapng::PcapngOut::new(f, job.snaplen).map_err(PacketsError::from)?, Sink::to(common.json, lines)),
        None => Out::Sink(Sink::new(common.json)),
    };
    if crate::stopped_during_start_up(&stop) {
        return Ok(0);
    }

    // The namespace the tracer runs in is the host, as users see it.
    let host_netns = ns::resolve_pid(std::process::id()).ok();
    let topo = Arc::new(Mutex::new(Topology::new(host_netns)));
    let (mut follower, first) = Follower::start(loaded.ebpf, attacher, job.select.clone(), topo.clone(), stop.clone()).await?;
    if stop.is_set() {
        follower.stop().await;
        crate::stopped_during_start_up(&stop);
        return Ok(0);
    }
    if first.interfaces == 0 && job.select.scope != Scope::All {
        eprintln!("tracer: nothing to trace there yet; waiting for an interface to appear");
    }
    let what = if netlink_job.is_some() { "netlink audit and packets" } else { "packets" };
    eprintln!(
        "tracer: ready: tracing {what} on {} interfaces in {} namespaces ({})",
        first.interfaces,
        first.namespaces,
        first.mode.name()
    );

    let clock = Clock::new();
    let mut corr = netlink::Correlator::new(clock);
    let mut grouper = job.hops.then(hops::Grouper::default);
    let want_decode = job.write.is_none() || job.hops;
    // Netlink requests come out of the correlator up to ACK_WAIT_NS late.
    let hold_ns = if netlink_job.is_some() { netlink::ACK_WAIT_NS + 100_000_000 } else { 0 };
    let mut merger = Merger::new(hold_ns);
    let mut lost = LostTracker::default();
    let mut written: u64 = 0;

    // Packet records do not wake the reader (see tracer-ebpf's
    // packet.rs): the ring is drained on this tick as well.
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut done = false;
    let mut stopping = false;
    while !done {
        if !stopping {
            tokio::select! {
                _ = &mut shutdown => stopping = true,
                _ = &mut deadline => stopping = true,
                r = reader.read(&mut batch) => { r?; }
                _ = tick.tick() => reader.drain(&mut batch),
            }
        }
        if stopping {
            // Let the last answers and packets arrive, detach, then take
            // what is left in the ring buffer.
            tokio::time::sleep(Duration::from_millis(50)).await;
            follower.stop().await;
            reader.drain_until_now(&mut batch);
            done = true;
        }
        {
            let topo = topo.lock().map_err(|_| PacketsError::Follower)?;
            for ev in batch.drain(..) {
                match ev.kind {
                    EventKind::Packet => {
                        let Some(p) = PacketEvent::from_raw(&ev, &clock, &topo, want_decode) else {
                            reader.malformed += 1;
                            continue;
                        };
                        match &mut grouper {
                            Some(g) => g.push(p),
                            None => merger.push(Item::Packet(Box::new(p))),
                        }
                    }
                    EventKind::NetlinkSend | EventKind::NetlinkAck if netlink_job.is_some() => corr.push(&ev),
                    _ => {}
                }
            }
        }
        let now_wall = clock.wall_ns(Clock::now_mono_ns());
        if let Some(nj) = &netlink_job {
            for e in corr.ready(Clock::now_mono_ns(), done) {
                if !nj.wants(&e) {
                    continue;
                }
                merger.push(Item::Netlink(Box::new(e)));
            }
        }
        if let Some(g) = &mut grouper {
            for p in g.ready(now_wall, done) {
                merger.push(Item::Path(p));
            }
        }
        while common.count.is_none_or(|c| written < c) {
            let Some(item) = merger.pop_ready(now_wall, done) else { break };
            match (&mut out, &item) {
                (Out::Pcapng(w, _), Item::Packet(p)) => w.write(p).map_err(PacketsError::from)?,
                (Out::Pcapng(_, sink), _) | (Out::Sink(sink), _) => {
                    sink.defer(item.render());
                    // Lines are written once per pass, but a pass may let
                    // out tens of thousands: not all of them in one buffer.
                    if sink.buffered() > SINK_MAX_BUFFERED {
                        sink.flush()?;
                    }
                }
            }
            written += 1;
            if common.count.is_some_and(|c| written >= c) {
                stopping = true;
                break;
            }
        }
        match &mut out {
            Out::Pcapng(w, sink) => {
                // After every drain: a reader on a pipe sees packets live.
                w.flush().map_err(PacketsError::from)?;
                sink.flush()?;
                if w.reader_gone && !stopping {
                    let what = target.as_ref().map(capfile::Target::describe).unwrap_or_default();
                    output::warn(&format!("the reader of {what} closed it; stopping"));
                    stopping = true;
                }
            }
            Out::Sink(sink) => sink.flush()?,
        }
        for (src, n) in lost.update(reader.lost_totals()) {
            let sink = match &mut out {
                Out::Sink(s) | Out::Pcapng(_, s) => s,
            };
            sink.lost(src, n, &clock::rfc3339(clock::now_wall_ns()))?;
        }
    }
    let summary = lost.summary();
    if let Out::Pcapng(w, _) = &out
        && let Some(t) = &target
    {
        output::warn(&format!("{} packets written to {}", w.packets, t.describe()));
    }
    if let Some(g) = &grouper {
        let s = g.stats;
        let avg = if s.multi_hop > 0 { s.transit_ns_sum as f64 / s.multi_hop as f64 / 1000.0 } else { 0.0 };
        eprintln!(
            "tracer: hops: {} packets, {} seen on more than one interface (mean transit {avg:.1}us), skb hash the same on every hop for {}",
            s.paths, s.multi_hop, s.hash_stable
        );
        if s.early > 0 {
            eprintln!("tracer: hops: {} paths printed before the end of their hold (more than {} hops held)", s.early, hops::MAX_HELD_HOPS);
        }
    }
    if netlink_job.is_some() {
        eprintln!("tracer: {}", corr.summary());
    }
    if merger.early > 0 {
        eprintln!("tracer: {} events printed before the end of their hold (more than {MERGER_MAX_ITEMS} events or {} MiB held)", merger.early, MERGER_MAX_BYTES >> 20);
    }
    eprintln!("tracer: {written} events, lost: {summary}");
    if netlink_job.is_some() {
        netlink::report_malformed(&corr);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, kind: Option<&str>) -> Iface {
        Iface { ifindex: 2, name: name.into(), kind: kind.map(String::from), master: None, peer: None, up: true }
    }

    #[test]
    fn default_interfaces_are_virtual_ones() {
        let job = PacketsJob::default();
        assert!(job.wants(&iface("veth1", Some("veth"))));
        assert!(!job.wants(&iface("eth0", None)), "physical NIC");
        let select = Selection { iface_globs: Some(vec!["eth*".into(), "lo".into()]), ..Default::default() };
        let job = PacketsJob { select, ..Default::default() };
        assert!(job.wants(&iface("eth0", None)));
        assert!(job.wants(&iface("lo", None)));
        assert!(!job.wants(&iface("veth1", Some("veth"))));
    }

    #[test]
    fn args_validate() {
        let a = PacketArgs { snaplen: Some(0), ..Default::default() };
        assert_eq!(PacketsJob::from_args(&a).expect("ok").snaplen, PKT_DATA_MAX as u32);
        let a = PacketArgs { write: Some("/tmp/x".into()), ..Default::default() };
        assert_eq!(PacketsJob::from_args(&a).expect("ok").snaplen, PKT_DATA_MAX as u32);
        assert_eq!(PacketsJob::from_args(&PacketArgs::default()).expect("ok").snaplen, DEFAULT_SNAPLEN);
        let mut a = PacketArgs { all: true, ..Default::default() };
        a.sel.netns = Some("1".into());
        assert!(matches!(PacketsJob::from_args(&a), Err(Error::Usage(_))));
        let a = PacketArgs { iface: Some(" , ".into()), ..Default::default() };
        assert!(matches!(PacketsJob::from_args(&a), Err(Error::Usage(_))));
    }

    #[test]
    fn text_escapes_and_cuts_names_and_json_keeps_them() {
        let f = vec![0u8; 20];
        let p = PacketEvent {
            wall_ns: 0,
            cpu: 0,
            netns_ino: 1,
            netns_name: None,
            host_netns: false,
            container: Some(serde_json::json!({"runtime": "docker", "id": "ab", "name": format!("w\x1b]0;x\x07{}", "w".repeat(100))})),
            ifindex: 3,
            ifname: "e\x1b[31m\u{9b}".into(),
            direction: 0,
            len: 20,
            hash: 0,
            mark: 0,
            ethernet: true,
            decoded: decode::decode(&f, true),
            frame: f,
        };
        let text = p.text();
        let want = format!(r"w\x1b]0;x\x07{}.../e\x1b[31m\x9b In ", "w".repeat(crate::output::NAME_MAX - 3 - 13));
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
    fn merger_orders_by_time_after_hold() {
        let mut m = Merger::new(100);
        let mk = |t| {
            let mut g = hops::Grouper::default();
            let f = vec![0u8; 20];
            g.push(PacketEvent {
                wall_ns: t,
                cpu: 0,
                netns_ino: 1,
                netns_name: None,
                host_netns: false,
                container: None,
                ifindex: 1,
                ifname: "x".into(),
                direction: 0,
                len: 20,
                hash: 0,
                mark: 0,
                ethernet: true,
                decoded: decode::decode(&f, true),
                frame: f,
            });
            Item::Path(g.ready(0, true).pop().expect("path"))
        };
        m.push(mk(50));
        m.push(mk(10));
        assert!(m.pop_ready(100, false).is_none());
        assert_eq!(m.pop_ready(110, false).map(|i| i.wall_ns()), Some(10));
        assert!(m.pop_ready(110, false).is_none());
        assert_eq!(m.pop_ready(0, true).map(|i| i.wall_ns()), Some(50));
    }

    fn packet(t: u64, frame_len: usize) -> Item {
        let f = vec![0u8; frame_len];
        Item::Packet(Box::new(PacketEvent {
            wall_ns: t,
            cpu: 0,
            netns_ino: 1,
            netns_name: None,
            host_netns: false,
            container: None,
            ifindex: 1,
            ifname: "x".into(),
            direction: 0,
            len: frame_len as u32,
            hash: 0,
            mark: 0,
            ethernet: true,
            decoded: decode::Decoded::default(),
            frame: f,
        }))
    }

    #[test]
    fn merger_lets_the_oldest_out_early_past_its_caps() {
        let mut m = Merger::new(1_000_000_000);
        for t in 0..(MERGER_MAX_ITEMS + 10) as u64 {
            m.push(packet(1000 + t, 20));
        }
        let mut out = Vec::new();
        while let Some(i) = m.pop_ready(0, false) {
            out.push(i.wall_ns());
        }
        assert_eq!((out.len(), out.first(), out.last()), (10, Some(&1000), Some(&1009)), "the 10 oldest, in order");
        assert_eq!((m.items.len(), m.early), (MERGER_MAX_ITEMS, 10));
        // By size: full frames reach the byte cap long before the count.
        let mut m = Merger::new(1_000_000_000);
        let per = 512 + 9000;
        for t in 0..(MERGER_MAX_BYTES / per + 5) as u64 {
            m.push(packet(t, 9000));
        }
        let mut n = 0;
        while m.pop_ready(0, false).is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert!(m.bytes <= MERGER_MAX_BYTES);
        // Within the caps, nothing comes out before its time.
        assert!(m.pop_ready(0, false).is_none());
    }
}
