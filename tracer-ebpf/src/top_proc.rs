//! `tracer top --by process`: the counting of `top.rs` with the sending
//! socket's cookie added to the flow key, in programs of their own so that
//! plain `tracer top` runs exactly what it ran before (no helper call, no
//! bigger key). The installed filter runs first, as for `top.rs`: the
//! entry programs tail-call it and a match continues into the `*_body`
//! programs. Interface counters go to the same `TOP_IFACES`, flow first
//! and interface second, as userspace's loss accounting expects.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_ns, generated::bpf_get_socket_cookie},
    macros::{classifier, map},
    maps::LruPerCpuHashMap,
    programs::TcContext,
};
use tracer_common::{
    LostSource, slots,
    packet::{DIR_EGRESS, DIR_INGRESS},
    top::{Counters, IfaceKey, ProcFlowKey, TOP_FLOWS_MAX},
};

use crate::{
    filter::parse,
    kernel::{count_lost, zero},
    tc::{device_netns, run_filter},
    top::{EEXIST, TOP_IFACES, add},
};

#[map(name = "TOP_PROC_FLOWS")]
static TOP_PROC_FLOWS: LruPerCpuHashMap<ProcFlowKey, Counters> = LruPerCpuHashMap::with_max_entries(TOP_FLOWS_MAX, 0);

#[classifier]
pub fn top_proc_ingress(ctx: TcContext) -> i32 {
    if !run_filter(&ctx, slots::FILTER_ETH_INGRESS) {
        count(&ctx, DIR_INGRESS);
    }
    TC_ACT_UNSPEC
}

#[classifier]
pub fn top_proc_egress(ctx: TcContext) -> i32 {
    if !run_filter(&ctx, slots::FILTER_ETH_EGRESS) {
        count(&ctx, DIR_EGRESS);
    }
    TC_ACT_UNSPEC
}

/// What a matching ingress filter continues into.
#[classifier]
pub fn top_proc_ingress_body(ctx: TcContext) -> i32 {
    count(&ctx, DIR_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn top_proc_egress_body(ctx: TcContext) -> i32 {
    count(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext, direction: u8) {
    let mut key_slot = core::mem::MaybeUninit::<ProcFlowKey>::uninit();
    let key = zero(&mut key_slot);
    key.flow.netns_ino = device_netns(ctx);
    key.flow.pkt.direction = direction;
    // SAFETY: helper on the program's own skb.
    key.sock_cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) };
    // SAFETY: ctx.skb.skb is the program's __sk_buff context.
    let (len, ifindex, vlan_present) = unsafe {
        let s = &*ctx.skb.skb;
        (s.len, s.ifindex, s.vlan_present)
    };
    key.flow.ifindex = ifindex;
    parse(ctx, &mut key.flow.pkt);
    let bytes = len as u64 + if vlan_present != 0 { 4 } else { 0 };
    let _ = add!(TOP_PROC_FLOWS, &*key, bytes);
    let mut ikey_slot = core::mem::MaybeUninit::<IfaceKey>::uninit();
    let ikey = zero(&mut ikey_slot);
    ikey.netns_ino = key.flow.netns_ino;
    ikey.ifindex = ifindex;
    ikey.direction = direction;
    if !add!(TOP_IFACES, &*ikey, bytes) {
        count_lost(LostSource::Stats);
    }
}
