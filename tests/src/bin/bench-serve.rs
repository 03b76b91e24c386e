//! `tracer serve` at scale (issue #13): 200 namespaces with one veth each
//! on a bridge, as in bench-scale (401 interfaces, 802 traffic series);
//! the time from start to the ready line, RSS after ready, the time one
//! `/metrics` scrape takes (text and OpenMetrics, 50 each, one after the
//! other as a Prometheus would), the size of the answer, and RSS and CPU
//! after the scrapes. Prints a table; asserts nothing.
//!
//! usage: bench-serve [serve] [--namespaces N] [--count SCRAPES]

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{
    bench::{opts::Opts, scale::ScaleLab},
    flood::status_kib,
    prom::http_get,
    tracer_bin, wait_until,
};

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(14) + n(15)) / tick
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["serve"]) {
        return;
    }
    let n = opts.namespaces.unwrap_or(200).max(1);
    let scrapes = opts.count.unwrap_or(50).max(1) as usize;
    let (lab, made) = ScaleLab::new(n, opts.ipv6);
    println!("bench-serve: {n} namespaces made in {made:.1} s");
    let err_path = std::env::temp_dir().join(format!("trc-bench-serve-{}.err", std::process::id()));
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let start = Instant::now();
    let mut child = Command::new(tracer_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn tracer serve");
    let read_err = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(120), || read_err().contains("/metrics"));
    assert!(ready, "tracer serve never said ready: {}", read_err());
    let ready_s = start.elapsed().as_secs_f64();
    let line = read_err();
    let addr: SocketAddr = line
        .split("serving metrics on http://")
        .nth(1)
        .and_then(|r| r.split("/metrics").next())
        .and_then(|a| a.parse().ok())
        .expect("address in the ready line");
    let pid = child.id();
    // Every interface attached and read at least once.
    std::thread::sleep(Duration::from_secs(2));
    let rss_ready = status_kib(pid, "VmRSS");
    let cpu0 = cpu_secs(pid);
    let mut rows = Vec::new();
    for (what, accept) in [("text 0.0.4", "*/*"), ("OpenMetrics", "application/openmetrics-text;version=1.0.0")] {
        let mut times = Vec::with_capacity(scrapes);
        let mut bytes = 0;
        let mut series = 0;
        for _ in 0..scrapes {
            let t = Instant::now();
            let (status, _, body) = http_get(addr, "/metrics", accept).expect("scrape");
            times.push(t.elapsed());
            assert_eq!(status, 200);
            bytes = body.len();
            series = body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        }
        times.sort();
        rows.push((what, ms(times[0]), ms(times[times.len() / 2]), ms(times[times.len() - 1]), bytes, series));
    }
    let cpu = cpu_secs(pid) - cpu0;
    let (rss_after, hwm) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    let body = http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default();
    let traffic = body.lines().filter(|l| l.starts_with("tracer_packets_total{")).count();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_file(&err_path);
    drop(lab);

    println!("\ntracer serve, {n} namespaces ({traffic} tracer_packets_total series), {scrapes} scrapes per format, one at a time");
    println!("| format | scrape min ms | median ms | max ms | answer bytes | samples |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (what, min, med, max, bytes, series) in rows {
        println!("| {what} | {min:.1} | {med:.1} | {max:.1} | {bytes} | {series} |");
    }
    println!(
        "\nready after {ready_s:.1} s; RSS {:.1} MiB after ready, {:.1} MiB after {} scrapes (peak {:.1} MiB); {cpu:.2} s of CPU for the scrapes and reads meanwhile",
        rss_ready as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        2 * scrapes,
        hwm as f64 / 1024.0
    );
}
