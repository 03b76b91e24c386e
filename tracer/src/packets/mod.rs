//! Packet tracing: what the TC programs of `tracer packets` (and the
//! default job) copy to the ring buffer, decoded ([`decode`]) into events
//! labelled with their namespace, container and interface ([`event`]), and
//! written as text or JSON lines, pcapng ([`pcapng`], to what [`capfile`]
//! opened) or per-packet paths across interfaces ([`hops`]). Which
//! interfaces are traced, and how, is the TC layer's ([`crate::tc`]); the
//! decoder, pcapng and the capture file are [`crate::frames`]', which
//! `tracer drops` shares.

pub mod event;
pub mod hops;
pub mod readback;

/// Decoding, pcapng, rotation and the capture file are shared with `tracer drops`.
pub use crate::frames::{capfile, decode, pcapng, rotate};

use std::{path::PathBuf, time::Duration};

pub use event::PacketEvent;

use crate::{
    procs::ProcSelect,
    tc::{cbpf::PacketFilter, follow::Selection},
};

/// Bytes captured per packet when printing: enough for Ethernet, a VLAN
/// tag, IPv6 and a TCP header with options.
pub const DEFAULT_SNAPLEN: u32 = 128;

/// How often the ring buffer is drained without being woken: packet
/// records do not wake the reader (see tracer-ebpf's packet.rs).
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum PacketsError {
    #[error(transparent)]
    Pcapng(#[from] pcapng::PcapngError),
    #[error(transparent)]
    Capture(#[from] capfile::CaptureError),
    #[error(transparent)]
    Read(#[from] readback::ReadError),
}

/// The validated form of `tracer packets`.
#[derive(Clone, Debug)]
pub struct PacketsJob {
    /// Namespaces and interfaces.
    pub select: Selection,
    pub snaplen: u32,
    pub write: Option<PathBuf>,
    pub hops: bool,
    /// `-C`/`-G`/`-W` for `write`.
    pub rotation: rotate::Rotation,
    /// `-r FILE`: read this capture instead of capturing.
    pub read: Option<PathBuf>,
    /// Runs in the kernel; matches everything when no expression was given.
    pub filter: PacketFilter,
    /// Process attribution (`None`: `--no-process`), with its selection.
    pub procs: Option<ProcSelect>,
}

impl Default for PacketsJob {
    /// What the default job traces: everything.
    fn default() -> Self {
        Self {
            select: Selection::default(),
            snaplen: DEFAULT_SNAPLEN,
            write: None,
            hops: false,
            read: None,
            rotation: rotate::Rotation::default(),
            filter: PacketFilter::match_all(),
            procs: Some(ProcSelect::default()),
        }
    }
}

impl PacketsJob {
    /// Whether the headers are decoded: pcapng needs only the bytes, but
    /// process attribution matches sockets by address and port.
    pub fn decodes(&self) -> bool {
        self.write.is_none() || self.hops || self.procs.is_some()
    }

    /// Whether the output shows the skb's flow hash (`hash` of JSON packet
    /// lines and `--hops` paths, and `--hops`' count of paths whose hash
    /// stayed the same): only then do the kernel programs ask for it,
    /// which for a packet without one runs the kernel's flow dissector.
    pub fn shows_hash(&self, json: bool) -> bool {
        self.hops || (json && self.write.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::PacketsJob;

    #[test]
    fn the_kernel_computes_the_flow_hash_only_for_outputs_that_show_it() {
        let job = |write: bool, hops: bool| PacketsJob { write: write.then(|| "f.pcapng".into()), hops, ..PacketsJob::default() };
        assert!(job(false, false).shows_hash(true), "JSON lines carry `hash`");
        assert!(!job(false, false).shows_hash(false), "text lines do not");
        assert!(!job(true, false).shows_hash(true), "pcapng has no field for it");
        assert!(job(true, true).shows_hash(false), "--hops reports whether it stayed the same");
    }
}
