//! Hostile netlink input from an unprivileged user: messages that are no
//! valid request reach the audit before the kernel's permission check. The
//! tracer must stay up, report each as malformed with its bytes (or a
//! message longer than its capture as truncated, with its real length),
//! and go on reporting the requests after them.

use std::time::Duration;

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer, pid_and_run, shell_quote};

const WAIT: Duration = Duration::from_secs(10);

/// The message of issue 8: an RTM_NEWLINK whose bareudp
/// IFLA_BAREUDP_SRCPORT_MIN is 1 byte long (netlink-packet-route 0.34
/// panics on it). 60 bytes; any user can send it.
const BAREUDP: &str = "3c000000100001040100000000000000000000000000000000000000000000001c0012000c00010062617265756470000c0002000500030001000000";

/// Malformed sends, each with what the tracer must say about it.
const CORPUS: &[(&str, &str)] = &[
    (BAREUDP, "bareudp"),
    // nlmsg_len 8: less than the header itself.
    ("08000000100005000100000000000000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "less than the header"),
    // nlmsg_len 200, 40 bytes sent.
    ("c8000000100005000200000000000000000000000000000000000000000000000000000000000000", "only 40 bytes were sent"),
    // Five bytes: no header at all.
    ("0102030405", "too few for a netlink header"),
    // An attribute whose length (3) is shorter than an attribute header.
    ("28000000100005000300000000000000000000000000000000000000000000000300030061626364", "NLA"),
];

fn helper() -> String {
    format!("{}/helpers/nlraw.py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs nlraw.py as `nobody` inside `ns` (the script read from standard
/// input: nobody may not read the checkout). Returns (pid, answers).
fn send_as_nobody(ns: &LabNs, args: &[&str]) -> (u64, Vec<String>) {
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let out = tracer_tests::sh(&format!(
        "ip netns exec {} setpriv --reuid nobody --regid nogroup --clear-groups /usr/bin/python3 - {} < {}",
        ns.name,
        args.join(" "),
        helper()
    ));
    let mut lines = out.lines().map(str::trim);
    let pid = lines.next().and_then(|l| l.parse().ok()).expect("pid line");
    (pid, lines.map(String::from).collect())
}

fn find(t: &Tracer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    t.wait_for(WAIT, pred).unwrap_or_else(|| panic!("no event for {what}; got:\n{}\nstderr:\n{}", t.lines().join("\n"), t.stderr()))
}

#[test]
fn malformed_messages_from_nobody_are_reported_and_the_tracer_goes_on() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let mut args: Vec<&str> = CORPUS.iter().map(|(hex, _)| *hex).collect();
    args.push("newaddr:192.0.2.77");
    let (pid, answers) = send_as_nobody(ns, &args);
    // The kernel refuses nobody's changes after the tracer has seen them.
    assert_eq!(answers.first().map(String::as_str), Some("1"), "EPERM for the bareudp message: {answers:?}");
    assert_eq!(answers.last().map(String::as_str), Some("1"), "EPERM for the valid request: {answers:?}");

    for (hex, why) in CORPUS {
        let e = find(&t, why, |e| e["pid"] == pid && e["malformed"] == true && e["raw"] == *hex);
        assert_eq!(e["type"], "netlink");
        assert_eq!(e["uid"], 65534, "{e}");
        let err = e["decode_error"].as_str().expect("decode_error");
        assert!(err.contains(why), "{why:?} in {e}");
    }
    let bare = find(&t, "bareudp", |e| e["pid"] == pid && e["raw"] == BAREUDP);
    assert_eq!(bare["msg_type"], "RTM_NEWLINK");
    assert_eq!(bare["result"]["errno"], 1, "its answer is still paired with it: {bare}");

    // The valid request after them, decoded, with the kernel's refusal.
    let ok = find(&t, "valid request", |e| e["pid"] == pid && e["msg_type"] == "RTM_NEWADDR");
    assert_eq!(ok["attrs"]["address"], "192.0.2.77");
    assert_eq!(ok["result"]["errno"], 1);
    assert!(ok.get("malformed").is_none(), "{ok}");
    // And a root request after that.
    let (rpid, out) = pid_and_run(&format!("ip netns exec {}", ns.name), "ip link add trmal0 type bridge");
    assert!(out.status.success());
    let e = find(&t, "root request", |e| e["pid"] == rpid && e["attrs"]["kind"] == "bridge");
    assert_eq!(e["result"]["errno"], 0);
    assert_eq!(t.stop(), 0, "stderr: {}", t.stderr());
    let err = t.stderr();
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "nothing of a panic on stderr: {err}");
    assert!(err.contains(&format!("{} netlink messages could not be decoded", CORPUS.len())), "counted at exit: {err}");
}

#[test]
fn malformed_messages_read_as_one_line_each_in_text() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--netns", &ns.name]);
    let (pid, _) = send_as_nobody(ns, &[BAREUDP, "newaddr:192.0.2.78"]);
    let ok = tracer_tests::wait_until(WAIT, || t.lines().iter().any(|l| l.contains(&format!("[{pid}]")) && l.contains("192.0.2.78")));
    assert!(ok, "the valid request after it: {:?}", t.lines());
    assert_eq!(t.stop(), 0);
    let lines = t.lines();
    let bad = lines.iter().find(|l| l.contains(&format!("[{pid}]")) && l.contains("malformed")).expect("a malformed line");
    assert!(bad.contains("RTM_NEWLINK malformed: bareudp attribute 3 has 1 bytes, not 2 raw 3c000000"), "{bad}");
    assert!(bad.ends_with("-> EPERM: Operation not permitted"), "{bad}");
    assert!(!bad.contains('\n'));
}

#[test]
fn a_20_kib_message_is_reported_truncated_with_its_real_length() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let (pid, answers) = send_as_nobody(ns, &["big:trbig:20480"]);
    assert_eq!(answers, vec!["1".to_string()], "EPERM");
    let e = find(&t, "the big message", |e| e["pid"] == pid && e["msg_type"] == "RTM_NEWLINK");
    assert_eq!(e["truncated"], true, "{e}");
    assert_eq!(e["total_len"], 20480);
    assert_eq!(e["captured_len"], 16384);
    // What was captured is decoded: the name comes before the padding.
    assert_eq!(e["attrs"]["ifname"], "trbig", "{e}");
    assert_eq!(e["result"]["errno"], 1);
    assert!(e.get("malformed").is_none(), "cut by the capture, not malformed: {e}");
    assert_eq!(t.stop(), 0);
}

#[test]
fn the_default_job_survives_the_bareudp_message() {
    let lab = Lab::new(2);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["--json"]);
    let (pid, _) = send_as_nobody(ns, &[BAREUDP]);
    let e = find(&t, "bareudp", |e| e["pid"] == pid && e["malformed"] == true);
    assert_eq!(e["raw"], BAREUDP);
    let (rpid, out) = pid_and_run(&format!("ip netns exec {}", ns.name), "ip link add trmal1 type bridge");
    assert!(out.status.success());
    find(&t, "the next request", |e| e["pid"] == rpid && e["attrs"]["kind"] == "bridge");
    // Packets are still traced too.
    tracer_tests::sh(&format!("ip netns exec {} ping -c 2 -i 0.2 -W 1 {} >/dev/null", ns.name, lab.ns[1].ip));
    find(&t, "a packet after it", |e| e["type"] == "packet" && e["netns"]["name"] == ns.name.as_str() && e["proto"] == "icmp");
    assert_eq!(t.stop(), 0, "stderr: {}", t.stderr());
    assert!(!t.stderr().contains("panicked"), "{}", t.stderr());
}
