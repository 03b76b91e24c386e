//! `tracer serve`: the counters of the other capabilities as Prometheus
//! metrics on an HTTP endpoint, for a scraper to store, rate and alert on.
//!
//! This capability owns the metric families and their labels
//! ([`metrics`]: bounded, escaped and cut like text output, series of
//! vanished namespaces dropped after a grace period), the tracer's own
//! process metrics ([`process`]) and the HTTP endpoint ([`http`]:
//! `/metrics`, `/healthz`, nothing else). It never reads a map or a ring
//! buffer itself: `app/serve.rs` feeds it what `top`'s counters, the drop
//! and TCP tracepoints' counters and the netlink audit produce, as plain data, so the exporter adds no work per
//! packet.

pub mod http;
pub mod metrics;
pub mod process;

use std::{net::SocketAddr, time::Duration};

pub use http::Endpoint;
pub use metrics::{Drops, Exporter, Request, Tcp, Traffic};

use crate::tc::{cbpf::PacketFilter, follow::Selection};

/// Where `serve` listens unless told otherwise: loopback only, so that
/// binding an address other hosts reach is a choice made on purpose.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// How long the series of a namespace or interface that went away stay.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(300);
/// How often the counters are read into the metrics.
pub const READ_INTERVAL: Duration = Duration::from_millis(500);

/// The validated form of `tracer serve`.
#[derive(Clone, Debug)]
pub struct ServeJob {
    pub listen: SocketAddr,
    pub select: Selection,
    pub filter: PacketFilter,
    /// Series of vanished namespaces and interfaces are removed after this.
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}
