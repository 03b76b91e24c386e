//! Which interfaces a TC job covers ([`Selection`]), and the thread that
//! keeps them attached: it rescans namespaces and interfaces when the
//! interface watcher reports a link or namespace change or the mount table
//! changes ([`crate::ns::trigger`]), and every [`SAFETY_RESCAN`] in case a
//! change went unseen; attaches what appeared, releases what went away,
//! and keeps the [`Topology`] (names, containers) the reading side labels
//! its output with up to date. Every TC job runs on it, each with its own
//! pair of programs, started by [`super::session::TcSession::start`].
//! Looking only when told keeps an idle tracer idle: rescanning 200
//! namespaces every 500 ms cost 5-7% of a CPU.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    TcError,
    attach::{Attacher, TcMode},
    stale,
    topology::Topology,
};
use crate::{
    ns::{
        Iface, Netns, Registry, Scope,
        trigger::{Bell, Triggers, Woke},
        watch::{self, Watcher},
    },
    sys::shutdown::Shutdown,
};

/// Interface kinds traced by default: what container networking is made
/// of. Physical NICs (no kind), loopback, and `ifb`/`vrf` (which only
/// repeat packets other interfaces carry) need `--iface`.
pub const DEFAULT_KINDS: &[&str] = &[
    "veth", "bridge", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan", "geneve", "vlan", "bond", "team", "tun",
    "wireguard", "netkit", "gre", "gretap", "ip6gre", "ip6gretap", "ipip", "sit", "ip6tnl", "erspan", "bareudp", "dummy",
];

/// How often namespaces and interfaces are looked for with nothing
/// reported: the safety net for a change no notification told of (a
/// namespace with no id and no name whose links change, a lost watcher).
pub const SAFETY_RESCAN: Duration = Duration::from_secs(10);
/// The same while an interface watcher reports changes: then it only
/// catches what no notification told of, and a rescan of 200 namespaces
/// (~50 ms of CPU) every 10 s was most of an idle tracer's cost there.
pub const WATCHED_RESCAN: Duration = Duration::from_secs(30);
/// How long a reported change waits for those that come with it (a veth
/// pair is a handful of notifications, a new namespace a mount and links)
/// so that a burst costs one rescan.
const SETTLE: Duration = Duration::from_millis(15);

/// The namespaces and interfaces a job covers.
#[derive(Clone, Debug)]
pub struct Selection {
    pub scope: Scope,
    /// `--iface`: name globs; `None` means the [`DEFAULT_KINDS`].
    pub iface_globs: Option<Vec<String>>,
}

impl Default for Selection {
    /// Every namespace, the default kinds.
    fn default() -> Self {
        Self { scope: Scope::All, iface_globs: None }
    }
}

impl Selection {
    /// Whether an interface is traced.
    pub fn wants(&self, i: &Iface) -> bool {
        match &self.iface_globs {
            Some(globs) => globs.iter().any(|g| crate::sys::glob_match(g, &i.name)),
            None => i.kind.as_deref().is_some_and(|k| DEFAULT_KINDS.contains(&k)),
        }
    }

    /// Whether a namespace is traced.
    pub fn selects(&self, n: &Netns) -> bool {
        self.scope.selects(n)
    }
}

/// The namespaces and interfaces `select` covers, as they are now.
fn wanted(select: &Selection, reg: &mut Registry) -> BTreeMap<u64, (Netns, Vec<Iface>)> {
    let mut out = BTreeMap::new();
    if reg.rescan(true).is_err() {
        return out;
    }
    for n in reg.namespaces() {
        // A namespace whose interfaces cannot be read (it vanished during
        // the scan) has nothing to trace.
        if !select.selects(n) || n.error.is_some() {
            continue;
        }
        let ifs: Vec<Iface> = n.interfaces.iter().filter(|i| select.wants(i)).cloned().collect();
        out.insert(n.inode, (n.clone(), ifs));
    }
    out
}

/// What the first attach pass found, for the `ready` line.
#[derive(Clone, Copy, Debug)]
pub struct FirstPass {
    pub interfaces: usize,
    pub namespaces: usize,
    pub mode: TcMode,
}

/// Whether the attach thread starts an interface watcher of its own to be
/// told of changes, or the job runs one already (the default job's
/// netlink audit) that rings the same bell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Own,
    Shared,
}

/// The attach thread: removes what a killed tracer left (see
/// [`stale::sweep`]), then discovers, attaches and releases whenever
/// `triggers` report a change (and every [`SAFETY_RESCAN`]) until told to
/// stop (by [`Follower::stop`] or a stop request, which it also heeds
/// between two interfaces), then releases everything. It owns the eBPF
/// object, so whatever else is attached through it (the netlink
/// tracepoints) detaches with it too.
#[allow(clippy::too_many_arguments)]
fn follow(
    mut ebpf: aya::Ebpf,
    mut attacher: Attacher,
    select: Selection,
    topo: Arc<Mutex<Topology>>,
    first: tokio::sync::oneshot::Sender<FirstPass>,
    triggers: Triggers,
    watch: (Watch, Bell),
    shutdown: Shutdown,
) {
    let cancelled = || shutdown.is_set();
    let mut first = Some(first);
    let mut reg = Registry::new();
    // Started after the first pass, so as not to delay the ready line; it
    // rings once started, which covers what changed in between.
    let mut watcher: Option<Watcher> = None;
    loop {
        let want = wanted(&select, &mut reg);
        if first.is_some() && !cancelled() {
            // Before anything of ours is attached; the registry holds every
            // namespace now, not only the selected ones: a killed run may
            // have traced others.
            let swept = stale::sweep(reg.namespaces(), attacher.first_program_id(), &cancelled);
            if let Some(line) = swept.line() {
                eprintln!("{line}");
            }
        }
        if let Ok(mut t) = topo.lock() {
            t.update(&reg, &want);
            t.rescans += 1;
        }
        let changes = attacher.sync(&mut ebpf, &want, &cancelled);
        for (label, why) in &changes.failed {
            crate::sys::text::warn(&format!("cannot trace {label}: {why}"));
        }
        for (label, why) in &changes.release_failed {
            eprintln!("tracer: cannot detach from {label}: {why}");
        }
        if let Ok(mut t) = topo.lock() {
            t.attached = attacher.keys().collect();
            t.add_released(&changes.released_keys);
        }
        if let Some(tx) = first.take() {
            let namespaces = want.values().filter(|(_, ifs)| !ifs.is_empty()).count();
            let _ = tx.send(FirstPass { interfaces: attacher.len(), namespaces, mode: attacher.mode() });
            if watch.0 == Watch::Own && !cancelled() {
                watcher = start_watcher(&watch.1);
            }
        }
        if cancelled() {
            break;
        }
        let watched = watcher.is_some() || watch.0 == Watch::Shared;
        match triggers.wait(if watched { WATCHED_RESCAN } else { SAFETY_RESCAN }) {
            Woke::Stop => break,
            Woke::Timeout => {}
            Woke::Changed => {
                if triggers.settle(SETTLE) == Woke::Stop {
                    break;
                }
            }
        }
    }
    drop(watcher);
    attacher.release_all();
    drop(ebpf);
}

/// An interface watcher that only rings `bell` (nobody reads its events).
/// Without one, changes are found by the mount table and the safety net.
fn start_watcher(bell: &Bell) -> Option<Watcher> {
    let cfg = watch::Config { bell: Some(bell.clone()), channel: 1, ..Default::default() };
    match Watcher::start(cfg) {
        // The receiver goes: the watcher's table is still kept current, and
        // a closed channel costs nothing.
        Ok((w, _rx)) => Some(w),
        Err(e) => {
            crate::sys::text::warn(&format!(
                "the interface watcher did not start ({e}); new interfaces are found every {} s",
                SAFETY_RESCAN.as_secs()
            ));
            None
        }
    }
}

/// The attach thread, stopped and joined when this is dropped, so that an
/// error anywhere in a job still detaches everything (which matters for
/// netlink-tc, whose filters outlive the process).
pub struct Follower {
    stop: Bell,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    /// Starts the thread (which takes the object and the attacher) and
    /// waits for its first pass, which ends early, having attached less,
    /// when `shutdown` is set meanwhile: the caller checks it.
    /// `changes` is the bell the interface watcher rings: the job's own
    /// (`Watch::Shared`, started with it in its config) or one the thread
    /// starts (`Watch::Own`).
    pub async fn start(
        ebpf: aya::Ebpf,
        attacher: Attacher,
        select: Selection,
        topo: Arc<Mutex<Topology>>,
        changes: (Watch, Bell),
        shutdown: Shutdown,
    ) -> Result<(Self, FirstPass), TcError> {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let stop = Bell::new().map_err(|_| TcError::Follower)?;
        let triggers = Triggers::new(changes.1.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("tracer-attach".into())
            .spawn(move || follow(ebpf, attacher, select, topo, first_tx, triggers, changes, shutdown))
            .map_err(|_| TcError::Follower)?;
        let follower = Follower { stop, handle: Some(handle) };
        let first = first_rx.await.map_err(|_| TcError::Follower)?;
        Ok((follower, first))
    }

    /// Detaches everything and waits until it is done, without blocking
    /// the runtime.
    pub async fn stop(&mut self) {
        self.stop.ring();
        if let Some(h) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.ring();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, kind: Option<&str>) -> Iface {
        Iface { ifindex: 2, name: name.into(), kind: kind.map(String::from), master: None, peer: None, up: true }
    }

    #[test]
    fn default_interfaces_are_virtual_ones() {
        let sel = Selection::default();
        assert!(sel.wants(&iface("veth1", Some("veth"))));
        assert!(sel.wants(&iface("br0", Some("bridge"))));
        assert!(sel.wants(&iface("vx0", Some("vxlan"))));
        assert!(!sel.wants(&iface("eth0", None)), "physical NIC");
        assert!(!sel.wants(&iface("lo", Some("loopback"))));
        assert!(!sel.wants(&iface("ifb0", Some("ifb"))));
        let sel = Selection { iface_globs: Some(vec!["eth*".into(), "lo".into()]), ..Default::default() };
        assert!(sel.wants(&iface("eth0", None)));
        assert!(sel.wants(&iface("lo", None)));
        assert!(!sel.wants(&iface("veth1", Some("veth"))));
    }
}
