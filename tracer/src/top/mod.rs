//! `tracer top`: where the traffic goes, per container, interface or flow,
//! counted in the kernel.
//!
//! Data flowing one way: the TC layer attaches the `top_*` programs
//! ([`crate::tc`]) -> the kernel counts per interface and per flow in
//! per-CPU maps -> [`counters`] reads them every interval ([`Meter`]) ->
//! [`stats`] turns running totals into deltas, rates and rows ->
//! [`render`] prints them. Nothing goes through the ring buffer, so nothing
//! is lost there; what can be lost (an interface counter that could not be
//! created, packets of a flow evicted before it was read) is counted and
//! reported.
//!
//! By interface or container without a filter nothing is attached at all:
//! [`ifstats`] reads each interface's own kernel counters instead.

pub mod counters;
pub mod ifstats;
pub mod render;
pub mod stats;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::Ebpf;
use tracer_common::{
    LostSource, maps,
    packet::{DIR_EGRESS, DIR_INGRESS},
    top::{FlowKey, IfaceKey},
};

use crate::{
    bpf::{MapError, lost::LostCounters},
    tc::{filter::FilterProgram, follow::Selection},
};
use counters::{CounterMap, CountersError};
use ifstats::IfaceStats;
pub use stats::By;
use stats::{Count, Deltas, Unattributed};

/// The shortest `--interval`: reading the maps more often costs more than
/// it shows.
pub const MIN_INTERVAL: f64 = 0.05;

/// The validated form of `tracer top`.
#[derive(Clone, Debug)]
pub struct TopJob {
    pub select: Selection,
    pub filter: FilterProgram,
    pub interval: Duration,
    pub by: By,
    pub limit: Option<usize>,
}

impl TopJob {
    /// Whether the interfaces' own counters answer this job: rows by
    /// interface or container, every packet counted. Flows and filters
    /// need the programs.
    pub fn interface_counters(&self) -> bool {
        self.by != By::Flow && self.filter.is_match_all()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Counters(#[from] CountersError),
    #[error(transparent)]
    Lost(#[from] MapError),
}

/// The counter maps, read every interval: what changed since the read
/// before, and what could not be counted.
pub struct Meter {
    flows: CounterMap<FlowKey>,
    ifaces: CounterMap<IfaceKey>,
    flow_deltas: Deltas<FlowKey>,
    iface_deltas: Deltas<IfaceKey>,
    unattributed: Unattributed,
    lost_kernel: LostCounters,
    last_read: Instant,
    /// Set when the interfaces' own counters are read instead of the maps.
    kernel: Option<IfaceStats>,
}

/// What a read covers: the (namespace, ifindex) followed now, and how to
/// enter each namespace (both from the TC session's topology).
pub struct Covered {
    pub attached: HashSet<(u64, u32)>,
    pub entry: BTreeMap<u64, (PathBuf, Option<u64>)>,
}

/// One read of both maps.
pub struct Interval {
    /// Seconds since the read before (measured).
    pub secs: f64,
    pub ifaces: HashMap<IfaceKey, Count>,
    pub flows: HashMap<FlowKey, Count>,
}

impl Interval {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.ifaces.values().all(Count::is_zero) && self.flows.values().all(Count::is_zero)
    }
}

impl Meter {
    /// Takes the counter maps and the loss counters out of `ebpf`;
    /// `interface_counters`: read the interfaces' own counters instead of
    /// the maps (see [`TopJob::interface_counters`]).
    pub fn take(ebpf: &mut Ebpf, interface_counters: bool) -> Result<Self, TopError> {
        Ok(Self {
            flows: CounterMap::take(ebpf, maps::TOP_FLOWS)?,
            ifaces: CounterMap::take(ebpf, maps::TOP_IFACES)?,
            flow_deltas: Deltas::default(),
            iface_deltas: Deltas::default(),
            unattributed: Unattributed::default(),
            lost_kernel: LostCounters::new(ebpf)?,
            last_read: Instant::now(),
            kernel: interface_counters.then(IfaceStats::default),
        })
    }

    /// Reads the counters. `last`: the programs are detached, so this read
    /// is final. Entries of the `released` interfaces that are not
    /// `attached` again are deleted after the read: all they counted is in it.
    pub fn read(&mut self, released: Vec<(u64, u32)>, covered: &Covered, last: bool) -> Result<Interval, TopError> {
        if let Some(kernel) = &mut self.kernel {
            // The kernel's running totals: nothing to delete, nothing in
            // flight between two maps, so nothing unattributed.
            let ifaces_now = kernel.read(&covered.entry, &covered.attached);
            let now = Instant::now();
            let secs = now.duration_since(self.last_read).as_secs_f64();
            self.last_read = now;
            let ifaces = self.iface_deltas.update(ifaces_now);
            return Ok(Interval { secs, ifaces, flows: HashMap::new() });
        }
        let attached = |k: &(u64, u32)| covered.attached.contains(k);
        // Flows before interfaces, the reverse of the kernel's order (see
        // stats::Unattributed).
        let flows_now = self.flows.read()?;
        let ifaces_now = self.ifaces.read()?;
        let now = Instant::now();
        let secs = now.duration_since(self.last_read).as_secs_f64();
        self.last_read = now;
        let flows = self.flow_deltas.update(flows_now);
        let ifaces = self.iface_deltas.update(ifaces_now);
        self.unattributed.update(&ifaces, &flows, last);
        for (ns, ifindex) in released.into_iter().filter(|k| !attached(k)) {
            let netns_ino = ns as u32;
            for direction in [DIR_INGRESS, DIR_EGRESS] {
                let k = IfaceKey { netns_ino, ifindex, direction, _pad: [0; 7] };
                self.ifaces.delete(&k)?;
                self.iface_deltas.forget(&k);
            }
            for k in flows.keys().filter(|k| k.netns_ino == netns_ino && k.ifindex == ifindex) {
                self.flows.delete(k)?;
                self.flow_deltas.forget(k);
            }
        }
        Ok(Interval { secs, ifaces, flows })
    }

    /// Totals lost so far, by source: packets counted on their interface
    /// but in no flow (`flow`), and packets no interface counter could take
    /// (`stats`).
    pub fn lost(&self) -> Vec<(&'static str, u64)> {
        vec![("flow", self.unattributed.total), (LostSource::Stats.name(), self.lost_kernel.total(LostSource::Stats))]
    }
}
