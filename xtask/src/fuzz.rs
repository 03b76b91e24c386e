//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the cargo-fuzz targets
//! of `fuzz/` (libFuzzer, nightly, AddressSanitizer, debug assertions on)
//! one after the other, each for N seconds, and prints per target how many
//! inputs ran and whether anything crashed. cargo-fuzz is installed into
//! `target/tools` the first time. The tracer is built for it without its
//! eBPF programs (`AYA_BUILD_SKIP=1`): the targets only decode bytes.
//!
//! Each target reads its committed inputs (`fuzz/seeds/T`,
//! `fuzz/regressions/T`) and grows a working corpus in `fuzz/corpus/T`
//! (not committed); a crash leaves its input in `fuzz/artifacts/T`.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    bootstrap::cargo_fuzz,
    host::{root, run, step, tool_path},
};

/// The targets, as `[[bin]]` names in fuzz/Cargo.toml.
fn targets() -> Result<Vec<String>> {
    let manifest = fs::read_to_string(root().join("fuzz/Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
            out.push(v.trim_matches('"').to_string());
        }
    }
    Ok(out)
}

/// What libFuzzer said at the end of one run.
#[derive(Debug, Default)]
struct Figures {
    runs: Option<u64>,
    seconds: Option<u64>,
    crash: Option<String>,
}

fn figures(log: &str) -> Figures {
    let mut f = Figures::default();
    for line in log.lines() {
        // "Done 123456 runs in 61 second(s)"
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut w = rest.split_whitespace();
            f.runs = w.next().and_then(|n| n.parse().ok());
            f.seconds = w.nth(2).and_then(|n| n.parse().ok());
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units: ") {
            f.runs = n.trim().parse().ok().or(f.runs);
        }
        // "Test unit written to fuzz/artifacts/T/crash-..."
        if let Some(p) = line.split("Test unit written to ").nth(1) {
            f.crash = Some(p.trim().to_string());
        }
    }
    f
}

pub fn fuzz(only: Option<String>, seconds: u64) -> Result<()> {
    let all = targets()?;
    let chosen: Vec<String> = match only {
        Some(t) if all.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t:?}: the targets are {}", all.join(", ")),
        None => all,
    };
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    cargo_fuzz()?;
    step("building the fuzz targets (nightly, sanitizers, debug assertions)");
    // rustup's `cargo` (not $CARGO, the pinned stable's own binary) takes `+nightly`.
    let fuzz = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.current_dir(root()).env("PATH", tool_path()).env_remove("RUSTUP_TOOLCHAIN").env("AYA_BUILD_SKIP", "1");
        c.args(["+nightly", "fuzz"]).args(args);
        c
    };
    run(&mut fuzz(&["build", "-a", "--target-dir", "target/fuzz"]), "building the fuzz targets")?;
    let mut rows = Vec::new();
    for t in &chosen {
        let dir = |d: &str| root().join("fuzz").join(d).join(t);
        fs::create_dir_all(dir("corpus")).context("creating the working corpus")?;
        let mut corpora = vec![dir("corpus"), dir("seeds")];
        if dir("regressions").is_dir() {
            corpora.push(dir("regressions"));
        }
        step(&format!("fuzzing {t} for {seconds} s"));
        let mut c = fuzz(&["run", "-a", "--target-dir", "target/fuzz", t]);
        c.args(&corpora).args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
            "-max_len=20480",
            "-timeout=10",
            "-rss_limit_mb=2048",
        ]);
        let out = c.output().with_context(|| format!("starting cargo fuzz run {t}"))?;
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log_path = root().join("target/fuzz").join(format!("{t}.log"));
        fs::write(&log_path, &log).with_context(|| format!("writing {}", log_path.display()))?;
        let f = figures(&log);
        if !out.status.success() && f.crash.is_none() {
            bail!("cargo fuzz run {t} failed ({}); its output is in {}", out.status, log_path.display());
        }
        rows.push((t.clone(), f));
    }
    println!("{:<14} {:>8} {:>12}  crashes", "target", "seconds", "inputs");
    for (t, f) in &rows {
        let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        let crash = f.crash.as_deref().map(|p| format!("1: {}", short(p))).unwrap_or_else(|| "0".into());
        println!("{t:<14} {:>8} {:>12}  {crash}", n(f.seconds), n(f.runs));
    }
    let crashed: Vec<&str> = rows.iter().filter(|(_, f)| f.crash.is_some()).map(|(t, _)| t.as_str()).collect();
    if !crashed.is_empty() {
        bail!(
            "{} crashed: fix the decoder, then move the input into fuzz/regressions/<target>/ so the unit tests replay it",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn short(p: &str) -> String {
    let p = Path::new(p);
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_lines() {
        let log = "#2 INITED\nDone 123456 runs in 61 second(s)\nstat::number_of_executed_units: 123457\n";
        let f = figures(log);
        assert_eq!((f.runs, f.seconds, f.crash), (Some(123457), Some(61), None));
        let f = figures("==1== ERROR\nTest unit written to ./fuzz/artifacts/packet/crash-abc\n");
        assert_eq!(f.crash.as_deref(), Some("./fuzz/artifacts/packet/crash-abc"));
    }

    #[test]
    fn lists_the_targets_of_the_fuzz_crate() {
        let t = targets().expect("fuzz/Cargo.toml");
        assert!(t.contains(&"netlink_route".to_string()) && t.len() >= 6, "{t:?}");
        assert!(!t.contains(&"tracer-fuzz".to_string()), "the package name is no target");
    }
}
