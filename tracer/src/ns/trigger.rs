//! What tells a follower (the attach thread of a TC job) to look for
//! namespaces and interfaces again, so that it looks when something
//! changed rather than on a short timer: a [`Bell`] the interface watcher
//! rings when a link or a namespace appears, changes or goes (its
//! notifications from every namespace with an id), and the mount table,
//! which changes when a namespace gets a name (`ip netns add` bind-mounts
//! it under `/run/netns`, Docker under `/run/docker/netns`) even before any
//! link ties it to the host. The mount table is the reliable signal for
//! those: an inotify event on `/run/netns` comes when `ip netns add`
//! creates the empty file, before the namespace is mounted on it, and
//! `/proc/self/mountinfo` reports every mount and unmount by `poll`
//! (`POLLPRI`) with no directory to set up in advance.

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use super::watch::sock;

/// An eventfd shared by whoever rings it and the one thread that waits on
/// it; ringing many times before the wait wakes it once.
#[derive(Clone, Debug)]
pub struct Bell(Arc<OwnedFd>);

impl Bell {
    pub fn new() -> std::io::Result<Bell> {
        Ok(Bell(Arc::new(sock::eventfd()?)))
    }

    pub fn ring(&self) {
        sock::wake(self.0.as_fd());
    }

    fn drain(&self) {
        sock::drain(self.0.as_fd());
    }
}

/// Why [`Triggers::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    Stop,
    /// A link, a namespace or a mount changed.
    Changed,
    Timeout,
}

/// The bells a follower waits on.
pub struct Triggers {
    changes: Bell,
    stop: Bell,
    /// `/proc/self/mountinfo`, polled for `POLLPRI`; `None` when it cannot
    /// be opened (then only links and the timeout wake the follower).
    mountinfo: Option<File>,
}

impl Triggers {
    pub fn new(changes: Bell, stop: Bell) -> Triggers {
        Triggers { changes, stop, mountinfo: File::open("/proc/self/mountinfo").ok() }
    }

    /// Waits for a change, a stop or `timeout`. A stop wins over a change
    /// seen in the same wait.
    pub fn wait(&self, timeout: Duration) -> Woke {
        let mut fds = vec![
            libc::pollfd { fd: self.stop.0.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.changes.0.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if let Some(m) = &self.mountinfo {
            fds.push(libc::pollfd { fd: m.as_raw_fd(), events: libc::POLLPRI, revents: 0 });
        }
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll over a live array of pollfd of the stated length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc <= 0 {
            return Woke::Timeout;
        }
        if fds[0].revents != 0 {
            return Woke::Stop;
        }
        if fds[1].revents != 0 {
            self.changes.drain();
        }
        // The mount table's event is consumed by the poll that reports it.
        Woke::Changed
    }

    /// Takes the changes rung meanwhile (a burst is looked at once).
    pub fn settle(&self, pause: Duration) -> Woke {
        std::thread::sleep(pause);
        match self.wait(Duration::ZERO) {
            Woke::Stop => Woke::Stop,
            _ => Woke::Changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_wakes_once_and_a_stop_wins() {
        let (changes, stop) = (Bell::new().expect("eventfd"), Bell::new().expect("eventfd"));
        let t = Triggers { changes: changes.clone(), stop: stop.clone(), mountinfo: None };
        assert_eq!(t.wait(Duration::from_millis(10)), Woke::Timeout);
        changes.ring();
        changes.ring();
        assert_eq!(t.wait(Duration::from_secs(5)), Woke::Changed);
        assert_eq!(t.wait(Duration::from_millis(10)), Woke::Timeout, "both rings taken by one wait");
        changes.ring();
        stop.ring();
        assert_eq!(t.wait(Duration::from_secs(5)), Woke::Stop);
    }
}
