//! `tracer tcp`: TCP connection health per namespace and container: state
//! changes with the time spent in each state, retransmissions, resets sent
//! and received, sampled smoothed-RTT readings, and a summary per
//! connection at its close.
//!
//! Layers, data flowing one way: the TCP tracepoint programs (tracer-ebpf
//! tcp.rs; selection and the packet filter applied in the kernel, RTT
//! readings sampled there) -> the ring buffer -> [`event`] (decode, name)
//! -> [`tracker`] (per-connection history) -> output.

pub mod event;
pub mod tracker;
