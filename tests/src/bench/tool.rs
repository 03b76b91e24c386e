//! One tool watched during a benchmark round: started, timed until its
//! ready line, its stdout thrown away, written to a file or read line by
//! line, stopped with SIGINT, and its stderr summary parsed (the tracer's
//! `N events, lost: ...` and `N reports, lost: ...`, tcpdump's `captured`
//! and `dropped by kernel`).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Where the tool's stdout goes.
pub enum Stdout {
    Null,
    File(PathBuf),
    /// Each line to this function, on a thread of its own.
    Lines(Box<dyn FnMut(&str) + Send>),
}

pub struct Tool {
    child: Child,
    /// From spawn to the ready line.
    pub ready_after: Duration,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a stopped tool left.
pub struct Stopped {
    pub stderr: Vec<String>,
    pub code: Option<i32>,
    /// From SIGINT to exit.
    pub stop_after: Duration,
}

impl Tool {
    /// Starts `cmd` and waits up to `timeout` for a stderr line containing
    /// `ready_word`. An exit or silence before it is an error carrying the
    /// stderr. An empty `ready_word` waits a fixed 300 ms instead (perf
    /// says nothing when it starts).
    pub fn start(mut cmd: Command, ready_word: &str, stdout: Stdout, timeout: Duration) -> Result<Tool, String> {
        let (out, lines) = match stdout {
            Stdout::Null => (Stdio::null(), None),
            Stdout::File(p) => (File::create(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?.into(), None),
            Stdout::Lines(f) => (Stdio::piped(), Some(f)),
        };
        let started = Instant::now();
        let mut child = cmd.stdout(out).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let mut readers = Vec::new();
        if let (Some(mut f), Some(so)) = (lines, child.stdout.take()) {
            readers.push(std::thread::spawn(move || {
                for l in BufReader::new(so).lines().map_while(Result::ok) {
                    f(&l);
                }
            }));
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(se) = child.stderr.take() {
            let (word, keep) = (ready_word.to_string(), stderr.clone());
            readers.push(std::thread::spawn(move || {
                let mut said = false;
                for l in BufReader::new(se).lines().map_while(Result::ok) {
                    if !said && l.contains(&word) {
                        said = true;
                        let _ = tx.send(());
                    }
                    if let Ok(mut v) = keep.lock() {
                        v.push(l);
                    }
                }
            }));
        }
        let mut tool = Tool { child, ready_after: Duration::ZERO, stderr, readers };
        if ready_word.is_empty() {
            std::thread::sleep(Duration::from_millis(300));
            tool.ready_after = started.elapsed();
            return Ok(tool);
        }
        match rx.recv_timeout(timeout) {
            Ok(()) => {
                tool.ready_after = started.elapsed();
                Ok(tool)
            }
            Err(_) => {
                let stopped = tool.stop();
                Err(format!("{:?} was not ready within {timeout:?}: {}", cmd.get_program(), stopped.stderr.join(" / ")))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, then the exit (SIGKILL after 60 s), then what it printed.
    pub fn stop(mut self) -> Stopped {
        let t = Instant::now();
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut code = None;
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(s)) = self.child.try_wait() {
                code = s.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if code.is_none() {
            let _ = self.child.kill();
            code = self.child.wait().ok().and_then(|s| s.code());
        }
        let stop_after = t.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stderr = self.stderr.lock().map(|v| v.clone()).unwrap_or_default();
        Stopped { stderr, code, stop_after }
    }
}

/// What a tool said it delivered and lost.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// The tracer's `N events` (packets written or printed).
    pub events: Option<u64>,
    /// The tracer's `lost:` sources with their counts (zeros included).
    pub lost: Vec<(String, u64)>,
    /// tcpdump's `packets captured`.
    pub captured: Option<u64>,
    /// tcpdump's `packets dropped by kernel`.
    pub dropped: Option<u64>,
}

impl Summary {
    pub fn of(lines: &[String]) -> Summary {
        let mut s = Summary::default();
        let lead = |l: &str, tail: &str| l.trim().trim_start_matches("tracer: ").strip_suffix(tail).and_then(|n| n.trim().parse::<u64>().ok());
        for l in lines {
            if let Some((head, lost)) = l.split_once(", lost: ") {
                if let Some(n) = head.trim_start_matches("tracer: ").strip_suffix(" events").and_then(|n| n.parse().ok()) {
                    s.events = Some(n);
                }
                s.lost = lost
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('=').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
                    .collect();
            }
            if let Some(n) = lead(l, "packets captured") {
                s.captured = Some(n);
            }
            if let Some(n) = lead(l, "packets dropped by kernel") {
                s.dropped = Some(n);
            }
        }
        s
    }

    /// Everything lost, all sources together (tcpdump: dropped by kernel).
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|(_, n)| n).sum::<u64>() + self.dropped.unwrap_or(0)
    }

    /// The lost sources that lost something, `flow=12800`, or `none`.
    pub fn lost_text(&self) -> String {
        let v: Vec<String> = self.lost.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k}={n}")).collect();
        if v.is_empty() { "none".into() } else { v.join(" ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tracer_summaries() {
        let s = Summary::of(&lines(&["tracer: ready: ...", "tracer: 129988 packets written to x", "tracer: 129988 events, lost: none"]));
        assert_eq!((s.events, s.lost.len(), s.lost_total()), (Some(129988), 0, 0));
        let t = Summary::of(&lines(&["tracer: 4 reports, lost: flow=12800 stats=0"]));
        assert_eq!(t.events, None);
        assert_eq!(t.lost, vec![("flow".to_string(), 12800), ("stats".to_string(), 0)]);
        assert_eq!((t.lost_total(), t.lost_text()), (12800, "flow=12800".to_string()));
    }

    #[test]
    fn tcpdump_summary() {
        let s = Summary::of(&lines(&["28799 packets captured", "60142 packets received by filter", "31324 packets dropped by kernel"]));
        assert_eq!((s.captured, s.dropped, s.lost_total()), (Some(28799), Some(31324), 31324));
    }
}
