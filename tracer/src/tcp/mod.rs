//! `tracer tcp`: TCP connection health per namespace and container: state
//! changes with the time spent in each state, retransmissions, resets sent
//! and received, sampled smoothed-RTT readings, and a summary per
//! connection at its close.
//!
//! Layers, data flowing one way: the TCP tracepoint programs (tracer-ebpf
//! tcp.rs; selection applied and RTT readings sampled in the kernel) ->
//! the ring buffer -> [`event`] (decode, name; the packet filter, libpcap's,
//! on the connection as one segment: [`TcpEvent::segment`]) -> [`tracker`]
//! (per-connection history) -> output. Its job
//! ([`TcpJob`]) is validated here, run by the application.

pub mod event;
pub mod tracker;

use std::time::Duration;

use crate::tc::{cbpf::PacketFilter, follow::Selection};

/// The most `--rtt-interval` may be, in seconds.
pub const MAX_RTT_INTERVAL: f64 = 3600.0;

/// The validated form of `tracer tcp`.
#[derive(Clone, Debug)]
pub struct TcpJob {
    /// Namespaces (interfaces play no part: TCP events are sockets').
    pub select: Selection,
    /// Least time between two RTT readings of one connection (in the kernel).
    pub rtt_interval: Duration,
    /// On the connection's addresses and ports, the socket's own as source
    /// (applied in userspace, see [`event::TcpEvent::segment`]).
    pub filter: PacketFilter,
}
