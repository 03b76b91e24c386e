//! Issue #8's crafted flood: 200,000 RTM_SETLINK requests with 4 KiB names
//! and random ifindexes, sent as fast as possible by `nobody` (the kernel
//! refuses them all, the tracepoints see them all). The tracer's peak RSS
//! must stay under 128 MiB, and a valid request root sends while the flood
//! still runs must be reported with its result: the flood may fill only
//! half of the ring buffer (counted as `netlink_unprivileged`).

use std::time::Duration;

use tracer_tests::{Lab, flood};

const COUNT: u64 = 200_000;
const NAME_LEN: usize = 4096;
const RSS_LIMIT_KIB: u64 = 128 * 1024;

fn check(args: &[&str]) {
    let lab = Lab::new(1);
    let r = flood::run(args, &lab.ns[0], COUNT, NAME_LEN, Duration::from_secs(20));
    let what = format!("tracer {args:?}: {r:?}");
    assert_eq!(r.exit, 0, "{what}");
    assert_eq!(r.sent, COUNT, "the flood was sent whole: {what}");
    assert!(r.reported > 0, "the flood was seen: {what}");
    assert!(r.peak_rss_kib > 0 && r.peak_rss_kib < RSS_LIMIT_KIB, "peak RSS {} KiB: {what}", r.peak_rss_kib);
    assert!(r.stderr.contains("netlink_unprivileged="), "the flood was held to half the ring: {what}");
    // The kernel's answers the flood never reads are freed unread: no
    // packets, so no drop records (they once filled the ring as well).
    assert!(!r.stderr.contains(" drop="), "no drop record lost to the flood: {what}");
    assert!(r.during_flood, "root's request was answered while the flood still ran: {what}");
    let after = r.after.as_ref().unwrap_or_else(|| panic!("root's request during the flood was not reported: {what}"));
    assert_eq!(after["msg_type"], "RTM_NEWLINK", "{after}");
    assert_eq!(after["result"]["errno"], 0, "{after}");
    assert_eq!(after["netns"]["inode"], lab.ns[0].inode(), "{after}");
    eprintln!(
        "{args:?}: peak RSS {:.1} MiB, {} reported, {} lost, root's request reported {:.2} s after it was sent",
        r.peak_rss_kib as f64 / 1024.0,
        r.reported,
        r.lost,
        r.after_secs
    );
}

#[test]
fn netlink_audit_survives_a_flood_of_long_names_from_nobody() {
    check(&["netlink", "--json"]);
}

#[test]
fn default_job_survives_a_flood_of_long_names_from_nobody() {
    check(&["--json"]);
}
