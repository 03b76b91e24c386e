//! What `tracer doctor` says about process attribution: where the cgroup
//! v2 hierarchy is, and whether the socket programs load and attach there
//! (they are attached for real, to the root, and detached at once).

use std::io::Write;

use aya::Ebpf;
use serde::Serialize;

use super::{attach, cgroup2};

#[derive(Debug, Serialize)]
pub struct ProcReport {
    pub available: bool,
    /// The cgroup v2 root the programs attach to.
    pub cgroup2: Option<String>,
    /// The program kinds it needs, each with whether it attached.
    pub kinds: Vec<(&'static str, bool)>,
    pub reason: Option<String>,
}

impl ProcReport {
    pub fn not_probed() -> Self {
        Self { available: false, cgroup2: None, kinds: Vec::new(), reason: Some("the eBPF object could not be loaded".into()) }
    }
}

const KINDS: [attach::HookKind; 3] = [attach::HookKind::CgroupSock, attach::HookKind::CgroupSockAddr, attach::HookKind::SockOps];

/// Attaches every socket program to the cgroup v2 root, then detaches them.
pub fn probe(ebpf: &mut Ebpf) -> ProcReport {
    let root = cgroup2::root();
    let r = match &root {
        Some(root) => attach::attach_at(ebpf, root),
        None => Err(attach::AttachError::NoCgroup2),
    };
    attach::detach_all(ebpf);
    let refused = r.as_ref().err().and_then(|e| e.kind());
    let ok = r.is_ok();
    // Kinds after the refused one were not tried; say so by leaving them out.
    let mut kinds = Vec::new();
    for k in KINDS {
        if root.is_none() {
            break;
        }
        let refused_here = refused == Some(k.name());
        kinds.push((k.name(), ok || !refused_here));
        if refused_here {
            break;
        }
    }
    ProcReport {
        available: ok,
        cgroup2: root.map(|p| p.display().to_string()),
        kinds,
        reason: r.err().map(|e| e.to_string()),
    }
}

pub fn print_text(r: &ProcReport, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w)?;
    writeln!(w, "cgroup v2     {}", r.cgroup2.as_deref().unwrap_or("not mounted"))?;
    let kinds: Vec<String> = r.kinds.iter().map(|(k, ok)| format!("{k}={}", if *ok { "yes" } else { "no" })).collect();
    match (&r.reason, r.available) {
        (None, true) => writeln!(w, "processes     yes: socket programs attach to the cgroup v2 root ({})", kinds.join(" ")),
        (reason, _) => writeln!(
            w,
            "processes     no: {} (packets are traced without process fields)",
            reason.as_deref().unwrap_or("unknown")
        ),
    }
}
