//! What the TC programs (`packet`, `top`, `top_proc`) and the socket
//! selection they ask (`sock`) share: the program array the filters and
//! capture bodies are tail-called through, the link-type choice of the
//! filter, and the namespace of the device a packet is on.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::TcContext,
};
use tracer_common::slots;

use crate::kernel::{config, kread, kread_or_zero, offset};

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
    let dev: *const u8 = kread_or_zero(ctx.skb.skb as *const u8, offset!(skb_dev));
    let ty: u16 = if dev.is_null() { 0 } else { kread_or_zero(dev, offset!(dev_type)) };
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
    // In TC programs the context pointer is the kernel's sk_buff.
    let skb = ctx.skb.skb as *const u8;
    let Some(dev) = kread::<*const u8>(skb, offset!(skb_dev)) else { return 0 };
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
    let Some(net) = kread::<*const u8>(dev, offset!(dev_nd_net)) else { return 0 };
    let ino = kread::<u32>(net, offset!(net_inum)).unwrap_or(0);
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
