//! `tracer top` running: the TC session with the counting programs, a
//! report every interval ([`crate::top`] reads, sums and prints), and a
//! last one at the end that covers the time since the one before (after
//! detaching, so it holds everything counted).

use std::{collections::HashSet, time::Duration};

use super::{
    Error,
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::load::{self, LoadOptions},
    output::Sink,
    sys::{clock, shutdown::Shutdown},
    tc::{TcSession, attach::TOP_PROGRAMS},
    top::{Meter, TopJob, render, stats},
};

struct Top {
    job: TopJob,
    tc: TcSession,
    meter: Meter,
    printer: render::Printer,
    /// Lost lines, when the report's header does not show them.
    sink: Sink,
    /// The last step printed a report whose header showed the losses.
    shown: bool,
    ready: String,
}

/// Counts until `limits` or `stop`.
pub async fn run(job: TopJob, json: bool, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    // The ring buffer is not used: the smallest one the kernel takes.
    let mut loaded = load::load_for_job(&LoadOptions { ring_bytes: 4096, top: true, ..Default::default() })?;
    let meter = Meter::take(&mut loaded.ebpf)?;
    let Some((tc, first)) = TcSession::start(loaded.ebpf, TOP_PROGRAMS, &job.filter, &job.select, "count", &stop).await? else {
        return Ok(());
    };
    let ready = format!(
        "counting packets on {} interfaces in {} namespaces ({}, {}, by {})",
        first.interfaces,
        first.namespaces,
        first.mode.name(),
        job.filter,
        job.by.name()
    );
    let printer = render::Printer::new(json, job.limit);
    let mut top = Top { job, tc, meter, printer, sink: Sink::new(json), shown: false, ready };
    run::run(&mut top, limits, stop).await?;
    Ok(())
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
        std::future::pending().await
    }

    async fn stop(&mut self) {
        // Detach first: then the final read holds every packet counted.
        self.tc.stop().await;
    }

    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
        self.shown = false;
        if budget == Some(0) {
            // --count reports are out: nothing more to read or say.
            return Ok(Step::default());
        }
        let released = self.tc.topology()?.take_released();
        // Counters of released interfaces go after this read, unless
        // attached again meanwhile.
        let attached = if released.is_empty() { HashSet::new() } else { self.tc.topology()?.attached.clone() };
        let iv = self.meter.read(released, |k| attached.contains(k), last)?;
        // A stop right on a report's heels has nothing new to say.
        if last && iv.is_empty() && iv.secs < self.job.interval.as_secs_f64() / 10.0 {
            return Ok(Step::default());
        }
        let rows = stats::rows(self.job.by, &iv.ifaces, &iv.flows, &*self.tc.topology()?);
        let mut lost = self.meter.lost();
        lost.sort();
        let rep = render::Report { by: self.job.by, wall_ns: clock::now_wall_ns(), secs: iv.secs, rows: &rows, lost: &lost };
        self.printer.print(&rep)?;
        self.shown = self.printer.shows_losses();
        Ok(Step { written: 1, done: false })
    }

    fn lost(&self) -> Vec<(&'static str, u64)> {
        self.meter.lost()
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
