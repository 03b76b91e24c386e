//! The guest's initramfs: a static busybox, the modules the kernel needs to
//! mount the host's root over 9p (with their dependencies, from
//! `modules.dep`, decompressed), and an init that mounts the host's root
//! read-only, the writable output share, the kernel's file systems, loads
//! the modules the tests use, runs the guest script in a chroot of the
//! host's root and powers off.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::host::{output, step};

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

/// `modules.dep`: module name -> (path, dependency paths).
fn modules_dep(modules: &Path) -> Result<HashMap<String, (String, Vec<String>)>> {
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
    let by_path: HashMap<&str, &Vec<String>> = dep.values().map(|(p, d)| (p.as_str(), d)).collect();
    fn visit<'a>(p: &'a str, by_path: &HashMap<&str, &'a Vec<String>>, out: &mut Vec<String>) {
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
/// command line: `vmtest.out` (the writable share's path on the host),
/// `vmtest.modules` (the unpacked modules, which the guest sees over 9p) and
/// `vmtest.root` (the workspace, which must stay visible at its path when
/// it is under one of the directories the guest covers with a tmpfs).
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
ws=$(arg root)
h=/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE},cache=loose,ro hostroot $h || {{ echo "vmtest: cannot mount the host's root"; reboot -f; }}
# The workspace, kept to be put back where the host has it if a tmpfs below
# covers it (a clone in /tmp).
mkdir -p /keep
mount --bind $h$ws /keep
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
[ -e $h$ws/Cargo.toml ] || {{ mkdir -p $h$ws && mount --bind /keep $h$ws; }}
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} vmout $h$out || {{ echo "vmtest: cannot mount $out"; reboot -f; }}
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
pub fn build(kernel: &str, dir: &Path, modules: &Path) -> Result<PathBuf> {
    let paths = boot_module_paths(modules)?;
    let init = init_script();
    let stamp_text = format!("{init}\n{}\n", paths.join("\n"));
    let cpio = dir.join("initramfs.cpio");
    let stamp = dir.join("initramfs.stamp");
    if cpio.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return Ok(cpio);
    }
    step(&format!("Linux {kernel}: building the initramfs"));
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

