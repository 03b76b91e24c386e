//! Kernel addresses to `function+0xoffset`, from `/proc/kallsyms`: the
//! `location` a drop was freed from becomes `nf_hook_slow+0x9c`.
//!
//! Only text symbols are kept, sorted by address, their names in one
//! buffer; both are capped, so a kernel with an unusual number of symbols
//! costs a bounded amount of memory (this machine: 122,000 text symbols,
//! 3 MiB of names, about 5 MiB in all). Without root the kernel shows
//! every address as 0: the symboliser then says so instead of naming
//! everything after the first symbol. Modules loaded later are picked up
//! by a reload on a miss, at most every [`RELOAD_INTERVAL`].

use std::{
    io::{self, BufRead as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub const KALLSYMS: &str = "/proc/kallsyms";
/// Symbols kept at most.
pub const MAX_SYMBOLS: usize = 1 << 20;
/// Bytes of names kept at most.
pub const MAX_NAME_BYTES: usize = 48 << 20;
/// A name longer than this is cut (the kernel's own limit is 512).
const MAX_NAME: usize = 512;
/// An address this far past the last symbol is no function's.
const MAX_LAST_SIZE: u64 = 1 << 20;
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{0} shows no addresses (the kernel hides them from processes without CAP_SYSLOG; run tracer as root)")]
    Hidden(String),
}

#[derive(Clone, Copy, Debug)]
struct Sym {
    addr: u64,
    name_at: u32,
    name_len: u16,
    /// Length of the module name after the symbol's (0: built in).
    module_len: u16,
}

/// The kernel's text symbols, looked up by address.
#[derive(Debug)]
pub struct Symbols {
    path: PathBuf,
    syms: Vec<Sym>,
    names: String,
    /// Lines not kept because a cap was reached.
    pub dropped: u64,
    loaded: Instant,
}

impl Symbols {
    pub fn load() -> Result<Self, KallsymsError> {
        Self::load_from(Path::new(KALLSYMS))
    }

    pub fn load_from(path: &Path) -> Result<Self, KallsymsError> {
        let err = |source| KallsymsError::Read { path: path.display().to_string(), source };
        let f = std::fs::File::open(path).map_err(err)?;
        let mut s = Self::parse(io::BufReader::new(f)).map_err(err)?;
        s.path = path.to_path_buf();
        if s.syms.is_empty() {
            return Err(KallsymsError::Hidden(path.display().to_string()));
        }
        Ok(s)
    }

    /// Reads `addr type name [module]` lines; text symbols with a nonzero
    /// address are kept, up to the caps.
    pub fn parse(mut r: impl io::BufRead) -> io::Result<Self> {
        let mut syms = Vec::new();
        let mut names = String::new();
        let mut dropped = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            // Lines are cut at MAX_NAME plus room for the address and module.
            if io::Read::take(&mut r, (MAX_NAME * 2 + 64) as u64).read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                // Over-long line: skip the rest of it.
                let mut rest = Vec::new();
                r.read_until(b'\n', &mut rest)?;
                dropped += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let mut parts = text.split_ascii_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (parts.next(), parts.next(), parts.next()) else { continue };
            if !matches!(ty, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if addr == 0 {
                continue;
            }
            let module = parts.next().map(|m| m.trim_start_matches('[').trim_end_matches(']')).unwrap_or("");
            let name = &name[..floor_char(name, MAX_NAME)];
            let module = &module[..floor_char(module, 64)];
            if syms.len() >= MAX_SYMBOLS || names.len() + name.len() + module.len() > MAX_NAME_BYTES {
                dropped += 1;
                continue;
            }
            let name_at = names.len() as u32;
            names.push_str(name);
            names.push_str(module);
            syms.push(Sym { addr, name_at, name_len: name.len() as u16, module_len: module.len() as u16 });
        }
        syms.sort_by_key(|s| s.addr);
        names.shrink_to_fit();
        syms.shrink_to_fit();
        Ok(Self { path: PathBuf::from(KALLSYMS), syms, names, dropped, loaded: Instant::now() })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// About the memory held.
    #[cfg(test)]
    pub fn mem_bytes(&self) -> usize {
        self.syms.capacity() * size_of::<Sym>() + self.names.capacity()
    }

    fn name_of(&self, s: &Sym) -> (&str, &str) {
        let a = s.name_at as usize;
        let n = a + usize::from(s.name_len);
        let m = n + usize::from(s.module_len);
        (self.names.get(a..n).unwrap_or("?"), self.names.get(n..m).unwrap_or(""))
    }

    /// `function+0xoffset` (with ` [module]` for a module's function), or
    /// `None` outside every known function.
    pub fn lookup(&self, addr: u64) -> Option<String> {
        let i = self.syms.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        let s = &self.syms[i];
        let off = addr - s.addr;
        if i + 1 == self.syms.len() && off > MAX_LAST_SIZE {
            return None;
        }
        let (name, module) = self.name_of(s);
        Some(if module.is_empty() { format!("{name}+{off:#x}") } else { format!("{name}+{off:#x} [{module}]") })
    }

    /// [`Self::lookup`], reloading once (at most every
    /// [`RELOAD_INTERVAL`]) when nothing matches: a module loaded since.
    pub fn lookup_or_reload(&mut self, addr: u64) -> Option<String> {
        if let Some(s) = self.lookup(addr) {
            return Some(s);
        }
        if self.loaded.elapsed() >= RELOAD_INTERVAL
            && let Ok(fresh) = Self::load_from(&self.path.clone())
        {
            *self = fresh;
            return self.lookup(addr);
        }
        None
    }
}

/// The largest index <= `max` on a char boundary of `s`.
fn floor_char(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81f81f90 T nf_hook_slow
ffffffff81f82100 t nf_hook_slow_list
ffffffff82000000 D some_data
ffffffffc0001000 t vxlan_rcv\t[vxlan]
ffffffff81f80000 W weak_fn
";

    fn sample() -> Symbols {
        Symbols::parse(io::Cursor::new(SAMPLE)).expect("parse")
    }

    #[test]
    fn names_addresses_inside_functions() {
        let s = sample();
        assert_eq!(s.len(), 5, "data symbols are not kept");
        assert_eq!(s.lookup(0xffffffff81f81f90 + 0x9c).as_deref(), Some("nf_hook_slow+0x9c"));
        assert_eq!(s.lookup(0xffffffff81f81f90).as_deref(), Some("nf_hook_slow+0x0"));
        assert_eq!(s.lookup(0xffffffff81f82100 + 1).as_deref(), Some("nf_hook_slow_list+0x1"));
        assert_eq!(s.lookup(0xffffffff81f80010).as_deref(), Some("weak_fn+0x10"));
        assert_eq!(s.lookup(0xffffffffc0001010).as_deref(), Some("vxlan_rcv+0x10 [vxlan]"));
        // Before the first symbol, far past the last: no function.
        assert_eq!(s.lookup(0x1000), None);
        assert_eq!(s.lookup(0xffffffffc0001000 + (2 << 20)), None);
    }

    #[test]
    fn hidden_addresses_and_hostile_lines() {
        // What an unprivileged reader sees: every address 0.
        let hidden = "0000000000000000 T _stext\n0000000000000000 T nf_hook_slow\n";
        assert!(Symbols::parse(io::Cursor::new(hidden)).expect("parse").is_empty());
        let dir = std::env::temp_dir().join(format!("tracer-kallsyms-{}", std::process::id()));
        std::fs::write(&dir, hidden).expect("write");
        assert!(matches!(Symbols::load_from(&dir), Err(KallsymsError::Hidden(_))));
        let _ = std::fs::remove_file(&dir);
        // Garbage, a huge line, non-UTF-8 bytes and half lines are skipped or cut.
        let mut junk = Vec::new();
        junk.extend_from_slice(b"zzzz T bad_addr\n\xff\xfe T x\nffffffff81000000\n");
        junk.extend_from_slice(b"ffffffff81000010 T ");
        junk.extend(std::iter::repeat_n(b'a', 100_000));
        junk.extend_from_slice(b"\nffffffff81000020 T ok\xc3\xa9\n");
        let s = Symbols::parse(io::Cursor::new(junk)).expect("parse");
        assert_eq!(s.len(), 1);
        assert_eq!(s.dropped, 1);
        assert_eq!(s.lookup(0xffffffff81000021).as_deref(), Some("ok\u{e9}+0x1"));
    }

    // The running kernel's own table (the tests run as root).
    #[test]
    fn this_kernels_symbols() {
        let s = Symbols::load().expect("kallsyms");
        assert!(s.len() > 10_000, "{}", s.len());
        assert!(s.mem_bytes() < 64 << 20);
        let text = std::fs::read_to_string(KALLSYMS).expect("read");
        let addr = text
            .lines()
            .find_map(|l| {
                let mut p = l.split_whitespace();
                let (a, _, n) = (p.next()?, p.next()?, p.next()?);
                (n == "kfree_skb_reason" || n == "sk_skb_reason_drop").then(|| u64::from_str_radix(a, 16).ok()).flatten()
            })
            .expect("a kfree_skb function");
        let name = s.lookup(addr + 4).expect("named");
        assert!(name.ends_with("+0x4") && (name.starts_with("kfree_skb_reason") || name.starts_with("sk_skb_reason_drop")), "{name}");
    }
}
