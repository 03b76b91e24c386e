//! Netlink on the wire, walked one way for everyone: the messages of a
//! buffer ([`messages`]) and the attributes of a message ([`attrs`]); and
//! the request socket every part of the tracer that asks the kernel
//! something over netlink uses ([`NlSocket`]).
//!
//! Every byte walked here may come from another user: the netlink audit
//! reads other processes' requests, and dumps list other users' links and
//! filters. A walk never reads past its buffer and ends, quietly, at the
//! first piece that does not fit; what it yielded before stays good.

use std::{io, os::fd::AsRawFd, time::Duration};

use netlink_sys::{Socket, SocketAddr};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_DUMP_INTR`: the table changed while it was dumped.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `nlattr` type bits that are flags (nested, byte order), not the type.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// Netlink's 4-byte alignment of messages and attributes.
pub const fn align(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlHeader {
    pub len: u32,
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl NlHeader {
    pub const SIZE: usize = 16;

    /// The fields that `b` holds whole, zeros for the others.
    pub fn parse_partial(b: &[u8]) -> Self {
        let u32_at = |o: usize| b.get(o..o + 4).map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
        let u16_at = |o: usize| b.get(o..o + 2).map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]));
        Self { len: u32_at(0), msg_type: u16_at(4), flags: u16_at(6), seq: u32_at(8), pid: u32_at(12) }
    }

    pub fn parse(b: &[u8]) -> Option<Self> {
        (b.len() >= Self::SIZE).then(|| Self::parse_partial(b))
    }
}

/// One message of a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub header: NlHeader,
    /// The message's bytes, header included, as far as the buffer holds them.
    pub bytes: &'a [u8],
    /// Its payload, as far as the buffer holds it.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// Whether the buffer holds all of it (the last message of a buffer
    /// that was cut, e.g. a capture, does not).
    pub fn is_whole(&self) -> bool {
        self.bytes.len() == self.header.len as usize
    }
}

/// The messages of a buffer, in order: see [`messages`].
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    buf: &'a [u8],
    off: usize,
    ended: bool,
}

impl<'a> Messages<'a> {
    /// What is left after the messages walked so far: bytes that are no
    /// message once the walk has ended (empty when the buffer was all
    /// messages).
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.off..).unwrap_or_default()
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        if self.ended {
            return None;
        }
        let rest = self.rest();
        let header = NlHeader::parse(rest)?;
        let len = header.len as usize;
        if len < NlHeader::SIZE {
            return None;
        }
        let bytes = &rest[..len.min(rest.len())];
        if len > rest.len() {
            // Cut: the last message, and the walk ends with it.
            self.ended = true;
            self.off = self.buf.len();
        } else {
            self.off = self.off.saturating_add(align(len));
        }
        Some(Message { header, bytes, payload: &bytes[NlHeader::SIZE..] })
    }
}

/// The messages of `buf`. The walk ends at bytes too few for a header or a
/// header whose length is shorter than itself ([`Messages::rest`] has
/// them); a message longer than what is left is the last, cut
/// ([`Message::is_whole`] says so).
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, off: 0, ended: false }
}

/// The attributes of `b` as (type without its flag bits, payload), up to
/// the first that does not fit.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let h = b.get(..4)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        let payload = b.get(4..len)?;
        b = b.get(align(len)..).unwrap_or_default();
        Some((ty, payload))
    })
}

/// How many bytes at the start of `b` are whole attributes.
pub fn whole_attrs_len(b: &[u8]) -> usize {
    let mut off = 0usize;
    for (_, payload) in attrs(b) {
        off = off.saturating_add(align(4 + payload.len())).min(b.len());
    }
    off
}

/// The payload of the first attribute of type `kind` in `b`.
pub fn find_attr(b: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(b).find(|(t, _)| *t == kind).map(|(_, v)| v)
}

/// A NUL-terminated string attribute, cut at its first NUL, invalid UTF-8
/// as U+FFFD.
pub fn attr_str(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// A netlink socket for requests (subscribed to nothing), answering for
/// the namespace the calling thread was in when it was opened.
pub struct NlSocket {
    sock: Socket,
    seq: u32,
}

/// How a request went, besides its answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exchanged {
    /// `NLM_F_DUMP_INTR` on an answer: the table changed during the dump.
    pub interrupted: bool,
}

impl NlSocket {
    /// A socket of netlink `protocol` whose answers must come within
    /// `timeout`: a namespace being torn down must not hang the caller.
    pub fn open(protocol: isize, timeout: Duration) -> io::Result<Self> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
        };
        // SAFETY: setsockopt on our own fd with a correctly sized timeval.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { sock, seq: 0 })
    }

    /// Strict checking of requests (`NETLINK_GET_STRICT_CHK`), which makes
    /// the kernel honour a target nsid in dumps.
    pub fn strict(&mut self) -> io::Result<()> {
        self.sock.set_netlink_get_strict_chk(true)
    }

    /// The cookie of the socket's namespace (`SO_NETNS_COOKIE`, Linux 5.14).
    pub fn cookie(&self) -> Option<u64> {
        // SAFETY: the socket's fd stays open while `self` is borrowed.
        super::netns::socket_cookie(unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sock.as_raw_fd()) })
    }

    /// The sequence number for the next request.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one request (`datagram`, sequence number `seq`) and hands its
    /// answers to `answer`: up to `NLMSG_DONE` for a dump, else the first
    /// answer. The kernel's `NLMSG_ERROR` ends it: an ack, or the errno as
    /// an error. Answers to other sequence numbers are skipped.
    pub fn exchange(&mut self, datagram: &[u8], seq: u32, dump: bool, mut answer: impl FnMut(Message<'_>)) -> io::Result<Exchanged> {
        self.sock.send_to(datagram, &SocketAddr::new(0, 0), 0)?;
        let mut out = Exchanged::default();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            if data.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink socket closed"));
            }
            for m in messages(&data) {
                if m.header.seq != seq {
                    continue;
                }
                if m.header.flags & NLM_F_DUMP_INTR != 0 {
                    out.interrupted = true;
                }
                match m.header.msg_type {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = m.payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return if code == 0 { Ok(out) } else { Err(io::Error::from_raw_os_error(code.saturating_neg())) };
                    }
                    _ => {
                        answer(m);
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

/// Builders of raw messages, for the unit tests of every decoder.
#[cfg(test)]
pub(crate) mod build {
    use super::{NlHeader, align};

    /// A message: `nlmsghdr` then `body`, padded.
    pub fn message(ty: u16, flags: u16, seq: u32, pid: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(align(NlHeader::SIZE + body.len()));
        v.extend_from_slice(&u32::try_from(NlHeader::SIZE + body.len()).unwrap_or(u32::MAX).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v.extend_from_slice(body);
        v.resize(align(v.len()), 0);
        v
    }

    /// An attribute: `nlattr` then `payload`, padded.
    pub fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(align(4 + payload.len()));
        v.extend_from_slice(&u16::try_from(4 + payload.len()).unwrap_or(u16::MAX).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(align(v.len()), 0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::{build::attr, *};

    fn msg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        build::message(ty, 0, seq, 0, body)
    }

    #[test]
    fn messages_are_walked_in_order_and_a_cut_one_ends_the_walk() {
        let mut buf = msg(16, 1, &[1, 2, 3]);
        buf.extend(msg(17, 2, &[]));
        let whole = buf.len();
        buf.extend(msg(18, 3, &[9; 40]));
        let all: Vec<(u16, u32, usize, bool)> = messages(&buf).map(|m| (m.header.msg_type, m.header.seq, m.payload.len(), m.is_whole())).collect();
        // The first payload is 3 bytes and its padding: 4 of the buffer.
        assert_eq!(all, vec![(16, 1, 3, true), (17, 2, 0, true), (18, 3, 40, true)]);
        let cut = &buf[..whole + 30];
        let mut it = messages(cut);
        let got: Vec<(u16, usize, bool)> = it.by_ref().map(|m| (m.header.msg_type, m.payload.len(), m.is_whole())).collect();
        assert_eq!(got, vec![(16, 3, true), (17, 0, true), (18, 14, false)]);
        assert!(it.rest().is_empty());
    }

    #[test]
    fn bytes_that_are_no_message_end_the_walk_and_are_left() {
        let mut buf = msg(16, 1, &[]);
        buf.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut it = messages(&buf);
        assert_eq!(it.by_ref().count(), 1);
        assert_eq!(it.rest(), &[1, 2, 3, 4, 5]);
        // A length shorter than the header itself.
        let mut bad = msg(16, 1, &[0; 8]);
        bad[..4].copy_from_slice(&8u32.to_ne_bytes());
        let mut it = messages(&bad);
        assert_eq!(it.next().map(|m| m.header.seq), None);
        assert_eq!(it.rest().len(), bad.len());
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert!(messages(&junk).count() <= 4);
        }
    }

    #[test]
    fn attributes_are_walked_to_the_first_that_does_not_fit() {
        let mut b = attr(3, b"eth0\0");
        b.extend(attr(4 | 0x8000, &1500u32.to_ne_bytes()));
        let whole = b.len();
        b.extend(attr(5, &[0; 20]));
        assert_eq!(attrs(&b).map(|(t, v)| (t, v.len())).collect::<Vec<_>>(), vec![(3, 5), (4, 4), (5, 20)]);
        assert_eq!(find_attr(&b, 4), Some(&1500u32.to_ne_bytes()[..]), "the flag bits are not the type");
        assert_eq!(attr_str(find_attr(&b, 3).expect("name")), "eth0");
        assert_eq!(find_attr(&b, 9), None);
        // Cut inside the third: the first two are whole.
        assert_eq!(whole_attrs_len(&b[..whole + 10]), whole);
        assert_eq!(attrs(&b[..whole + 10]).count(), 2);
        assert_eq!(whole_attrs_len(&b), b.len());
        // A length shorter than an attribute header ends the walk.
        let mut bad = attr(3, b"x");
        bad.extend_from_slice(&[2, 0, 4, 0]);
        bad.extend(attr(4, b"y"));
        assert_eq!(attrs(&bad).count(), 1);
        assert_eq!(attr_str(b"a\xffb\0rest"), "a\u{fffd}b");
    }

    #[test]
    fn a_request_is_answered_by_the_kernel() {
        // RTM_GETLINK dump in the own namespace: no privilege needed.
        let mut s = NlSocket::open(netlink_sys::protocols::NETLINK_ROUTE, Duration::from_secs(2)).expect("socket");
        let seq = s.next_seq();
        let mut req = msg(18, seq, &[0; 16]);
        req[6..8].copy_from_slice(&(0x1u16 | 0x300).to_ne_bytes());
        let mut links = 0;
        s.exchange(&req, seq, true, |m| {
            assert_eq!(m.header.msg_type, 16, "RTM_NEWLINK answers");
            links += 1;
        })
        .expect("dump");
        assert!(links >= 1, "at least lo");
        // An error answer is an error: RTM_GETLINK of an index that does not exist.
        let seq = s.next_seq();
        let mut req = msg(18, seq, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0]);
        req[6..8].copy_from_slice(&0x1u16.to_ne_bytes());
        let e = s.exchange(&req, seq, false, |_| panic!("no answer expected")).expect_err("no such link");
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }
}
