//! `cargo xtask`: the toolchain bootstrap, build, run, test and bench.
//!
//! Everything a fresh machine needs is installed from here: rust-src for the
//! nightly that builds the eBPF crate, bpf-linker built against that
//! nightly's own libLLVM (kept in `target/tools`, rebuilt only when the
//! nightly changes), the Debian packages the build needs (libpcap-dev) and
//! those the tests use.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod fuzz;
mod vm;

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run and test tracer")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain pieces (rust-src, bpf-linker, libpcap-dev) if missing.
    Bootstrap,
    /// Release build; the binary lands at target/release/tracer.
    Build,
    /// Build, then run `tracer ARGS` as root (through sudo when not root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Unit tests, then the root integration tests one at a time.
    Test {
        /// Only integration tests whose name contains this.
        filter: Option<String>,
        /// Skip the unit tests.
        #[arg(long)]
        integration_only: bool,
    },
    /// The integration tests on other kernels (Debian's), booted under QEMU.
    Vmtest {
        /// 5.10, 6.1, 6.12, 6.18 or all.
        #[arg(long, default_value = "all")]
        kernel: String,
        /// A test file (foundation, netlink, packets...) or a test name filter.
        filter: Option<String>,
    },
    /// Fuzz the decoders (cargo-fuzz on nightly, installed when missing).
    Fuzz {
        /// One target (see fuzz/Cargo.toml); all of them when absent.
        target: Option<String>,
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Benchmarks that print their figures.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

fn tools() -> PathBuf {
    root().join("target/tools")
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

/// Runs a command, failing with a sentence that names the step.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// PATH with target/tools/bin first, so aya-build finds bpf-linker.
fn tool_path() -> std::ffi::OsString {
    let mut parts = vec![tools().join("bin")];
    if let Some(p) = env::var_os("PATH") {
        parts.extend(env::split_paths(&p));
    }
    env::join_paths(parts).expect("PATH joins")
}

/// Debian packages the build itself needs, by a file each provides:
/// libpcap's headers and archive (the filter compiler, linked statically).
const BUILD_PACKAGES: &[(&str, &str)] = &[("/usr/include/pcap/pcap.h", "libpcap-dev")];

fn build_packages() -> Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES.iter().filter(|(file, _)| !Path::new(file).exists()).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("building tracer needs the Debian packages {0}: install them as root (apt-get install {0})", missing.join(" "));
    }
    step(&format!("installing {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run(
        Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
        "installing the build's Debian packages",
    )
}

fn bootstrap() -> Result<()> {
    build_packages()?;
    let installed = output(
        Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]),
        "listing the nightly's components",
    )
    .context("the nightly toolchain is needed to build the eBPF programs")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        step("adding rust-src to the nightly toolchain");
        run(
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
            "adding rust-src to the nightly toolchain",
        )?;
    }
    bpf_linker()
}

/// Builds bpf-linker against the LLVM inside the nightly toolchain, unless
/// the one in target/tools was built for this very nightly.
fn bpf_linker() -> Result<()> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]), "asking the nightly rustc its version")?;
    let commit = vv.lines().find_map(|l| l.strip_prefix("commit-hash: ")).unwrap_or("unknown").to_string();
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("the nightly rustc does not say its LLVM version")?;
    let major = llvm.split('.').next().unwrap_or(llvm).to_string();
    let stamp_text = format!("bpf-linker 0.13 nightly={commit} llvm={major}\n");
    let bin = tools().join("bin/bpf-linker");
    let stamp = tools().join("bpf-linker.stamp");
    if bin.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return Ok(());
    }
    step(&format!("building bpf-linker against the nightly's LLVM {major} (about 90 s, once)"));
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]), "finding the nightly sysroot")?;
    let libdir = Path::new(sysroot.trim()).join("lib");
    let lib = fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libLLVM.so.")))
        .with_context(|| format!("no libLLVM.so.* in {}: the nightly ships without its LLVM", libdir.display()))?;
    let prefix = tools().join("llvm");
    let plib = prefix.join("lib");
    fs::create_dir_all(&plib).context("creating target/tools/llvm/lib")?;
    for name in ["libLLVM.so".into(), lib.file_name().expect("file name").to_owned()] {
        let link = plib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    run(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", "~0.13", "--force", "--no-default-features"])
            .args(["--features", &format!("llvm-{major}")])
            .arg("--root")
            .arg(tools())
            .env("LLVM_PREFIX", &prefix)
            .current_dir(tools()),
        "building bpf-linker",
    )?;
    fs::write(&stamp, stamp_text).context("writing the bpf-linker stamp")?;
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("PATH", tool_path());
    c
}

fn build() -> Result<PathBuf> {
    bootstrap()?;
    step("building tracer (release)");
    run(cargo().args(["build", "--release", "-p", "tracer"]), "building tracer")?;
    Ok(root().join("target/release/tracer"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn exec_as_root(bin: &Path, args: &[String]) -> Result<ExitCode> {
    let mut cmd = if is_root() {
        Command::new(bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin);
        c
    };
    let status = cmd.args(args).status().with_context(|| format!("starting {}", bin.display()))?;
    Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// Debian packages the integration tests use, by the command they provide.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("nft", "nftables"),
    ("dockerd", "docker.io"),
    ("busybox", "busybox-static"),
    // Packet tests: ICMP traffic, and the real readers of the pcapng files.
    ("ping", "iputils-ping"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
    // Helpers run as nobody, who cannot use root's own Python (pyenv).
    ("/usr/bin/python3", "python3"),
];

fn apt_install(pkgs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(cmd, _)| Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().map(|o| !o.status.success()).unwrap_or(true))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("the tests need these Debian packages, and installing them needs root: {}", missing.join(" "));
    }
    step(&format!("installing {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run(
        Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
        "installing the tests' Debian packages",
    )
}

fn test(filter: Option<String>, integration_only: bool) -> Result<()> {
    let bin = build()?;
    if !integration_only {
        step("unit tests");
        run(cargo().args(["test", "--workspace", "--exclude", "tracer-ebpf", "--lib", "--bins"]), "the unit tests")?;
    }
    if !is_root() {
        bail!("the integration tests need root (namespaces, eBPF): run `sudo -E cargo xtask test`");
    }
    apt_install(TEST_PACKAGES)?;
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
        std::thread::sleep(std::time::Duration::from_millis(500));
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Bootstrap => bootstrap().map(|_| ExitCode::SUCCESS),
        Cmd::Build => build().map(|p| {
            step(&format!("built {}", p.display()));
            ExitCode::SUCCESS
        }),
        Cmd::Run { args } => build().and_then(|bin| exec_as_root(&bin, &args)),
        Cmd::Test { filter, integration_only } => test(filter, integration_only).map(|_| ExitCode::SUCCESS),
        Cmd::Bench { args } => bench(&args).map(|_| ExitCode::SUCCESS),
        Cmd::Vmtest { kernel, filter } => vm::vmtest(&kernel, filter).map(|_| ExitCode::SUCCESS),
        Cmd::Fuzz { target, seconds } => fuzz::fuzz(target, seconds).map(|_| ExitCode::SUCCESS),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Benchmark binaries of tests/src/bin, run in this order.
const BENCHES: &[&str] = &["bench-netlink", "bench-packets", "bench-top", "bench-flood", "bench-process"];

fn bench(args: &[String]) -> Result<()> {
    let bin = build()?;
    if !is_root() {
        bail!("the benchmarks need root: run `sudo -E cargo xtask bench`");
    }
    for b in BENCHES {
        step(&format!("benchmark {b}"));
        let mut c = cargo();
        c.args(["run", "--release", "-p", "tracer-tests", "--bin", b, "--"]).args(args).env("TRACER_BIN", &bin);
        run(&mut c, &format!("benchmark {b}"))?;
    }
    Ok(())
}
