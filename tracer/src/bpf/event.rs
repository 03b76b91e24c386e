//! Raw records from the ring buffer: the fixed header and the payload bytes,
//! split without `transmute` and without trusting lengths the bytes claim.

use bytes::Bytes;
use tracer_common::{
    EventHeader, EventKind,
    drops::DropMeta,
    netlink::{NetlinkAck, NetlinkSend},
    packet::PacketMeta,
    tcp::TcpRecord,
};

/// One record, header decoded, payload still raw.
#[derive(Clone, Debug)]
pub struct RawEvent {
    pub header: EventHeader,
    pub kind: EventKind,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawEventError {
    #[error("record of {0} bytes is shorter than the event header")]
    Short(usize),
    #[error("unknown event kind {0:#x}")]
    UnknownKind(u32),
    #[error("{kind:?} record with {len} bytes of payload, less than the {need} its description takes")]
    ShortPayload { kind: EventKind, len: usize, need: usize },
}

/// Reads a `T` from the front of `bytes` (unaligned), if it is long enough.
/// `aya::Pod` is the promise that every bit pattern is a valid `T` (no
/// `bool`, enum or reference inside), which the read needs.
pub fn read_pod<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T: Pod, so any bytes are a valid T.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Bytes of the fixed description every payload of `kind` starts with.
fn fixed_payload(kind: EventKind) -> usize {
    match kind {
        EventKind::NetlinkSend => size_of::<NetlinkSend>(),
        EventKind::NetlinkAck => size_of::<NetlinkAck>(),
        EventKind::Packet => size_of::<PacketMeta>(),
        EventKind::Drop => size_of::<DropMeta>(),
        EventKind::TcpState
        | EventKind::TcpRetransmit
        | EventKind::TcpResetSent
        | EventKind::TcpResetReceived
        | EventKind::TcpRtt
        | EventKind::TcpDestroy => size_of::<TcpRecord>(),
        EventKind::Sock => size_of::<tracer_common::sock::SockEvent>(),
    }
}

impl RawEvent {
    /// Splits a record; one too short for its header or for its kind's
    /// fixed payload struct is an error (counted as `malformed`), so the
    /// decoders' `read_pod` of that struct never fails.
    pub fn parse(record: &[u8]) -> Result<Self, RawEventError> {
        let header: EventHeader = read_pod(record).ok_or(RawEventError::Short(record.len()))?;
        let kind = EventKind::try_from(header.kind).map_err(RawEventError::UnknownKind)?;
        let rest = &record[size_of::<EventHeader>()..];
        let n = (header.payload_len as usize).min(rest.len());
        let need = fixed_payload(kind);
        if n < need {
            return Err(RawEventError::ShortPayload { kind, len: n, need });
        }
        Ok(Self { header, kind, payload: Bytes::copy_from_slice(&rest[..n]) })
    }

    pub fn tgid(&self) -> u32 {
        (self.header.pid_tgid >> 32) as u32
    }

    pub fn tid(&self) -> u32 {
        self.header.pid_tgid as u32
    }

    pub fn uid(&self) -> u32 {
        self.header.uid_gid as u32
    }

    pub fn comm(&self) -> String {
        let c = &self.header.comm;
        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
        String::from_utf8_lossy(&c[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32, payload_len: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"ip");
        EventHeader {
            kind,
            cpu: 1,
            ts_ns: 42,
            pid_tgid: (1234u64 << 32) | 1235,
            uid_gid: 7,
            cgroup_id: 9,
            netns_ino: 4026531840,
            payload_len,
            comm,
        }
    }

    fn bytes_of(h: &EventHeader) -> Vec<u8> {
        // SAFETY: EventHeader is repr(C) POD without padding holes.
        unsafe { std::slice::from_raw_parts(h as *const _ as *const u8, size_of::<EventHeader>()) }.to_vec()
    }

    #[test]
    fn round_trip() {
        let need = size_of::<NetlinkSend>();
        let mut rec = bytes_of(&header(EventKind::NetlinkSend as u32, need as u32 + 3));
        rec.resize(rec.len() + need, 0);
        rec.extend_from_slice(&[1, 2, 3, 4]);
        let ev = RawEvent::parse(&rec).expect("parse");
        assert_eq!(ev.kind, EventKind::NetlinkSend);
        assert_eq!((ev.tgid(), ev.tid(), ev.uid()), (1234, 1235, 7));
        assert_eq!(ev.comm(), "ip");
        assert_eq!(&ev.payload[need..], &[1, 2, 3]);
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(RawEvent::parse(&[0; 10]), Err(RawEventError::Short(10))));
        let rec = bytes_of(&header(0xdead, 0));
        assert!(matches!(RawEvent::parse(&rec), Err(RawEventError::UnknownKind(0xdead))));
        // A payload_len larger than the record is clamped, not trusted.
        let mut rec = bytes_of(&header(EventKind::Packet as u32, 1000));
        rec.extend_from_slice(&[0; size_of::<PacketMeta>() + 5]);
        assert_eq!(RawEvent::parse(&rec).expect("parse").payload.len(), size_of::<PacketMeta>() + 5);
    }

    #[test]
    fn payloads_shorter_than_their_struct_are_rejected() {
        for (kind, need) in [
            (EventKind::NetlinkSend, size_of::<NetlinkSend>()),
            (EventKind::NetlinkAck, size_of::<NetlinkAck>()),
            (EventKind::Packet, size_of::<PacketMeta>()),
        ] {
            // Short in fact, or short by its own payload_len.
            for (claimed, present) in [(need, need - 1), (need - 1, need)] {
                let mut rec = bytes_of(&header(kind as u32, claimed as u32));
                rec.resize(rec.len() + present, 0);
                assert_eq!(
                    RawEvent::parse(&rec).map(|_| ()),
                    Err(RawEventError::ShortPayload { kind, len: need - 1, need }),
                    "{kind:?} {claimed}/{present}"
                );
            }
            let mut rec = bytes_of(&header(kind as u32, need as u32));
            rec.resize(rec.len() + need, 0);
            assert!(RawEvent::parse(&rec).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn read_pod_reads_unaligned_and_refuses_short_input() {
        let mut bytes = vec![0u8; 1 + size_of::<PacketMeta>()];
        bytes[1..5].copy_from_slice(&7u32.to_ne_bytes());
        let meta: PacketMeta = read_pod(&bytes[1..]).expect("long enough");
        assert_eq!(meta.ifindex, 7);
        assert!(read_pod::<PacketMeta>(&bytes[2..]).is_none());
    }
}
