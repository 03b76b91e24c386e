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

pub mod counters;
pub mod render;
pub mod stats;

use std::{collections::HashMap, time::{Duration, Instant}};

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
    /// Takes the counter maps and the loss counters out of `ebpf`.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, TopError> {
        Ok(Self {
            flows: CounterMap::take(ebpf, maps::TOP_FLOWS)?,
            ifaces: CounterMap::take(ebpf, maps::TOP_IFACES)?,
            flow_deltas: Deltas::default(),
            iface_deltas: Deltas::default(),
            unattributed: Unattributed::default(),
            lost_kernel: LostCounters::new(ebpf)?,
            last_read: Instant::now(),
        })
    }

    /// Reads the counters. `last`: the programs are detached, so this read
    /// is final. Entries of the `released` interfaces that are not
    /// `attached` again are deleted after the read: all they counted is in it.
    pub fn read(&mut self, released: Vec<(u64, u32)>, attached: impl Fn(&(u64, u32)) -> bool, last: bool) -> Result<Interval, TopError> {
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
