//! The interface table: per namespace, its links (with their addresses)
//! as the kernel last described them, recently deleted links kept as
//! tombstones, where moved links went, and how each namespace numbers the
//! others (nsids). Pure logic: it is fed decoded messages and a clock
//! value, does no I/O, and is unit-tested with synthetic messages.
//!
//! Every collection is bounded (see [`Limits`]); what a bound turns away
//! is counted in [`Stats`].

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
};

use super::{
    msg::{AF_BRIDGE, AddrMsg, Body, Hdr, LinkMsg, Msg, NsidMsg, RTM_DELLINK, RouteMsg},
    types::{Addr, AddrView, EventKind, Limits, Link, LinkState, LinkView, Move, NsHandle, NsInfo, Place, RouteView, Stats, SyncReason, Tomb},
};

struct NsEntry {
    info: NsInfo,
    links: BTreeMap<u32, Link>,
    /// This namespace's nsid for another -> the home namespace's id for
    /// the same one (-1: home has none).
    xlate: HashMap<i32, i32>,
    /// This namespace's id for the home namespace.
    home_id: Option<i32>,
}

/// Longest label kept (bytes; container names can be long, not unbounded).
const LABEL_MAX: usize = 256;

fn cap_label(mut l: String) -> String {
    if l.len() > LABEL_MAX {
        let mut cut = LABEL_MAX;
        while !l.is_char_boundary(cut) {
            cut -= 1;
        }
        l.truncate(cut);
    }
    l
}

/// Entries in one namespace's nsid translation cache at most.
const XLATE_MAX: usize = 1024;

pub struct Table {
    limits: Limits,
    next: u64,
    ns: BTreeMap<NsHandle, NsEntry>,
    by_nsid: HashMap<i32, NsHandle>,
    by_inode: HashMap<u64, NsHandle>,
    tombs: HashMap<(NsHandle, u32), Tomb>,
    tomb_order: VecDeque<(u64, NsHandle, u32)>,
    total_links: usize,
    pub(crate) stats: Stats,
}

/// An event for one namespace, as the table produces them.
pub type Out = (NsHandle, EventKind);

impl Table {
    /// A table holding the home namespace (handle 0, label `host`).
    pub fn new(limits: Limits, home_inode: Option<u64>, home_cookie: Option<u64>) -> Table {
        let mut t = Table {
            limits,
            next: 1,
            ns: BTreeMap::new(),
            by_nsid: HashMap::new(),
            by_inode: HashMap::new(),
            tombs: HashMap::new(),
            tomb_order: VecDeque::new(),
            total_links: 0,
            stats: Stats::default(),
        };
        let h = NsHandle(0);
        let info = NsInfo {
            handle: h,
            home: true,
            nsid: None,
            inode: home_inode,
            cookie: home_cookie,
            label: Some("host".into()),
            path: Some("/proc/self/ns/net".into()),
            gone: None,
        };
        t.ns.insert(h, NsEntry { info, links: BTreeMap::new(), xlate: HashMap::new(), home_id: None });
        if let Some(i) = home_inode {
            t.by_inode.insert(i, h);
        }
        t
    }

    pub fn home(&self) -> NsHandle {
        NsHandle(0)
    }

    /// The namespace the home namespace calls `nsid`, if tracked.
    pub fn by_nsid(&self, nsid: i32) -> Option<NsHandle> {
        self.by_nsid.get(&nsid).copied()
    }

    /// Starts tracking the namespace home calls `nsid`. `Err(())`: the
    /// table is full of live namespaces (counted).
    pub fn add_ns(&mut self, nsid: i32) -> Result<NsHandle, ()> {
        if let Some(h) = self.by_nsid.get(&nsid) {
            return Ok(*h);
        }
        if self.ns.len() >= self.limits.namespaces {
            let oldest_gone = self.ns.values().filter_map(|e| e.info.gone.map(|g| (g, e.info.handle))).min();
            match oldest_gone {
                Some((_, h)) => {
                    self.ns.remove(&h);
                    self.stats.ns_evicted += 1;
                }
                None => {
                    self.stats.ns_refused += 1;
                    return Err(());
                }
            }
        }
        let h = NsHandle(self.next);
        self.next += 1;
        let info = NsInfo { handle: h, home: false, nsid: Some(nsid), inode: None, cookie: None, label: None, path: None, gone: None };
        self.ns.insert(h, NsEntry { info, links: BTreeMap::new(), xlate: HashMap::new(), home_id: None });
        self.by_nsid.insert(nsid, h);
        Ok(h)
    }

    /// Records a live namespace's identity. Returns the event when it is news.
    pub fn bind(&mut self, h: NsHandle, inode: u64, cookie: Option<u64>, label: Option<String>, path: Option<PathBuf>) -> Option<Out> {
        let e = self.ns.get_mut(&h)?;
        if e.info.gone.is_some() {
            return None;
        }
        let label = label.map(cap_label).or_else(|| e.info.label.clone());
        let news = e.info.inode != Some(inode) || (cookie.is_some() && e.info.cookie != cookie) || e.info.label != label;
        e.info.inode = Some(inode);
        e.info.cookie = cookie.or(e.info.cookie);
        e.info.label = label.clone();
        if path.is_some() {
            e.info.path = path;
        }
        let (cookie, path) = (e.info.cookie, e.info.path.clone());
        self.by_inode.insert(inode, h);
        news.then_some((h, EventKind::NamespaceIdentified { inode, cookie, label, path }))
    }

    pub fn set_label(&mut self, h: NsHandle, label: String) {
        if let Some(e) = self.ns.get_mut(&h) {
            e.info.label = Some(cap_label(label));
        }
    }

    pub fn path(&self, h: NsHandle) -> Option<PathBuf> {
        self.ns.get(&h).and_then(|e| e.info.path.clone())
    }

    /// Replaces what `h` calls the others: `map` is its nsid -> home's nsid.
    pub fn set_xlate(&mut self, h: NsHandle, map: HashMap<i32, i32>, home_id: Option<i32>) {
        if let Some(e) = self.ns.get_mut(&h) {
            e.xlate = map.into_iter().take(XLATE_MAX).collect();
            e.home_id = home_id;
        }
    }

    /// Forgets the nsids no namespace could be found for, after the home
    /// namespace gave a new id (which may be what they meant).
    pub fn forget_unresolved(&mut self) {
        for e in self.ns.values_mut() {
            e.xlate.retain(|_, m| *m >= 0);
        }
    }

    /// Records that `nsid`, as `h` numbers namespaces, names nothing home
    /// knows (unless it was translated meanwhile).
    pub fn unresolved(&mut self, h: NsHandle, nsid: i32) {
        if let Some(e) = self.ns.get_mut(&h)
            && e.xlate.len() < XLATE_MAX
        {
            e.xlate.entry(nsid).or_insert(-1);
        }
    }

    /// Whether `nsid`, as `h` numbers namespaces, still needs translating.
    pub fn needs_xlate(&self, h: NsHandle, nsid: i32) -> bool {
        self.ns.get(&h).is_some_and(|e| !e.info.home && e.home_id != Some(nsid) && !e.xlate.contains_key(&nsid))
    }

    /// The namespace `h` calls `nsid`.
    pub fn resolve(&self, h: NsHandle, nsid: i32) -> Option<NsHandle> {
        let e = self.ns.get(&h)?;
        if e.info.home {
            return self.by_nsid(nsid);
        }
        if e.home_id == Some(nsid) {
            return Some(self.home());
        }
        e.xlate.get(&nsid).filter(|m| **m >= 0).and_then(|m| self.by_nsid(*m))
    }

    /// The namespace is gone: its links become tombstones.
    pub fn ns_gone(&mut self, h: NsHandle, now: u64) -> Vec<Out> {
        let Some(e) = self.ns.get_mut(&h) else { return Vec::new() };
        if e.info.gone.is_some() || e.info.home {
            return Vec::new();
        }
        e.info.gone = Some(now);
        let links = std::mem::take(&mut e.links);
        if let Some(n) = e.info.nsid {
            self.by_nsid.remove(&n);
        }
        if let Some(i) = e.info.inode
            && self.by_inode.get(&i) == Some(&h)
        {
            self.by_inode.remove(&i);
        }
        self.total_links -= links.len();
        for (_, l) in links {
            self.tomb(h, l, None, now);
        }
        vec![(h, EventKind::NamespaceGone)]
    }

    fn tomb(&mut self, h: NsHandle, link: Link, moved_to: Option<Place>, now: u64) {
        while self.tomb_order.len() >= self.limits.tombstones {
            if let Some((at, th, ti)) = self.tomb_order.pop_front() {
                self.drop_tomb(at, th, ti);
                self.stats.tombs_evicted += 1;
            }
        }
        let ifindex = link.ifindex;
        self.tombs.insert((h, ifindex), Tomb { link, deleted_at: now, moved_to });
        self.tomb_order.push_back((now, h, ifindex));
    }

    /// Removes a tombstone unless a newer one replaced it.
    fn drop_tomb(&mut self, at: u64, h: NsHandle, ifindex: u32) {
        if self.tombs.get(&(h, ifindex)).is_some_and(|t| t.deleted_at == at) {
            self.tombs.remove(&(h, ifindex));
        }
    }

    /// Forgets tombstones and gone namespaces older than their time.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.limits.tombstone_ns;
        while let Some(&(at, h, i)) = self.tomb_order.front() {
            if now.saturating_sub(at) < ttl {
                break;
            }
            self.tomb_order.pop_front();
            self.drop_tomb(at, h, i);
        }
        self.ns.retain(|_, e| e.info.gone.is_none_or(|g| now.saturating_sub(g) < ttl));
    }

    fn insert_link(&mut self, h: NsHandle, link: Link) {
        let total_full = self.total_links >= self.limits.links_total;
        let per_ns = self.limits.links_per_ns;
        let Some(e) = self.ns.get_mut(&h) else { return };
        if e.links.contains_key(&link.ifindex) {
            e.links.insert(link.ifindex, link);
        } else if total_full || e.links.len() >= per_ns {
            self.stats.links_refused += 1;
        } else {
            e.links.insert(link.ifindex, link);
            self.total_links += 1;
        }
    }

    /// A live or tombstoned link.
    fn any_link(&self, h: NsHandle, ifindex: u32) -> Option<&Link> {
        self.ns.get(&h).and_then(|e| e.links.get(&ifindex)).or_else(|| self.tombs.get(&(h, ifindex)).map(|t| &t.link))
    }

    fn view(&self, h: NsHandle, link: Link, moved_to: Option<Place>, event: Option<u32>) -> LinkView {
        let master_name = link.master.and_then(|m| self.any_link(h, m)).map(|m| m.name.clone());
        let mut peer_down = false;
        let peer = match (link.link, link.link_netnsid) {
            (Some(0) | None, _) => None,
            (Some(p), None) => {
                let pl = self.any_link(h, p);
                peer_down = pl.is_some_and(|l| !l.up());
                Some((Some(h), p, pl.map(|l| l.name.clone())))
            }
            (Some(p), Some(n)) => {
                let pns = self.resolve(h, n);
                Some((pns, p, pns.and_then(|ns| self.any_link(ns, p)).map(|l| l.name.clone())))
            }
        };
        LinkView { link, master_name, peer, peer_down, moved_to, event }
    }

    /// Where a link that just appeared in `h` was deleted from, if it moved.
    fn move_origin(&mut self, h: NsHandle, link: &Link, now: u64) -> Option<Place> {
        let window = self.limits.move_window_ns;
        let mut inferred = None;
        for &(at, th, ti) in self.tomb_order.iter().rev() {
            if now.saturating_sub(at) > window {
                break;
            }
            if th == h {
                continue;
            }
            let Some(t) = self.tombs.get(&(th, ti)).filter(|t| t.deleted_at == at) else { continue };
            let same_hw = t.link.lladdr.is_some() && t.link.lladdr == link.lladdr && t.link.kind == link.kind;
            match &t.moved_to {
                Some(p) if p.ns == Some(h) && p.ifindex == link.ifindex => {
                    return Some(Place { ns: Some(th), netnsid: None, ifindex: ti });
                }
                // The old namespace's id for this one could not be resolved
                // when it was deleted there: the new ifindex and the hardware
                // address decide, and the tombstone learns where it went.
                Some(p) if p.ns.is_none() && p.ifindex == link.ifindex && same_hw => {
                    if let Some(t) = self.tombs.get_mut(&(th, ti))
                        && let Some(p) = t.moved_to.as_mut()
                    {
                        p.ns = Some(h);
                    }
                    return Some(Place { ns: Some(th), netnsid: None, ifindex: ti });
                }
                // Kernels before 4.15 send no IFLA_NEW_NETNSID: same address,
                // kind and name, deleted just before, is taken as a move.
                None if same_hw && t.link.name == link.name && inferred.is_none() && now.saturating_sub(at) < 2_000_000_000 => {
                    inferred = Some((th, ti));
                }
                _ => {}
            }
        }
        let (th, ti) = inferred?;
        if let Some(t) = self.tombs.get_mut(&(th, ti)) {
            t.moved_to = Some(Place { ns: Some(h), netnsid: None, ifindex: link.ifindex });
        }
        Some(Place { ns: Some(th), netnsid: None, ifindex: ti })
    }

    /// Applies one notification received from namespace `h`.
    pub fn apply(&mut self, h: NsHandle, msg: &Msg, now: u64) -> Vec<Out> {
        if self.ns.get(&h).is_none_or(|e| e.info.gone.is_some()) {
            self.stats.untracked += 1;
            return Vec::new();
        }
        match &msg.body {
            Body::Link(l) => self.apply_link(h, &msg.hdr, l, now),
            Body::Addr(a) => self.apply_addr(h, &msg.hdr, a),
            Body::Route(r) => {
                let view = self.route_view(h, r);
                vec![(h, if msg.hdr.is_del() { EventKind::RouteDeleted(view) } else { EventKind::RouteAdded(view) })]
            }
            Body::Nsid(n) => self.apply_nsid(h, &msg.hdr, n, now),
            Body::Done | Body::Error(_) | Body::Stats(_) | Body::Other => Vec::new(),
        }
    }

    fn apply_link(&mut self, h: NsHandle, hdr: &Hdr, m: &LinkMsg, now: u64) -> Vec<Out> {
        let del = hdr.ty == RTM_DELLINK;
        let old = self.ns.get(&h).and_then(|e| e.links.get(&m.ifindex)).cloned();
        if m.family == AF_BRIDGE {
            // The bridge's view of a port: merged, never the link's end.
            let mut link = old.clone().unwrap_or_else(|| Link::from_msg(m, None));
            if !del {
                link.master = m.master.or(link.master);
                link.operstate = m.operstate.unwrap_or(link.operstate);
                link.flags = m.flags;
                link.mtu = m.mtu.unwrap_or(link.mtu);
                if old.is_some() {
                    self.insert_link(h, link.clone());
                }
            }
            let view = self.view(h, link, None, m.event);
            return vec![(h, if del { EventKind::PortDeleted(view) } else { EventKind::PortChanged(view) })];
        }
        if del {
            if old.is_some()
                && let Some(e) = self.ns.get_mut(&h)
            {
                e.links.remove(&m.ifindex);
                self.total_links -= 1;
            }
            let link = Link::from_msg(m, old.as_ref());
            let moved_to = m.new_netnsid.map(|n| Place {
                ns: self.resolve(h, n),
                netnsid: Some(n),
                ifindex: m.new_ifindex.and_then(|i| u32::try_from(i).ok()).unwrap_or(m.ifindex),
            });
            self.tomb(h, link.clone(), moved_to.clone(), now);
            let view = self.view(h, link, moved_to, m.event);
            return vec![(h, EventKind::LinkDeleted(view))];
        }
        let mut link = Link::from_msg(m, old.as_ref());
        if old.is_none() {
            link.moved_from = self.move_origin(h, &link, now);
        }
        self.insert_link(h, link.clone());
        let view = self.view(h, link, None, m.event);
        vec![(h, if old.is_none() { EventKind::LinkAdded(view) } else { EventKind::LinkChanged(view) })]
    }

    fn apply_addr(&mut self, h: NsHandle, hdr: &Hdr, m: &AddrMsg) -> Vec<Out> {
        let Some(addr) = Addr::from_msg(m) else {
            self.stats.malformed += 1;
            return Vec::new();
        };
        let del = hdr.is_del();
        let cap = self.limits.addrs_per_link;
        let mut evicted = 0;
        if let Some(l) = self.ns.get_mut(&h).and_then(|e| e.links.get_mut(&m.ifindex)) {
            l.addrs.retain(|a| !a.same(&addr));
            if !del {
                while l.addrs.len() >= cap {
                    l.addrs.remove(0);
                    evicted += 1;
                }
                l.addrs.push(addr.clone());
            }
        }
        self.stats.addrs_evicted += evicted;
        let view = AddrView { ifindex: m.ifindex, dev: self.any_link(h, m.ifindex).map(|l| l.name.clone()), addr };
        vec![(h, if del { EventKind::AddrDeleted(view) } else { EventKind::AddrAdded(view) })]
    }

    fn route_view(&self, h: NsHandle, r: &RouteMsg) -> RouteView {
        let name = |i: u32| self.any_link(h, i).map(|l| l.name.clone());
        RouteView { route: r.clone(), dev: r.oif.and_then(name), nexthop_devs: r.multipath.iter().map(|n| name(n.ifindex)).collect() }
    }

    fn apply_nsid(&mut self, h: NsHandle, hdr: &Hdr, m: &NsidMsg, now: u64) -> Vec<Out> {
        let Some(nsid) = m.nsid.filter(|n| *n >= 0) else { return Vec::new() };
        let peer = self.resolve(h, nsid);
        if !hdr.is_del() {
            return vec![(h, EventKind::NsidAdded { nsid, peer })];
        }
        let mut out = vec![(h, EventKind::NsidDeleted { nsid, peer })];
        let home = self.ns.get(&h).is_some_and(|e| e.info.home);
        if home {
            // The kernel takes a namespace's ids back when it is destroyed.
            if let Some(p) = peer {
                out.extend(self.ns_gone(p, now));
            }
        } else if let Some(e) = self.ns.get_mut(&h) {
            e.xlate.remove(&nsid);
            if e.home_id == Some(nsid) {
                e.home_id = None;
            }
        }
        out
    }

    /// Replaces a namespace's links and addresses with a dump of them. For
    /// [`SyncReason::Initial`] only a `Synced` event results; otherwise the
    /// differences are reported as events too.
    pub fn sync(&mut self, h: NsHandle, links: &[LinkMsg], addrs: &[AddrMsg], reason: SyncReason, now: u64) -> Vec<Out> {
        let emit = reason != SyncReason::Initial;
        let mut out = Vec::new();
        let Some(e) = self.ns.get(&h) else { return out };
        let old: BTreeMap<u32, Link> = e.links.clone();
        let mut by_if: HashMap<u32, Vec<Addr>> = HashMap::new();
        for a in addrs {
            if let Some(x) = Addr::from_msg(a) {
                let v = by_if.entry(a.ifindex).or_default();
                if v.len() < self.limits.addrs_per_link {
                    v.push(x);
                } else {
                    self.stats.addrs_evicted += 1;
                }
            }
        }
        let mut seen = Vec::new();
        for m in links.iter().filter(|m| m.family != AF_BRIDGE) {
            let prev = old.get(&m.ifindex);
            let mut link = Link::from_msg(m, prev);
            link.addrs = by_if.remove(&m.ifindex).unwrap_or_default();
            seen.push(m.ifindex);
            match prev {
                None => {
                    if emit {
                        link.moved_from = self.move_origin(h, &link, now);
                    }
                    self.insert_link(h, link.clone());
                    if emit {
                        out.push((h, EventKind::LinkAdded(self.view(h, link.clone(), None, None))));
                        for a in &link.addrs {
                            out.push((h, EventKind::AddrAdded(AddrView { ifindex: link.ifindex, dev: Some(link.name.clone()), addr: a.clone() })));
                        }
                    }
                }
                Some(p) => {
                    self.insert_link(h, link.clone());
                    if !emit {
                        continue;
                    }
                    if !link.same_state(p) {
                        out.push((h, EventKind::LinkChanged(self.view(h, link.clone(), None, None))));
                    }
                    let dev = Some(link.name.clone());
                    for a in p.addrs.iter().filter(|a| !link.addrs.iter().any(|b| b.same(a))) {
                        out.push((h, EventKind::AddrDeleted(AddrView { ifindex: link.ifindex, dev: dev.clone(), addr: a.clone() })));
                    }
                    for a in link.addrs.iter().filter(|a| !p.addrs.iter().any(|b| b.same(a))) {
                        out.push((h, EventKind::AddrAdded(AddrView { ifindex: link.ifindex, dev: dev.clone(), addr: a.clone() })));
                    }
                }
            }
        }
        for (i, l) in old {
            if seen.contains(&i) {
                continue;
            }
            if let Some(e) = self.ns.get_mut(&h)
                && e.links.remove(&i).is_some()
            {
                self.total_links -= 1;
            }
            self.tomb(h, l.clone(), None, now);
            if emit {
                out.push((h, EventKind::LinkDeleted(self.view(h, l, None, None))));
            }
        }
        let (nl, na) = self.ns.get(&h).map(|e| (e.links.len(), e.links.values().map(|l| l.addrs.len()).sum())).unwrap_or((0, 0));
        out.push((h, EventKind::Synced { reason, links: nl, addrs: na }));
        out
    }

    // ---- queries ----

    pub fn info(&self, h: NsHandle) -> Option<NsInfo> {
        self.ns.get(&h).map(|e| e.info.clone())
    }

    /// The namespace with this inode: the live one, else the one gone last.
    pub fn by_inode(&self, inode: u64) -> Option<NsHandle> {
        if let Some(h) = self.by_inode.get(&inode) {
            return Some(*h);
        }
        self.ns.values().filter(|e| e.info.inode == Some(inode)).max_by_key(|e| e.info.gone).map(|e| e.info.handle)
    }

    pub fn namespaces(&self) -> Vec<NsInfo> {
        self.ns.values().map(|e| e.info.clone()).collect()
    }

    /// Live namespaces other than home, with their home nsid.
    pub fn live_nsids(&self) -> Vec<(NsHandle, i32)> {
        self.by_nsid.iter().map(|(n, h)| (*h, *n)).collect()
    }

    /// The name of a live link, or of one deleted within the tombstone time.
    pub fn name(&self, h: NsHandle, ifindex: u32) -> Option<String> {
        self.any_link(h, ifindex).map(|l| l.name.clone())
    }

    /// A live link, or the tombstone of a deleted one.
    pub fn link(&self, h: NsHandle, ifindex: u32) -> Option<LinkState> {
        if let Some(l) = self.ns.get(&h).and_then(|e| e.links.get(&ifindex)) {
            return Some(LinkState::Live(l.clone()));
        }
        self.tombs.get(&(h, ifindex)).map(|t| LinkState::Deleted(t.clone()))
    }

    /// The live link called `name`.
    pub fn index(&self, h: NsHandle, name: &str) -> Option<u32> {
        self.ns.get(&h)?.links.values().find(|l| l.name == name).map(|l| l.ifindex)
    }

    pub fn links(&self, h: NsHandle) -> Vec<Link> {
        self.ns.get(&h).map(|e| e.links.values().cloned().collect()).unwrap_or_default()
    }

    pub fn addresses(&self, h: NsHandle, ifindex: u32) -> Vec<Addr> {
        self.any_link(h, ifindex).map(|l| l.addrs.clone()).unwrap_or_default()
    }

    /// The other end of a veth (or the lower device of a macvlan/vlan):
    /// from the link's own `IFLA_LINK`, else from a link that names it as
    /// its peer (a veth end created in another namespace than its peer is
    /// announced before the peer exists, with no `IFLA_LINK`).
    pub fn peer(&self, h: NsHandle, ifindex: u32) -> Option<(NsHandle, u32)> {
        let l = self.any_link(h, ifindex)?;
        match (l.link, l.link_netnsid) {
            (Some(p), None) if p != 0 => return Some(self.follow(h, p)),
            (Some(p), Some(n)) if p != 0 => {
                if let Some(ns) = self.resolve(h, n) {
                    return Some(self.follow(ns, p));
                }
            }
            _ => {}
        }
        if l.kind.as_deref() != Some("veth") {
            return None;
        }
        for (oh, e) in &self.ns {
            for o in e.links.values().filter(|o| o.link == Some(ifindex)) {
                let target = match o.link_netnsid {
                    None => Some(*oh),
                    Some(n) => self.resolve(*oh, n),
                };
                if target == Some(h) && (*oh, o.ifindex) != (h, ifindex) {
                    return Some((*oh, o.ifindex));
                }
            }
        }
        None
    }

    /// Where the link at (h, ifindex) is now: the kernel does not announce
    /// that a veth's peer moved to another namespace (the end that stayed
    /// keeps its old `IFLA_LINK` until its next change), so a peer that is
    /// a tombstone of a move is followed to where it went.
    fn follow(&self, mut h: NsHandle, mut ifindex: u32) -> (NsHandle, u32) {
        for _ in 0..8 {
            if self.ns.get(&h).is_some_and(|e| e.links.contains_key(&ifindex)) {
                break;
            }
            match self.tombs.get(&(h, ifindex)).and_then(|t| t.moved_to.as_ref()).and_then(|p| Some((p.ns?, p.ifindex))) {
                Some(next) => (h, ifindex) = next,
                None => break,
            }
        }
        (h, ifindex)
    }

    /// Whether (and where) a link moved: asked of the namespace it left
    /// (by its old ifindex) or of the one it arrived in (by its new one).
    pub fn moved(&self, h: NsHandle, ifindex: u32) -> Option<Move> {
        if let Some(l) = self.ns.get(&h).and_then(|e| e.links.get(&ifindex))
            && let Some(from) = &l.moved_from
        {
            return Some(Move { name: l.name.clone(), from: from.clone(), to: Place { ns: Some(h), netnsid: None, ifindex } });
        }
        let t = self.tombs.get(&(h, ifindex))?;
        let to = t.moved_to.clone()?;
        Some(Move { name: t.link.name.clone(), from: Place { ns: Some(h), netnsid: None, ifindex }, to })
    }

    pub fn stats(&self) -> Stats {
        Stats { namespaces: self.ns.len(), links: self.total_links, tombstones: self.tombs.len(), ..self.stats.clone() }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
