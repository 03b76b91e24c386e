//! The start-up every TC job shares, written once: `tracer packets`,
//! `tracer top` and the default job each load their object (and take the
//! maps they read), then hand it to [`TcSession::start`].

use std::{
    os::fd::AsFd,
    sync::{Arc, Mutex, MutexGuard},
};

use aya::{Ebpf, maps::Map, programs::SchedClassifier};
use tracer_common::{maps, slots};

use super::{
    TcError,
    attach::{Attacher, ProgramPair, TcMode},
    cbpf::{self, FilterSet, PacketFilter, sys},
    follow::{FirstPass, Follower, Selection},
    topology::Topology,
};
use crate::{
    bpf::hooks::HookError,
    ns::{self, Scope},
    sys::shutdown::Shutdown,
};

/// A running TC job's attach thread and the names it keeps current.
pub struct TcSession {
    follower: Follower,
    topology: Arc<Mutex<Topology>>,
    /// The filter programs (the program array holds them too; kept so
    /// that they are known to live as long as the job).
    _filters: Option<FilterSet>,
}

impl TcSession {
    /// In this order: both programs of `programs` are loaded; the filter
    /// (libpcap's code, translated, see `tc::cbpf`) and the capture bodies
    /// it continues into go into the object's program array before any
    /// program is attached, so no packet is captured unfiltered (the
    /// object was loaded with `Config::pkt_filter` set when a filter is
    /// given: [`PacketFilter::is_match_all`]); the programs are to attach
    /// with TCX, or netlink-tc before Linux 6.6 ([`TcMode::detect`]); the
    /// attach thread starts, removes what a killed tracer left, and
    /// attaches to every interface `select` covers, naming each in the
    /// [`Topology`]. What the first pass found is for the `ready` line.
    ///
    /// A stop asked for meanwhile ends the start-up early, says so, and
    /// gives `None`: the caller returns, and everything is released on the
    /// way out. `what` is the job's verb ("trace", "count") for the line
    /// said when the selection has no interface yet.
    pub async fn start(
        mut ebpf: Ebpf,
        programs: ProgramPair,
        filter: &PacketFilter,
        select: &Selection,
        what: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<(Self, FirstPass)>, TcError> {
        let attacher = Attacher::new(&mut ebpf, TcMode::detect(), programs)?;
        let filters = install_filter(&mut ebpf, programs, filter)?;
        if shutdown.stopped_during_start_up() {
            return Ok(None);
        }
        let topology = Arc::new(Mutex::new(Topology::new(ns::tracer_netns())));
        let (mut follower, first) = Follower::start(ebpf, attacher, select.clone(), topology.clone(), shutdown.clone()).await?;
        if shutdown.is_set() {
            follower.stop().await;
            shutdown.stopped_during_start_up();
            return Ok(None);
        }
        if first.interfaces == 0 && select.scope != Scope::All {
            eprintln!("tracer: nothing to {what} there yet; waiting for an interface to appear");
        }
        Ok(Some((Self { follower, topology, _filters: filters }, first)))
    }

    /// The names of what is traced, as the attach thread last saw it.
    pub fn topology(&self) -> Result<MutexGuard<'_, Topology>, TcError> {
        self.topology.lock().map_err(|_| TcError::Follower)
    }

    /// Detaches everything and waits until it is done.
    pub async fn stop(&mut self) {
        self.follower.stop().await;
    }
}

/// Loads the capture bodies of `pair` into their slots of `PROGS`, then
/// the four filter programs of `filter` into theirs; nothing without a
/// filter (the entry programs capture themselves).
fn install_filter(ebpf: &mut Ebpf, pair: ProgramPair, filter: &PacketFilter) -> Result<Option<FilterSet>, TcError> {
    if filter.is_match_all() {
        return Ok(None);
    }
    let mut bodies = Vec::with_capacity(2);
    for (name, slot) in [(pair.ingress_body, slots::CAPTURE_INGRESS), (pair.egress_body, slots::CAPTURE_EGRESS)] {
        let prog = ebpf.program_mut(name).ok_or(HookError::NoProgram(name))?;
        let prog: &mut SchedClassifier = prog.try_into().map_err(|source| HookError::Load { program: name, source })?;
        prog.load().map_err(|source| HookError::Load { program: name, source })?;
        let fd = prog.fd().map_err(|source| HookError::Load { program: name, source })?;
        bodies.push((slot, fd.try_clone().map_err(|e| HookError::Load { program: name, source: e.into() })?));
    }
    let Some(Map::ProgramArray(array)) = ebpf.map(maps::PROGS) else { return Err(TcError::NoMap(maps::PROGS)) };
    let array = array.fd().as_fd();
    for (slot, fd) in &bodies {
        sys::prog_array_set(array, *slot, fd.as_fd()).map_err(cbpf::FilterError::from)?;
    }
    Ok(Some(FilterSet::install(filter.expression(), array)?))
}
