//! `cargo xtask test`: the unit tests, then the root integration tests one
//! at a time, then a check that they left nothing behind on the host
//! (namespaces, interfaces, clsact qdiscs, qdisc journals, tracer processes
//! and programs). The Debian packages the tests use are installed first.

use std::{process::Command, time::Duration};

use anyhow::{Result, bail};

use crate::{
    bootstrap::build,
    host::{apt_install, cargo, is_root, root, run, step},
};

/// Debian packages the integration tests use, by the command they provide.
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("nft", "nftables"),
    ("dockerd", "docker.io"),
    ("busybox", "busybox-static"),
    // Packet tests: ICMP traffic, and the real readers of the pcapng files.
    ("ping", "iputils-ping"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    // serve: a real Prometheus scrapes it; a real Podman container is named.
    ("prometheus", "prometheus"),
    ("podman", "podman"),
    // Helpers run as nobody, who cannot use root's own Python (pyenv).
    ("/usr/bin/python3", "python3"),
];

pub fn test(filter: Option<String>, integration_only: bool) -> Result<()> {
    let bin = build()?;
    if !integration_only {
        step("unit tests");
        run(cargo().args(["test", "--workspace", "--exclude", "tracer-ebpf", "--lib", "--bins"]), "the unit tests")?;
    }
    if !is_root() {
        bail!("the integration tests need root (namespaces, eBPF): run `sudo -E cargo xtask test`");
    }
    apt_install(TEST_PACKAGES, "the tests")?;
    step("integration tests (root, one at a time)");
    let mut c = cargo();
    c.args(["test", "-p", "tracer-tests"]).env("TRACER_BIN", &bin);
    // A filter naming a test file (tests/tests/NAME.rs) runs that file.
    let file = filter.as_ref().filter(|f| root().join("tests/tests").join(format!("{f}.rs")).exists());
    match file {
        Some(f) => c.args(["--test", f]),
        None => c.arg("--tests"),
    };
    c.args(["--", "--test-threads=1"]);
    if let (Some(f), None) = (&filter, file) {
        c.arg(f);
    }
    let before = leftovers();
    run(&mut c, "the integration tests")?;
    // A deleted namespace goes away asynchronously (its host-side veth
    // lingers about a second): give teardown a few seconds before judging.
    let mut left: Vec<String> = Vec::new();
    for _ in 0..20 {
        left = leftovers().into_iter().filter(|x| !before.contains(x)).collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !left.is_empty() {
        bail!("the integration tests left these behind: {}", left.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    step("nothing left behind: no namespace, interface, clsact qdisc, qdisc journal, tracer process or tracer program");
    Ok(())
}

/// What tests could leave behind: namespaces, host interfaces, tracer
/// processes, and loaded programs of the tracer.
fn leftovers() -> Vec<String> {
    let sh = |cmd: &str| {
        Command::new("sh").args(["-c", cmd]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let mut v = Vec::new();
    for l in sh("ip netns list").lines() {
        v.push(format!("netns {}", l.split_whitespace().next().unwrap_or("")));
    }
    for l in sh("ip -o link show").lines() {
        if let Some(name) = l.split(": ").nth(1) {
            v.push(format!("interface {}", name.split('@').next().unwrap_or(name)));
        }
    }
    for l in sh("pgrep -a -x tracer").lines() {
        v.push(format!("process {l}"));
    }
    // netlink-tc leftovers on host interfaces, and journals of the clsact
    // qdiscs a tracer added that were never removed.
    for l in sh("tc qdisc show 2>/dev/null | grep clsact").lines() {
        v.push(format!("qdisc {}", l.trim()));
    }
    for l in sh("ls /run/tracer 2>/dev/null").lines() {
        v.push(format!("journal /run/tracer/{l}"));
    }
    // Every tracer program name comes from tracer-common's programs module.
    for l in sh("command -v bpftool >/dev/null && bpftool prog show 2>/dev/null | grep -oE 'name (nl|pkt|top|probe|pcap)_[a-z_]+'").lines() {
        v.push(format!("program {}", l.trim_start_matches("name ")));
    }
    v.sort();
    v
}
