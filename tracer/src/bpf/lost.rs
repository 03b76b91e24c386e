//! Lost events: the kernel's per-CPU counts of what the programs could not
//! report ([`LostCounters`]), and running totals turned into what is new
//! since the last report and into the summary printed at exit
//! ([`LostTracker`]).

use std::os::fd::AsFd as _;

use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
};
use tracer_common::{LostSource, maps};

use super::MapError;

/// The kernel's per-CPU counts of lost events, by [`LostSource`].
pub struct LostCounters {
    map: PerCpuArray<MapData, u64>,
}

impl LostCounters {
    /// Opens the counters of `ebpf` on a file descriptor of their own,
    /// leaving the map in the object: a job that runs the ring-buffer
    /// reader and `top`'s counters together (`serve`) has two readers of
    /// the one map.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, MapError> {
        // The object is the tracer's own: LOST is a per-CPU array in it.
        let Some(Map::PerCpuArray(data)) = ebpf.map(maps::LOST) else {
            return Err(MapError::Missing(maps::LOST));
        };
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(|e| MapError::Kind(maps::LOST, aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "dup", io_error: e })))?;
        let data = MapData::from_fd(fd).map_err(|e| MapError::Kind(maps::LOST, e))?;
        let map = PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| MapError::Kind(maps::LOST, e))?;
        Ok(Self { map })
    }

    /// Total lost events of one source, summed over CPUs.
    pub fn total(&self, s: LostSource) -> u64 {
        self.map.get(&(s as u32), 0).map(|v| v.iter().copied().sum::<u64>()).unwrap_or(0)
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

    /// Every source seen, with its total, zeros included.
    pub fn every_source(&self) -> String {
        self.totals().iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(" ")
    }

    /// The summary printed at exit: `source=N` for every source that lost
    /// something, or `none`.
    pub fn summary(&self) -> String {
        let v: Vec<String> = self.totals().into_iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{s}={n}")).collect();
        if v.is_empty() { "none".to_string() } else { v.join(" ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_loss_source_has_its_own_name() {
        let names: std::collections::HashSet<_> = LostSource::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), LostSource::COUNT as usize);
        assert!(!names.contains(tracer_common::LOST_MALFORMED));
        for (i, s) in LostSource::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{} indexes LOST by its place in ALL", s.name());
        }
        for n in ["netlink", "packet", "netlink_ack", "stats", "netlink_read", "netlink_iov", "netlink_recv_args", "netlink_ack_truncated", "netlink_ack_read", "packet_read"] {
            assert!(names.contains(n), "{n}");
        }
    }

    #[test]
    fn new_sources_are_tracked_and_summarised_like_the_old_ones() {
        let mut t = LostTracker::default();
        assert_eq!(t.summary(), "none");
        let zero = [("netlink", 0), ("netlink_iov", 0), ("netlink_read", 0), ("netlink_recv_args", 0), ("malformed", 0)];
        assert_eq!(t.update(zero), vec![]);
        assert_eq!(t.summary(), "none");
        assert_eq!(t.update([("netlink", 0), ("netlink_iov", 2), ("netlink_read", 1), ("netlink_recv_args", 0), ("malformed", 0)]), vec![
            ("netlink_iov", 2),
            ("netlink_read", 1)
        ]);
        assert_eq!(t.update([("netlink", 0), ("netlink_iov", 5), ("netlink_read", 1), ("netlink_recv_args", 0), ("malformed", 4)]), vec![
            ("netlink_iov", 3),
            ("malformed", 4)
        ]);
        assert_eq!(t.summary(), "malformed=4 netlink_iov=5 netlink_read=1");
        assert_eq!(t.totals().iter().find(|(s, _)| *s == "netlink_recv_args"), Some(&("netlink_recv_args", 0)));
    }

    #[test]
    fn lost_deltas() {
        let mut t = LostTracker::default();
        assert_eq!(t.update([("netlink", 0), ("packet", 3)]), vec![("packet", 3)]);
        assert_eq!(t.update([("netlink", 2), ("packet", 3)]), vec![("netlink", 2)]);
        assert_eq!(t.update([("netlink", 2), ("packet", 3)]), vec![]);
        assert_eq!(t.totals(), vec![("netlink", 2), ("packet", 3)]);
    }
}
