//! `-w FILE`: packets as pcapng, written with the pcap-file crate.
//!
//! One interface description block per (namespace, interface), named like
//! `lab-a/eth0`, with nanosecond timestamps (`if_tsresol` = 9); each
//! enhanced packet block carries the direction in its flags word and a
//! comment naming the namespace and the container. Every interface is
//! declared as Ethernet (L3 devices get a zeroed Ethernet header), because
//! libpcap, and so tcpdump, refuses a file whose interfaces differ in link
//! type.

use std::{
    borrow::Cow,
    collections::HashMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
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
    #[error("cannot create {path}: {source}")]
    Create { path: String, source: io::Error },
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
    pub packets: u64,
}

impl PcapngOut {
    pub fn create(path: &Path, snaplen: u32) -> Result<Self, PcapngError> {
        let file = File::create(path).map_err(|source| PcapngError::Create { path: path.display().to_string(), source })?;
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
        Ok(Self { w, ids: HashMap::new(), snaplen: snaplen + 18, packets: 0 })
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
        let comment = format!(
            "netns={netns} inode={} container={} ifname={} direction={}",
            e.netns_ino,
            container,
            e.ifname,
            e.direction_name()
        );
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(e.wall_ns),
            original_len,
            data,
            options: vec![EnhancedPacketOption::Flags(flags), EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.w.write_pcapng_block(epb)?;
        self.packets += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), PcapngError> {
        self.w.get_mut().flush()?;
        Ok(())
    }
}
