//! Builds `tracer-ebpf` for the BPF target with aya-build (nightly + bpf-linker).
//! `cargo xtask build` puts bpf-linker on PATH; `target/tools/bin` is added
//! here too so a plain `cargo build` after a bootstrap works.

use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().expect("tracer/ has a parent").to_path_buf();
    let tools = root.join("target/tools/bin");
    if tools.exists() {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut parts = vec![tools];
        parts.extend(env::split_paths(&path));
        // SAFETY: build scripts are single-threaded here, before spawning cargo.
        unsafe { env::set_var("PATH", env::join_paths(parts)?) };
    }
    // aya-build turns every line the inner cargo prints into a warning;
    // keep it to errors and the compiler's own diagnostics.
    // SAFETY: as above.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    // The fuzz crate (fuzz/, `cargo xtask fuzz`) needs the decoders, not
    // the kernel programs: an empty object stands in for them (loading it
    // fails with an error, never silently).
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        std::fs::write(PathBuf::from(env::var("OUT_DIR")?).join("tracer"), [])?;
        return Ok(());
    }
    let ebpf_dir = root.join("tracer-ebpf");
    let ebpf_dir = ebpf_dir.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package { name: "tracer-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
