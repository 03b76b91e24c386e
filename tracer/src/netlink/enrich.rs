//! Enrichment of netlink events with what the kernel record lacks: interface
//! names for the indexes a request carries, and the namespace a request
//! targets (`IFLA_NET_NS_FD` resolved through the sender's open namespace
//! files the kernel program recorded, `IFLA_NET_NS_PID` through /proc).
//!
//! Interface names are looked up with RTM_GETLINK inside the sender's
//! namespace, on the lookup thread ([`super::lookup`]), never on the event
//! loop; the answers fill a cache of at most [`IFNAME_CACHE_MAX`] entries
//! (the oldest make room), which also remembers failures for
//! [`NEGATIVE_TTL`]. Names are cut to what the kernel allows before they
//! enter it: requests carry names of any length.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};


use super::{
    lookup::{Answer, Lookups, Query, Request},
    route::{NsRef, TargetRef},
};
use crate::{
    ns::{self, TargetNetns},
    sys::{
        self,
        bounded::{self as cache, BoundedMap},
    },
};

/// What the cache knows about one (namespace, ifindex).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Known(String),
    /// Looked up and not found (or not asked: no way into the namespace).
    Missing,
    /// On the lookup thread.
    Pending,
}

/// A name, as far as it is known now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfName {
    Known(String),
    Unknown,
    /// Being looked up; ask the cache again once the answer is in.
    Pending,
}

/// Names of namespaces and interfaces, cached with a short lifetime.
pub struct Enricher {
    /// The tracer's own namespace, `host` in text.
    host: Option<u64>,
    netns_names: HashMap<u64, String>,
    netns_paths: HashMap<u64, PathBuf>,
    names_at: Instant,
    ifnames: BoundedMap<(u64, u32), (Entry, Instant)>,
    /// (namespace, name) of created links whose index was asked for lately.
    created: BoundedMap<(u64, String), Instant>,
    lookups: Lookups,
}

// Reading /run/netns is a few stats: cheap enough to redo on a miss.
const NAMES_TTL: Duration = Duration::from_millis(50);
/// Named namespaces read from /run/netns and friends, at most.
const NETNS_NAMES_MAX: usize = 4096;
/// How long a name is trusted (interfaces are renamed, indexes reused).
const IFNAME_TTL: Duration = Duration::from_secs(2);
/// How long a failed lookup is not tried again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// A lookup not answered in this time is given up (and may be asked again).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Interface names (and failures) remembered, at most.
pub const IFNAME_CACHE_MAX: usize = 8192;
/// Created links whose index lookup is remembered, at most.
const CREATED_MAX: usize = 1024;

/// Counts for the summary at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnrichStats {
    pub lookups: u64,
    /// Lookups refused because the lookup thread was busy (answered unknown).
    pub over_budget: u64,
    /// Cache entries evicted to make room.
    pub evicted: u64,
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new()
    }
}

impl Enricher {
    pub fn new() -> Self {
        Self::with_lookups(Lookups::new())
    }

    /// An enricher whose lookups go to `lookups` (tests give a fake one).
    pub fn with_lookups(lookups: Lookups) -> Self {
        let mut e = Self {
            host: ns::tracer_netns(),
            netns_names: HashMap::new(),
            netns_paths: HashMap::new(),
            names_at: Instant::now(),
            ifnames: BoundedMap::new(IFNAME_CACHE_MAX),
            created: BoundedMap::new(CREATED_MAX),
            lookups,
        };
        e.reload_names();
        e
    }

    pub fn stats(&self) -> EnrichStats {
        EnrichStats { lookups: self.lookups.submitted, over_budget: self.lookups.over_budget, evicted: self.ifnames.evicted }
    }

    fn reload_names(&mut self) {
        self.netns_names.clear();
        self.netns_paths.clear();
        let mounts = ns::named::mounts(NETNS_NAMES_MAX);
        self.netns_names = ns::named::named_namespaces(&mounts);
        for m in mounts {
            self.netns_paths.entry(m.inode).or_insert(m.path);
        }
        self.names_at = Instant::now();
    }

    /// Name of a namespace (a /run/netns entry), refreshing on a miss.
    pub fn netns_name(&mut self, ino: u64) -> Option<String> {
        if !self.netns_names.contains_key(&ino) && self.names_at.elapsed() > NAMES_TTL {
            self.reload_names();
        }
        self.netns_names.get(&ino).cloned()
    }

    /// An open file of namespace `ino`: the sender's own, or a named one.
    /// Opening is cheap; entering it is left to the lookup thread.
    fn netns_file(&mut self, ino: u64, pid: u32) -> Option<File> {
        let is = |f: &File| f.metadata().ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m)) == Some(ino);
        if let Ok(f) = File::open(format!("/proc/{pid}/ns/net"))
            && is(&f)
        {
            return Some(f);
        }
        if !self.netns_paths.contains_key(&ino) && self.names_at.elapsed() > NAMES_TTL {
            self.reload_names();
        }
        let named = self.netns_paths.get(&ino).cloned();
        for p in named.iter().map(PathBuf::as_path).chain([Path::new("/proc/self/ns/net")]) {
            if let Ok(f) = File::open(p)
                && is(&f)
            {
                return Some(f);
            }
        }
        None
    }

    /// Takes in the answers of the lookup thread.
    pub fn poll(&mut self) {
        let now = Instant::now();
        for a in self.lookups.answers() {
            match a {
                Answer::Name { ino, index, name: Some(n) } => {
                    self.ifnames.insert((ino, index), (Entry::Known(n), now));
                }
                // A failure must not hide a name learnt meanwhile.
                Answer::Name { ino, index, name: None } => {
                    if matches!(self.ifnames.get(&(ino, index)), Some((Entry::Pending, _)) | None) {
                        self.ifnames.insert((ino, index), (Entry::Missing, now));
                    }
                }
                Answer::Index { ino, name, index: Some(i) } if i != 0 => self.learn(ino, i, &name),
                Answer::Index { .. } => {}
            }
        }
    }

    /// The name of interface `index` in namespace `ino` as the cache has
    /// it; on a miss, a lookup is started (from inside the namespace of the
    /// sender `pid`) and the answer is [`IfName::Pending`], or
    /// [`IfName::Unknown`] when the lookup thread is too busy.
    pub fn ifname(&mut self, ino: u64, pid: u32, index: u32) -> IfName {
        match self.cached(ino, index) {
            Some(n) => return n,
            None if index == 0 => return IfName::Unknown,
            None => {}
        }
        if self.lookups.busy() {
            return IfName::Unknown;
        }
        let now = Instant::now();
        let Some(ns) = self.netns_file(ino, pid) else {
            self.ifnames.insert((ino, index), (Entry::Missing, now));
            return IfName::Unknown;
        };
        if self.lookups.submit(Request { ino, ns: Some(ns), query: Query::Name(index) }) {
            self.ifnames.insert((ino, index), (Entry::Pending, now));
            IfName::Pending
        } else {
            IfName::Unknown
        }
    }

    /// What the cache says about (ino, index), without starting a lookup;
    /// `None` when it knows nothing (or nothing recent).
    fn cached(&self, ino: u64, index: u32) -> Option<IfName> {
        if index == 0 {
            return Some(IfName::Unknown);
        }
        let (e, at) = self.ifnames.get(&(ino, index))?;
        let age = at.elapsed();
        match e {
            Entry::Known(n) if age < IFNAME_TTL => Some(IfName::Known(n.clone())),
            Entry::Missing if age < NEGATIVE_TTL => Some(IfName::Unknown),
            Entry::Pending if age < LOOKUP_TIMEOUT => Some(IfName::Pending),
            _ => None,
        }
    }

    /// The name as known now, without a lookup: `None` when unknown or pending.
    pub fn cached_name(&self, ino: u64, index: u32) -> Option<String> {
        match self.cached(ino, index) {
            Some(IfName::Known(n)) => Some(n),
            _ => None,
        }
    }

    /// Whether a lookup of (ino, index) is still on its way.
    pub fn awaiting(&self, ino: u64, index: u32) -> bool {
        self.cached(ino, index) == Some(IfName::Pending)
    }

    /// Remembers a name a successful request revealed, cut to what the
    /// kernel allows.
    pub fn learn(&mut self, ino: u64, index: u32, name: &str) {
        if index == 0 {
            return;
        }
        let name = cache::cut(name, cache::IFNAME_MAX).to_string();
        self.ifnames.insert((ino, index), (Entry::Known(name), Instant::now()));
    }

    /// After a link was created, asks for its index while it exists, so a
    /// later request naming it only by index (`ip link del` does) is named.
    pub fn learn_created(&mut self, ino: u64, pid: u32, name: &str) {
        // No link has a longer name: the request is refused.
        if name.is_empty() || name.len() > cache::IFNAME_MAX {
            return;
        }
        let key = (ino, name.to_string());
        if self.created.get(&key).is_some_and(|at| at.elapsed() < IFNAME_TTL) || self.lookups.busy() {
            return;
        }
        let Some(ns) = self.netns_file(ino, pid) else { return };
        if self.lookups.submit(Request { ino, ns: Some(ns), query: Query::Index(name.to_string()) }) {
            self.created.insert(key, Instant::now());
        }
    }

    /// Resolves a request's namespace reference: its inode (when the
    /// sender's fd, the process, still tells) and name.
    pub fn target(&mut self, t: &TargetRef, pid: u32, ns_fds: &[(u32, u32)]) -> TargetNetns {
        let ino = match t.ns {
            NsRef::Fd(fd) => ns_fds
                .iter()
                .find(|(f, i)| *f as i32 == fd && *i != 0)
                .map(|(_, i)| u64::from(*i))
                .or_else(|| fd_netns(pid, fd)),
            NsRef::Pid(p) => sys::ns_inode(Path::new(&format!("/proc/{p}/ns/net"))).ok(),
            NsRef::Nsid(_) => None,
        };
        let name = ino.and_then(|i| self.netns_name(i));
        TargetNetns { inode: ino, name, host: ino.is_some() && ino == self.host, of: t.of, by: t.ns }
    }
}

/// The namespace an open fd of `pid` refers to, while the process lives.
fn fd_netns(pid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_string_lossy();
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enricher whose lookup thread answers `if<N>` for even indexes,
    /// nothing for odd ones, and index 7 for any name.
    fn fake() -> Enricher {
        Enricher::with_lookups(Lookups::with_resolver(
            1024,
            Box::new(|r: Request| match r.query {
                Query::Name(i) => Answer::Name { ino: r.ino, index: i, name: (i % 2 == 0).then(|| format!("if{i}")) },
                Query::Index(name) => Answer::Index { ino: r.ino, name, index: Some(7) },
            }),
        ))
    }

    fn settle(e: &mut Enricher, until: impl Fn(&Enricher) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !until(e) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            e.poll();
        }
    }

    fn own_ns() -> u64 {
        sys::ns_inode(Path::new("/proc/self/ns/net")).expect("own netns")
    }

    #[test]
    fn unknown_indexes_are_looked_up_off_the_loop_and_failures_cached() {
        let mut e = fake();
        let (ino, pid) = (own_ns(), std::process::id());
        assert_eq!(e.ifname(ino, pid, 4), IfName::Pending);
        assert_eq!(e.ifname(ino, pid, 5), IfName::Pending);
        assert!(e.awaiting(ino, 4));
        // Asking again while it is on its way starts no second lookup.
        assert_eq!(e.ifname(ino, pid, 4), IfName::Pending);
        assert_eq!(e.stats().lookups, 2);
        settle(&mut e, |e| !e.awaiting(ino, 4) && !e.awaiting(ino, 5));
        assert_eq!(e.ifname(ino, pid, 4), IfName::Known("if4".into()));
        assert_eq!(e.cached_name(ino, 4).as_deref(), Some("if4"));
        // The failure is remembered: no new lookup for NEGATIVE_TTL.
        assert_eq!(e.ifname(ino, pid, 5), IfName::Unknown);
        assert_eq!(e.stats().lookups, 2);
    }

    #[test]
    fn a_namespace_that_cannot_be_entered_is_unknown_at_once() {
        let mut e = fake();
        // No process 0, no such namespace: nothing to look up with.
        assert_eq!(e.ifname(1, 0, 4), IfName::Unknown);
        assert_eq!(e.stats().lookups, 0);
        assert_eq!(e.ifname(1, 0, 4), IfName::Unknown, "cached");
    }

    #[test]
    fn a_failed_lookup_does_not_hide_a_name_learnt_meanwhile() {
        let mut e = fake();
        let (ino, pid) = (own_ns(), std::process::id());
        assert_eq!(e.ifname(ino, pid, 9), IfName::Pending);
        e.learn(ino, 9, "br-created");
        settle(&mut e, |e| e.lookups.answered == 1);
        assert_eq!(e.cached_name(ino, 9).as_deref(), Some("br-created"));
    }

    #[test]
    fn created_links_are_learnt_by_index_and_long_names_skipped() {
        let mut e = fake();
        let (ino, pid) = (own_ns(), std::process::id());
        e.learn_created(ino, pid, "br-new");
        e.learn_created(ino, pid, "br-new");
        e.learn_created(ino, pid, &"x".repeat(4096));
        assert_eq!(e.stats().lookups, 1, "one lookup; none for a name no link can have");
        settle(&mut e, |e| e.cached_name(ino, 7).is_some());
        assert_eq!(e.cached_name(ino, 7).as_deref(), Some("br-new"));
    }

    #[test]
    fn names_are_cut_and_the_cache_is_bounded() {
        let mut e = fake();
        for i in 1..=(IFNAME_CACHE_MAX as u32 * 3) {
            e.learn(42, i, &"n".repeat(4096));
        }
        assert_eq!(e.ifnames.len(), IFNAME_CACHE_MAX);
        assert_eq!(e.stats().evicted, 2 * IFNAME_CACHE_MAX as u64);
        let last = IFNAME_CACHE_MAX as u32 * 3;
        assert_eq!(e.cached_name(42, last), Some("n".repeat(15)));
        assert_eq!(e.cached_name(42, 1), None, "the oldest went first");
    }
}
