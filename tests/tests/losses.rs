//! Every place a kernel program gives up is a counted loss with its source:
//! each test provokes one kind from userspace (tests/helpers/nlloss.py, in a
//! lab namespace the tracer is restricted to, so nothing else adds to the
//! counts) and checks the `lost` lines and the summary at exit count it
//! exactly.

use std::time::{Duration, Instant};

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer};

const WAIT: Duration = Duration::from_secs(10);

/// Runs nlloss.py inside `ns`: (pid, the number it printed).
fn nlloss(ns: &LabNs, args: &str) -> (u32, i64) {
    let helper = format!("{}/helpers/nlloss.py", env!("CARGO_MANIFEST_DIR"));
    let out = ns.sh(&format!("python3 {helper} {args}"));
    let mut it = out.lines().map(|l| l.trim().parse::<i64>().unwrap_or_else(|_| panic!("number in {out:?}")));
    (it.next().expect("pid") as u32, it.next().expect("result"))
}

/// Losses of `source` reported so far.
fn lost(t: &Tracer, source: &str) -> u64 {
    t.events().iter().filter(|e| e["type"] == "lost" && e["source"] == source).filter_map(|e| e["count"].as_u64()).sum()
}

/// Waits until `source` has lost `want` (the tracer reports losses on its
/// 100 ms tick), then a little longer to see that no more come.
fn expect_lost(t: &Tracer, source: &str, want: u64) {
    let start = Instant::now();
    while lost(t, source) < want && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lost(t, source), want, "{source}; stdout:\n{}", t.lines().join("\n"));
}

fn requests(t: &Tracer, pid: u32) -> Vec<Value> {
    t.events().into_iter().filter(|e| e["type"] == "netlink" && e["pid"] == pid && e["msg_type"] == "RTM_NEWADDR").collect()
}

/// Waits for the requests of `pid` (printed once answered) and returns them.
fn wait_requests(t: &Tracer, pid: u32, n: usize) -> Vec<Value> {
    let start = Instant::now();
    while requests(t, pid).len() < n && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    // None beyond the n expected.
    std::thread::sleep(Duration::from_millis(500));
    requests(t, pid)
}

/// Stops the tracer and checks the stderr summary names `totals` exactly.
fn stop_and_check_summary(t: &mut Tracer, totals: &[(&str, u64)]) {
    assert_eq!(t.stop(), 0);
    let err = t.stderr();
    let line = err.lines().find(|l| l.contains("lost:")).unwrap_or_else(|| panic!("no summary: {err}"));
    for (source, n) in totals {
        assert!(line.split_whitespace().any(|w| w == format!("{source}={n}")), "{source}={n} in {line:?}");
    }
}

#[test]
fn segments_beyond_the_loop_bounds_are_counted_as_netlink_iov() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);

    // 10 iovecs, 8 looked at: the kernel takes all 10, 2 are counted.
    let (pid, ok) = nlloss(ns, &format!("iov eth0 {net}.100"));
    assert_eq!(ok, 10, "the kernel accepted all 10");
    assert_eq!(wait_requests(&t, pid, 8).len(), 8, "the first 8 are reported");
    expect_lost(&t, "netlink_iov", 2);

    let (pid, ok) = nlloss(ns, &format!("writev eth0 {net}.120"));
    assert_eq!(ok, 10);
    assert_eq!(wait_requests(&t, pid, 8).len(), 8);
    expect_lost(&t, "netlink_iov", 4);

    // sendmmsg: 10 messages of 2 iovecs. Reported: the first iovec of each
    // of the first 8; counted: their second iovecs (8) and the 2 messages
    // beyond the first 8.
    let (pid, ok) = nlloss(ns, &format!("mmsg eth0 {net}.140"));
    assert_eq!(ok, 20);
    let got = wait_requests(&t, pid, 8);
    let addrs: Vec<&str> = got.iter().filter_map(|e| e["attrs"]["address"].as_str()).collect();
    let want: Vec<String> = (0..8).map(|i| format!("{net}.{}", 140 + 2 * i)).collect();
    assert_eq!(addrs, want);
    expect_lost(&t, "netlink_iov", 14);
    assert_eq!(lost(&t, "netlink"), 0, "nothing lost to the ring");
    stop_and_check_summary(&mut t, &[("netlink_iov", 14)]);
}

#[test]
fn send_buffers_that_cannot_be_read_are_counted_as_netlink_read() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let ways = ["sendto", "write", "msghdr", "iovec", "iov_base"];
    for (i, way) in ways.iter().enumerate() {
        let (pid, errno) = nlloss(ns, &format!("badbuf eth0 {net}.100 {way}"));
        assert_eq!(errno, 14, "{way}: the kernel refuses it with EFAULT");
        expect_lost(&t, "netlink_read", i as u64 + 1);
        assert!(t.events().iter().all(|e| e["pid"] != pid), "{way}: nothing reported for it");
    }
    stop_and_check_summary(&mut t, &[("netlink_read", ways.len() as u64)]);
}

#[test]
fn answers_longer_than_the_capture_are_counted_and_still_give_the_result() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let (pid, errno) = nlloss(ns, &format!("bigerr eth0 {net}.100"));
    assert_eq!(errno, 19, "ENODEV, with the 2 KiB request echoed");
    let req = wait_requests(&t, pid, 1);
    assert_eq!(req.len(), 1);
    assert_eq!(req[0]["result"]["errno"], 19, "the result is in the captured part: {}", req[0]);
    expect_lost(&t, "netlink_ack_truncated", 1);
    stop_and_check_summary(&mut t, &[("netlink_ack_truncated", 1)]);
}

#[test]
fn a_full_in_flight_receive_table_is_counted_as_netlink_recv_args() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    // 4096 threads blocked in a receive fill the table; the request's own
    // receive then finds no room, so its answer is not seen.
    let (pid, errno) = nlloss(ns, &format!("recvargs eth0 {net}.100"));
    assert_eq!(errno, 19);
    let req = wait_requests(&t, pid, 1);
    assert_eq!(req.len(), 1);
    assert!(req[0]["result"].is_null(), "its answer was not seen: {}", req[0]);
    expect_lost(&t, "netlink_recv_args", 1);
    stop_and_check_summary(&mut t, &[("netlink_recv_args", 1)]);
}
