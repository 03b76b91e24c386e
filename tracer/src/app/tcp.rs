//! `tracer tcp` running: records of the TCP tracepoint programs decoded
//! into events ([`crate::tcp`]), each connection's history kept by the
//! tracker (time in each state, the peer's namespace, the summary at
//! close), written as text or JSON lines. The packet filter is applied
//! here, to each event's connection as a segment.

use tracer_common::tp::{ObsConfig, mode};

use super::{
    Error,
    obs::{TpSession, scope_text, tp_ring_job},
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::{
        event::RawEvent,
        tp::{self, EnumNames, Tracepoint},
    },
    output::Sink,
    sys::{
        clock::Clock,
        shutdown::Shutdown,
    },
    tc::cbpf::{Filter, LinkType},
    tcp::{
        TcpJob,
        event::TcpEvent,
        tracker::{self, Tracker},
    },
};

/// The tracepoints without which `tracer tcp` does not start.
const NEEDED: [&str; 2] = ["inet_sock_set_state", "tcp_retransmit_skb"];

struct Tcp {
    s: TpSession,
    clock: Clock,
    rst_reasons: EnumNames,
    tracker: Tracker,
    sink: Sink,
    batch: Vec<RawEvent>,
    ready: String,
    /// libpcap's code for the filter on raw IP (`None`: every connection).
    filter: Option<Filter>,
}

/// `tracer tcp` until `limits` or `stop`.
pub async fn run(job: TcpJob, json: bool, ring_bytes: Option<u32>, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    let filter = job.filter.file_filter(LinkType::RawIp).map_err(|e| Error::Usage(format!("invalid filter \"{}\": {e}", job.filter.expression())))?;
    let obs = ObsConfig { tcp: mode::EVENTS, rtt_interval_ns: job.rtt_interval.as_nanos() as u64, ..ObsConfig::off() };
    let tps: Vec<Tracepoint> = tp::TRACEPOINTS.iter().filter(|t| t.name != tp::KFREE_SKB.name).copied().collect();
    let mut s = TpSession::start(obs, ring_bytes, &job.select, &tps, &NEEDED)?;
    if stop.stopped_during_start_up() {
        return Ok(());
    }
    let rst_reasons = std::mem::take(&mut s.loaded.rst_reasons);
    let ready = format!(
        "tracing TCP ({} tracepoints: {}) in {}, {}",
        s.attached.len(),
        s.attached.join(", "),
        scope_text(&job.select.scope),
        job.filter
    );
    let mut t = Tcp { s, clock: Clock::new(), rst_reasons, tracker: Tracker::new(), sink: Sink::new(json), batch: Vec::new(), ready, filter };
    run::run(&mut t, limits, stop).await?;
    Ok(())
}

impl Running for Tcp {
    const UNIT: &'static str = "TCP events";

    tp_ring_job!();






    fn step(&mut self, _last: bool, budget: Option<u64>) -> Result<Step, Error> {
        // A copy of the names for this batch (none without records).
        let names = if self.batch.is_empty() { Default::default() } else { self.s.names()? };
        let mut step = Step::default();
        for ev in self.batch.drain(..) {
            let Some(mut e) = TcpEvent::from_raw(&ev, &self.clock, &names, &self.rst_reasons) else {
                self.s.reader.malformed += 1;
                continue;
            };
            if let Some(f) = &self.filter {
                let seg = e.segment();
                if !f.matches(&seg, seg.len() as u32) {
                    continue;
                }
            }
            // Every event goes through the tracker, written or not: the
            // connections' histories stay whole.
            if !self.tracker.observe(&mut e) || budget.is_some_and(|b| step.written >= b) {
                continue;
            }
            self.sink.defer(&e);
            step.written += 1;
        }
        self.sink.flush()?;
        Ok(step)
    }



    fn exit_lines(&self) -> Vec<String> {
        vec![format!(
            "{} connections open at exit, {} forgotten (more than {})",
            self.tracker.len(),
            self.tracker.evicted,
            tracker::MAX_CONNS
        )]
    }
}
