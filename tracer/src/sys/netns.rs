//! Network namespace files: a namespace's inode, entering one for the
//! length of a call, and the index of an interface inside the one the
//! thread is in.

use std::{fs, io, os::fd::AsRawFd, path::Path};

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

/// The index of `name` in the thread's namespace.
pub fn ifindex_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: if_nametoindex reads a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
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
}
