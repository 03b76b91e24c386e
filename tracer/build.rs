//! Builds `tracer-ebpf` for the BPF target with aya-build (nightly + bpf-linker).
//! `cargo xtask build` puts bpf-linker on PATH; `target/tools/bin` is added
//! here too so a plain `cargo build` after a bootstrap works.
//!
//! It also links libpcap (the filter compiler, through the `pcap` crate)
//! statically when the system has `libpcap.a`, so the binary needs no
//! libpcap at run time (see [`static_libpcap`]).

use std::{
    env, fs,
    path::PathBuf,
    process::Command,
};

/// Stands in for libpcap's D-Bus capture module, the one part of Debian's
/// libpcap.a that needs another library (libdbus-1, and through it
/// libsystemd, which Debian ships only as a shared library). The tracer
/// never captures from D-Bus: the module says "not my device" and lists none.
const DBUS_STUB: &str = r#"
#include <stddef.h>
struct pcap;
struct pcap *dbus_create(const char *device, char *ebuf, int *is_ours) {
    (void)device; (void)ebuf; *is_ours = 0; return NULL;
}
int dbus_findalldevs(void *devlistp, char *err_str) { (void)devlistp; (void)err_str; return 0; }
"#;

/// Puts a copy of the system's libpcap.a, with the D-Bus module replaced by
/// [`DBUS_STUB`], in a directory searched before the system's: the `pcap`
/// crate's `-lpcap` then finds the archive first. Without libpcap.a (or with
/// TRACER_LIBPCAP=dynamic) libpcap is linked as a shared library.
fn static_libpcap() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=TRACER_LIBPCAP");
    if env::var("TRACER_LIBPCAP").as_deref() == Ok("dynamic") {
        return Ok(());
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc).arg("-print-file-name=libpcap.a").output()?;
    let archive = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !archive.is_absolute() || !archive.exists() {
        println!("cargo:warning=no libpcap.a found: linking libpcap dynamically (install libpcap-dev for a static link)");
        return Ok(());
    }
    println!("cargo:rerun-if-changed={}", archive.display());
    let out = PathBuf::from(env::var("OUT_DIR")?).join("libpcap-static");
    fs::create_dir_all(&out)?;
    let stub_c = out.join("dbus_stub.c");
    let stub_o = out.join("dbus_stub.o");
    fs::write(&stub_c, DBUS_STUB)?;
    let lib = out.join("libpcap.a");
    fs::copy(&archive, &lib)?;
    let run = |cmd: &mut Command, what: &str| -> anyhow::Result<()> {
        let st = cmd.status()?;
        anyhow::ensure!(st.success(), "{what} failed ({st})");
        Ok(())
    };
    run(Command::new(&cc).args(["-c", "-O2", "-fPIC", "-o"]).arg(&stub_o).arg(&stub_c), "compiling the libpcap D-Bus stub")?;
    let ar = env::var("AR").unwrap_or_else(|_| "ar".into());
    // `ar d` of a member the archive lacks fails: only when it is there.
    let members = Command::new(&ar).arg("t").arg(&lib).output()?;
    if String::from_utf8_lossy(&members.stdout).lines().any(|m| m == "pcap-dbus.o") {
        run(Command::new(&ar).arg("d").arg(&lib).arg("pcap-dbus.o"), "removing libpcap's D-Bus module")?;
    }
    run(Command::new(&ar).arg("rs").arg(&lib).arg(&stub_o), "adding the D-Bus stub to libpcap.a")?;
    println!("cargo:rustc-link-search=native={}", out.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    static_libpcap()?;
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
