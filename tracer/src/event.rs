//! Raw records from the ring buffer: the fixed header and the payload bytes,
//! split without `transmute` and without trusting lengths the bytes claim.

use bytes::Bytes;
use tracer_common::{EventHeader, EventKind};

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
}

/// Reads a `T` from the front of `bytes` (unaligned), if it is long enough.
pub fn read_pod<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data type from
    // tracer-common (every bit pattern is valid for it).
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

impl RawEvent {
    pub fn parse(record: &[u8]) -> Result<Self, RawEventError> {
        let header: EventHeader = read_pod(record).ok_or(RawEventError::Short(record.len()))?;
        let kind = EventKind::try_from(header.kind).map_err(RawEventError::UnknownKind)?;
        let rest = &record[size_of::<EventHeader>()..];
        let n = (header.payload_len as usize).min(rest.len());
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
        let mut rec = bytes_of(&header(EventKind::NetlinkSend as u32, 3));
        rec.extend_from_slice(&[1, 2, 3, 4]);
        let ev = RawEvent::parse(&rec).expect("parse");
        assert_eq!(ev.kind, EventKind::NetlinkSend);
        assert_eq!((ev.tgid(), ev.tid(), ev.uid()), (1234, 1235, 7));
        assert_eq!(ev.comm(), "ip");
        assert_eq!(&ev.payload[..], &[1, 2, 3]);
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(RawEvent::parse(&[0; 10]), Err(RawEventError::Short(10))));
        let rec = bytes_of(&header(0xdead, 0));
        assert!(matches!(RawEvent::parse(&rec), Err(RawEventError::UnknownKind(0xdead))));
        // A payload_len larger than the record is clamped, not trusted.
        let rec = bytes_of(&header(EventKind::Packet as u32, 1000));
        assert_eq!(RawEvent::parse(&rec).expect("parse").payload.len(), 0);
    }
}
