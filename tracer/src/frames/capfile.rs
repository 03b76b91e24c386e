//! Where `-w` writes, opened without the traps a root process falls into
//! in a shared directory such as /tmp.
//!
//! - `-w -` is standard output (tcpdump's convention: `tracer packets -w - |
//!   tshark -r -`), refused when standard output is a terminal: a capture
//!   holds bytes anyone can put in a packet.
//! - A path is opened with `O_NOFOLLOW`: a symbolic link there is refused,
//!   never followed, so nobody can point `-w /tmp/x` at a file of root's.
//! - A new file is created with mode 0600 (less the umask).
//! - An existing regular file is truncated and rewritten, as tcpdump does,
//!   keeping its owner and mode, but only when it belongs to the tracer's
//!   user and has no other hard link; otherwise it is refused untouched (a
//!   file planted by another user would keep its owner, who could read the
//!   capture). The checks are made on the opened descriptor, before any
//!   byte changes, so nothing can be swapped in between.
//! - A FIFO (of the tracer's user) is opened without truncation; while no
//!   reader has it open the tracer says so once and waits, polling, so a
//!   signal or `--duration` still stops it. A terminal device is refused;
//!   other character devices (`/dev/null`) are written as they are.

use std::{
    fs::{File, OpenOptions},
    future::Future,
    io::{self, IsTerminal},
    os::{
        fd::AsRawFd,
        unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    time::Duration,
};

/// How often a FIFO without a reader is tried again.
pub const FIFO_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "refusing to write pcapng to a terminal: send standard output to a file or a reader (`-w - > FILE`, `-w - | tshark -r -`), or give -w a file name"
    )]
    Terminal,
    #[error("refusing to write {0}: it is a symbolic link, and -w never follows one (give the path it points to)")]
    Symlink(String),
    #[error("refusing to overwrite {path}: it belongs to uid {uid}, not to the tracer's user (remove it, or choose another name)")]
    NotOwned { path: String, uid: u32 },
    #[error("refusing to overwrite {path}: it has {links} hard links, and truncating it would empty them all (remove it, or choose another name)")]
    HardLinks { path: String, links: u64 },
    #[error("refusing to write {path}: it is a {kind}, not a regular file, a FIFO or a character device")]
    Kind { path: String, kind: &'static str },
    #[error("cannot write {path}: {source}")]
    Open { path: String, source: io::Error },
}

/// What `-w` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Path(PathBuf),
}

impl Target {
    pub fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str() == "-" { Target::Stdout } else { Target::Path(arg.to_path_buf()) }
    }

    /// As the tracer's messages name it.
    pub fn describe(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::Path(p) => p.display().to_string(),
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Opened {
    File(File),
    /// A FIFO that no process has open for reading yet.
    NoReader,
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// One attempt at opening `target` for writing, never blocking.
pub fn open_now(target: &Target) -> Result<Opened, CaptureError> {
    let path = match target {
        Target::Stdout => {
            let out = io::stdout();
            if out.is_terminal() {
                return Err(CaptureError::Terminal);
            }
            // A descriptor of our own: written through a BufWriter, not
            // through Stdout's line buffering (pcapng is binary).
            let fd = std::os::fd::AsFd::as_fd(&out)
                .try_clone_to_owned()
                .map_err(|source| CaptureError::Open { path: target.describe(), source })?;
            return Ok(Opened::File(File::from(fd)));
        }
        Target::Path(p) => p,
    };
    let shown = || path.display().to_string();
    // O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of blocking.
    // No O_TRUNC: nothing changes before the checks below.
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            let meta = std::fs::symlink_metadata(path).ok();
            let ft = meta.as_ref().map(|m| m.file_type());
            return match e.raw_os_error() {
                Some(libc::ELOOP) if ft.is_some_and(|t| t.is_symlink()) => Err(CaptureError::Symlink(shown())),
                Some(libc::ENXIO) if ft.is_some_and(|t| t.is_fifo()) => {
                    // Refuse someone else's FIFO before waiting on it.
                    match meta.map(|m| m.uid()) {
                        Some(uid) if uid != effective_uid() => Err(CaptureError::NotOwned { path: shown(), uid }),
                        _ => Ok(Opened::NoReader),
                    }
                }
                _ => Err(CaptureError::Open { path: shown(), source: e }),
            };
        }
    };
    let meta = file.metadata().map_err(|source| CaptureError::Open { path: shown(), source })?;
    let ft = meta.file_type();
    if ft.is_char_device() {
        if file.is_terminal() {
            return Err(CaptureError::Terminal);
        }
    } else if ft.is_file() || ft.is_fifo() {
        if meta.uid() != effective_uid() {
            return Err(CaptureError::NotOwned { path: shown(), uid: meta.uid() });
        }
        if ft.is_file() && meta.nlink() > 1 {
            return Err(CaptureError::HardLinks { path: shown(), links: meta.nlink() });
        }
    } else {
        let kind = if ft.is_block_device() { "block device" } else if ft.is_socket() { "socket" } else { "special file" };
        return Err(CaptureError::Kind { path: shown(), kind });
    }
    if ft.is_file() {
        file.set_len(0).map_err(|source| CaptureError::Open { path: shown(), source })?;
    }
    set_blocking(&file).map_err(|source| CaptureError::Open { path: shown(), source })?;
    Ok(Opened::File(file))
}

/// Clears `O_NONBLOCK`: writes wait for a slow reader, as tcpdump's do,
/// rather than fail.
fn set_blocking(f: &File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl F_GETFL/F_SETFL on a descriptor we own, no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens `target`, waiting for a FIFO's reader until `stop` resolves
/// (`Ok(None)` then). Says once on stderr that it waits.
pub async fn open(target: &Target, stop: impl Future<Output = ()>) -> Result<Option<File>, CaptureError> {
    tokio::pin!(stop);
    let mut told = false;
    loop {
        match open_now(target)? {
            Opened::File(f) => return Ok(Some(f)),
            Opened::NoReader => {
                if !told {
                    crate::sys::text::warn(&format!(
                        "{} is a FIFO with no reader yet; waiting for one to open it (e.g. `tshark -r {}`)",
                        target.describe(),
                        target.describe()
                    ));
                    told = true;
                }
                tokio::select! {
                    _ = &mut stop => return Ok(None),
                    _ = tokio::time::sleep(FIFO_POLL) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, os::unix::fs::PermissionsExt};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tracer-capfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn open_path(p: &Path) -> Result<Opened, CaptureError> {
        open_now(&Target::Path(p.to_path_buf()))
    }

    #[test]
    fn dash_is_standard_output() {
        assert_eq!(Target::from_arg(Path::new("-")), Target::Stdout);
        assert_eq!(Target::from_arg(Path::new("./-")), Target::Path("./-".into()));
    }

    #[test]
    fn a_new_file_is_0600() {
        let p = tmp("new");
        let Ok(Opened::File(mut f)) = open_path(&p) else { panic!("not opened") };
        f.write_all(b"x").expect("write");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & !0o600, 0, "mode {mode:o}");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let target = tmp("target");
        std::fs::write(&target, b"precious").expect("write");
        let link = tmp("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(open_path(&link), Err(CaptureError::Symlink(_))));
        assert_eq!(std::fs::read(&target).expect("read"), b"precious");
        // A dangling link creates nothing either.
        std::fs::remove_file(&target).expect("rm");
        assert!(matches!(open_path(&link), Err(CaptureError::Symlink(_))));
        assert!(!target.exists());
        let _ = std::fs::remove_file(&link);
    }

    #[test]
    fn an_own_file_is_truncated_keeping_its_mode_and_a_linked_one_refused() {
        let p = tmp("own");
        std::fs::write(&p, b"old contents").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let Ok(Opened::File(_)) = open_path(&p) else { panic!("not opened") };
        let meta = std::fs::metadata(&p).expect("meta");
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o640));
        std::fs::write(&p, b"again").expect("write");
        let other = tmp("hardlink");
        std::fs::hard_link(&p, &other).expect("link");
        assert!(matches!(open_path(&p), Err(CaptureError::HardLinks { links: 2, .. })));
        assert_eq!(std::fs::read(&other).expect("read"), b"again");
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(&other);
    }

    #[test]
    fn a_fifo_without_reader_waits_and_with_one_opens() {
        let p = tmp("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(open_path(&p), Ok(Opened::NoReader)));
        // A reader (non-blocking, so this thread does not wait for us).
        let reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&p).expect("reader");
        let Ok(Opened::File(mut f)) = open_path(&p) else { panic!("not opened") };
        f.write_all(b"abc").expect("write");
        let mut buf = [0u8; 3];
        std::io::Read::read_exact(&mut &reader, &mut buf).expect("read");
        assert_eq!(&buf, b"abc");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_directory_or_dev_null() {
        assert!(matches!(open_path(&std::env::temp_dir()), Err(CaptureError::Open { .. })));
        assert!(matches!(open_path(Path::new("/dev/null")), Ok(Opened::File(_))));
    }
}
