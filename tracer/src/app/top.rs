//! `tracer top` running: the TC session with the counting programs, a
//! report every interval ([`crate::top`] reads, sums and prints), and a
//! last one at the end that covers the time since the one before (after
//! detaching, so it holds everything counted). By container, interface
//! and flow, the drop and TCP tracepoints count beside them (their
//! counting mode, [`crate::top::health`]), in the namespaces the session
//! covers.

use std::time::Duration;

use tracer_common::{
    LostSource,
    tp::{ObsConfig, mode},
};

use super::{
    Error,
    obs::NetnsFilter,
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::load::{self, LoadOptions},
    output::Sink,
    sys::{clock, shutdown::Shutdown},
    procs::ProcSelect,
    tc::{
        TcSession,
        attach::{INTERFACE_COUNTERS, TOP_PROC_PROGRAMS, TOP_PROGRAMS},
    },
    ns::Scope,
    top::{
        By, Covered, Meter, TopError, TopJob,
        health::{self, HealthMeter},
        render, stats,
    },
};

/// The tracepoints whose counts are the drop and TCP columns.
const HEALTH_TRACEPOINTS: [&str; 4] = ["kfree_skb", "tcp_retransmit_skb", "tcp_send_reset", "tcp_receive_reset"];

/// The drop and TCP counters of the container, interface and flow rows.
struct Health {
    meter: HealthMeter,
    /// `None` with every namespace selected.
    netns: Option<NetnsFilter>,
}

/// `--by process`: how often the socket events are taken from the ring
/// buffer between reports (they do not wake the reader).
const PROCS_DRAIN: Duration = Duration::from_millis(100);

struct Top {
    job: TopJob,
    tc: TcSession,
    meter: Meter,
    printer: render::Printer,
    /// Lost lines, when the report's header does not show them.
    sink: Sink,
    /// The last step printed a report whose header showed the losses.
    shown: bool,
    /// A report is due (the tick came); with `--by process` steps also
    /// follow the drains of socket events, which print nothing.
    due: bool,
    ready: String,
    health: Option<Health>,
}

/// Counts until `limits` or `stop`.
pub async fn run(job: TopJob, json: bool, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    let by_process = job.by == By::Process;
    // The tracepoints count every drop and retransmission of a namespace:
    // no packet filter applies to them, so with one they are left out
    // rather than shown beside traffic they do not match.
    let want_health = !by_process && job.filter.is_match_all();
    // The entry programs tail-call the filter only when one is installed.
    let pkt_filter = !job.filter.is_match_all();
    let opts = if by_process {
        // The ring buffer carries socket events, drained on a short timer;
        // the per-socket flow table is sized only when asked for, so the
        // other `--by` cost nothing more.
        LoadOptions {
            ring_bytes: 4 << 20,
            top: true,
            top_proc: true,
            pkt_filter,
            procs: Some(ProcSelect::default().config(false)),
            ..Default::default()
        }
    } else {
        // The ring buffer is not used: the smallest one the kernel takes.
        // The drop and TCP tracepoints count (no record) in the
        // namespaces the session covers.
        let on = if want_health { mode::COUNT } else { mode::OFF };
        let obs = ObsConfig {
            drops: on,
            tcp: on,
            select_netns: u32::from(job.select.scope != Scope::All),
            // Drops per flow only where rows are flows.
            drop_flows: u32::from(job.by == By::Flow),
            ..ObsConfig::off()
        };
        LoadOptions { ring_bytes: 4096, top: true, pkt_filter, obs, ..Default::default() }
    };
    let mut loaded = load::load_for_job(&opts)?;
    // A kernel that refuses them costs the columns (a warning), not the job.
    let mut health = None;
    if want_health {
        let tps = super::obs::attach_named(&mut loaded, &HEALTH_TRACEPOINTS).unwrap_or_else(|e| {
            crate::sys::text::warn(&format!("drop and TCP columns are left out: {e}"));
            Vec::new()
        });
        if !tps.is_empty() {
            let meter = HealthMeter::take(&mut loaded.ebpf, job.by == By::Flow).map_err(TopError::from)?;
            let netns = if job.select.scope == Scope::All { None } else { Some(NetnsFilter::take(&mut loaded)?) };
            health = Some(Health { meter, netns });
        }
    }
    // By interface or container, every packet: the kernel's own counters
    // of each interface, nothing attached.
    let kernel = job.interface_counters();
    let mut meter = Meter::take(&mut loaded.ebpf, by_process, kernel)?;
    let programs = match (by_process, kernel) {
        (true, _) => TOP_PROC_PROGRAMS,
        (false, true) => INTERFACE_COUNTERS,
        (false, false) => TOP_PROGRAMS,
    };
    let Some((tc, first)) = TcSession::start(loaded.ebpf, programs, &job.filter, &job.select, "count", &stop, None).await? else {
        return Ok(());
    };
    if kernel {
        // What the interfaces counted before now is not this run's.
        let covered = covered(&tc)?;
        meter.read(Vec::new(), &covered, false)?;
    } else {
        meter.start_interval();
    }
    let ready = format!(
        "counting packets on {} interfaces in {} namespaces ({}, {}, by {}){}",
        first.interfaces,
        first.namespaces,
        if kernel { "interface counters" } else { first.mode.name() },
        job.filter,
        job.by.name(),
        if health.is_some() { ", drops and TCP retransmits and resets" } else { "" }
    );
    let printer = render::Printer::new(json, job.limit);
    let mut top = Top { job, tc, meter, printer, sink: Sink::new(json), shown: false, due: false, ready, health };
    // What the tracepoints counted before now is not this run's.
    top.read_health()?;
    run::run(&mut top, limits, stop).await?;
    Ok(())
}

/// What the session covers now, copied so the follower is not held up
/// while the counters are read.
pub(super) fn covered(tc: &TcSession) -> Result<Covered, Error> {
    let t = tc.topology()?;
    Ok(Covered { attached: t.attached.clone(), entry: t.entry.clone() })
}

impl Top {
    /// The drop and TCP counts since the last read, placed in the rows
    /// they belong to (see [`health::place`]); the kernel's namespace
    /// selection is made the session's first.
    fn read_health(&mut self) -> Result<Option<stats::HealthInterval>, Error> {
        let Some(h) = &mut self.health else { return Ok(None) };
        let topo = self.tc.topology()?;
        let covered: Option<std::collections::HashSet<u64>> = h.netns.as_mut().map(|f| {
            f.sync(topo.entry.keys());
            topo.entry.keys().copied().chain(topo.attached.iter().map(|(ns, _)| *ns)).collect()
        });
        let globs = self.job.select.iface_globs.is_some();
        let iv = h.meter.read(|ns, idx| health::place(ns, idx, &topo.attached, globs, covered.as_ref())).map_err(TopError::from)?;
        Ok(Some(iv))
    }
}

impl Running for Top {
    const UNIT: &'static str = "reports";
    const EVERY_LOSS_SOURCE: bool = true;

    fn ready(&self) -> String {
        self.ready.clone()
    }

    fn tick(&self) -> Duration {
        self.job.interval
    }

    async fn wake(&mut self) -> Result<(), Error> {
        if !self.meter.by_process() {
            return std::future::pending().await;
        }
        tokio::time::sleep(PROCS_DRAIN).await;
        self.meter.drain(&*self.tc.topology()?);
        Ok(())
    }

    fn ticked(&mut self) {
        self.due = true;
    }

    async fn stop(&mut self) {
        // Detach first: then the final read holds every packet counted.
        self.tc.stop().await;
    }

    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
        if !last && !std::mem::take(&mut self.due) {
            // A drain of socket events, not a report.
            return Ok(Step::default());
        }
        self.shown = false;
        if budget == Some(0) {
            // --count reports are out: nothing more to read or say.
            return Ok(Step::default());
        }
        let released = self.tc.topology()?.take_released();
        // Counters of released interfaces go after this read, unless
        // attached again meanwhile.
        let covered = covered(&self.tc)?;
        let iv = self.meter.read(released, &covered, last)?;
        let health = self.read_health()?;
        // A stop right on a report's heels has nothing new to say.
        let quiet = health.as_ref().is_none_or(|h| h.per_if.is_empty() && h.flows.is_empty());
        if last && iv.is_empty() && quiet && iv.secs < self.job.interval.as_secs_f64() / 10.0 {
            return Ok(Step::default());
        }
        let topo = self.tc.topology()?;
        let rows = match self.meter.process_rows(&iv, &topo) {
            Some(rows) => rows,
            None => stats::rows(self.job.by, &iv.ifaces, &iv.flows, &topo, health.as_ref()),
        };
        drop(topo);
        let mut lost = Running::lost(self);
        lost.sort();
        let rep = render::Report { by: self.job.by, wall_ns: clock::now_wall_ns(), secs: iv.secs, rows: &rows, lost: &lost };
        self.printer.print(&rep)?;
        self.shown = self.printer.shows_losses();
        Ok(Step { written: 1, done: false })
    }

    fn lost(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.meter.lost();
        if self.health.is_some() {
            // Drops and TCP events the counter maps had no room for.
            for s in [LostSource::DropStats, LostSource::TcpStats] {
                v.push((s.name(), self.meter.lost_in_kernel(s)));
            }
        }
        v
    }

    fn exit_lines(&self) -> Vec<String> {
        self.meter.procs_summary().into_iter().collect()
    }

    fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
        if self.shown {
            return Ok(());
        }
        let time = clock::rfc3339(clock::now_wall_ns());
        for (src, n) in new {
            self.sink.lost(src, *n, &time)?;
        }
        Ok(())
    }
}
