//! `cargo xtask image`: a container image of the tracer, built from this
//! repository alone (nothing is pulled from any registry) and loaded into
//! the local Docker engine as `tracer:<workspace version>`.
//!
//! The release binary links glibc dynamically (libpcap goes in statically),
//! and no other Rust target (musl) can be installed here, so the image is a
//! root filesystem made from scratch: the binary (stripped), exactly the
//! shared libraries and the loader that `ldd` lists for it, at the same
//! paths, and `/etc/services` and `/etc/protocols` from the host when it has
//! them (libpcap's filter compiler looks names up there). `docker import`
//! turns its tarball into an image whose entry point is the tracer.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    bootstrap::build,
    host::{output, root, run, step},
};

/// The image's name and tag: `tracer:<workspace version>`.
pub fn tag() -> String {
    format!("tracer:{}", env!("CARGO_PKG_VERSION"))
}

/// Where the binary is in the image (its entry point).
pub const ENTRYPOINT: &str = "/usr/bin/tracer";

/// The shared objects in `ldd` output, by absolute path: resolved
/// libraries and the loader. The vDSO lives in the kernel and is left out;
/// a library `ldd` cannot find is an error.
pub fn ldd_paths(ldd: &str) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("the tracer needs a shared library that is missing here: {line}");
        }
        if line.starts_with("statically linked") || line.contains("not a dynamic executable") {
            continue;
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)".
        let path = match line.split_once(" => ") {
            Some((_, right)) => right.split(" (").next().unwrap_or(right),
            None => line.split(" (").next().unwrap_or(line),
        };
        if path.starts_with('/') {
            v.push(PathBuf::from(path));
        }
    }
    Ok(v)
}

/// Copies `src` to `rootfs` + its absolute path `at`, following symlinks
/// (the image has the file under the name the loader asks for).
fn place(rootfs: &Path, src: &Path, at: &Path) -> Result<()> {
    let dst = rootfs.join(at.strip_prefix("/").unwrap_or(at));
    if let Some(d) = dst.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::copy(src, &dst).with_context(|| format!("copying {} into the image", src.display()))?;
    Ok(())
}

/// Makes the image's root filesystem for `bin` in `rootfs`.
pub fn make_rootfs(bin: &Path, rootfs: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(rootfs);
    fs::create_dir_all(rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    let ldd = output(Command::new("ldd").arg(bin), "listing the tracer's shared libraries (ldd)")?;
    for lib in ldd_paths(&ldd)? {
        place(rootfs, &lib, &lib)?;
    }
    place(rootfs, bin, Path::new(ENTRYPOINT))?;
    let inside = rootfs.join(ENTRYPOINT.trim_start_matches('/'));
    // Symbols are of no use in the image; a missing strip leaves them in.
    if Command::new("strip").arg("--strip-unneeded").arg(&inside).status().is_ok_and(|s| s.success()) {
        step("stripped the binary's symbols in the image");
    }
    for f in ["/etc/services", "/etc/protocols"] {
        if Path::new(f).is_file() {
            place(rootfs, Path::new(f), Path::new(f))?;
        }
    }
    // Mount points the documented `docker run` binds onto, and /tmp.
    for d in ["proc", "sys", "dev", "tmp", "run", "var/lib", "etc"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    std::os::unix::fs::symlink("../run", rootfs.join("var/run")).context("linking /var/run to /run")?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The Docker client: Debian's when installed (it speaks its daemon's API
/// version without negotiating), else the first on PATH.
fn docker() -> Command {
    Command::new(if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" })
}

pub fn image() -> Result<()> {
    let bin = build()?;
    let dir = root().join("target/image");
    let rootfs = dir.join("rootfs");
    step("making the image's root filesystem (the binary and what ldd lists)");
    make_rootfs(&bin, &rootfs)?;
    let tar = dir.join(format!("tracer-{}.tar", env!("CARGO_PKG_VERSION")));
    run(
        Command::new("tar").arg("-C").arg(&rootfs).args(["--numeric-owner", "--owner=0", "--group=0", "-cf"]).arg(&tar).arg("."),
        "packing the image's root filesystem",
    )?;
    let engine = docker().arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !engine.is_ok_and(|s| s.success()) {
        bail!(
            "no Docker engine answers here (`docker info` fails), so the image was not loaded: start dockerd and run `cargo xtask image` again (its root filesystem is in {})",
            tar.display()
        );
    }
    let tag = tag();
    step(&format!("loading {tag} into the Docker engine"));
    let id = output(
        docker()
            .arg("import")
            .args(["--change", &format!("ENTRYPOINT [\"{ENTRYPOINT}\"]")])
            .args(["--change", &format!("LABEL org.opencontainers.image.version={}", env!("CARGO_PKG_VERSION"))])
            .args(["--change", "LABEL org.opencontainers.image.title=tracer"])
            .args(["--message", "cargo xtask image"])
            .arg(&tar)
            .arg(&tag),
        "docker import",
    )?;
    let size = output(docker().args(["image", "inspect", "-f", "{{.Size}}", &tag]), "docker image inspect")?;
    let mib = size.trim().parse::<f64>().map(|b| format!("{:.1} MiB", b / 1048576.0)).unwrap_or_else(|_| size.trim().into());
    step(&format!("built {tag} ({}, {mib}); run it as the README's deployment section shows", id.trim()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_loader_not_the_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f01)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n";
        let v = ldd_paths(out).expect("paths");
        assert_eq!(
            v,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(ldd_paths("\tstatically linked\n").expect("static").is_empty());
        let e = ldd_paths("\tlibpcap.so.0.8 => not found\n").expect_err("missing library");
        assert!(e.to_string().contains("libpcap.so.0.8"), "{e}");
    }

    /// The root filesystem of the real release binary (`cargo xtask test`
    /// builds it before the unit tests): every object ldd lists is there, at
    /// its path, and the loader runs the copied binary with only the copied
    /// libraries.
    #[test]
    fn rootfs_has_what_the_binary_needs_and_runs_with_it_alone() {
        let bin = root().join("target/release/tracer");
        assert!(bin.exists(), "no release build at {}: run `cargo xtask build` first", bin.display());
        let rootfs = std::env::temp_dir().join(format!("xtask-rootfs-{}", std::process::id()));
        make_rootfs(&bin, &rootfs).expect("rootfs");
        let ldd = output(Command::new("ldd").arg(&bin), "ldd").expect("ldd");
        let libs = ldd_paths(&ldd).expect("paths");
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{libs:?}");
        for l in &libs {
            assert!(rootfs.join(l.strip_prefix("/").expect("absolute")).is_file(), "{} missing", l.display());
        }
        // The image's loader, with the image's libraries only.
        let loader = libs.iter().find(|l| l.to_string_lossy().contains("ld-linux")).expect("loader");
        let lib_dirs: Vec<String> = libs.iter().filter_map(|l| l.parent()).map(|d| rootfs.join(d.strip_prefix("/").expect("abs")).display().to_string()).collect();
        let out = Command::new(rootfs.join(loader.strip_prefix("/").expect("abs")))
            .arg("--library-path")
            .arg(lib_dirs.join(":"))
            .arg(rootfs.join(ENTRYPOINT.trim_start_matches('/')))
            .arg("--version")
            .output()
            .expect("run the image's binary");
        fs::remove_dir_all(&rootfs).expect("cleanup");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("tracer"), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
