//! Names of the namespaces, interfaces and containers a TC job covers, kept
//! by the attach thread ([`super::follow`]) and read when decoding.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    ns::{Iface, Netns, NetnsId, Registry},
    sys::bounded::BoundedMap,
};

/// Names of namespaces, interfaces and containers, kept by the attach
/// thread and read when decoding. Interfaces and namespaces that went away
/// stay a while, for the events still in the ring buffer; any user can make
/// and delete them by the thousand, so both tables are bounded too.
#[derive(Debug)]
pub struct Topology {
    ifaces: BoundedMap<(u64, u32), (String, Instant)>,
    /// inode -> (name and owner, when last seen).
    namespaces: BoundedMap<u64, (NetnsId, Instant)>,
    /// The tracer's own namespace.
    pub host_netns: Option<u64>,
    /// (namespace, ifindex) of every interface the programs are attached to now.
    pub attached: HashSet<(u64, u32)>,
    /// Each covered namespace's file to enter it by and its cookie, as the
    /// last discovery pass saw them (for readers of per-namespace state,
    /// such as the interfaces' own counters).
    pub entry: BTreeMap<u64, (PathBuf, Option<u64>)>,
    /// Interfaces released since the reader last took them (see
    /// [`Topology::take_released`]); only `tracer top` takes them, so the
    /// newest [`RELEASED_MAX`] are kept.
    released: Vec<(u64, u32)>,
    /// Discovery passes made so far (a follower that looks only when told
    /// makes few; see `follow`).
    pub rescans: u64,
    /// Covered namespaces that are Docker sandboxes whose container does
    /// not run yet: named in a moment (see [`Topology::starting`]).
    starting: HashSet<u64>,
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
            entry: BTreeMap::new(),
            released: Vec::new(),
            rescans: 0,
            starting: HashSet::new(),
        }
    }
}

impl Topology {
    pub fn new(host_netns: Option<u64>) -> Self {
        Self { host_netns, ..Default::default() }
    }

    pub(super) fn update(&mut self, reg: &Registry, want: &BTreeMap<u64, (Netns, Vec<Iface>)>) {
        self.update_at(Instant::now(), reg, want);
    }

    fn update_at(&mut self, now: Instant, reg: &Registry, want: &BTreeMap<u64, (Netns, Vec<Iface>)>) {
        for ino in want.keys() {
            let id = NetnsId { inode: *ino, name: reg.netns_name(*ino), owner: reg.container_for_netns(*ino), host: self.host_netns == Some(*ino) };
            self.namespaces.insert(*ino, (id, now));
        }
        self.starting = want.keys().copied().filter(|ino| reg.unowned_docker_sandbox_as_scanned(*ino)).collect();
        self.entry = want.iter().map(|(ino, (n, _))| (*ino, (n.path.clone(), n.cookie))).collect();
        for (ino, (_, ifs)) in want {
            for i in ifs {
                self.ifaces.insert((*ino, i.ifindex), (i.name.clone(), now));
            }
        }
        self.ifaces.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < FORGET_AFTER);
        self.namespaces.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < FORGET_AFTER);
    }

    /// Adds interfaces released by the attacher, keeping the newest.
    pub(super) fn add_released(&mut self, keys: &[(u64, u32)]) {
        self.released.extend_from_slice(keys);
        let excess = self.released.len().saturating_sub(RELEASED_MAX);
        self.released.drain(..excess);
    }

    /// Records a namespace and an interface by hand (tests of the readers).
    #[cfg(test)]
    pub fn insert(&mut self, ns: u64, name: Option<String>, owner: Option<crate::ns::Container>, ifaces: &[(u32, &str)]) {
        let id = NetnsId { inode: ns, name, owner, host: self.host_netns == Some(ns) };
        self.namespaces.insert(ns, (id, Instant::now()));
        for (idx, n) in ifaces {
            self.ifaces.insert((ns, *idx), (n.to_string(), Instant::now()));
            self.attached.insert((ns, *idx));
        }
    }

    pub fn ifname(&self, ns: u64, ifindex: u32) -> String {
        self.ifaces.get(&(ns, ifindex)).map(|(n, _)| n.clone()).unwrap_or_else(|| format!("if{ifindex}"))
    }

    /// A namespace as events name it; one that is not known (yet, or any
    /// more) by its inode alone.
    pub fn netns(&self, ns: u64) -> NetnsId {
        match self.namespaces.get(&ns) {
            Some((id, _)) => id.clone(),
            None => NetnsId { inode: ns, host: self.host_netns == Some(ns), ..Default::default() },
        }
    }

    /// How text names a namespace (see [`NetnsId::label`]).
    #[cfg(test)]
    pub fn ns_label(&self, ns: u64) -> String {
        self.netns(ns).label().into_owned()
    }

    /// Whether the namespace is a Docker sandbox whose container does not
    /// run yet, as the last discovery pass saw it: dockerd moves the
    /// container's veth in, and the kernel sends on it, before the
    /// container is named; its lines wait a moment for the name.
    pub fn starting(&self, ns: u64) -> bool {
        self.starting.contains(&ns)
    }

    /// Marks a namespace as a container's that does not run yet (tests of
    /// the readers).
    #[cfg(test)]
    pub fn mark_starting(&mut self, ns: u64, starting: bool) {
        if starting {
            self.starting.insert(ns);
        } else {
            self.starting.remove(&ns);
        }
    }

    /// Interfaces released since the last call.
    pub fn take_released(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.released)
    }
}

impl crate::ns::names::Naming for Topology {
    fn netns_id(&self, ino: u64) -> NetnsId {
        self.netns(ino)
    }
    fn ifname_of(&self, ino: u64, ifindex: u32) -> Option<String> {
        self.ifaces.get(&(ino, ifindex)).map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::Container;

    #[test]
    fn labels_prefer_container_then_name_then_host() {
        let mut t = Topology::new(Some(1));
        t.insert(1, None, None, &[(3, "veth0")]);
        t.insert(2, Some("lab".into()), None, &[(2, "eth0")]);
        t.insert(3, Some("web".into()), Some(Container { pod: None, runtime: "docker".into(), id: "abc".into(), name: Some("web".into()) }), &[]);
        t.insert(4, None, Some(Container { pod: None, runtime: "docker".into(), id: "0123456789abcdef".into(), name: None }), &[]);
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
