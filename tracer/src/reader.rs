//! Reads the ring buffer from tokio without copying records twice, and
//! keeps count of every event lost: failed reserves counted per CPU by the
//! kernel, and records userspace could not parse.

use std::io;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
};
use tokio::io::unix::AsyncFd;
use tracer_common::{LostSource, maps};

use crate::event::RawEvent;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("the eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error("map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("cannot poll the ring buffer: {0}")]
    Io(#[from] io::Error),
}

pub struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: LostCounters,
    /// Records that could not be parsed.
    pub malformed: u64,
}

/// The kernel's per-CPU counts of lost events, by [`LostSource`].
pub struct LostCounters {
    map: PerCpuArray<MapData, u64>,
}

impl LostCounters {
    /// Takes the counters out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, ReaderError> {
        let lost = ebpf.take_map(maps::LOST).ok_or(ReaderError::NoMap(maps::LOST))?;
        let map = PerCpuArray::try_from(lost).map_err(|e| ReaderError::Map(maps::LOST, e))?;
        Ok(Self { map })
    }

    /// Total lost events of one source, summed over CPUs.
    pub fn total(&self, s: LostSource) -> u64 {
        self.map.get(&(s as u32), 0).map(|v| v.iter().copied().sum::<u64>()).unwrap_or(0)
    }
}

impl Reader {
    /// Takes the ring buffer and the lost counters out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, ReaderError> {
        let ring = ebpf.take_map(maps::EVENTS).ok_or(ReaderError::NoMap(maps::EVENTS))?;
        let ring = RingBuf::try_from(ring).map_err(|e| ReaderError::Map(maps::EVENTS, e))?;
        let lost = LostCounters::new(ebpf)?;
        // SAFETY: the ring buffer owns its fd and is moved into the AsyncFd,
        // which deregisters it before dropping it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| ReaderError::Io(e.into()))?;
        Ok(Self { ring, lost, malformed: 0 })
    }

    /// Waits until records are available, then appends all of them to `out`.
    pub async fn read(&mut self, out: &mut Vec<RawEvent>) -> Result<(), ReaderError> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match RawEvent::parse(&item) {
                Ok(ev) => out.push(ev),
                Err(_) => self.malformed += 1,
            }
        }
        guard.clear_ready();
        Ok(())
    }

    /// Drains what is already there without waiting.
    pub fn drain(&mut self, out: &mut Vec<RawEvent>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match RawEvent::parse(&item) {
                Ok(ev) => out.push(ev),
                Err(_) => self.malformed += 1,
            }
        }
    }

    /// Total lost events per source of the ring buffer, summed over CPUs.
    pub fn lost(&self) -> Vec<(LostSource, u64)> {
        // `Stats` counts packets `tracer top` could not count, which never
        // go through the ring buffer.
        LostSource::ALL.iter().filter(|s| **s != LostSource::Stats).map(|&s| (s, self.lost.total(s))).collect()
    }
}

/// Turns running totals into deltas, so each loss is reported once.
#[derive(Default, Debug)]
pub struct LostTracker {
    seen: std::collections::HashMap<&'static str, u64>,
}

impl LostTracker {
    /// New losses since the last call, as (source, count) with count > 0.
    pub fn update(&mut self, totals: impl IntoIterator<Item = (&'static str, u64)>) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for (src, total) in totals {
            let prev = self.seen.entry(src).or_insert(0);
            if total > *prev {
                out.push((src, total - *prev));
                *prev = total;
            }
        }
        out
    }

    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self.seen.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_deltas() {
        let mut t = LostTracker::default();
        assert_eq!(t.update([("netlink", 0), ("packet", 3)]), vec![("packet", 3)]);
        assert_eq!(t.update([("netlink", 2), ("packet", 3)]), vec![("netlink", 2)]);
        assert_eq!(t.update([("netlink", 2), ("packet", 3)]), vec![]);
        assert_eq!(t.totals(), vec![("netlink", 2), ("packet", 3)]);
    }
}
