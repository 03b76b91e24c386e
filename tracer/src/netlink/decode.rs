//! Decoding the netlink buffers other processes send and receive:
//! splitting a send into its messages (reporting every byte that is none),
//! naming types and flags, reading `NLMSG_ERROR` answers. Never panics on
//! malformed bytes.

use serde_json::{Map, Value};

use super::{nfgen, route};
use crate::sys::{contain::contain, nlmsg};

pub const NETLINK_ROUTE: u16 = 0;
pub const NETLINK_XFRM: u16 = 6;
pub const NETLINK_NETFILTER: u16 = 12;
pub const NETLINK_GENERIC: u16 = 16;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ECHO: u16 = 0x8;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

pub use crate::sys::nlmsg::NlHeader;

/// What a message says: decoded attributes, and a namespace reference to
/// resolve when the request acts on another namespace.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    pub attrs: Map<String, Value>,
    pub target: Option<route::TargetRef>,
    /// Why the payload could not be decoded, if it could not.
    pub error: Option<String>,
}

impl Decoded {
    fn failed(why: impl Into<String>) -> Self {
        Self { error: Some(why.into()), ..Default::default() }
    }
}

/// One message cut out of a send buffer, or a piece of one.
#[derive(Clone, Debug)]
pub struct Message {
    /// As far as it could be read (zeros past the captured bytes).
    pub header: NlHeader,
    pub decoded: Decoded,
    /// The captured bytes ended before the message did (the kernel copies
    /// at most [`tracer_common::netlink::NL_DATA_MAX`] bytes of a send).
    pub truncated: bool,
    /// Bytes of the message that were captured, its header included.
    pub captured_len: usize,
    /// The captured bytes of a message that was sent whole but could not be
    /// decoded (reported as malformed, with these bytes in hex).
    pub raw: Option<Vec<u8>>,
    /// Its first bytes as captured (at most [`ECHO_KEEP`]), to compare with
    /// the kernel's echo of it in the answer ([`Ack::differs_from`]).
    pub sent: Vec<u8>,
}

/// Bytes of each request kept until its answer: an answer's capture holds
/// at most [`tracer_common::netlink::NL_ACK_MAX`] bytes of the echo.
pub const ECHO_KEEP: usize = tracer_common::netlink::NL_ACK_MAX;

impl Message {
    #[cfg(test)]
    pub fn is_malformed(&self) -> bool {
        self.raw.is_some()
    }
}

/// Cuts what was captured of one send (`data`, the first bytes of the
/// `sent_len` the process passed) into its messages; a batch may hold
/// hundreds. Never panics and never drops bytes silently: a message the
/// capture cut short is `truncated` (decoded as far as its whole
/// attributes go), a message that cannot be decoded, or bytes that are no
/// message at all, come out malformed with their bytes, and a send cut
/// between two messages ends with a truncated piece saying how much of it
/// was not captured. Each message is decoded under [`contain`], so a
/// decoder bug costs that message only.
pub fn split_messages(protocol: u16, data: &[u8], sent_len: usize) -> Vec<Message> {
    let decode = |p, h: &NlHeader, b: &[u8]| contain(|| decode_body(p, h, b)).unwrap_or_else(|e| Decoded::failed(e.to_string()));
    let cut = sent_len > data.len();
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        let header = NlHeader::parse_partial(rest);
        let len = header.len as usize;
        if rest.len() < NlHeader::SIZE && cut {
            // The capture ended inside this header.
            let decoded = Decoded::failed(format!("the capture ends {} bytes into this message's header", rest.len()));
            out.push(Message { header, decoded, truncated: true, captured_len: rest.len(), raw: None, sent: Vec::new() });
            return out;
        }
        let why = if rest.len() < NlHeader::SIZE {
            Some(format!("{} bytes after the last message, too few for a netlink header (16)", rest.len()))
        } else if len < NlHeader::SIZE {
            Some(format!("its header gives a length of {len}, less than the header itself (16)"))
        } else if len > rest.len() && !cut {
            Some(format!("its header gives a length of {len}, but only {} bytes were sent", rest.len()))
        } else {
            None
        };
        if let Some(why) = why {
            // The kernel stops reading a buffer at such bytes, and so do we.
            out.push(Message { header, decoded: Decoded::failed(why), truncated: false, captured_len: rest.len(), raw: Some(rest.to_vec()), sent: Vec::new() });
            return out;
        }
        let truncated = len > rest.len();
        let body = &rest[NlHeader::SIZE..len.min(rest.len())];
        let mut decoded = if truncated {
            // What was captured of it: its fixed header and whole attributes.
            let whole = whole_attributes(protocol, header.msg_type, body);
            decode(protocol, &header, &body[..whole])
        } else {
            decode(protocol, &header, body)
        };
        let raw = (!truncated && decoded.error.is_some()).then(|| rest[..len].to_vec());
        if truncated && let Some(e) = decoded.error.take() {
            decoded.error = Some(format!("only {} of its {len} bytes were captured: {e}", rest.len()));
        }
        let sent = rest[..len.min(rest.len()).min(ECHO_KEEP)].to_vec();
        out.push(Message { header, decoded, truncated, captured_len: len.min(rest.len()), raw, sent });
        off = off.saturating_add((len + 3) & !3);
    }
    if cut && out.last().is_none_or(|m| !m.truncated) {
        // The capture ended exactly between two messages: what follows was
        // sent but is not here. Say so, and how much it was.
        let missing = sent_len - data.len();
        let header = NlHeader { len: u32::try_from(missing).unwrap_or(u32::MAX), ..Default::default() };
        let decoded = Decoded::failed(format!("the send was {sent_len} bytes; the {missing} after the first {} were not captured", data.len()));
        out.push(Message { header, decoded, truncated: true, captured_len: 0, raw: None, sent: Vec::new() });
    }
    out
}

/// How many bytes at the start of `body` (a message's payload) are its
/// fixed header and whole attributes: what can be decoded of a message the
/// capture cut. The whole body when the protocol's layout is unknown.
pub fn whole_attributes(protocol: u16, msg_type: u16, body: &[u8]) -> usize {
    let fixed = match protocol {
        NETLINK_ROUTE => route::fixed_header_len(msg_type),
        // struct nfgenmsg, struct genlmsghdr.
        NETLINK_NETFILTER | NETLINK_GENERIC => Some(4),
        _ => None,
    };
    let Some(fixed) = fixed else { return body.len() };
    match body.get(fixed..) {
        Some(attrs) => fixed + nlmsg::whole_attrs_len(attrs),
        None => body.len(),
    }
}

/// Decodes the payload of one message with the decoder of its protocol.
/// Returns an error, never panics, for any bytes (fuzzed: `tracer::fuzzing`).
pub fn decode_body(protocol: u16, h: &NlHeader, body: &[u8]) -> Decoded {
    if h.msg_type < 16 {
        return Decoded::default();
    }
    match protocol {
        NETLINK_ROUTE => match route::decode(h.msg_type, body) {
            Ok(r) => Decoded { attrs: r.attrs, target: r.target, error: None },
            Err(e) => Decoded::failed(e),
        },
        NETLINK_NETFILTER => Decoded { attrs: nfgen::nf_attrs(h.msg_type, body), ..Default::default() },
        NETLINK_GENERIC => {
            let mut attrs = Map::new();
            if let Some(&cmd) = body.first() {
                attrs.insert("cmd".into(), Value::from(cmd));
            }
            Decoded { attrs, ..Default::default() }
        }
        _ => Decoded::default(),
    }
}

/// One answer found in a receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub seq: u32,
    pub errno: i32,
    pub extack: Option<String>,
    /// The request as the kernel echoes it: its header, then (for an error
    /// without `NETLINK_CAP_ACK`) its body, as far as the answer's capture
    /// holds it. Empty when the answer is too short to hold a header.
    pub echoed: Vec<u8>,
}

impl Ack {
    /// Whether the kernel's echo of the request differs from `sent`, the
    /// bytes captured of it at the system call's entry: the header always,
    /// the body as far as both hold it. A difference means the buffer was
    /// changed (by another thread of the sender) between the capture and
    /// the kernel's copy, or the answer was changed before it was read:
    /// the request printed is then not the one the kernel acted on.
    pub fn differs_from(&self, sent: &[u8]) -> bool {
        let Some(echo) = NlHeader::parse(&self.echoed) else { return false };
        if NlHeader::parse(sent) != Some(echo) {
            return true;
        }
        let n = self.echoed.len().min(sent.len()).min(echo.len as usize);
        self.echoed[..n] != sent[..n]
    }
}

const NLMSGERR_ATTR_MSG: u16 = 1;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

/// Reads every `NLMSG_ERROR` message in a receive buffer (copied up to a
/// limit: the last message may be cut, and its result is still read).
pub fn parse_acks(data: &[u8]) -> Vec<Ack> {
    let mut out = Vec::new();
    for m in nlmsg::messages(data) {
        let (h, body) = (m.header, m.payload);
        if h.msg_type != NLMSG_ERROR || body.len() < 4 {
            continue;
        }
        let error = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
        // The echoed request header follows the error; its seq is the request's.
        let seq = NlHeader::parse(&body[4..]).map(|r| r.seq).unwrap_or(h.seq);
        let mut extack = None;
        if h.flags & NLM_F_ACK_TLVS != 0 {
            let echoed_len = if h.flags & NLM_F_CAPPED != 0 {
                NlHeader::SIZE
            } else {
                NlHeader::parse(&body[4..]).map(|r| r.len as usize).unwrap_or(NlHeader::SIZE)
            };
            let tlv_start = 4usize.saturating_add(nlmsg::align(echoed_len));
            if let Some(tlvs) = body.get(tlv_start..) {
                extack = nlmsg::find_attr(tlvs, NLMSGERR_ATTR_MSG).map(nlmsg::attr_str);
            }
        }
        // The echo: the header alone when the kernel capped it (success, or
        // NETLINK_CAP_ACK), else the whole request, extack TLVs after it.
        let echoed = match NlHeader::parse(&body[4..]) {
            Some(_) if h.flags & NLM_F_CAPPED != 0 => body[4..4 + NlHeader::SIZE].to_vec(),
            Some(r) => body[4..].get(..r.len as usize).unwrap_or(&body[4..]).to_vec(),
            None => Vec::new(),
        };
        // The kernel sends -errno; any other i32 is possible in a buffer
        // a process reads (i32::MIN has no negation).
        out.push(Ack { seq, errno: error.saturating_neg(), extack, echoed });
    }
    out
}

pub fn protocol_name(p: u16) -> &'static str {
    match p {
        NETLINK_ROUTE => "route",
        4 => "sock_diag",
        5 => "nflog",
        NETLINK_XFRM => "xfrm",
        7 => "selinux",
        9 => "audit",
        10 => "fib_lookup",
        11 => "connector",
        NETLINK_NETFILTER => "netfilter",
        15 => "kobject_uevent",
        NETLINK_GENERIC => "generic",
        _ => "other",
    }
}

/// Parses `route,netfilter`-style lists; `all` gives `None` (no restriction).
pub fn parse_protocols(s: &str) -> Result<Option<Vec<u16>>, String> {
    let mut v = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        v.push(match p {
            "all" => return Ok(None),
            "route" => NETLINK_ROUTE,
            "xfrm" => NETLINK_XFRM,
            "netfilter" => NETLINK_NETFILTER,
            "generic" => NETLINK_GENERIC,
            "sock_diag" => 4,
            "audit" => 9,
            other => return Err(format!("unknown netlink protocol {other:?}: use route, netfilter, generic, xfrm or all")),
        });
    }
    Ok(Some(v))
}

const RTM_NAMES: &[(u16, &str)] = &[
    (16, "RTM_NEWLINK"), (17, "RTM_DELLINK"), (18, "RTM_GETLINK"), (19, "RTM_SETLINK"),
    (20, "RTM_NEWADDR"), (21, "RTM_DELADDR"), (22, "RTM_GETADDR"),
    (24, "RTM_NEWROUTE"), (25, "RTM_DELROUTE"), (26, "RTM_GETROUTE"),
    (28, "RTM_NEWNEIGH"), (29, "RTM_DELNEIGH"), (30, "RTM_GETNEIGH"),
    (32, "RTM_NEWRULE"), (33, "RTM_DELRULE"), (34, "RTM_GETRULE"),
    (36, "RTM_NEWQDISC"), (37, "RTM_DELQDISC"), (38, "RTM_GETQDISC"),
    (40, "RTM_NEWTCLASS"), (41, "RTM_DELTCLASS"), (42, "RTM_GETTCLASS"),
    (44, "RTM_NEWTFILTER"), (45, "RTM_DELTFILTER"), (46, "RTM_GETTFILTER"),
    (48, "RTM_NEWACTION"), (49, "RTM_DELACTION"), (50, "RTM_GETACTION"),
    (52, "RTM_NEWPREFIX"), (58, "RTM_GETMULTICAST"), (62, "RTM_GETANYCAST"),
    (64, "RTM_NEWNEIGHTBL"), (66, "RTM_GETNEIGHTBL"), (67, "RTM_SETNEIGHTBL"),
    (68, "RTM_NEWNDUSEROPT"), (72, "RTM_NEWADDRLABEL"), (73, "RTM_DELADDRLABEL"), (74, "RTM_GETADDRLABEL"),
    (78, "RTM_GETDCB"), (79, "RTM_SETDCB"),
    (80, "RTM_NEWNETCONF"), (81, "RTM_DELNETCONF"), (82, "RTM_GETNETCONF"),
    (84, "RTM_NEWMDB"), (85, "RTM_DELMDB"), (86, "RTM_GETMDB"),
    (88, "RTM_NEWNSID"), (89, "RTM_DELNSID"), (90, "RTM_GETNSID"),
    (92, "RTM_NEWSTATS"), (94, "RTM_GETSTATS"), (95, "RTM_SETSTATS"),
    (100, "RTM_NEWCHAIN"), (101, "RTM_DELCHAIN"), (102, "RTM_GETCHAIN"),
    (104, "RTM_NEWNEXTHOP"), (105, "RTM_DELNEXTHOP"), (106, "RTM_GETNEXTHOP"),
    (108, "RTM_NEWLINKPROP"), (109, "RTM_DELLINKPROP"),
    (112, "RTM_NEWVLAN"), (113, "RTM_DELVLAN"), (114, "RTM_GETVLAN"),
    (116, "RTM_NEWNEXTHOPBUCKET"), (117, "RTM_DELNEXTHOPBUCKET"), (118, "RTM_GETNEXTHOPBUCKET"),
    (120, "RTM_NEWTUNNEL"), (121, "RTM_DELTUNNEL"), (122, "RTM_GETTUNNEL"),
];

/// Name of a message type, e.g. `RTM_NEWLINK`; unknown types by number.
pub fn msg_type_name(protocol: u16, ty: u16) -> String {
    match ty {
        NLMSG_NOOP => return "NLMSG_NOOP".into(),
        NLMSG_ERROR => return "NLMSG_ERROR".into(),
        NLMSG_DONE => return "NLMSG_DONE".into(),
        _ => {}
    }
    if protocol == NETLINK_ROUTE
        && let Some((_, n)) = RTM_NAMES.iter().find(|(t, _)| *t == ty) {
            return (*n).into();
        }
    if protocol == NETLINK_NETFILTER {
        return nfgen::nf_type_name(ty);
    }
    format!("{}:{ty}", protocol_name(protocol))
}

/// Parses `RTM_NEWLINK,RTM_DELADDR` into rtnetlink type numbers.
pub fn parse_types(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let up = t.to_ascii_uppercase();
            let up = if up.starts_with("RTM_") { up } else { format!("RTM_{up}") };
            RTM_NAMES
                .iter()
                .find(|(_, n)| *n == up)
                .map(|(v, _)| *v)
                .ok_or_else(|| format!("unknown message type {t:?} (expected names like RTM_NEWLINK)"))
        })
        .collect()
}

/// GET and dump requests change nothing; the audit hides them by default.
pub fn is_get(protocol: u16, ty: u16, flags: u16) -> bool {
    if protocol == NETLINK_ROUTE && ty >= 16 {
        // rtnetlink: NEW=0, DEL=1, GET=2, SET=3 within each group of four.
        return (ty - 16) % 4 == 2;
    }
    if protocol == NETLINK_NETFILTER {
        return nfgen::nf_is_get(ty);
    }
    flags & (NLM_F_ROOT | NLM_F_MATCH) == (NLM_F_ROOT | NLM_F_MATCH) && flags & NLM_F_CREATE == 0
}

pub fn flag_names(protocol: u16, ty: u16, flags: u16) -> Vec<&'static str> {
    let mut v = Vec::new();
    let base = [(NLM_F_REQUEST, "request"), (0x2, "multi"), (NLM_F_ACK, "ack"), (NLM_F_ECHO, "echo")];
    for (bit, n) in base {
        if flags & bit != 0 {
            v.push(n);
        }
    }
    let get = is_get(protocol, ty, flags);
    let ext: &[(u16, &str)] = if get {
        &[(NLM_F_ROOT, "root"), (NLM_F_MATCH, "match"), (0x400, "atomic")]
    } else {
        &[(NLM_F_REPLACE, "replace"), (NLM_F_EXCL, "excl"), (NLM_F_CREATE, "create"), (NLM_F_APPEND, "append")]
    };
    for (bit, n) in ext {
        if flags & bit != 0 {
            v.push(n);
        }
    }
    v
}

/// `EEXIST` for 17.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        1 => "EPERM", 2 => "ENOENT", 3 => "ESRCH", 4 => "EINTR", 5 => "EIO", 6 => "ENXIO",
        7 => "E2BIG", 9 => "EBADF", 11 => "EAGAIN", 12 => "ENOMEM", 13 => "EACCES", 14 => "EFAULT",
        16 => "EBUSY", 17 => "EEXIST", 19 => "ENODEV", 22 => "EINVAL", 23 => "ENFILE", 24 => "EMFILE",
        28 => "ENOSPC", 34 => "ERANGE", 36 => "ENAMETOOLONG", 39 => "ENOTEMPTY", 61 => "ENODATA",
        71 => "EPROTO", 75 => "EOVERFLOW", 90 => "EMSGSIZE", 93 => "EPROTONOSUPPORT",
        95 => "EOPNOTSUPP", 97 => "EAFNOSUPPORT", 98 => "EADDRINUSE", 99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN", 101 => "ENETUNREACH", 105 => "ENOBUFS", 110 => "ETIMEDOUT",
        113 => "EHOSTUNREACH", 125 => "ECANCELED",
        _ => "E?",
    }
}

/// `File exists` for 17.
pub fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string().split(" (os error").next().unwrap_or_default().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sys::nlmsg::build::{self, attr};

    fn msg(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        build::message(ty, flags, seq, 0, body)
    }

    /// The message of issue 8: an unprivileged RTM_NEWLINK whose bareudp
    /// IFLA_BAREUDP_SRCPORT_MIN has 1 byte where netlink-packet-route
    /// 0.34 copies 2 without checking (and panics).
    pub const BAREUDP_PANIC: &str = "3c000000100001040100000000000000000000000000000000000000000000001c0012000c00010062617265756470000c0002000500030001000000";

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn splits_batches() {
        let mut buf = Vec::new();
        for seq in 1..=50 {
            buf.extend(msg(16, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, seq, &[0; 16]));
        }
        let msgs = split_messages(NETLINK_ROUTE, &buf, buf.len());
        assert_eq!(msgs.len(), 50);
        assert_eq!(msgs[49].header.seq, 50);
        assert!(msgs.iter().all(|m| !m.truncated && !m.is_malformed() && m.decoded.error.is_none()));
    }

    #[test]
    fn junk_never_panics_and_never_loops() {
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = split_messages(NETLINK_ROUTE, &junk, junk.len());
            let _ = split_messages(NETLINK_ROUTE, &junk, junk.len() + 100);
            let _ = parse_acks(&junk);
        }
    }

    #[test]
    fn bytes_that_are_no_message_are_malformed_not_dropped() {
        // A length shorter than the header: the kernel stops there, and so
        // do we, but the bytes are reported.
        let msgs = split_messages(NETLINK_ROUTE, &[0; 32], 32);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].is_malformed());
        assert_eq!(msgs[0].raw.as_deref(), Some(&[0u8; 32][..]));
        assert!(msgs[0].decoded.error.as_deref().is_some_and(|e| e.contains("less than the header")), "{:?}", msgs[0].decoded);
        // A length longer than what was sent (and captured whole).
        let mut m = msg(16, 1, 7, &[0; 40]);
        m.truncate(30);
        let msgs = split_messages(NETLINK_ROUTE, &m, m.len());
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].is_malformed() && !msgs[0].truncated);
        assert_eq!(msgs[0].header.seq, 7);
        assert!(msgs[0].decoded.error.as_deref().is_some_and(|e| e.contains("only 30 bytes were sent")));
        // Bytes after the last message, too few for a header.
        let mut m = msg(16, 1, 8, &[0; 16]);
        m.extend_from_slice(&[1, 2, 3, 4, 5]);
        let msgs = split_messages(NETLINK_ROUTE, &m, m.len());
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].is_malformed());
        assert_eq!(msgs[1].raw.as_deref(), Some(&[1u8, 2, 3, 4, 5][..]));
        assert_eq!(msgs[1].header, NlHeader { len: 0x04030201, ..Default::default() }, "the whole fields there are read");
    }

    #[test]
    fn the_bareudp_message_is_malformed_with_its_bytes() {
        let m = unhex(BAREUDP_PANIC);
        assert_eq!(m.len(), 60);
        let msgs = split_messages(NETLINK_ROUTE, &m, m.len());
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].is_malformed());
        assert_eq!(msgs[0].raw.as_deref(), Some(&m[..]));
        assert_eq!(msgs[0].header.msg_type, 16);
        let e = msgs[0].decoded.error.as_deref().expect("error");
        assert!(e.contains("bareudp") || e.contains("BAREUDP"), "{e}");
    }

    #[test]
    fn an_attribute_shorter_than_its_header_makes_the_message_malformed() {
        let m = unhex("28000000100005000300000000000000000000000000000000000000000000000300030061626364");
        let msgs = split_messages(NETLINK_ROUTE, &m, m.len());
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].is_malformed());
        let e = msgs[0].decoded.error.as_deref().expect("error");
        assert!(e.contains("NLA"), "{e}");
    }

    #[test]
    fn a_message_longer_than_the_capture_is_truncated_with_its_real_length() {
        // RTM_NEWLINK: ifinfomsg, IFLA_IFNAME, then 20,000 bytes of an unknown attribute.
        let mut body = vec![0u8; 16];
        body.extend(attr(3, b"big0\0"));
        body.extend(attr(0x7ff, &[0xaa; 20000]));
        let m = msg(16, NLM_F_REQUEST | NLM_F_ACK, 9, &body);
        let cap = &m[..16384];
        let msgs = split_messages(NETLINK_ROUTE, cap, m.len());
        assert_eq!(msgs.len(), 1);
        let t = &msgs[0];
        assert!(t.truncated && !t.is_malformed());
        assert_eq!(t.header.len as usize, m.len());
        assert_eq!(t.captured_len, 16384);
        // Decoded as far as its whole attributes go.
        assert_eq!(t.decoded.attrs["ifname"], "big0");
        assert_eq!(t.decoded.error, None);

        // Cut exactly between two messages: the second is reported missing.
        let one = msg(16, NLM_F_REQUEST, 1, &[0; 16]);
        let mut two = one.clone();
        two.extend(msg(16, NLM_F_REQUEST, 2, &[0; 16]));
        let msgs = split_messages(NETLINK_ROUTE, &two[..one.len()], two.len());
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].truncated);
        assert!(msgs[1].truncated && msgs[1].captured_len == 0);
        assert_eq!(msgs[1].header.len as usize, two.len() - one.len());
        // Cut inside the second header.
        let msgs = split_messages(NETLINK_ROUTE, &two[..one.len() + 10], two.len());
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].truncated && msgs[1].captured_len == 10);
        assert_eq!(msgs[1].header.msg_type, 16, "the fields captured whole are read");
    }

    #[test]
    fn whole_attributes_stop_before_a_cut_one() {
        let mut body = vec![0u8; 16];
        body.extend(attr(3, b"eth0\0"));
        let whole = body.len();
        body.extend(attr(4, &[0; 100]));
        assert_eq!(whole_attributes(NETLINK_ROUTE, 16, &body[..whole + 50]), whole);
        assert_eq!(whole_attributes(NETLINK_ROUTE, 16, &body), body.len());
        assert_eq!(whole_attributes(NETLINK_ROUTE, 16, &body[..10]), 10, "shorter than the fixed header");
        assert_eq!(whole_attributes(NETLINK_XFRM, 16, &body[..30]), 30, "unknown layout: all of it");
    }

    #[test]
    fn reads_acks_with_extack() {
        // NLMSG_ERROR: error=-17, echoed header (capped), then NLMSGERR_ATTR_MSG.
        let mut body = Vec::new();
        body.extend_from_slice(&(-17i32).to_ne_bytes());
        body.extend(msg(16, 5, 42, &[])[..16].to_vec());
        let text = b"File exists here\0";
        let alen = (4 + text.len()) as u16;
        body.extend_from_slice(&alen.to_ne_bytes());
        body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        body.extend_from_slice(text);
        let buf = msg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 42, &body);
        let acks = parse_acks(&buf);
        assert_eq!(acks, vec![Ack { seq: 42, errno: 17, extack: Some("File exists here".into()), echoed: msg(16, 5, 42, &[])[..16].to_vec() }]);
        assert_eq!(errno_name(17), "EEXIST");
        assert_eq!(errno_text(17), "File exists");
    }

    /// An answer to `request` as the kernel builds it: error `errno`, the
    /// request's header only when `capped`, else the whole request.
    fn answer(request: &[u8], errno: i32, capped: bool) -> Ack {
        let mut body = errno.to_ne_bytes().to_vec();
        body.extend_from_slice(if capped { &request[..16] } else { request });
        let acks = parse_acks(&msg(NLMSG_ERROR, if capped { NLM_F_CAPPED } else { 0 }, 9, &body));
        assert_eq!(acks.len(), 1);
        acks.into_iter().next().expect("one answer")
    }

    #[test]
    fn an_echo_that_differs_from_the_captured_request_is_seen() {
        let sent = msg(16, NLM_F_REQUEST | NLM_F_ACK, 9, &{
            let mut b = vec![0u8; 16];
            b.extend(attr(3, b"eth0\0"));
            b
        });
        // The kernel acted on what was captured: no difference, capped or not.
        assert!(!answer(&sent, 0, true).differs_from(&sent));
        assert!(!answer(&sent, -22, false).differs_from(&sent));
        // Another thread changed the type between the capture and the
        // kernel's copy: the header differs.
        let mut acted = sent.clone();
        acted[4] = 17; // RTM_DELLINK
        assert!(answer(&acted, 0, true).differs_from(&sent));
        // Only an attribute changed: seen when the kernel echoes the body
        // (an error), not in a capped echo (success: the header alone).
        let mut acted = sent.clone();
        let at = acted.len() - 4;
        acted[at] = b'X';
        assert!(answer(&acted, -19, false).differs_from(&sent));
        assert!(!answer(&acted, 0, true).differs_from(&sent));
        // An echo cut by the answer's capture is compared as far as it goes.
        let mut long = answer(&sent, -22, false);
        long.echoed.truncate(20);
        assert!(!long.differs_from(&sent));
        // An answer too short to hold a header claims nothing.
        assert!(!Ack { seq: 9, errno: 0, extack: None, echoed: vec![1, 2, 3] }.differs_from(&sent));
    }

    #[test]
    fn names_and_gets() {
        assert_eq!(msg_type_name(NETLINK_ROUTE, 16), "RTM_NEWLINK");
        assert_eq!(msg_type_name(NETLINK_NETFILTER, 2560), "NFT_MSG_NEWTABLE");
        assert_eq!(msg_type_name(NETLINK_XFRM, 16), "xfrm:16");
        assert!(is_get(NETLINK_ROUTE, 18, NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH));
        assert!(!is_get(NETLINK_ROUTE, 16, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL));
        assert_eq!(parse_types("RTM_NEWLINK,deladdr").expect("types"), vec![16, 21]);
        assert!(parse_types("RTM_BOGUS").is_err());
        assert_eq!(flag_names(NETLINK_ROUTE, 16, 0x605), vec!["request", "ack", "excl", "create"]);
        assert_eq!(parse_protocols("route,netfilter").expect("p"), Some(vec![0, 12]));
        assert_eq!(parse_protocols("all").expect("p"), None);
    }
}
