//! Everything the TC jobs share: attaching a pair of programs to many
//! interfaces in many namespaces ([`attach`], with [`clsact`], [`journal`]
//! and [`stale`] for kernels without TCX), the thread that follows namespaces and
//! interfaces as they come and go ([`follow`]) and names them ([`topology`]), and the in-kernel packet
//! filter (libpcap's code in the kernel: [`cbpf`]), the flow key of `top`
//! as userspace reads it ([`flowkey`]); and the
//! start-up sequence all of them take, once ([`session`]).

pub mod attach;
pub mod cbpf;
pub mod clsact;
pub mod flowkey;
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
    Filter(#[from] cbpf::FilterError),
    #[error("the eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error(transparent)]
    Hook(#[from] crate::bpf::hooks::HookError),
    #[error("the attach thread stopped unexpectedly")]
    Follower,
}
