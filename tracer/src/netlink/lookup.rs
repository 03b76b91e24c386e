//! The lookups enrichment cannot afford on the event loop: the name of an
//! interface index, or the index of a name, asked with RTM_GETLINK from
//! inside the namespace it lives in (two `setns` and a netlink round trip).
//! They run on one thread of their own, fed through a queue of at most
//! [`QUEUE`] requests. A request that finds the queue full is refused at
//! once and counted (the caller reports the name as unknown), so a burst of
//! unknown ifindexes is answered without waiting for each lookup in turn,
//! and nothing queues without bound. Answers come back on a channel the
//! event loop polls; the requests it waits for are held (see
//! [`super::Correlator::ready`]) until their answers are in or their time
//! is up. The thread and its queue are a generic [`Worker`], which also
//! runs the namespace registry (see [`super::identity`]).

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    sync::mpsc::{self, Receiver, SyncSender, TrySendError},
    time::Duration,
};

use crate::{
    ns::rtnl::{
        Rtnl,
        msg::{self, LinkMsg},
    },
    sys::{self, bounded as cache},
};

/// Requests waiting for the lookup thread, at most: a few milliseconds of
/// its work (one lookup takes tens of microseconds).
pub const QUEUE: usize = 64;

/// How long one lookup waits for the kernel's answer.
const RECV_TIMEOUT: Duration = Duration::from_millis(250);

/// What to find out, in the namespace of [`Request::ns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The name of an interface index.
    Name(u32),
    /// The index of an interface name.
    Index(String),
}

/// One lookup: where (an open namespace file, which stays valid whatever
/// happens to the process it came from) and what.
#[derive(Debug)]
pub struct Request {
    /// The namespace's inode, handed back with the answer.
    pub ino: u64,
    pub ns: Option<File>,
    pub query: Query,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Name { ino: u64, index: u32, name: Option<String> },
    Index { ino: u64, name: String, index: Option<u32> },
}

/// What answers the requests of a [`Worker`], on its thread.
pub type Resolver<Q, A> = Box<dyn FnMut(Q) -> A + Send>;

/// Interface-name lookups.
pub type Lookups = Worker<Request, Answer>;

/// A thread answering requests of type `Q` with answers of type `A`, fed
/// through a bounded queue, started by the first request.
pub struct Worker<Q, A> {
    name: &'static str,
    resolver: Option<Resolver<Q, A>>,
    tx: Option<SyncSender<Q>>,
    rx: Option<Receiver<A>>,
    queue: usize,
    /// Requests handed to the thread.
    pub submitted: u64,
    /// Requests refused because the queue was full (answered unknown).
    pub over_budget: u64,
    /// Answers taken in.
    pub answered: u64,
}

impl Default for Lookups {
    fn default() -> Self {
        Self::new()
    }
}

impl Lookups {
    /// Lookups with RTM_GETLINK inside each request's namespace.
    pub fn new() -> Self {
        Self::with_resolver(QUEUE, Box::new(resolve))
    }

    /// Lookups answered by `resolver` on the thread (tests give their own).
    pub fn with_resolver(queue: usize, resolver: Resolver<Request, Answer>) -> Self {
        Worker::named("tracer-lookup", queue, resolver)
    }
}

impl<Q: Send + 'static, A: Send + 'static> Worker<Q, A> {
    /// A worker whose thread, `name`, answers with `resolver`.
    pub fn named(name: &'static str, queue: usize, resolver: Resolver<Q, A>) -> Self {
        Self { name, resolver: Some(resolver), tx: None, rx: None, queue, submitted: 0, over_budget: 0, answered: 0 }
    }

    /// Whether a request would be refused now: as many are on their way as
    /// the queue holds (plus the one on the thread). Counted as refused, so
    /// a caller that asks first need not even open the namespace.
    pub fn busy(&mut self) -> bool {
        let busy = self.submitted - self.answered > self.queue as u64;
        if busy {
            self.over_budget += 1;
        }
        busy
    }

    /// Hands a request to the thread without waiting. `false`: the queue is
    /// full (counted) or the thread is gone; the answer is "unknown".
    pub fn submit(&mut self, req: Q) -> bool {
        if self.tx.is_none() {
            self.start();
        }
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(req) {
            Ok(()) => {
                self.submitted += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.over_budget += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.tx = None;
                false
            }
        }
    }

    /// The answers that came in since the last call.
    pub fn answers(&mut self) -> Vec<A> {
        let a: Vec<A> = self.rx.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default();
        self.answered += a.len() as u64;
        a
    }

    fn start(&mut self) {
        let Some(mut resolver) = self.resolver.take() else { return };
        let (req_tx, req_rx) = mpsc::sync_channel::<Q>(self.queue);
        // Unbounded, but never longer than the requests the loop handed
        // over: each request gives one answer.
        let (ans_tx, ans_rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name(self.name.into()).spawn(move || {
            // Ends when the sending side (the Worker) is dropped.
            while let Ok(req) = req_rx.recv() {
                if ans_tx.send(resolver(req)).is_err() {
                    break;
                }
            }
        });
        if spawned.is_ok() {
            self.tx = Some(req_tx);
            self.rx = Some(ans_rx);
        }
    }
}

/// A lookup for real: RTM_GETLINK inside the request's namespace.
fn resolve(req: Request) -> Answer {
    let ask = |q: msg::Request| -> Option<LinkMsg> {
        let ns = req.ns.as_ref()?;
        // The open file, not a /proc/PID path: the process may be gone and
        // its pid reused by now.
        let path = format!("/proc/self/fd/{}", ns.as_raw_fd());
        sys::in_netns(Path::new(&path), || Rtnl::open_with(RECV_TIMEOUT).and_then(|mut rt| rt.link(&q))).ok()?.ok()?
    };
    match req.query {
        Query::Name(index) => {
            let name = ask(msg::Request::GetLink(index)).and_then(|l| l.name).map(|n| cache::cut(&n, cache::IFNAME_MAX).to_string());
            Answer::Name { ino: req.ino, index, name }
        }
        Query::Index(name) => {
            let index = ask(msg::Request::GetLinkByName(name.clone())).map(|l| l.ifindex);
            Answer::Index { ino: req.ino, name, index }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn slow(per_lookup: Duration) -> Resolver<Request, Answer> {
        Box::new(move |req: Request| {
            std::thread::sleep(per_lookup);
            match req.query {
                Query::Name(index) => Answer::Name { ino: req.ino, index, name: Some(format!("if{index}")) },
                Query::Index(name) => Answer::Index { ino: req.ino, name, index: Some(7) },
            }
        })
    }

    #[test]
    fn a_burst_is_answered_without_waiting_for_each_lookup() {
        // 1,000 unknown ifindexes at once, each lookup taking 100 ms: done
        // in turn on the loop they would take 100 s.
        let mut l = Lookups::with_resolver(8, slow(Duration::from_millis(100)));
        let start = Instant::now();
        let accepted = (0..1000u32).filter(|i| !l.busy() && l.submit(Request { ino: 1, ns: None, query: Query::Name(*i) })).count();
        assert!(start.elapsed() < Duration::from_millis(500), "submitting took {:?}", start.elapsed());
        // The queue, plus the one the thread may already have taken.
        assert!((8..=9).contains(&accepted), "{accepted}");
        assert_eq!(l.over_budget, 1000 - accepted as u64);
        assert_eq!(l.submitted, accepted as u64);
        // The accepted ones are answered, in order, by the thread.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < accepted && Instant::now() < deadline {
            got.extend(l.answers());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got.len(), accepted);
        assert_eq!(got[0], Answer::Name { ino: 1, index: 0, name: Some("if0".into()) });
        // Once the queue drained, there is room again.
        assert!(l.submit(Request { ino: 1, ns: None, query: Query::Index("eth0".into()) }));
    }

    #[test]
    fn without_a_namespace_nothing_is_found() {
        let a = resolve(Request { ino: 1, ns: None, query: Query::Name(1) });
        assert_eq!(a, Answer::Name { ino: 1, index: 1, name: None });
    }
}
