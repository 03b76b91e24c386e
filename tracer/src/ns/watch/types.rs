//! The data the watcher hands out: namespaces, links, addresses, places,
//! the events, the bounds and the counters. Plain values, cloned out of
//! the table so no lock is held while a consumer looks at them.

use std::{net::IpAddr, path::PathBuf};

use crate::ns::rtnl::msg::{AddrMsg, LinkMsg, RouteMsg};

/// A namespace the watcher tracks. Handles are never reused within one
/// watcher, unlike inodes and nsids, which the kernel reuses at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsHandle(pub u64);

/// The bounds of every table.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Namespaces tracked, live and recently gone; gone ones are evicted
    /// first, and when all are live a new one is refused (counted).
    pub namespaces: usize,
    /// Live links in one namespace; more are not stored (counted), their
    /// notifications are still passed on.
    pub links_per_ns: usize,
    /// Live links in all namespaces together.
    pub links_total: usize,
    /// Addresses of one link; the oldest is evicted (counted).
    pub addrs_per_link: usize,
    /// Tombstones (deleted links) in all namespaces; the oldest is evicted (counted).
    pub tombstones: usize,
    /// How long a deleted link, or a gone namespace, can still be named.
    pub tombstone_ns: u64,
    /// How long after its deletion a link that reappears elsewhere counts as moved.
    pub move_window_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            namespaces: 1024,
            links_per_ns: 4096,
            links_total: 65536,
            addrs_per_link: 64,
            tombstones: 8192,
            tombstone_ns: 30_000_000_000,
            move_window_ns: 10_000_000_000,
        }
    }
}

/// What the watcher counted: sizes now, and everything a bound turned
/// away or the kernel lost.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub namespaces: usize,
    pub links: usize,
    pub tombstones: usize,
    /// Namespaces not tracked because the table was full of live ones.
    pub ns_refused: u64,
    /// Gone namespaces dropped before their time to make room.
    pub ns_evicted: u64,
    pub links_refused: u64,
    pub addrs_evicted: u64,
    pub tombs_evicted: u64,
    /// Events not delivered because the consumer's channel was full.
    pub events_dropped: u64,
    /// Receive buffer overruns (ENOBUFS): notifications the kernel dropped.
    pub overruns: u64,
    /// Re-dumps of namespaces after an overrun or an inconsistent dump.
    pub resyncs: u64,
    pub malformed: u64,
    /// Notifications from namespaces not tracked (refused, or unknown).
    pub untracked: u64,
    pub dump_errors: u64,
}

/// A namespace as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsInfo {
    pub handle: NsHandle,
    /// The watcher's own namespace.
    pub home: bool,
    /// The id the watcher's namespace gives it (`None` for home itself).
    pub nsid: Option<i32>,
    pub inode: Option<u64>,
    /// `SO_NETNS_COOKIE` (Linux 5.14+), when it could be read.
    pub cookie: Option<u64>,
    /// What to call it: `host`, a `/run/netns` name, or what the consumer set.
    pub label: Option<String>,
    /// A file it was found by (a bind mount, `/proc/PID/ns/net`), to enter
    /// it, e.g. to attach there; check its inode first: it may be gone.
    pub path: Option<PathBuf>,
    /// When it went away (monotonic ns), if it did.
    pub gone: Option<u64>,
}

/// An IP address of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub family: u8,
    pub local: IpAddr,
    pub prefixlen: u8,
    /// The other end of a point-to-point address, when it differs.
    pub peer: Option<IpAddr>,
    pub broadcast: Option<IpAddr>,
    pub scope: u8,
    pub flags: u32,
    pub label: Option<String>,
    pub metric: Option<u32>,
}

impl Addr {
    pub(crate) fn from_msg(m: &AddrMsg) -> Option<Addr> {
        let local = m.addr()?;
        Some(Addr {
            family: m.family,
            local,
            prefixlen: m.prefixlen,
            peer: m.address.filter(|a| *a != local),
            broadcast: m.broadcast,
            scope: m.scope,
            flags: m.flags,
            label: m.label.clone(),
            metric: m.metric,
        })
    }

    pub(crate) fn same(&self, o: &Addr) -> bool {
        self.family == o.family && self.local == o.local && self.prefixlen == o.prefixlen && self.peer == o.peer
    }
}

/// A place a link was or went: a namespace (when it could be resolved),
/// the id the reporting namespace gave it, and the ifindex there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub ns: Option<NsHandle>,
    pub netnsid: Option<i32>,
    pub ifindex: u32,
}

/// One link, as the kernel last described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    /// At most 15 bytes (IFNAMSIZ - 1), invalid UTF-8 as U+FFFD.
    pub name: String,
    pub kind: Option<String>,
    pub arptype: u16,
    pub master: Option<u32>,
    /// `IFLA_LINK` as sent: `Some(0)` for "has none (yet)", e.g. a veth end
    /// created in another namespace than its peer.
    pub link: Option<u32>,
    /// The namespace of `link`, as this namespace numbers it.
    pub link_netnsid: Option<i32>,
    /// `IFF_*`.
    pub flags: u32,
    /// `IF_OPER_*`: 2 down, 3 lower layer down, 6 up, 0 unknown.
    pub operstate: u8,
    pub carrier: Option<bool>,
    pub mtu: u32,
    pub lladdr: Option<Vec<u8>>,
    pub addrs: Vec<Addr>,
    /// Where it came from, when it arrived by a move.
    pub moved_from: Option<Place>,
}

pub const IFF_UP: u32 = 0x1;

impl Link {
    pub(crate) fn from_msg(m: &LinkMsg, old: Option<&Link>) -> Link {
        Link {
            ifindex: m.ifindex,
            name: m.name.clone().or_else(|| old.map(|o| o.name.clone())).unwrap_or_default(),
            kind: m.kind.clone().or_else(|| old.and_then(|o| o.kind.clone())),
            arptype: m.arptype,
            // A full link message names its master whenever it has one.
            master: m.master,
            link: m.link,
            link_netnsid: m.link_netnsid,
            flags: m.flags,
            operstate: m.operstate.or(old.map(|o| o.operstate)).unwrap_or(0),
            carrier: m.carrier.map(|c| c != 0).or(old.and_then(|o| o.carrier)),
            mtu: m.mtu.or(old.map(|o| o.mtu)).unwrap_or(0),
            lladdr: m.lladdr.clone().or_else(|| old.and_then(|o| o.lladdr.clone())),
            addrs: old.map(|o| o.addrs.clone()).unwrap_or_default(),
            moved_from: old.and_then(|o| o.moved_from.clone()),
        }
    }

    /// The same link state, addresses and history aside.
    pub(crate) fn same_state(&self, o: &Link) -> bool {
        Link { addrs: Vec::new(), moved_from: None, ..self.clone() } == Link { addrs: Vec::new(), moved_from: None, ..o.clone() }
    }

    pub fn up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// A link event: the link and the names that go with it when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub link: Link,
    pub master_name: Option<String>,
    /// The peer (`IFLA_LINK`) resolved: namespace, ifindex, name.
    pub peer: Option<(Option<NsHandle>, u32, Option<String>)>,
    /// The peer is in the same namespace and down (`ip` prints `M-DOWN`).
    pub peer_down: bool,
    /// On a delete that is a move: where it went.
    pub moved_to: Option<Place>,
    /// `IFLA_EVENT`.
    pub event: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrView {
    pub ifindex: u32,
    pub dev: Option<String>,
    pub addr: Addr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub route: RouteMsg,
    pub dev: Option<String>,
    /// Names of the multipath next hops' devices, in order.
    pub nexthop_devs: Vec<Option<String>>,
}

/// Why a namespace's links and addresses were read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncReason {
    /// At start, or when first watched: the table's starting point.
    Initial,
    /// It appeared while running: what was in it is reported as added.
    Appeared,
    /// Notifications were lost: the differences are reported.
    Resync,
}

/// What happened, in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    LinkAdded(LinkView),
    LinkChanged(LinkView),
    LinkDeleted(LinkView),
    /// The bridge's view of a port changed (`AF_BRIDGE` RTM_NEWLINK).
    PortChanged(LinkView),
    /// A port left its bridge (`AF_BRIDGE` RTM_DELLINK); the link stays.
    PortDeleted(LinkView),
    AddrAdded(AddrView),
    AddrDeleted(AddrView),
    RouteAdded(RouteView),
    RouteDeleted(RouteView),
    /// This namespace gave another one an id.
    NsidAdded { nsid: i32, peer: Option<NsHandle> },
    NsidDeleted { nsid: i32, peer: Option<NsHandle> },
    /// A namespace the watcher did not track: the signal to follow it.
    NamespaceAppeared { nsid: i32 },
    /// Its inode (and cookie) became known.
    NamespaceIdentified { inode: u64, cookie: Option<u64>, label: Option<String>, path: Option<PathBuf> },
    /// It was destroyed; its links are tombstones now.
    NamespaceGone,
    Synced { reason: SyncReason, links: usize, addrs: usize },
}

/// A deleted link, kept to name late events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tomb {
    pub link: Link,
    pub deleted_at: u64,
    pub moved_to: Option<Place>,
}

/// A link as a query finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Live(Link),
    /// Deleted within the tombstone time.
    Deleted(Tomb),
}

/// A link that changed namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub name: String,
    pub from: Place,
    pub to: Place,
}
