//! Nothing left behind on any exit: a stop asked for during start-up
//! (SIGTERM, SIGINT, SIGHUP) detaches cleanly, and what a killed tracer
//! left in netlink-tc mode (cls_bpf filters, the clsact qdiscs it added)
//! is removed by the next run, which says so in one line, while a clsact
//! qdisc of the user's and the filters of others stay. Checked against
//! `tc` inside the lab namespaces, the kernel's TCX lists, and the kernel's
//! list of loaded programs (bpftool-less, through aya).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{Lab, LabNs, Tracer, kernel_has_tcx, sh_out, tcx_programs, tracer_bin, tracer_run, wait_until};

/// The programs the tracer attaches to interfaces.
const TC_PROGRAMS: [&str; 4] = ["pkt_ingress", "pkt_egress", "top_ingress", "top_egress"];

/// A foreign filter: classic BPF through cls_bpf (the only classifier
/// this kernel has), at a priority of its own.
const FOREIGN: &str = "bpf bytecode '1,6 0 0 4294967295,' classid 1:1";

/// Ids of the loaded programs named like the tracer's TC programs.
fn loaded_tc_programs() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| TC_PROGRAMS.contains(&n)))
        .map(|p| p.id())
        .collect()
}

/// `tc filter show` on both sides of `dev` inside `ns`.
fn filters(ns: &LabNs, dev: &str) -> String {
    let out = ns.sh_out(&format!("tc filter show dev {dev} ingress; tc filter show dev {dev} egress"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_clsact(ns: &LabNs, dev: &str) -> bool {
    ns.sh(&format!("tc qdisc show dev {dev}")).contains("clsact")
}

/// Whether the journal of the clsact qdiscs that process `pid` added
/// (`/run/tracer/clsact-PID-START`) is there.
fn journal_of(pid: u32) -> bool {
    let prefix = format!("clsact-{pid}-");
    std::fs::read_dir("/run/tracer").is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
}

fn ours(f: &str) -> bool {
    TC_PROGRAMS.iter().any(|p| f.contains(p))
}

/// Runs `f` with `TRACER_TC` set to `mode` (the tracer under test is a
/// child of this process and inherits it).
fn with_tc_mode<T>(mode: Option<&str>, f: impl FnOnce() -> T) -> T {
    // SAFETY: the tests run one at a time (--test-threads=1).
    unsafe {
        match mode {
            Some(m) => std::env::set_var("TRACER_TC", m),
            None => std::env::remove_var("TRACER_TC"),
        }
    }
    let r = f();
    // SAFETY: as above.
    unsafe { std::env::remove_var("TRACER_TC") };
    r
}

/// Kills a tracer with SIGKILL and reaps it.
fn sigkill(t: Tracer) {
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(t.pid() as i32, libc::SIGKILL) };
    // Dropping reaps it.
    drop(t);
}

/// A second veth pair inside `a`: `hl0` gets its clsact from the tracer,
/// `hl1` has the user's clsact with the user's filter before it starts.
fn user_setup(a: &LabNs) {
    a.sh("ip link add hl0 type veth peer name hl1 && ip link set hl0 up && ip link set hl1 up");
    a.sh(&format!("tc qdisc add dev hl1 clsact && tc filter add dev hl1 ingress prio 7 {FOREIGN}"));
}

/// The user's qdisc and filter on `hl1` are there, and nothing of ours.
fn assert_user_filter_intact(a: &LabNs) {
    assert!(has_clsact(a, "hl1"), "the user's clsact was removed");
    let f = filters(a, "hl1");
    assert!(f.contains("bytecode") && f.contains("pref 7"), "the user's filter was removed: {f}");
    assert!(!ours(&f), "filters of ours left on hl1: {f}");
}

#[test]
fn sigkill_in_netlink_tc_mode_is_cleaned_up_by_the_next_run() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    user_setup(a);
    let before = loaded_tc_programs();
    let t = with_tc_mode(Some("netlink"), || Tracer::start(&["packets", "--json", "--netns", &a.name]));
    assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("(netlink-tc)")), "{}", t.stderr());
    for dev in ["eth0", "hl0", "hl1"] {
        let f = filters(a, dev);
        assert!(f.contains("pkt_ingress") && f.contains("pkt_egress"), "{dev}: {f}");
        // Recognisable: fixed priority 1 and a handle of ours.
        assert!(f.contains("pref 1 bpf chain 0 handle 0x7472"), "{dev}: {f}");
    }
    let programs: Vec<u32> = loaded_tc_programs().into_iter().filter(|id| !before.contains(id)).collect();
    assert_eq!(programs.len(), 2, "ingress and egress");
    let pid = t.pid();
    assert!(journal_of(pid), "the qdiscs it added are not recorded");
    sigkill(t);
    // What a kill leaves: filters running programs nobody reads.
    assert!(ours(&filters(a, "eth0")) && has_clsact(a, "hl0"), "the kill left nothing: the test proves nothing");
    assert!(programs.iter().all(|id| loaded_tc_programs().contains(id)));

    // The next run (selecting another namespace) removes it all, in one line.
    let (code, _, err) = with_tc_mode(Some("netlink"), || tracer_run(&["packets", "--netns", &b.name, "--duration", "0.5"]));
    assert_eq!(code, 0, "{err}");
    let said: Vec<&str> = err.lines().filter(|l| l.contains("removed")).collect();
    assert_eq!(said.len(), 1, "one line: {err}");
    assert!(said[0].contains("6 filters and 2 clsact qdiscs that an earlier tracer left behind (in 1 namespace)"), "{err}");
    let (removed_at, ready_at) = (err.find("removed").expect("removed"), err.find("ready").expect("ready"));
    assert!(removed_at < ready_at, "said before it attaches: {err}");
    for dev in ["eth0", "hl0"] {
        assert!(filters(a, dev).trim().is_empty(), "{dev}: {}", filters(a, dev));
        assert!(!has_clsact(a, dev), "{dev}: the clsact the tracer added stayed");
    }
    assert_user_filter_intact(a);
    assert!(!journal_of(pid), "the dead tracer's journal stayed");
    assert!(wait_until(Duration::from_secs(3), || programs.iter().all(|id| !loaded_tc_programs().contains(id))), "programs still loaded");
    // And a run after that finds nothing to say.
    let (code, _, err) = with_tc_mode(Some("netlink"), || tracer_run(&["packets", "--netns", &b.name, "--duration", "0.3"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("removed"), "{err}");
}

#[test]
fn a_killed_top_is_cleaned_up_by_a_run_in_the_default_mode() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let t = with_tc_mode(Some("netlink"), || Tracer::start(&["top", "--by", "flow", "--json", "--netns", &a.name, "--interval", "0.2"]));
    assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("(netlink-tc,")), "{}", t.stderr());
    assert!(filters(a, "eth0").contains("top_ingress"));
    sigkill(t);
    assert!(has_clsact(a, "eth0"));
    // TCX where the kernel has it: the sweep does not depend on the mode.
    let (code, _, err) = with_tc_mode(None, || tracer_run(&["packets", "--netns", &b.name, "--duration", "0.3"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("removed 2 filters and 1 clsact qdisc that an earlier tracer left behind (in 1 namespace)"), "{err}");
    assert!(filters(a, "eth0").trim().is_empty() && !has_clsact(a, "eth0"), "{}", filters(a, "eth0"));
}

#[test]
fn qdiscs_of_others_survive_a_run_and_ours_wait_until_they_are_empty() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    user_setup(a);
    let mut t = with_tc_mode(Some("netlink"), || Tracer::start(&["packets", "--json", "--netns", &a.name]));
    assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("(netlink-tc)")), "{}", t.stderr());
    // The user puts a filter into the clsact the tracer added on eth0.
    a.sh(&format!("tc filter add dev eth0 egress prio 9 {FOREIGN}"));
    assert_eq!(t.stop(), 0);
    assert!(t.stderr().contains("kept the clsact qdisc of"), "{}", t.stderr());
    assert_user_filter_intact(a);
    // Ours are gone everywhere; eth0's qdisc stays for the user's filter.
    for dev in ["eth0", "hl0", "hl1"] {
        assert!(!ours(&filters(a, dev)), "{dev}: {}", filters(a, dev));
    }
    assert!(!has_clsact(a, "hl0"));
    let f = filters(a, "eth0");
    assert!(has_clsact(a, "eth0") && f.contains("pref 9") && f.contains("bytecode"), "the user's filter went with our qdisc: {f}");
    // A run while the user's filter is in it leaves it alone, silently...
    let (code, _, err) = with_tc_mode(Some("netlink"), || tracer_run(&["packets", "--netns", &b.name, "--duration", "0.3"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("removed"), "{err}");
    assert!(has_clsact(a, "eth0") && filters(a, "eth0").contains("pref 9"));
    // ...and once the user's filter is gone, the next run removes the
    // qdisc the tracer added; the user's own clsact on hl1 still stays.
    a.sh("tc filter del dev eth0 egress prio 9");
    let (code, _, err) = with_tc_mode(Some("netlink"), || tracer_run(&["packets", "--netns", &b.name, "--duration", "0.3"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("removed 0 filters and 1 clsact qdisc"), "{err}");
    assert!(!has_clsact(a, "eth0"));
    assert_user_filter_intact(a);
}

/// Starts `tracer ARGS` (not waiting for `ready`), sends `signal` after
/// `delay`, and returns the exit code and stderr.
fn signal_after(args: &[&str], signal: i32, delay: Duration) -> (i32, String) {
    let mut child = Command::new(tracer_bin()).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn tracer");
    std::thread::sleep(delay);
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tracer {args:?} did not stop within 20 s of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// How soon after its start the tracer is signalled first: 50 ms, or
/// longer where merely starting the binary takes longer than that (under
/// QEMU TCG, which reads it over 9p, it does; the handlers are in place
/// as soon as `main` runs, so `--version` measures what matters).
fn earliest_signal() -> Duration {
    let run = || {
        let t0 = Instant::now();
        let (code, _, _) = tracer_run(&["--version"]);
        assert_eq!(code, 0);
        t0.elapsed()
    };
    // The first run may read the binary from a cold cache.
    run();
    Duration::from_millis(50).max(run() * 3)
}

/// Nothing of the tracer on the lab's host veths (TCX links and cls_bpf
/// filters alike), no clsact qdisc there, and none of its programs loaded.
fn assert_nothing_left(lab: &Lab, before: &[u32], what: &str) {
    for ns in &lab.ns {
        let dev = &ns.host_veth;
        if kernel_has_tcx() {
            for ingress in [true, false] {
                let ids = tcx_programs(None, dev, ingress);
                assert!(ids.iter().all(|id| before.contains(id)), "{what}: TCX programs left on {dev}: {ids:?}");
            }
        }
        let tc = String::from_utf8_lossy(&sh_out(&format!("tc qdisc show dev {dev}; tc filter show dev {dev} ingress; tc filter show dev {dev} egress")).stdout).into_owned();
        assert!(!tc.contains("clsact") && !ours(&tc), "{what}: left on {dev}: {tc}");
    }
    assert!(
        wait_until(Duration::from_secs(3), || loaded_tc_programs().iter().all(|id| before.contains(id))),
        "{what}: programs still loaded: {:?}",
        loaded_tc_programs()
    );
}

#[test]
fn sigterm_during_start_up_leaves_nothing_attached_in_either_mode() {
    let lab = Lab::new(6);
    let glob = format!("trv{}*", lab.id);
    let before = loaded_tc_programs();
    let modes: &[Option<&str>] = if kernel_has_tcx() { &[None, Some("netlink")] } else { &[None] };
    let mut during_start_up = 0;
    let first = earliest_signal();
    for mode in modes {
        for (job, times) in [("packets", 1), ("packets", 4), ("top", 1), ("packets", 8)] {
            let delay = first * times;
            let what = format!("{job} in mode {mode:?}, SIGTERM after {delay:?}");
            let (code, err) = with_tc_mode(*mode, || signal_after(&[job, "--all", "-i", &glob], libc::SIGTERM, delay));
            assert_eq!(code, 0, "{what}: {err}");
            assert!(!err.contains("cannot"), "{what}: {err}");
            if err.contains("stopped during start-up") {
                during_start_up += 1;
                assert!(!err.contains("ready"), "{what}: {err}");
            }
            assert_nothing_left(&lab, &before, &what);
        }
    }
    // At 50 ms (here) the tracer is still loading: the start-up path was taken.
    assert!(during_start_up >= 2 * modes.len(), "only {during_start_up} runs were stopped during start-up");
}

#[test]
fn sighup_and_sigint_stop_cleanly_like_sigterm() {
    let lab = Lab::new(2);
    let a = &lab.ns[0];
    let glob = format!("trv{}*", lab.id);
    let before = loaded_tc_programs();
    for signal in [libc::SIGHUP, libc::SIGINT] {
        // After ready, with filters that would outlive a killed process.
        let t = with_tc_mode(Some("netlink"), || Tracer::start(&["packets", "--all", "-i", &glob]));
        assert!(filters_on_host(&lab).contains("pkt_ingress"));
        let pid = t.pid();
        assert!(journal_of(pid));
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(t.pid() as i32, signal) };
        assert!(wait_until(Duration::from_secs(10), || t.stderr().contains(" events, lost:")), "signal {signal}: {}", t.stderr());
        let mut t = t;
        // It has stopped by itself; this reaps it and reads its status.
        assert_eq!(t.stop(), 0, "signal {signal}: {}", t.stderr());
        assert_nothing_left(&lab, &before, &format!("signal {signal} after ready"));
        assert!(!journal_of(pid), "a clean stop leaves no journal");
        // And during start-up.
        let (code, err) = with_tc_mode(Some("netlink"), || signal_after(&["packets", "--netns", &a.name], signal, earliest_signal()));
        assert_eq!(code, 0, "signal {signal} at 50 ms: {err}");
        assert!(err.contains("stopped during start-up"), "signal {signal} at 50 ms: {err}");
        assert!(filters(a, "eth0").trim().is_empty() && !has_clsact(a, "eth0"), "{}", filters(a, "eth0"));
        assert_nothing_left(&lab, &before, &format!("signal {signal} at 50 ms"));
    }
}

fn filters_on_host(lab: &Lab) -> String {
    lab.ns
        .iter()
        .map(|n| String::from_utf8_lossy(&sh_out(&format!("tc filter show dev {} ingress", n.host_veth)).stdout).into_owned())
        .collect()
}
