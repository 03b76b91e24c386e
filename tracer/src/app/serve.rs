//! `tracer serve` running: `top`'s in-kernel counters and the netlink
//! audit, composed here (capabilities do not import each other) and fed
//! into [`crate::serve`]'s metric families every read, while its endpoint
//! answers scrapes on the same runtime. Nothing is printed but the ready
//! line and the exit summary.

use std::{collections::HashSet, time::{Duration, Instant}};

use super::{
    Error,
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::{
        event::RawEvent,
        hooks,
        load::{self, LoadOptions},
        ring::Reader,
    },
    netlink::{Correlator, NetlinkEvent, NetlinkJob, decode},
    serve::{Endpoint, Exporter, READ_INTERVAL, Request, ServeJob, Traffic},
    sys::{
        clock::Clock,
        shutdown::Shutdown,
    },
    tc::{
        TcSession,
        attach::{INTERFACE_COUNTERS, TOP_PROGRAMS},
    },
    top::Meter,
};
use tracer_common::packet::DIR_INGRESS;

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
}

/// Serves metrics until `limits` or `stop`.
pub async fn run(job: ServeJob, ring_bytes: Option<u32>, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    // Bind first: a port in use fails before anything is loaded.
    let endpoint = Endpoint::bind(job.listen).await?;
    let addr = endpoint.addr();
    // The entry programs tail-call the filter only when one is installed.
    let pkt_filter = !job.filter.is_match_all();
    let mut loaded =
        load::load_for_job(&LoadOptions { ring_bytes: ring_bytes.unwrap_or(RING_BYTES), top: true, pkt_filter, ..Default::default() })?;
    hooks::attach_tracepoints(&mut loaded.ebpf, hooks::NETLINK_HOOKS)?;
    let reader = Reader::new(&mut loaded.ebpf)?;
    // Without a filter, the interfaces' own kernel counters: nothing is
    // attached, nothing runs per packet. A filter needs top's programs.
    let kernel = job.filter.is_match_all();
    let mut meter = Meter::take(&mut loaded.ebpf, false, kernel)?;
    let programs = if kernel { INTERFACE_COUNTERS } else { TOP_PROGRAMS };
    let Some((tc, first)) = TcSession::start(loaded.ebpf, programs, &job.filter, &job.select, "count", &stop).await? else {
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
        "serving metrics on http://{addr}/metrics: packets on {} interfaces in {} namespaces ({}, {}), netlink audit on {} tracepoints",
        first.interfaces,
        first.namespaces,
        if kernel { "interface counters" } else { first.mode.name() },
        job.filter,
        hooks::NETLINK_HOOKS.len()
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
