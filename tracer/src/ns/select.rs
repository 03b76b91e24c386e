//! The selectors users give: `--netns NAME|PATH|INODE`, `--pid PID`,
//! `--container NAME|ID` (at most one), resolved once into the [`Scope`]
//! of a job, with close matches named when nothing matches.

use std::path::Path;

use super::{
    Netns, NsError, Registry,
    named::{self, named_namespaces},
};
use crate::sys::ns_inode;

/// The one selector a command line may give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `--netns NAME|PATH|INODE`
    Netns(String),
    /// `--pid PID`: the namespace of that process.
    Pid(u32),
    /// `--container NAME|ID-prefix`
    Container(String),
}

/// Which namespaces a job covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace, including those created later.
    All,
    /// One namespace.
    Netns(u64),
    /// The namespace of one container (by full id): followed into a new
    /// namespace when the container restarts; `netns` is where it was
    /// when the selector was resolved (the host's, for a container on the
    /// host network).
    Container { id: String, netns: u64 },
}

impl Scope {
    /// Resolves a selector (none: every namespace). An unknown namespace,
    /// process or container is an error that names close matches.
    pub fn resolve(sel: Option<&Selector>) -> Result<Scope, SelectError> {
        Ok(match sel {
            None => Scope::All,
            Some(Selector::Netns(s)) => Scope::Netns(resolve_netns(s)?),
            Some(Selector::Pid(pid)) => Scope::Netns(resolve_pid(*pid)?),
            Some(Selector::Container(c)) => {
                let (container, netns) = Registry::new().resolve_container(c)?;
                Scope::Container { id: container.id, netns }
            }
        })
    }

    /// The one namespace selected, as it was when resolved; `None` for all.
    pub fn netns(&self) -> Option<u64> {
        match self {
            Scope::All => None,
            Scope::Netns(ino) | Scope::Container { netns: ino, .. } => Some(*ino),
        }
    }

    /// Whether a namespace is in scope now: a container's is wherever the
    /// container is (as owner, sharer, or on the host network).
    pub fn selects(&self, n: &Netns) -> bool {
        match self {
            Scope::All => true,
            Scope::Netns(only) => n.inode == *only,
            Scope::Container { id, .. } => n.has_container(id),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no network namespace {0:?}: not a name in /run/netns, a namespace file, or a known inode{1}")]
    UnknownNetns(String, String),
    #[error("no process {0}: /proc/{0}/ns/net does not exist")]
    UnknownPid(u32),
    #[error("no running container {0:?} (by name or id prefix){1}")]
    UnknownContainer(String, String),
    #[error("container id prefix {0:?} matches several containers: {1}; give more of the id or the name")]
    AmbiguousContainer(String, String),
    #[error("{0}")]
    Discovery(String),
}

impl From<NsError> for SelectError {
    fn from(e: NsError) -> Self {
        SelectError::Discovery(e.to_string())
    }
}

/// Resolves `--netns NAME|PATH|INODE` to an inode.
pub fn resolve_netns(arg: &str) -> Result<u64, SelectError> {
    if let Ok(ino) = arg.parse::<u64>() {
        return Ok(ino);
    }
    if arg.contains('/') {
        return ns_inode(Path::new(arg)).map_err(|_| SelectError::UnknownNetns(arg.into(), String::new()));
    }
    let names = named_namespaces(&named::mounts(usize::MAX));
    if let Some((ino, _)) = names.iter().find(|(_, n)| *n == arg) {
        return Ok(*ino);
    }
    Err(SelectError::UnknownNetns(arg.into(), did_you_mean(names.values().map(String::as_str), arg)))
}

/// Resolves `--pid PID` to the inode of its network namespace.
pub fn resolve_pid(pid: u32) -> Result<u64, SelectError> {
    ns_inode(Path::new(&format!("/proc/{pid}/ns/net"))).map_err(|_| SelectError::UnknownPid(pid))
}

/// Loose match for "did you mean": shared prefix or containment.
pub fn similar(candidate: &str, wanted: &str) -> bool {
    let (c, w) = (candidate.to_ascii_lowercase(), wanted.to_ascii_lowercase());
    c.contains(&w) || w.contains(&c) || c.chars().zip(w.chars()).take_while(|(a, b)| a == b).count() >= 3
}

/// `"; did you mean a, b?"` for the candidates [`similar`] to `wanted`, or "".
/// The closest come first (by edit distance), at most five.
pub fn did_you_mean<'a>(candidates: impl IntoIterator<Item = &'a str>, wanted: &str) -> String {
    let mut close: Vec<&str> = candidates.into_iter().filter(|n| similar(n, wanted)).collect();
    close.sort_by_key(|c| (edit_distance(&c.to_ascii_lowercase(), &wanted.to_ascii_lowercase()), *c));
    close.dedup();
    close.truncate(5);
    let close: Vec<_> = close.into_iter().map(crate::sys::text::name).collect();
    if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) }
}

/// Levenshtein distance, for ranking suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inode_and_rejects_unknown() {
        assert_eq!(resolve_netns("4026531840"), Ok(4026531840));
        assert!(matches!(resolve_netns("surely-not-a-namespace"), Err(SelectError::UnknownNetns(..))));
        let own = resolve_pid(std::process::id()).expect("own netns");
        assert_eq!(resolve_netns("/proc/self/ns/net"), Ok(own));
        assert_eq!(resolve_pid(u32::MAX), Err(SelectError::UnknownPid(u32::MAX)));
        assert!(similar("lab-a", "lab-b"));
        assert!(!similar("web", "db"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean(["lab-b", "lab-a", "lab-abc"], "lab-ax"), "; did you mean lab-a, lab-abc, lab-b?");
        assert_eq!(did_you_mean(["web-1", "db", "web-2"], "web"), "; did you mean web-1, web-2?");
        assert_eq!(did_you_mean(["db"], "web"), "");
    }
}
