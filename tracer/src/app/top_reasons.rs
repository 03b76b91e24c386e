//! `tracer top --by reason` running: the `skb:kfree_skb` program loaded in
//! its counting mode (per-CPU counters per namespace, interface and
//! reason; no record per drop), attached like `tracer drops`' (`obs.rs`),
//! and a report every interval ([`crate::top::reasons`]), and a last one
//! at the end covering the time since the one before.

use std::{io::Write as _, time::Duration};

use tracer_common::{
    LostSource,
    tp::{ObsConfig, mode},
};

use super::{
    Error,
    obs::{TpSession, scope_text},
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::tp::{self, EnumNames},
    output::Sink,
    sys::{clock, shutdown::Shutdown},
    top::{
        TopError, TopJob,
        reasons::{self, ReasonMeter},
    },
};

struct ReasonTop {
    s: TpSession,
    meter: ReasonMeter,
    reasons: EnumNames,
    json: bool,
    interval: Duration,
    due: bool,
    sink: Sink,
    ready: String,
}

/// Counts drops until `limits` or `stop`.
pub async fn run(job: TopJob, json: bool, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    let obs = ObsConfig { drops: mode::COUNT, ..ObsConfig::off() };
    // The ring buffer carries nothing but what the tracepoint cannot count.
    let mut s = TpSession::start(obs, Some(4096), &job.select, &[tp::KFREE_SKB], &[tp::KFREE_SKB.name])?;
    let meter = ReasonMeter::take(&mut s.loaded.ebpf).map_err(TopError::from)?;
    if stop.stopped_during_start_up() {
        return Ok(());
    }
    let reasons = std::mem::take(&mut s.loaded.drop_reasons);
    let ready = format!("counting drops (kfree_skb, {} reasons named from BTF) in {}, by reason", reasons.len(), scope_text(&job.select.scope));
    let mut t = ReasonTop { s, meter, reasons, json, interval: job.interval, due: false, sink: Sink::new(json), ready };
    run::run(&mut t, limits, stop).await?;
    Ok(())
}

impl Running for ReasonTop {
    const UNIT: &'static str = "reports";

    fn ready(&self) -> String {
        self.ready.clone()
    }

    fn tick(&self) -> Duration {
        self.interval
    }

    async fn wake(&mut self) -> Result<(), Error> {
        std::future::pending().await
    }

    fn ticked(&mut self) {
        self.due = true;
        self.s.sync_selection();
    }

    async fn stop(&mut self) {}

    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
        if (!last && !std::mem::take(&mut self.due)) || budget == Some(0) {
            return Ok(Step::default());
        }
        let (secs, counts) = self.meter.read().map_err(TopError::from)?;
        if last && counts.iter().all(|c| c.1 == 0) && secs < self.interval.as_secs_f64() / 10.0 {
            return Ok(Step::default());
        }
        let names = self.s.names()?;
        let rows = reasons::rows(&counts, &names, &self.reasons);
        let wall = clock::now_wall_ns();
        let mut out = std::io::stdout().lock();
        if self.json {
            let time = clock::rfc3339(wall);
            for r in &rows {
                writeln!(out, "{}", reasons::json_line(r, secs, &time))?;
            }
        } else {
            reasons::table(&rows, secs, wall, &self.lost(), &mut out)?;
        }
        out.flush()?;
        Ok(Step { written: 1, done: false })
    }

    /// Drops the counters could not count (a full map): nothing of this
    /// job goes through the ring buffer.
    fn lost(&self) -> Vec<(&'static str, u64)> {
        vec![(LostSource::DropStats.name(), self.s.reader.lost_of(LostSource::DropStats))]
    }

    fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
        let time = clock::rfc3339(clock::now_wall_ns());
        for (src, n) in new {
            self.sink.lost(src, *n, &time)?;
        }
        Ok(())
    }
}
