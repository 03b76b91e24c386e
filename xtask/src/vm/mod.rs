//! `cargo xtask vmtest`: the integration tests on other kernels, in QEMU.
//!
//! This machine's kernel has TCX and forbids BPF trampolines, so the TC
//! fallback (clsact + cls_bpf) before 6.6 and the kinds `doctor` reports as
//! refused here can only be proven on other kernels. Each kernel is a
//! Debian package (`catalogue`), fetched through the host's own apt mirror
//! (`apt`), booted from a small busybox initramfs (`initramfs`) under QEMU
//! with the host's root shared read-only over 9p (`qemu`), and its results
//! are printed per kernel and in one table (`report`). Everything fetched
//! and built is cached under `target/vm`.

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{
    bootstrap::build,
    host::{apt_install, cargo, is_root, output, root, run, step},
    test::TEST_PACKAGES,
};

mod apt;
mod catalogue;
mod initramfs;
mod qemu;
mod report;

use catalogue::Kernel;
use report::{KernelResult, print_kernel, print_summary};

/// What one `vmtest` run executes in each guest: (test file, filters).
/// `--skip container_` leaves out the Docker tests.
fn default_selection() -> Vec<(String, Vec<String>)> {
    vec![
        ("foundation".into(), vec!["doctor_".into(), "ring_buffer_event_carries_sender_namespace_and_result".into()]),
        ("netlink".into(), vec![]),
        ("packets".into(), vec![]),
        ("top".into(), vec![]),
        // The filter chain (tail calls, clsact + cls_bpf before 6.6) against tcpdump.
        ("tcpdump_parity".into(), vec![]),
        ("losses".into(), vec![]),
        ("lifecycle".into(), vec![]),
        // Process attribution: which sock_ops program the kernel takes.
        ("procs".into(), vec![]),
        // Drops (kfree_skb's argument lists, the filter tail-called from a
        // tracing program) and TCP health, whose hooks differ by kernel.
        ("drops".into(), vec![]),
        ("tcp".into(), vec![]),
    ]
}

/// Test files that can run in a guest (the Docker ones cannot).
const GUEST_FILES: &[&str] =
    &["foundation", "netlink", "packets", "top", "tcpdump_parity", "ns", "losses", "pcap_filter", "safe_output", "lifecycle", "procs", "drops", "tcp"];

fn vm_dir() -> PathBuf {
    root().join("target/vm")
}

pub fn vmtest(kernel: &str, filter: Option<String>) -> Result<()> {
    let Some(kernels) = catalogue::chosen(kernel) else {
        bail!("unknown kernel {kernel}: choose one of {} or all", catalogue::names());
    };
    // A kernel asked for by name must be tested; of `all`, those whose
    // release is out of reach are skipped (and said so).
    let must = kernel != "all";
    if !is_root() {
        bail!("vmtest installs Debian packages and fetches kernels: run `sudo -E cargo xtask vmtest`");
    }
    let root = root();
    if root.to_string_lossy().contains(char::is_whitespace) {
        bail!("the workspace path {} has a space, which the guest's kernel command line cannot carry", root.display());
    }
    let selection = match &filter {
        None => default_selection(),
        Some(f) if GUEST_FILES.contains(&f.as_str()) => vec![(f.clone(), vec![])],
        Some(f) => GUEST_FILES.iter().map(|file| (file.to_string(), vec![f.clone()])).collect(),
    };
    let bin = build()?;
    let mut pkgs: Vec<(&str, &str)> = TEST_PACKAGES.iter().filter(|(c, _)| *c != "dockerd").copied().collect();
    pkgs.push(("qemu-system-x86_64", "qemu-system-x86"));
    apt_install(&pkgs, "vmtest")?;
    ensure_static_busybox()?;
    let tests = test_binaries()?;
    let mut chosen = Vec::new();
    for (file, filters) in &selection {
        let exe = tests.iter().find(|(n, _)| n == file).map(|(_, p)| p.clone()).with_context(|| format!("cargo built no test binary {file}"))?;
        chosen.push((file.clone(), exe, filters.clone()));
    }

    fs::create_dir_all(vm_dir()).context("creating target/vm")?;
    // TCG takes every core it gets: one guest at a time on this machine,
    // also across worktrees.
    let lock = fs::File::create("/tmp/tracer-vmtest.lock").context("creating /tmp/tracer-vmtest.lock")?;
    if lock.try_lock().is_err() {
        step("another vmtest is running a guest: waiting for it");
        lock.lock().context("locking /tmp/tracer-vmtest.lock")?;
    }

    let mut mirror = None;
    let mut results = Vec::new();
    for k in kernels {
        let t0 = Instant::now();
        let prepared = match prepare(k, &mut mirror) {
            Ok(Ok(p)) => p,
            Ok(Err(why)) if !must => {
                step(&format!("{why}, so Linux {} is skipped", k.name));
                continue;
            }
            Ok(Err(why)) => {
                let r = KernelResult::failed(k.name, why);
                print_kernel(&r);
                results.push(r);
                continue;
            }
            Err(e) => {
                let r = KernelResult::failed(k.name, format!("{e:#}"));
                print_kernel(&r);
                results.push(r);
                continue;
            }
        };
        let prep_time = t0.elapsed();
        step(&format!("Linux {} ({}): booting under QEMU TCG", k.name, prepared.release));
        let r = match qemu::boot_and_test(k, &prepared, &bin, &chosen) {
            Ok(r) => r,
            Err(e) => KernelResult::failed(k.name, format!("{e:#}")),
        };
        let r = KernelResult { prep_time, ..r };
        print_kernel(&r);
        results.push(r);
    }
    print_summary(&results);
    if results.is_empty() {
        bail!("no kernel could be tested");
    }
    let bad: Vec<&str> = results.iter().filter(|r| !r.ok()).map(|r| r.name).collect();
    if !bad.is_empty() {
        bail!("vmtest failed on Linux {}", bad.join(", "));
    }
    Ok(())
}

/// The initramfs needs a busybox that runs without the host's libc.
fn ensure_static_busybox() -> Result<()> {
    let st = Command::new("dpkg-query").args(["-W", "-f=${Status}", "busybox-static"]).output();
    if st.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed")) {
        return Ok(());
    }
    step("installing busybox-static");
    run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "installing busybox-static",
    )
}

/// Builds the integration tests and returns (file name, executable).
fn test_binaries() -> Result<Vec<(String, PathBuf)>> {
    step("building the integration tests");
    let out = output(
        cargo().args(["test", "-p", "tracer-tests", "--no-run", "--message-format=json-render-diagnostics"]),
        "building the integration tests",
    )?;
    let mut v = Vec::new();
    for line in out.lines() {
        let Ok(m) = serde_json::from_str::<Value>(line) else { continue };
        let is_test = m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|x| x == "test"));
        if m["reason"] == "compiler-artifact"
            && is_test
            && let (Some(name), Some(exe)) = (m["target"]["name"].as_str(), m["executable"].as_str())
        {
            v.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(v)
}

/// A kernel ready to boot.
pub struct Prepared {
    /// `uname -r` of the guest.
    pub release: String,
    pub package: String,
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    /// The unpacked `lib/modules/<release>`, which the guest sees over 9p.
    pub modules: PathBuf,
}

/// Fetches and unpacks the kernel and builds its initramfs, unless cached.
/// `Ok(Err(why))` when Debian has no such kernel within reach. The host's
/// mirror is read the first time a kernel has to be fetched.
fn prepare(k: &Kernel, mirror: &mut Option<apt::Mirror>) -> Result<Result<Prepared, String>> {
    let dir = vm_dir().join("kernels").join(k.name);
    let tree = dir.join("root");
    let stamp = dir.join("package");
    if !fs::read_to_string(&stamp).is_ok_and(|s| !s.trim().is_empty()) {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let m = match mirror {
            Some(m) => m,
            None => mirror.insert(apt::host_mirror()?),
        };
        let apt_dir = vm_dir().join("apt").join(k.release.name);
        match apt::fetch(k, m, &apt_dir, &dir, &tree)? {
            apt::Fetched::Package(p) => fs::write(&stamp, format!("{p}\n")).context("writing the package stamp")?,
            apt::Fetched::Unavailable(why) => return Ok(Err(why)),
        }
    }
    let package = fs::read_to_string(&stamp)?.trim().to_string();
    let release = apt::kernel_release(&tree)?;
    let modules = tree.join("lib/modules").join(&release);
    let vmlinuz = tree.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.exists() {
        bail!("{package} has no boot/vmlinuz-{release}");
    }
    let initramfs = initramfs::build(k.name, &dir, &modules)?;
    Ok(Ok(Prepared { vmlinuz, release, package, initramfs, modules }))
}
