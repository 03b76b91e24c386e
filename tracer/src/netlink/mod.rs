//! Netlink audit: turns captured send buffers into one event per netlink
//! message, matches each with the kernel's answer, and renders them like
//! `ip monitor`, prefixed by who sent them and where.

pub mod correlate;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod identity;
pub mod lookup;
pub mod nfgen;
pub mod route;
mod route_check;

pub use correlate::{ACK_WAIT_NS, Correlator, report_malformed};
pub(crate) use correlate::send_events;
pub use event::NetlinkEvent;
