//! The crafted netlink flood of issue #8, shared by its integration test
//! (tests/tests/flood.rs) and its benchmark (bench-flood): an unprivileged
//! user (`nobody`) sends RTM_SETLINK requests with 4 KiB names and random
//! ifindexes as fast as it can, never reading the answers, while a tracer
//! runs; root sends a valid request from a lab namespace while the flood
//! is under way. The tracer's peak RSS (`VmHWM`), what it reported and
//! lost, and whether it still reported the valid request are returned.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{LabNs, pid_and_run, sh_out, tracer_bin, unique_id};

/// What one flood run measured.
#[derive(Debug, Clone)]
pub struct FloodResult {
    /// Requests the flood sent (the kernel refused them all).
    pub sent: u64,
    /// Seconds the flood took to send them.
    pub flood_secs: f64,
    /// RTM_SETLINK lines the tracer printed.
    pub reported: u64,
    /// Sum of the tracer's `lost` counts.
    pub lost: u64,
    /// The tracer's peak resident set, `VmHWM`, in KiB.
    pub peak_rss_kib: u64,
    /// Its resident set at the end, `VmRSS`, in KiB.
    pub rss_kib: u64,
    /// Root's valid request, sent during the flood, as reported (if it was).
    pub after: Option<Value>,
    /// Seconds from root's request until it was reported.
    pub after_secs: f64,
    /// Whether the flood was still being sent when root's request was
    /// answered (else the run proves less than it should).
    pub during_flood: bool,
    /// The tracer's exit code after SIGINT.
    pub exit: i32,
    /// The tracer's stderr.
    pub stderr: String,
}

/// A field of /proc/PID/status in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `tracer ARGS` (which must print JSON), floods it with `count`
/// requests with `name_len`-byte names sent as `nobody`, then adds a bridge
/// in `ns` and waits up to `wait` for it to be reported.
pub fn run(args: &[&str], ns: &LabNs, count: u64, name_len: usize, wait: Duration) -> FloodResult {
    let bin = std::env::var("TRACER_FLOOD_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| tracer_bin());
    let mut child = Command::new(bin).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn tracer");
    let pid = child.id();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    {
        let err = child.stderr.take().expect("stderr");
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = ready_tx.send(());
                }
                let mut s = stderr.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
    }
    ready_rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("tracer never ready: {}", stderr.lock().expect("lock")));

    // Stdout is read as fast as it comes and kept only where it matters:
    // the flood's lines are ~4 KiB each, far too many to keep.
    let bridge = format!("trfl{}", unique_id());
    let reported = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let after: Arc<Mutex<Option<Value>>> = Arc::new(Mutex::new(None));
    {
        let out = child.stdout.take().expect("stdout");
        let (reported, lost, after, bridge) = (reported.clone(), lost.clone(), after.clone(), bridge.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("\"RTM_SETLINK\"") {
                    reported.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("\"lost\"") || line.contains(&bridge) {
                    let v: Value = serde_json::from_str(&line).unwrap_or_default();
                    if v["type"] == "lost" {
                        lost.fetch_add(v["count"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    } else if v["attrs"]["ifname"] == bridge.as_str() {
                        *after.lock().expect("lock") = Some(v);
                    }
                }
            }
        });
    }

    let helper = format!("{}/helpers/nlflood.py", env!("CARGO_MANIFEST_DIR"));
    let mut nlflood = Command::new("python3")
        .args([helper.as_str(), &count.to_string(), &name_len.to_string(), "--as-nobody"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlflood.py");
    // Root's request goes in once the flood is under way: the tracer has
    // printed its first requests, and the ring fills in a few more ms.
    let t = Instant::now();
    while reported.load(Ordering::Relaxed) < 100 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let (_, add) = pid_and_run(&format!("ip netns exec {}", ns.name), &format!("ip link add {bridge} type bridge"));
    assert!(add.status.success(), "ip link add: {}", String::from_utf8_lossy(&add.stderr));
    let during_flood = matches!(nlflood.try_wait(), Ok(None));
    let out = nlflood.wait_with_output().expect("nlflood.py");
    assert!(out.status.success(), "flood failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.lines().skip(1);
    let sent: u64 = it.next().and_then(|l| l.trim().parse().ok()).expect("sent count");
    let flood_secs: f64 = it.next().and_then(|l| l.trim().parse().ok()).expect("flood time");
    while after.lock().expect("lock").is_none() && t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_secs = t0.elapsed().as_secs_f64();
    let peak_rss_kib = status_kib(pid, "VmHWM");
    let rss_kib = status_kib(pid, "VmRSS");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let exit = child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
    std::thread::sleep(Duration::from_millis(200));
    let _ = sh_out(&format!("ip netns exec {} ip link del {bridge}", ns.name));
    let after = after.lock().expect("lock").clone();
    let stderr = stderr.lock().expect("lock").clone();
    FloodResult {
        sent,
        flood_secs,
        reported: reported.load(Ordering::Relaxed),
        lost: lost.load(Ordering::Relaxed),
        peak_rss_kib,
        rss_kib,
        after,
        after_secs,
        during_flood,
        exit,
        stderr,
    }
}
