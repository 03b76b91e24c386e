//! Packet capture: one TC classifier attached (TCX) to each traced
//! interface, ingress and egress. It copies a summary and the first
//! `snaplen` bytes of each frame to the ring buffer and always lets the
//! packet continue; decoding happens in userspace.
//!
//! With a filter (`Config::pkt_filter`), the attached entry program does
//! nothing but tail-call the filter for its interface's link type through
//! [`PROGS`]; userspace translated libpcap's classic BPF into that program
//! (tracer's `tc::cbpf`), and on a match it tail-calls the capture body
//! (`pkt_*_body`, the same capture without the filter step). A tail call
//! that fails means "no match": the slot of an installed filter is never
//! empty. Two tail calls per packet, and no function calls in the entry
//! program, which keeps it verifiable from 5.10 on.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE, TC_ACT_UNSPEC},
    helpers::{
        bpf_get_hash_recalc, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_load_bytes},
    },
    macros::{classifier, map},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::TcContext,
};
use tracer_common::{
    EventHeader, EventKind, LostSource,
    packet::{DIR_EGRESS, DIR_INGRESS, PKT_DATA_MAX, PacketMeta},
    slots,
};

use crate::kernel::{EVENTS, HDR, SCRATCH_TC, SCRATCH_TC_SIZE, Scratch, config, count_lost, kread, kread_or_zero, offsets};

/// The filters and capture bodies ([`tracer_common::slots`]).
#[map(name = "PROGS")]
pub static PROGS: ProgramArray = ProgramArray::with_max_entries(slots::SLOTS, 0);

/// `ARPHRD_*` of devices whose frames start at the IP header in TC, for
/// which libpcap (and so the filter) uses `DLT_RAW`.
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_NONE: u16 = 0xfffe;

/// When a filter is installed, tail-calls it and does not return (a
/// failed call: no match). `eth_slot` is the Ethernet slot of the hook.
#[inline(always)]
pub fn run_filter(ctx: &TcContext, eth_slot: u32) -> bool {
    if config().pkt_filter == 0 {
        return false;
    }
    let o = offsets();
    let dev: *const u8 = kread_or_zero(ctx.skb.skb as *const u8, o.skb_dev);
    let ty: u16 = if dev.is_null() { 0 } else { kread_or_zero(dev, o.dev_type) };
    let raw = matches!(ty, ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT | ARPHRD_NONE);
    let slot = if raw { eth_slot + slots::RAW_IP } else { eth_slot };
    // SAFETY: a tail call on the program's own context; on success it
    // does not return, on failure the packet is not captured.
    unsafe { PROGS.tail_call(ctx, slot) };
    true
}

/// One remembered answer of [`device_netns`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetnsSlot {
    dev: u64,
    generation: u64,
    ino: u32,
    _pad: u32,
}

/// Slots per CPU, indexed by the low bits of the ifindex: the devices a
/// CPU sees at a time are few (a stream crosses four). One map entry per
/// slot: the lookup by key hands back the slot itself, so the program does
/// no arithmetic on a pointer the verifier still holds as maybe-null (6.1's
/// refuses that, and LLVM computes an array index before the null check).
const NETNS_SLOTS: u32 = 16;

#[map(name = "NETNS_CACHE")]
static NETNS_CACHE: PerCpuArray<NetnsSlot> = PerCpuArray::with_max_entries(NETNS_SLOTS, 0);

#[map(name = "ATTACH_GEN")]
static ATTACH_GEN: Array<u64> = Array::with_max_entries(1, 0);

/// Namespace inode of the device the packet is on: `skb->dev->nd_net->ns.inum`.
///
/// Three kernel reads cost a TC program more than the rest of its work,
/// so the answer is remembered per CPU by device address, with the attach
/// generation it was found in. A device address can only be reused by a
/// device made after the old one was freed, and the programs only run on
/// a new device once userspace attached them, which it does only after
/// raising the generation: a remembered answer of an older generation is
/// never used. One kernel read (the device) remains.
#[inline(always)]
pub fn device_netns(ctx: &TcContext) -> u32 {
    let o = offsets();
    // In TC programs the context pointer is the kernel's sk_buff.
    let skb = ctx.skb.skb as *const u8;
    let Some(dev) = kread::<*const u8>(skb, o.skb_dev) else { return 0 };
    let generation = ATTACH_GEN.get(0).copied().unwrap_or(0);
    // SAFETY: ctx.skb.skb is the program's __sk_buff context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let key = ifindex & (NETNS_SLOTS - 1);
    if let Some(s) = NETNS_CACHE.get_ptr_mut(key) {
        // SAFETY: `s` is this CPU's value of the entry just looked up.
        let hit = unsafe { (*s).dev == dev as u64 && (*s).generation == generation };
        if hit && !dev.is_null() {
            // SAFETY: as above.
            return unsafe { (*s).ino };
        }
    }
    let Some(net) = kread::<*const u8>(dev, o.dev_nd_net) else { return 0 };
    let ino = kread::<u32>(net, o.net_inum).unwrap_or(0);
    if ino != 0
        && let Some(s) = NETNS_CACHE.get_ptr_mut(key)
    {
        // SAFETY: as above. The device goes last (and first to 0): a
        // program that ran in between on this CPU would not match a half-written slot.
        unsafe {
            (*s).dev = 0;
            (*s).ino = ino;
            (*s).generation = generation;
            (*s).dev = dev as u64;
        }
    }
    ino
}

#[classifier]
pub fn pkt_ingress(ctx: TcContext) -> i32 {
    if !run_filter(&ctx, slots::FILTER_ETH_INGRESS) {
        let _ = try_pkt(&ctx, DIR_INGRESS);
    }
    TC_ACT_UNSPEC
}

#[classifier]
pub fn pkt_egress(ctx: TcContext) -> i32 {
    if !run_filter(&ctx, slots::FILTER_ETH_EGRESS) {
        let _ = try_pkt(&ctx, DIR_EGRESS);
    }
    TC_ACT_UNSPEC
}

/// What a matching ingress filter continues into.
#[classifier]
pub fn pkt_ingress_body(ctx: TcContext) -> i32 {
    let _ = try_pkt(&ctx, DIR_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn pkt_egress_body(ctx: TcContext) -> i32 {
    let _ = try_pkt(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

/// Inlined: as a BPF-to-BPF call taking the context, 6.1's verifier
/// refuses it ("reg type unsupported for arg#0").
#[inline(always)]
fn try_pkt(ctx: &TcContext, direction: u8) -> Option<()> {
    // Process attribution (crate::sock): one helper call when asked for.
    let pc = crate::sock::proc_config();
    // SAFETY: helper on the program's own skb.
    let sock_cookie = if pc.cookies != 0 { unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) } } else { 0 };
    if pc.select != 0 && !crate::sock::packet_selected(ctx, direction, sock_cookie) {
        return None;
    }
    let scratch = SCRATCH_TC.get_ptr_mut(0)?;
    // SAFETY: ctx.skb.skb points at the program's __sk_buff context.
    let s = unsafe { &*ctx.skb.skb };
    let len = s.len;
    let mut cap = len as usize;
    let snaplen = config().snaplen as usize;
    if cap > snaplen {
        cap = snaplen;
    }
    if cap > PKT_DATA_MAX {
        cap = PKT_DATA_MAX;
    }
    let meta_len = core::mem::size_of::<PacketMeta>();
    let hdr = EventHeader {
        kind: EventKind::Packet as u32,
        // SAFETY: helper calls.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: 0,
        uid_gid: 0,
        cgroup_id: 0,
        netns_ino: device_netns(ctx),
        payload_len: (meta_len + cap) as u32,
        comm: [0; 16],
    };
    let meta = PacketMeta {
        ifindex: s.ifindex,
        len,
        cap_len: cap as u32,
        // SAFETY: helper on the program's own skb.
        hash: unsafe { bpf_get_hash_recalc(ctx.skb.skb as *mut _) },
        protocol: s.protocol as u16,
        direction,
        vlan_present: (s.vlan_present != 0) as u8,
        mark: s.mark,
        vlan_tci: s.vlan_tci as u16,
        vlan_proto: s.vlan_proto as u16,
        _pad: 0,
        sock_cookie,
    };
    // SAFETY: scratch holds header, meta and PKT_DATA_MAX bytes (SCRATCH_TC_SIZE).
    unsafe {
        let base = (*scratch).buf.as_mut_ptr();
        core::ptr::write_unaligned(base as *mut _, hdr);
        core::ptr::write_unaligned(base.add(HDR) as *mut _, meta);
        if cap > 0 {
            // 1..=PKT_DATA_MAX by arithmetic on the very register passed,
            // which is what the verifier can follow (cap <= PKT_DATA_MAX).
            let n = ((cap as u32).wrapping_sub(1) & (PKT_DATA_MAX as u32 - 1)) + 1;
            let dst = base.add(HDR + meta_len) as *mut _;
            if bpf_skb_load_bytes(ctx.skb.skb as *const _, 0, dst, n) != 0 {
                count_lost(LostSource::PacketRead);
                return None;
            }
        }
        output_batched(scratch, HDR + meta_len + cap);
    }
    Some(())
}

/// Sends a packet record without waking the reader, unless the data
/// waiting crosses a multiple of an eighth of the ring with this record: a
/// wakeup per packet (an irq_work and a context switch) costs more than
/// the program itself, and so did one per packet once an eighth was
/// waiting, exactly when the reader was behind (it reads until the ring is
/// empty once woken, so it needs no more). Userspace also drains the ring
/// on a short timer, so a quiet link, or a crossing two CPUs both missed,
/// is not left waiting.
#[inline(always)]
fn output_batched(scratch: *mut Scratch<SCRATCH_TC_SIZE>, len: usize) {
    if len > SCRATCH_TC_SIZE {
        return;
    }
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let eighth = EVENTS.query(BPF_RB_RING_SIZE as u64) / 8;
    let crosses = eighth > 0 && pending / eighth != (pending + len as u64) / eighth;
    let flags = if crosses { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    // SAFETY: `len` is bounded by the scratch size just above.
    let bytes = unsafe { core::slice::from_raw_parts((*scratch).buf.as_ptr(), len) };
    if EVENTS.output::<[u8]>(bytes, flags as u64).is_err() {
        count_lost(LostSource::Packet);
    }
}
