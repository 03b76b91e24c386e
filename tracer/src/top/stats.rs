//! From running totals to what `tracer top` prints: deltas per interval
//! (an entry evicted and created again starts over, which its creation
//! time tells), rates, rows grouped by container, interface or flow, and
//! the packets no flow row accounts for.
//!
//! Every function here is plain data in, data out, tested without a kernel.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tracer_common::{
    packet::{DIR_EGRESS, DIR_INGRESS, key_flags},
    top::{FlowKey, IfaceKey},
};

use super::{
    counters::Total,
};
use crate::{
    ns::NetnsId,
    tc::{flowkey::proto_name, topology::Topology},
};

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    pub(crate) fn add(&mut self, o: Count) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }

    pub fn is_zero(&self) -> bool {
        self.packets == 0 && self.bytes == 0
    }
}

/// What the tracepoints counted for one row in one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Packets the kernel dropped.
    pub drops: u64,
    /// TCP segments sent again (as `TcpRetransSegs` counts them).
    pub retransmits: u64,
    /// TCP resets sent and received.
    pub resets: u64,
}

impl Health {
    pub fn add(&mut self, o: Health) {
        self.drops += o.drops;
        self.retransmits += o.retransmits;
        self.resets += o.resets;
    }

    pub fn is_zero(&self) -> bool {
        *self == Health::default()
    }
}

/// One read of the counters, placed ([`super::health::place`]): per namespace and
/// interface (0: the namespace's row for no interface), and per flow.
#[derive(Clone, Debug, Default)]
pub struct HealthInterval {
    pub per_if: HashMap<(u64, u32), Health>,
    pub flows: HashMap<FlowKey, Health>,
}

/// Turns one map's running totals into deltas since the previous read.
#[derive(Debug)]
pub struct Deltas<K> {
    prev: HashMap<K, Total>,
}

impl<K> Default for Deltas<K> {
    fn default() -> Self {
        Self { prev: HashMap::new() }
    }
}

impl<K: Copy + Eq + Hash> Deltas<K> {
    /// What each entry counted since the last call. An entry seen for the
    /// first time, or created anew under a known key (evicted, deleted),
    /// counted all it holds. Entries no longer in `now` are forgotten.
    pub fn update(&mut self, now: Vec<(K, Total)>) -> HashMap<K, Count> {
        let mut out = HashMap::with_capacity(now.len());
        let mut next = HashMap::with_capacity(now.len());
        for (k, t) in now {
            let d = match self.prev.get(&k) {
                Some(p) if p.created_ns == t.created_ns && t.packets >= p.packets && t.bytes >= p.bytes => {
                    Count { packets: t.packets - p.packets, bytes: t.bytes - p.bytes }
                }
                _ => Count { packets: t.packets, bytes: t.bytes },
            };
            out.insert(k, d);
            next.insert(k, t);
        }
        self.prev = next;
        out
    }

    /// Forgets a key (its entry was deleted).
    pub fn forget(&mut self, k: &K) {
        self.prev.remove(k);
    }
}

/// Packets counted on an interface but in no flow row: their flow's entry
/// was evicted (or could not be created) before its last counts were read.
///
/// The kernel adds each packet to its flow first, then to its interface.
/// So every packet in the interface totals of one read is in some flow's
/// counts by the next read, unless that flow is gone: the previous read's
/// interface totals minus this read's flow totals is a lower bound of the
/// packets whose flow was lost (never more: packets counted since only
/// make the flows larger), reported as it grows. At the end, after
/// detaching, nothing is in flight and the last read makes it exact.
///
/// An interface missing from a read was released and its entries deleted
/// (see `top::State::read`): its totals were final in the read before, so
/// after this read's comparison it is forgotten. The tables thus hold only
/// interfaces the kernel's maps hold, whatever the churn of interfaces.
#[derive(Debug, Default)]
pub struct Unattributed {
    iface: HashMap<IfaceKey, u64>,
    flows: HashMap<IfaceKey, u64>,
    iface_prev: HashMap<IfaceKey, u64>,
    reported: HashMap<IfaceKey, u64>,
    /// Packets no flow accounts for, so far.
    pub total: u64,
}

/// The interface and direction a flow was counted on.
pub fn iface_of(f: &FlowKey) -> IfaceKey {
    IfaceKey { netns_ino: f.netns_ino, ifindex: f.ifindex, direction: f.pkt.direction, _pad: [0; 7] }
}

impl Unattributed {
    /// Adds one read's deltas. `last`: nothing counts any more (the
    /// programs are detached), compare this read with itself.
    pub fn update(&mut self, ifaces: &HashMap<IfaceKey, Count>, flows: &HashMap<FlowKey, Count>, last: bool) {
        for (k, d) in flows {
            *self.flows.entry(iface_of(k)).or_default() += d.packets;
        }
        let before = std::mem::take(&mut self.iface_prev);
        for (k, d) in ifaces {
            *self.iface.entry(*k).or_default() += d.packets;
        }
        let basis = if last { &self.iface } else { &before };
        for (k, t) in basis {
            let f = self.flows.get(k).copied().unwrap_or(0);
            let missing = t.saturating_sub(f);
            let r = self.reported.entry(*k).or_default();
            if missing > *r {
                self.total += missing - *r;
                *r = missing;
            }
        }
        self.iface.retain(|k, _| ifaces.contains_key(k));
        self.flows.retain(|k, _| ifaces.contains_key(k));
        self.reported.retain(|k, _| ifaces.contains_key(k));
        self.iface_prev = self.iface.clone();
    }
}

/// How rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// One row per container (or namespace without one).
    Container,
    /// One row per interface.
    Iface,
    /// One row per flow, interface and direction.
    Flow,
    /// One row per local process: what its sockets sent and received.
    Process,
    /// One row per namespace, interface and drop reason ([`super::reasons`]).
    Reason,
}

impl By {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Iface => "iface",
            Self::Flow => "flow",
            Self::Process => "process",
            Self::Reason => "reason",
        }
    }
}

/// The addresses and ports of a flow row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowFields {
    pub direction: u8,
    /// `ipv4`, `ipv6`, `arp` or the EtherType in hex.
    pub l3: String,
    pub proto: Option<String>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub vlan: Option<u16>,
}

impl FlowFields {
    pub fn from_key(k: &FlowKey) -> Self {
        let p = &k.pkt;
        let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
        let v6 = |a: &[u8; 16]| IpAddr::V6(Ipv6Addr::from(*a));
        let (l3, proto, src, dst) = if p.flags & key_flags::IP4 != 0 {
            ("ipv4".to_string(), Some(proto_name(p.proto)), Some(v4(&p.src)), Some(v4(&p.dst)))
        } else if p.flags & key_flags::IP6 != 0 {
            ("ipv6".to_string(), Some(proto_name(p.proto)), Some(v6(&p.src)), Some(v6(&p.dst)))
        } else if p.flags & key_flags::ARP4 != 0 {
            ("arp".to_string(), None, Some(v4(&p.src)), Some(v4(&p.dst)))
        } else {
            (format!("0x{:04x}", u16::from_be_bytes(p.ethertype)), None, None, None)
        };
        let ports = p.flags & key_flags::PORTS != 0;
        FlowFields {
            direction: p.direction,
            l3,
            proto,
            src,
            dst,
            sport: ports.then(|| u16::from_be_bytes(p.sport)),
            dport: ports.then(|| u16::from_be_bytes(p.dport)),
            vlan: (p.flags & key_flags::VLAN != 0).then(|| u16::from_be_bytes(p.vlan_id)),
        }
    }

    pub fn direction_name(&self) -> &'static str {
        if self.direction == DIR_INGRESS { "ingress" } else { "egress" }
    }

    /// `udp 10.0.0.1:5000 > 10.0.0.2:53`, as the text table shows it.
    pub fn describe(&self) -> String {
        let end = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
            (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.to_string(),
            (None, _) => "-".into(),
        };
        let what = self.proto.as_deref().unwrap_or(&self.l3);
        let vlan = self.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
        if self.src.is_none() {
            return format!("{what}{vlan}");
        }
        format!("{what}{vlan} {} > {}", end(self.src, self.sport), end(self.dst, self.dport))
    }
}

/// One row of one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The namespace, with the container that owns it.
    pub netns: NetnsId,
    /// How the namespace is shown in text ([`NetnsId::label`]).
    pub label: String,
    /// Interface rows and flow rows.
    pub ifname: Option<String>,
    pub ifindex: Option<u32>,
    /// Container rows: how many interfaces were summed.
    pub interfaces: Option<usize>,
    pub flow: Option<FlowFields>,
    /// Process rows: the process.
    pub process: Option<std::sync::Arc<crate::procs::Process>>,
    pub rx: Count,
    pub tx: Count,
    /// Drops, retransmissions and resets, when their tracepoints count
    /// (container, interface and flow rows).
    pub health: Option<Health>,
}

impl Row {
    pub fn bytes(&self) -> u64 {
        self.rx.bytes + self.tx.bytes
    }
}

/// Per second over `secs`.
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn side(c: &mut (Count, Count), direction: u8, d: Count) {
    if direction == DIR_EGRESS { c.1.add(d) } else { c.0.add(d) }
}

/// The rows of one interval, largest byte count first (ties by label, so
/// the order is stable). Interface and container rows cover every attached
/// interface, traffic or not, plus any that counted something and went
/// away; flow rows only flows that counted something. With `health` (the
/// tracepoints' counts, already placed: see [`super::health::place`]),
/// every row carries its drops, retransmissions and resets; a container
/// row sums its interfaces' and those with no traced interface, which
/// also make a row of their own by interface (`-`) and by flow.
pub fn rows(by: By, ifaces: &HashMap<IfaceKey, Count>, flows: &HashMap<FlowKey, Count>, topo: &Topology, health: Option<&HealthInterval>) -> Vec<Row> {
    let health_of = |k: &(u64, u32)| health.map(|h| h.per_if.get(k).copied().unwrap_or_default());
    let base = |ns: u64| {
        let netns = topo.netns(ns);
        Row {
            label: netns.label().into_owned(),
            netns,
            ifname: None,
            ifindex: None,
            interfaces: None,
            flow: None,
            process: None,
            rx: Count::default(),
            tx: Count::default(),
            health: health.map(|_| Health::default()),
        }
    };
    // (namespace, ifindex) -> (rx, tx)
    let mut per_if: HashMap<(u64, u32), (Count, Count)> = HashMap::new();
    for key in &topo.attached {
        per_if.entry(*key).or_default();
    }
    for (k, d) in ifaces {
        let key = (u64::from(k.netns_ino), k.ifindex);
        if d.is_zero() && !topo.attached.contains(&key) {
            continue;
        }
        side(per_if.entry(key).or_default(), k.direction, *d);
    }
    // Events with no traced interface: the namespace's row without one.
    let no_iface: Vec<u64> = health.map(|h| h.per_if.keys().filter(|(_, idx)| *idx == 0).map(|(ns, _)| *ns).collect()).unwrap_or_default();
    let mut out: Vec<Row> = match by {
        By::Iface => {
            let mut v: Vec<Row> = per_if
                .into_iter()
                .map(|((ns, idx), (rx, tx))| Row { ifname: Some(topo.ifname(ns, idx)), ifindex: Some(idx), rx, tx, health: health_of(&(ns, idx)), ..base(ns) })
                .collect();
            v.extend(no_iface.iter().map(|ns| Row { health: health_of(&(*ns, 0)), ..base(*ns) }));
            v
        }
        By::Container => {
            let mut per_ns: HashMap<u64, (Count, Count, HashSet<u32>, Health)> = HashMap::new();
            for ((ns, idx), (rx, tx)) in per_if {
                let e = per_ns.entry(ns).or_default();
                e.0.add(rx);
                e.1.add(tx);
                e.2.insert(idx);
            }
            if let Some(h) = health {
                // Placed already: a traced interface's, or the namespace's.
                for ((ns, _), c) in &h.per_if {
                    per_ns.entry(*ns).or_default().3.add(*c);
                }
            }
            per_ns
                .into_iter()
                .map(|(ns, (rx, tx, ifs, h))| Row { interfaces: Some(ifs.len()), rx, tx, health: health.map(|_| h), ..base(ns) })
                .collect()
        }
        By::Flow => {
            let hf = health.map(|h| &h.flows);
            let mut v: Vec<Row> = flows
                .iter()
                .filter(|(k, d)| !d.is_zero() || hf.is_some_and(|f| f.contains_key(*k)))
                .map(|(k, d)| flow_row(k, *d, hf.map(|f| f.get(k).copied().unwrap_or_default()), topo, &base))
                .collect();
            // Flows with drops or retransmissions and no traffic counted
            // on that interface and direction in the interval (a drop is
            // keyed as received; a flow a filter left out).
            if let Some(f) = hf {
                v.extend(f.iter().filter(|(k, _)| !flows.contains_key(*k)).map(|(k, h)| flow_row(k, Count::default(), Some(*h), topo, &base)));
            }
            v
        }
        // Joined to processes by `super::procs::rows`, from other counters.
        By::Process | By::Reason => Vec::new(),
    };
    out.sort_by(|a, b| {
        b.bytes()
            .cmp(&a.bytes())
            .then_with(|| b.health.map(|h| (h.drops, h.retransmits, h.resets)).cmp(&a.health.map(|h| (h.drops, h.retransmits, h.resets))))
            .then_with(|| a.label.cmp(&b.label))
            .then_with(|| a.ifname.cmp(&b.ifname))
            .then_with(|| a.flow.as_ref().map(FlowFields::describe).cmp(&b.flow.as_ref().map(FlowFields::describe)))
    });
    out
}

/// One flow's row; ifindex 0 is no interface (`-`).
fn flow_row(k: &FlowKey, d: Count, health: Option<Health>, topo: &Topology, base: &impl Fn(u64) -> Row) -> Row {
    let ns = u64::from(k.netns_ino);
    let mut c = (Count::default(), Count::default());
    side(&mut c, k.pkt.direction, d);
    let (ifname, ifindex) = if k.ifindex == 0 { (None, None) } else { (Some(topo.ifname(ns, k.ifindex)), Some(k.ifindex)) };
    Row { ifname, ifindex, flow: Some(FlowFields::from_key(k)), rx: c.0, tx: c.1, health, ..base(ns) }
}

#[cfg(test)]
mod tests {
    use tracer_common::packet::PacketKey;

    use super::*;
    use crate::ns::Container;

    fn t(packets: u64, bytes: u64, created_ns: u64) -> Total {
        Total { packets, bytes, created_ns }
    }

    fn c(packets: u64, bytes: u64) -> Count {
        Count { packets, bytes }
    }

    fn ik(ns: u32, ifindex: u32, direction: u8) -> IfaceKey {
        IfaceKey { netns_ino: ns, ifindex, direction, _pad: [0; 7] }
    }

    fn udp(ns: u32, ifindex: u32, direction: u8, sport: u16) -> FlowKey {
        let mut pkt = PacketKey { direction, proto: 17, flags: key_flags::IP4 | key_flags::PORTS, ..Default::default() };
        pkt.ethertype = 0x0800u16.to_be_bytes();
        pkt.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        pkt.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        pkt.sport = sport.to_be_bytes();
        pkt.dport = 53u16.to_be_bytes();
        FlowKey { netns_ino: ns, ifindex, pkt }
    }

    #[test]
    fn deltas_follow_totals_and_restart_with_a_new_entry() {
        let mut d = Deltas::default();
        assert_eq!(d.update(vec![(1u8, t(10, 1000, 5))])[&1], c(10, 1000));
        assert_eq!(d.update(vec![(1u8, t(15, 1500, 5))])[&1], c(5, 500));
        // Evicted and created again between reads: all it holds is new.
        assert_eq!(d.update(vec![(1u8, t(20, 2000, 9))])[&1], c(20, 2000));
        // Gone, then back with the same creation time (cannot happen, but
        // a vanished entry is forgotten either way).
        assert!(d.update(vec![]).is_empty());
        assert_eq!(d.update(vec![(1u8, t(3, 30, 9))])[&1], c(3, 30));
        d.forget(&1);
        assert_eq!(d.update(vec![(1u8, t(4, 40, 9))])[&1], c(4, 40));
    }

    #[test]
    fn unattributed_counts_packets_of_lost_flows_one_read_late() {
        let mut u = Unattributed::default();
        let i = ik(1, 2, DIR_EGRESS);
        let f = udp(1, 2, DIR_EGRESS, 1000);
        // Read 1: 5 packets on the interface, the flow read a moment
        // earlier shows 4: nothing is reported.
        u.update(&HashMap::from([(i, c(5, 500))]), &HashMap::from([(f, c(4, 400))]), false);
        assert_eq!(u.total, 0);
        // Read 2: 8 on the interface, 6 in the flow; against read 1's 5
        // nothing is missing.
        u.update(&HashMap::from([(i, c(3, 300))]), &HashMap::from([(f, c(2, 200))]), false);
        assert_eq!(u.total, 0);
        // Read 3: the flow was evicted with its last 2 packets unread; a
        // new flow counted 1. Read 2's 8 against 7 in flows: 1 is certain
        // (the new flow's packet hides the other until the end).
        let g = udp(1, 2, DIR_EGRESS, 1001);
        u.update(&HashMap::from([(i, c(1, 100))]), &HashMap::from([(g, c(1, 100))]), false);
        assert_eq!(u.total, 1);
        // The last read, with nothing in flight, compares with itself: 9 against 7.
        u.update(&HashMap::new(), &HashMap::new(), true);
        assert_eq!(u.total, 2);
        // Reported once, however often it is looked at.
        u.update(&HashMap::new(), &HashMap::new(), true);
        assert_eq!(u.total, 2);
    }

    #[test]
    fn unattributed_forgets_released_interfaces_after_their_last_count() {
        let mut u = Unattributed::default();
        let f = |ns: u32| udp(ns, 2, DIR_EGRESS, 1000);
        // A thousand interfaces come and go, each counted in one read; the
        // flow of every other one is evicted with its last 3 packets.
        for ns in 0..1000u32 {
            let flows = if ns % 2 == 0 { HashMap::from([(f(ns), c(2, 200))]) } else { HashMap::from([(f(ns), c(5, 500))]) };
            u.update(&HashMap::from([(ik(ns, 2, DIR_EGRESS), c(5, 500))]), &flows, false);
        }
        u.update(&HashMap::new(), &HashMap::new(), true);
        assert_eq!(u.total, 500 * 3);
        assert!(u.iface.is_empty() && u.flows.is_empty() && u.reported.is_empty() && u.iface_prev.is_empty());
    }

    #[test]
    fn unattributed_is_zero_when_flows_account_for_everything() {
        let mut u = Unattributed::default();
        let (i, o) = (ik(1, 2, DIR_EGRESS), ik(1, 2, DIR_INGRESS));
        for n in 1..5u64 {
            let ifaces = HashMap::from([(i, c(n, n * 100)), (o, c(2 * n, 0))]);
            let flows = HashMap::from([(udp(1, 2, DIR_EGRESS, 1), c(n, n * 100)), (udp(1, 2, DIR_INGRESS, 2), c(2 * n, 0))]);
            u.update(&ifaces, &flows, n == 4);
        }
        assert_eq!(u.total, 0);
    }

    fn topo() -> Topology {
        let mut t = Topology::new(Some(1));
        t.insert(1, None, None, &[(5, "veth-a"), (6, "veth-b")]);
        t.insert(7, Some("lab-a".into()), None, &[(2, "eth0")]);
        let web = Container { pod: None, runtime: "docker".into(), id: "c0ffee".into(), name: Some("web".into()) };
        t.insert(8, Some("web".into()), Some(web), &[(2, "eth0"), (3, "eth1")]);
        t
    }

    #[test]
    fn interface_rows_cover_attached_interfaces_and_sort_by_bytes() {
        let t = topo();
        let ifaces = HashMap::from([
            (ik(7, 2, DIR_EGRESS), c(10, 1000)),
            (ik(7, 2, DIR_INGRESS), c(1, 60)),
            (ik(1, 5, DIR_INGRESS), c(10, 1000)),
            (ik(8, 3, DIR_INGRESS), c(100, 150_000)),
            // Gone, but it counted in its last interval: still shown.
            (ik(9, 4, DIR_INGRESS), c(1, 42)),
            // Gone and silent: not shown.
            (ik(9, 5, DIR_INGRESS), c(0, 0)),
        ]);
        let r = rows(By::Iface, &ifaces, &HashMap::new(), &t, None);
        let got: Vec<(String, Option<String>, u64, u64)> =
            r.iter().map(|r| (r.label.clone(), r.ifname.clone(), r.rx.packets, r.tx.packets)).collect();
        assert_eq!(
            got,
            vec![
                ("web".into(), Some("eth1".into()), 100, 0),
                ("lab-a".into(), Some("eth0".into()), 1, 10),
                ("host".into(), Some("veth-a".into()), 10, 0),
                ("9".into(), Some("if4".into()), 1, 0),
                ("host".into(), Some("veth-b".into()), 0, 0),
                ("web".into(), Some("eth0".into()), 0, 0),
            ]
        );
        assert_eq!(r[0].netns.owner.as_ref().and_then(|c| c.name.as_deref()), Some("web"));
        assert_eq!(r[1].netns.name.as_deref(), Some("lab-a"));
        assert!(r[2].netns.name.is_none() && r[2].netns.owner.is_none() && r[2].netns.host);
    }

    #[test]
    fn container_rows_sum_their_interfaces() {
        let t = topo();
        let ifaces = HashMap::from([
            (ik(8, 2, DIR_EGRESS), c(10, 1000)),
            (ik(8, 3, DIR_EGRESS), c(5, 500)),
            (ik(8, 3, DIR_INGRESS), c(2, 20)),
            (ik(1, 5, DIR_INGRESS), c(1, 10)),
        ]);
        let r = rows(By::Container, &ifaces, &HashMap::new(), &t, None);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].label.as_str(), r[0].interfaces, r[0].rx, r[0].tx), ("web", Some(2), c(2, 20), c(15, 1500)));
        assert_eq!((r[1].label.as_str(), r[1].rx), ("host", c(1, 10)));
        assert_eq!((r[2].label.as_str(), r[2].rx, r[2].tx), ("lab-a", c(0, 0), c(0, 0)));
        assert!(r.iter().all(|r| r.ifname.is_none() && r.flow.is_none()));
    }

    #[test]
    fn flow_rows_are_the_active_flows_with_their_direction() {
        let t = topo();
        let flows = HashMap::from([
            (udp(7, 2, DIR_EGRESS, 4000), c(3, 300)),
            (udp(1, 5, DIR_INGRESS, 4000), c(3, 300)),
            (udp(7, 2, DIR_EGRESS, 4001), c(0, 0)),
        ]);
        let r = rows(By::Flow, &HashMap::new(), &flows, &t, None);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].label.as_str(), r[0].rx, r[0].tx), ("host", c(3, 300), c(0, 0)));
        assert_eq!((r[1].label.as_str(), r[1].rx, r[1].tx), ("lab-a", c(0, 0), c(3, 300)));
        let f = r[1].flow.as_ref().expect("flow");
        assert_eq!(f.describe(), "udp 10.0.0.1:4000 > 10.0.0.2:53");
        assert_eq!((f.direction_name(), f.l3.as_str(), f.sport, f.dport), ("egress", "ipv4", Some(4000), Some(53)));
    }

    fn h(drops: u64, retransmits: u64, resets: u64) -> Health {
        Health { drops, retransmits, resets }
    }

    #[test]
    fn health_goes_to_interfaces_their_namespace_and_the_no_interface_row() {
        let mut t = topo();
        t.attached = HashSet::from([(7, 2), (8, 2), (8, 3)]);
        let hv = HealthInterval { per_if: HashMap::from([((7, 2), h(40, 3, 1)), ((7, 0), h(7, 0, 2)), ((8, 3), h(0, 5, 0))]), flows: HashMap::new() };
        let ifaces = HashMap::from([(ik(8, 2, DIR_EGRESS), c(10, 1000))]);
        let by_ns = rows(By::Container, &ifaces, &HashMap::new(), &t, Some(&hv));
        let got: Vec<(&str, Option<usize>, Option<Health>)> = by_ns.iter().map(|r| (r.label.as_str(), r.interfaces, r.health)).collect();
        // lab-a: its eth0's and its drops with no interface; web: its eth1's.
        assert_eq!(got, [("web", Some(2), Some(h(0, 5, 0))), ("lab-a", Some(1), Some(h(47, 3, 3)))]);
        let by_if = rows(By::Iface, &ifaces, &HashMap::new(), &t, Some(&hv));
        type IfRow<'a> = (&'a str, Option<&'a str>, Option<u32>, Option<Health>);
        let got: Vec<IfRow<'_>> = by_if.iter().map(|r| (r.label.as_str(), r.ifname.as_deref(), r.ifindex, r.health)).collect();
        assert_eq!(
            got,
            [
                ("web", Some("eth0"), Some(2), Some(h(0, 0, 0))),
                ("lab-a", Some("eth0"), Some(2), Some(h(40, 3, 1))),
                ("lab-a", None, None, Some(h(7, 0, 2))),
                ("web", Some("eth1"), Some(3), Some(h(0, 5, 0))),
            ]
        );
        // Without the tracepoints, no counts at all (not zeros).
        assert!(rows(By::Iface, &ifaces, &HashMap::new(), &t, None).iter().all(|r| r.health.is_none()));
    }

    #[test]
    fn flows_carry_their_drops_and_retransmits_and_get_rows_of_their_own() {
        let t = topo();
        let (a, b, gone) = (udp(7, 2, DIR_INGRESS, 4000), udp(7, 2, DIR_EGRESS, 4001), udp(7, 0, DIR_INGRESS, 4002));
        let flows = HashMap::from([(a, c(50, 5000)), (b, c(3, 300))]);
        let hv = HealthInterval { per_if: HashMap::new(), flows: HashMap::from([(a, h(40, 0, 0)), (b, h(0, 2, 0)), (gone, h(1, 0, 0))]) };
        let r = rows(By::Flow, &HashMap::new(), &flows, &t, Some(&hv));
        type FlowRow = (Option<u16>, Count, Count, Option<Health>, Option<u32>);
        let got: Vec<FlowRow> = r.iter().map(|r| (r.flow.as_ref().and_then(|f| f.sport), r.rx, r.tx, r.health, r.ifindex)).collect();
        assert_eq!(
            got,
            [
                (Some(4000), c(50, 5000), c(0, 0), Some(h(40, 0, 0)), Some(2)),
                (Some(4001), c(0, 0), c(3, 300), Some(h(0, 2, 0)), Some(2)),
                // Dropped with no interface: a row of its own, with no traffic.
                (Some(4002), c(0, 0), c(0, 0), Some(h(1, 0, 0)), None),
            ]
        );
    }

    #[test]
    fn flow_fields_of_other_frames() {
        let mut k = FlowKey::default();
        k.pkt.ethertype = 0x88ccu16.to_be_bytes();
        assert_eq!(FlowFields::from_key(&k).describe(), "0x88cc");
        k.pkt.flags = key_flags::ARP4;
        k.pkt.ethertype = 0x0806u16.to_be_bytes();
        k.pkt.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.pkt.dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(FlowFields::from_key(&k).describe(), "arp 10.0.0.1 > 10.0.0.2");
        let mut k = FlowKey::default();
        k.pkt.flags = key_flags::IP6 | key_flags::PORTS | key_flags::VLAN;
        k.pkt.proto = 6;
        k.pkt.vlan_id = 10u16.to_be_bytes();
        k.pkt.src[15] = 1;
        k.pkt.dst[15] = 2;
        k.pkt.sport = 80u16.to_be_bytes();
        k.pkt.dport = 5555u16.to_be_bytes();
        assert_eq!(FlowFields::from_key(&k).describe(), "tcp vlan 10 [::1]:80 > [::2]:5555");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(500, 0.5), 1000.0);
        assert_eq!(rate(5, 0.0), 0.0);
    }
}
