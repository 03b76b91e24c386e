//! The entry points of the fuzz targets (`fuzz/`, `cargo xtask fuzz`): one
//! per decoder of bytes that come from outside, each taking arbitrary bytes
//! and running them through the same code the tracer runs, output
//! rendering included. Deliberately the one public door to those decoders,
//! so the rest of the library's surface can shrink without breaking the
//! fuzz crate.
//!
//! Every entry point turns panic containment off (`sys::contain::strict`): a
//! panic anywhere is a crash to fix, even where the tracer would contain
//! it. The unit tests below replay the committed inputs (`fuzz/seeds`,
//! `fuzz/regressions`) and a few thousand seeded mutations of them through
//! every entry point on stable Rust, within `cargo xtask test`.

use std::sync::OnceLock;

use bytes::Bytes;
use tracer_common::{
    EventHeader, EventKind,
    netlink::{NetlinkAck, NetlinkSend},
    packet::PacketMeta,
};

use crate::{
    bpf::event::{RawEvent, read_pod},
    netlink::{self, decode, nfgen::GenlFamilies},
    output::Render,
    packets::{PacketEvent, hops::Grouper},
    sys::{clock::Clock, contain},
    tc::{cbpf, flowkey, topology::Topology},
};

/// A fuzz target's entry point: any bytes in, nothing out, never a panic.
pub type Entry = fn(&[u8]);

/// Every fuzz target: its name (a `fuzz/fuzz_targets/NAME.rs` file) and entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("netlink_route", netlink_route),
    ("netlink_send", netlink_send),
    ("netlink_acks", netlink_acks),
    ("packet", packet),
    ("filter", filter),
    ("ring_record", ring_record),
];

/// The netlink protocols a send can be decoded as (`netlink_send`'s first byte picks one).
const PROTOCOLS: [u16; 5] = [decode::NETLINK_ROUTE, decode::NETLINK_NETFILTER, decode::NETLINK_GENERIC, decode::NETLINK_XFRM, 4];

/// `[type: u16 native-endian, payload...]`: one rtnetlink message body
/// through netlink-packet-route and the tracer's checks before it.
pub fn netlink_route(data: &[u8]) {
    contain::strict();
    let Some((ty, body)) = data.split_first_chunk::<2>() else { return };
    let _ = netlink::route::decode(u16::from_ne_bytes(*ty), body);
}

/// `[protocol selector, cut, buffer...]`: one captured send, cut into
/// messages, decoded and rendered as JSON and text. `cut` > 0 says the
/// process sent `16 * cut` more bytes than were captured.
pub fn netlink_send(data: &[u8]) {
    contain::strict();
    let Some((&[sel, cut], buf)) = data.split_first_chunk::<2>() else { return };
    let protocol = PROTOCOLS[usize::from(sel) % PROTOCOLS.len()];
    let sent = buf.len() + 16 * usize::from(cut);
    render_send(&send_record(protocol, sent, buf));
}

/// A receive buffer searched for `NLMSG_ERROR` answers.
pub fn netlink_acks(data: &[u8]) {
    contain::strict();
    let _ = decode::parse_acks(data);
}

/// `[flags, protocol: u16 BE, vlan tci: u16 BE, frame...]`: one captured
/// frame (flags bit 0: the VLAN tag was offloaded, bit 1: egress) decoded,
/// rendered, grouped into a path with a copy of itself seen on another
/// interface, keyed as `tracer top` keys it and matched by libpcap filters.
pub fn packet(data: &[u8]) {
    contain::strict();
    let Some((&[flags, p0, p1, t0, t1], frame)) = data.split_first_chunk::<5>() else { return };
    let meta = PacketMeta {
        ifindex: 2,
        len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
        cap_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
        hash: 7,
        protocol: u16::from_be_bytes([p0, p1]).to_be(),
        direction: (flags >> 1) & 1,
        vlan_present: flags & 1,
        mark: 0,
        vlan_tci: u16::from_be_bytes([t0, t1]),
        vlan_proto: 0x8100u16.to_be(),
        _pad: 0,
        sock_cookie: 0,
    };
    let mut payload = bytes_of(&meta).to_vec();
    payload.extend_from_slice(frame);
    let rec = record(EventKind::Packet, 1_000_000, payload);
    render_packet(&rec);
    let vlan = (flags & 1 != 0).then_some(u16::from_be_bytes([t0, t1]));
    let _ = flowkey::frame_key(frame, meta.direction, vlan);
    for f in filters() {
        let _ = f.matches(frame, u32::try_from(frame.len()).unwrap_or(u32::MAX));
    }
}

/// A pcap-filter expression (bytes taken as UTF-8, lossily): checked by
/// libpcap as a job's filter is, then compiled for both link types and
/// translated to eBPF, the code that turns libpcap's output into a kernel
/// program.
pub fn filter(data: &[u8]) {
    contain::strict();
    let text = String::from_utf8_lossy(data);
    let Ok(f) = cbpf::PacketFilter::parse(&text) else { return };
    let _ = f.to_string();
    for link in [cbpf::LinkType::Ethernet, cbpf::LinkType::RawIp] {
        let Ok(Some(prog)) = f.file_filter(link) else { continue };
        let _ = prog.matches(&[0u8; 64], 64);
        for direction in [cbpf::Direction::Ingress, cbpf::Direction::Egress] {
            let opts = cbpf::Options {
                direction: Some(direction),
                on_match: cbpf::Action::TailCall { prog_array_fd: 3, index: 4, fallback: -1 },
                on_no_match: cbpf::Action::Return(-1),
            };
            let _ = cbpf::translate(prog.instructions(), &opts);
        }
    }
}

/// A ring-buffer record as the kernel would write it (header, payload),
/// parsed and handed to the decoder of its kind.
pub fn ring_record(data: &[u8]) {
    contain::strict();
    let Ok(ev) = RawEvent::parse(data) else { return };
    match ev.kind {
        EventKind::NetlinkSend => render_send(&ev),
        EventKind::NetlinkAck => {
            if read_pod::<NetlinkAck>(&ev.payload).is_some() {
                let _ = decode::parse_acks(&ev.payload[size_of::<NetlinkAck>()..]);
            }
        }
        EventKind::Packet => render_packet(&ev),
        EventKind::Drop => render_drop(&ev),
        EventKind::TcpState
        | EventKind::TcpRetransmit
        | EventKind::TcpResetSent
        | EventKind::TcpResetReceived
        | EventKind::TcpRtt
        | EventKind::TcpDestroy => render_tcp(&ev),
        EventKind::Sock => crate::procs::Owners::default().push(&ev),
    }
}

fn render_send(ev: &RawEvent) {
    for e in netlink::send_events(ev, &clock(), &GenlFamilies::default()) {
        let _ = (e.json(), e.text(), e.is_get(), e.is_probe());
    }
}

fn render_drop(ev: &RawEvent) {
    let names = crate::ns::names::NsNames::default();
    let reasons = crate::bpf::tp::EnumNames::default();
    let mut sym = |a: u64| Some(format!("f+{a:#x}"));
    let Some(d) = crate::drops::event::DropEvent::from_raw(ev, &clock(), &names, &reasons, &mut sym) else { return };
    let unknown = crate::ns::NetnsId::default();
    let comment = d.comment();
    let _ = (d.json_line(), d.json(), d.text(), d.frame(&unknown, &comment));
}

fn render_tcp(ev: &RawEvent) {
    let names = crate::ns::names::NsNames::default();
    let Some(mut e) = crate::tcp::event::TcpEvent::from_raw(ev, &clock(), &names, &crate::bpf::tp::EnumNames::default()) else { return };
    let mut t = crate::tcp::tracker::Tracker::with_max(4);
    t.observe(&mut e);
    let _ = (e.json_line(), e.json(), e.text());
}

fn render_packet(ev: &RawEvent) {
    let topo = Topology::default();
    let Some(p) = PacketEvent::from_raw(ev, &clock(), &topo, true) else { return };
    let _ = (p.json_line(), p.json(), p.text());
    let mut other = p.clone();
    other.ifindex = other.ifindex.wrapping_add(1);
    other.wall_ns = other.wall_ns.saturating_add(1000);
    let mut g = Grouper::default();
    g.push(p);
    g.push(other);
    for path in g.ready(0, true) {
        let _ = (path.json(), path.text());
    }
}

/// A few filters of each kind of primitive, compiled once (libpcap's
/// interpreter runs them, as `tracer packets -r` does).
fn filters() -> &'static [cbpf::Filter] {
    static F: OnceLock<Vec<cbpf::Filter>> = OnceLock::new();
    F.get_or_init(|| {
        ["tcp port 80 and host 10.0.0.2", "vlan and udp", "not arp", "icmp6 or net fe80::/10", "tcp[tcpflags] & tcp-syn != 0", "ip[6:2] & 0x1fff != 0"]
            .iter()
            .filter_map(|e| cbpf::Filter::compile(e, cbpf::LinkType::Ethernet, cbpf::Dialect::File).ok())
            .collect()
    })
}

/// One clock for every input, so runs are repeatable.
fn clock() -> Clock {
    static C: OnceLock<Clock> = OnceLock::new();
    *C.get_or_init(Clock::new)
}

/// A `NetlinkSend` record of `buf`, captured from a send of `sent` bytes.
pub fn send_record(protocol: u16, sent: usize, buf: &[u8]) -> RawEvent {
    let meta = NetlinkSend {
        sock_id: 1,
        protocol,
        syscall: 1,
        truncated: u8::from(sent > buf.len()),
        fd: 3,
        seg: 0,
        total_len: u32::try_from(sent).unwrap_or(u32::MAX),
        data_len: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        portid: 0,
        ns_fds: [0; tracer_common::netlink::NL_NS_FDS],
        ns_inos: [0; tracer_common::netlink::NL_NS_FDS],
    };
    let mut payload = bytes_of(&meta).to_vec();
    payload.extend_from_slice(buf);
    record(EventKind::NetlinkSend, 1_000_000, payload)
}

fn record(kind: EventKind, ts_ns: u64, payload: Vec<u8>) -> RawEvent {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"fuzz");
    let header = EventHeader {
        kind: kind as u32,
        cpu: 0,
        ts_ns,
        pid_tgid: (4242 << 32) | 4242,
        uid_gid: 65534,
        cgroup_id: 0,
        netns_ino: 4026531840,
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        comm,
    };
    RawEvent { header, kind, payload: Bytes::from(payload) }
}

fn bytes_of<T: aya::Pod>(v: &T) -> &[u8] {
    // SAFETY: `aya::Pod` types are plain `repr(C)` data without padding
    // (tracer-common asserts their sizes); any such value is valid bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

#[cfg(test)]
mod tests;
