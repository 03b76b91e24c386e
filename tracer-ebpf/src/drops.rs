//! `tracer drops`: the `kfree_skb` tracepoint (as `tp_btf`), which the
//! kernel fires for every packet it drops (consumed packets go to
//! `consume_skb`), with the address it was freed from and, from 5.17, the
//! reason (`enum skb_drop_reason`), from 6.11 the receiving socket. One
//! program per argument list; userspace loads the one the kernel has.
//!
//! The namespace of a drop is the device's when the skb has one, else the
//! socket's (`rx_sk` where the tracepoint has it, else `skb->sk`), else
//! unknown (0; reported with `--all`, counted by userspace). Netlink and
//! unix messages, and answers freed before they reached their socket, are
//! no packets and leave at once. Unselected
//! namespaces and unwanted reasons leave at once. In events mode without a
//! filter the record ([`DropMeta`] and the packet's first bytes) is
//! written straight into a ring-buffer reservation; in `top` mode per-CPU
//! counters per namespace, interface and reason (and, for `top --by flow`
//! only, per flow: the headers are read only then), and no record.
//!
//! With a packet filter (`ObsConfig::drop_filter`) the frame is copied
//! into this CPU's [`DropFrame`] as libpcap's code reads it, and the drop
//! program tail-calls the filter in [`DROP_PROGS`]: libpcap's code for the
//! expression translated by userspace into a tracing program for this
//! same tracepoint (so the kernel lets the two share a program array),
//! reading the frame from [`DROP_FRAME`]. On a match it tail-calls
//! [`drop_emit`], which sends the record; a filtered-out drop costs no
//! record. A drop that finds the frame busy (it interrupted another on
//! this CPU), or a filter slot empty, sends its record unfiltered and
//! userspace applies the same code to it.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel,
    macros::{btf_tracepoint, map},
    maps::{LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, ProgramArray},
    programs::BtfTracePointContext,
};
use tracer_common::{
    EventHeader, EventKind, LostSource,
    drops::{
        DROP_COUNTS_MAX, DROP_DATA_MAX, DROP_FLOWS_MAX, DropFrame, DropKey, DropMeta, ETH_HLEN, REASON_NONE, attrib, drop_slots,
        layer,
    },
    packet::{DIR_INGRESS, PacketKey},
    top::{Counters, FlowKey},
    tp::mode,
};

use crate::{
    kernel::{EVENTS, count_lost, kread_or_zero, offsets},
    obs::{SkbData, cfg, dev_netns, parse_skb, selected, sk_netns, skb_data, sko, wakeup_flags},
};

#[map(name = "DROP_COUNTS")]
static DROP_COUNTS: PerCpuHashMap<DropKey, Counters> = PerCpuHashMap::with_max_entries(DROP_COUNTS_MAX, 0);

#[map(name = "DROP_FLOWS")]
static DROP_FLOWS: LruPerCpuHashMap<FlowKey, Counters> = LruPerCpuHashMap::with_max_entries(DROP_FLOWS_MAX, 0);

/// The filter and the emitter ([`drop_slots`]), tail-called.
#[map(name = "DROP_PROGS")]
static DROP_PROGS: ProgramArray = ProgramArray::with_max_entries(drop_slots::SLOTS, 0);

#[map(name = "DROP_FRAME")]
static DROP_FRAME: PerCpuArray<DropFrame> = PerCpuArray::with_max_entries(1, 0);

/// `kfree_skb(skb, location)`: Linux < 5.17.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let _ = try_drop(&ctx, ctx.arg::<u64>(0) as *const u8, ctx.arg(1), REASON_NONE, core::ptr::null());
    0
}

/// `kfree_skb(skb, location, reason)`: Linux 5.17 to 6.10.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_kfree_skb_reason(ctx: BtfTracePointContext) -> i32 {
    let _ = try_drop(&ctx, ctx.arg::<u64>(0) as *const u8, ctx.arg(1), ctx.arg::<u32>(2), core::ptr::null());
    0
}

/// `kfree_skb(skb, location, reason, rx_sk)`: Linux >= 6.11.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_kfree_skb_rx_sk(ctx: BtfTracePointContext) -> i32 {
    let _ = try_drop(&ctx, ctx.arg::<u64>(0) as *const u8, ctx.arg(1), ctx.arg::<u32>(2), ctx.arg::<u64>(3) as *const u8);
    0
}

/// What a matching filter tail-calls: sends the record of this CPU's
/// [`DropFrame`] and frees it. Loaded for `kfree_skb` like the drop
/// programs (the kernel lets only programs of one attach point share a
/// program array), never attached.
#[btf_tracepoint(function = "kfree_skb")]
pub fn drop_emit(_ctx: BtfTracePointContext) -> i32 {
    let Some(f) = DROP_FRAME.get_ptr_mut(0) else { return 0 };
    let Some(mut e) = EVENTS.reserve::<DropRec>(0) else {
        count_lost(LostSource::Drop);
        // SAFETY: this CPU's value, owned by this drop until freed here.
        unsafe { (*f).busy = 0 };
        return 0;
    };
    let p = e.as_mut_ptr();
    // SAFETY: `f` is this CPU's frame (the filter's caller filled it); the
    // reservation holds a whole DropRec and the copy writes at most
    // DROP_DATA_MAX bytes into its `data`.
    unsafe {
        let meta = (*f).meta;
        let cap = meta.cap_len;
        if cap > 0 {
            let n = (cap.wrapping_sub(1) & (DROP_DATA_MAX as u32 - 1)) + 1;
            let start = ((*f).start as usize) & ETH_HLEN;
            let src = (core::ptr::addr_of!((*f).data) as *const u8).wrapping_add(start);
            let dst = core::ptr::addr_of_mut!((*p).data) as *mut _;
            if bpf_probe_read_kernel(dst, n, src as *const _) != 0 {
                e.discard(0);
                count_lost(LostSource::DropRead);
                (*f).busy = 0;
                return 0;
            }
        }
        let hdr = crate::obs::header(EventKind::Drop, (*f).netns, (size_of::<DropMeta>() + cap as usize) as u32);
        core::ptr::addr_of_mut!((*p).hdr).write(hdr);
        core::ptr::addr_of_mut!((*p).meta).write(meta);
        (*f).busy = 0;
    }
    e.submit(wakeup_flags());
    0
}

/// One drop record as it sits in the ring buffer: the header, the meta and
/// room for the most bytes copied (userspace reads `cap_len` of them).
#[repr(C)]
struct DropRec {
    hdr: EventHeader,
    meta: DropMeta,
    data: [u8; DROP_DATA_MAX],
}

/// Adds one drop of `bytes` to `key`'s counter on this CPU, creating the
/// entry when missing; whether it was counted. Atomic adds, unlike the TC
/// counters': on 5.10 a BTF tracepoint program can be interrupted by
/// itself (a softirq drop during a task's), and the two would race on the
/// same per-CPU slot.
macro_rules! add_atomic {
    ($map:expr, $key:expr, $bytes:expr) => {{
        let bump = |p: *mut Counters| {
            // SAFETY: a slot of this CPU's value, valid for the program run.
            unsafe {
                crate::kernel::atomic_add(core::ptr::addr_of_mut!((*p).packets), 1);
                crate::kernel::atomic_add(core::ptr::addr_of_mut!((*p).bytes), $bytes);
            }
        };
        match $map.get_ptr_mut($key) {
            Some(p) => {
                bump(p);
                true
            }
            None => {
                // SAFETY: helper call.
                let v = Counters { packets: 1, bytes: $bytes, created_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() } };
                match $map.insert($key, &v, aya_ebpf::bindings::BPF_NOEXIST as u64) {
                    Ok(()) => true,
                    // Created meanwhile (another CPU, or an interrupting run).
                    Err(_) => match $map.get_ptr_mut($key) {
                        Some(p) => {
                            bump(p);
                            true
                        }
                        None => false,
                    },
                }
            }
        }
    }};
}

#[inline(always)]
fn try_drop(ctx: &BtfTracePointContext, skb: *const u8, location: u64, reason: u32, rx_sk: *const u8) -> Option<()> {
    let c = cfg();
    if c.drops == mode::OFF || skb.is_null() {
        return None;
    }
    if reason != REASON_NONE && !c.wants_reason(reason) {
        return None;
    }
    let (netns, ifindex, how) = attribute(skb, rx_sk);
    if how == NOT_A_PACKET || !selected(netns) {
        return None;
    }
    let len: u32 = kread_or_zero(skb, sko().skb_len);
    if c.drops == mode::COUNT {
        // Only `top --by flow` needs the headers (six kernel reads to find
        // them, then the parse) and the flow's counter.
        if c.drop_flows != 0 {
            let mut key = PacketKey { direction: DIR_INGRESS, ..PacketKey::default() };
            parse_skb(&skb_data(skb), &mut key);
            let fkey = FlowKey { netns_ino: netns, ifindex, pkt: key };
            let _ = add_atomic!(DROP_FLOWS, &fkey, len as u64);
        }
        let key = DropKey { netns_ino: netns, ifindex, reason, _pad: 0 };
        if !add_atomic!(DROP_COUNTS, &key, len as u64) {
            count_lost(LostSource::DropStats);
        }
        return None;
    }
    let data = skb_data(skb);
    // The record's length is the frame's, from its first byte copied (a
    // drop past the IP header has skb->data, and skb->len, further on).
    let frame_len = if data.layer == layer::NONE { len } else { (len as i64 + data.len_adjust as i64).max(0) as u32 };
    let meta = DropMeta { location, reason, ifindex, len: frame_len, cap_len: 0, protocol: data.protocol, attrib: how, layer: data.layer, _pad: 0 };
    if c.drop_filter != 0 && !filter(ctx, netns, meta, &data) {
        return None;
    }
    emit(netns, meta, &data);
    Some(())
}

/// Copies the frame into this CPU's [`DropFrame`] and tail-calls the
/// filter, which does not return. Returns whether the record is to be
/// sent unfiltered (the frame was busy, or the filter slot empty: userspace
/// filters it); `false` for a drop with no bytes, which no filter keeps.
#[inline(always)]
fn filter(ctx: &BtfTracePointContext, netns: u32, mut meta: DropMeta, data: &SkbData) -> bool {
    let Some(f) = DROP_FRAME.get_ptr_mut(0) else { return true };
    // SAFETY: this CPU's value; a program that interrupts this one finds
    // `busy` set and leaves the value alone.
    unsafe {
        if (*f).busy != 0 {
            return true;
        }
        (*f).busy = 1;
    }
    let mut cap = copy_len(data);
    let l3 = data.layer == layer::L3;
    let start = if l3 { ETH_HLEN } else { 0 };
    // SAFETY: as above; the copy writes at most DROP_DATA_MAX bytes at
    // `start` (0 or ETH_HLEN) of `data`, which has room for both.
    unsafe {
        if cap > 0 {
            let n = ((cap as u32).wrapping_sub(1) & (DROP_DATA_MAX as u32 - 1)) + 1;
            let dst = (core::ptr::addr_of_mut!((*f).data) as *mut u8).wrapping_add(start);
            if bpf_probe_read_kernel(dst as *mut _, n, data.frame.base as *const _) != 0 {
                // Counted as the unfiltered path counts it.
                count_lost(LostSource::DropRead);
                cap = 0;
            }
        }
        if cap == 0 {
            // Nothing to match: libpcap's code refuses an empty frame, so
            // the drop is filtered out here (as userspace would).
            (*f).busy = 0;
            return false;
        }
        let mut wire = meta.len;
        if l3 {
            // The Ethernet header userspace makes up: 12 zero bytes and
            // the EtherType (the IP version's when the skb has none yet).
            let d = core::ptr::addr_of_mut!((*f).data) as *mut u8;
            core::ptr::write_bytes(d, 0, 12);
            let mut et = u16::from_be(data.protocol);
            if et == 0 {
                et = if *d.add(ETH_HLEN) >> 4 == 6 { 0x86dd } else { 0x0800 };
            }
            let b = et.to_be_bytes();
            *d.add(12) = b[0];
            *d.add(13) = b[1];
            wire = wire.wrapping_add(ETH_HLEN as u32);
        }
        meta.cap_len = cap as u32;
        (*f).meta = meta;
        (*f).netns = netns;
        (*f).start = start as u32;
        (*f).cap = (cap + start) as u32;
        (*f).wire = wire;
        DROP_PROGS.tail_call(ctx, drop_slots::FILTER);
        // No filter in the slot: sent unfiltered.
        (*f).busy = 0;
    }
    true
}

/// [`attribute`]'s answer for what is no network packet: a netlink or
/// unix socket's message, or one with neither device, socket nor protocol
/// (the answers to a netlink flood whose sender never reads them, one per
/// refused request: the netlink audit reports those requests).
const NOT_A_PACKET: u8 = u8::MAX;
const AF_UNIX: u16 = 1;
const AF_NETLINK: u16 = 16;

/// The drop's namespace, interface and how they were found.
#[inline(always)]
fn attribute(skb: *const u8, rx_sk: *const u8) -> (u32, u32, u8) {
    let dev = kread_or_zero::<u64>(skb, offsets().skb_dev) as *const u8;
    if !dev.is_null() {
        let ns = dev_netns(dev);
        if ns != 0 {
            return (ns, kread_or_zero(dev, sko().dev_ifindex), attrib::DEVICE);
        }
    }
    let sk = if rx_sk.is_null() { kread_or_zero::<u64>(skb, sko().skb_sk) as *const u8 } else { rx_sk };
    if !sk.is_null() {
        if matches!(kread_or_zero::<u16>(sk, offsets().sk_family), AF_UNIX | AF_NETLINK) {
            return (0, 0, NOT_A_PACKET);
        }
        let ns = sk_netns(sk);
        if ns != 0 {
            return (ns, 0, attrib::SOCKET);
        }
    } else if kread_or_zero::<u16>(skb, sko().skb_protocol) == 0 {
        // No device, no socket, no protocol: a message the kernel made for
        // a socket and freed before it was queued there (the answer to a
        // netlink request whose sender's receive buffer is full).
        return (0, 0, NOT_A_PACKET);
    }
    (0, 0, attrib::UNKNOWN)
}

/// How many of the frame's bytes a record takes: up to the snap length
/// and the record's room.
#[inline(always)]
fn copy_len(data: &SkbData) -> usize {
    let mut cap = data.frame.len;
    let snap = cfg().snaplen as usize;
    if cap > snap {
        cap = snap;
    }
    if cap > DROP_DATA_MAX {
        cap = DROP_DATA_MAX;
    }
    cap
}

#[inline(always)]
fn emit(netns: u32, mut meta: DropMeta, data: &SkbData) {
    let Some(mut e) = EVENTS.reserve::<DropRec>(0) else {
        count_lost(LostSource::Drop);
        return;
    };
    let mut cap = copy_len(data);
    let p = e.as_mut_ptr();
    // SAFETY: the reservation holds a whole DropRec; the copy writes at
    // most DROP_DATA_MAX bytes into its `data`.
    unsafe {
        if cap > 0 {
            // 1..=DROP_DATA_MAX by arithmetic the verifier follows.
            let n = ((cap as u32).wrapping_sub(1) & (DROP_DATA_MAX as u32 - 1)) + 1;
            let dst = core::ptr::addr_of_mut!((*p).data) as *mut _;
            if bpf_probe_read_kernel(dst, n, data.frame.base as *const _) != 0 {
                count_lost(LostSource::DropRead);
                cap = 0;
            }
        }
        meta.cap_len = cap as u32;
        if cap == 0 {
            meta.layer = layer::NONE;
        }
        let hdr = crate::obs::header(EventKind::Drop, netns, (size_of::<DropMeta>() + cap) as u32);
        core::ptr::addr_of_mut!((*p).hdr).write(hdr);
        core::ptr::addr_of_mut!((*p).meta).write(meta);
    }
    e.submit(wakeup_flags());
}
