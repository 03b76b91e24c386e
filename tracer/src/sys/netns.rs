//! Network namespace files: a namespace's inode and cookie, whether a file
//! is one, entering one for the length of a call, and the index of an
//! interface inside the one the thread is in.

use std::{
    fs, io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

/// `SO_NETNS_COOKIE` (Linux 5.14); not in every libc crate version.
const SO_NETNS_COOKIE: libc::c_int = 71;
/// `statfs` type of the namespace filesystem.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

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

/// Whether `p` is a namespace file (a bind mount of one, or
/// `/proc/PID/ns/*`): an empty file left by a failed `ip netns add` is not.
pub fn is_nsfs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs into a zeroed struct with a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == NSFS_MAGIC
}

/// Checks that `fd` is a network namespace file and returns its inode.
pub fn netns_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: fstatfs/fstat/ioctl on a borrowed, open fd into zeroed structs.
    unsafe {
        let mut sfs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd.as_raw_fd(), &mut sfs) != 0 {
            return Err(io::Error::last_os_error());
        }
        if sfs.f_type as i64 != NSFS_MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a namespace file"));
        }
        let t = libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _);
        if t != libc::CLONE_NEWNET {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a network namespace"));
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_ino)
    }
}

/// The namespace file of the calling thread.
pub fn own_netns() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

/// A namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): the calling thread
/// enters it just long enough to make a socket there. `None` when the
/// kernel has no cookies or the namespace cannot be entered.
pub fn cookie_of(ns: BorrowedFd<'_>) -> Option<u64> {
    let home = own_netns().ok()?;
    // SAFETY: setns on fds we hold open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return None;
    }
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    // SAFETY: as above; returning home cannot be skipped.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // The thread is stranded in a foreign namespace; nothing sane can follow.
        eprintln!("tracer: cannot return to the original network namespace: {}", io::Error::last_os_error());
        std::process::abort();
    }
    if s < 0 {
        return None;
    }
    // SAFETY: `s` is a new fd nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    socket_cookie(s.as_fd())
}

/// The cookie of the namespace a socket belongs to.
pub fn socket_cookie(s: BorrowedFd<'_>) -> Option<u64> {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt into a u64 of the advertised length.
    let rc = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut v).cast(), &mut len) };
    (rc == 0 && len as usize == size_of::<u64>()).then_some(v)
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
    fn own_namespace_is_a_netns_and_other_files_are_not() {
        let me = own_netns().expect("own netns");
        let ino = netns_inode(me.as_fd()).expect("inode");
        let want = ns_inode(std::path::Path::new("/proc/self/ns/net")).expect("inode");
        assert_eq!(ino, want);
        let f = std::fs::File::open("/proc/self/status").expect("file");
        assert!(netns_inode(f.as_fd()).is_err());
        let uts = std::fs::File::open("/proc/self/ns/uts").expect("uts");
        assert!(netns_inode(uts.as_fd()).is_err());
    }
}
