//! Names for namespaces and interfaces seen in tracepoint events (drops,
//! TCP), which come from every namespace with no attach step to learn
//! names from: a thread rescans the namespace registry every
//! [`REFRESH_INTERVAL`] and publishes a table the event loop reads.
//!
//! Bounded like the other tables: at most [`MAX_NAMESPACES`] namespaces
//! and [`MAX_IFACES`] interfaces per namespace; one that vanished is
//! remembered for [`FORGET_AFTER`], for events still in the ring buffer.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock, atomic::{AtomicBool, Ordering}},
    thread,
    time::{Duration, Instant},
};

use super::{Container, Netns, NetnsId, Registry};

pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
pub const MAX_NAMESPACES: usize = 16_384;
pub const MAX_IFACES: usize = 1024;

#[derive(Clone, Debug, Default)]
struct Entry {
    name: Option<String>,
    container: Option<Container>,
    ifaces: HashMap<u32, String>,
    seen: Option<Instant>,
}

/// What a namespace is called, and its interfaces.
#[derive(Clone, Debug, Default)]
pub struct NsNames {
    entries: HashMap<u64, Entry>,
    /// The tracer's own namespace: "host".
    pub host: Option<u64>,
    /// The namespaces the refresher's selector chose at its last scan
    /// (a container's, which changes when it restarts).
    pub selected: BTreeSet<u64>,
}

impl NsNames {
    pub fn new(host: Option<u64>) -> Self {
        Self { entries: HashMap::new(), host, selected: BTreeSet::new() }
    }

    /// Takes in a scan of the namespaces at `now`.
    /// (The registry names a namespace by its first name and labels it
    /// with its owning container, as here.)
    pub fn update(&mut self, now: Instant, list: &[Netns]) {
        for n in list {
            if !self.entries.contains_key(&n.inode) && self.entries.len() >= MAX_NAMESPACES {
                self.evict_oldest();
            }
            let container = n.container.clone();
            let name = n.names.first().cloned();
            let e = self.entries.entry(n.inode).or_default();
            e.name = name;
            e.container = container;
            e.seen = Some(now);
            for i in n.interfaces.iter() {
                if e.ifaces.len() < MAX_IFACES || e.ifaces.contains_key(&i.ifindex) {
                    e.ifaces.insert(i.ifindex, i.name.clone());
                }
            }
        }
        self.entries.retain(|_, e| e.seen.is_some_and(|s| now.saturating_duration_since(s) < FORGET_AFTER));
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.entries.iter().min_by_key(|(_, e)| e.seen).map(|(k, _)| *k) {
            self.entries.remove(&k);
        }
    }

    /// Records a namespace by hand (tests).
    #[cfg(test)]
    pub fn insert(&mut self, ino: u64, name: Option<&str>, container: Option<Container>, ifaces: &[(u32, &str)]) {
        let e = self.entries.entry(ino).or_default();
        e.name = name.map(String::from);
        e.container = container;
        e.seen = Some(Instant::now());
        e.ifaces.extend(ifaces.iter().map(|(i, n)| (*i, n.to_string())));
    }

    /// The namespace as events name it, with the container that owns it.
    pub fn netns(&self, ino: u64) -> NetnsId {
        let e = self.entries.get(&ino);
        NetnsId {
            inode: ino,
            name: e.and_then(|e| e.name.clone()),
            owner: e.and_then(|e| e.container.clone()),
            host: self.host == Some(ino),
        }
    }

    pub fn ifname(&self, ino: u64, ifindex: u32) -> Option<String> {
        self.entries.get(&ino).and_then(|e| e.ifaces.get(&ifindex).cloned())
    }

    /// [`NetnsId::label`]; `?` for no namespace at all (inode 0).
    #[cfg(test)]
    pub fn label(&self, ino: u64) -> String {
        if ino == 0 {
            return "?".into();
        }
        self.netns(ino).label().into_owned()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Chooses namespaces at each scan (see [`NsNames::selected`]).
pub type Selector = Box<dyn Fn(&Netns) -> bool + Send>;

/// The thread that keeps an [`NsNames`] current. Dropping it stops it.
pub struct Refresher {
    pub table: Arc<RwLock<NsNames>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Refresher {
    /// Starts the thread after a first scan made here, so the first events
    /// are already named.
    pub fn start(host: Option<u64>, select: Option<Selector>) -> Self {
        let table = Arc::new(RwLock::new(NsNames::new(host)));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reg = Registry::new();
        scan(&mut reg, &table, select.as_ref());
        let (t, s) = (table.clone(), stop.clone());
        let handle = thread::Builder::new()
            .name("tracer-nsnames".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // Short sleeps: a stop is seen within 50 ms.
                    let until = Instant::now() + REFRESH_INTERVAL;
                    while Instant::now() < until && !s.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(50));
                    }
                    if !s.load(Ordering::Relaxed) {
                        scan(&mut reg, &t, select.as_ref());
                    }
                }
            })
            .ok();
        Self { table, stop, handle }
    }
}

fn scan(reg: &mut Registry, table: &RwLock<NsNames>, select: Option<&Selector>) {
    if reg.rescan(true).is_err() {
        return;
    }
    let list: Vec<Netns> = reg.namespaces().cloned().collect();
    if let Ok(mut t) = table.write() {
        t.update(Instant::now(), &list);
        if let Some(f) = select {
            t.selected = list.iter().filter(|n| f(n)).map(|n| n.inode).collect();
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What names the namespace and interface of an event: [`NsNames`], or
/// the TC layer's topology when packets are traced too (the default job).
pub trait Naming {
    /// The namespace as events name it, with the container that owns it.
    fn netns_id(&self, ino: u64) -> NetnsId;
    /// The interface's name, when known.
    fn ifname_of(&self, ino: u64, ifindex: u32) -> Option<String>;
}

impl Naming for NsNames {
    fn netns_id(&self, ino: u64) -> NetnsId {
        self.netns(ino)
    }
    fn ifname_of(&self, ino: u64, ifindex: u32) -> Option<String> {
        self.ifname(ino, ifindex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::Iface;

    fn netns(inode: u64, name: Option<&str>, ifaces: &[(u32, &str)]) -> Netns {
        Netns {
            inode,
            names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
            interfaces: ifaces
                .iter()
                .map(|(i, n)| Iface { ifindex: *i, name: n.to_string(), kind: None, master: None, peer: None, up: true })
                .collect(),
            cookie: None,
            pids: vec![],
            container: None,
            containers: vec![],
            host_containers: vec![],
            path: Default::default(),
            mounts: vec![],
            error: None,
        }
    }

    #[test]
    fn labels_and_interfaces() {
        let mut t = NsNames::new(Some(1));
        let now = Instant::now();
        t.update(now, &[netns(1, None, &[(1, "lo")]), netns(2, Some("lab-a"), &[(2, "eth0")]), netns(3, None, &[])]);
        assert_eq!((t.label(1), t.label(2), t.label(3), t.label(0)), ("host".into(), "lab-a".into(), "3".into(), "?".into()));
        assert_eq!(t.ifname(2, 2).as_deref(), Some("eth0"));
        assert_eq!(t.ifname(2, 9), None);
        t.insert(4, None, Some(Container { runtime: "docker".into(), id: "0123456789abcdef".into(), name: None, pod: None }), &[]);
        assert_eq!(t.label(4), "0123456789ab");
        // A namespace not seen for FORGET_AFTER is forgotten.
        t.update(now + FORGET_AFTER + Duration::from_secs(1), &[netns(2, Some("lab-a"), &[])]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.ifname(2, 2).as_deref(), Some("eth0"), "kept while the namespace lives");
    }

    #[test]
    fn bounded() {
        let mut t = NsNames::new(None);
        let now = Instant::now();
        let many: Vec<Netns> = (1..=(MAX_NAMESPACES as u64 + 10)).map(|i| netns(i, None, &[])).collect();
        t.update(now, &many);
        assert_eq!(t.len(), MAX_NAMESPACES);
        let ifs: Vec<(u32, String)> = (1..=(MAX_IFACES as u32 + 10)).map(|i| (i, format!("v{i}"))).collect();
        let refs: Vec<(u32, &str)> = ifs.iter().map(|(i, n)| (*i, n.as_str())).collect();
        t.update(now, &[netns(1, None, &refs)]);
        assert!(t.ifname(1, MAX_IFACES as u32 + 5).is_none());
        assert!(t.ifname(1, 5).is_some());
    }
}
