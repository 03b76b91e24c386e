//! The eBPF object and what comes out of it: loading it with the kernel's
//! offsets ([`load`], [`btf`]), the table of hooks and the generic code that
//! attaches them ([`hooks`]), the ring buffer reader ([`ring`]), the raw
//! records it yields ([`event`]) and the count of what was lost ([`lost`]);
//! what the BTF tracepoints of the drop and TCP programs carry here ([`tp`]);
//! and what they share: taking a map out of the object, and saying why the
//! kernel refused a program ([`describe`]).

pub mod btf;
pub mod event;
pub mod hooks;
pub mod load;
pub mod lost;
pub mod ring;
pub mod tp;

use aya::{Ebpf, maps::Map, programs::ProgramError};

/// A map the tracer reads, missing from the object or not of its kind.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("the eBPF object has no map {0}")]
    Missing(&'static str),
    #[error("map {0}: {1}")]
    Kind(&'static str, aya::maps::MapError),
}

/// Takes map `name` out of the object: whoever reads it owns it.
pub fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, MapError> {
    ebpf.take_map(name).ok_or(MapError::Missing(name))
}

/// A program error as one line: the error and each of its causes. The
/// verifier log is empty when the kernel refuses outright; the errno is
/// what tells a person why.
pub fn describe(e: &ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    // A verifier log would make it many lines: its first says enough here.
    s.lines().next().unwrap_or_default().to_string()
}
