//! Small facts about the running system: kernel release, capabilities,
//! lockdown, tracefs, and entering network namespaces; and the primitives
//! every layer above uses: the clock ([`clock`]), panic containment
//! ([`contain`]), bounded tables ([`bounded`]), the stop request
//! ([`shutdown`]) and text made safe for a terminal ([`text`]).

pub mod bounded;
pub mod clock;
pub mod contain;
pub mod shutdown;
pub mod text;

use std::{fs, io, os::fd::AsRawFd, path::Path};

pub const TRACEFS: &str = "/sys/kernel/tracing";

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let rel = kernel_release();
    let mut it = rel.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// A file of securityfs, which is mounted when missing, like tracefs.
fn securityfs_file(name: &str) -> Option<String> {
    let path = Path::new("/sys/kernel/security").join(name);
    if !path.exists() {
        let fs = c"securityfs";
        let target = c"/sys/kernel/security";
        // SAFETY: valid C strings; failure only means the file stays unknown.
        unsafe { libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    }
    fs::read_to_string(path).ok()
}

/// The bracketed mode of /sys/kernel/security/lockdown, if it can be read.
pub fn lockdown() -> Option<String> {
    let s = securityfs_file("lockdown")?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

/// The active LSMs, in order, if securityfs can be read.
pub fn active_lsms() -> Option<Vec<String>> {
    Some(securityfs_file("lsm")?.trim().split(',').map(str::to_string).collect())
}

/// The capabilities the tracer cares about, by number.
pub const CAPS: &[(u32, &str)] =
    &[(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN"), (38, "CAP_PERFMON"), (39, "CAP_BPF")];

/// The effective capability set of this process.
pub fn effective_caps() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Where tracefs is, mounting it when missing. Returns whether it was mounted now.
pub fn ensure_tracefs() -> io::Result<bool> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(false);
    }
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid C strings; mount(2) has no other preconditions.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Inode of a namespace file such as `/proc/self/ns/net`.
pub fn ns_inode(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)?.ino())
}

/// Runs `f` with the current thread inside the network namespace of `ns_file`,
/// then moves the thread back, even when `f` fails or panics. No `.await`
/// may happen in `f`: the thread must not be handed to another task meanwhile.
pub fn in_netns<T>(ns_file: &Path, f: impl FnOnce() -> T) -> io::Result<T> {
    let home = fs::File::open("/proc/thread-self/ns/net")?;
    let target = fs::File::open(ns_file)?;
    // SAFETY: setns on fds we own.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // From here on the thread goes home when this guard drops: after `f`
    // returns, and while a panic in `f` unwinds (a worker thread left in a
    // foreign namespace would run every later task there).
    let _home = GoHome(home);
    Ok(f())
}

/// Moves the current thread back into the namespace of its fd when dropped.
struct GoHome(fs::File);

impl Drop for GoHome {
    fn drop(&mut self) {
        // SAFETY: setns on a fd we own.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // The thread is stranded in a foreign namespace; nothing sane can follow.
            let e = io::Error::last_os_error();
            eprintln!("tracer: cannot return to the original network namespace: {e}");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace inode the current thread is in.
    fn here() -> u64 {
        ns_inode(Path::new("/proc/thread-self/ns/net")).expect("own namespace")
    }

    #[test]
    fn in_netns_comes_back_after_a_panic() {
        let home = here();
        let own = Path::new("/proc/thread-self/ns/net");
        assert_eq!(in_netns(own, here).expect("enter"), home);
        assert!(in_netns(Path::new("/nonexistent/ns"), || ()).is_err());
        // Another namespace: a thread that unshared its own, kept alive
        // until the test is done with it (needs CAP_SYS_ADMIN).
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread's namespace.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let _ = tx.send(ok.then(|| (format!("/proc/self/task/{tid}/ns/net"), here())));
            let _ = done_rx.recv();
        });
        let Some((path, other)) = rx.recv().expect("holder") else {
            eprintln!("skipped: cannot create a network namespace here (not root?)");
            return;
        };
        assert_ne!(other, home);
        let r = std::thread::spawn(move || {
            let caught = std::panic::catch_unwind(|| {
                in_netns(Path::new(&path), || {
                    assert_eq!(here(), other, "inside the other namespace");
                    panic!("inside")
                })
            });
            (caught.err().and_then(|e| e.downcast_ref::<&str>().map(|s| s.to_string())), here())
        })
        .join()
        .expect("thread");
        let _ = done_tx.send(());
        let _ = holder.join();
        assert_eq!(r, (Some("inside".to_string()), home), "the panic came out and the thread went home");
    }

    #[test]
    fn version_parses() {
        let (major, _) = kernel_version();
        assert!(major >= 4);
    }
}
