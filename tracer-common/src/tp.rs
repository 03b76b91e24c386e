//! What the drop and TCP programs of `tracer drops` and `tracer tcp` are
//! told at load time: the kernel struct offsets they read through the skb,
//! the socket and the `tcp_sock` ([`SkOffsets`], from BTF), and their
//! settings ([`ObsConfig`]).
//!
//! The programs are BTF tracepoints (`tp_btf`), not classic ones. Classic
//! tracepoint programs share one per-CPU guard with every other tracepoint
//! and kprobe program (`bpf_prog_active`): a retransmission in a softirq
//! that interrupts any of them on that CPU is skipped, silently but for a
//! counter. Measured here with classic tracepoints: 13 of 67 retransmitted
//! segments of one stream never reached the program. `tp_btf` programs
//! guard only against themselves (Linux >= 5.11 counts what that skips in
//! the program's `recursion_misses`, which the tracer reports), cost less
//! per event (no record is built for perf), and need no tracefs. Their
//! argument lists grew between kernels (`kfree_skb` gained `reason` in
//! 5.17 and `rx_sk` in 6.11, `tcp_retransmit_skb` `err` in 6.14,
//! `tcp_send_reset` `reason` in 6.10); the verifier refuses a read past
//! the last argument, so each grown tracepoint has one program per
//! argument list, and userspace loads the one the running kernel's BTF
//! prototype (`btf_trace_<name>`) matches.

/// An offset this kernel does not have (the field is missing from its
/// tracepoint or struct); programs needing it do without.
pub const MISSING: u32 = u32::MAX;

/// Kernel struct offsets (from BTF) the drop and TCP programs read beyond
/// [`crate::offsets::KernelOffsets`], [`MISSING`] where absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkOffsets {
    /// `sk_buff.head`
    pub skb_head: u32,
    /// `sk_buff.tail` (an offset from `head` on 64-bit kernels).
    pub skb_tail: u32,
    /// `sk_buff.len`
    pub skb_len: u32,
    /// `sk_buff.protocol`
    pub skb_protocol: u32,
    /// `sk_buff.network_header` (u16 offset from `head`)
    pub skb_network_header: u32,
    /// `sk_buff.mac_header` (u16 offset from `head`, `0xffff` when unset)
    pub skb_mac_header: u32,
    /// `sk_buff.sk`
    pub skb_sk: u32,
    /// `sk_buff.cb` (where TCP keeps `struct tcp_skb_cb`)
    pub skb_cb: u32,
    /// `net_device.ifindex`
    pub dev_ifindex: u32,
    /// `sock_common.skc_state`
    pub sk_state: u32,
    /// `sock_common.skc_num` (local port, host order)
    pub sk_num: u32,
    /// `sock_common.skc_dport` (network order)
    pub sk_dport: u32,
    /// `sock_common.skc_rcv_saddr`
    pub sk_rcv_saddr: u32,
    /// `sock_common.skc_daddr`
    pub sk_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`
    pub sk_v6_rcv_saddr: u32,
    /// `sock_common.skc_v6_daddr`
    pub sk_v6_daddr: u32,
    /// `tcp_skb_cb.seq`
    pub tcb_seq: u32,
    /// `tcp_sock.srtt_us` (smoothed RTT << 3)
    pub tp_srtt_us: u32,
    /// `tcp_sock.bytes_acked`
    pub tp_bytes_acked: u32,
    /// `tcp_sock.bytes_received`
    pub tp_bytes_received: u32,
    /// `tcp_sock.total_retrans`
    pub tp_total_retrans: u32,
    /// `tcp_skb_cb.tcp_gso_segs` (u16)
    pub tcb_gso_segs: u32,
    /// `tcp_sock.snd_cwnd`
    pub tp_snd_cwnd: u32,
    /// `inet_sock.inet_sport` (network order): unlike `skc_num`, kept when
    /// a closing socket gives its port back (before its last state change
    /// is traced).
    pub inet_sport: u32,
    /// `sock.sk_dst_cache`: the route a full socket sends by, whose
    /// device is the interface `tracer top` counts its TCP events on.
    pub sk_dst_cache: u32,
    /// `dst_entry.dev`
    pub dst_dev: u32,
    /// `sk_buff.data`: where `skb->len` counts from, so a drop's length
    /// is counted from the first byte copied (as a capture's is).
    pub skb_data: u32,
}
const _: () = assert!(core::mem::size_of::<SkOffsets>() == 108);

impl SkOffsets {
    pub const fn missing() -> Self {
        let m = MISSING;
        Self {
            skb_head: m,
            skb_tail: m,
            skb_len: m,
            skb_protocol: m,
            skb_network_header: m,
            skb_mac_header: m,
            skb_sk: m,
            skb_cb: m,
            dev_ifindex: m,
            sk_state: m,
            sk_num: m,
            sk_dport: m,
            sk_rcv_saddr: m,
            sk_daddr: m,
            sk_v6_rcv_saddr: m,
            sk_v6_daddr: m,
            tcb_seq: m,
            tp_srtt_us: m,
            tp_bytes_acked: m,
            tp_bytes_received: m,
            tp_total_retrans: m,
            tcb_gso_segs: m,
            tp_snd_cwnd: m,
            inet_sport: m,
            sk_dst_cache: m,
            dst_dev: m,
            skb_data: m,
        }
    }
}

/// `ObsConfig::drops` and `ObsConfig::tcp`: what the programs do.
pub mod mode {
    /// Return at once.
    pub const OFF: u32 = 0;
    /// One ring-buffer record per drop or TCP event.
    pub const EVENTS: u32 = 1;
    /// `tracer top`: count in per-CPU maps, send nothing.
    pub const COUNT: u32 = 2;
}

/// Settings of the drop and TCP programs, set once at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObsConfig {
    /// A [`mode`] for `skb:kfree_skb`.
    pub drops: u32,
    /// A [`mode`] for the TCP tracepoints.
    pub tcp: u32,
    /// Nonzero: only namespaces in [`crate::maps::OBS_NETNS`] (events
    /// with no namespace are then left out); zero: every namespace.
    pub select_netns: u32,
    /// Nonzero: only drop reasons whose bit is set in `reasons`.
    pub select_reasons: u32,
    /// Bit `r` set: drop reason value `r` is wanted (values >= 256 never are).
    pub reasons: [u64; 4],
    /// Bytes of each dropped packet to copy, at most [`crate::drops::DROP_DATA_MAX`].
    pub snaplen: u32,
    /// Nonzero: `tracer drops` has a packet filter installed in
    /// [`crate::maps::DROP_PROGS`] (see [`crate::drops::DropFrame`]).
    pub drop_filter: u32,
    /// Least time between two RTT samples of one connection (`tcp_probe`).
    pub rtt_interval_ns: u64,
    /// Nonzero: counting drops also counts them per flow (`DROP_FLOWS`,
    /// for `top --by flow`); zero: per namespace, interface and reason
    /// only, and the dropped packet's headers are not read.
    pub drop_flows: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ObsConfig>() == 72);

impl ObsConfig {
    pub const fn off() -> Self {
        Self {
            drops: mode::OFF,
            tcp: mode::OFF,
            select_netns: 0,
            select_reasons: 0,
            reasons: [0; 4],
            snaplen: 0,
            drop_filter: 0,
            rtt_interval_ns: 1_000_000_000,
            drop_flows: 0,
            _pad: 0,
        }
    }

    /// Whether drop reason `r` passes `--reason`.
    #[inline(always)]
    pub fn wants_reason(&self, r: u32) -> bool {
        if self.select_reasons == 0 {
            return true;
        }
        let i = (r / 64) as usize;
        i < 4 && self.reasons[i] & (1u64 << (r % 64)) != 0
    }
}

/// Namespaces [`ObsConfig::select_netns`] keeps, at most.
pub const OBS_NETNS_MAX: u32 = 64;
