//! Which interfaces a TC job covers ([`Selection`]), and the thread that
//! keeps them attached: it rescans namespaces and interfaces every
//! [`FOLLOW_INTERVAL`], attaches what appeared, releases what went away,
//! and keeps the [`Topology`] (names, containers) the reading side labels
//! its output with up to date. Every TC job runs on it, each with its own
//! pair of programs, started by [`super::session::TcSession::start`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use super::{
    TcError,
    attach::{Attacher, TcMode},
    stale,
    topology::Topology,
};
use crate::{
    ns::{Iface, Netns, Registry, Scope},
    sys::shutdown::Shutdown,
};

/// Interface kinds traced by default: what container networking is made
/// of. Physical NICs (no kind), loopback, and `ifb`/`vrf` (which only
/// repeat packets other interfaces carry) need `--iface`.
pub const DEFAULT_KINDS: &[&str] = &[
    "veth", "bridge", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan", "geneve", "vlan", "bond", "team", "tun",
    "wireguard", "netkit", "gre", "gretap", "ip6gre", "ip6gretap", "ipip", "sit", "ip6tnl", "erspan", "bareudp", "dummy",
];

/// How often namespaces and interfaces are looked for.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

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

/// The attach thread: removes what a killed tracer left (see
/// [`stale::sweep`]), then discovers, attaches and releases every
/// [`FOLLOW_INTERVAL`] until told to stop (by [`Follower::stop`] or a stop
/// request, which it also heeds between two interfaces), then releases
/// everything. It owns the eBPF object, so whatever else is attached
/// through it (the netlink tracepoints) detaches with it too.
fn follow(
    mut ebpf: aya::Ebpf,
    mut attacher: Attacher,
    select: Selection,
    topo: Arc<Mutex<Topology>>,
    first: tokio::sync::oneshot::Sender<FirstPass>,
    stop: mpsc::Receiver<()>,
    shutdown: Shutdown,
) {
    let cancelled = || shutdown.is_set();
    let mut first = Some(first);
    let mut reg = Registry::new();
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
        }
        if cancelled() {
            break;
        }
        match stop.recv_timeout(FOLLOW_INTERVAL) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    attacher.release_all();
    drop(ebpf);
}

/// The attach thread, stopped and joined when this is dropped, so that an
/// error anywhere in a job still detaches everything (which matters for
/// netlink-tc, whose filters outlive the process).
pub struct Follower {
    stop: mpsc::Sender<()>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    /// Starts the thread (which takes the object and the attacher) and
    /// waits for its first pass, which ends early, having attached less,
    /// when `shutdown` is set meanwhile: the caller checks it.
    pub async fn start(
        ebpf: aya::Ebpf,
        attacher: Attacher,
        select: Selection,
        topo: Arc<Mutex<Topology>>,
        shutdown: Shutdown,
    ) -> Result<(Self, FirstPass), TcError> {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tracer-attach".into())
            .spawn(move || follow(ebpf, attacher, select, topo, first_tx, stop_rx, shutdown))
            .map_err(|_| TcError::Follower)?;
        let follower = Follower { stop: stop_tx, handle: Some(handle) };
        let first = first_rx.await.map_err(|_| TcError::Follower)?;
        Ok((follower, first))
    }

    /// Detaches everything and waits until it is done, without blocking
    /// the runtime.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stop.send(());
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
