//! Everything the TC jobs share: attaching a pair of programs to many
//! interfaces in many namespaces ([`attach`], with [`clsact`], [`journal`]
//! and [`stale`] for kernels without TCX), the thread that follows namespaces and
//! interfaces as they come and go ([`follow`]) and names them ([`topology`]), and the in-kernel packet
//! filters ([`filter`], and the libpcap-based [`cbpf`] to come).

pub mod attach;
pub mod cbpf;
pub mod clsact;
pub mod filter;
pub mod follow;
pub mod journal;
pub mod stale;
pub mod topology;
