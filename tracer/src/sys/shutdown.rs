//! Stopping on request: SIGINT, SIGTERM and SIGHUP, registered before
//! anything is loaded, so that no signal that asks the tracer to stop can
//! kill it halfway through attaching (netlink-tc filters outlive a killed
//! process). The request is seen alike by the async side ([`Shutdown::wait`])
//! and by the attach thread between two interfaces ([`Shutdown::is_set`]).

use tokio::sync::watch;

/// A stop request, shared by everything that must observe it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Sets a [`Shutdown`] (tests and callers that stop the tracer themselves).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A pair: the trigger and the request it sets.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown { rx })
    }

    /// A request that never comes.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // The value stays `false` once the sender is gone; `wait` pends.
        drop(tx);
        Shutdown { rx }
    }

    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP now (from this
    /// call on, none of them kills the process) and returns the request
    /// they set. Must be called inside the Tokio runtime.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            trigger.fire();
            // Further signals are still taken (and ignored) by the streams,
            // which live as long as this task: the stop already under way
            // must not be cut short.
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
        });
        Ok(shutdown)
    }

    /// Whether a stop was asked for; cheap, callable from any thread.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Whether a stop was asked for before the job became ready; if so,
    /// says so. The caller then returns, and whatever it loaded or attached
    /// is released on the way out: a clean stop, exit status 0.
    pub fn stopped_during_start_up(&self) -> bool {
        let stopped = self.is_set();
        if stopped {
            eprintln!("tracer: stopped during start-up");
        }
        stopped
    }

    /// Resolves once a stop is asked for (never, for [`Shutdown::never`]).
    pub async fn wait(mut self) {
        if self.rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_is_seen_by_clones_and_waiters() {
        let (t, s) = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_set());
        let waiter = tokio::spawn(s.wait());
        t.fire();
        assert!(c.is_set());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").expect("task");
    }

    #[tokio::test]
    async fn never_pends() {
        let s = Shutdown::never();
        assert!(!s.is_set());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), s.wait()).await.is_err());
    }

    #[tokio::test]
    async fn a_signal_sets_it_instead_of_killing() {
        let s = Shutdown::on_signals().expect("handlers");
        // SAFETY: signalling our own process, whose handler is installed.
        unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
        tokio::time::timeout(std::time::Duration::from_secs(5), s.clone().wait()).await.expect("SIGHUP seen");
        assert!(s.is_set());
    }
}
