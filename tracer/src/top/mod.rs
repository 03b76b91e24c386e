//! `tracer top`: where the traffic goes, per container, interface or flow,
//! counted in the kernel.
//!
//! Layers, data flowing one way: discovery and attaching are those of
//! `tracer packets` ([`crate::packets::follow`], with the `top_*`
//! programs) -> the kernel counts per interface and per flow in per-CPU
//! maps -> [`counters`] reads them every interval -> [`stats`] turns
//! running totals into deltas, rates and rows -> [`render`] prints them.
//! Nothing goes through the ring buffer, so nothing is lost there; what can
//! be lost (an interface counter that could not be created, packets of a
//! flow evicted before it was read) is counted and reported.

pub mod counters;
pub mod procs;
pub mod render;
pub mod stats;

use std::{
    collections::HashMap,
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracer_common::{
    LostSource, maps,
    packet::{DIR_EGRESS, DIR_INGRESS},
    top::{FlowKey, IfaceKey},
};

use crate::{
    Error,
    cli::{CommonArgs, TopArgs},
    clock, ebpf,
    ns,
    output::{self, Sink},
    packets::{
        PacketsError, Scope, Selection, Topology,
        attach::{Attacher, TOP_PROC_PROGRAMS, TOP_PROGRAMS, TcMode},
        filter::{self, FilterProgram},
        follow::Follower,
    },
    reader::{LostCounters, LostTracker},
    shutdown::Shutdown,
};
use counters::{CounterMap, CountersError};
pub use stats::By;
use stats::{Count, Deltas, Unattributed};

/// The shortest `--interval`: reading the maps more often costs more than
/// it shows.
pub const MIN_INTERVAL: f64 = 0.05;

/// The validated form of `tracer top`.
#[derive(Clone, Debug)]
pub struct TopJob {
    pub select: Selection,
    pub filter: FilterProgram,
    pub interval: Duration,
    pub by: By,
    pub limit: Option<usize>,
}

impl TopJob {
    pub fn from_args(a: &TopArgs) -> Result<Self, Error> {
        if !(a.interval.is_finite() && a.interval >= MIN_INTERVAL) {
            return Err(Error::Usage(format!("--interval must be at least {MIN_INTERVAL} seconds, not {}", a.interval)));
        }
        if a.limit == Some(0) {
            return Err(Error::Usage("--limit must be at least 1".into()));
        }
        let select = Selection::from_args(&a.sel, a.all, a.iface.as_deref())?;
        let filter = filter::from_args(a.filter.as_deref(), &a.expr)?;
        Ok(Self { select, filter, interval: Duration::from_secs_f64(a.interval), by: a.by, limit: a.limit })
    }
}

/// Everything read and computed at one report.
struct State {
    flows: CounterMap<FlowKey>,
    ifaces: CounterMap<IfaceKey>,
    flow_deltas: Deltas<FlowKey>,
    iface_deltas: Deltas<IfaceKey>,
    unattributed: Unattributed,
    /// The kernel's loss counters; with `--by process` the ring buffer's
    /// reader holds them instead.
    lost_kernel: Option<LostCounters>,
    lost: LostTracker,
    last_read: Instant,
    /// `--by process`: the per-socket counters and the attribution.
    procs: Option<procs::ProcTop>,
}

/// One read of both maps.
struct Interval {
    secs: f64,
    ifaces: HashMap<IfaceKey, Count>,
    flows: HashMap<FlowKey, Count>,
    /// `--by process`: the flows per sending socket.
    proc_flows: Option<HashMap<tracer_common::top::ProcFlowKey, Count>>,
}

impl State {
    /// Reads the counters. `last`: the programs are detached, so this read
    /// is final. Entries of interfaces released before the read are
    /// deleted after it: all they counted is in it.
    fn read(&mut self, topo: &Mutex<Topology>, last: bool) -> Result<Interval, Error> {
        let released = topo.lock().map_err(|_| PacketsError::Follower)?.take_released();
        // Flows before interfaces, the reverse of the kernel's order (see
        // stats::Unattributed).
        let (flows_now, proc_flows) = match &mut self.procs {
            None => (Some(self.flows.read().map_err(TopError::from)?), None),
            Some(p) => (None, Some(p.update()?)),
        };
        let ifaces_now = self.ifaces.read().map_err(TopError::from)?;
        let now = Instant::now();
        let secs = now.duration_since(self.last_read).as_secs_f64();
        self.last_read = now;
        let flows = match (flows_now, &proc_flows) {
            (Some(f), _) => self.flow_deltas.update(f),
            (None, Some(pf)) => procs::collapse(pf),
            (None, None) => HashMap::new(),
        };
        let ifaces = self.iface_deltas.update(ifaces_now);
        self.unattributed.update(&ifaces, &flows, last);
        if !released.is_empty() {
            let attached = topo.lock().map_err(|_| PacketsError::Follower)?.attached.clone();
            for (ns, ifindex) in released.into_iter().filter(|k| !attached.contains(k)) {
                let netns_ino = ns as u32;
                for direction in [DIR_INGRESS, DIR_EGRESS] {
                    let k = IfaceKey { netns_ino, ifindex, direction, _pad: [0; 7] };
                    self.ifaces.delete(&k).map_err(TopError::from)?;
                    self.iface_deltas.forget(&k);
                }
                match (&mut self.procs, &proc_flows) {
                    (Some(p), Some(pf)) => p.forget_iface(netns_ino, ifindex, pf)?,
                    _ => {
                        for k in flows.keys().filter(|k| k.netns_ino == netns_ino && k.ifindex == ifindex) {
                            self.flows.delete(k).map_err(TopError::from)?;
                            self.flow_deltas.forget(k);
                        }
                    }
                }
            }
        }
        Ok(Interval { secs, ifaces, flows, proc_flows })
    }

    /// New losses since the last call, and the totals so far.
    fn losses(&mut self) -> (Losses, Losses) {
        let kernel = self.lost_kernel.as_ref().or(self.procs.as_ref().map(|p| p.reader.lost_counters()));
        let total = |s: LostSource| kernel.map_or(0, |k| k.total(s));
        let mut sources = vec![("flow", self.unattributed.total), (LostSource::Stats.name(), total(LostSource::Stats))];
        if self.procs.is_some() {
            sources.push((LostSource::Sock.name(), total(LostSource::Sock)));
        }
        let new = self.lost.update(sources);
        (new, self.lost.totals())
    }
}

/// Lost events by source.
type Losses = Vec<(&'static str, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Counters(#[from] CountersError),
}

/// Where reports go.
struct Printer {
    json: bool,
    /// Terminal height when redrawing in place.
    tty: Option<usize>,
    limit: Option<usize>,
    sink: Sink,
    reports: u64,
}

impl Printer {
    fn print(&mut self, rep: &render::Report<'_>, new_lost: &[(&'static str, u64)]) -> Result<(), Error> {
        let mut buf: Vec<u8> = Vec::new();
        let time = clock::rfc3339(rep.wall_ns);
        if self.json {
            for r in rep.rows.iter().take(self.limit.unwrap_or(usize::MAX)) {
                buf.extend_from_slice(output::json_safe(render::json_line(r, rep, &time)).as_bytes());
                buf.push(b'\n');
            }
        } else if let Some(height) = self.tty {
            // Home, clear, redraw: header, column names, and what fits. These
            // are the only terminal controls written: the table escapes names.
            buf.extend_from_slice(b"\x1b[H\x1b[2J");
            let fit = height.saturating_sub(3).max(1);
            render::table(rep, self.limit.unwrap_or(fit).min(fit), &mut buf)?;
        } else {
            if self.reports > 0 {
                buf.push(b'\n');
            }
            render::table(rep, self.limit.unwrap_or(usize::MAX), &mut buf)?;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()?;
        drop(out);
        self.reports += 1;
        // On a terminal the header shows losses; elsewhere they are lines
        // of their own, as every command reports them.
        if self.tty.is_none() {
            for (src, n) in new_lost {
                self.sink.lost(src, *n, &time)?;
            }
        }
        Ok(())
    }
}

/// Counts until `--count` reports, `--duration` or `shutdown`; the last
/// report covers the time since the one before (after detaching, so it
/// holds everything counted). Returns the number of reports.
pub async fn run(job: TopJob, common: CommonArgs, stop: Shutdown) -> Result<u64, Error> {
    // The ring buffer is not used: the smallest one the kernel takes.
    let by_process = job.by == By::Process;
    let opts = if by_process {
        // The ring buffer carries socket events, drained on a short timer.
        let procs = Some(crate::procs::ProcSelect::default().config(false));
        ebpf::LoadOptions { ring_bytes: 4 << 20, top: true, top_proc: true, procs, ..Default::default() }
    } else {
        // The ring buffer is not used: the smallest one the kernel takes.
        ebpf::LoadOptions { ring_bytes: 4096, top: true, ..Default::default() }
    };
    let mut loaded = ebpf::load(&opts)?;
    if !loaded.missing_fields.is_empty() {
        return Err(Error::Kernel(format!("its BTF lacks {}", loaded.missing_fields.join(", "))));
    }
    // Before any program is attached (see packets::run).
    filter::install(&mut loaded.ebpf, &job.filter).map_err(PacketsError::from)?;
    let flows = CounterMap::take(&mut loaded.ebpf, maps::TOP_FLOWS).map_err(TopError::from)?;
    let ifaces = CounterMap::take(&mut loaded.ebpf, maps::TOP_IFACES).map_err(TopError::from)?;
    // With `--by process` the ring buffer's reader takes the loss counters.
    let proc_top = if by_process { Some(procs::ProcTop::start(&mut loaded.ebpf)?) } else { None };
    let lost_kernel = if by_process { None } else { Some(LostCounters::new(&mut loaded.ebpf)?) };
    let programs = if by_process { TOP_PROC_PROGRAMS } else { TOP_PROGRAMS };
    let attacher = Attacher::new(&mut loaded.ebpf, TcMode::detect(), programs)?;
    if crate::stopped_during_start_up(&stop) {
        return Ok(0);
    }

    let host_netns = ns::resolve_pid(std::process::id()).ok();
    let topo = Arc::new(Mutex::new(Topology::new(host_netns)));
    let (mut follower, first) = Follower::start(loaded.ebpf, attacher, job.select.clone(), topo.clone(), stop.clone()).await?;
    if stop.is_set() {
        follower.stop().await;
        crate::stopped_during_start_up(&stop);
        return Ok(0);
    }
    if first.interfaces == 0 && job.select.scope != Scope::All {
        eprintln!("tracer: nothing to count there yet; waiting for an interface to appear");
    }
    eprintln!(
        "tracer: ready: counting packets on {} interfaces in {} namespaces ({}, {}, by {})",
        first.interfaces,
        first.namespaces,
        first.mode.name(),
        job.filter,
        job.by.name()
    );

    let mut state = State {
        flows,
        ifaces,
        flow_deltas: Deltas::default(),
        iface_deltas: Deltas::default(),
        unattributed: Unattributed::default(),
        lost_kernel,
        lost: LostTracker::default(),
        last_read: Instant::now(),
        procs: proc_top,
    };
    let mut printer = Printer {
        json: common.json,
        tty: if common.json { None } else { render::terminal_rows() },
        limit: job.limit,
        sink: Sink::new(common.json),
        reports: 0,
    };

    let shutdown = stop.wait();
    tokio::pin!(shutdown);
    let forever = Duration::from_secs(u64::MAX / 4);
    let deadline = tokio::time::sleep(common.duration.map(Duration::from_secs_f64).unwrap_or(forever));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + job.interval, job.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `--by process`: socket events do not wake the reader.
    let mut drain = tokio::time::interval(Duration::from_millis(100));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = &mut shutdown => true,
            _ = &mut deadline => true,
            _ = tick.tick() => false,
            _ = drain.tick(), if state.procs.is_some() => {
                if let Some(p) = &mut state.procs {
                    let t = topo.lock().map_err(|_| PacketsError::Follower)?;
                    p.drain(&t);
                }
                continue;
            }
        };
        if last {
            // Detach first: then the final read holds every packet counted.
            follower.stop().await;
        }
        let iv = state.read(&topo, last)?;
        let rows = {
            let t = topo.lock().map_err(|_| PacketsError::Follower)?;
            match (&mut state.procs, &iv.proc_flows) {
                (Some(p), Some(pf)) => {
                    // The owners of every socket that counted, first.
                    p.drain(&t);
                    procs::rows(pf, &mut p.attribution, &t)
                }
                _ => stats::rows(job.by, &iv.ifaces, &iv.flows, &t),
            }
        };
        let (new_lost, lost_totals) = state.losses();
        // A stop right on a report's heels has nothing new to say.
        let empty = iv.ifaces.values().all(Count::is_zero) && iv.flows.values().all(Count::is_zero);
        if !(last && empty && iv.secs < job.interval.as_secs_f64() / 10.0) {
            let rep = render::Report { by: job.by, wall_ns: clock::now_wall_ns(), secs: iv.secs, rows: &rows, lost: &lost_totals };
            printer.print(&rep, &new_lost)?;
        } else {
            for (src, n) in &new_lost {
                printer.sink.lost(src, *n, &clock::rfc3339(clock::now_wall_ns()))?;
            }
        }
        if last || common.count.is_some_and(|c| printer.reports >= c) {
            break;
        }
    }
    follower.stop().await;
    if let Some(p) = &state.procs {
        eprintln!("tracer: {}", p.attribution.summary());
    }
    let summary: Vec<String> = state.lost.totals().iter().map(|(s, n)| format!("{s}={n}")).collect();
    eprintln!("tracer: {} reports, lost: {}", printer.reports, summary.join(" "));
    Ok(printer.reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> TopArgs {
        TopArgs {
            sel: Default::default(),
            all: false,
            iface: None,
            filter: None,
            interval: 1.0,
            by: By::Iface,
            limit: None,
            expr: vec![],
        }
    }

    #[test]
    fn args_validate() {
        let j = TopJob::from_args(&args()).expect("ok");
        assert_eq!((j.interval, j.by, j.select.scope), (Duration::from_secs(1), By::Iface, Scope::All));
        assert!(j.filter.is_match_all());
        let j = TopJob::from_args(&TopArgs { expr: vec!["udp".into(), "port".into(), "53".into()], ..args() }).expect("ok");
        assert_eq!(j.filter.expression(), "udp port 53");
        for bad in [
            TopArgs { interval: 0.0, ..args() },
            TopArgs { interval: f64::NAN, ..args() },
            TopArgs { limit: Some(0), ..args() },
            TopArgs { filter: Some("tcp".into()), expr: vec!["udp".into()], ..args() },
            TopArgs { expr: vec!["tcp[13]".into()], ..args() },
            TopArgs { iface: Some(",".into()), ..args() },
        ] {
            assert!(matches!(TopJob::from_args(&bad), Err(Error::Usage(_))), "{bad:?}");
        }
    }
}
