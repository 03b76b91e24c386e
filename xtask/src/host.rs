//! What every job of `cargo xtask` does on the host: find the workspace,
//! run commands with one sentence naming the step when they fail, know
//! whether it is root, and install missing Debian packages with the host's
//! own apt (its sources, its mirror).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

/// Tools built for the workspace (bpf-linker, cargo-fuzz): `target/tools`.
pub fn tools() -> PathBuf {
    root().join("target/tools")
}

pub fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

/// Runs a command, failing with a sentence that names the step.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// PATH with target/tools/bin first, so aya-build finds bpf-linker.
pub fn tool_path() -> std::ffi::OsString {
    let mut parts = vec![tools().join("bin")];
    if let Some(p) = env::var_os("PATH") {
        parts.extend(env::split_paths(&p));
    }
    env::join_paths(parts).expect("PATH joins")
}

/// `cargo` in the workspace, with the tools on PATH.
pub fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("PATH", tool_path());
    c
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs `bin ARGS` as root (through sudo when not root) and returns its status.
pub fn exec_as_root(bin: &Path, args: &[String]) -> Result<ExitCode> {
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

/// Whether `cmd` (a command name or an absolute path) is there.
fn has_command(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return Path::new(cmd).exists();
    }
    env::var_os("PATH").is_some_and(|p| env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Installs those of `pkgs` (command or file it provides, Debian package)
/// whose command is missing, with the host's apt. `why` names who needs them.
pub fn apt_install(pkgs: &[(&str, &str)], why: &str) -> Result<()> {
    let mut missing: Vec<&str> = pkgs.iter().filter(|(cmd, _)| !has_command(cmd)).map(|(_, pkg)| *pkg).collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("{why} need these Debian packages, and installing them needs root: apt-get install {}", missing.join(" "));
    }
    step(&format!("installing {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run(
        Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("installing the Debian packages {why} need"),
    )
}
