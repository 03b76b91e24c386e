//! The drop flood of issue #11: 64-byte UDP datagrams from A to B as fast
//! as one sender goes, every one dropped by an nftables rule in B (its
//! counter says how many), with `tracer drops --netns B --json` (a record
//! per drop) and `tracer top --by reason --json --netns B` (per-CPU
//! counters, no record) running. Every drop must be either reported or
//! counted as lost: the table gives the rule's count, what the tracer
//! reported, what it said it lost, and the difference (which must be 0).
//! Then the same flood under a filter that keeps none of it (`udp port 1`):
//! in the kernel (the drop program tail-calls libpcap's code, no record
//! is sent) and in userspace (`TRACER_DROP_FILTER=userspace`, as before:
//! every drop is sent and refused there), with the drop records the
//! kernel sent and the tracer's own CPU time.
//!
//! usage: bench-drops [drop-flood] [--rounds N] [--seconds S]

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    bench::{
        load, loadavg, num_cpus,
        opts::Opts,
        round::Rig,
        tool::{Stdout, Summary, Tool},
        today,
    },
    tracer_bin,
};

/// The rule's counter in B.
fn counter(rig: &Rig) -> u64 {
    let j: Value = serde_json::from_str(&rig.b.sh("nft -j list chain inet benchdrop in")).expect("nft json");
    j["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .find_map(|o| o["rule"]["expr"].as_array()?.iter().find_map(|x| x["counter"]["packets"].as_u64()))
        .expect("a rule with a counter")
}

/// What one run measured.
struct Run {
    dropped: u64,
    rate: f64,
    reported: u64,
    lost: u64,
    /// Drop records the kernel sent (a filtered run's exit line).
    from_kernel: Option<u64>,
    /// The tracer's user + system CPU seconds.
    cpu: f64,
}

/// User + system CPU seconds of `pid` so far (/proc/PID/stat).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// One run: the flood with the tracer (`args`, JSON on stdout, `env`) or
/// without.
fn run(rig: &Rig, args: Option<&[&str]>, env: &[(&str, &str)], secs: f64) -> Run {
    let reported = Arc::new(Mutex::new(0u64));
    let tool = args.map(|a| {
        let r = reported.clone();
        let mut cmd = Command::new(tracer_bin());
        cmd.args(a).envs(env.iter().copied());
        let lines = Stdout::Lines(Box::new(move |l: &str| {
            let Ok(v) = serde_json::from_str::<Value>(l) else { return };
            let n = match v["type"].as_str() {
                Some("drop") if v["reason"] == "NETFILTER_DROP" && v["dport"] == 9999 => 1,
                Some("top") if v["reason"] == "NETFILTER_DROP" && v["ifname"] == "eth0" => v["drops"].as_u64().unwrap_or(0),
                _ => 0,
            };
            if let Ok(mut c) = r.lock() {
                *c += n;
            }
        }));
        Tool::start(cmd, "ready", lines, Duration::from_secs(60)).expect("tracer ready")
    });
    let before = counter(rig);
    let f = load::udp_flood(&rig.a.path(), &rig.b.path(), &rig.b.ip, "eth0", secs);
    let dropped = counter(rig) - before;
    let (lost, from_kernel, cpu) = match tool {
        Some(t) => {
            let cpu = cpu_seconds(t.pid());
            let stopped = t.stop();
            assert_eq!(stopped.code, Some(0), "{:?}", stopped.stderr);
            let from_kernel = stopped
                .stderr
                .iter()
                .find_map(|l| l.split_once(" drop records from the kernel").and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok()));
            (Summary::of(&stopped.stderr).lost_total(), from_kernel, cpu)
        }
        None => (0, None, 0.0),
    };
    let reported = *reported.lock().expect("count");
    Run { dropped, rate: f.sent_rate(), reported, lost, from_kernel, cpu }
}

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["drop-flood"]) {
        return;
    }
    let rounds = opts.rounds(3);
    let secs = opts.seconds(3.0);
    let rig = Rig::new();
    rig.b.sh(
        "nft add table inet benchdrop && nft add chain inet benchdrop in '{ type filter hook input priority 0; }' && \
         nft add rule inet benchdrop in udp dport 9999 counter drop",
    );
    println!(
        "# drop flood, {} (kernel {}, {} CPUs shared with other work; load average {} at start)",
        today(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        num_cpus(),
        loadavg()
    );
    println!("\n64-byte UDP datagrams A -> B, one sender as fast as it goes, all dropped by an nft rule in B; {rounds} rounds of {secs} s\n");
    println!("| mode | sent/s | dropped (rule counter) | dropped/s | reported | lost (reported by the tracer) | unaccounted | records from the kernel | tracer CPU s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let b = rig.b.name.clone();
    let drops_args = ["drops", "--netns", b.as_str(), "--json"];
    let top_args = ["top", "--by", "reason", "--json", "--interval", "1", "--netns", b.as_str()];
    let filtered = ["drops", "--netns", b.as_str(), "--json", "udp", "port", "1"];
    let userspace: &[(&str, &str)] = &[("TRACER_DROP_FILTER", "userspace")];
    type Mode<'a> = (&'a str, Option<&'a [&'a str]>, &'a [(&'a str, &'a str)]);
    let modes: [Mode; 5] = [
        ("untraced", None, &[]),
        ("`tracer drops --netns B --json`", Some(&drops_args), &[]),
        ("`tracer top --by reason --json --netns B`", Some(&top_args), &[]),
        ("`tracer drops --netns B --json udp port 1`, filter in the kernel", Some(&filtered), &[]),
        ("the same, filter in userspace (`TRACER_DROP_FILTER=userspace`)", Some(&filtered), userspace),
    ];
    for r in 0..rounds {
        for (name, args, env) in &modes {
            let m = run(&rig, *args, env, secs);
            let traced = args.is_some();
            // Under a filter that keeps nothing every drop is accounted as filtered.
            let gap = if traced && m.from_kernel.is_none() { (m.dropped as i64 - m.reported as i64 - m.lost as i64).to_string() } else { "-".into() };
            let got = if traced { m.reported.to_string() } else { "-".into() };
            let from_kernel = m.from_kernel.map_or("-".into(), |n| n.to_string());
            let cpu = if traced { format!("{:.2}", m.cpu) } else { "-".into() };
            println!(
                "| {name} (round {}) | {:.0} | {} | {:.0} | {got} | {} | {gap} | {from_kernel} | {cpu} |",
                r + 1,
                m.rate,
                m.dropped,
                m.dropped as f64 / secs,
                m.lost
            );
        }
    }
    println!("\n(load average {} at the end)", loadavg());
}
