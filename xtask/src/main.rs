//! `cargo xtask`: the one entry point for building, running, testing,
//! benchmarking, fuzzing, booting other kernels and packaging `tracer`.
//! This file only reads the command line and hands each command to the
//! module that owns its job; everything a fresh machine needs is installed
//! by those modules on demand (see `bootstrap`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bootstrap;
mod fuzz;
mod host;
mod image;
mod test;
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
    /// Container image `tracer:VERSION` from this repository, loaded into the local Docker engine.
    Image,
    /// Benchmarks that print their figures.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = |()| ExitCode::SUCCESS;
    let r = match cli.cmd {
        Cmd::Bootstrap => bootstrap::bootstrap().map(ok),
        Cmd::Build => bootstrap::build().map(|p| {
            host::step(&format!("built {}", p.display()));
            ExitCode::SUCCESS
        }),
        Cmd::Run { args } => bootstrap::build().and_then(|bin| host::exec_as_root(&bin, &args)),
        Cmd::Test { filter, integration_only } => test::test(filter, integration_only).map(ok),
        Cmd::Image => image::image().map(ok),
        Cmd::Bench { args } => bench::bench(&args).map(ok),
        Cmd::Vmtest { kernel, filter } => vm::vmtest(&kernel, filter).map(ok),
        Cmd::Fuzz { target, seconds } => fuzz::fuzz(target, seconds).map(ok),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
