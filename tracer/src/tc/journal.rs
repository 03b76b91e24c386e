//! The record of the clsact qdiscs this tracer adds (netlink-tc mode): a
//! qdisc carries no mark of who added it, so each tracer writes the ones it
//! adds to a journal under [`JOURNAL_DIR`] (a tmpfs: it does not outlive a
//! reboot, and neither do qdiscs), and the next run reads the journals of
//! tracers that are gone ([`DeadJournals`]) to know which empty qdiscs it
//! may remove ([`super::stale`]).

use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use crate::sys;

/// Where the journals live: one file per running tracer that added a qdisc.
pub const JOURNAL_DIR: &str = "/run/tracer";
/// The most of a journal that is read (each line is under 100 bytes).
const JOURNAL_MAX: u64 = 4 << 20;

/// A clsact qdisc the tracer added: where it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    pub ns_inode: u64,
    pub ns_cookie: Option<u64>,
    pub ifindex: u32,
    pub ifname: String,
}

impl Claim {
    fn line(&self, op: &str) -> String {
        let cookie = self.ns_cookie.map_or("-".into(), |c| c.to_string());
        format!("{op} {} {cookie} {} {}\n", self.ns_inode, self.ifindex, self.ifname)
    }

    fn parse(line: &str) -> Option<(bool, Claim)> {
        let mut w = line.split(' ');
        let add = match w.next()? {
            "add" => true,
            "del" => false,
            _ => return None,
        };
        let ns_inode = w.next()?.parse().ok()?;
        let ns_cookie = match w.next()? {
            "-" => None,
            c => Some(c.parse().ok()?),
        };
        let ifindex = w.next()?.parse().ok()?;
        let ifname = w.next()?.to_string();
        if ifname.is_empty() || w.next().is_some() {
            return None;
        }
        Some((add, Claim { ns_inode, ns_cookie, ifindex, ifname }))
    }

    /// Whether this is the qdisc of `ifindex`/`ifname` in `ns`.
    pub fn is_at(&self, ns_inode: u64, ns_cookie: Option<u64>, ifindex: u32, ifname: &str) -> bool {
        self.in_ns(ns_inode, ns_cookie) && self.ifindex == ifindex && self.ifname == ifname
    }

    /// Whether this is in namespace `ns`: the cookie decides where both are
    /// known (inodes are reused, cookies are not).
    pub fn in_ns(&self, ns_inode: u64, ns_cookie: Option<u64>) -> bool {
        match (self.ns_cookie, ns_cookie) {
            (Some(a), Some(b)) => a == b,
            _ => self.ns_inode == ns_inode,
        }
    }
}

/// This process's journal: a line for each clsact qdisc added and each
/// removed, so that a kill in between leaves a record.
#[derive(Debug, Default)]
pub struct Journal {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Added and not yet removed.
    open: HashSet<Claim>,
    /// Set once writing failed (reported once).
    broken: bool,
}

/// The journal's file name for a process.
fn journal_name(pid: u32, start: u64) -> String {
    format!("clsact-{pid}-{start}")
}

fn parse_journal_name(name: &str) -> Option<(u32, u64)> {
    let (pid, start) = name.strip_prefix("clsact-")?.split_once('-')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

impl Journal {
    pub fn new() -> Self {
        let pid = std::process::id();
        let path = sys::proc::live_start_time(pid).map(|s| Path::new(JOURNAL_DIR).join(journal_name(pid, s)));
        Self { path, ..Default::default() }
    }

    /// A journal kept elsewhere (tests).
    #[cfg(test)]
    pub fn at(path: PathBuf) -> Self {
        Self { path: Some(path), ..Default::default() }
    }

    pub fn add(&mut self, c: &Claim) {
        self.open.insert(c.clone());
        self.write(&c.line("add"));
    }

    pub fn del(&mut self, c: &Claim) {
        if self.open.remove(c) {
            self.write(&c.line("del"));
        }
    }

    fn write(&mut self, line: &str) {
        if self.broken {
            return;
        }
        let r = (|| -> io::Result<()> {
            if self.file.is_none() {
                let path = self.path.as_ref().ok_or_else(|| io::Error::other("no start time in /proc/self/stat"))?;
                let open = || {
                    if let Some(dir) = path.parent() {
                        private_dir(dir)?;
                    }
                    OpenOptions::new().append(true).create(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
                };
                // Another tracer may remove the directory, empty, in between.
                let f = match open() {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => open(),
                    r => r,
                }?;
                self.file = Some(f);
            }
            match &mut self.file {
                Some(f) => f.write_all(line.as_bytes()),
                None => Ok(()),
            }
        })();
        if let Err(e) = r {
            self.broken = true;
            let at = self.path.as_ref().map_or(JOURNAL_DIR.into(), |p| p.display().to_string());
            eprintln!("tracer: cannot record the clsact qdiscs it adds in {at} ({e}); if the tracer is killed, the next run will not remove them");
        }
    }

    /// At exit: the file goes when every qdisc it records is gone; else it
    /// stays for the next run's [`super::stale::sweep`].
    pub fn finish(&mut self) {
        self.file = None;
        if self.open.is_empty()
            && let Some(p) = &self.path
            && fs::remove_file(p).is_ok()
        {
            remove_dir_if_empty(p);
        }
    }
}

/// Removes the directory of the journal `file` if no journal is left in
/// it (a tracer that stopped cleanly leaves nothing in /run).
fn remove_dir_if_empty(file: &Path) {
    if let Some(dir) = file.parent() {
        // Fails, harmlessly, while another tracer's journal is in it.
        let _ = fs::remove_dir(dir);
    }
}

/// `dir`, made 0700 if missing; refused if it is a symlink, not ours, or
/// writable by others.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).recursive(true).create(dir)?;
    let m = fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!("{} is not a private directory of this user", dir.display())));
    }
    Ok(())
}

/// The journals of tracers that are gone, each with the qdiscs it still
/// claims.
#[derive(Debug, Default)]
pub struct DeadJournals {
    pub files: Vec<(PathBuf, Vec<Claim>)>,
}

impl DeadJournals {
    pub fn read() -> Self {
        Self::read_in(Path::new(JOURNAL_DIR), &|pid, start| sys::proc::live_start_time(pid) == Some(start))
    }

    /// The journals in `dir` whose process `alive` says is gone.
    fn read_in(dir: &Path, alive: &dyn Fn(u32, u64) -> bool) -> Self {
        let mut out = Self::default();
        let Ok(entries) = fs::read_dir(dir) else { return out };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some((pid, start)) = name.to_str().and_then(parse_journal_name) else { continue };
            if alive(pid, start) {
                continue;
            }
            let mut text = String::new();
            let opened = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(e.path());
            let Ok(f) = opened else { continue };
            let _ = f.take(JOURNAL_MAX).read_to_string(&mut text);
            let mut open: Vec<Claim> = Vec::new();
            for (add, c) in text.lines().filter_map(Claim::parse) {
                if add {
                    open.push(c);
                } else if let Some(i) = open.iter().position(|o| *o == c) {
                    open.swap_remove(i);
                }
            }
            out.files.push((e.path(), open));
        }
        out.files.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn claims(&self, ns_inode: u64, ns_cookie: Option<u64>, ifindex: u32, ifname: &str) -> bool {
        self.files.iter().flat_map(|(_, c)| c).any(|c| c.is_at(ns_inode, ns_cookie, ifindex, ifname))
    }

    /// Everything the journals recorded has been dealt with, except the
    /// qdiscs in `busy` (they hold others' filters and go once empty): a
    /// journal is removed, or rewritten to hold only those.
    pub fn settle(&self, busy: &[Claim]) {
        for (path, claims) in &self.files {
            let keep: String = claims.iter().filter(|c| busy.contains(c)).map(|c| c.line("add")).collect();
            if keep.is_empty() {
                if fs::remove_file(path).is_ok() {
                    remove_dir_if_empty(path);
                }
            } else {
                let _ = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(path)
                    .and_then(|mut f| f.write_all(keep.as_bytes()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(ifindex: u32, ifname: &str) -> Claim {
        Claim { ns_inode: 4026532178, ns_cookie: Some(9), ifindex, ifname: ifname.into() }
    }

    #[test]
    fn journal_lines_round_trip_and_bad_ones_are_skipped() {
        let c = claim(2, "eth0");
        assert_eq!(Claim::parse(c.line("add").trim_end()), Some((true, c.clone())));
        let none = Claim { ns_cookie: None, ..c.clone() };
        assert_eq!(Claim::parse(none.line("del").trim_end()), Some((false, none)));
        for bad in ["", "add", "add 1 - 2", "add x - 2 eth0", "mod 1 - 2 eth0", "add 1 - 2 eth0 extra", "add 1 -5 2 eth0"] {
            assert_eq!(Claim::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn claims_match_by_cookie_else_inode() {
        let c = claim(2, "eth0");
        assert!(c.is_at(1, Some(9), 2, "eth0"), "the cookie decides, the inode may be reused");
        assert!(!c.is_at(4026532178, Some(10), 2, "eth0"), "same inode, another namespace");
        assert!(c.is_at(4026532178, None, 2, "eth0"));
        assert!(!c.is_at(4026532178, Some(9), 3, "eth0"));
        assert!(!c.is_at(4026532178, Some(9), 2, "eth1"));
    }

    #[test]
    fn only_journals_of_dead_tracers_count_and_removed_qdiscs_do_not() {
        let dir = std::env::temp_dir().join(format!("tracer-journal-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let mut dead = Journal::at(dir.join(journal_name(100, 5)));
        dead.add(&claim(2, "eth0"));
        dead.add(&claim(3, "veth1"));
        dead.del(&claim(3, "veth1"));
        dead.del(&claim(4, "never-added"));
        let mut live = Journal::at(dir.join(journal_name(200, 6)));
        live.add(&claim(5, "eth5"));
        fs::write(dir.join("unrelated"), "add 1 - 2 eth0\n").expect("write");
        let mut other = Journal::at(dir.join(journal_name(300, 7)));
        other.add(&claim(6, "eth6"));
        other.add(&claim(7, "eth7"));
        let found = DeadJournals::read_in(&dir, &|pid, _| pid == 200);
        assert_eq!(
            found.files,
            vec![(dir.join(journal_name(100, 5)), vec![claim(2, "eth0")]), (dir.join(journal_name(300, 7)), vec![claim(6, "eth6"), claim(7, "eth7")])]
        );
        assert!(found.claims(1, Some(9), 7, "eth7") && !found.claims(1, Some(9), 5, "eth5"), "the live one's claims do not count");
        // eth6's qdisc still holds others' filters: only its claim stays.
        found.settle(&[claim(6, "eth6")]);
        assert!(!dir.join(journal_name(100, 5)).exists());
        assert!(dir.join(journal_name(200, 6)).exists());
        let again = DeadJournals::read_in(&dir, &|pid, _| pid == 200);
        assert_eq!(again.files, vec![(dir.join(journal_name(300, 7)), vec![claim(6, "eth6")])]);
        // A journal whose qdiscs are all gone removes itself at exit.
        live.del(&claim(5, "eth5"));
        live.finish();
        assert!(!dir.join(journal_name(200, 6)).exists());
        assert!(dir.exists(), "another journal is still in it");
        fs::remove_file(dir.join("unrelated")).expect("rm");
        again.settle(&[]);
        assert!(!dir.exists(), "the last journal gone, the directory goes too");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_with_outstanding_qdiscs_stays() {
        let dir = std::env::temp_dir().join(format!("tracer-journal-stay-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut j = Journal::at(dir.join("sub").join(journal_name(1, 1)));
        j.add(&claim(2, "eth0"));
        j.finish();
        let m = fs::metadata(dir.join("sub").join(journal_name(1, 1))).expect("kept");
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.join("sub")).expect("dir").mode() & 0o777, 0o700);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn journal_names_parse() {
        assert_eq!(parse_journal_name(&journal_name(42, 12345)), Some((42, 12345)));
        assert_eq!(parse_journal_name("clsact-42"), None);
        assert_eq!(parse_journal_name("other-1-2"), None);
    }
}
