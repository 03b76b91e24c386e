//! The toolchain pieces a fresh machine lacks, installed on demand:
//! `rust-src` for the nightly that builds the eBPF crate, `bpf-linker` built
//! against that nightly's own libLLVM (kept in `target/tools`, rebuilt only
//! when the nightly changes), Debian's `libpcap-dev` (the filter compiler,
//! linked statically), and `cargo-fuzz` for the fuzzing job. Also the
//! release build that every other job starts from.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::host::{apt_install, cargo, output, root, run, step, tools};

/// Debian packages the build itself needs, by a file each provides:
/// libpcap's headers and archive (the filter compiler, linked statically).
const BUILD_PACKAGES: &[(&str, &str)] = &[("/usr/include/pcap/pcap.h", "libpcap-dev")];

pub fn bootstrap() -> Result<()> {
    apt_install(BUILD_PACKAGES, "building tracer")?;
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

/// Release build; the binary lands at target/release/tracer.
pub fn build() -> Result<PathBuf> {
    bootstrap()?;
    step("building tracer (release)");
    run(cargo().args(["build", "--release", "-p", "tracer"]), "building tracer")?;
    Ok(root().join("target/release/tracer"))
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

/// cargo-fuzz in target/tools/bin, installed from crates.io when missing.
pub fn cargo_fuzz() -> Result<()> {
    if tools().join("bin/cargo-fuzz").exists() {
        return Ok(());
    }
    step("installing cargo-fuzz into target/tools (once)");
    run(
        Command::new("cargo").args(["install", "cargo-fuzz", "--version", "~0.13", "--locked", "--root"]).arg(tools()),
        "installing cargo-fuzz",
    )
}
