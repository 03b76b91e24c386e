//! Packet tracing: TC programs on the traced interfaces, and the filter
//! that runs in the kernel before a packet is copied out.

pub mod filter;
