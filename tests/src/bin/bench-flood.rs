//! The crafted netlink flood of issue #8 under `tracer netlink --json` and
//! the default job: 200,000 RTM_SETLINK requests with 4 KiB names and
//! random ifindexes, sent by `nobody` as fast as it can (the kernel refuses
//! them all). Prints the tracer's peak RSS, the requests it reported and
//! lost, the time, and whether a valid request sent afterwards was reported.
//! A third run sends no names at all: every request is an unknown ifindex
//! to look up, which tests the lookup thread's budget.
//!
//! usage: bench-flood [flood] [--count REQUESTS] (names are 4,096 bytes)

use std::time::Duration;

use tracer_tests::{Lab, bench::opts::Opts, flood};

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["flood"]) {
        return;
    }
    let count: u64 = opts.count.unwrap_or(200_000);
    let name_len: usize = 4096;
    let lab = Lab::new(1);
    println!("flood bench: {count} RTM_SETLINK requests with {name_len}-byte names and random ifindexes, sent by nobody");
    let runs = [
        ("tracer netlink --json", &["netlink", "--json"][..], name_len),
        ("tracer --json (default job)", &["--json"][..], name_len),
        ("tracer netlink --json, no names", &["netlink", "--json"][..], 0),
    ];
    for (label, args, name_len) in runs {
        let r = flood::run(args, &lab.ns[0], count, name_len, Duration::from_secs(30));
        let summary = r.stderr.lines().filter(|l| l.contains("lost:") || l.contains("netlink:")).map(|l| l.trim_start_matches("tracer: ")).collect::<Vec<_>>().join("; ");
        println!(
            "  {label:<32} peak RSS {:>6.1} MiB (end {:>6.1} MiB)  sent {} in {:.2} s ({:.0}/s)  reported {}  lost {}  valid request after the flood: {}  exit {}  [{summary}]",
            r.peak_rss_kib as f64 / 1024.0,
            r.rss_kib as f64 / 1024.0,
            r.sent,
            r.flood_secs,
            r.sent as f64 / r.flood_secs.max(1e-9),
            r.reported,
            r.lost,
            match &r.after {
                Some(v) => format!("reported after {:.2} s ({})", r.after_secs, v["result"]["errno"]),
                None => format!("NOT reported within {:.0} s", r.after_secs),
            },
            r.exit,
        );
    }
}
