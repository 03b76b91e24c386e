//! `tracer drops`: every packet the kernel drops, with its reason (the
//! running kernel's `enum skb_drop_reason`, read from BTF), the function
//! that dropped it (symbolised through /proc/kallsyms), its namespace,
//! container and interface, and its headers decoded as `tracer packets`
//! decodes them; as text, JSON lines or pcapng.
//!
//! Layers, data flowing one way: the `skb:kfree_skb` program (tracer-ebpf
//! drops.rs; selection, reasons and the packet filter applied in the
//! kernel) -> the ring buffer -> [`event`] (decode, name, symbolise with
//! [`kallsyms`]) -> output.

pub mod event;
pub mod kallsyms;
