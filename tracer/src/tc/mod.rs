//! Everything the TC jobs share: attaching a pair of programs to many
//! interfaces in many namespaces ([`attach`], with [`clsact`], [`journal`]
//! and [`stale`] for kernels without TCX), the thread that follows namespaces and
//! interfaces as they come and go ([`follow`]) and names them ([`topology`]), and the in-kernel packet
//! filters ([`filter`], and the libpcap-based [`cbpf`] to come); and the
//! start-up sequence all of them take, once ([`session`]).

pub mod attach;
pub mod cbpf;
pub mod clsact;
pub mod filter;
pub mod follow;
pub mod journal;
pub mod session;
pub mod stale;
pub mod topology;

pub use session::TcSession;

/// What can stop a TC job from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error(transparent)]
    Filter(#[from] filter::FilterError),
    #[error(transparent)]
    Hook(#[from] crate::bpf::hooks::HookError),
    #[error("the attach thread stopped unexpectedly")]
    Follower,
}
