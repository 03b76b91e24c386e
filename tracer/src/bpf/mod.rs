//! The eBPF object and what comes out of it: loading it with the kernel's
//! offsets ([`load`], [`btf`]), the table of hooks and the generic code that
//! attaches them ([`hooks`]), the ring buffer reader ([`ring`]), the raw
//! records it yields ([`event`]) and the count of what was lost ([`lost`]);
//! what the BTF tracepoints of the drop and TCP programs carry here ([`tp`]);
//! and what they share: taking a map out of the object, and saying why the
//! kernel refused a program ([`describe`]).

pub mod btf;
pub mod event;
pub mod hooks;
pub mod load;
pub mod lost;
pub mod ring;
pub mod tp;

use aya::{Ebpf, maps::Map, programs::ProgramError};

/// A map the tracer reads, missing from the object or not of its kind.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("the eBPF object has no map {0}")]
    Missing(&'static str),
    #[error("map {0}: {1}")]
    Kind(&'static str, aya::maps::MapError),
}

/// Takes map `name` out of the object: whoever reads it owns it.
pub fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, MapError> {
    ebpf.take_map(name).ok_or(MapError::Missing(name))
}

/// A program error as one line: the error and each of its causes. The
/// verifier log is empty when the kernel refuses outright; the errno is
/// what tells a person why.
pub fn describe(e: &ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    // A verifier log would make it many lines. Its first is only where the
    // verifier started (e.g. "0: R1=ctx(off=0,imm=0) R10=fp0"); why it
    // stopped is near its end, so that line is added.
    let mut line = s.lines().next().unwrap_or_default().to_string();
    if let ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        if let Some(why) = verifier_reason(&log)
            && !line.ends_with(why)
        {
            line.push_str(" ... ");
            line.push_str(why);
        }
    }
    line
}

/// The line of a verifier log that says why it refused the program: the
/// last one that is not one of the statistics the kernel appends
/// ("processed N insns ...", "verification time ...", "stack depth ...").
pub fn verifier_reason(log: &str) -> Option<&str> {
    log.lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|l| !l.is_empty())
        .rfind(|l| !["processed ", "verification time ", "stack depth ", "insns processed"].iter().any(|p| l.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::verifier_reason;

    #[test]
    fn the_reason_is_the_last_line_before_the_statistics() {
        // How Debian's 6.1 refused sock_tcp_ops (its log's first and last lines).
        let log = "0: R1=ctx(off=0,imm=0) R10=fp0\n; unsafe { (*self.ops).op }\n\
                   ; fun()\n192: (85) call bpf_get_current_pid_tgid#14\n\
                   unknown func bpf_get_current_pid_tgid#14\n\
                   verification time 4721 usec\nstack depth 416+0\n\
                   processed 126 insns (limit 1000000) max_states_per_insn 0 total_states 7 peak_states 7 mark_read 6\n\0";
        assert_eq!(verifier_reason(log), Some("unknown func bpf_get_current_pid_tgid#14"));
        assert_eq!(verifier_reason("0: R1=ctx() R10=fp0\n"), Some("0: R1=ctx() R10=fp0"));
        assert_eq!(verifier_reason(""), None);
        assert_eq!(verifier_reason("processed 3 insns\n"), None);
    }
}
