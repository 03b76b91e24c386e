//! The correlator's use of the interface watcher ([`crate::ns::watch`]):
//! links named from its table (deleted ones from their tombstones, moved
//! ones where they went), target namespaces found from where a link
//! reappeared, and its notifications put under the requests that caused
//! them ([`super::super::effects`]) or queued to print on their own.
//!
//! Bounded: [`CHANGES_MAX`] notifications wait for a request,
//! [`EFFECTS_MAX`] go under one request, [`RECENT_MAX`] printed requests
//! are remembered (for [`RECENT_NS`]) to name the cause of late ones.

use std::collections::VecDeque;

use serde_json::Value;

use super::{Correlator, NetlinkEvent, decode};
use crate::{
    netlink::effects::{Cause, Change, Objects},
    ns::{
        NsRef,
        watch::{self, NsHandle},
    },
    sys::bounded::BoundedMap,
};

/// A veth's other end: namespace, ifindex, name.
type Peer = (NsHandle, u32, String);

/// Veth pairs remembered, at most.
pub const PEERS_MAX: usize = 8192;

/// How long after it was sent a request waits for its notifications
/// (the watcher thread reads them within a millisecond or two).
pub(super) const EFFECT_WAIT_NS: u64 = 50_000_000;
/// How long a notification waits for the request that caused it: the
/// request's record may be read from the ring buffer after it.
const CHANGE_HOLD_NS: u64 = 150_000_000;

/// A namespace's name as the request that caused a change waited for it.
struct Hint {
    ino: u64,
    name: String,
    /// The container that owns it, when the request's own namespace.
    owner: Option<crate::ns::Container>,
}
/// Notifications waiting for a request, at most (the oldest go out alone).
pub const CHANGES_MAX: usize = 4096;
/// Notifications under one request, at most (the rest print alone).
pub const EFFECTS_MAX: usize = 256;
/// Printed requests remembered to name the cause of late notifications.
pub const RECENT_MAX: usize = 1024;
const RECENT_NS: u64 = 2_000_000_000;

struct Recent {
    ts: u64,
    portid: u32,
    seq: u32,
    objects: Objects,
    cause: Cause,
}

#[derive(Default)]
pub(super) struct Changes {
    waiting: VecDeque<Change>,
    ready: Vec<Change>,
    recent: VecDeque<Recent>,
    /// Veth pairs as notifications last named them: a veth's deletion is
    /// announced after its peer is gone (`@NONE`), so the pair is
    /// remembered from earlier notifications.
    peers: Option<BoundedMap<(NsHandle, u32), Peer>>,
    /// Pushed out of `waiting` before their time by the cap.
    pub(super) early: u64,
    /// Notifications taken, put under a request, printed alone.
    seen: u64,
    attached: u64,
    alone: u64,
}

fn u32_attr(e: &NetlinkEvent, k: &str) -> Option<u32> {
    e.attrs.get(k).and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()).filter(|i| *i != 0)
}

fn str_attr<'a>(e: &'a NetlinkEvent, k: &str) -> Option<&'a str> {
    e.attrs.get(k).and_then(Value::as_str)
}

fn is_link_request(e: &NetlinkEvent) -> bool {
    matches!(e.header.msg_type, 16 | 17 | 19)
}

impl Correlator {
    /// Takes one notification from the watcher: under the request that
    /// caused it when that one is still waiting, else held a moment.
    pub fn push_change(&mut self, ev: &watch::Event) {
        let Some(w) = &self.watcher else { return };
        let Some(mut c) = Change::from_watch(w, ev, self.clock.wall_ns(ev.time_ns)) else { return };
        self.changes.seen += 1;
        self.pair(&mut c);
        if c.netns.inode != 0 {
            self.identities.request((c.netns.inode, 0, 0));
        }
        if let Err(c) = self.attach(c) {
            if self.changes.waiting.len() >= CHANGES_MAX
                && let Some(old) = self.changes.waiting.pop_front()
            {
                self.changes.early += 1;
                self.alone(old);
            }
            self.changes.waiting.push_back(*c);
        }
    }

    /// Learns the veth pair a link change names, and adds the remembered
    /// peer of the link to what the change is about.
    fn pair(&mut self, c: &mut Change) {
        if c.object != "link" {
            return;
        }
        let peers = self.changes.peers.get_or_insert_with(|| BoundedMap::new(PEERS_MAX));
        let me = (c.ns, c.ifindex);
        if let (Some((pns, pidx, Some(pname))), Some(name)) = (&c.peer, &c.ifname) {
            peers.insert(me, (*pns, *pidx, pname.clone()));
            peers.insert((*pns, *pidx), (c.ns, c.ifindex, name.clone()));
        }
        if let Some((pns, pidx, pname)) = peers.get(&me).cloned() {
            if !c.objects.links.contains(&(pns, pidx)) {
                c.objects.links.push((pns, pidx));
            }
            c.objects.names.push((Some(pns), pname));
        }
    }

    /// Puts `c` under the pending request that caused it: the one its
    /// portid/seq names, else (the kernel names none for links) the last
    /// one sent before it that touched one of its objects.
    fn attach(&mut self, c: Change) -> Result<(), Box<Change>> {
        let i = if c.portid != 0 {
            self.pending.iter().rposition(|p| p.e.portid == c.portid && p.e.header.seq == c.seq && p.e.protocol == decode::NETLINK_ROUTE)
        } else {
            self.pending.iter().rposition(|p| p.ts <= c.time_ns && p.e.result.is_none_or(|r| r == 0) && p.e.objects.touches(&c.objects))
        };
        match i.and_then(|i| self.pending.get_mut(i)) {
            Some(p) if p.e.effects.len() < EFFECTS_MAX => {
                self.changes.attached += 1;
                p.e.effects.push(c);
                Ok(())
            }
            _ => Err(Box::new(c)),
        }
    }

    /// Prints `c` on its own, with the request that caused it when one
    /// printed lately is known to have.
    fn alone(&mut self, mut c: Change) {
        let cause = if c.portid != 0 {
            self.changes.recent.iter().rev().find(|r| r.portid == c.portid && r.seq == c.seq)
        } else {
            // Without the kernel's word, only a request answered moments
            // before: a later change of the same link is not its doing.
            self.changes.recent.iter().rev().find(|r| r.ts <= c.time_ns && c.time_ns - r.ts < super::ACK_WAIT_NS && r.objects.touches(&c.objects))
        };
        c.cause = cause.map(|r| r.cause.clone());
        self.name_change(&mut c);
        self.changes.alone += 1;
        self.changes.ready.push(c);
    }

    /// One line for stderr at exit, when the watcher ran.
    pub(super) fn watch_lines(&self) -> Option<String> {
        let w = self.watcher.as_ref()?;
        let s = w.stats();
        let c = &self.changes;
        Some(format!(
            "netlink: {} kernel notifications ({} under the requests that caused them, {} on their own lines; {} held too long, {} dropped by a full channel, {} receive-buffer overruns re-read)",
            c.seen, c.attached, c.alone, c.early, s.events_dropped, s.overruns
        ))
    }

    /// Notifications no request took, to print on their own.
    pub fn changes_ready(&mut self, now_ns: u64, flush_all: bool) -> Vec<Change> {
        let waiting = std::mem::take(&mut self.changes.waiting);
        for c in waiting {
            match self.attach(c) {
                Ok(()) => {}
                Err(c) if flush_all || (now_ns.saturating_sub(c.time_ns) >= CHANGE_HOLD_NS && !self.naming_soon(&c, now_ns)) => self.alone(*c),
                Err(c) => self.changes.waiting.push_back(*c),
            }
        }
        let cutoff = now_ns.saturating_sub(RECENT_NS);
        while self.changes.recent.front().is_some_and(|r| r.ts < cutoff) {
            self.changes.recent.pop_front();
        }
        std::mem::take(&mut self.changes.ready)
    }

    /// Whether a change's namespace is a container's that does not run yet
    /// (see `SANDBOX_WAIT_NS`): the change waits for the name, like the
    /// requests into it.
    fn naming_soon(&mut self, c: &Change, now_ns: u64) -> bool {
        if now_ns.saturating_sub(c.time_ns) >= super::SANDBOX_WAIT_NS {
            return false;
        }
        let Some(w) = self.watcher.clone() else { return false };
        let own = match c.netns.inode {
            0 => w.info(c.ns).and_then(|i| i.inode),
            i => Some(i),
        };
        // Its own namespace and those its line names (`link-netns X`).
        let mut soon = false;
        for ino in own.into_iter().chain(w.mentioned(c.ns, &c.kind)) {
            if self.host == Some(ino) {
                continue;
            }
            let k = (ino, 0, 0);
            self.identities.request(k);
            soon |= self.identities.awaiting(k) || self.identities.get(k).is_some_and(|i| i.starting);
        }
        soon
    }

    /// The wall time of the oldest change still held.
    pub(super) fn oldest_change_wall_ns(&self) -> Option<u64> {
        self.changes.waiting.iter().map(|c| c.wall_ns).min()
    }

    /// A request is printed: its effects get their names, a failed one's
    /// go out alone (it changed nothing), and it is remembered a while.
    pub(super) fn released(&mut self, e: &mut NetlinkEvent, ts: u64) {
        if self.watcher.is_none() {
            return;
        }
        let mut effects = std::mem::take(&mut e.effects);
        if e.result.is_some_and(|r| r != 0) && e.portid == 0 {
            for c in effects.drain(..) {
                self.changes.waiting.push_back(c);
            }
        }
        // The names the request waited for (a container starting is named
        // once it runs): the cached answers for its namespaces may be older.
        let hints: Vec<Hint> = e
            .target_netns
            .as_ref()
            .and_then(|t| Some(Hint { ino: t.inode?, name: t.name.clone()?, owner: None }))
            .into_iter()
            .chain(e.netns.owner.as_ref().and(e.netns.name.clone()).map(|name| Hint { ino: e.netns.inode, name, owner: e.netns.owner.clone() }))
            .collect();
        for c in &mut effects {
            self.name_change_with(c, &hints);
        }
        e.effects = effects;
        if e.protocol != decode::NETLINK_ROUTE || e.is_get() || e.is_probe() {
            return;
        }
        // What it touched when it was read (a deleted link's peer) and
        // what is known now (where a link went).
        let now = self.objects_of(e);
        for l in now.links {
            if !e.objects.links.contains(&l) {
                e.objects.links.push(l);
            }
        }
        for n in now.names {
            if !e.objects.names.contains(&n) {
                e.objects.names.push(n);
            }
        }
        if self.changes.recent.len() >= RECENT_MAX {
            self.changes.recent.pop_front();
        }
        self.changes.recent.push_back(Recent {
            ts,
            portid: e.portid,
            seq: e.header.seq,
            objects: e.objects.clone(),
            cause: Cause { pid: e.pid, comm: e.comm.clone(), msg_type: e.type_name.clone(), seq: e.header.seq },
        });
    }

    /// Names a change's namespace: the container that owns it, else its
    /// `/run/netns` name, else what the watcher calls it.
    fn name_change(&mut self, c: &mut Change) {
        self.name_change_with(c, &[]);
    }

    /// [`Self::name_change`], with the names the request that caused it
    /// waited for, which may be newer than the registry's answers in the
    /// cache: for the change's own namespace and those its line names.
    fn name_change_with(&mut self, c: &mut Change, hints: &[Hint]) {
        // A namespace the watcher had not identified yet when it read the
        // notification may be by now.
        if c.netns.inode == 0
            && let Some(i) = self.watcher.as_ref().and_then(|w| w.info(c.ns)).and_then(|i| i.inode)
        {
            c.netns.inode = i;
            self.identities.request((i, 0, 0));
        }
        c.netns.host = self.host == Some(c.netns.inode);
        if let Some(id) = self.identities.get((c.netns.inode, 0, 0)) {
            c.netns.name = id.netns_name.clone();
            c.netns.owner = id.owner.clone();
            c.container = id.owner.clone();
            // The watcher's own lines (`link-netns X`) name it so too.
            if let (Some(w), Some(o)) = (&self.watcher, &id.owner)
                && w.info(c.ns).is_some_and(|i| i.label.as_deref() != Some(o.label()))
            {
                let _ = w.set_label(c.ns, o.label().to_string());
            }
        }
        if c.netns.owner.is_none()
            && let Some(h) = hints.iter().find(|h| h.ino == c.netns.inode)
        {
            c.netns.name = Some(h.name.clone());
            c.netns.owner = h.owner.clone();
            c.container = h.owner.clone();
        }
        if c.netns.name.is_none() && !c.netns.host {
            c.netns.name = self.enricher.netns_name(c.netns.inode);
        }
        // The namespaces its line names (`link-netns`, `new-netns`), by the
        // same names as everywhere, resolved now rather than when read.
        let Some(w) = self.watcher.clone() else { return };
        let mut names = std::collections::HashMap::new();
        for ino in w.mentioned(c.ns, &c.kind) {
            if names.contains_key(&ino) {
                continue;
            }
            let name = if self.host == Some(ino) {
                Some("host".to_string())
            } else if let Some(h) = hints.iter().find(|h| h.ino == ino) {
                Some(h.name.clone())
            } else {
                self.identities.request((ino, 0, 0));
                let id = self.identities.get((ino, 0, 0));
                id.and_then(|id| id.owner.as_ref().map(|o| o.label().to_string()).or_else(|| id.netns_name.clone()))
                    .or_else(|| self.enricher.netns_name(ino))
            };
            if let Some(n) = name {
                names.insert(ino, n);
            }
        }
        c.line = w.render_now(c.ns, &c.kind, &|ino| names.get(&ino).cloned());
    }

    /// The name of a link (live, deleted lately, or moved away) from the
    /// watcher's table.
    pub(super) fn watched_name(&self, ino: u64, idx: u32) -> Option<String> {
        let w = self.watcher.as_ref()?;
        w.name(w.by_inode(ino)?, idx).filter(|n| !n.is_empty())
    }

    /// What a request touches, to find its notifications by.
    pub(super) fn objects_of(&self, e: &NetlinkEvent) -> Objects {
        let mut o = Objects::default();
        let Some(w) = &self.watcher else { return o };
        let h = w.by_inode(e.netns.inode);
        let th = e.target_netns.as_ref().and_then(|t| t.inode).and_then(|i| w.by_inode(i));
        let of = e.target_netns.as_ref().map(|t| t.of);
        if let Some(h) = h {
            // `ip link del NAME` names the link only by its name.
            let by_name = if is_link_request(e) && u32_attr(e, "ifindex").is_none() && e.target_netns.is_none() {
                str_attr(e, "ifname").and_then(|n| w.index(h, n))
            } else {
                None
            };
            for k in ["ifindex", "master_index", "oif_index"] {
                if let Some(i) = u32_attr(e, k).or(if k == "ifindex" { by_name } else { None }) {
                    o.links.push((h, i));
                    // A veth's other end goes with it (deleted, or its
                    // carrier follows this end's state).
                    if k == "ifindex"
                        && let Some(p) = w.peer(h, i)
                    {
                        o.links.push(p);
                    }
                }
            }
        }
        if !is_link_request(e) {
            return o;
        }
        if let Some(n) = str_attr(e, "ifname") {
            o.names.push((h, n.to_string()));
            if of == Some("link") {
                o.names.push((th, n.to_string()));
            }
        }
        if let Some(p) = e.attrs.get("peer").and_then(|p| p.get("ifname")).and_then(Value::as_str) {
            o.names.push((if of == Some("peer") { th } else { h }, p.to_string()));
        }
        o
    }

    /// Finds the namespace a request moved a link (or put a veth peer)
    /// into when the fd or pid it named no longer tells: from where the
    /// link appeared (its notification there, or the watcher's record of
    /// the move), or, for an nsid, from how the sender's namespace numbers
    /// the others.
    pub(super) fn target_from_watcher(&mut self, e: &mut NetlinkEvent) {
        let Some(w) = self.watcher.clone() else { return };
        let Some(t) = &e.target else { return };
        if e.target_netns.as_ref().is_some_and(|t| t.inode.is_some()) {
            return;
        }
        let h = w.by_inode(e.netns.inode);
        let found: Option<u64> = match (t.of, t.ns) {
            (_, NsRef::Nsid(n)) => h.and_then(|h| w.resolve_nsid(h, n)).and_then(|t| w.info(t)).and_then(|i| i.inode),
            ("link", _) => {
                let name = str_attr(e, "ifname").map(str::to_string);
                let by_move = h
                    .zip(u32_attr(e, "ifindex").or_else(|| h.zip(name.as_deref()).and_then(|(h, n)| w.index(h, n))))
                    .and_then(|(h, i)| w.moved(h, i))
                    .and_then(|m| m.to.ns)
                    .and_then(|t| w.info(t))
                    .and_then(|i| i.inode);
                by_move.or_else(|| {
                    e.effects
                        .iter()
                        .find(|c| c.object == "link" && !c.deleted && Some(c.ns) != h && (name.is_none() || c.ifname == name))
                        .map(|c| c.netns.inode)
                })
            }
            ("peer", _) => {
                let peer = e.attrs.get("peer").and_then(|p| p.get("ifname")).and_then(Value::as_str).map(str::to_string);
                let by_effect = e
                    .effects
                    .iter()
                    .find(|c| c.object == "link" && !c.deleted && Some(c.ns) != h && peer.is_some() && c.ifname == peer)
                    .map(|c| c.netns.inode);
                by_effect.or_else(|| {
                    let h = h?;
                    let i = w.index(h, str_attr(e, "ifname")?)?;
                    let (pns, _) = w.peer(h, i)?;
                    w.info(pns)?.inode
                })
            }
            _ => None,
        };
        let Some(ino) = found.filter(|i| *i != 0) else { return };
        self.identities.request((ino, 0, 0));
        let by = t.ns;
        let of = t.of;
        e.target_netns = Some(crate::ns::TargetNetns { inode: Some(ino), name: None, host: self.host == Some(ino), of, by });
        self.name_target(e);
    }

    /// The target namespace's name: the container that owns it, else its
    /// `/run/netns` name.
    pub(super) fn name_target(&mut self, e: &mut NetlinkEvent) {
        let Some(t) = &mut e.target_netns else { return };
        let Some(ino) = t.inode else { return };
        if let Some(id) = self.identities.get((ino, 0, 0))
            && let Some(n) = id.owner.as_ref().map(|c| c.label().to_string()).or_else(|| id.netns_name.clone())
        {
            t.name = Some(n);
            return;
        }
        if t.name.is_none() {
            self.identities.request((ino, 0, 0));
            t.name = self.enricher.netns_name(ino);
        }
    }
}
