//! TCX links made and closed many at a time.
//!
//! Every TCX attach and detach waits for an RCU grace period in the kernel
//! (`tcx_entry_sync`, the old program array must have no reader left):
//! 10-40 ms each on a busy machine, whatever else the call does. One after
//! the other, the 802 links of 200 containers (401 interfaces, two
//! directions) took 13-15 s to attach and as long to close. Grace periods
//! are shared by everyone waiting at the same time, so the links are made
//! (and closed) from a pool of threads, each inside the namespace of the
//! interfaces it works on.
//!
//! A link is made with `BPF_LINK_CREATE` directly (aya 0.14 attaches
//! through `&mut SchedClassifier`, one at a time): first in the device's
//! chain (`BPF_F_BEFORE` with no anchor), so that a later program that
//! redirects or drops cannot hide the packet from us; ours always
//! continues. The link detaches when its fd is closed, from any namespace,
//! also when the process is killed.

use std::{
    collections::VecDeque,
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
    path::PathBuf,
    sync::{Mutex, mpsc},
};

use super::clsact::HeldNs;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// Before every other program of the chain (with no anchor: first).
const BPF_F_BEFORE: u32 = 1 << 3;

/// Threads that make or close links at once. Each mostly sleeps in the
/// kernel waiting for a grace period; more than this gains little.
pub const POOL: usize = 32;

/// `bpf_attr` for `BPF_LINK_CREATE` with the `tcx` member.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
    /// The rest of `bpf_attr`'s link_create union, zero.
    _rest: [u64; 4],
}

/// Makes one TCX link of `prog_fd` on `ifindex` of the thread's namespace.
fn link_create(prog_fd: RawFd, ifindex: u32, attach_type: u32) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: prog_fd as u32,
        target_ifindex: ifindex,
        attach_type,
        flags: BPF_F_BEFORE,
        ..Default::default()
    };
    // SAFETY: bpf(2) reads `size_of::<LinkCreateAttr>()` bytes of `attr`,
    // which lives across the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, &attr as *const LinkCreateAttr, size_of::<LinkCreateAttr>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// The ingress and egress links of one interface.
pub type Links = Vec<OwnedFd>;

/// The interfaces of one namespace to attach to.
pub struct Job<K> {
    pub path: PathBuf,
    pub inode: u64,
    pub cookie: Option<u64>,
    /// Each interface's key (what the caller files it under), ifindex and name.
    pub ifaces: Vec<(K, u32, String)>,
}

/// What attaching to one interface gave.
pub struct Done<K> {
    pub key: K,
    pub result: io::Result<Links>,
}

/// Attaches `progs` (ingress, egress fds) to every interface of `jobs`,
/// [`POOL`] namespaces at a time. A namespace that cannot be entered, or is
/// not the one discovery saw, gives nothing for its interfaces (it went
/// away meanwhile). Stops taking new work once `cancelled` says so.
pub fn attach_all<K: Send>(progs: (RawFd, RawFd), jobs: Vec<Job<K>>, cancelled: &(dyn Fn() -> bool + Sync)) -> Vec<Done<K>> {
    let threads = POOL.min(jobs.len());
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (queue, tx) = (&queue, tx.clone());
            s.spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(mut q) if !cancelled() => q.pop_front(),
                        _ => None,
                    };
                    let Some(job) = job else { break };
                    for d in attach_one(progs, job, cancelled) {
                        let _ = tx.send(d);
                    }
                }
            });
        }
    });
    drop(tx);
    rx.into_iter().collect()
}

fn attach_one<K>(progs: (RawFd, RawFd), job: Job<K>, cancelled: &dyn Fn() -> bool) -> Vec<Done<K>> {
    let Job { path, inode, cookie, ifaces } = job;
    let entered = crate::sys::in_netns(&path, || -> io::Result<Vec<Done<K>>> {
        // The path may name another namespace by now.
        HeldNs::here(inode, cookie)?;
        let mut out = Vec::with_capacity(ifaces.len());
        for (key, ifindex, _name) in ifaces {
            if cancelled() {
                break;
            }
            // On failure the link made so far is dropped, which detaches it.
            let result = link_create(progs.0, ifindex, BPF_TCX_INGRESS)
                .and_then(|ing| link_create(progs.1, ifindex, BPF_TCX_EGRESS).map(|eg| vec![ing, eg]));
            out.push(Done { key, result });
        }
        Ok(out)
    });
    match entered {
        Ok(Ok(v)) => v,
        _ => Vec::new(),
    }
}

/// Closes many links at once (each close waits for a grace period).
pub fn close_all(links: Vec<Links>) {
    if links.len() <= 1 {
        drop(links);
        return;
    }
    let threads = POOL.min(links.len());
    let queue = Mutex::new(links);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let queue = &queue;
            s.spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(l) = next else { break };
                    drop(l);
                }
            });
        }
    });
}

/// Whether an attach error only means the interface went away meanwhile.
pub fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT | libc::ENXIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_is_laid_out_as_the_kernels() {
        // prog_fd, target_ifindex, attach_type, flags, then the tcx member
        // (relative_fd, expected_revision at 8-byte alignment).
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, relative_fd), 16);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, expected_revision), 24);
    }

    #[test]
    fn a_bad_program_fd_is_an_error_not_a_link() {
        let e = link_create(-1, 1, BPF_TCX_INGRESS).expect_err("no program");
        assert!(e.raw_os_error().is_some(), "{e}");
    }

    #[test]
    fn nothing_to_do_is_done_at_once() {
        let out: Vec<Done<u32>> = attach_all((-1, -1), Vec::new(), &|| false);
        assert!(out.is_empty());
        close_all(Vec::new());
    }
}
