//! The metric families `tracer serve` exports, and what keeps them bounded.
//!
//! Counters only, never rates (Prometheus computes rates). Every label
//! value that comes from outside (namespace, container, interface and
//! process names, message types) is escaped and cut as text output is
//! ([`text::field`]), and the exposition encoder escapes what the format
//! itself needs. Any user can make namespaces, interfaces and netlink
//! senders by the thousand, so series are capped per family (what the cap
//! refuses is counted in `tracer_series_refused_total`), the series of an
//! interface that is no longer traced are removed [`Exporter::grace`]
//! after it went, and netlink series that stop counting are removed after
//! [`NETLINK_IDLE`] (or the grace, whichever is longer); drop and TCP
//! series (counted per namespace by the tracepoint programs) are removed
//! the grace after their namespace is no longer traced and they stopped
//! counting.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text, text as openmetrics_text},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::process::ProcessCollector;
use crate::{
    ns::{Container, NetnsId},
    sys::text,
};

/// Traffic series (interface x direction) kept at most.
pub const TRAFFIC_SERIES_MAX: usize = 20_000;
/// Netlink series (message type x result x comm x container) kept at most.
pub const NETLINK_SERIES_MAX: usize = 5_000;
/// How long a netlink series may stay unchanged before it is removed.
pub const NETLINK_IDLE: Duration = Duration::from_secs(3600);
/// Drop series (namespace x interface x reason) kept at most.
pub const DROP_SERIES_MAX: usize = 20_000;
/// TCP series (namespace) kept at most.
pub const TCP_SERIES_MAX: usize = 5_000;

/// What one namespace's interface dropped for one reason since the last read.
#[derive(Clone, Copy, Debug)]
pub struct Drops<'a> {
    pub netns: &'a NetnsId,
    /// Empty when the drop had no device.
    pub interface: &'a str,
    /// The kernel's name, or `-` on kernels without reasons.
    pub reason: &'a str,
    pub count: u64,
}

/// What one namespace's TCP sockets did since the last read.
#[derive(Clone, Copy, Debug)]
pub struct Tcp<'a> {
    pub netns: &'a NetnsId,
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub netns: String,
    pub container: String,
    pub runtime: String,
    pub pod: String,
    pub pod_namespace: String,
    pub interface: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    pub netns: String,
    pub container: String,
    pub runtime: String,
    pub pod: String,
    pub pod_namespace: String,
}

/// What one interface counted in one direction since the last read.
#[derive(Clone, Copy, Debug)]
pub struct Traffic<'a> {
    pub netns: &'a NetnsId,
    pub interface: &'a str,
    pub ingress: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// One netlink request the audit saw, with its result.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `RTM_NEWLINK`, `NFT_MSG_NEWTABLE`, ...
    pub msg_type: &'a str,
    /// `ok`, an errno name (`EEXIST`), or `none` when no answer was asked
    /// for and none was seen.
    pub result: &'a str,
    pub comm: &'a str,
    pub container: Option<&'a Container>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    /// `host`, a `/run/netns` name or the owner container's name, else the inode.
    pub netns: String,
    /// The owner container's name (else its short id), or empty.
    pub container: String,
    pub runtime: String,
    /// The owner container's Kubernetes pod and its namespace, or empty.
    pub pod: String,
    pub pod_namespace: String,
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetlinkLabels {
    pub msg_type: String,
    pub result: String,
    pub comm: String,
    pub container: String,
    pub pod: String,
    pub pod_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

/// A label value from outside: control characters escaped, cut at the
/// text outputs' name length.
fn label(s: &str) -> String {
    text::field(s, text::NAME_MAX).into_owned()
}

/// The metric families, written by the run loop and read by the endpoint
/// through [`Exporter::registry`].
pub struct Exporter {
    registry: Arc<Registry>,
    packets: Family<TrafficLabels, Counter>,
    bytes: Family<TrafficLabels, Counter>,
    netlink: Family<NetlinkLabels, Counter>,
    lost: Family<SourceLabels, Counter>,
    refused: Family<FamilyLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    retransmits: Family<TcpLabels, Counter>,
    resets_sent: Family<TcpLabels, Counter>,
    resets_received: Family<TcpLabels, Counter>,
    /// When each drop or TCP series last counted.
    drops_seen: HashMap<DropLabels, Instant>,
    tcp_seen: HashMap<TcpLabels, Instant>,
    /// When each traffic series' interface was last seen traced.
    traffic_seen: HashMap<TrafficLabels, Instant>,
    /// When each netlink series last counted.
    netlink_seen: HashMap<NetlinkLabels, Instant>,
    /// Series of interfaces no longer traced are removed after this.
    pub grace: Duration,
}

impl Exporter {
    pub fn new(grace: Duration) -> Self {
        let mut r = Registry::with_prefix("tracer");
        let packets = Family::<TrafficLabels, Counter>::default();
        let bytes = Family::<TrafficLabels, Counter>::default();
        let netlink = Family::<NetlinkLabels, Counter>::default();
        let lost = Family::<SourceLabels, Counter>::default();
        let refused = Family::<FamilyLabels, Counter>::default();
        r.register("packets", "Packets counted in the kernel per namespace, interface and direction", packets.clone());
        r.register("bytes", "Bytes counted in the kernel per namespace, interface and direction", bytes.clone());
        r.register(
            "netlink_requests",
            "Netlink requests that change something, by message type, result, sending command and container",
            netlink.clone(),
        );
        r.register("lost_events", "Events or packets the tracer could not see or count, by source", lost.clone());
        r.register("series_refused", "Series not created because their family reached its cap", refused.clone());
        let drops = Family::<DropLabels, Counter>::default();
        let retransmits = Family::<TcpLabels, Counter>::default();
        let resets_sent = Family::<TcpLabels, Counter>::default();
        let resets_received = Family::<TcpLabels, Counter>::default();
        r.register("drops", "Packets the kernel dropped (skb:kfree_skb), per namespace, interface and drop reason", drops.clone());
        r.register("tcp_retransmits", "TCP segments retransmitted, per namespace (tcp_retransmit_skb)", retransmits.clone());
        r.register("tcp_resets_sent", "TCP resets sent, per namespace (tcp_send_reset)", resets_sent.clone());
        r.register("tcp_resets_received", "TCP resets received, per namespace (tcp_receive_reset)", resets_received.clone());
        r.register_collector(Box::new(ProcessCollector::new()));
        for f in ["traffic", "netlink", "drops", "tcp"] {
            refused.get_or_create(&FamilyLabels { family: f.into() }).inc_by(0);
        }
        Self {
            registry: Arc::new(r),
            packets,
            bytes,
            netlink,
            lost,
            refused,
            drops,
            retransmits,
            resets_sent,
            resets_received,
            drops_seen: HashMap::new(),
            tcp_seen: HashMap::new(),
            traffic_seen: HashMap::new(),
            netlink_seen: HashMap::new(),
            grace,
        }
    }

    /// What the endpoint encodes.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Adds one interface's counts (zero counts too: the series exists,
    /// at 0, from the moment the interface is traced, so that a scraper
    /// sees every increase) and marks it as traced now.
    pub fn traffic(&mut self, t: Traffic<'_>, now: Instant) {
        let o = Owner::of(t.netns);
        let labels = TrafficLabels {
            netns: label(&netns_label(t.netns)),
            container: o.container,
            runtime: o.runtime,
            pod: o.pod,
            pod_namespace: o.pod_namespace,
            interface: label(t.interface),
            direction: if t.ingress { "ingress" } else { "egress" }.into(),
        };
        if !admit(&self.traffic_seen, &labels, TRAFFIC_SERIES_MAX, &self.refused, "traffic") {
            return;
        }
        self.packets.get_or_create(&labels).inc_by(t.packets);
        self.bytes.get_or_create(&labels).inc_by(t.bytes);
        self.traffic_seen.insert(labels, now);
    }

    /// Counts one netlink request.
    pub fn request(&mut self, r: Request<'_>, now: Instant) {
        let labels = NetlinkLabels {
            msg_type: label(r.msg_type),
            result: label(r.result),
            comm: label(r.comm),
            container: r.container.map(|c| label(c.label())).unwrap_or_default(),
            pod: pod(r.container, |p| &p.name),
            pod_namespace: pod(r.container, |p| &p.namespace),
        };
        if !admit(&self.netlink_seen, &labels, NETLINK_SERIES_MAX, &self.refused, "netlink") {
            return;
        }
        self.netlink.get_or_create(&labels).inc();
        self.netlink_seen.insert(labels, now);
    }

    /// Adds one namespace's, interface's and reason's new drops (a series
    /// is made at its first drop; `now` marks it current, as traffic's: the
    /// caller passes 0 counts for namespaces still traced).
    pub fn drops(&mut self, d: Drops<'_>, now: Instant) {
        let o = Owner::of(d.netns);
        let labels = DropLabels {
            netns: label(&netns_label(d.netns)),
            container: o.container,
            runtime: o.runtime,
            pod: o.pod,
            pod_namespace: o.pod_namespace,
            interface: label(d.interface),
            reason: label(d.reason),
        };
        if !admit(&self.drops_seen, &labels, DROP_SERIES_MAX, &self.refused, "drops") {
            return;
        }
        self.drops.get_or_create(&labels).inc_by(d.count);
        self.drops_seen.insert(labels, now);
    }

    /// Adds one namespace's new retransmissions and resets.
    pub fn tcp(&mut self, t: Tcp<'_>, now: Instant) {
        let o = Owner::of(t.netns);
        let labels = TcpLabels {
            netns: label(&netns_label(t.netns)),
            container: o.container,
            runtime: o.runtime,
            pod: o.pod,
            pod_namespace: o.pod_namespace,
        };
        if !admit(&self.tcp_seen, &labels, TCP_SERIES_MAX, &self.refused, "tcp") {
            return;
        }
        self.retransmits.get_or_create(&labels).inc_by(t.retransmits);
        self.resets_sent.get_or_create(&labels).inc_by(t.resets_sent);
        self.resets_received.get_or_create(&labels).inc_by(t.resets_received);
        self.tcp_seen.insert(labels, now);
    }

    /// Adds `n` to what `source` lost (`n` may be 0: the series exists).
    pub fn lost(&self, source: &str, n: u64) {
        self.lost.get_or_create(&SourceLabels { source: label(source) }).inc_by(n);
    }

    /// Removes the series of interfaces not traced for [`Exporter::grace`]
    /// and of netlink senders idle for [`NETLINK_IDLE`]. Returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let grace = self.grace;
        let (packets, bytes) = (&self.packets, &self.bytes);
        let mut removed = expire(&mut self.traffic_seen, now, grace, |l| {
            packets.remove(l);
            bytes.remove(l);
        });
        let netlink = &self.netlink;
        removed += expire(&mut self.netlink_seen, now, grace.max(NETLINK_IDLE), |l| {
            netlink.remove(l);
        });
        let drops = &self.drops;
        removed += expire(&mut self.drops_seen, now, grace, |l| {
            drops.remove(l);
        });
        let (r, s, v) = (&self.retransmits, &self.resets_sent, &self.resets_received);
        removed += expire(&mut self.tcp_seen, now, grace, |l| {
            r.remove(l);
            s.remove(l);
            v.remove(l);
        });
        removed
    }

    /// Traffic and netlink series held now.
    pub fn series(&self) -> (usize, usize) {
        (self.traffic_seen.len(), self.netlink_seen.len())
    }
}

/// The labels of the container that owns a namespace (empty without one).
struct Owner {
    container: String,
    runtime: String,
    pod: String,
    pod_namespace: String,
}

impl Owner {
    fn of(n: &NetnsId) -> Self {
        let c = n.owner.as_ref();
        Owner {
            container: c.map(|c| label(c.label())).unwrap_or_default(),
            runtime: c.map(|c| label(&c.runtime)).unwrap_or_default(),
            pod: pod(c, |p| &p.name),
            pod_namespace: pod(c, |p| &p.namespace),
        }
    }
}

/// Whether a family may hold the series `labels`: one it has, or a new
/// one under its cap `max`; a new one over the cap is counted as refused.
fn admit<L: Eq + std::hash::Hash>(seen: &HashMap<L, Instant>, labels: &L, max: usize, refused: &Family<FamilyLabels, Counter>, family: &str) -> bool {
    if seen.contains_key(labels) || seen.len() < max {
        return true;
    }
    refused.get_or_create(&FamilyLabels { family: family.into() }).inc();
    false
}

/// Forgets the series not marked current for `keep`, removing each with
/// `remove`; how many.
fn expire<L>(seen: &mut HashMap<L, Instant>, now: Instant, keep: Duration, remove: impl Fn(&L)) -> usize {
    let mut removed = 0;
    seen.retain(|l, at| {
        let current = now.saturating_duration_since(*at) < keep;
        if !current {
            remove(l);
            removed += 1;
        }
        current
    });
    removed
}

/// A field of a container's pod as a label value, empty without one.
fn pod(c: Option<&Container>, field: impl Fn(&crate::ns::Pod) -> &String) -> String {
    c.and_then(|c| c.pod.as_ref()).map(|p| label(field(p))).unwrap_or_default()
}

/// The namespace as the `netns` label names it: `host` for the tracer's
/// own, its name (a container's, or `/run/netns`'s), else its inode.
fn netns_label(n: &NetnsId) -> String {
    match &n.name {
        _ if n.host => "host".into(),
        Some(name) => name.clone(),
        None => n.inode.to_string(),
    }
}

/// The two formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it (Prometheus itself does, first), else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.split(',').any(|m| m.trim().starts_with("application/openmetrics-text")) => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Every family, encoded.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::Prometheus => prometheus_text::encode(&mut out, registry)?,
        Format::OpenMetrics => openmetrics_text::encode(&mut out, registry)?,
    }
    Ok(out)
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
