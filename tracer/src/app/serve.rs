//! `tracer serve` running: `top`'s in-kernel counters, the drop and TCP
//! tracepoints' counters (their counting mode: no record per event) and
//! the netlink audit, composed here (capabilities do not import each other) and fed
//! into [`crate::serve`]'s metric families every read, while its endpoint
//! answers scrapes on the same runtime. Nothing is printed but the ready
//! line and the exit summary. The drop and TCP counters cover what the
//! traffic counters cover: the selected namespaces (in the kernel) and,
//! with `-i`, the selected interfaces ([`crate::top::health::place`]).

use std::{collections::HashSet, time::{Duration, Instant}};

use super::{
    Error,
    obs::NetnsFilter,
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::{
        event::RawEvent,
        hooks,
        load::{self, LoadOptions},
        ring::Reader,
        tp::EnumNames,
    },
    netlink::{Correlator, NetlinkEvent, NetlinkJob, decode},
    serve::{Drops, Endpoint, Exporter, READ_INTERVAL, Request, ServeJob, Tcp, Traffic},
    sys::{
        clock::Clock,
        shutdown::Shutdown,
    },
    tc::{
        TcSession,
        attach::{INTERFACE_COUNTERS, TOP_PROGRAMS},
    },
    ns::Scope,
    top::{Meter, health, reasons::ReasonMeter},
};
use aya::maps::{MapData, PerCpuHashMap};
use tracer_common::{
    drops::REASON_NONE,
    maps,
    packet::DIR_INGRESS,
    LostSource,
    tcp::{TcpCounts, TcpKey},
    tp::{ObsConfig, mode},
};

/// The drop and TCP counters, when their tracepoints are attached.
struct Health {
    drops: ReasonMeter,
    reasons: EnumNames,
    tcp: PerCpuHashMap<MapData, TcpKey, TcpCounts>,
    /// Per namespace and interface, the TCP totals at the last read.
    tcp_prev: std::collections::HashMap<TcpKey, TcpCounts>,
    /// The kernel's namespace selection (`None`: every namespace).
    netns: Option<NetnsFilter>,
}

/// The ring buffer carries netlink records only: 4 MiB is plenty.
const RING_BYTES: u32 = 4 << 20;

struct Serve {
    tc: TcSession,
    meter: Meter,
    reader: Reader,
    correlator: Correlator,
    /// Which netlink requests are counted: those that change something.
    wanted: NetlinkJob,
    batch: Vec<RawEvent>,
    exporter: Exporter,
    /// A tick came: the counters are read at the next step (not at every
    /// netlink record that wakes the loop).
    due: bool,
    ready: String,
    health: Option<Health>,
    /// `-i` was given: drop and TCP events of other interfaces, or of
    /// none, are left out.
    iface_globs: bool,
}

/// Serves metrics until `limits` or `stop`.
pub async fn run(job: ServeJob, ring_bytes: Option<u32>, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    // Bind first: a port in use fails before anything is loaded.
    let endpoint = Endpoint::bind(job.listen).await?;
    let addr = endpoint.addr();
    // The entry programs tail-call the filter only when one is installed.
    let pkt_filter = !job.filter.is_match_all();
    let obs = ObsConfig { drops: mode::COUNT, tcp: mode::COUNT, select_netns: u32::from(job.select.scope != Scope::All), ..ObsConfig::off() };
    let mut loaded =
        load::load_for_job(&LoadOptions { ring_bytes: ring_bytes.unwrap_or(RING_BYTES), top: true, pkt_filter, obs, ..Default::default() })?;
    hooks::attach_tracepoints(&mut loaded.ebpf, hooks::NETLINK_HOOKS)?;
    // Drops and TCP health, counted in the kernel, where the kernel has
    // the tracepoints (a warning names one left out).
    let tps = super::obs::attach_named(&mut loaded, &["kfree_skb", "tcp_retransmit_skb", "tcp_send_reset", "tcp_receive_reset"])
        .unwrap_or_else(|e| {
            crate::sys::text::warn(&format!("drop and TCP metrics are left out: {e}"));
            Vec::new()
        });
    let health = if tps.is_empty() {
        None
    } else {
        let drops = ReasonMeter::take(&mut loaded.ebpf).map_err(crate::top::TopError::from)?;
        let map = crate::bpf::take_map(&mut loaded.ebpf, maps::TCP_COUNTS).map_err(|e| Error::Kernel(e.to_string()))?;
        let tcp = PerCpuHashMap::try_from(map).map_err(|e| Error::Kernel(format!("map {}: {e}", maps::TCP_COUNTS)))?;
        let netns = if job.select.scope == Scope::All { None } else { Some(NetnsFilter::take(&mut loaded)?) };
        Some(Health { drops, reasons: std::mem::take(&mut loaded.drop_reasons), tcp, tcp_prev: Default::default(), netns })
    };
    let reader = Reader::new(&mut loaded.ebpf)?;
    // Without a filter, the interfaces' own kernel counters: nothing is
    // attached, nothing runs per packet. A filter needs top's programs.
    let kernel = job.filter.is_match_all();
    let mut meter = Meter::take(&mut loaded.ebpf, false, kernel)?;
    let programs = if kernel { INTERFACE_COUNTERS } else { TOP_PROGRAMS };
    let Some((tc, first)) = TcSession::start(loaded.ebpf, programs, &job.filter, &job.select, "count", &stop, None).await? else {
        return Ok(());
    };
    if kernel {
        // What the interfaces counted before now is not this run's.
        meter.read(Vec::new(), &super::top::covered(&tc)?, false)?;
    } else {
        meter.start_interval();
    }
    let exporter = Exporter::new(job.grace);
    let server = endpoint.spawn(exporter.registry(), stop.clone());
    let ready = format!(
        "serving metrics on http://{addr}/metrics: packets on {} interfaces in {} namespaces ({}, {}), netlink audit on {} tracepoints, drops and TCP on {}",
        first.interfaces,
        first.namespaces,
        if kernel { "interface counters" } else { first.mode.name() },
        job.filter,
        hooks::NETLINK_HOOKS.len(),
        if tps.is_empty() { "none".to_string() } else { tps.join(", ") }
    );
    let mut serve = Serve {
        tc,
        meter,
        reader,
        correlator: Correlator::new(Clock::new()),
        wanted: NetlinkJob::default(),
        batch: Vec::new(),
        exporter,
        due: false,
        ready,
        health,
        iface_globs: job.select.iface_globs.is_some(),
    };
    // The series exist (at 0) before the first scrape.
    serve.read_counters(false)?;
    for (src, _) in serve.lost() {
        serve.exporter.lost(src, 0);
    }
    let r = run::run(&mut serve, limits, stop).await;
    server.abort();
    r.map(|_| ())
}

/// A request's result as the `result` label says it.
fn result_label(e: &NetlinkEvent) -> &'static str {
    match e.result {
        None => "none",
        Some(0) => "ok",
        Some(n) => decode::errno_name(n),
    }
}

impl Serve {
    /// Reads `top`'s counters into the traffic families, every traced
    /// interface included (at 0 when it counted nothing), and removes the
    /// series of interfaces gone longer than the grace period.
    fn read_counters(&mut self, last: bool) -> Result<(), Error> {
        let released = self.tc.topology()?.take_released();
        let iv = self.meter.read(released, &super::top::covered(&self.tc)?, last)?;
        let now = Instant::now();
        let topo = self.tc.topology()?;
        let mut seen = HashSet::with_capacity(topo.attached.len() * 2);
        for (k, d) in &iv.ifaces {
            let ns = u64::from(k.netns_ino);
            let ingress = k.direction == DIR_INGRESS;
            seen.insert((ns, k.ifindex, ingress));
            let (netns, ifname) = (topo.netns(ns), topo.ifname(ns, k.ifindex));
            self.exporter.traffic(Traffic { netns: &netns, interface: &ifname, ingress, packets: d.packets, bytes: d.bytes }, now);
        }
        for &(ns, ifindex) in &topo.attached {
            let (netns, ifname) = (topo.netns(ns), topo.ifname(ns, ifindex));
            for ingress in [true, false] {
                if !seen.contains(&(ns, ifindex, ingress)) {
                    self.exporter.traffic(Traffic { netns: &netns, interface: &ifname, ingress, packets: 0, bytes: 0 }, now);
                }
            }
        }
        if let Some(h) = &mut self.health {
            // The kernel counts in the covered namespaces only, from the
            // next event on; what it counted before is left out here.
            let covered: Option<HashSet<u64>> = h.netns.as_mut().map(|f| {
                f.sync(topo.entry.keys());
                topo.entry.keys().copied().chain(topo.attached.iter().map(|(ns, _)| *ns)).collect()
            });
            let wanted = |ns: u64, idx: u32| health::place(ns, idx, &topo.attached, self.iface_globs, covered.as_ref()).is_some();
            let (_, counts) = h.drops.read().map_err(crate::top::TopError::from)?;
            // Series of a namespace still traced are kept (at their value);
            // those of one gone leave after the grace period, as traffic's.
            let traced: HashSet<u64> = topo.attached.iter().map(|(ns, _)| *ns).collect();
            for (k, d, _) in counts {
                let ns = u64::from(k.netns_ino);
                if (d == 0 && !traced.contains(&ns)) || !wanted(ns, k.ifindex) {
                    continue;
                }
                let netns = topo.netns(ns);
                let ifname = if k.ifindex == 0 { String::new() } else { topo.ifname(ns, k.ifindex) };
                let reason = match k.reason {
                    REASON_NONE => "-".to_string(),
                    r => h.reasons.name(u64::from(r)).map(String::from).unwrap_or_else(|| format!("UNKNOWN_{r}")),
                };
                self.exporter.drops(Drops { netns: &netns, interface: &ifname, reason: &reason, count: d }, now);
            }
            // Per namespace: the selected interfaces' (or, without `-i`,
            // all of the namespace's) since the last read.
            let mut per_ns: std::collections::HashMap<u64, TcpCounts> = std::collections::HashMap::new();
            for (k, per_cpu) in h.tcp.iter().flatten() {
                let t = per_cpu.iter().fold(TcpCounts::default(), |a, c| TcpCounts {
                    retransmits: a.retransmits + c.retransmits,
                    resets_sent: a.resets_sent + c.resets_sent,
                    resets_received: a.resets_received + c.resets_received,
                });
                let p = h.tcp_prev.insert(k, t).unwrap_or_default();
                let ns = u64::from(k.netns_ino);
                if !wanted(ns, k.ifindex) {
                    continue;
                }
                let e = per_ns.entry(ns).or_default();
                e.retransmits += t.retransmits.saturating_sub(p.retransmits);
                e.resets_sent += t.resets_sent.saturating_sub(p.resets_sent);
                e.resets_received += t.resets_received.saturating_sub(p.resets_received);
            }
            for (ns, d) in per_ns {
                if d.retransmits + d.resets_sent + d.resets_received > 0 || traced.contains(&ns) {
                    let netns = topo.netns(ns);
                    let tcp = Tcp { netns: &netns, retransmits: d.retransmits, resets_sent: d.resets_sent, resets_received: d.resets_received };
                    self.exporter.tcp(tcp, now);
                }
            }
        }
        drop(topo);
        self.exporter.sweep(now);
        Ok(())
    }
}

impl Running for Serve {
    const UNIT: &'static str = "reads";
    const EVERY_LOSS_SOURCE: bool = true;

    fn ready(&self) -> String {
        self.ready.clone()
    }

    fn tick(&self) -> Duration {
        READ_INTERVAL
    }

    async fn wake(&mut self) -> Result<(), Error> {
        Ok(self.reader.read(&mut self.batch).await?)
    }

    fn ticked(&mut self) {
        self.due = true;
    }

    async fn stop(&mut self) {
        self.tc.stop().await;
        self.reader.drain_until_now(&mut self.batch);
    }

    fn step(&mut self, last: bool, _budget: Option<u64>) -> Result<Step, Error> {
        for ev in self.batch.drain(..) {
            self.correlator.push(&ev);
        }
        let now = Instant::now();
        for e in self.correlator.ready(Clock::now_mono_ns(), last) {
            if self.wanted.wants(&e) {
                let r = Request { msg_type: &e.type_name, result: result_label(&e), comm: &e.comm, container: e.container.as_ref() };
                self.exporter.request(r, now);
            }
        }
        if self.due || last {
            self.due = false;
            self.read_counters(last)?;
            return Ok(Step { written: 1, done: false });
        }
        Ok(Step::default())
    }

    fn lost(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.reader.lost_totals();
        v.extend(self.meter.lost());
        if self.health.is_some() {
            for s in [LostSource::DropStats, LostSource::TcpStats] {
                v.push((s.name(), self.reader.lost_of(s)));
            }
        }
        v
    }

    fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
        for (src, n) in new {
            self.exporter.lost(src, *n);
        }
        Ok(())
    }

    fn exit_lines(&self) -> Vec<String> {
        let (t, n) = self.exporter.series();
        vec![format!("serve: {t} traffic series and {n} netlink series at exit"), self.correlator.summary()]
    }
}
