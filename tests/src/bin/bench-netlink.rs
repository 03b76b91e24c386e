//! Netlink audit under load: N address additions and N deletions in a tight
//! loop from one lab namespace, each waiting for its answer. Prints the rate,
//! the tracer's CPU time, and how many events arrived and were lost.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{Lab, tracer_bin};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut child = Command::new(tracer_bin())
        .args(["netlink", "--json", "--netns", &ns.name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tracer");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let l = rx.recv_timeout(Duration::from_secs(60)).expect("tracer ready");
        if l.contains("ready") {
            break;
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let counter = std::thread::spawn(move || {
        let mut with_result = 0u64;
        let mut total = 0u64;
        let mut lost = 0u64;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["type"] == "lost" {
                lost += v["count"].as_u64().unwrap_or(0);
            } else if v["msg_type"] == "RTM_NEWADDR" || v["msg_type"] == "RTM_DELADDR" {
                total += 1;
                if v["result"]["errno"] == 0 {
                    with_result += 1;
                }
            }
        }
        (total, with_result, lost)
    });
    let cpu0 = cpu_ticks(pid);
    let start = Instant::now();
    let helper = format!("{}/helpers/nlsend.py", env!("CARGO_MANIFEST_DIR"));
    let out = ns.sh(&format!("python3 {helper} loop eth0 10.{}.0.1 {n}", 200));
    let elapsed = start.elapsed();
    let acked: u64 = out.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(pid) - cpu0;
    // SAFETY: signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = child.wait();
    let (total, with_result, lost) = counter.join().expect("counter");
    let mut summary = String::new();
    while let Ok(l) = rx.try_recv() {
        summary = l;
    }
    let changes = 2 * u64::from(n);
    println!("netlink bench: {changes} changes (acked {acked}) in {:.2} s = {:.0} changes/s", elapsed.as_secs_f64(), changes as f64 / elapsed.as_secs_f64());
    println!("  events: {total} reported, {with_result} with result ok, lost events reported: {lost}");
    println!("  tracer CPU: {:.2} s ({:.1}% of the run)", cpu as f64 / 100.0, cpu as f64 / 100.0 / elapsed.as_secs_f64() * 100.0);
    println!("  tracer summary: {summary}");
    if total != changes {
        println!("  MISSING {} events", changes.saturating_sub(total));
    }
}
