//! Tiny programs `tracer doctor` loads and attaches to learn which program
//! kinds the running kernel accepts. They do nothing.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{btf_tracepoint, classifier, fentry, fexit, kprobe, lsm, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, LsmContext, ProbeContext, TcContext, TracePointContext},
};

#[tracepoint]
pub fn probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "sys_enter")]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[classifier]
pub fn probe_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[fentry(function = "netlink_sendmsg")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[fexit(function = "netlink_sendmsg")]
pub fn probe_fexit(_ctx: FExitContext) -> u32 {
    0
}

#[lsm(hook = "socket_create")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
