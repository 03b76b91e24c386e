//! `-w FILE`: packets as pcapng, written with the pcap-file crate, to a
//! file, FIFO or standard output that [`super::capfile`] opened; the
//! frames of `tracer packets` and of `tracer drops` alike ([`Frame`]).
//!
//! One interface description block per (namespace, interface), named like
//! `lab-a/eth0`, with nanosecond timestamps (`if_tsresol` = 9); each
//! enhanced packet block carries the direction in its flags word (when the
//! frame has one) and a comment naming the namespace and the container,
//! and what the capability adds (a drop's reason and function). Every interface is
//! declared as Ethernet (L3 devices get a zeroed Ethernet header), because
//! libpcap, and so tcpdump, refuses a file whose interfaces differ in link
//! type. When the reader of a pipe goes away (EPIPE), writing stops and
//! [`PcapngOut::reader_gone`] says so: the tracer then stops cleanly.
//! With `-C`/`-G`/`-W` ([`super::rotate`]) a new file is started, with its
//! own section and interface blocks, when the rotation says so.

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

use super::{
    capfile,
    rotate::{Next, Rotator},
};
use crate::ns::NetnsId;

/// One frame to write, wherever it was captured.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    pub wall_ns: u64,
    /// The interface's namespace, with the container that owns it.
    pub netns: &'a NetnsId,
    pub ifindex: u32,
    pub ifname: &'a str,
    /// Length on the wire.
    pub len: u32,
    /// Whether `data` starts with an Ethernet header (else with IP).
    pub ethernet: bool,
    pub data: &'a [u8],
    /// `DIR_INGRESS` or egress, when the frame was seen going one way.
    pub direction: Option<u8>,
    /// `key=value` words for the comment after the interface's name.
    pub note: Option<Cow<'a, str>>,
}

/// EPB flags, bits 0-1: the direction (RFC draft-ietf-opsawg-pcapng, 4.3.1).
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

#[derive(Debug, thiserror::Error)]
pub enum PcapngError {
    #[error("cannot write the pcapng file: {0}")]
    Write(#[from] pcap_file::PcapError),
    #[error("cannot write the pcapng file: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Rotate(#[from] capfile::CaptureError),
}

pub struct PcapngOut {
    w: PcapNgWriter<BufWriter<File>>,
    /// (netns inode, ifindex) -> interface id in the file.
    ids: HashMap<(u64, u32), u32>,
    snaplen: u32,
    /// Packets handed to the file or pipe (by a successful flush).
    pub packets: u64,
    /// Packets written since the last flush.
    buffered: u64,
    /// The reader of a pipe or FIFO closed it: nothing more is written.
    pub reader_gone: bool,
    rotator: Option<Box<Rotator>>,
    /// `-G` with `-W`: the last file is complete; nothing more is written.
    pub files_done: bool,
    /// Files started (1 without rotation).
    pub files: u32,
}

fn broken_pipe(e: &PcapngError) -> bool {
    let io = match e {
        PcapngError::Io(e) | PcapngError::Write(pcap_file::PcapError::IoError(e)) => e,
        PcapngError::Write(_) | PcapngError::Rotate(_) => return false,
    };
    io.kind() == io::ErrorKind::BrokenPipe
}

impl PcapngOut {
    /// Writes the section header to `file` (and flushes it, so that a
    /// reader on a pipe sees a valid stream at once).
    pub fn new(file: File, snaplen: u32) -> Result<Self, PcapngError> {
        // Room for a VLAN tag put back or an Ethernet header made up.
        let mut out = Self {
            w: Self::writer(file)?,
            ids: HashMap::new(),
            snaplen: snaplen + 18,
            packets: 0,
            buffered: 0,
            reader_gone: false,
            rotator: None,
            files_done: false,
            files: 1,
        };
        out.flush()?;
        Ok(out)
    }

    /// Rotates as `r` says from now on (the first file is the one given to [`Self::new`]).
    pub fn rotating(mut self, r: Rotator) -> Self {
        self.rotator = Some(Box::new(r));
        self
    }

    /// Restarts `-G`'s clock for the current file: the capture begins now.
    pub fn start_period(&mut self) {
        if let Some(r) = &mut self.rotator {
            r.start_period();
        }
    }

    fn writer(file: File) -> Result<PcapNgWriter<BufWriter<File>>, PcapngError> {
        let section = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![
                SectionHeaderOption::UserApplication(Cow::Owned(format!("tracer {}", env!("CARGO_PKG_VERSION")))),
                SectionHeaderOption::OS(Cow::Owned(format!("Linux {}", crate::sys::kernel_release()))),
            ],
            ..Default::default()
        };
        Ok(PcapNgWriter::with_section_header(BufWriter::new(file), section)?)
    }

    /// Starts the next file when the rotation says so.
    fn rotate(&mut self) -> Result<(), PcapngError> {
        let Some(r) = &mut self.rotator else { return Ok(()) };
        let len = if r.rotation.size.is_some() {
            let buffered = self.w.get_ref().buffer().len() as u64;
            self.w.get_ref().get_ref().metadata()?.len() + buffered
        } else {
            0
        };
        match r.next(len) {
            Next::Same => Ok(()),
            Next::Stop => {
                self.files_done = true;
                Ok(())
            }
            Next::Open(path) => {
                self.flush()?;
                let file = match capfile::open_now(&capfile::Target::Path(path.clone()))? {
                    capfile::Opened::File(f) => f,
                    capfile::Opened::NoReader => {
                        return Err(capfile::CaptureError::Open { path: path.display().to_string(), source: io::ErrorKind::WouldBlock.into() }.into());
                    }
                };
                self.w = Self::writer(file)?;
                self.ids.clear();
                self.files += 1;
                Ok(())
            }
        }
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

    fn interface_id(&mut self, e: &Frame<'_>) -> Result<u32, PcapngError> {
        let key = (e.netns.inode, e.ifindex);
        if let Some(&id) = self.ids.get(&key) {
            return Ok(id);
        }
        let id = self.ids.len() as u32;
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(format!("{}/{}", e.netns.label(), e.ifname))),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                    "{} in netns {} (inode {}), ifindex {}",
                    e.ifname,
                    e.netns.name.as_deref().unwrap_or("-"),
                    e.netns.inode,
                    e.ifindex
                ))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.w.write_pcapng_block(idb)?;
        self.ids.insert(key, id);
        Ok(id)
    }

    pub fn write(&mut self, e: &Frame<'_>) -> Result<(), PcapngError> {
        if self.reader_gone {
            return Ok(());
        }
        let r = self.write_block(e);
        self.unless_gone(r)
    }

    fn write_block(&mut self, e: &Frame<'_>) -> Result<(), PcapngError> {
        self.rotate()?;
        if self.files_done {
            return Ok(());
        }
        let interface_id = self.interface_id(e)?;
        let (data, original_len) = if e.ethernet {
            (Cow::Borrowed(e.data), e.len)
        } else {
            (Cow::Owned(super::decode::fake_ethernet(e.data)), e.len + 14)
        };
        let container = e.netns.owner.as_ref().map_or("-", |c| c.label());
        let netns = match &e.netns.name {
            Some(n) => n.as_str(),
            None if e.netns.host => "host",
            None => "-",
        };
        let mut comment = format!("netns={netns} inode={} container={} ifname={}", e.netns.inode, container, e.ifname);
        let mut options = Vec::with_capacity(2);
        if let Some(d) = e.direction {
            let (flags, name) = if d == DIR_INGRESS { (EPB_INBOUND, "ingress") } else { (EPB_OUTBOUND, "egress") };
            comment.push_str(" direction=");
            comment.push_str(name);
            options.push(EnhancedPacketOption::Flags(flags));
        }
        if let Some(n) = &e.note {
            comment.push(' ');
            comment.push_str(n);
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

/// A capture that kept no packet still names one interface: libpcap (so
/// tcpdump) refuses a pcapng file without any interface description block,
/// and "no packet matched" must read as an empty capture, not a broken one.
impl Drop for PcapngOut {
    fn drop(&mut self) {
        if !self.ids.is_empty() || self.reader_gone {
            return;
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("none")),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed("no packet was kept")),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        // Best effort: the file's fate was reported by the last flush.
        if self.w.write_pcapng_block(idb).is_ok() {
            let _ = self.w.get_mut().flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Read, os::fd::OwnedFd};

    fn packet() -> (NetnsId, Vec<u8>) {
        (NetnsId { inode: 1, name: Some("n".into()), ..Default::default() }, vec![0u8; 60])
    }

    fn frame<'a>(ns: &'a NetnsId, data: &'a [u8]) -> Frame<'a> {
        Frame { wall_ns: 1, netns: ns, ifindex: 2, ifname: "eth0", len: 60, ethernet: true, data, direction: Some(DIR_INGRESS), note: None }
    }

    #[test]
    fn a_pipe_gets_the_header_at_once_and_its_closing_ends_the_output() {
        let (mut r, w) = io::pipe().expect("pipe");
        let mut out = PcapngOut::new(File::from(OwnedFd::from(w)), 128).expect("header");
        // The section header block is there before any packet.
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).expect("read");
        assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a]);
        let (ns, data) = packet();
        out.write(&frame(&ns, &data)).expect("write");
        out.flush().expect("flush");
        assert!(!out.reader_gone);
        drop(r);
        out.write(&frame(&ns, &data)).expect("a closed pipe is not an error");
        out.flush().expect("flush");
        assert!(out.reader_gone);
        assert_eq!(out.packets, 1);
    }

    /// The interface blocks of a pcapng file, read back with pcap-file.
    fn interfaces(path: &std::path::Path) -> Vec<String> {
        let mut r = pcap_file::pcapng::PcapNgReader::new(File::open(path).expect("open")).expect("a pcapng file");
        let mut names = Vec::new();
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::InterfaceDescription(idb) = b.expect("a block") {
                for o in idb.options {
                    if let InterfaceDescriptionOption::IfName(n) = o {
                        names.push(n.into_owned());
                    }
                }
            }
        }
        names
    }

    #[test]
    fn an_empty_capture_still_names_an_interface_and_a_full_one_only_its_own() {
        let dir = std::env::temp_dir().join(format!("tracer-pcapng-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (empty, full) = (dir.join("empty.pcapng"), dir.join("full.pcapng"));
        drop(PcapngOut::new(File::create(&empty).expect("create"), 128).expect("header"));
        assert_eq!(interfaces(&empty), vec!["none".to_string()]);
        let mut out = PcapngOut::new(File::create(&full).expect("create"), 128).expect("header");
        let (ns, data) = packet();
        out.write(&frame(&ns, &data)).expect("write");
        drop(out);
        assert_eq!(interfaces(&full), vec!["n/eth0".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_frame_without_direction_has_no_flags_and_its_note_in_the_comment() {
        use pcap_file::pcapng::{Block, PcapNgReader};
        let dir = std::env::temp_dir().join(format!("tracer-pcapng-note-{}", std::process::id()));
        let (ns, data) = packet();
        {
            let mut out = PcapngOut::new(File::create(&dir).expect("create"), 128).expect("header");
            let f = Frame { direction: None, note: Some("reason=NETFILTER_DROP function=nf_hook_slow+0x9c".into()), ..frame(&ns, &data) };
            out.write(&f).expect("write");
            out.write(&frame(&ns, &data)).expect("write");
            out.flush().expect("flush");
            assert_eq!(out.packets, 2);
        }
        let mut r = PcapNgReader::new(File::open(&dir).expect("open")).expect("reader");
        let mut epbs = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(e) = b.expect("block") {
                epbs.push(e.into_owned());
            }
        }
        let _ = std::fs::remove_file(&dir);
        assert_eq!(epbs.len(), 2);
        let comment = |e: &EnhancedPacketBlock<'_>| {
            e.options.iter().find_map(|o| if let EnhancedPacketOption::Comment(c) = o { Some(c.to_string()) } else { None }).unwrap_or_default()
        };
        let has_flags = |e: &EnhancedPacketBlock<'_>| e.options.iter().any(|o| matches!(o, EnhancedPacketOption::Flags(_)));
        assert_eq!(comment(&epbs[0]), "netns=n inode=1 container=- ifname=eth0 reason=NETFILTER_DROP function=nf_hook_slow+0x9c");
        assert!(!has_flags(&epbs[0]), "a dropped packet went no way");
        assert_eq!(comment(&epbs[1]), "netns=n inode=1 container=- ifname=eth0 direction=ingress");
        assert!(has_flags(&epbs[1]));
    }
}
