//! Packet capture: one TC classifier attached (TCX) to each traced
//! interface, ingress and egress. It reserves a record in the ring buffer
//! and loads a summary and the first `snaplen` bytes of each frame straight
//! into it (one copy), and always lets the packet continue; decoding
//! happens in userspace.
//!
//! With a filter (`Config::pkt_filter`), the attached entry program does
//! nothing but tail-call the filter for its interface's link type through
//! [`crate::tc::PROGS`]; userspace translated libpcap's classic BPF into that program
//! (tracer's `tc::cbpf`), and on a match it tail-calls the capture body
//! (`pkt_*_body`, the same capture without the filter step). A tail call
//! that fails means "no match": the slot of an installed filter is never
//! empty. Two tail calls per packet, and no function calls in the entry
//! program, which keeps it verifiable from 5.10 on.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{
        bpf_get_hash_recalc, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_load_bytes},
    },
    macros::classifier,
    programs::TcContext,
};
use tracer_common::{
    EventHeader, EventKind, LostSource,
    packet::{DIR_EGRESS, DIR_INGRESS, PKT_DATA_MAX, PacketMeta},
    slots,
};

use crate::{
    kernel::{EVENTS, config, copy_words, count_lost, ring_eighth, zero},
    tc::{device_netns, run_filter},
};

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
    // SAFETY: ctx.skb.skb points at the program's __sk_buff context.
    let s = unsafe { &*ctx.skb.skb };
    let len = s.len;
    let c = config();
    let mut cap = len as usize;
    let snaplen = c.snaplen as usize;
    if cap > snaplen {
        cap = snaplen;
    }
    if cap > PKT_DATA_MAX {
        cap = PKT_DATA_MAX;
    }
    let meta_len = core::mem::size_of::<PacketMeta>();
    // The header's task fields (pid, uid, cgroup, comm) stay zero: a
    // packet is not in a task's context. `zeroed` keeps that a few stores.
    let mut hdr_slot = core::mem::MaybeUninit::<EventHeader>::uninit();
    let hdr = zero(&mut hdr_slot);
    hdr.kind = EventKind::Packet as u32;
    // SAFETY: helper calls.
    hdr.cpu = unsafe { bpf_get_smp_processor_id() };
    hdr.ts_ns = unsafe { bpf_ktime_get_ns() };
    hdr.netns_ino = device_netns(ctx);
    hdr.payload_len = (meta_len + cap) as u32;
    // The flow hash only when the output shows it (`Config::pkt_hash`):
    // for a packet whose skb has none yet, the kernel runs its flow
    // dissector to make one.
    // SAFETY: helper on the program's own skb.
    let hash = if c.pkt_hash != 0 { unsafe { bpf_get_hash_recalc(ctx.skb.skb as *mut _) } } else { 0 };
    let meta = PacketMeta {
        ifindex: s.ifindex,
        len,
        cap_len: cap as u32,
        hash,
        protocol: s.protocol as u16,
        direction,
        vlan_present: (s.vlan_present != 0) as u8,
        mark: s.mark,
        vlan_tci: s.vlan_tci as u16,
        vlan_proto: s.vlan_proto as u16,
        _pad: 0,
        sock_cookie,
    };
    // Records come in three sizes (the ring only reserves sizes known to
    // the verifier): a small frame does not take a whole 2 KiB record.
    if cap <= SMALL {
        emit::<SMALL>(ctx, hdr, &meta, cap)
    } else if cap <= MEDIUM {
        emit::<MEDIUM>(ctx, hdr, &meta, cap)
    } else {
        emit::<PKT_DATA_MAX>(ctx, hdr, &meta, cap)
    }
}

/// Frame bytes of the two smaller record sizes (powers of two): an ACK or
/// a small datagram, and a mid-sized packet.
const SMALL: usize = 128;
const MEDIUM: usize = 512;

/// A packet record as it lies in the ring: the header, the description
/// and room for `N` bytes of the frame, of which `cap_len` are used
/// (userspace reads the header's `payload_len` and `cap_len`, not the
/// record's length).
#[repr(C)]
struct PacketRecord<const N: usize> {
    hdr: EventHeader,
    meta: PacketMeta,
    data: [u8; N],
}

/// Reserves a record in the ring and loads the frame straight into it:
/// one copy, from the skb to the ring. Whether a record went out; a
/// reserve the ring refuses is counted as a lost packet, a failed read as
/// a lost packet read (the record is discarded).
///
/// The record is sent without waking the reader, unless the data waiting
/// crosses a multiple of an eighth of the ring with it: a wakeup per
/// packet (an irq_work and a context switch) costs more than the program
/// itself, and so did one per packet once an eighth was waiting, exactly
/// when the reader was behind (it reads until the ring is empty once
/// woken, so it needs no more). Userspace also drains the ring on a short
/// timer, so a quiet link, or a crossing two CPUs both missed, is not left
/// waiting.
#[inline(always)]
fn emit<const N: usize>(ctx: &TcContext, hdr: &EventHeader, meta: &PacketMeta, cap: usize) -> Option<()> {
    let size = core::mem::size_of::<PacketRecord<N>>() as u64;
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    // The ring's size is a power of two, so is an eighth of it: the two
    // ends fall in different eighths when they differ in a bit at or above
    // it (no division).
    let eighth = ring_eighth();
    let crosses = (pending ^ (pending + size)) >= eighth;
    let wake = if crosses { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    let Some(mut entry) = EVENTS.reserve::<PacketRecord<N>>(0) else {
        count_lost(LostSource::Packet);
        return None;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: `r` is the reserved record, `size_of::<PacketRecord<N>>()`
    // bytes of the ring owned by this program until submitted or discarded.
    unsafe {
        copy_words(&raw mut (*r).hdr, hdr);
        copy_words(&raw mut (*r).meta, meta);
        if cap > 0 {
            // 1..=N by arithmetic on the very register passed, which is
            // what the verifier can follow (the callers keep cap <= N, for
            // which this is cap). The mask is applied in assembly: LLVM
            // knows the range of `cap` in each size's branch and would fold
            // the mask and the +1 away, leaving a register the verifier
            // sees as 0..N-1 (a zero-sized read, refused).
            let mut n = (cap as u64).wrapping_sub(1);
            core::arch::asm!("{n} &= {m}", n = inout(reg) n, m = in(reg) (N as u64 - 1), options(pure, nomem, nostack));
            let n = n + 1;
            let dst = (&raw mut (*r).data) as *mut _;
            if bpf_skb_load_bytes(ctx.skb.skb as *const _, 0, dst, n as u32) != 0 {
                entry.discard(BPF_RB_NO_WAKEUP as u64);
                count_lost(LostSource::PacketRead);
                return None;
            }
        }
    }
    entry.submit(wake as u64);
    Some(())
}
