//! `cargo xtask vmtest`: the integration tests on other kernels, in QEMU.
//!
//! This machine's kernel has TCX and forbids BPF trampolines, so the TC
//! fallback (clsact + cls_bpf) before 6.6 and the kinds `doctor` reports as
//! refused here can only be proven on other kernels. Each kernel is a
//! Debian package, fetched with a private apt configuration (the host's
//! `/etc/apt` stays untouched), unpacked with `dpkg-deb -x` and never
//! installed. The guest boots it under software emulation (`/dev/kvm` is not
//! usable here) from a small busybox initramfs that loads the 9p and virtio
//! modules, mounts the host's root read-only over 9p and a second, writable
//! 9p share of `target/vm/out/<kernel>` at the same path, and runs
//! `tracer doctor` and the chosen test binaries there with the host's own
//! tools. Everything fetched and built is cached under `target/vm`.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{apt_install, build, cargo, is_root, output, root, run, step, TEST_PACKAGES};

/// A Debian release the kernels come from, as apt source lines.
struct Release {
    name: &'static str,
    sources: &'static [&'static str],
}

const BOOKWORM: Release = Release {
    name: "bookworm",
    sources: &[
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
};
const BULLSEYE: Release = Release {
    name: "bullseye",
    sources: &[
        "deb http://deb.debian.org/debian bullseye main",
        "deb http://deb.debian.org/debian-security bullseye-security main",
    ],
};
const TRIXIE_BACKPORTS: Release =
    Release { name: "trixie-backports", sources: &["deb http://deb.debian.org/debian trixie-backports main"] };

/// How the kernel's package is found in its release.
enum Pick {
    /// The package this meta-package depends on.
    Meta(&'static str),
    /// The newest `<prefix><version>+<suffix>` (backports move on to newer
    /// kernels, and their meta-package with them).
    Newest { prefix: &'static str, suffix: &'static str },
}

/// A kernel `vmtest` can boot.
struct Kernel {
    name: &'static str,
    release: &'static Release,
    pick: Pick,
}

const KERNELS: &[Kernel] = &[
    Kernel { name: "5.10", release: &BULLSEYE, pick: Pick::Meta("linux-image-amd64") },
    Kernel { name: "6.1", release: &BOOKWORM, pick: Pick::Meta("linux-image-amd64") },
    Kernel { name: "6.12", release: &BOOKWORM, pick: Pick::Meta("linux-image-6.12-amd64") },
    Kernel {
        name: "6.18",
        release: &TRIXIE_BACKPORTS,
        pick: Pick::Newest { prefix: "linux-image-6.18.", suffix: "+deb13-amd64" },
    },
];

/// Modules the initramfs loads before it can mount the host's root. Their
/// dependencies come from `modules.dep`; those built in are skipped.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

/// Modules the tests use, loaded with modprobe once the root is mounted (the
/// kernel's own autoloading works too: `/sbin/modprobe` is busybox's).
const TEST_MODULES: &[&str] =
    &["veth", "bridge", "sch_ingress", "cls_bpf", "nf_tables", "8021q", "af_packet", "tun"];

/// 5.10's virtio transport refuses larger; every kernel reads faster with it
/// than with the default.
const MSIZE: u32 = 512_000;

/// What one `vmtest` run executes in each guest: (test file, filters).
/// `--skip container_` leaves out the Docker tests.
fn default_selection() -> Vec<(String, Vec<String>)> {
    vec![
        ("foundation".into(), vec!["doctor_".into(), "ring_buffer_event_carries_sender_namespace_and_result".into()]),
        ("netlink".into(), vec![]),
        ("packets".into(), vec![]),
        ("top".into(), vec![]),
        ("losses".into(), vec![]),
        ("lifecycle".into(), vec![]),
    ]
}

/// Test files that can run in a guest (the Docker ones cannot).
const GUEST_FILES: &[&str] = &["foundation", "netlink", "packets", "top", "filter", "ns", "losses", "pcap_filter", "safe_output", "lifecycle"];

/// Hard limit for one guest, boot to power-off.
const GUEST_TIMEOUT: Duration = Duration::from_secs(45 * 60);

fn vm_dir() -> PathBuf {
    root().join("target/vm")
}

pub fn vmtest(kernel: &str, filter: Option<String>) -> Result<()> {
    let kernels: Vec<&Kernel> = if kernel == "all" {
        KERNELS.iter().collect()
    } else {
        match KERNELS.iter().find(|k| k.name == kernel) {
            Some(k) => vec![k],
            None => bail!(
                "unknown kernel {kernel}: choose one of {} or all",
                KERNELS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ),
        }
    };
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
    apt_install(&pkgs)?;
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

    let mut results = Vec::new();
    for k in kernels {
        let t0 = Instant::now();
        let prepared = match prepare(k) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                let r = KernelResult::failed(k.name, format!("{e:#}"));
                print_kernel(&r);
                results.push(r);
                continue;
            }
        };
        let prep_time = t0.elapsed();
        step(&format!("Linux {} ({}): booting under QEMU TCG", k.name, prepared.release));
        let r = match boot_and_test(k, &prepared, &bin, &chosen) {
            Ok(r) => r,
            Err(e) => KernelResult::failed(k.name, format!("{e:#}")),
        };
        let r = KernelResult { prep_time, ..r };
        print_kernel(&r);
        results.push(r);
    }
    print_summary(&results);
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
struct Prepared {
    /// `uname -r` of the guest.
    release: String,
    package: String,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    /// The unpacked `lib/modules/<release>`, which the guest sees over 9p.
    modules: PathBuf,
}

/// Options that make apt use its own sources, lists and cache under
/// target/vm/apt/<release>, never the host's `/etc/apt/sources.list*`.
fn apt_options(rel: &Release) -> Result<Vec<String>> {
    let dir = vm_dir().join("apt").join(rel.name);
    for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        fs::create_dir_all(dir.join(d)).with_context(|| format!("creating {}", dir.join(d).display()))?;
    }
    let list: String = rel
        .sources
        .iter()
        .map(|l| l.replacen("deb ", "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ", 1) + "\n")
        .collect();
    fs::write(dir.join("sources.list"), list).context("writing the private sources.list")?;
    let d = dir.display();
    Ok(vec![
        format!("-oDir::Etc::SourceList={d}/sources.list"),
        format!("-oDir::Etc::SourceParts={d}/sources.list.d"),
        format!("-oDir::State::Lists={d}/lists"),
        format!("-oDir::Cache={d}/cache"),
        // The downloads land in target/vm, which apt's sandbox user cannot write.
        "-oAPT::Sandbox::User=root".into(),
    ])
}

/// Fetches and unpacks the kernel and builds its initramfs, unless cached.
/// `None` when its Debian release cannot be reached (said on stderr).
fn prepare(k: &Kernel) -> Result<Option<Prepared>> {
    let dir = vm_dir().join("kernels").join(k.name);
    let tree = dir.join("root");
    let stamp = dir.join("package");
    if !fs::read_to_string(&stamp).is_ok_and(|s| !s.trim().is_empty()) {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let opts = apt_options(k.release)?;
        step(&format!("Linux {}: reading the package lists of Debian {}", k.name, k.release.name));
        let upd = Command::new("apt-get").args(&opts).args(["-qq", "update"]).output().context("starting apt-get")?;
        let err = String::from_utf8_lossy(&upd.stderr);
        if !upd.status.success() || err.contains("Failed to fetch") {
            eprintln!(
                "xtask: Debian {} cannot be reached from here ({}), so Linux {} is skipped.",
                k.release.name,
                err.lines().find(|l| !l.trim().is_empty()).unwrap_or("apt-get update failed").trim(),
                k.name
            );
            return Ok(None);
        }
        let Some(pkg) = pick_package(k, &opts)? else {
            eprintln!("xtask: Debian {} has no package of Linux {} now, so it is skipped.", k.release.name, k.name);
            return Ok(None);
        };
        step(&format!("Linux {}: fetching {pkg}", k.name));
        run(Command::new("apt-get").args(&opts).args(["-qq", "download", &pkg]).current_dir(&dir), "apt-get download")?;
        let deb = fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree), "unpacking the kernel package")?;
        let version = deb.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('_').nth(1)).unwrap_or("").to_string();
        fs::remove_file(&deb).context("removing the .deb")?;
        // trixie keeps modules in usr/lib/modules; depmod -b wants lib/modules.
        let usr = tree.join("usr/lib/modules");
        if usr.is_dir() && !tree.join("lib/modules").exists() {
            fs::create_dir_all(tree.join("lib")).context("creating lib")?;
            fs::rename(&usr, tree.join("lib/modules")).context("moving usr/lib/modules to lib/modules")?;
        }
        let release = kernel_release(&tree)?;
        step(&format!("Linux {}: depmod {release}", k.name));
        run(Command::new("/bin/busybox").arg("depmod").arg("-b").arg(&tree).arg(&release), "depmod")?;
        fs::write(&stamp, format!("{pkg} {version}\n")).context("writing the package stamp")?;
    }
    let package = fs::read_to_string(&stamp)?.trim().to_string();
    let release = kernel_release(&tree)?;
    let modules = tree.join("lib/modules").join(&release);
    let vmlinuz = tree.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.exists() {
        bail!("{package} has no boot/vmlinuz-{release}");
    }
    let initramfs = initramfs(k, &dir, &modules)?;
    Ok(Some(Prepared { vmlinuz, release, package, initramfs, modules }))
}

/// The name of the package that holds the kernel, if the release has one.
fn pick_package(k: &Kernel, opts: &[String]) -> Result<Option<String>> {
    match k.pick {
        Pick::Meta(meta) => {
            let deps = output(Command::new("apt-cache").args(opts).args(["depends", meta]), "resolving the kernel package")?;
            Ok(deps
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-"))
                .map(str::to_string))
        }
        Pick::Newest { prefix, suffix } => {
            let names = output(Command::new("apt-cache").args(opts).args(["pkgnames", prefix]), "listing kernel packages")?;
            let version = |n: &str| -> Option<Vec<u32>> {
                let v = n.strip_prefix(prefix)?.strip_suffix(suffix)?;
                v.split('.').map(|x| x.parse().ok()).collect()
            };
            Ok(names.lines().filter_map(|n| Some((version(n)?, n.to_string()))).max().map(|(_, n)| n))
        }
    }
}

fn kernel_release(tree: &Path) -> Result<String> {
    let mut v: Vec<String> = fs::read_dir(tree.join("lib/modules"))
        .with_context(|| format!("no lib/modules in {}", tree.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel in {}/lib/modules, found {v:?}", tree.display()),
    }
}

/// `modules.dep`: module name -> (path, dependency paths).
fn modules_dep(modules: &Path) -> Result<std::collections::HashMap<String, (String, Vec<String>)>> {
    let text = fs::read_to_string(modules.join("modules.dep")).context("reading modules.dep")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (path, deps) = l.split_once(':')?;
            Some((module_name(path), (path.to_string(), deps.split_whitespace().map(str::to_string).collect())))
        })
        .collect())
}

/// `kernel/fs/9p/9p.ko.xz` -> `9p`; `-` and `_` are the same to the kernel.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The boot modules and their dependencies, dependencies first.
fn boot_module_paths(modules: &Path) -> Result<Vec<String>> {
    let dep = modules_dep(modules)?;
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let by_path: std::collections::HashMap<&str, &Vec<String>> = dep.values().map(|(p, d)| (p.as_str(), d)).collect();
    fn visit<'a>(p: &'a str, by_path: &std::collections::HashMap<&str, &'a Vec<String>>, out: &mut Vec<String>) {
        if out.iter().any(|x| x == p) {
            return;
        }
        for d in by_path.get(p).map(|v| v.as_slice()).unwrap_or_default() {
            visit(d, by_path, out);
        }
        out.push(p.to_string());
    }
    let mut out = Vec::new();
    for m in BOOT_MODULES {
        let name = m.replace('-', "_");
        match dep.get(&name) {
            Some((p, _)) => visit(p, &by_path, &mut out),
            None if builtin.contains(&name) => {}
            None => bail!("the kernel in {} has no module {m}", modules.display()),
        }
    }
    Ok(out)
}

/// The init of the initramfs: mounts, modules, the guest script in a chroot
/// of the host's root, then power-off. Parameters come from the kernel
/// command line: `vmtest.out` (the writable share's path on the host) and
/// `vmtest.modules` (the unpacked modules, which the guest sees over 9p).
fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /boot-modules); do insmod /boot-modules.d/$m || echo "vmtest: insmod $m failed"; done
arg() {{ sed -n "s/.*vmtest\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }}
out=$(arg out)
mods=$(arg modules)
h=/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE},cache=loose,ro hostroot $h || {{ echo "vmtest: cannot mount the host's root"; reboot -f; }}
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} vmout $h$out || {{ echo "vmtest: cannot mount $out"; reboot -f; }}
# modprobe (the tests' and the kernel's own requests) finds the unpacked tree.
mkdir -p /lib/modules/$(uname -r) /sbin
mount --bind $h$mods /lib/modules/$(uname -r)
ln -s /bin/busybox /sbin/modprobe
for m in {TEST}; do modprobe $m 2>/dev/null || echo "vmtest: modprobe $m failed"; done
mount -t proc proc $h/proc
mount -t sysfs sys $h/sys
mount -t devtmpfs dev $h/dev
mkdir -p $h/dev/pts $h/dev/shm
mount -t devpts devpts $h/dev/pts
mount -t tmpfs tmpfs $h/dev/shm
for d in run tmp var/tmp root; do mount -t tmpfs -o mode=1777 tmpfs $h/$d; done
mount -t tracefs tracefs $h/sys/kernel/tracing
mount -t debugfs debugfs $h/sys/kernel/debug
mount -t bpf bpf $h/sys/fs/bpf
mount -t cgroup2 cgroup2 $h/sys/fs/cgroup
ip link set lo up
chroot $h /bin/sh $out/guest.sh
echo $? > $h$out/exit
sync
umount $h$out
reboot -f
"#,
        TEST = TEST_MODULES.join(" ")
    )
}

/// Builds `initramfs.cpio` (busybox, the boot modules uncompressed, init)
/// unless the one there was built from the same init and modules.
fn initramfs(k: &Kernel, dir: &Path, modules: &Path) -> Result<PathBuf> {
    let paths = boot_module_paths(modules)?;
    let init = init_script();
    let stamp_text = format!("{init}\n{}\n", paths.join("\n"));
    let cpio = dir.join("initramfs.cpio");
    let stamp = dir.join("initramfs.stamp");
    if cpio.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return Ok(cpio);
    }
    step(&format!("Linux {}: building the initramfs", k.name));
    let st = dir.join("initramfs.d");
    let _ = fs::remove_dir_all(&st);
    for d in ["bin", "boot-modules.d", "proc", "sys", "dev", "host", "tmp"] {
        fs::create_dir_all(st.join(d))?;
    }
    fs::copy("/bin/busybox", st.join("bin/busybox")).context("copying /bin/busybox")?;
    let mut list = String::new();
    for p in &paths {
        let src = modules.join(p);
        let name = format!("{}.ko", module_name(p));
        let dst = st.join("boot-modules.d").join(&name);
        if p.ends_with(".ko") {
            fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        } else if p.ends_with(".ko.xz") {
            let out = Command::new("/bin/busybox").arg("xz").arg("-dc").arg(&src).output().context("starting busybox xz")?;
            if !out.status.success() {
                bail!("cannot decompress {}", src.display());
            }
            fs::write(&dst, out.stdout)?;
        } else {
            bail!("{} is compressed in a way the initramfs cannot load", src.display());
        }
        writeln!(list, "{name}").expect("writing to a String");
    }
    fs::write(st.join("boot-modules"), list)?;
    fs::write(st.join("init"), &init)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(st.join("init"), fs::Permissions::from_mode(0o755))?;
    let files = output(Command::new("/bin/busybox").args(["find", "."]).current_dir(&st), "listing the initramfs")?;
    let mut child = Command::new("/bin/busybox")
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&st)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&cpio).context("creating initramfs.cpio")?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting busybox cpio")?;
    child.stdin.take().expect("piped stdin").write_all(files.as_bytes())?;
    if !child.wait()?.success() {
        bail!("busybox cpio failed");
    }
    fs::remove_dir_all(&st)?;
    fs::write(&stamp, stamp_text)?;
    Ok(cpio)
}

/// One test binary's result in a guest.
struct TestFile {
    file: String,
    status: Option<i32>,
    passed: Vec<String>,
    failed: Vec<String>,
    /// libtest's "failures:" section, or the tail of the log.
    detail: String,
}

struct KernelResult {
    name: &'static str,
    release: String,
    package: String,
    doctor: Option<Value>,
    doctor_err: String,
    tests: Vec<TestFile>,
    /// Why the guest did not get to the end, if it did not.
    problem: Option<String>,
    prep_time: Duration,
    run_time: Duration,
}

impl KernelResult {
    fn failed(name: &'static str, problem: String) -> Self {
        KernelResult {
            name,
            release: String::new(),
            package: String::new(),
            doctor: None,
            doctor_err: String::new(),
            tests: vec![],
            problem: Some(problem),
            prep_time: Duration::ZERO,
            run_time: Duration::ZERO,
        }
    }

    fn ok(&self) -> bool {
        self.problem.is_none() && self.tests.iter().all(|t| t.status == Some(0) && t.failed.is_empty())
    }
}

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

fn boot_and_test(
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
        "console=ttyS0 quiet panic=-1 vmtest.out={} vmtest.modules={}",
        out.display(),
        p.modules.display()
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

fn parse_libtest(file: &str, status: Option<i32>, log: &str) -> TestFile {
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for l in log.lines() {
        let Some(rest) = l.strip_prefix("test ") else { continue };
        if let Some(name) = rest.strip_suffix(" ... ok") {
            passed.push(name.to_string());
        } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
            failed.push(name.to_string());
        }
    }
    let detail = match log.find("\nfailures:\n") {
        Some(i) => log[i + 1..].to_string(),
        None if status != Some(0) => log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
        None => String::new(),
    };
    TestFile { file: file.to_string(), status, passed, failed, detail }
}

fn print_kernel(r: &KernelResult) {
    let mut s = String::new();
    writeln!(s, "\n== Linux {} ({}, {}) ==", r.name, r.release, r.package).ok();
    match &r.doctor {
        Some(d) => {
            writeln!(s, "{:<12} {:<10} reason", "program", "status").ok();
            for k in d["kinds"].as_array().into_iter().flatten() {
                writeln!(
                    s,
                    "{:<12} {:<10} {}",
                    k["kind"].as_str().unwrap_or("?"),
                    if k["available"] == true { "available" } else { "refused" },
                    k["reason"].as_str().unwrap_or("")
                )
                .ok();
            }
            for f in d["features"].as_array().into_iter().flatten() {
                let via = f["via"].as_str().map(|v| format!("yes, with {v}")).unwrap_or_else(|| "no".into());
                writeln!(s, "{:<16} {via}", f["capability"].as_str().unwrap_or("?")).ok();
            }
            if let Some(p) = d["problem"].as_str() {
                writeln!(s, "doctor: tracer cannot run here: {p}").ok();
            }
        }
        None if r.problem.is_none() => {
            writeln!(s, "doctor printed no JSON: {}", r.doctor_err.trim()).ok();
        }
        None => {}
    }
    // Files a name filter left empty say nothing.
    for t in r.tests.iter().filter(|t| t.status != Some(0) || !t.passed.is_empty() || !t.failed.is_empty()) {
        let status = match t.status {
            Some(0) => String::new(),
            Some(124) => " (timed out)".into(),
            Some(c) => format!(" (exit {c})"),
            None => " (did not run)".into(),
        };
        writeln!(s, "{:<11} {} passed, {} failed{status}", t.file, t.passed.len(), t.failed.len()).ok();
        for f in &t.failed {
            writeln!(s, "  FAILED {f}").ok();
        }
        if !t.detail.is_empty() && (t.status != Some(0) || !t.failed.is_empty()) {
            // Verifier logs run to thousands of lines: the log file has them.
            const SHOWN: usize = 40;
            for l in t.detail.lines().take(SHOWN) {
                writeln!(s, "  | {l}").ok();
            }
            let n = t.detail.lines().count();
            if n > SHOWN {
                let log = vm_dir().join("out").join(r.name).join(format!("{}.log", t.file));
                writeln!(s, "  | ... {} more lines in {}", n - SHOWN, log.display()).ok();
            }
        }
    }
    if let Some(p) = &r.problem {
        writeln!(s, "problem: {p}").ok();
    }
    writeln!(s, "time: {} s to prepare, {} s boot to power-off", r.prep_time.as_secs(), r.run_time.as_secs()).ok();
    eprint!("{s}");
}

fn print_summary(results: &[KernelResult]) {
    if results.is_empty() {
        step("no kernel was tested");
        return;
    }
    eprintln!("\n{:<7} {:<24} {:<9} {:<9} {:<20} result", "kernel", "release", "tcx", "fentry", "tests");
    for r in results {
        let kind = |n: &str| {
            r.doctor
                .as_ref()
                .and_then(|d| d["kinds"].as_array()?.iter().find(|k| k["kind"] == n).map(|k| k["available"] == true))
                .map(|a| if a { "yes" } else { "no" })
                .unwrap_or("?")
        };
        let passed: usize = r.tests.iter().map(|t| t.passed.len()).sum();
        let failed: usize = r.tests.iter().map(|t| t.failed.len()).sum();
        eprintln!(
            "{:<7} {:<24} {:<9} {:<9} {:<20} {} ({} s)",
            r.name,
            r.release,
            kind("tcx"),
            kind("fentry"),
            format!("{passed} passed, {failed} failed"),
            if r.ok() { "ok" } else { "FAILED" },
            r.run_time.as_secs()
        );
    }
}
