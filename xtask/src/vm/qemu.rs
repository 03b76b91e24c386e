//! Booting one kernel under QEMU with software emulation (`/dev/kvm` is not
//! usable here) and running the chosen test binaries in it: the guest sees
//! the host's root read-only over 9p and writes its logs to a second,
//! writable 9p share of `target/vm/out/<kernel>`; its serial console is
//! followed line by line and kept in `console.log`.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    Prepared,
    catalogue::Kernel,
    report::{KernelResult, parse_libtest},
    vm_dir,
};
use crate::host::{root, step};

/// Hard limit for one guest, boot to power-off.
const GUEST_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// The script the guest runs in a chroot of the host's root.
fn guest_script(out: &Path, bin: &Path, tests: &[(String, PathBuf, Vec<String>)]) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut s = String::new();
    let o = q(&out.to_string_lossy());
    writeln!(s, "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root RUST_BACKTRACE=1").ok();
    writeln!(s, "export TRACER_BIN={}", q(&bin.to_string_lossy())).ok();
    writeln!(s, "cd {}", q(&root().join("tests").to_string_lossy())).ok();
    writeln!(s, "echo \"vmtest: guest up, Linux $(uname -r)\"").ok();
    writeln!(s, "\"$TRACER_BIN\" doctor --json > {o}/doctor.json 2> {o}/doctor.err").ok();
    writeln!(s, "\"$TRACER_BIN\" doctor > {o}/doctor.txt 2>&1").ok();
    for (file, exe, filters) in tests {
        let filters: Vec<String> = filters.iter().map(|f| q(f)).collect();
        writeln!(s, "echo \"vmtest: running {file} $(date +%T)\"").ok();
        writeln!(
            s,
            "timeout 1800 {} --test-threads=1 --skip container_ {} > {o}/{file}.log 2>&1; echo $? > {o}/{file}.status",
            q(&exe.to_string_lossy()),
            filters.join(" ")
        )
        .ok();
        writeln!(s, "grep -E '^test result' {o}/{file}.log").ok();
    }
    // What the tests could have left behind in the guest.
    writeln!(s, "{{ ip netns list; ip -o link show | grep -v ': lo:'; pgrep -a -x tracer; }} > {o}/leftovers 2>&1").ok();
    writeln!(s, "echo \"vmtest: done $(date +%T)\"").ok();
    s
}

pub fn boot_and_test(
    k: &'static Kernel,
    p: &Prepared,
    bin: &Path,
    tests: &[(String, PathBuf, Vec<String>)],
) -> Result<KernelResult> {
    let out = vm_dir().join("out").join(k.name);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    fs::write(out.join("guest.sh"), guest_script(&out, bin, tests))?;
    let append = format!(
        "console=ttyS0 quiet panic=-1 vmtest.out={} vmtest.modules={} vmtest.root={}",
        out.display(),
        p.modules.display(),
        root().display()
    );
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args(["-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&p.vmlinuz)
        .arg("-initrd")
        .arg(&p.initramfs)
        .args(["-append", &append])
        .args(["-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"])
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .arg("-fsdev")
        .arg(format!("local,id=vmout,path={},security_model=none,multidevs=remap", out.display()))
        .args(["-device", "virtio-9p-pci,fsdev=vmout,mount_tag=vmout"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let console_path = out.join("console.log");
    let mut console = fs::File::create(&console_path)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                writeln!(console, "{line}")?;
                if let Some(msg) = line.strip_prefix("vmtest: ") {
                    step(&format!("[{}] {msg}", k.name));
                } else if line.starts_with("test result") {
                    step(&format!("[{}] {line}", k.name));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if start.elapsed() > GUEST_TIMEOUT {
                    let _ = child.kill();
                    timed_out = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let run_time = start.elapsed();
    let mut qemu_err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut qemu_err);
    }
    let read = |name: &str| fs::read_to_string(out.join(name)).ok();
    let doctor = read("doctor.json").and_then(|s| serde_json::from_str(s.trim()).ok());
    let doctor_err = read("doctor.err").unwrap_or_default();
    let mut results = Vec::new();
    for (file, _, _) in tests {
        let log = read(&format!("{file}.log")).unwrap_or_default();
        let status = read(&format!("{file}.status")).and_then(|s| s.trim().parse().ok());
        results.push(parse_libtest(file, status, &log));
    }
    let problem = if timed_out {
        Some(format!("the guest ran longer than {} min and was stopped; see {}", GUEST_TIMEOUT.as_secs() / 60, console_path.display()))
    } else if read("exit").is_none() {
        let console = fs::read_to_string(&console_path).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        Some(format!(
            "the guest stopped before the end (qemu: {status}{}); last console lines:\n{}",
            if qemu_err.trim().is_empty() { String::new() } else { format!(", {}", qemu_err.trim()) },
            tail.join("\n")
        ))
    } else {
        read("leftovers").filter(|l| !l.trim().is_empty()).map(|l| format!("the tests left these behind in the guest:\n{}", l.trim()))
    };
    Ok(KernelResult {
        name: k.name,
        release: p.release.clone(),
        package: p.package.clone(),
        doctor,
        doctor_err,
        tests: results,
        problem,
        prep_time: Duration::ZERO,
        run_time,
    })
}

