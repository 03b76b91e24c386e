//! What a socket event cannot carry: the container a process is in and its
//! command line. Found on a thread of its own (`tracer-procs`), since the
//! namespace registry rescans /proc and asks container runtimes (up to
//! 0.5 s); fed through a queue of [`QUEUE`] processes. A process the busy
//! thread cannot take is counted and shown without them (its comm and pid
//! are in the event). Containers are found by the cgroup v2 id the kernel
//! saw the process in, which holds after it exited; command lines only
//! while it runs, checked against its start time.

use std::sync::{
    Arc,
    mpsc::{self, Receiver, SyncSender, TrySendError},
};

use super::{fdmap, table::Process};
use crate::ns::Registry;

/// Processes waiting for the thread, at most.
pub const QUEUE: usize = 256;

/// The thread and its queues.
pub struct Enricher {
    tx: Option<SyncSender<Process>>,
    rx: Option<Receiver<Process>>,
    started: bool,
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new()
    }
}

impl Enricher {
    pub fn new() -> Self {
        Self { tx: None, rx: None, started: false }
    }

    fn start(&mut self) {
        self.started = true;
        let (tx, req_rx) = mpsc::sync_channel::<Process>(QUEUE);
        // Never longer than the requests handed over: one answer each.
        let (ans_tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("tracer-procs".into()).spawn(move || {
            let mut reg = Registry::new();
            reg.refresh();
            while let Ok(mut p) = req_rx.recv() {
                let (_, container) = reg.enrich(p.netns_ino, p.pid, p.cgroup_id);
                p.container = container;
                p.cmdline = fdmap::cmdline(p.pid, p.start_ticks);
                if ans_tx.send(p).is_err() {
                    break;
                }
            }
        });
        if spawned.is_ok() {
            self.tx = Some(tx);
            self.rx = Some(rx);
        }
    }

    /// Starts the thread and has it read the namespaces and containers of
    /// the machine once, before any process is asked about.
    pub fn warm_up(&mut self) {
        if !self.started {
            self.start();
        }
    }

    /// Asks for `p`'s container and command line, without waiting;
    /// `false` when the thread cannot take it (queue full, or gone).
    pub fn submit(&mut self, p: &Arc<Process>) -> bool {
        if !self.started {
            self.start();
        }
        let Some(tx) = &self.tx else { return false };
        match tx.try_send((**p).clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                self.tx = None;
                false
            }
        }
    }

    /// The answers that came in since the last call.
    pub fn answers(&mut self) -> Vec<Process> {
        self.rx.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default()
    }
}
