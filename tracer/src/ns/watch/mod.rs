//! A per-namespace interface table kept current from the kernel's own
//! rtnetlink notifications, and those notifications as events: what `ip
//! monitor link address route` prints, for every namespace at once, with
//! names that survive the deletion of what they name.
//!
//! # Design
//!
//! *One socket, no socket inside the namespaces.* A netlink socket holds
//! the namespace it was made in alive: one socket per watched namespace
//! (the obvious design) would keep a namespace and its veths alive after
//! `ip netns del` or a container's exit, which a tracer must not do
//! (measured on 6.18: the host end of the veth stayed until the socket was
//! closed). So the watcher has one socket in its own ("home") namespace
//! with `NETLINK_LISTEN_ALL_NSID` (Linux 4.6): it receives the
//! notifications of every namespace home has an *nsid* for, each datagram
//! tagged with that nsid. The kernel gives a namespace an id when a link
//! crosses into it (a veth peer, a move), which is how containers come to
//! exist; [`Watcher::watch`] gives one to a namespace that has none
//! (`RTM_NEWNSID`, the one change the watcher makes: visible in `ip netns
//! list-id`, gone with the namespace). Dumps of another namespace use
//! `IFLA_TARGET_NETNSID`/`IFA_TARGET_NETNSID` (Linux 4.20), so reading a
//! namespace never enters it either. Namespace fds are only held for the
//! moment of a call (an open fd holds a namespace alive too).
//!
//! *Identity.* Namespaces are tracked by [`NsHandle`]s that are never
//! reused; home's nsid for a namespace maps to its handle from
//! `RTM_NEWNSID` to `RTM_DELNSID` (sent when it is destroyed; nsids and
//! inodes are reused at once after that). The inode and cookie are bound
//! when known: given to [`Watcher::watch`], or found by opening the
//! namespace files of processes and bind mounts and asking which nsid each
//! has (`follow`). Another namespace's nsids (`IFLA_LINK_NETNSID` of its
//! veths, `IFLA_NEW_NETNSID` of its moves) are translated into home's with
//! an nsid dump targeted at it (`NETNSA_CURRENT_NSID`).
//!
//! *The table starts complete and stays so.* The subscription is made
//! first, then home and every namespace it has an id for are dumped; the
//! notifications buffered meanwhile are applied after (each carries a
//! link's full state, so replaying them converges). A receive-buffer
//! overrun (ENOBUFS) re-reads every namespace and reports the differences
//! as events (`source: Dump`). A namespace that appears while running is
//! read at once and its links reported as added: the kernel announces a
//! veth end created in a new namespace before home has an id for it, so
//! that notification never reaches home.
//!
//! *What the kernel sends* (Linux 6.18, measured): a move (`ip link set X
//! netns Y`) is an `RTM_DELLINK` in the old namespace carrying
//! `IFLA_NEW_NETNSID` and `IFLA_NEW_IFINDEX`, preceded by `RTM_NEWNSID`
//! when the old namespace had no id for the new one, then an `RTM_NEWLINK`
//! in the new one; the table records both ends ([`Watcher::moved`]). A
//! veth created with its peer in another namespace announces the peer
//! there with `IFLA_LINK` 0 (`@NONE`), so the peer is found from the other
//! end ([`Watcher::peer`]). The bridge sends `AF_BRIDGE` link messages for
//! its ports; their `RTM_DELLINK` means "left the bridge", not "deleted".
//! Address and route notifications carry the requester's portid and
//! sequence number; link notifications carry 0 even for `NLM_F_ECHO`
//! requests, so the netlink audit must match those by object.
//!
//! *Threads.* One thread polls the monitor socket and an eventfd (commands,
//! stop); nothing in it blocks the tokio loop. Events go out through a
//! bounded tokio channel (full: dropped and counted); queries read the
//! table through an `RwLock` the thread holds only while applying a
//! message. Dropping the [`Watcher`] stops and joins the thread and closes
//! every fd.
//!
//! *Bounds* ([`Limits`]): namespaces (gone ones evicted first, then new
//! ones refused), links per namespace and in total (new ones refused),
//! addresses per link (oldest evicted), tombstones (oldest evicted, 30 s),
//! events per channel; all counted in [`Stats`].

mod render;
mod run;
mod sock;
mod table;
mod types;

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, RwLock, mpsc},
    thread::JoinHandle,
    time::Duration,
};

pub use msg::{NextHop, RouteMsg as Route};
pub use types::{
    Addr, AddrView, EventKind, Limits, Link, LinkState, LinkView, Move, NsHandle, NsInfo, Place, RouteView, Stats, SyncReason, Tomb,
};

use run::{Cmd, Worker};
use crate::{
    ns::rtnl::{Rtnl, msg},
    sys::netns,
};
use table::Table;

/// How the watcher runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub limits: Limits,
    /// Capacity of the event channel.
    pub channel: usize,
    /// Find the inode of each namespace that appears (by scanning process
    /// and bind-mount namespace files), and at start give every namespace
    /// found an id (with `assign_nsids`) so all of them are watched.
    pub follow: bool,
    /// Give a namespace that has no id in the home namespace one, so its
    /// notifications reach the watcher.
    pub assign_nsids: bool,
    /// Receive buffer of the monitor socket.
    pub rcvbuf: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { limits: Limits::default(), channel: 4096, follow: true, assign_nsids: true, rcvbuf: 8 << 20 }
    }
}

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A kernel notification.
    Notification,
    /// Reading a namespace whole (it appeared, or notifications were lost),
    /// or the watcher's own bookkeeping.
    Dump,
}

/// One change, in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub ns: NsHandle,
    /// The namespace's inode, when known.
    pub inode: Option<u64>,
    /// CLOCK_MONOTONIC when it was read (the clock of `bpf_ktime_get_ns`).
    pub time_ns: u64,
    /// `nlmsg_pid`: the portid of the request that caused it, 0 when the
    /// kernel did it by itself (or does not say, as for links).
    pub portid: u32,
    /// `nlmsg_seq` of that request.
    pub seq: u32,
    pub source: Source,
    pub kind: EventKind,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot open an rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot start the interface watcher thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{0} is not a network namespace: {1}")]
    NotNetns(String, #[source] std::io::Error),
    #[error("cannot open {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("cannot ask for or give a namespace id: {0}")]
    Nsid(#[source] std::io::Error),
    #[error("{0} has no namespace id here and giving one is turned off")]
    NoNsid(String),
    #[error("the interface table is full ({0} namespaces)")]
    Full(usize),
    #[error("the interface watcher is busy; try again")]
    Busy,
    #[error("the interface watcher did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the interface watcher has stopped")]
    Stopped,
}

/// The running watcher: queries go to its table, events come out of the
/// receiver [`Watcher::start`] returned.
pub struct Watcher {
    table: Arc<RwLock<Table>>,
    cmds: mpsc::SyncSender<Cmd>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

/// Commands waiting for the thread at most.
const CMD_QUEUE: usize = 256;
/// How long `start` waits for the initial dumps.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Watcher {
    /// Subscribes, reads the initial state of every namespace (returns once
    /// it is in the table), and starts the thread.
    pub fn start(cfg: Config) -> Result<(Watcher, tokio::sync::mpsc::Receiver<Event>), WatchError> {
        let (tx, rx) = tokio::sync::mpsc::channel(cfg.channel.max(1));
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(CMD_QUEUE);
        let wake = Arc::new(sock::eventfd().map_err(WatchError::Socket)?);
        let table = Arc::new(RwLock::new(Table::new(cfg.limits.clone(), None, None)));
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), WatchError>>(1);
        let (t2, w2) = (table.clone(), wake.clone());
        let thread = std::thread::Builder::new()
            .name("tracer-ifwatch".into())
            .spawn(move || {
                // Everything is opened on this thread, in the namespace it
                // starts in: the process's own.
                let opened = (|| {
                    let home_fd = netns::own_netns().map_err(WatchError::Socket)?;
                    let mon = sock::Monitor::open(cfg.rcvbuf).map_err(WatchError::Socket)?;
                    let req = Rtnl::open().map_err(WatchError::Socket)?;
                    Ok::<_, WatchError>((home_fd, mon, req))
                })();
                let (home_fd, mon, req) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let home_ino = netns::netns_inode(home_fd.as_fd()).ok();
                let cookie = mon.cookie();
                *t2.write().unwrap_or_else(|e| e.into_inner()) = Table::new(cfg.limits.clone(), home_ino, cookie);
                let mut w = Worker { mon, req, home_fd, table: t2, tx, cmds: cmd_rx, wake: w2, cfg, scan: None, last_scan: std::time::Instant::now(), last_resync: std::time::Instant::now(), resync: None };
                w.start();
                let _ = ready_tx.send(Ok(()));
                w.run();
            })
            .map_err(WatchError::Thread)?;
        let watcher = Watcher { table, cmds: cmd_tx, wake, thread: Some(thread) };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok((watcher, rx)),
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(WatchError::Timeout(START_TIMEOUT)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(WatchError::Stopped),
        }
    }

    fn send(&self, cmd: Cmd) -> Result<(), WatchError> {
        self.cmds.try_send(cmd).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => WatchError::Busy,
            mpsc::TrySendError::Disconnected(_) => WatchError::Stopped,
        })?;
        sock::wake(self.wake.as_fd());
        Ok(())
    }

    /// Starts watching the namespace open as `ns` (the fd is duplicated
    /// and closed once done). Returns at once; the outcome arrives as
    /// events (`NamespaceAppeared`/`Synced`, `NamespaceIdentified`).
    pub fn watch(&self, ns: BorrowedFd<'_>, label: Option<String>) -> Result<(), WatchError> {
        let fd = ns.try_clone_to_owned().map_err(|e| WatchError::NotNetns(format!("fd {}", ns.as_raw_fd()), e))?;
        self.send(Cmd::Watch { fd, label, path: None, reply: None })
    }

    /// As [`Watcher::watch`], waiting up to `timeout` for the namespace to
    /// be in the table. Blocks: call it at start or from a blocking task.
    pub fn watch_blocking(&self, ns: BorrowedFd<'_>, label: Option<String>, timeout: Duration) -> Result<NsInfo, WatchError> {
        let fd = ns.try_clone_to_owned().map_err(|e| WatchError::NotNetns(format!("fd {}", ns.as_raw_fd()), e))?;
        self.watch_owned(fd, label, None, timeout)
    }

    /// Opens a namespace file (`/run/netns/X`, `/proc/PID/ns/net`) and
    /// watches it, waiting up to `timeout`.
    pub fn watch_path(&self, path: &Path, label: Option<String>, timeout: Duration) -> Result<NsInfo, WatchError> {
        let f = std::fs::File::open(path).map_err(|e| WatchError::Open(path.to_path_buf(), e))?;
        self.watch_owned(f.into(), label, Some(path.to_path_buf()), timeout)
    }

    fn watch_owned(&self, fd: OwnedFd, label: Option<String>, path: Option<PathBuf>, timeout: Duration) -> Result<NsInfo, WatchError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Cmd::Watch { fd, label, path, reply: Some(tx) })?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => WatchError::Timeout(timeout),
            mpsc::RecvTimeoutError::Disconnected => WatchError::Stopped,
        })?
    }

    /// Names a namespace (a container's name, say) for text output.
    pub fn set_label(&self, ns: NsHandle, label: String) -> Result<(), WatchError> {
        self.send(Cmd::Label(ns, label))
    }

    fn t(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The watcher's own namespace.
    pub fn home(&self) -> NsHandle {
        self.t().home()
    }

    pub fn info(&self, ns: NsHandle) -> Option<NsInfo> {
        self.t().info(ns)
    }

    /// The namespace with this inode: the live one, else the one gone last.
    pub fn by_inode(&self, inode: u64) -> Option<NsHandle> {
        self.t().by_inode(inode)
    }

    pub fn namespaces(&self) -> Vec<NsInfo> {
        self.t().namespaces()
    }

    /// What to call a namespace: its label, else `inode N`, else `nsid N`.
    pub fn label(&self, ns: NsHandle) -> String {
        label_of(&self.t(), ns).unwrap_or_else(|| format!("ns#{}", ns.0))
    }

    /// The name of a live link, or of one deleted within the tombstone time.
    pub fn name(&self, ns: NsHandle, ifindex: u32) -> Option<String> {
        self.t().name(ns, ifindex)
    }

    /// A live link, or the tombstone of a recently deleted one.
    pub fn link(&self, ns: NsHandle, ifindex: u32) -> Option<LinkState> {
        self.t().link(ns, ifindex)
    }

    pub fn index(&self, ns: NsHandle, name: &str) -> Option<u32> {
        self.t().index(ns, name)
    }

    /// The other end of a veth: its namespace and ifindex.
    pub fn peer(&self, ns: NsHandle, ifindex: u32) -> Option<(NsHandle, u32)> {
        self.t().peer(ns, ifindex)
    }

    pub fn addresses(&self, ns: NsHandle, ifindex: u32) -> Vec<Addr> {
        self.t().addresses(ns, ifindex)
    }

    pub fn links(&self, ns: NsHandle) -> Vec<Link> {
        self.t().links(ns)
    }

    /// Where a link went (asked by its old place) or came from (by its new one).
    pub fn moved(&self, ns: NsHandle, ifindex: u32) -> Option<Move> {
        self.t().moved(ns, ifindex)
    }

    /// The namespace `ns` calls `nsid` (e.g. a veth's `IFLA_LINK_NETNSID`).
    pub fn resolve_nsid(&self, ns: NsHandle, nsid: i32) -> Option<NsHandle> {
        self.t().resolve(ns, nsid)
    }

    pub fn stats(&self) -> Stats {
        self.t().stats()
    }

    /// The event as one line of `ip monitor` text (without the namespace).
    pub fn render(&self, ev: &Event) -> String {
        let t = self.t();
        render::line(&ev.kind, &|h| label_of(&t, h))
    }
}

fn label_of(t: &Table, ns: NsHandle) -> Option<String> {
    let i = t.info(ns)?;
    i.label.or_else(|| i.inode.map(|n| format!("inode {n}"))).or_else(|| i.nsid.map(|n| format!("nsid {n}")))
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A full queue still ends the thread: it reads Stop after the rest.
        let _ = self.cmds.send(Cmd::Stop);
        sock::wake(self.wake.as_fd());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Entry points for the integration tests, which drive the watcher
/// through the library (there is no command for it yet).
pub mod testing {
    use std::time::Duration;

    pub use super::{Config, Event, EventKind, Source, Watcher};

    /// Holds the table's lock for `d`, as a slow reader would: the thread
    /// cannot apply notifications meanwhile, so a burst overruns the
    /// socket's buffer (for testing the recovery).
    pub fn stall(w: &Watcher, d: Duration) {
        let _held = w.t();
        std::thread::sleep(d);
    }
}
