//! What the drop and TCP programs (BTF tracepoints, see tracer-common's
//! `tp` for why) share: their settings and the struct offsets userspace
//! sets at load time, the namespace selection, and reading skbs and
//! sockets in kernel memory.
//!
//! Every early exit comes first and costs little: mode off, a reason not
//! asked for, a namespace not selected (two reads and a hash lookup), a
//! packet the filter refuses. Only then is a record assembled.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::map,
    maps::HashMap,
};
use tracer_common::{
    EventHeader, EventKind,
    drops::layer,
    packet::PacketKey,
    tp::{MISSING, OBS_NETNS_MAX, ObsConfig, SkOffsets},
};

use crate::{
    filter::{Frame, parse_l2, parse_l3},
    kernel::{EVENTS, kread, kread_or_zero, offsets, ring_eighth},
};

#[unsafe(no_mangle)]
static SK_OFFSETS: SkOffsets = SkOffsets::missing();

#[unsafe(no_mangle)]
static OBS_CONFIG: ObsConfig = ObsConfig::off();

/// Selected namespaces (inode -> 1), read when `select_netns` is set.
#[map(name = "OBS_NETNS")]
static OBS_NETNS: HashMap<u32, u32> = HashMap::with_max_entries(OBS_NETNS_MAX, 0);

#[inline(always)]
pub fn sko() -> SkOffsets {
    // SAFETY: a read of a global userspace rewrites before loading;
    // volatile so the placeholder is not folded.
    unsafe { core::ptr::read_volatile(&SK_OFFSETS) }
}

#[inline(always)]
pub fn cfg() -> ObsConfig {
    // SAFETY: as for `tp`.
    unsafe { core::ptr::read_volatile(&OBS_CONFIG) }
}

/// Whether events of namespace `netns` are wanted.
#[inline(always)]
pub fn selected(netns: u32) -> bool {
    if cfg().select_netns == 0 {
        return true;
    }
    // SAFETY: a lookup; the value is not kept.
    netns != 0 && unsafe { OBS_NETNS.get(&netns) }.is_some()
}

/// `sk->__sk_common.skc_net->ns.inum`, 0 when unreadable.
#[inline(always)]
pub fn sk_netns(sk: *const u8) -> u32 {
    let o = offsets();
    let Some(net) = kread::<*const u8>(sk, o.sk_net) else { return 0 };
    kread_or_zero::<u32>(net, o.net_inum)
}

/// `dev->nd_net->ns.inum`, 0 when unreadable. `skb->dev` shares its
/// bytes with `dev_scratch` (UDP uses it for skbs queued on a socket):
/// such a value is no kernel pointer, the read fails, and the caller
/// falls back to the socket.
#[inline(always)]
pub fn dev_netns(dev: *const u8) -> u32 {
    let o = offsets();
    let Some(net) = kread::<*const u8>(dev, o.dev_nd_net) else { return 0 };
    kread_or_zero::<u32>(net, o.net_inum)
}

/// A frame in kernel memory: `len` readable bytes from `base`.
pub struct KFrame {
    pub base: *const u8,
    pub len: usize,
}

impl Frame for KFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Option<T> {
        if off + size_of::<T>() > self.len || off > 256 {
            return None;
        }
        kread::<T>(self.base, off as u32)
    }
}

/// Where an skb's headers are: the frame from its MAC header when that is
/// an Ethernet header right before the network header, else from the
/// network header.
pub struct SkbData {
    pub frame: KFrame,
    /// A [`layer`] value.
    pub layer: u8,
    /// `skb->protocol`, network byte order.
    pub protocol: u16,
    /// `skb->data` less the frame's first byte: what `skb->len` (counted
    /// from `skb->data`) lacks of the frame's length (negative when the
    /// frame starts after `skb->data`).
    pub len_adjust: i32,
}

const ETH_HLEN: u16 = 14;
const UNSET: u16 = 0xffff;

#[inline(always)]
pub fn skb_data(skb: *const u8) -> SkbData {
    let s = sko();
    let head: *const u8 = kread_or_zero::<u64>(skb, s.skb_head) as *const u8;
    let nh: u16 = kread_or_zero(skb, s.skb_network_header);
    let mh: u16 = kread_or_zero(skb, s.skb_mac_header);
    let tail: u32 = kread_or_zero(skb, s.skb_tail);
    let protocol: u16 = kread_or_zero(skb, s.skb_protocol);
    let (start, lay) = if mh != UNSET && nh > mh && nh - mh == ETH_HLEN { (mh, layer::L2) } else { (nh, layer::L3) };
    let start = start as u32;
    // skb->data as an offset from head (no more than the headroom a u16
    // header offset reaches; else unknown and nothing is adjusted).
    let data: u64 = if s.skb_data == MISSING { 0 } else { kread_or_zero(skb, s.skb_data) };
    let data_off = data.wrapping_sub(head as u64);
    let len_adjust = if data != 0 && data_off <= 0xffff { data_off as i32 - start as i32 } else { 0 };
    if head.is_null() || s.skb_tail == MISSING || tail <= start {
        return SkbData { frame: KFrame { base: head, len: 0 }, layer: layer::NONE, protocol, len_adjust: 0 };
    }
    SkbData { frame: KFrame { base: head.wrapping_add(start as usize), len: (tail - start) as usize }, layer: lay, protocol, len_adjust }
}

/// Parses the headers of `d` into `key` (as the TC programs do).
#[inline(never)]
pub fn parse_skb(d: &SkbData, key: &mut PacketKey) {
    if d.layer == layer::L2 {
        parse_l2(&d.frame, false, 0, key);
    } else if d.layer == layer::L3 {
        parse_l3(&d.frame, u16::from_be(d.protocol), 0, key);
    }
}

/// The header of a drop or TCP record. No task: these events mostly come
/// from softirqs, where the current task is whichever was interrupted.
#[inline(always)]
pub fn header(kind: EventKind, netns: u32, payload_len: u32) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        // SAFETY: plain helper calls.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: 0,
        uid_gid: 0,
        cgroup_id: 0,
        netns_ino: netns,
        payload_len,
        comm: [0; 16],
    }
}

/// Flags for a record's submission: no wakeup of the reader unless an
/// eighth of the ring is waiting (as packet records, see packet.rs): a
/// drop flood must not cost a wakeup per drop. Userspace drains on a short
/// timer.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    (if pending >= ring_eighth() { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }) as u64
}
