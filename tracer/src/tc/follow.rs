//! Which interfaces a TC job covers, and the thread that keeps them
//! attached: it rescans namespaces and interfaces every
//! [`FOLLOW_INTERVAL`], attaches what appeared, releases what went away,
//! and keeps the [`Topology`] (names, containers) the reading side labels
//! its output with. `tracer packets` and `tracer top` both run on it, each
//! with its own pair of programs.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    attach::{Attacher, TcMode},
    stale,
};
use crate::{
    Error,
    cli::Selectors,
    ns::{self, Iface, Netns, Registry},
    packets::PacketsError,
    sys::{bounded::BoundedMap, shutdown::Shutdown},
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

/// Which namespaces are traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace, including those created later.
    All,
    /// One namespace (its interfaces are still followed).
    Netns(u64),
    /// The namespace of one container (by full id), followed when the
    /// container restarts into a new one.
    Container(String),
}

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
    /// From `--all`, `--netns`/`--pid`/`--container` (at most one) and `--iface`.
    pub fn from_args(sel: &Selectors, all: bool, iface: Option<&str>) -> Result<Self, Error> {
        let selectors = [sel.netns.is_some(), sel.pid.is_some(), sel.container.is_some()].iter().filter(|b| **b).count();
        if selectors > 1 || (all && selectors > 0) {
            return Err(Error::Usage("give one of --all, --netns, --pid, --container".into()));
        }
        let scope = if let Some(n) = &sel.netns {
            Scope::Netns(ns::resolve_netns(n)?)
        } else if let Some(pid) = sel.pid {
            Scope::Netns(ns::resolve_pid(pid)?)
        } else if let Some(c) = &sel.container {
            let (container, _) = Registry::new().resolve_container(c)?;
            Scope::Container(container.id)
        } else {
            Scope::All
        };
        let iface_globs = match iface {
            Some(g) => {
                let globs: Vec<String> = g.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                if globs.is_empty() {
                    return Err(Error::Usage("--iface needs a name or a glob such as 'veth*'".into()));
                }
                Some(globs)
            }
            None => None,
        };
        Ok(Self { scope, iface_globs })
    }

    /// Whether an interface is traced.
    pub fn wants(&self, i: &Iface) -> bool {
        match &self.iface_globs {
            Some(globs) => globs.iter().any(|g| glob_match(g, &i.name)),
            None => i.kind.as_deref().is_some_and(|k| DEFAULT_KINDS.contains(&k)),
        }
    }

    /// Whether a namespace is traced.
    pub fn selects(&self, n: &Netns) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Netns(only) => n.inode == *only,
            Scope::Container(id) => n.has_container(id),
        }
    }
}

/// Shell-style match (`*`, `?`, `[...]`), as interface globs are written.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (std::ffi::CString::new(pattern), std::ffi::CString::new(name)) else { return false };
    // SAFETY: fnmatch reads two valid C strings.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), 0) == 0 }
}

/// Names of namespaces, interfaces and containers, kept by the attach
/// thread and read when decoding. Interfaces and namespaces that went away
/// stay a while, for the events still in the ring buffer; any user can make
/// and delete them by the thousand, so both tables are bounded too.
#[derive(Debug)]
pub struct Topology {
    ifaces: BoundedMap<(u64, u32), (String, Instant)>,
    /// inode -> (name, container as JSON, when last seen).
    namespaces: BoundedMap<u64, (Option<String>, Option<Value>, Instant)>,
    /// The tracer's own namespace.
    pub host_netns: Option<u64>,
    /// (namespace, ifindex) of every interface the programs are attached to now.
    pub attached: HashSet<(u64, u32)>,
    /// Interfaces released since the reader last took them (see
    /// [`Topology::take_released`]); only `tracer top` takes them, so the
    /// newest [`RELEASED_MAX`] are kept.
    released: Vec<(u64, u32)>,
}

/// How long the name of a vanished interface or namespace is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Interfaces named, at most (traced ones and those gone for less than
/// 30 s); the oldest seen go first.
pub const TOPO_IFACES_MAX: usize = 65_536;
/// Namespaces named, at most.
pub const TOPO_NAMESPACES_MAX: usize = 16_384;
/// Released interfaces waiting to be taken, at most.
pub const RELEASED_MAX: usize = 65_536;

impl Default for Topology {
    fn default() -> Self {
        Self {
            ifaces: BoundedMap::new(TOPO_IFACES_MAX),
            namespaces: BoundedMap::new(TOPO_NAMESPACES_MAX),
            host_netns: None,
            attached: HashSet::new(),
            released: Vec::new(),
        }
    }
}

impl Topology {
    pub fn new(host_netns: Option<u64>) -> Self {
        Self { host_netns, ..Default::default() }
    }

    fn update(&mut self, reg: &Registry, want: &BTreeMap<u64, (Netns, Vec<Iface>)>) {
        self.update_at(Instant::now(), reg, want);
    }

    fn update_at(&mut self, now: Instant, reg: &Registry, want: &BTreeMap<u64, (Netns, Vec<Iface>)>) {
        for ino in want.keys() {
            let container = reg.container_for_netns(*ino).and_then(|c| serde_json::to_value(c).ok());
            self.namespaces.insert(*ino, (reg.netns_name(*ino), container, now));
        }
        for (ino, (_, ifs)) in want {
            for i in ifs {
                self.ifaces.insert((*ino, i.ifindex), (i.name.clone(), now));
            }
        }
        self.ifaces.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < FORGET_AFTER);
        self.namespaces.retain(|_, (_, _, seen)| now.saturating_duration_since(*seen) < FORGET_AFTER);
    }

    /// Adds interfaces released by the attacher, keeping the newest.
    fn add_released(&mut self, keys: &[(u64, u32)]) {
        self.released.extend_from_slice(keys);
        let excess = self.released.len().saturating_sub(RELEASED_MAX);
        self.released.drain(..excess);
    }

    /// Records a namespace and an interface by hand (tests of the readers).
    pub fn insert(&mut self, ns: u64, name: Option<String>, container: Option<Value>, ifaces: &[(u32, &str)]) {
        self.namespaces.insert(ns, (name, container, Instant::now()));
        for (idx, n) in ifaces {
            self.ifaces.insert((ns, *idx), (n.to_string(), Instant::now()));
            self.attached.insert((ns, *idx));
        }
    }

    pub fn ifname(&self, ns: u64, ifindex: u32) -> String {
        self.ifaces.get(&(ns, ifindex)).map(|(n, _)| n.clone()).unwrap_or_else(|| format!("if{ifindex}"))
    }

    pub fn ns_name(&self, ns: u64) -> Option<String> {
        self.namespaces.get(&ns).and_then(|(n, _, _)| n.clone())
    }

    pub fn container(&self, ns: u64) -> Option<Value> {
        self.namespaces.get(&ns).and_then(|(_, c, _)| c.clone())
    }

    /// How a namespace is shown: its container's name (else id), else its
    /// name, else `host` for the tracer's own namespace, else the inode.
    pub fn ns_label(&self, ns: u64) -> String {
        let container = self.container(ns);
        // A container without a name by its short id, as `docker ps` shows it.
        let c = container.as_ref().and_then(|c| {
            c.get("name").and_then(Value::as_str).or_else(|| c.get("id").and_then(Value::as_str).map(|id| &id[..id.len().min(12)]))
        });
        match (c, self.ns_name(ns)) {
            (Some(c), _) => c.to_string(),
            (None, Some(n)) => n,
            (None, None) if self.host_netns == Some(ns) => "host".into(),
            (None, None) => ns.to_string(),
        }
    }

    /// Interfaces released since the last call.
    pub fn take_released(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.released)
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
    ) -> Result<(Self, FirstPass), PacketsError> {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tracer-attach".into())
            .spawn(move || follow(ebpf, attacher, select, topo, first_tx, stop_rx, shutdown))
            .map_err(|_| PacketsError::Follower)?;
        let follower = Follower { stop: stop_tx, handle: Some(handle) };
        let first = first_rx.await.map_err(|_| PacketsError::Follower)?;
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

    #[test]
    fn selectors_validate() {
        let mut sel = Selectors { netns: Some("1".into()), ..Default::default() };
        assert!(matches!(Selection::from_args(&sel, true, None), Err(Error::Usage(_))));
        sel.pid = Some(1);
        assert!(matches!(Selection::from_args(&sel, false, None), Err(Error::Usage(_))));
        assert!(matches!(Selection::from_args(&Selectors::default(), false, Some(" , ")), Err(Error::Usage(_))));
        let s = Selection::from_args(&Selectors::default(), false, Some("veth*, br0")).expect("ok");
        assert_eq!(s.iface_globs, Some(vec!["veth*".to_string(), "br0".to_string()]));
        assert_eq!(s.scope, Scope::All);
    }

    #[test]
    fn labels_prefer_container_then_name_then_host() {
        let mut t = Topology::new(Some(1));
        t.insert(1, None, None, &[(3, "veth0")]);
        t.insert(2, Some("lab".into()), None, &[(2, "eth0")]);
        t.insert(3, Some("web".into()), Some(serde_json::json!({"runtime":"docker","id":"abc","name":"web"})), &[]);
        t.insert(4, None, Some(serde_json::json!({"runtime":"docker","id":"0123456789abcdef","name":null})), &[]);
        assert_eq!(t.ns_label(1), "host");
        assert_eq!(t.ns_label(2), "lab");
        assert_eq!(t.ns_label(3), "web");
        assert_eq!(t.ns_label(4), "0123456789ab");
        assert_eq!(t.ns_label(5), "5");
        assert_eq!(t.ifname(2, 2), "eth0");
        assert_eq!(t.ifname(2, 9), "if9");
    }

    #[test]
    fn topology_forgets_what_went_away_and_stays_bounded() {
        let mut t = Topology::new(Some(1));
        t.insert(2, Some("lab".into()), None, &[(2, "eth0")]);
        let reg = Registry::new();
        // Still there a moment later, gone FORGET_AFTER after last seen.
        t.update_at(Instant::now() + Duration::from_secs(1), &reg, &BTreeMap::new());
        assert_eq!((t.ns_label(2), t.ifname(2, 2)), ("lab".to_string(), "eth0".to_string()));
        t.update_at(Instant::now() + FORGET_AFTER + Duration::from_secs(1), &reg, &BTreeMap::new());
        assert_eq!((t.ns_label(2), t.ifname(2, 2)), ("2".to_string(), "if2".to_string()));
        // Interfaces and namespaces made faster than they are forgotten.
        for i in 0..(TOPO_IFACES_MAX as u32 + 10) {
            t.insert(u64::from(i % (TOPO_NAMESPACES_MAX as u32 + 10)), None, None, &[(i, "veth")]);
        }
        assert_eq!((t.ifaces.len(), t.namespaces.len()), (TOPO_IFACES_MAX, TOPO_NAMESPACES_MAX));
        assert_eq!(t.ifname(0, 0), "if0", "the oldest went first");
        // Released interfaces nobody takes (only top does): the newest stay.
        for i in 0..3 {
            t.add_released(&vec![(1, i); RELEASED_MAX / 2]);
        }
        let r = t.take_released();
        assert_eq!((r.len(), r[0], r[r.len() - 1]), (RELEASED_MAX, (1, 1), (1, 2)));
    }
}
