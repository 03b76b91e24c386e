//! `cargo xtask bench`: the benchmark binaries of `tests/src/bin`, run one
//! after the other as root against the release build; each prints its
//! figures.

use anyhow::{Result, bail};

use crate::{
    bootstrap::build,
    host::{apt_install, cargo, is_root, run, step},
    test::TEST_PACKAGES,
};

/// Benchmark binaries of tests/src/bin, run in this order.
const BENCHES: &[&str] = &["bench-throughput", "bench-scale", "bench-netlink", "bench-flood", "bench-process", "bench-serve", "bench-drops"];

pub fn bench(args: &[String]) -> Result<()> {
    let bin = build()?;
    if !is_root() {
        bail!("the benchmarks need root: run `sudo -E cargo xtask bench`");
    }
    apt_install(TEST_PACKAGES, "the benchmarks")?;
    for b in BENCHES {
        step(&format!("benchmark {b}"));
        let mut c = cargo();
        c.args(["run", "--release", "-p", "tracer-tests", "--bin", b, "--"]).args(args).env("TRACER_BIN", &bin);
        run(&mut c, &format!("benchmark {b}"))?;
    }
    Ok(())
}
