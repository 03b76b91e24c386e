//! `tracer top`: where the traffic goes, per container, interface or flow,
//! counted in the kernel.
//!
//! Data flowing one way: the TC layer attaches the `top_*` programs
//! ([`crate::tc`]) -> the kernel counts per interface and per flow in
//! per-CPU maps -> [`counters`] reads them every interval ([`Meter`]) ->
//! [`stats`] turns running totals into deltas, rates and rows ->
//! [`render`] prints them. Nothing goes through the ring buffer, so nothing
//! is lost there (but with `--by process`, [`procs`], the socket programs
//! report owners through it); what can be lost (an interface counter that could not be
//! created, packets of a flow evicted before it was read) is counted and
//! reported.
//!
//! By interface or container without a filter nothing is attached at all:
//! [`ifstats`] reads each interface's own kernel counters instead.

pub mod counters;
pub mod health;
pub mod ifstats;
pub mod procs;
pub mod reasons;
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
    top::{FlowKey, IfaceKey, ProcFlowKey},
};

use crate::{
    bpf::{MapError, lost::LostCounters, ring::ReaderError},
    procs::attach::AttachError,
    tc::{cbpf::PacketFilter, follow::Selection, topology::Topology},
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
    pub filter: PacketFilter,
    pub interval: Duration,
    pub by: By,
    pub limit: Option<usize>,
}

impl TopJob {
    /// Whether the interfaces' own counters answer this job: rows by
    /// interface or container, every packet counted. Flows, filters
    /// and processes need the programs.
    pub fn interface_counters(&self) -> bool {
        matches!(self.by, By::Iface | By::Container) && self.filter.is_match_all()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Counters(#[from] CountersError),
    #[error(transparent)]
    Lost(#[from] MapError),
    #[error(transparent)]
    Ring(#[from] ReaderError),
    #[error("top --by process needs process attribution: {0} (see `tracer doctor`)")]
    Procs(AttachError),
}

/// The counter maps, read every interval: what changed since the read
/// before, and what could not be counted.
pub struct Meter {
    flows: CounterMap<FlowKey>,
    ifaces: CounterMap<IfaceKey>,
    flow_deltas: Deltas<FlowKey>,
    iface_deltas: Deltas<IfaceKey>,
    unattributed: Unattributed,
    /// The kernel's loss counters; with `--by process` the ring buffer's
    /// reader holds them instead.
    lost_kernel: Option<LostCounters>,
    last_read: Instant,
    /// `--by process`: the per-socket counters and the attribution.
    procs: Option<procs::ProcTop>,
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
    /// `--by process`: the flows per sending socket.
    pub proc_flows: Option<HashMap<ProcFlowKey, Count>>,
}

impl Interval {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.ifaces.values().all(Count::is_zero) && self.flows.values().all(Count::is_zero)
    }
}

impl Meter {
    /// Takes the counter maps and the loss counters out of `ebpf`; with
    /// `by_process`, also the ring buffer, and attaches the socket
    /// programs (before the TC programs, so no socket is missed);
    /// `interface_counters`: read the interfaces' own counters instead of
    /// the maps (see [`TopJob::interface_counters`]).
    pub fn take(ebpf: &mut Ebpf, by_process: bool, interface_counters: bool) -> Result<Self, TopError> {
        let procs = if by_process { Some(procs::ProcTop::start(ebpf)?) } else { None };
        let lost_kernel = if by_process { None } else { Some(LostCounters::new(ebpf)?) };
        Ok(Self {
            flows: CounterMap::take(ebpf, maps::TOP_FLOWS)?,
            ifaces: CounterMap::take(ebpf, maps::TOP_IFACES)?,
            flow_deltas: Deltas::default(),
            iface_deltas: Deltas::default(),
            unattributed: Unattributed::default(),
            lost_kernel,
            last_read: Instant::now(),
            procs,
            kernel: interface_counters.then(IfaceStats::default),
        })
    }

    /// Counting starts now (the programs are attached): the first
    /// interval is measured from here, not from loading.
    pub fn start_interval(&mut self) {
        self.last_read = Instant::now();
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
            return Ok(Interval { secs, ifaces, flows: HashMap::new(), proc_flows: None });
        }
        let attached = |k: &(u64, u32)| covered.attached.contains(k);
        // Flows before interfaces, the reverse of the kernel's order (see
        // stats::Unattributed).
        let (flows_now, proc_flows) = match &mut self.procs {
            None => (Some(self.flows.read()?), None),
            Some(p) => (None, Some(p.update()?)),
        };
        let ifaces_now = self.ifaces.read()?;
        let now = Instant::now();
        let secs = now.duration_since(self.last_read).as_secs_f64();
        self.last_read = now;
        let flows = match (flows_now, &proc_flows) {
            (Some(f), _) => self.flow_deltas.update(f),
            (None, Some(pf)) => procs::collapse(pf),
            (None, None) => HashMap::new(),
        };
        let ifaces = self.iface_deltas.update(ifaces_now);
        self.unattributed.update(&ifaces, &flows, last);
        for (ns, ifindex) in released.into_iter().filter(|k| !attached(k)) {
            let netns_ino = ns as u32;
            for direction in [DIR_INGRESS, DIR_EGRESS] {
                let k = IfaceKey { netns_ino, ifindex, direction, _pad: [0; 7] };
                self.ifaces.delete(&k)?;
                self.iface_deltas.forget(&k);
            }
            match (&mut self.procs, &proc_flows) {
                (Some(p), Some(pf)) => p.forget_iface(netns_ino, ifindex, pf)?,
                _ => {
                    for k in flows.keys().filter(|k| k.netns_ino == netns_ino && k.ifindex == ifindex) {
                        self.flows.delete(k)?;
                        self.flow_deltas.forget(k);
                    }
                }
            }
        }
        Ok(Interval { secs, ifaces, flows, proc_flows })
    }

    /// `--by process`: takes in the socket events waiting in the ring
    /// buffer (they do not wake it). Without it, nothing to do.
    pub fn drain(&mut self, topo: &Topology) {
        if let Some(p) = &mut self.procs {
            p.drain(topo);
        }
    }

    /// Whether this meter counts per process.
    pub fn by_process(&self) -> bool {
        self.procs.is_some()
    }

    /// `--by process`: the rows of an interval, one per process (the owners
    /// of every socket that counted taken in first). `None` otherwise.
    pub fn process_rows(&mut self, iv: &Interval, topo: &Topology) -> Option<Vec<stats::Row>> {
        let (p, pf) = (self.procs.as_mut()?, iv.proc_flows.as_ref()?);
        p.drain(topo);
        Some(procs::rows(pf, &mut p.attribution, topo))
    }

    /// `--by process`: the attribution's line for stderr at exit.
    pub fn procs_summary(&self) -> Option<String> {
        self.procs.as_ref().map(|p| p.attribution.summary())
    }

    /// What the kernel's loss counters hold for `source` so far.
    pub fn lost_in_kernel(&self, source: LostSource) -> u64 {
        let kernel = self.lost_kernel.as_ref().or(self.procs.as_ref().map(|p| p.reader.lost_counters()));
        kernel.map_or(0, |k| k.total(source))
    }

    /// Totals lost so far, by source: packets counted on their interface
    /// but in no flow (`flow`), and packets no interface counter could take
    /// (`stats`).
    pub fn lost(&self) -> Vec<(&'static str, u64)> {
        let kernel = self.lost_kernel.as_ref().or(self.procs.as_ref().map(|p| p.reader.lost_counters()));
        let total = |s: LostSource| kernel.map_or(0, |k| k.total(s));
        let mut v = vec![("flow", self.unattributed.total), (LostSource::Stats.name(), total(LostSource::Stats))];
        if self.procs.is_some() {
            v.push((LostSource::Sock.name(), total(LostSource::Sock)));
        }
        v
    }
}
