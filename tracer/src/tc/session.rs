//! The start-up every TC job shares, written once: `tracer packets`,
//! `tracer top` and the default job each load their object (and take the
//! maps they read), then hand it to [`TcSession::start`].

use std::sync::{Arc, Mutex, MutexGuard};

use aya::Ebpf;

use super::{
    TcError,
    attach::{Attacher, ProgramPair, TcMode},
    filter::{self, FilterProgram},
    follow::{FirstPass, Follower, Selection},
    topology::Topology,
};
use crate::{
    ns::{self, Scope},
    sys::shutdown::Shutdown,
};

/// A running TC job's attach thread and the names it keeps current.
pub struct TcSession {
    follower: Follower,
    topology: Arc<Mutex<Topology>>,
}

impl TcSession {
    /// In this order: the filter goes into the kernel before any program
    /// is attached (a table replaced while packets flow may be read
    /// half-written); both programs of `programs` are loaded, to attach
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
        filter: &FilterProgram,
        select: &Selection,
        what: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<(Self, FirstPass)>, TcError> {
        filter::install(&mut ebpf, filter)?;
        let attacher = Attacher::new(&mut ebpf, TcMode::detect(), programs)?;
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
        Ok(Some((Self { follower, topology }, first)))
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
