//! The netlink audit under load (issue #10): a loop of address changes in
//! a lab namespace (RTM_NEWADDR then RTM_DELADDR, one request at a time,
//! each waiting for its answer; 20,000 changes by default), untraced, under
//! `tracer netlink --json` and under the default job `tracer --json`,
//! rounds interleaved. Prints the loop's rate, its ratio to the untraced
//! loop of the same round, how many changes the tracer reported with their
//! result, what it lost, and its CPU. Asserts nothing.
//!
//! usage: bench-netlink [netlink] [--rounds N] [--count CHANGES] [--modes untraced,netlink,default]

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    Lab,
    bench::{
        CpuWindow, load, loadavg,
        opts::Opts,
        table::{Table, count, spread},
        today,
        tool::{Stdout, Summary, Tool},
    },
    tracer_bin, wait_until,
};

struct Round {
    rate: f64,
    reported: u64,
    with_result: u64,
    lost: u64,
    cpu_s: Option<f64>,
    summary: Summary,
}

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["netlink"]) {
        return;
    }
    let began = std::time::Instant::now();
    let nice = tracer_tests::bench::prioritize();
    let rounds = opts.rounds(5);
    let changes = opts.count.unwrap_or(20_000).max(2);
    let pairs = (changes / 2) as u32;
    let modes: Vec<(&str, &str, Option<Vec<&str>>)> = [
        ("untraced", "untraced", None),
        ("netlink", "`tracer netlink --json`", Some(vec!["netlink", "--json"])),
        ("default", "`tracer --json` (default job)", Some(vec!["--json"])),
    ]
    .into_iter()
    .filter(|(k, _, _)| opts.mode(k))
    .collect();
    let lab = Lab::new(1);
    let ns = lab.ns[0].clone();
    println!("# netlink audit, {} (nice {nice}, load average {} at start)", today(), loadavg());
    let mut res: Vec<Vec<Round>> = modes.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let (key, _, args) = &modes[i];
            let round = run(&ns.path(), &ns.name, args.as_deref(), pairs);
            eprintln!("bench: netlink round {}/{rounds} {key:<9} {:>8.0} changes/s  reported {}  lost {}", r + 1, round.rate, round.reported, round.lost);
            res[i].push(round);
        }
    }
    println!("\n## {} address changes in a tight loop, each waiting for its answer, {rounds} rounds interleaved\n", count(2 * pairs as u64));
    let u = modes.iter().position(|(k, _, _)| *k == "untraced");
    let mut t = Table::new(&["mode", "changes/s", "ratio to untraced", "reported with result", "lost", "tracer CPU s per round"]);
    for (i, (key, label, _)) in modes.iter().enumerate() {
        let rs = &res[i];
        let ratios: Vec<f64> = match u {
            Some(u) => rs.iter().zip(&res[u]).map(|(a, b)| a.rate / b.rate.max(1e-9)).collect(),
            None => Vec::new(),
        };
        let traced = *key != "untraced";
        t.row(vec![
            label.to_string(),
            spread(&rs.iter().map(|x| x.rate).collect::<Vec<_>>(), 0),
            if traced { spread(&ratios, 2) } else { "1".into() },
            if traced {
                format!("{} of {} (+{} without)", count(rs.iter().map(|x| x.with_result).sum()), count(2 * pairs as u64 * rs.len() as u64), count(rs.iter().map(|x| x.reported - x.with_result).sum()))
            } else {
                "-".into()
            },
            if traced { format!("{} ({})", count(rs.iter().map(|x| x.lost).sum()), rs.last().map(|x| x.summary.lost_text()).unwrap_or_default()) } else { "-".into() },
            spread(&rs.iter().filter_map(|x| x.cpu_s).collect::<Vec<_>>(), 2),
        ]);
    }
    println!("{}", t.render());
    println!("(load average {} at the end; {:.0} s in all)", loadavg(), began.elapsed().as_secs_f64());
}

fn run(ns_path: &str, ns_name: &str, args: Option<&[&str]>, pairs: u32) -> Round {
    let seen = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let tool = args.map(|a| {
        let mut c = Command::new(tracer_bin());
        c.args(a);
        let (seen, ns_name) = (seen.clone(), ns_name.to_string());
        let lines = Stdout::Lines(Box::new(move |l: &str| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            let Ok(mut s) = seen.lock() else { return };
            if v["type"] == "lost" {
                s.2 += v["count"].as_u64().unwrap_or(0);
            } else if (v["msg_type"] == "RTM_NEWADDR" || v["msg_type"] == "RTM_DELADDR") && v["netns"]["name"] == ns_name.as_str() {
                s.0 += 1;
                if v["result"]["errno"] == 0 {
                    s.1 += 1;
                }
            }
        }));
        Tool::start(c, "ready", lines, Duration::from_secs(90)).unwrap_or_else(|e| panic!("{e}"))
    });
    let cpu = tool.as_ref().map(|t| CpuWindow::start(t.pid()));
    let (took, _acked) = load::netlink_loop(ns_path, "eth0", pairs);
    let rate = 2.0 * pairs as f64 / took.as_secs_f64().max(1e-9);
    let mut round = Round { rate, reported: 0, with_result: 0, lost: 0, cpu_s: None, summary: Summary::default() };
    if let Some(tool) = tool {
        // Requests wait up to 300 ms for their answer, the default job's
        // timeline 400 ms more: wait for the last, up to 10 s.
        wait_until(Duration::from_secs(10), || seen.lock().map(|s| s.0 + s.2 >= 2 * pairs as u64).unwrap_or(true));
        round.cpu_s = cpu.map(|c| c.seconds());
        let stopped = tool.stop();
        round.summary = Summary::of(&stopped.stderr);
        let s = seen.lock().map(|s| *s).unwrap_or_default();
        (round.reported, round.with_result, round.lost) = s;
    }
    round
}
