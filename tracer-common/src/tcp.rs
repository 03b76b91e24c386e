//! Records and counters of `tracer tcp`: one [`TcpRecord`] per state
//! change, retransmission, reset, sampled RTT reading and destroyed socket,
//! each with the connection's addresses read from its socket; for `tracer
//! top` and `tracer serve`, counts per namespace and interface ([`TcpKey`])
//! and per flow ([`TcpCounts`]).

/// Address families, as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// `TcpRecord::flags`
pub mod flags {
    /// `srtt_us` was read.
    pub const SRTT: u32 = 1;
    /// `bytes_acked`, `bytes_received` and `total_retrans` were read.
    pub const BYTES: u32 = 2;
    /// There was no socket (a reset sent for a segment no socket took):
    /// the addresses are the reset's, from the segment it answers.
    pub const NO_SOCK: u32 = 4;
    /// `seq` was read.
    pub const SEQ: u32 = 8;
    /// `segs` was read.
    pub const SEGS: u32 = 16;
}

/// Payload of every `EventKind::Tcp*` record. Addresses are those of the
/// socket (`saddr`/`sport` local), IPv4 in the first four bytes; ports in
/// host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRecord {
    /// The socket's kernel address: a connection's identity while it lives.
    pub skaddr: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    /// State changes: the state before; else 0.
    pub old_state: u8,
    /// State changes: the new state; else the socket's state at the event.
    pub new_state: u8,
    /// Retransmissions: the first sequence number of the segment.
    pub seq: u32,
    /// Smoothed RTT in microseconds.
    pub srtt_us: u32,
    /// RTT samples: the congestion window, in segments.
    pub snd_cwnd: u32,
    /// Resets sent: an `enum sk_rst_reason` value (Linux >= 6.10), else `u32::MAX`.
    pub reason: u32,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub total_retrans: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Retransmissions: how many segments the retransmitted skb carries
    /// (`tcp_skb_pcount`, more than 1 with TSO), what the kernel's
    /// `TcpRetransSegs` counter adds.
    pub segs: u32,
    /// Retransmissions: 0, or the negative errno of an attempt that failed
    /// (kernels whose tracepoint reports failures).
    pub err: i32,
}
const _: () = assert!(core::mem::size_of::<TcpRecord>() == 96);

/// `tracer top`: what the TCP tracepoints counted for a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounts {
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
}
const _: () = assert!(core::mem::size_of::<TcpCounts>() == 24);

/// `tracer top`: where TCP events are counted: the socket's namespace and
/// the interface its route goes out of (`sk->sk_dst_cache->dev`; for a
/// reset with no socket, the device the answered segment came in on), 0
/// when there is none (a listener, a socket without a cached route).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpKey {
    pub netns_ino: u32,
    pub ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<TcpKey>() == 8);

/// Entries of [`crate::maps::TCP_COUNTS`] (keyed by [`TcpKey`]).
pub const TCP_COUNTS_MAX: u32 = 4096;
/// Entries of [`crate::maps::TCP_FLOWS`] (LRU, keyed by
/// [`crate::top::FlowKey`] with the [`TcpKey`]'s interface and the
/// direction egress: the socket's own addresses as source, as the flow's
/// packets leave it).
pub const TCP_FLOWS_MAX: u32 = 8192;
/// Connections whose last RTT reading time `tcp_probe` remembers (LRU).
pub const TCP_RTT_SEEN_MAX: u32 = 16384;
