//! What requests did, as the kernel announced it: the interface watcher's
//! notifications ([`crate::ns::watch`]) turned into [`Change`]s, each put
//! under the request that caused it or printed on its own.
//!
//! A change belongs to a request when the kernel says so (an address or
//! route notification carries the requester's portid and sequence number)
//! or, since link notifications carry neither, when it is about an object
//! the request named (the link by index or name, its veth peer, its old or
//! new place after a move, the addresses and routes of that link) and came
//! after the request was sent. What no request explains (carrier changes,
//! a namespace's teardown, IPv6 duplicate address detection finishing) is
//! printed as kernel-initiated, with the request that caused it when the
//! kernel named one (portid/seq of a request already printed).

use serde_json::{Value, json};

use crate::{
    ns::{
        Container, NetnsId,
        watch::{self, EventKind, NsHandle, Watcher},
    },
    output::Render,
    sys::{clock, text},
};

/// Things a change is about: (namespace, ifindex) and (namespace, name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub links: Vec<(NsHandle, u32)>,
    /// `None`: in whichever namespace (a name whose namespace is not known).
    pub names: Vec<(Option<NsHandle>, String)>,
}

impl Objects {
    /// Whether a change about `c` touches one of these.
    pub fn touches(&self, c: &Objects) -> bool {
        c.links.iter().any(|l| self.links.contains(l))
            || c.names.iter().any(|(cn, name)| self.names.iter().any(|(n, m)| m == name && (n.is_none() || *n == *cn)))
    }
}

/// The request a change is attributed to when it is printed on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub pid: u32,
    pub comm: String,
    pub msg_type: String,
    pub seq: u32,
}

/// One notification: what `ip monitor` prints for it, in which namespace.
#[derive(Clone, Debug)]
pub struct Change {
    /// CLOCK_MONOTONIC when the watcher read it.
    pub time_ns: u64,
    pub wall_ns: u64,
    pub ns: NsHandle,
    pub netns: NetnsId,
    /// The container that owns the namespace.
    pub container: Option<Container>,
    /// `nlmsg_pid`/`nlmsg_seq` of the notification (0: not said).
    pub portid: u32,
    pub seq: u32,
    /// `link`, `port`, `addr`, `route`.
    pub object: &'static str,
    pub deleted: bool,
    pub ifindex: u32,
    pub ifname: Option<String>,
    /// The `ip monitor` line, names in it already escaped.
    pub line: String,
    pub(super) objects: Objects,
    /// A link's veth peer as the kernel last named it: (namespace, ifindex, name).
    pub(super) peer: Option<(NsHandle, u32, Option<String>)>,
    /// Set when printed on its own and a request is known to have caused it.
    pub cause: Option<Cause>,
    /// Found by reading a namespace whole (it appeared, or notifications
    /// were lost), not announced.
    pub from_table: bool,
}

impl Change {
    /// The change a watcher event is, for the events `ip monitor link
    /// address route` prints; `None` for the watcher's bookkeeping.
    pub fn from_watch(w: &Watcher, ev: &watch::Event, wall_ns: u64) -> Option<Change> {
        let ns = ev.ns;
        let mut peer = None;
        let (object, deleted, ifindex, ifname, objects) = match &ev.kind {
            EventKind::LinkAdded(v) | EventKind::LinkChanged(v) | EventKind::LinkDeleted(v) | EventKind::PortChanged(v) | EventKind::PortDeleted(v) => {
                let port = matches!(ev.kind, EventKind::PortChanged(_) | EventKind::PortDeleted(_));
                let deleted = matches!(ev.kind, EventKind::LinkDeleted(_) | EventKind::PortDeleted(_));
                let mut o = Objects { links: vec![(ns, v.link.ifindex)], names: vec![(Some(ns), v.link.name.clone())] };
                if let Some((Some(pns), pidx, _)) = &v.peer
                    && *pidx != 0
                {
                    o.links.push((*pns, *pidx));
                    peer = Some((*pns, *pidx, v.peer.as_ref().and_then(|p| p.2.clone())));
                }
                for p in [&v.moved_to, &v.link.moved_from].into_iter().flatten() {
                    if let Some(pns) = p.ns {
                        o.links.push((pns, p.ifindex));
                    }
                }
                (if port { "port" } else { "link" }, deleted, v.link.ifindex, Some(v.link.name.clone()), o)
            }
            EventKind::AddrAdded(a) | EventKind::AddrDeleted(a) => {
                let o = Objects { links: vec![(ns, a.ifindex)], names: Vec::new() };
                ("addr", matches!(ev.kind, EventKind::AddrDeleted(_)), a.ifindex, a.dev.clone(), o)
            }
            EventKind::RouteAdded(r) | EventKind::RouteDeleted(r) => {
                let mut o = Objects::default();
                o.links.extend(r.route.oif.iter().chain(r.route.multipath.iter().map(|n| &n.ifindex)).map(|i| (ns, *i)));
                ("route", matches!(ev.kind, EventKind::RouteDeleted(_)), r.route.oif.unwrap_or(0), r.dev.clone(), o)
            }
            _ => return None,
        };
        let inode = ev.inode.or_else(|| w.info(ns).and_then(|i| i.inode)).unwrap_or(0);
        Some(Change {
            time_ns: ev.time_ns,
            wall_ns,
            ns,
            netns: NetnsId { inode, host: ns == w.home(), ..Default::default() },
            container: None,
            portid: ev.portid,
            seq: ev.seq,
            object,
            deleted,
            ifindex,
            ifname,
            line: w.render(ev),
            objects,
            peer,
            cause: None,
            from_table: ev.source == watch::Source::Dump,
        })
    }

    /// Where it happened, as text names it.
    fn where_(&self) -> String {
        let l = self.netns.label();
        match self.netns.inode {
            0 => text::name(&l).into_owned(),
            i if l == i.to_string() => l.into_owned(),
            _ => text::name(&l).into_owned(),
        }
    }

    /// The line printed under the request that caused it.
    pub fn effect_text(&self) -> String {
        format!("    = netns={} {}", self.where_(), self.line)
    }

    /// Its fields in the JSON of the request that caused it (and of its own line).
    pub fn effect_json(&self) -> Value {
        json!({
            "time": clock::rfc3339(self.wall_ns),
            "netns": self.netns,
            "container": self.container,
            "object": self.object,
            "action": if self.deleted { "delete" } else { "new" },
            "ifindex": self.ifindex,
            "ifname": self.ifname,
            "portid": self.portid,
            "seq": self.seq,
            "text": self.line,
            "source": if self.from_table { "table" } else { "notification" },
        })
    }
}

impl Render for Change {
    fn json(&self) -> Value {
        let mut v = self.effect_json();
        v["type"] = json!("change");
        v["caused_by"] = match &self.cause {
            Some(c) => json!({"pid": c.pid, "comm": c.comm, "msg_type": c.msg_type, "seq": c.seq}),
            None => Value::Null,
        };
        v
    }

    fn text(&self) -> String {
        let by = match &self.cause {
            Some(c) => format!("  (caused by {}[{}] {} seq {})", text::name(&c.comm), c.pid, c.msg_type, c.seq),
            None if self.from_table => "  (found when its namespace was read)".into(),
            None if self.portid != 0 => format!("  (caused by port {} seq {}, not traced)", self.portid, self.seq),
            None => "  (kernel-initiated)".into(),
        };
        let container = self.container.as_ref().map_or(std::borrow::Cow::Borrowed("-"), |c| text::name(c.label()));
        format!("{} kernel netns={} container={}  {}{by}", clock::hms_micros(self.wall_ns), self.where_(), container, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_match_by_index_or_by_name_in_any_namespace_when_unknown() {
        let (a, b) = (NsHandle(0), NsHandle(3));
        let req = Objects { links: vec![(a, 7)], names: vec![(None, "eth0".into()), (Some(a), "br0".into())] };
        assert!(req.touches(&Objects { links: vec![(a, 7)], names: vec![] }));
        assert!(!req.touches(&Objects { links: vec![(b, 7)], names: vec![] }), "same index, other namespace");
        assert!(req.touches(&Objects { links: vec![], names: vec![(Some(b), "eth0".into())] }));
        assert!(!req.touches(&Objects { links: vec![], names: vec![(Some(b), "br0".into())] }), "name bound to another namespace");
        assert!(req.touches(&Objects { links: vec![], names: vec![(Some(a), "br0".into())] }));
    }
}
