//! The one run loop every job that traces runs in: it waits for the job's
//! source or its tick, stops at `--duration`, at `--count` or when asked to
//! (SIGINT, SIGTERM, SIGHUP, through [`Shutdown`]), says what was lost as
//! it is lost and at exit, and prints the `ready` line and the exit
//! summary. What a job reads and writes is the job's ([`Running`]).

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::Error;
use crate::{
    bpf::lost::LostTracker,
    sys::shutdown::Shutdown,
};

/// How often the loss counters are read, at most (and once more at the
/// end): each read is a map lookup per source (per-CPU values, one syscall
/// each), which at every 20 ms tick was most of an idle tracer's CPU.
pub const LOST_EVERY: Duration = Duration::from_millis(250);

/// How long a job runs: until `deadline` (`--duration`), or `count` items
/// are written (`--count`), or a stop is asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub deadline: Option<Instant>,
    pub count: Option<u64>,
}

impl Limits {
    /// Resolves at the deadline (never without one).
    pub fn deadline(&self) -> impl Future<Output = ()> + use<> {
        let at = self.deadline;
        async move {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }
}

/// What one [`Running::step`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Step {
    /// Items written (events, or `top`'s reports).
    pub written: u64,
    /// The job cannot go on (the reader of its pcapng went away).
    pub done: bool,
}

/// A job that has started: what the loop drives.
pub trait Running {
    /// What the exit line counts ("events", "reports").
    const UNIT: &'static str;
    /// The exit line lists every source of losses the job has, zeros
    /// included, instead of those that lost something (`top`'s table
    /// header does the same).
    const EVERY_LOSS_SOURCE: bool = false;

    /// What the `ready` line says, after `ready: `.
    fn ready(&self) -> String;
    /// How often [`Running::step`] runs when nothing wakes it.
    fn tick(&self) -> Duration;
    /// Resolves when there is something to read, and reads it (never, for
    /// a job that only ticks).
    fn wake(&mut self) -> impl Future<Output = Result<(), Error>>;
    /// On every tick, before the step.
    fn ticked(&mut self) {}
    /// Before the last step: let the last events in, and detach.
    fn stop(&mut self) -> impl Future<Output = ()>;
    /// Takes what came in and writes what is ready: at most `budget`
    /// items when `--count` is given. `last`: the final step, after
    /// [`Running::stop`].
    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error>;
    /// Totals lost so far, by source.
    fn lost(&self) -> Vec<(&'static str, u64)>;
    /// Says what was lost since the last call (`source`, count).
    fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error>;
    /// Lines for stderr at exit, before the summary line.
    fn exit_lines(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Runs `job` until it ends by itself (`--count`, the job's own end) or
/// `--duration` or a stop request comes; then a last step after the job
/// detached, and the exit summary. Returns the number of items written.
pub async fn run<J: Running>(job: &mut J, limits: Limits, stop: Shutdown) -> Result<u64, Error> {
    eprintln!("tracer: ready: {}", job.ready());
    let shutdown = stop.wait();
    tokio::pin!(shutdown);
    let deadline = limits.deadline();
    tokio::pin!(deadline);
    // The job may change its tick as it goes (slower while idle).
    let mut next_tick = Instant::now() + job.tick();
    let mut lost = LostTracker::default();
    let mut lost_read: Option<Instant> = None;
    let mut written: u64 = 0;
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = &mut shutdown => stopping = true,
                _ = &mut deadline => stopping = true,
                r = job.wake() => r?,
                _ = tokio::time::sleep_until(next_tick) => {
                    job.ticked();
                    // A period after this tick: a late tick delays the next
                    // one instead of bringing it closer, so no interval is
                    // shorter than asked (`top` printed a 0.07 s report
                    // after a tick 0.25 s late, catching up the schedule).
                    next_tick = Instant::now() + job.tick();
                }
            }
        }
        if stopping {
            job.stop().await;
        }
        let budget = limits.count.map(|c| c.saturating_sub(written));
        let step = job.step(stopping, budget)?;
        written += step.written;
        if stopping || lost_read.is_none_or(|t| t.elapsed() >= LOST_EVERY) {
            lost_read = Some(Instant::now());
            let new = lost.update(job.lost());
            job.say_lost(&new)?;
        }
        if stopping {
            break;
        }
        stopping = step.done || limits.count.is_some_and(|c| written >= c);
    }
    for line in job.exit_lines() {
        eprintln!("tracer: {line}");
    }
    let summary = if J::EVERY_LOSS_SOURCE { lost.every_source() } else { lost.summary() };
    eprintln!("tracer: {written} {}, lost: {summary}", J::UNIT);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, sync::Arc, sync::Mutex};

    use super::*;

    /// A job that writes what a script of steps says, loses one thing every
    /// second step, and records what the loop asked of it.
    struct Scripted {
        steps: VecDeque<Step>,
        log: Arc<Mutex<Vec<String>>>,
        lost: u64,
    }

    impl Running for Scripted {
        const UNIT: &'static str = "items";

        fn ready(&self) -> String {
            "scripted".into()
        }

        fn tick(&self) -> Duration {
            Duration::from_millis(5)
        }

        async fn wake(&mut self) -> Result<(), Error> {
            std::future::pending().await
        }

        async fn stop(&mut self) {
            self.log.lock().expect("log").push("stop".into());
        }

        fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
            self.log.lock().expect("log").push(format!("step last={last} budget={budget:?}"));
            self.lost += 1;
            let s = self.steps.pop_front().unwrap_or_default();
            Ok(Step { written: s.written.min(budget.unwrap_or(u64::MAX)), ..s })
        }

        fn lost(&self) -> Vec<(&'static str, u64)> {
            vec![("thing", self.lost / 2)]
        }

        fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
            for (s, n) in new {
                self.log.lock().expect("log").push(format!("lost {s} {n}"));
            }
            Ok(())
        }
    }

    fn scripted(steps: &[(u64, bool)]) -> (Scripted, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let steps = steps.iter().map(|&(written, done)| Step { written, done }).collect();
        (Scripted { steps, log: log.clone(), lost: 0 }, log)
    }

    #[tokio::test]
    async fn count_ends_the_job_with_one_last_step_after_stop() {
        let (mut job, log) = scripted(&[(2, false), (2, false), (5, false)]);
        let n = run(&mut job, Limits { count: Some(3), deadline: None }, Shutdown::never()).await.expect("runs");
        assert_eq!(n, 3, "never more than --count");
        let log = log.lock().expect("log").clone();
        // Losses are read after the first step, then at most every
        // LOST_EVERY, and after the last.
        assert_eq!(
            log,
            ["step last=false budget=Some(3)", "step last=false budget=Some(1)", "stop", "step last=true budget=Some(0)", "lost thing 1"]
        );
    }

    #[tokio::test]
    async fn a_stop_request_and_the_deadline_end_it_the_same_way() {
        let (trigger, stop) = Shutdown::new();
        trigger.fire();
        let (mut job, log) = scripted(&[]);
        assert_eq!(run(&mut job, Limits::default(), stop).await.expect("runs"), 0);
        assert_eq!(log.lock().expect("log").clone(), ["stop", "step last=true budget=None"]);
        let (mut job, log) = scripted(&[]);
        let limits = Limits { deadline: Some(Instant::now() + Duration::from_millis(30)), count: None };
        let start = std::time::Instant::now();
        run(&mut job, limits, Shutdown::never()).await.expect("runs");
        assert!(start.elapsed() >= Duration::from_millis(30));
        let log = log.lock().expect("log").clone();
        let stops: Vec<usize> = log.iter().enumerate().filter(|(_, l)| *l == "stop").map(|(i, _)| i).collect();
        assert_eq!(stops.len(), 1, "{log:?}");
        assert_eq!(log[stops[0] + 1], "step last=true budget=None", "{log:?}");
        assert!(log[..stops[0]].iter().all(|l| !l.contains("last=true")), "{log:?}");
    }

    #[tokio::test]
    async fn losses_are_read_every_lost_every_and_at_the_end() {
        // A step every 5 ms for 600 ms, one loss every second step.
        let (mut job, log) = scripted(&[]);
        let limits = Limits { deadline: Some(Instant::now() + Duration::from_millis(600)), count: None };
        run(&mut job, limits, Shutdown::never()).await.expect("runs");
        let log = log.lock().expect("log").clone();
        let steps = log.iter().filter(|l| l.starts_with("step")).count();
        let reads: Vec<&String> = log.iter().filter(|l| l.starts_with("lost")).collect();
        assert!(steps > 20, "{steps} steps");
        // Read after the first step (nothing lost yet), at 250 and 500 ms,
        // and after the last: 2 or 3 lines (a read every step said ~60).
        assert!((2..=3).contains(&reads.len()), "{reads:?}");
        let total: u64 = reads.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
        assert_eq!(total, job.lost / 2, "every loss said once: {reads:?}");
    }

    /// Ticks every 100 ms; its first step takes 160 ms (the next tick
    /// comes late), and it keeps when each tick came.
    struct Slow {
        began: Vec<std::time::Instant>,
    }

    impl Running for Slow {
        const UNIT: &'static str = "items";

        fn ready(&self) -> String {
            "slow".into()
        }

        fn tick(&self) -> Duration {
            Duration::from_millis(100)
        }

        async fn wake(&mut self) -> Result<(), Error> {
            std::future::pending().await
        }

        fn ticked(&mut self) {
            self.began.push(std::time::Instant::now());
        }

        async fn stop(&mut self) {}

        fn step(&mut self, last: bool, _budget: Option<u64>) -> Result<Step, Error> {
            if !last && self.began.len() == 1 {
                std::thread::sleep(Duration::from_millis(160));
            }
            Ok(Step::default())
        }

        fn lost(&self) -> Vec<(&'static str, u64)> {
            Vec::new()
        }

        fn say_lost(&mut self, _new: &[(&'static str, u64)]) -> Result<(), Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_late_tick_delays_the_next_instead_of_bringing_it_closer() {
        let mut job = Slow { began: Vec::new() };
        let limits = Limits { deadline: Some(Instant::now() + Duration::from_millis(520)), count: None };
        run(&mut job, limits, Shutdown::never()).await.expect("runs");
        assert!(job.began.len() >= 3, "{} steps", job.began.len());
        // Catching up the schedule put the third tick 40 ms after the
        // second; a tick is never early, so none may come sooner than 100.
        for w in job.began.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= Duration::from_millis(99), "a tick {gap:?} after the one before");
        }
    }

    #[tokio::test]
    async fn a_job_that_is_done_gets_its_last_step() {
        let (mut job, log) = scripted(&[(1, true)]);
        assert_eq!(run(&mut job, Limits::default(), Shutdown::never()).await.expect("runs"), 1);
        let log = log.lock().expect("log").clone();
        assert_eq!(&log[..2], ["step last=false budget=None", "stop"]);
        assert_eq!(log.iter().filter(|l| l.starts_with("step")).count(), 2);
    }
}
