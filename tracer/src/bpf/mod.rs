//! The eBPF object and what comes out of it: loading it with the kernel's
//! offsets ([`load`], [`btf`]), the table of hooks and the generic code that
//! attaches them ([`hooks`]), the ring buffer reader ([`ring`]), the raw
//! records it yields ([`event`]) and the count of what was lost ([`lost`]).

pub mod btf;
pub mod event;
pub mod hooks;
pub mod load;
pub mod lost;
pub mod ring;
