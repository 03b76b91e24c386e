//! The watcher thread: one `poll` over the monitor socket and a wake-up
//! eventfd; reads notifications, resolves the nsids they mention, applies
//! them to the table under its lock, and hands the events out. Dumps and
//! nsid questions go through the request socket, synchronously (each is
//! answered in well under a millisecond; a dying namespace is bounded by
//! the socket's 2 s timeout), while the monitor socket buffers what
//! arrives meanwhile.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::PathBuf,
    sync::{Arc, RwLock, mpsc},
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{Sender, error::TrySendError};

use super::{
    Config, Event, Source, WatchError,
    msg::{AddrMsg, Body, LinkMsg, Msg, RTM_NEWLINK, RTM_NEWNSID, Request, split},
    sock::{self, DATAGRAM_MAX, Monitor},
    table::{Out, Table},
    types::{EventKind, NsHandle, NsInfo, SyncReason},
};
use crate::{
    ns::rtnl::Rtnl,
    sys::{clock::Clock, netns},
};

/// Datagrams read per wake-up before commands and timers get a turn.
const READS_PER_WAKE: usize = 256;
/// How often tombstones are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// When to look for the inode of a namespace that appeared, after it did:
/// its bind mount or first process may come a moment later.
const SCAN_DELAYS: [Duration; 4] = [Duration::ZERO, Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(2)];
/// Least time between two re-reads of every namespace.
const RESYNC_GAP: Duration = Duration::from_millis(500);
/// Least time between two scans for namespace files.
const SCAN_GAP: Duration = Duration::from_millis(20);
/// Tries of a dump the kernel marks as interrupted (the table changed meanwhile).
const DUMP_TRIES: usize = 3;

pub(crate) type Reply = mpsc::SyncSender<Result<NsInfo, WatchError>>;

pub(crate) enum Cmd {
    Watch { fd: OwnedFd, label: Option<String>, path: Option<PathBuf>, reply: Option<Reply> },
    Label(NsHandle, String),
    Stop,
}

pub(crate) struct Worker {
    pub mon: Monitor,
    pub req: Rtnl,
    pub home_fd: OwnedFd,
    pub table: Arc<RwLock<Table>>,
    pub tx: Sender<Event>,
    pub cmds: mpsc::Receiver<Cmd>,
    pub wake: Arc<OwnedFd>,
    pub cfg: Config,
    /// Namespaces whose inode is still unknown: next scan and tries made.
    pub scan: Option<(Instant, usize)>,
    pub last_scan: Instant,
    pub last_resync: Instant,
    /// A re-read of every namespace is due (after an overrun), not before this.
    pub resync: Option<Instant>,
}

fn now_ns() -> u64 {
    Clock::now_mono_ns()
}

impl Worker {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands events out; a full channel drops them (counted), a closed one
    /// (consumer gone) is ignored: the table stays current for queries.
    fn emit(&self, outs: Vec<Out>, hdr: (u32, u32), source: Source, time_ns: u64) {
        if outs.is_empty() {
            return;
        }
        let evs: Vec<Event> = {
            let t = self.read();
            outs.into_iter()
                .map(|(ns, kind)| Event { ns, inode: t.info(ns).and_then(|i| i.inode), time_ns, portid: hdr.0, seq: hdr.1, source, kind })
                .collect()
        };
        let mut dropped = 0;
        for ev in evs {
            if let Err(TrySendError::Full(_)) = self.tx.try_send(ev) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.write().stats.events_dropped += dropped;
        }
    }

    /// The initial state: the home namespace and every namespace it has an
    /// id for, read whole; then, when following, the inodes of those and
    /// (with `assign_nsids`) ids for the namespaces that have none.
    pub fn start(&mut self) {
        let home = self.read().home();
        self.sync(home, SyncReason::Initial);
        for nsid in self.home_nsids() {
            self.ensure_ns(nsid, SyncReason::Initial);
        }
        if self.cfg.follow {
            self.identify(true);
        }
    }

    pub fn run(mut self) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        loop {
            let now = Instant::now();
            let mut deadline = next_expire;
            if let Some((at, _)) = self.scan {
                deadline = deadline.min(at);
            }
            if let Some(at) = self.resync {
                deadline = deadline.min(at);
            }
            let ready = sock::poll(&[self.mon.fd(), self.wake.as_raw_fd()], deadline.saturating_duration_since(now));
            if ready.get(1).copied().unwrap_or(false) {
                sock::drain(self.wake.as_fd());
            }
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    Cmd::Stop => return,
                    Cmd::Label(h, l) => self.write().set_label(h, l),
                    Cmd::Watch { fd, label, path, reply } => {
                        let r = self.watch(fd.as_fd(), label, path);
                        drop(fd);
                        if let Some(reply) = reply {
                            let _ = reply.try_send(r);
                        }
                    }
                }
            }
            if ready.first().copied().unwrap_or(false) {
                self.read_notifications(&mut buf);
            }
            if self.resync.is_some_and(|at| at <= Instant::now()) {
                self.resync = None;
                self.last_resync = Instant::now();
                self.resync_all();
            }
            if self.scan.is_some_and(|(at, _)| at <= Instant::now()) {
                self.identify(false);
            }
            if Instant::now() >= next_expire {
                self.write().expire(now_ns());
                next_expire = Instant::now() + EXPIRE_EVERY;
            }
        }
    }

    fn read_notifications(&mut self, buf: &mut [u8]) {
        for _ in 0..READS_PER_WAKE {
            match self.mon.recv(buf) {
                Ok(None) => return,
                Ok(Some((n, nsid, truncated))) => {
                    if truncated {
                        self.write().stats.malformed += 1;
                    }
                    self.datagram(nsid, &buf[..n.min(buf.len())]);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped notifications: which ones is unknown,
                    // so every namespace is read again and compared.
                    self.write().stats.overruns += 1;
                    // Spaced out: a namespace that floods the socket must not
                    // make the watcher re-read every namespace without pause.
                    self.resync = Some(Instant::now().max(self.last_resync + RESYNC_GAP));
                }
                Err(_) => return,
            }
        }
    }

    fn datagram(&mut self, nsid: Option<i32>, data: &[u8]) {
        let time = now_ns();
        let h = match nsid {
            None => Some(self.read().home()),
            Some(n) => self.ensure_ns(n, SyncReason::Appeared),
        };
        let Some(h) = h else {
            self.write().stats.untracked += 1;
            return;
        };
        for m in split(data) {
            let Ok(m) = m else {
                self.write().stats.malformed += 1;
                continue;
            };
            self.prepare(h, &m);
            let outs = self.write().apply(h, &m, time);
            self.emit(outs, (m.hdr.pid, m.hdr.seq), Source::Notification, time);
        }
    }

    /// Learns what the message refers to before it is applied: namespaces
    /// the home namespace just gave an id, and what another namespace's
    /// nsids mean.
    fn prepare(&mut self, h: NsHandle, m: &Msg) {
        let home = self.read().home();
        let mut ids: Vec<i32> = Vec::new();
        match &m.body {
            Body::Link(l) => ids.extend(l.link_netnsid.into_iter().chain(l.new_netnsid)),
            Body::Nsid(n) if m.hdr.ty == RTM_NEWNSID => {
                if let Some(id) = n.nsid.filter(|i| *i >= 0) {
                    if h == home {
                        // A new id at home may name what others' ids meant.
                        self.write().forget_unresolved();
                        self.ensure_ns(id, SyncReason::Appeared);
                        return;
                    }
                    self.refresh_xlate(h);
                    return;
                }
            }
            _ => {}
        }
        for id in ids {
            if h == home {
                self.ensure_ns(id, SyncReason::Appeared);
            } else if self.read().needs_xlate(h, id) {
                self.refresh_xlate(h);
                // Not in its table (any more): not asked again per message.
                self.write().unresolved(h, id);
            }
        }
    }

    /// The namespace home calls `nsid`, tracking (and reading) it first
    /// when it is new. `None` when the table is full.
    fn ensure_ns(&mut self, nsid: i32, reason: SyncReason) -> Option<NsHandle> {
        if let Some(h) = self.read().by_nsid(nsid) {
            return Some(h);
        }
        let h = self.write().add_ns(nsid).ok()?;
        let t = now_ns();
        if reason == SyncReason::Appeared {
            self.emit(vec![(h, EventKind::NamespaceAppeared { nsid })], (0, 0), Source::Dump, t);
        }
        self.refresh_xlate(h);
        self.sync(h, reason);
        if self.cfg.follow {
            // A new namespace is looked for at once (even when a retry for
            // another is pending), but scans are spaced out: a burst of new
            // namespaces costs one scan every SCAN_GAP, not one each.
            let at = (Instant::now() + SCAN_DELAYS[0]).max(self.last_scan + SCAN_GAP);
            self.scan = Some((self.scan.map_or(at, |(t, _)| t.min(at)), 0));
        }
        Some(h)
    }

    fn dump(&mut self, req: Request) -> io::Result<Vec<Msg>> {
        for _ in 0..DUMP_TRIES {
            let d = self.req.ask(&req, true)?;
            if d.malformed > 0 {
                self.write().stats.malformed += d.malformed;
            }
            if !d.interrupted {
                return Ok(d.msgs);
            }
            self.write().stats.resyncs += 1;
        }
        Err(io::Error::new(io::ErrorKind::Interrupted, "the dump kept changing"))
    }

    /// Reads a namespace's links and addresses whole and gives them to the table.
    fn sync(&mut self, h: NsHandle, reason: SyncReason) {
        let Some(info) = self.read().info(h) else { return };
        let target = info.nsid;
        let links = self.dump(Request::DumpLinks(target));
        let addrs = self.dump(Request::DumpAddrs(target));
        let (Ok(links), Ok(addrs)) = (links, addrs) else {
            self.write().stats.dump_errors += 1;
            return;
        };
        let links: Vec<LinkMsg> =
            links.into_iter().filter(|m| m.hdr.ty == RTM_NEWLINK).filter_map(|m| if let Body::Link(l) = m.body { Some(l) } else { None }).collect();
        let addrs: Vec<AddrMsg> = addrs.into_iter().filter_map(|m| if let Body::Addr(a) = m.body { Some(a) } else { None }).collect();
        let t = now_ns();
        let outs = self.write().sync(h, &links, &addrs, reason, t);
        self.emit(outs, (0, 0), Source::Dump, t);
    }

    /// The nsids home has given other namespaces.
    fn home_nsids(&mut self) -> Vec<i32> {
        match self.dump(Request::DumpNsids(None)) {
            Ok(msgs) => msgs.into_iter().filter_map(|m| if let Body::Nsid(n) = m.body { n.nsid.filter(|i| *i >= 0) } else { None }).collect(),
            Err(_) => {
                self.write().stats.dump_errors += 1;
                Vec::new()
            }
        }
    }

    /// Reads what namespace `h` calls the others, in home's ids.
    fn refresh_xlate(&mut self, h: NsHandle) {
        let Some(nsid) = self.read().info(h).and_then(|i| i.nsid) else { return };
        let mut map = HashMap::new();
        if let Ok(msgs) = self.dump(Request::DumpNsids(Some(nsid))) {
            for m in msgs {
                if let Body::Nsid(n) = m.body
                    && let Some(id) = n.nsid.filter(|i| *i >= 0)
                {
                    map.insert(id, n.current.unwrap_or(-1));
                }
            }
        }
        let fd = self.home_fd.as_raw_fd() as u32;
        let home_id = self.req.ask(&Request::NsidOfFd { fd, target: Some(nsid) }, false).ok().and_then(|d| {
            d.msgs.into_iter().find_map(|m| if let Body::Nsid(n) = m.body { n.nsid.filter(|i| *i >= 0) } else { None })
        });
        self.write().set_xlate(h, map, home_id);
    }

    /// The id home gives the namespace open as `fd` (-1 for none).
    fn nsid_of(&mut self, fd: BorrowedFd<'_>) -> io::Result<i32> {
        let d = self.req.ask(&Request::NsidOfFd { fd: fd.as_raw_fd() as u32, target: None }, false)?;
        Ok(d.msgs.into_iter().find_map(|m| if let Body::Nsid(n) = m.body { n.nsid } else { None }).unwrap_or(-1))
    }

    /// Starts watching the namespace open as `fd`: gives it an id here if
    /// it has none (the kernel then sends its notifications to the monitor
    /// socket), reads it, and records its identity.
    fn watch(&mut self, fd: BorrowedFd<'_>, label: Option<String>, path: Option<PathBuf>) -> Result<NsInfo, WatchError> {
        let what = || path.as_ref().map_or_else(|| format!("fd {}", fd.as_raw_fd()), |p| p.display().to_string());
        let inode = netns::netns_inode(fd).map_err(|e| WatchError::NotNetns(what(), e))?;
        let home = self.read().home();
        let h = if self.read().info(home).and_then(|i| i.inode) == Some(inode) {
            home
        } else {
            let mut id = self.nsid_of(fd).map_err(WatchError::Nsid)?;
            if id < 0 && self.cfg.assign_nsids {
                self.req.ask(&Request::AssignNsid { fd: fd.as_raw_fd() as u32 }, false).map_err(WatchError::Nsid)?;
                id = self.nsid_of(fd).map_err(WatchError::Nsid)?;
            }
            if id < 0 {
                return Err(WatchError::NoNsid(what()));
            }
            self.ensure_ns(id, SyncReason::Initial).ok_or(WatchError::Full(self.cfg.limits.namespaces))?
        };
        let cookie = netns::cookie_of(fd);
        let out = self.write().bind(h, inode, cookie, label, path);
        self.emit(out.into_iter().collect(), (0, 0), Source::Dump, now_ns());
        self.read().info(h).ok_or(WatchError::Stopped)
    }

    /// Finds the inodes of namespaces known only by their nsid, by opening
    /// the namespace files of processes and bind mounts and asking for the
    /// id home gives each. At start (`assign`), namespaces without an id
    /// get one and are read.
    fn identify(&mut self, assign: bool) {
        let tries = self.scan.map_or(0, |(_, n)| n);
        self.scan = None;
        self.last_scan = Instant::now();
        let Ok(src) = super::super::scan(false) else { return };
        let mut candidates: Vec<(u64, PathBuf, Option<String>)> = Vec::new();
        for (ino, mounts) in &src.mounts {
            if let Some((p, name)) = mounts.iter().find(|(_, n)| n.is_some()).or(mounts.first()) {
                candidates.push((*ino, p.clone(), name.clone()));
            }
        }
        for (ino, pids) in &src.pids {
            if !src.mounts.contains_key(ino)
                && let Some(p) = pids.first()
            {
                candidates.push((*ino, PathBuf::from(format!("/proc/{}/ns/net", p.pid)), None));
            }
        }
        for (ino, path, name) in candidates {
            let known = {
                let t = self.read();
                t.by_inode(ino).and_then(|h| t.info(h)).is_some_and(|i| i.gone.is_none())
            };
            if known {
                continue;
            }
            let Ok(f) = std::fs::File::open(&path) else { continue };
            if netns::netns_inode(f.as_fd()).ok() != Some(ino) {
                continue;
            }
            let Ok(id) = self.nsid_of(f.as_fd()) else { continue };
            if id >= 0 {
                let reason = if assign { SyncReason::Initial } else { SyncReason::Appeared };
                if let Some(h) = self.ensure_ns(id, reason) {
                    let out = self.write().bind(h, ino, netns::cookie_of(f.as_fd()), name, Some(path));
                    self.emit(out.into_iter().collect(), (0, 0), Source::Dump, now_ns());
                }
            } else if assign && self.cfg.assign_nsids {
                let _ = self.watch(f.as_fd(), name, Some(path));
            }
        }
        self.scan = None;
        let unknown = self.read().namespaces().iter().any(|i| !i.home && i.gone.is_none() && i.inode.is_none());
        if unknown && tries + 1 < SCAN_DELAYS.len() {
            self.scan = Some((Instant::now() + SCAN_DELAYS[tries + 1], tries + 1));
        }
    }

    /// After lost notifications: namespaces whose id went away are gone,
    /// new ids are followed, and every namespace is read and compared.
    fn resync_all(&mut self) {
        self.write().stats.resyncs += 1;
        let now = now_ns();
        let ids = self.home_nsids();
        let live = self.read().live_nsids();
        for (h, n) in &live {
            if !ids.contains(n) {
                let outs = self.write().ns_gone(*h, now);
                self.emit(outs, (0, 0), Source::Dump, now);
            }
        }
        // An id freed and given again during the overrun names another
        // namespace now: check the ones whose file is known.
        for (h, n) in live.iter().filter(|(_, n)| ids.contains(n)) {
            let Some(path) = self.read().path(*h) else { continue };
            let inode = self.read().info(*h).and_then(|i| i.inode);
            let same = std::fs::File::open(&path)
                .ok()
                .filter(|f| netns::netns_inode(f.as_fd()).ok() == inode)
                .is_some_and(|f| self.nsid_of(f.as_fd()).ok() == Some(*n));
            if !same {
                let outs = self.write().ns_gone(*h, now);
                self.emit(outs, (0, 0), Source::Dump, now);
            }
        }
        let live = self.read().live_nsids();
        let home = self.read().home();
        self.sync(home, SyncReason::Resync);
        for (h, _) in live.iter().filter(|(_, n)| ids.contains(n)) {
            self.refresh_xlate(*h);
            self.sync(*h, SyncReason::Resync);
        }
        for id in ids {
            self.ensure_ns(id, SyncReason::Appeared);
        }
    }
}
