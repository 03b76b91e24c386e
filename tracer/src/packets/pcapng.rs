//! `-w FILE`: packets as pcapng, written with the pcap-file crate, to a
//! file, FIFO or standard output that [`super::capfile`] opened.
//!
//! One interface description block per (namespace, interface), named like
//! `lab-a/eth0`, with nanosecond timestamps (`if_tsresol` = 9); each
//! enhanced packet block carries the direction in its flags word and a
//! comment naming the namespace and the container. Every interface is
//! declared as Ethernet (L3 devices get a zeroed Ethernet header), because
//! libpcap, and so tcpdump, refuses a file whose interfaces differ in link
//! type. When the reader of a pipe goes away (EPIPE), writing stops and
//! [`PcapngOut::reader_gone`] says so: the tracer then stops cleanly.

use std::{
    borrow::Cow,
    collections::HashMap,
    fs::File,
    io::{self, BufWriter, Write},
    time::Duration,
};

use pcap_file::{
    DataLink, Endianness,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};
use tracer_common::packet::DIR_INGRESS;

use super::PacketEvent;

/// EPB flags, bits 0-1: the direction (RFC draft-ietf-opsawg-pcapng, 4.3.1).
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

#[derive(Debug, thiserror::Error)]
pub enum PcapngError {
    #[error("cannot write the pcapng file: {0}")]
    Write(#[from] pcap_file::PcapError),
    #[error("cannot write the pcapng file: {0}")]
    Io(#[from] io::Error),
}

pub struct PcapngOut {
    w: PcapNgWriter<BufWriter<File>>,
    /// (netns inode, ifindex) -> interface id in the file.
    ids: HashMap<(u32, u32), u32>,
    snaplen: u32,
    /// Packets handed to the file or pipe (by a successful flush).
    pub packets: u64,
    /// Packets written since the last flush.
    buffered: u64,
    /// The reader of a pipe or FIFO closed it: nothing more is written.
    pub reader_gone: bool,
}

fn broken_pipe(e: &PcapngError) -> bool {
    let io = match e {
        PcapngError::Io(e) | PcapngError::Write(pcap_file::PcapError::IoError(e)) => e,
        PcapngError::Write(_) => return false,
    };
    io.kind() == io::ErrorKind::BrokenPipe
}

impl PcapngOut {
    /// Writes the section header to `file` (and flushes it, so that a
    /// reader on a pipe sees a valid stream at once).
    pub fn new(file: File, snaplen: u32) -> Result<Self, PcapngError> {
        let section = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![
                SectionHeaderOption::UserApplication(Cow::Owned(format!("tracer {}", env!("CARGO_PKG_VERSION")))),
                SectionHeaderOption::OS(Cow::Owned(format!("Linux {}", crate::sys::kernel_release()))),
            ],
            ..Default::default()
        };
        let w = PcapNgWriter::with_section_header(BufWriter::new(file), section)?;
        // Room for a VLAN tag put back or an Ethernet header made up.
        let mut out = Self { w, ids: HashMap::new(), snaplen: snaplen + 18, packets: 0, buffered: 0, reader_gone: false };
        out.flush()?;
        Ok(out)
    }

    /// `r`, except that a broken pipe ends the output instead of failing.
    fn unless_gone(&mut self, r: Result<(), PcapngError>) -> Result<(), PcapngError> {
        match r {
            Err(e) if broken_pipe(&e) => {
                self.reader_gone = true;
                Ok(())
            }
            r => r,
        }
    }

    fn interface_id(&mut self, e: &PacketEvent) -> Result<u32, PcapngError> {
        let key = (e.netns_ino, e.ifindex);
        if let Some(&id) = self.ids.get(&key) {
            return Ok(id);
        }
        let id = self.ids.len() as u32;
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(format!("{}/{}", e.ns_label(), e.ifname))),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "{} in netns {} (inode {}), ifindex {}",
                    e.ifname,
                    e.netns_name.as_deref().unwrap_or("-"),
                    e.netns_ino,
                    e.ifindex
                ))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.w.write_pcapng_block(idb)?;
        self.ids.insert(key, id);
        Ok(id)
    }

    pub fn write(&mut self, e: &PacketEvent) -> Result<(), PcapngError> {
        self.write_annotated(e, None)
    }

    /// [`Self::write`] with `extra` in place of the direction, in the
    /// packet's comment and flags (`tracer drops`: the reason and the
    /// function; a dropped packet has no direction to tell).
    pub fn write_annotated(&mut self, e: &PacketEvent, extra: Option<&str>) -> Result<(), PcapngError> {
        if self.reader_gone {
            return Ok(());
        }
        let r = self.write_block(e, extra);
        self.unless_gone(r)
    }

    fn write_block(&mut self, e: &PacketEvent, extra: Option<&str>) -> Result<(), PcapngError> {
        let interface_id = self.interface_id(e)?;
        let (data, original_len) = if e.ethernet {
            (Cow::Borrowed(&e.frame[..]), e.len)
        } else {
            (Cow::Owned(super::decode::fake_ethernet(&e.frame)), e.len + 14)
        };
        let flags = if e.direction == DIR_INGRESS { EPB_INBOUND } else { EPB_OUTBOUND };
        let container = e.container_label().unwrap_or("-");
        let netns = match &e.netns_name {
            Some(n) => n.as_str(),
            None if e.host_netns => "host",
            None => "-",
        };
        let mut comment = format!("netns={netns} inode={} container={} ifname={}", e.netns_ino, container, e.ifname);
        let mut options = Vec::new();
        match extra {
            Some(x) => {
                comment.push(' ');
                comment.push_str(x);
            }
            None => {
                comment.push_str(&format!(" direction={}", e.direction_name()));
                options.push(EnhancedPacketOption::Flags(flags));
            }
        }
        options.push(EnhancedPacketOption::Comment(Cow::Owned(comment)));
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(e.wall_ns),
            original_len,
            data,
            options,
        };
        self.w.write_pcapng_block(epb)?;
        self.buffered += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), PcapngError> {
        if self.reader_gone {
            return Ok(());
        }
        let r = self.w.get_mut().flush().map_err(PcapngError::from);
        if r.is_ok() {
            self.packets += std::mem::take(&mut self.buffered);
        }
        self.unless_gone(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Read, os::fd::OwnedFd};

    fn packet() -> PacketEvent {
        let f = vec![0u8; 60];
        PacketEvent {
            wall_ns: 1,
            cpu: 0,
            netns_ino: 1,
            netns_name: Some("n".into()),
            host_netns: false,
            container: None,
            ifindex: 2,
            ifname: "eth0".into(),
            direction: DIR_INGRESS,
            len: 60,
            hash: 0,
            mark: 0,
            ethernet: true,
            decoded: super::super::decode::decode(&f, true),
            frame: f,
        }
    }

    #[test]
    fn a_pipe_gets_the_header_at_once_and_its_closing_ends_the_output() {
        let (mut r, w) = io::pipe().expect("pipe");
        let mut out = PcapngOut::new(File::from(OwnedFd::from(w)), 128).expect("header");
        // The section header block is there before any packet.
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).expect("read");
        assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a]);
        out.write(&packet()).expect("write");
        out.flush().expect("flush");
        assert!(!out.reader_gone);
        drop(r);
        out.write(&packet()).expect("a closed pipe is not an error");
        out.flush().expect("flush");
        assert!(out.reader_gone);
        assert_eq!(out.packets, 1);
    }
}
