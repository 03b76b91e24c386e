//! The ABI shared by the kernel programs (`tracer-ebpf`) and userspace (`tracer`).
//!
//! Every record that crosses the ring buffer starts with an [`EventHeader`]
//! whose `kind` says which payload follows. All structs are `#[repr(C)]` with
//! explicit padding, and their sizes are asserted, so a layout change fails
//! the build instead of corrupting a trace.
#![no_std]

pub mod drops;
pub mod netlink;
pub mod offsets;
pub mod packet;
pub mod tcp;
pub mod sock;
pub mod top;
pub mod tp;

/// Names of maps, shared so neither side repeats a string literal.
pub mod maps {
    /// The ring buffer every program writes its events to.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU counters of failed ring-buffer reserves, indexed by [`super::LostSource`].
    pub const LOST: &str = "LOST";
    /// Scratch space (per CPU) where tracepoint programs assemble
    /// variable-length records.
    pub const SCRATCH: &str = "SCRATCH";
    /// In-flight netlink receives, keyed by pid_tgid.
    pub const NL_RECV_ARGS: &str = "NL_RECV_ARGS";
    /// The program array the TC entry programs tail-call through: the
    /// libpcap filters and the capture bodies, slots in [`super::slots`].
    pub const PROGS: &str = "PROGS";
    /// `tracer top`: per-CPU packet and byte counters per interface and
    /// direction, keyed by [`super::top::IfaceKey`].
    pub const TOP_IFACES: &str = "TOP_IFACES";
    /// `tracer top`: per-CPU counters per flow (LRU), keyed by [`super::top::FlowKey`].
    pub const TOP_FLOWS: &str = "TOP_FLOWS";
    /// Namespaces the drop and TCP programs report when
    /// [`super::tp::ObsConfig::select_netns`] is set (inode -> 1).
    pub const OBS_NETNS: &str = "OBS_NETNS";
    /// `tracer top`: per-CPU drop counters by [`super::drops::DropKey`].
    pub const DROP_COUNTS: &str = "DROP_COUNTS";
    /// `tracer top`: per-CPU drop counters per flow (LRU).
    pub const DROP_FLOWS: &str = "DROP_FLOWS";
    /// `tracer drops` with a filter: the program array of the filter and
    /// the emitter ([`super::drops::drop_slots`]).
    pub const DROP_PROGS: &str = "DROP_PROGS";
    /// `tracer drops` with a filter: per CPU, the [`super::drops::DropFrame`] being filtered.
    pub const DROP_FRAME: &str = "DROP_FRAME";
    /// `tracer top`: per-CPU TCP counters by namespace inode.
    pub const TCP_COUNTS: &str = "TCP_COUNTS";
    /// `tracer top`: per-CPU TCP counters per flow (LRU).
    pub const TCP_FLOWS: &str = "TCP_FLOWS";
    /// When `tcp_probe` last sent a reading per socket (LRU).
    pub const TCP_RTT_SEEN: &str = "TCP_RTT_SEEN";
    /// `tracer top --by process`: per-CPU counters per flow and sending
    /// socket (LRU), keyed by [`super::top::ProcFlowKey`].
    pub const TOP_PROC_FLOWS: &str = "TOP_PROC_FLOWS";
    /// Socket cookie -> [`super::sock::SockOwner`] (LRU).
    pub const SOCK_OWNERS: &str = "SOCK_OWNERS";
    /// [`super::sock::SelPort`] -> cookie of the selected socket holding it (LRU).
    pub const SOCK_SEL_PORTS: &str = "SOCK_SEL_PORTS";
    /// TC programs: per CPU, the namespace of the devices last seen (a
    /// cache of three kernel reads), valid for one attach generation.
    pub const NETNS_CACHE: &str = "NETNS_CACHE";
    /// The attach generation (an array of one u64): userspace raises it
    /// before it attaches to any interface, which empties [`NETNS_CACHE`].
    pub const ATTACH_GEN: &str = "ATTACH_GEN";
}

/// Slots of the [`maps::PROGS`] program array: the filter per link type
/// and direction, and the capture body a matching filter continues into.
pub mod slots {
    pub const FILTER_ETH_INGRESS: u32 = 0;
    pub const FILTER_ETH_EGRESS: u32 = 1;
    /// Raw-IP slots are the Ethernet ones plus this.
    pub const RAW_IP: u32 = 2;
    pub const FILTER_RAW_INGRESS: u32 = 2;
    pub const FILTER_RAW_EGRESS: u32 = 3;
    pub const CAPTURE_INGRESS: u32 = 4;
    pub const CAPTURE_EGRESS: u32 = 5;
    pub const SLOTS: u32 = 6;
}

/// Names of the global variables userspace sets at load time.
pub mod globals {
    /// The tracer's own tgid; programs ignore this process (see [`super::Config`]).
    pub const CONFIG: &str = "CONFIG";
    /// Kernel struct offsets read from BTF, see [`super::offsets::KernelOffsets`].
    pub const OFFSETS: &str = "OFFSETS";
    /// skb, socket and tcp_sock offsets, see [`super::tp::SkOffsets`].
    pub const SK_OFFSETS: &str = "SK_OFFSETS";
    /// Settings of the drop and TCP programs, see [`super::tp::ObsConfig`].
    pub const OBS_CONFIG: &str = "OBS_CONFIG";
    /// Process attribution settings, see [`super::sock::ProcConfig`].
    pub const PROC_CONFIG: &str = "PROC_CONFIG";
}

/// Names of the programs in the eBPF object.
pub mod programs {
    pub const NL_SENDMSG: &str = "nl_sendmsg";
    pub const NL_SENDTO: &str = "nl_sendto";
    pub const NL_SENDMMSG: &str = "nl_sendmmsg";
    pub const NL_WRITE: &str = "nl_write";
    pub const NL_WRITEV: &str = "nl_writev";
    pub const NL_RECVMSG_ENTER: &str = "nl_recvmsg_enter";
    pub const NL_RECVMSG_EXIT: &str = "nl_recvmsg_exit";
    pub const NL_RECVFROM_ENTER: &str = "nl_recvfrom_enter";
    pub const NL_RECVFROM_EXIT: &str = "nl_recvfrom_exit";
    pub const PKT_INGRESS: &str = "pkt_ingress";
    pub const PKT_EGRESS: &str = "pkt_egress";
    /// `tracer top`: count packets per interface and flow, send nothing.
    pub const TOP_INGRESS: &str = "top_ingress";
    pub const TOP_EGRESS: &str = "top_egress";
    /// `tracer drops` (`tp_btf/kfree_skb`), and its counters for `tracer
    /// top`: one program per argument list (see [`super::tp`]): `(skb,
    /// location)` before 5.17, `+ reason`, `+ rx_sk` from 6.11.
    pub const DROP_KFREE_SKB: &str = "drop_kfree_skb";
    pub const DROP_KFREE_SKB_REASON: &str = "drop_kfree_skb_reason";
    pub const DROP_KFREE_SKB_RX_SK: &str = "drop_kfree_skb_rx_sk";
    /// `tracer drops` with a filter: sends the record of a drop the
    /// filter kept (tail-called, never attached).
    pub const DROP_EMIT: &str = "drop_emit";
    /// `tracer tcp`: `inet_sock_set_state`.
    pub const TCP_SET_STATE: &str = "tcp_set_state";
    /// `tcp_retransmit_skb`, and with its `err` (6.14).
    pub const TCP_RETRANSMIT: &str = "tcp_retransmit";
    pub const TCP_RETRANSMIT_ERR: &str = "tcp_retransmit_err";
    /// `tcp_send_reset`, and with its `reason` (6.10).
    pub const TCP_SEND_RESET: &str = "tcp_send_reset";
    pub const TCP_SEND_RESET_REASON: &str = "tcp_send_reset_reason";
    /// `tcp_receive_reset`
    pub const TCP_RECV_RESET: &str = "tcp_recv_reset";
    /// `tcp_probe` (sampled)
    pub const TCP_PROBE: &str = "tcp_probe";
    /// `tcp_destroy_sock`
    pub const TCP_DESTROY: &str = "tcp_destroy";
    /// The capture bodies a matching filter tail-calls (the entry
    /// programs without their filter step).
    pub const PKT_INGRESS_BODY: &str = "pkt_ingress_body";
    pub const PKT_EGRESS_BODY: &str = "pkt_egress_body";
    pub const TOP_INGRESS_BODY: &str = "top_ingress_body";
    pub const TOP_EGRESS_BODY: &str = "top_egress_body";
    /// `tracer top --by process`: as `top_*`, keyed by socket as well.
    pub const TOP_PROC_INGRESS: &str = "top_proc_ingress";
    pub const TOP_PROC_EGRESS: &str = "top_proc_egress";
    pub const TOP_PROC_INGRESS_BODY: &str = "top_proc_ingress_body";
    pub const TOP_PROC_EGRESS_BODY: &str = "top_proc_egress_body";
    /// Process attribution (cgroup v2 root and sock_ops), see [`super::sock`].
    pub const SOCK_CREATE: &str = "sock_create";
    pub const SOCK_RELEASE: &str = "sock_release";
    pub const SOCK_BIND4: &str = "sock_bind4";
    pub const SOCK_BIND6: &str = "sock_bind6";
    pub const SOCK_CONNECT4: &str = "sock_connect4";
    pub const SOCK_CONNECT6: &str = "sock_connect6";
    pub const SOCK_SENDMSG4: &str = "sock_sendmsg4";
    pub const SOCK_SENDMSG6: &str = "sock_sendmsg6";
    pub const SOCK_OPS: &str = "sock_tcp_ops";
    /// The same without the current-task helpers, for kernels (6.1) that
    /// refuse them to sock_ops programs.
    pub const SOCK_OPS_NOTASK: &str = "sock_ops_notask";
    /// Tiny programs `tracer doctor` loads to probe what the kernel accepts.
    pub const PROBE_TRACEPOINT: &str = "probe_tracepoint";
    pub const PROBE_TP_BTF: &str = "probe_tp_btf";
    pub const PROBE_TC: &str = "probe_tc";
    pub const PROBE_FENTRY: &str = "probe_fentry";
    pub const PROBE_FEXIT: &str = "probe_fexit";
    pub const PROBE_LSM: &str = "probe_lsm";
    pub const PROBE_KPROBE: &str = "probe_kprobe";
}

/// Event kinds. Numbers come in ranges per capability, with room to grow.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A netlink message leaving a process (one per message buffer).
    NetlinkSend = 0x100,
    /// An `NLMSG_ERROR` answer read by a process: the result of its request.
    NetlinkAck = 0x101,
    /// A packet seen by a TC program.
    Packet = 0x200,
    /// A packet the kernel dropped (`skb:kfree_skb`).
    Drop = 0x400,
    /// A TCP socket changed state.
    TcpState = 0x401,
    /// A TCP segment was retransmitted.
    TcpRetransmit = 0x402,
    /// A TCP reset was sent.
    TcpResetSent = 0x403,
    /// A TCP reset was received.
    TcpResetReceived = 0x404,
    /// A sampled reading of a connection's smoothed RTT (`tcp_probe`).
    TcpRtt = 0x405,
    /// A TCP socket was destroyed: its totals.
    TcpDestroy = 0x406,
    /// A socket's owner or address changed (process attribution).
    Sock = 0x300,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            0x100 => Self::NetlinkSend,
            0x101 => Self::NetlinkAck,
            0x200 => Self::Packet,
            0x400 => Self::Drop,
            0x401 => Self::TcpState,
            0x402 => Self::TcpRetransmit,
            0x403 => Self::TcpResetSent,
            0x404 => Self::TcpResetReceived,
            0x405 => Self::TcpRtt,
            0x406 => Self::TcpDestroy,
            0x300 => Self::Sock,
            other => return Err(other),
        })
    }
}

/// Where an event was lost; index into the `LOST` per-CPU array.
///
/// Every place a kernel program gives up on something it should have
/// reported counts here, so userspace can say what it did not see (the
/// `{"type":"lost","source":...}` lines and the summary at exit). Names are
/// part of the output contract: add sources, never rename one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostSource {
    /// Netlink requests that did not fit in the ring buffer.
    Netlink = 0,
    /// Packets that did not fit in the ring buffer.
    Packet = 1,
    /// Netlink answers that did not fit in the ring buffer (their requests
    /// are then reported without a result).
    NetlinkAck = 2,
    /// Packets `tracer top` could not count: the interface counters were
    /// full or refused an update.
    Stats = 3,
    /// Netlink sends whose buffer (or the msghdr, iovec or mmsghdr that
    /// points at it) could not be read from the sender's memory at syscall
    /// entry: unmapped (the kernel then fails the send with EFAULT) or not
    /// resident (paged out, never touched), which the kernel would fault in
    /// but a tracepoint program may not.
    NetlinkRead = 4,
    /// Netlink buffers not looked at: iovecs beyond the first
    /// [`netlink::NL_MAX_IOV`] of a sendmsg or writev, messages beyond the
    /// first [`netlink::NL_MAX_MMSG`] of a sendmmsg, iovecs beyond the first
    /// of one sendmmsg message.
    NetlinkIov = 5,
    /// Netlink receives not followed because the in-flight table
    /// (`NL_RECV_ARGS`, one entry per thread inside a receive) was full;
    /// the answer they brought back is not seen.
    NetlinkRecvArgs = 6,
    /// Netlink answers longer than the [`netlink::NL_ACK_MAX`] bytes
    /// captured: the result is read from what was captured, what follows
    /// (the end of an echoed request, extended-ack attributes) is not.
    NetlinkAckTruncated = 7,
    /// Netlink receives whose data could not be read back from the
    /// receiver's memory at syscall exit (an answer may be among them).
    NetlinkAckRead = 8,
    /// Packets whose bytes `bpf_skb_load_bytes` could not copy.
    PacketRead = 9,
    /// Socket events (owners, addresses) that did not fit in the ring
    /// buffer: packets of those sockets may go unattributed.
    Sock = 10,
    /// Dropped packets that did not fit in the ring buffer.
    Drop = 11,
    /// Dropped packets whose headers could not be read (reported without them).
    DropRead = 12,
    /// TCP events that did not fit in the ring buffer.
    Tcp = 13,
    /// Drops `tracer top` could not count: the drop counters were full or
    /// refused an update.
    DropStats = 14,
    /// TCP events `tracer top` could not count.
    TcpStats = 15,
    /// Netlink requests and answers of a sender other than root, not
    /// copied because the ring buffer was more than half full: the other
    /// half is kept, so an unprivileged flood cannot hide root's requests.
    NetlinkUnprivileged = 16,
}

impl LostSource {
    pub const COUNT: u32 = 17;
    pub const ALL: [LostSource; Self::COUNT as usize] = [
        LostSource::Netlink,
        LostSource::Packet,
        LostSource::NetlinkAck,
        LostSource::Stats,
        LostSource::NetlinkRead,
        LostSource::NetlinkIov,
        LostSource::NetlinkRecvArgs,
        LostSource::NetlinkAckTruncated,
        LostSource::NetlinkAckRead,
        LostSource::PacketRead,
        LostSource::Sock,
        LostSource::Drop,
        LostSource::DropRead,
        LostSource::Tcp,
        LostSource::DropStats,
        LostSource::TcpStats,
        LostSource::NetlinkUnprivileged,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            Self::Netlink => "netlink",
            Self::Packet => "packet",
            Self::NetlinkAck => "netlink_ack",
            Self::Stats => "stats",
            Self::NetlinkRead => "netlink_read",
            Self::NetlinkIov => "netlink_iov",
            Self::NetlinkRecvArgs => "netlink_recv_args",
            Self::NetlinkAckTruncated => "netlink_ack_truncated",
            Self::NetlinkAckRead => "netlink_ack_read",
            Self::PacketRead => "packet_read",
            Self::Drop => "drop",
            Self::DropRead => "drop_read",
            Self::Tcp => "tcp",
            Self::DropStats => "drop_stats",
            Self::TcpStats => "tcp_stats",
            Self::Sock => "sock",
            Self::NetlinkUnprivileged => "netlink_unprivileged",
        }
    }
}

/// Name of the loss userspace counts itself: ring-buffer records it could
/// not read (shorter than their header or payload struct, unknown kind).
pub const LOST_MALFORMED: &str = "malformed";

/// The fixed header every ring-buffer record starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`].
    pub kind: u32,
    /// CPU the program ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the upper 32 bits. 0 in TC programs.
    pub pid_tgid: u64,
    /// `bpf_get_current_uid_gid()`: gid in the upper 32 bits.
    pub uid_gid: u64,
    /// `bpf_get_current_cgroup_id()` (cgroup v2 id), 0 where meaningless.
    pub cgroup_id: u64,
    /// The network namespace inode the event belongs to (socket's or device's).
    pub netns_ino: u32,
    /// Bytes of payload that follow this header in the record.
    pub payload_len: u32,
    /// `bpf_get_current_comm()`.
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 64);

/// Settings every program reads; set once at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// The tracer's own tgid: its activity is never reported.
    pub self_tgid: u32,
    /// Maximum bytes of packet data to copy (0: headers summary only).
    pub snaplen: u32,
    /// Only netlink sockets of this namespace inode are captured (0: all),
    /// so a selected namespace costs nothing for the others and its lost
    /// counts are its own.
    pub nl_netns: u32,
    /// Non-zero when a packet filter is installed: the TC entry programs
    /// then tail-call it through [`maps::PROGS`] instead of capturing.
    pub pkt_filter: u32,
    /// Non-zero when packet records carry the skb's flow hash
    /// (`PacketMeta::hash`, shown by JSON output and `--hops`); else it is
    /// 0 and the kernel does not compute one for the tracer.
    pub pkt_hash: u32,
    /// An eighth of the ring buffer's size in bytes (a power of two): the
    /// step at which records wake the reader. Known at load time, so the
    /// programs need not ask the ring for its size on every record; 0
    /// when unset (they ask).
    pub ring_eighth: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) plain-old-data with explicit padding.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::offsets::KernelOffsets {}
    unsafe impl aya::Pod for super::netlink::NetlinkSend {}
    unsafe impl aya::Pod for super::netlink::NetlinkAck {}
    unsafe impl aya::Pod for super::netlink::RecvArgs {}
    unsafe impl aya::Pod for super::packet::PacketMeta {}
    unsafe impl aya::Pod for super::top::IfaceKey {}
    unsafe impl aya::Pod for super::top::FlowKey {}
    unsafe impl aya::Pod for super::top::Counters {}
    unsafe impl aya::Pod for super::tp::SkOffsets {}
    unsafe impl aya::Pod for super::tp::ObsConfig {}
    unsafe impl aya::Pod for super::drops::DropMeta {}
    unsafe impl aya::Pod for super::drops::DropKey {}
    unsafe impl aya::Pod for super::tcp::TcpRecord {}
    unsafe impl aya::Pod for super::tcp::TcpCounts {}
    unsafe impl aya::Pod for super::tcp::TcpKey {}
    unsafe impl aya::Pod for super::top::ProcFlowKey {}
    unsafe impl aya::Pod for super::sock::SockEvent {}
    unsafe impl aya::Pod for super::sock::SockOwner {}
    unsafe impl aya::Pod for super::sock::SelPort {}
    unsafe impl aya::Pod for super::sock::ProcConfig {}
}
