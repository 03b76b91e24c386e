//! Foundation: doctor, the CLI contract, and one program from tracer-ebpf
//! loaded, triggered and read back through the ring buffer.

use std::time::Duration;

use serde_json::Value;
use tracer_tests::{Lab, Tracer, kernel_version, pid_and_run, tracer_run};

#[test]
fn doctor_reports_every_program_kind() {
    let (code, out, err) = tracer_run(&["doctor", "--json"]);
    assert_eq!(code, 0, "doctor failed: {err}");
    let r: Value = serde_json::from_str(out.trim()).expect("doctor JSON");
    let kinds = r["kinds"].as_array().expect("kinds");
    let names: Vec<&str> = kinds.iter().filter_map(|k| k["kind"].as_str()).collect();
    assert_eq!(names, ["tracepoint", "tp_btf", "tcx", "netlink-tc", "fentry", "fexit", "lsm", "kprobe"]);
    let kind = |n: &str| kinds.iter().find(|k| k["kind"] == n).expect("kind").clone();
    // The tracer needs these; every kernel it supports has them.
    assert_eq!(kind("tracepoint")["available"], true);
    assert_eq!(r["btf"], true);
    assert_eq!(r["can_run"], true);
    // Refusals carry their reason.
    for k in kinds {
        if k["available"] == false {
            assert!(k["reason"].as_str().is_some_and(|s| !s.is_empty()), "no reason: {k}");
        }
    }
    // Cross-check with facts of this kernel gathered independently.
    let kprobes_built = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    assert_eq!(kind("kprobe")["available"], kprobes_built);
    let (major, minor) = kernel_version();
    assert_eq!(kind("tcx")["available"], (major, minor) >= (6, 6), "TCX is in every kernel >= 6.6");
    // BPF LSM programs attach but never run unless bpf is an active LSM.
    if let Ok(lsms) = std::fs::read_to_string("/sys/kernel/security/lsm")
        && !lsms.trim().split(',').any(|l| l == "bpf")
    {
        assert_eq!(kind("lsm")["available"], false, "active LSMs: {lsms}");
    }
    let netlink = r["features"].as_array().expect("features").iter().find(|f| f["capability"] == "netlink audit").cloned();
    assert_eq!(netlink.expect("netlink feature")["via"], "tracepoint");
}

#[test]
fn doctor_text_names_refused_kinds() {
    let (code, out, _) = tracer_run(&["doctor"]);
    assert_eq!(code, 0);
    assert!(out.contains("tracepoint   available"), "{out}");
    assert!(out.contains("tracer can run here"), "{out}");
}

#[test]
fn help_lists_subcommands() {
    let (code, out, _) = tracer_run(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["netlink", "packets", "ns", "top", "doctor"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(sub)), "--help lacks {sub}: {out}");
    }
}

#[test]
fn bad_input_is_one_sentence_not_a_panic() {
    for args in [
        &["netlink", "--netns", "no-such-netns-xyz"][..],
        &["netlink", "--pid", "4000000000"],
        &["netlink", "--type", "RTM_BOGUS"],
        &["netlink", "--protocol", "carrier-pigeon"],
        &["netlink", "--duration", "-3"],
        &["top", "--interval", "0"],
        &["top", "--by", "planet"],
        &["top", "--netns", "no-such-netns-xyz"],
        &["top", "tcp[13]", "&", "2"],
    ] {
        let (code, out, err) = tracer_run(args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
    }
}

/// Loads the netlink programs, triggers them from inside a lab namespace
/// and checks the values of the event that came through the ring buffer.
#[test]
fn ring_buffer_event_carries_sender_namespace_and_result() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let prefix = format!("ip netns exec {}", ns.name);
    let (pid, out) = pid_and_run(&prefix, "ip link add trfoo0 type bridge");
    assert!(out.status.success());
    let (pid_fail, out) = pid_and_run(&prefix, "ip link add trfoo0 type bridge");
    assert!(!out.status.success(), "second add must fail with EEXIST");

    let ok = t
        .wait_for(Duration::from_secs(10), |e| e["pid"] == pid && e["msg_type"] == "RTM_NEWLINK" && e["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "create")))
        .unwrap_or_else(|| panic!("no RTM_NEWLINK from pid {pid}: {:?}", t.lines()));
    let failed = t
        .wait_for(Duration::from_secs(10), |e| e["pid"] == pid_fail && e["msg_type"] == "RTM_NEWLINK" && e["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "create")))
        .unwrap_or_else(|| panic!("no RTM_NEWLINK from pid {pid_fail}: {:?}", t.lines()));
    assert_eq!(t.stop(), 0);

    assert_eq!(ok["type"], "netlink");
    assert_eq!(ok["comm"], "ip");
    assert_eq!(ok["tid"], pid);
    assert_eq!(ok["uid"], 0);
    assert_eq!(ok["protocol"], "route");
    assert_eq!(ok["netns"]["inode"], ns.inode());
    assert_eq!(ok["netns"]["name"], ns.name.as_str());
    assert_eq!(ok["result"]["errno"], 0);
    assert!(ok["time"].as_str().is_some_and(|s| s.ends_with('Z') && s.len() == 30), "{}", ok["time"]);
    assert_eq!(failed["result"]["errno"], 17);
    assert_eq!(failed["result"]["error"], "File exists");
    // --netns: nothing from other namespaces.
    assert!(t.events().iter().all(|e| e["netns"]["inode"] == ns.inode()));
}
