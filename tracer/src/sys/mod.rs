//! Small facts about the running system: kernel release, capabilities,
//! lockdown, tracefs; network namespace files ([`netns`]); netlink on the
//! wire ([`nlmsg`]); and the primitives
//! every layer above uses: the clock ([`clock`]), panic containment
//! ([`contain`]), bounded tables ([`bounded`]), the stop request
//! ([`shutdown`]) and text made safe for a terminal ([`text`]).

pub mod bounded;
pub mod clock;
pub mod contain;
pub mod netns;
pub mod nlmsg;
pub mod proc;
pub mod shutdown;
pub mod text;

pub use netns::{in_netns, ns_inode};

use std::{fs, io, path::Path};

pub const TRACEFS: &str = "/sys/kernel/tracing";

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let rel = kernel_release();
    let mut it = rel.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// A file of securityfs, which is mounted when missing, like tracefs.
fn securityfs_file(name: &str) -> Option<String> {
    let path = Path::new("/sys/kernel/security").join(name);
    if !path.exists() {
        let fs = c"securityfs";
        let target = c"/sys/kernel/security";
        // SAFETY: valid C strings; failure only means the file stays unknown.
        unsafe { libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    }
    fs::read_to_string(path).ok()
}

/// The bracketed mode of /sys/kernel/security/lockdown, if it can be read.
pub fn lockdown() -> Option<String> {
    let s = securityfs_file("lockdown")?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

/// The active LSMs, in order, if securityfs can be read.
pub fn active_lsms() -> Option<Vec<String>> {
    Some(securityfs_file("lsm")?.trim().split(',').map(str::to_string).collect())
}

/// The capabilities the tracer cares about, by number.
pub const CAPS: &[(u32, &str)] =
    &[(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN"), (38, "CAP_PERFMON"), (39, "CAP_BPF")];

/// The effective capability set of this process.
pub fn effective_caps() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Where tracefs is, mounting it when missing. Returns whether it was mounted now.
pub fn ensure_tracefs() -> io::Result<bool> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(false);
    }
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid C strings; mount(2) has no other preconditions.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Shell-style match (`*`, `?`, `[...]`), as interface globs are written.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (std::ffi::CString::new(pattern), std::ffi::CString::new(name)) else { return false };
    // SAFETY: fnmatch reads two valid C strings.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses() {
        let (major, _) = kernel_version();
        assert!(major >= 4);
    }
}
