//! Netlink audit: turns captured send buffers into one event per netlink
//! message ([`decode`], [`route`], [`nfgen`]), matches each with the
//! kernel's answer and names what it refers to ([`correlate`], [`enrich`],
//! [`identity`], [`lookup`]), and renders them like `ip monitor`, prefixed
//! by who sent them and where ([`event`]). [`NetlinkJob`] says which are
//! reported.

pub mod correlate;
pub mod decode;
pub mod effects;
pub mod enrich;
pub mod event;
pub mod identity;
pub mod lookup;
pub mod nfgen;
pub mod route;
mod route_check;

pub use correlate::{ACK_WAIT_NS, Correlator, SANDBOX_WAIT_NS};
pub(crate) use correlate::send_events;
pub use event::NetlinkEvent;

/// The validated form of `tracer netlink`: which requests are reported.
#[derive(Debug, Clone, Default)]
pub struct NetlinkJob {
    /// Only requests sent from this namespace (also filtered in the kernel).
    pub netns: Option<u64>,
    /// Only these protocols (`None`: all).
    pub protocols: Option<Vec<u16>>,
    /// Only these rtnetlink message types (`None`: all).
    pub types: Option<Vec<u16>>,
    /// Also requests that change nothing (GETs, dumps, probes, batch markers).
    pub include_get: bool,
}

impl NetlinkJob {
    /// Whether a notification no request took is printed on its own:
    /// rtnetlink changes, in the selected namespace, when no message
    /// types were picked.
    pub fn wants_change(&self, c: &effects::Change) -> bool {
        self.types.is_none()
            && self.protocols.as_ref().is_none_or(|p| p.contains(&decode::NETLINK_ROUTE))
            && self.netns.is_none_or(|n| n == c.netns.inode)
    }

    /// Whether a request is reported.
    pub fn wants(&self, e: &NetlinkEvent) -> bool {
        if !self.include_get && !e.is_malformed() && (e.is_get() || e.is_probe()) {
            return false;
        }
        if let Some(ns) = self.netns
            && e.netns.inode != ns
        {
            return false;
        }
        if let Some(ps) = &self.protocols
            && !ps.contains(&e.protocol)
        {
            return false;
        }
        if let Some(ts) = &self.types
            && (e.protocol != decode::NETLINK_ROUTE || !ts.contains(&e.header.msg_type))
        {
            return false;
        }
        // Whatever its header claims to be, a malformed message is shown.
        if e.is_malformed() {
            return true;
        }
        // Answers and end-of-dump markers are not requests.
        if matches!(e.header.msg_type, decode::NLMSG_ERROR | decode::NLMSG_DONE) {
            return false;
        }
        // nfnetlink batch begin/end markers frame the changes but make none.
        self.include_get || !(e.protocol == decode::NETLINK_NETFILTER && matches!(e.header.msg_type, 0x10 | 0x11))
    }
}
