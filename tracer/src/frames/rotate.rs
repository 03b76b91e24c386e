//! `-C`, `-G` and `-W` as tcpdump defines them: the names of the files a
//! rotating capture writes, and when the next one starts.
//!
//! - `-C SIZE`: before writing a packet, a file already larger than SIZE
//!   (millions of bytes; `k`, `m`, `g` suffixes are KiB, MiB, GiB, as in
//!   tcpdump 4.99) is closed and the next opened: `NAME`, `NAME1`,
//!   `NAME2`... With `-W N` the count runs 0..N-1 and wraps (a ring of N
//!   files, overwritten from the first), each number zero-padded to the
//!   digits of N-1 (`NAME0`... `NAME9` for 10).
//! - `-G SECS`: a packet arriving SECS or more after the file was opened
//!   starts a new file; NAME is passed through strftime(3) with the local
//!   time it is opened at. With `-W N` the capture stops after N files.
//!   With `-C` too, the size count restarts at 0 in each period.
//!
//! Every file is a complete pcapng (`super::pcapng` writes the section and
//! interface blocks again), opened as `-w` opens any file (`super::capfile`).

use std::{
    ffi::{CStr, CString},
    path::{Path, PathBuf},
    time::Duration,
};

/// The rotation options; all `None` is a single file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `-C`: bytes.
    pub size: Option<u64>,
    /// `-G`.
    pub every: Option<Duration>,
    /// `-W`.
    pub files: Option<u32>,
}

/// Where rotation stands.
#[derive(Debug)]
pub struct Rotator {
    base: String,
    pub rotation: Rotation,
    /// `-C`'s file number.
    size_count: u32,
    /// `-G`'s file number.
    time_count: u32,
    /// When the current file's period began (Unix nanoseconds: a period
    /// is measured to the nanosecond, not from a whole second as tcpdump's).
    opened_at: i64,
}

/// What to do before writing the next packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Same,
    Open(PathBuf),
    /// `-G` with `-W`: the number of files is reached; stop.
    Stop,
}

/// `-C`'s argument: millions of bytes, or a number with k/m/g.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("-C takes a size in millions of bytes, optionally with k, m or g (e.g. 10, 500k), not {s:?}");
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024u64),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1_000_000),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

/// Digits tcpdump pads `-W N`'s numbers to (those of N-1).
fn pad_digits(files: Option<u32>) -> usize {
    match files {
        Some(n) if n > 1 => (n - 1).to_string().len(),
        _ => 0,
    }
}

const NS: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// strftime(3) of `pattern` at `t` in local time (the pattern as it is
/// when it has no `%` or cannot be formatted).
fn strftime(pattern: &str, t: i64) -> String {
    if !pattern.contains('%') {
        return pattern.to_string();
    }
    let Ok(fmt) = CString::new(pattern) else { return pattern.to_string() };
    // SAFETY: tm is plain data; localtime_r fills it from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let tt: libc::time_t = t;
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return pattern.to_string();
    }
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is writable for its length; fmt is NUL-terminated; tm was filled above.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    if n == 0 {
        return pattern.to_string();
    }
    CStr::from_bytes_until_nul(&buf).map_or_else(|_| pattern.to_string(), |c| c.to_string_lossy().into_owned())
}

impl Rotator {
    pub fn new(base: &Path, rotation: Rotation) -> Self {
        Self { base: base.to_string_lossy().into_owned(), rotation, size_count: 0, time_count: 0, opened_at: now_ns() }
    }

    /// tcpdump's MakeFilename: strftime with `-G`, then the count, padded
    /// with `-W`; the count is left out for the first file without `-W`.
    fn name(&self, count: u32, at: i64) -> PathBuf {
        let base = if self.rotation.every.is_some() { strftime(&self.base, at / NS) } else { self.base.clone() };
        let digits = pad_digits(self.rotation.files.filter(|_| self.rotation.size.is_some()));
        if count == 0 && digits == 0 {
            return PathBuf::from(base);
        }
        PathBuf::from(format!("{base}{count:0digits$}"))
    }

    /// The first file's name (now).
    pub fn first(&mut self) -> PathBuf {
        self.opened_at = now_ns();
        self.name(0, self.opened_at)
    }

    /// The current file's period starts now.
    pub fn start_period(&mut self) {
        self.opened_at = now_ns();
    }

    /// Before a packet: `file_len` is the current file's size so far.
    pub fn next(&mut self, file_len: u64) -> Next {
        self.next_at(file_len, now_ns())
    }

    fn next_at(&mut self, file_len: u64, now: i64) -> Next {
        if let Some(every) = self.rotation.every
            && now.saturating_sub(self.opened_at) >= i64::try_from(every.as_nanos()).unwrap_or(i64::MAX)
        {
            self.time_count += 1;
            if self.rotation.files.is_some_and(|w| self.time_count >= w) {
                return Next::Stop;
            }
            self.size_count = 0;
            self.opened_at = now;
            return Next::Open(self.name(0, now));
        }
        if let Some(size) = self.rotation.size
            && file_len > size
        {
            self.size_count += 1;
            if self.rotation.files.is_some_and(|w| self.size_count >= w) {
                self.size_count = 0;
            }
            return Next::Open(self.name(self.size_count, self.opened_at));
        }
        Next::Same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(size: Option<u64>, every: Option<u64>, files: Option<u32>) -> Rotator {
        Rotator::new(Path::new("/x/cap"), Rotation { size, every: every.map(Duration::from_secs), files })
    }

    #[test]
    fn sizes_as_tcpdump_reads_them() {
        assert_eq!(parse_size("10"), Ok(10_000_000));
        assert_eq!(parse_size("500k"), Ok(512_000));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        for bad in ["", "0", "-1", "1.5", "k", "10x"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_rotation_names_and_ring() {
        let mut plain = r(Some(100), None, None);
        assert_eq!(plain.first(), PathBuf::from("/x/cap"));
        assert_eq!(plain.next_at(100, 0), Next::Same, "only a file larger than the size rotates");
        assert_eq!(plain.next_at(101, 0), Next::Open("/x/cap1".into()));
        assert_eq!(plain.next_at(101, 0), Next::Open("/x/cap2".into()));
        let mut ring = r(Some(100), None, Some(3));
        assert_eq!(ring.first(), PathBuf::from("/x/cap0"));
        let names: Vec<Next> = (0..4).map(|_| ring.next_at(200, 0)).collect();
        assert_eq!(names, ["/x/cap1", "/x/cap2", "/x/cap0", "/x/cap1"].map(|p| Next::Open(p.into())));
        let mut wide = r(Some(100), None, Some(11));
        assert_eq!(wide.first(), PathBuf::from("/x/cap00"));
    }

    #[test]
    fn time_rotation_formats_and_stops_after_w_files() {
        let mut t = Rotator::new(Path::new("/x/cap-%Y"), Rotation { size: None, every: Some(Duration::from_secs(10)), files: Some(2) });
        let first = t.first();
        assert!(first.to_string_lossy().starts_with("/x/cap-20"), "{first:?}");
        let at = t.opened_at;
        assert_eq!(t.next_at(0, at + 10 * NS - 1), Next::Same);
        assert!(matches!(t.next_at(0, at + 10 * NS), Next::Open(_)));
        assert_eq!(t.next_at(0, at + 20 * NS), Next::Stop);
    }
}
