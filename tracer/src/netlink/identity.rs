//! Who sent a request, as the namespace registry ([`crate::ns::Registry`])
//! tells it: the name of the sender's namespace (a container's, else a
//! `/run/netns` one) and the container. On a miss the registry rescans
//! /proc and asks the container runtimes (Docker's API socket waits up to
//! 0.5 s), so it lives on a thread of its own ([`Worker`]); the correlator
//! asks when a request is read (while the sender still exists) and holds
//! the request until the answer is in, or its time is up. Answers are
//! cached per (namespace, pid) for [`IDENTITY_TTL`], at most
//! [`IDENTITY_CACHE_MAX`] of them; a request the busy thread cannot take is
//! printed without a container, and counted.

use std::time::{Duration, Instant};

use super::lookup::{Resolver, Worker};
use crate::{
    ns::{Container, Registry},
    sys::bounded::BoundedMap,
};

/// What the registry says of a sender: its namespace's name and owner,
/// and its container (the owner, else the one the sender is in: a
/// host-network container's process in the host's namespace).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    pub netns_name: Option<String>,
    pub owner: Option<Container>,
    pub container: Option<Container>,
    /// The namespace is a Docker sandbox whose container does not run yet
    /// (see [`Registry::unowned_docker_sandbox`]), or the sender is in a
    /// container that does not run yet ([`Registry::unconfirmed_container`]):
    /// worth asking again soon.
    pub starting: bool,
}

/// (namespace inode, pid, cgroup v2 id) of a sender: the cgroup id names
/// its container even after the process is gone (see [`Registry::enrich`]).
pub type Sender = (u64, u32, u64);

/// Requests waiting for the registry's thread, at most.
pub const QUEUE: usize = 256;
/// How long an answer stands: the registry itself rescans at most every
/// 500 ms, so a container that just started is named on a later request.
pub const IDENTITY_TTL: Duration = Duration::from_millis(500);
/// How long an answer stands for a namespace whose container is starting
/// (see [`Identity::starting`]): requests into it wait for the name, so
/// it is asked again soon.
pub const STARTING_TTL: Duration = Duration::from_millis(100);
/// Senders remembered, at most.
pub const IDENTITY_CACHE_MAX: usize = 4096;
/// An answer not back in this time is given up.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The registry's thread and what it answered.
pub struct Identities {
    /// Off in tests of the correlator that are about something else.
    enabled: bool,
    worker: Worker<Sender, (Sender, Identity)>,
    /// `None` while the answer is on its way.
    cache: BoundedMap<Sender, (Option<Identity>, Instant)>,
}

impl Default for Identities {
    fn default() -> Self {
        Self::new()
    }
}

impl Identities {
    /// Answers from a [`Registry`] of this machine, filled on first use.
    pub fn new() -> Self {
        let mut registry: Option<Registry> = None;
        Self::with_resolver(
            QUEUE,
            Box::new(move |(ino, pid, cgroup_id): Sender| {
                let reg = registry.get_or_insert_with(|| {
                    let mut r = Registry::new();
                    r.refresh();
                    r
                });
                let (netns_name, container) = reg.enrich(ino, pid, cgroup_id);
                let owner = reg.container_for_netns(ino);
                let starting = reg.unowned_docker_sandbox(ino) || (container.is_none() && reg.unconfirmed_container(pid, cgroup_id));
                ((ino, pid, cgroup_id), Identity { netns_name, owner, container, starting })
            }),
        )
    }

    /// Answers from `resolver` (tests give their own).
    pub fn with_resolver(queue: usize, resolver: Resolver<Sender, (Sender, Identity)>) -> Self {
        Self { enabled: true, worker: Worker::named("tracer-registry", queue, resolver), cache: BoundedMap::new(IDENTITY_CACHE_MAX) }
    }

    /// Never asks: every sender is unknown.
    #[cfg(test)]
    pub fn off() -> Self {
        Self { enabled: false, ..Self::with_resolver(1, Box::new(|who| (who, Identity::default()))) }
    }

    /// Asks for a sender's identity unless a recent answer (or the question)
    /// is already there. A busy thread is counted and not asked.
    pub fn request(&mut self, who: Sender) {
        if !self.enabled {
            return;
        }
        if let Some((answer, at)) = self.cache.get(&who) {
            let ttl = match answer {
                Some(a) if a.starting => STARTING_TTL,
                Some(_) => IDENTITY_TTL,
                None => TIMEOUT,
            };
            if at.elapsed() < ttl {
                return;
            }
        }
        if !self.worker.busy() && self.worker.submit(who) {
            self.cache.insert(who, (None, Instant::now()));
        }
    }

    /// Takes in the answers that came.
    pub fn poll(&mut self) {
        let now = Instant::now();
        for (who, id) in self.worker.answers() {
            self.cache.insert(who, (Some(id), now));
        }
    }

    /// Whether the answer for `who` is still on its way.
    pub fn awaiting(&self, who: Sender) -> bool {
        self.cache.get(&who).is_some_and(|(a, at)| a.is_none() && at.elapsed() < TIMEOUT)
    }

    /// The answer for `who`, if it came.
    pub fn get(&self, who: Sender) -> Option<&Identity> {
        self.cache.get(&who).and_then(|(a, _)| a.as_ref())
    }

    /// (asked, refused because the thread was busy).
    pub fn counts(&self) -> (u64, u64) {
        (self.worker.submitted, self.worker.over_budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(delay: Duration, queue: usize) -> Identities {
        Identities::with_resolver(
            queue,
            Box::new(move |(ino, pid, cg): Sender| {
                std::thread::sleep(delay);
                let c = Container { pod: None, runtime: "docker".into(), id: pid.to_string(), name: None };
                ((ino, pid, cg), Identity { netns_name: Some(format!("ns{ino}")), owner: None, container: Some(c), starting: false })
            }),
        )
    }

    #[test]
    fn answers_come_from_the_thread_and_are_cached() {
        let mut ids = fake(Duration::from_millis(20), 8);
        ids.request((1, 10, 0));
        ids.request((1, 10, 0));
        assert!(ids.awaiting((1, 10, 0)));
        assert_eq!(ids.counts(), (1, 0), "asked once");
        let deadline = Instant::now() + Duration::from_secs(5);
        while ids.awaiting((1, 10, 0)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            ids.poll();
        }
        assert_eq!(ids.get((1, 10, 0)).and_then(|i| i.netns_name.as_deref()), Some("ns1"));
        ids.request((1, 10, 0));
        assert_eq!(ids.counts(), (1, 0), "the answer stands for IDENTITY_TTL");
    }

    #[test]
    fn a_flood_of_senders_is_refused_not_queued() {
        let mut ids = fake(Duration::from_millis(100), 8);
        let start = Instant::now();
        for pid in 0..10_000 {
            ids.request((1, pid, 0));
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        let (asked, refused) = ids.counts();
        // The queue, and the one the thread may have taken already.
        assert!((8..=9).contains(&asked), "{asked}");
        assert_eq!(asked + refused, 10_000);
        assert!(!ids.awaiting((1, 9_999, 0)) && ids.get((1, 9_999, 0)).is_none());
        assert!(ids.cache.len() <= IDENTITY_CACHE_MAX);
    }
}
