//! How a process shows in the output: `comm[pid]`, with ` in CONTAINER`
//! when it is in one, in text (escaped and cut, as every name from
//! outside); `{pid, tid, comm, uid, cmdline?, container}` in JSON (exact);
//! `-` for a packet with no local owner at that end.

use serde::Serialize;
use super::table::Process;
use crate::{ns::Container, sys::text as output};

/// The JSON form of a process.
#[derive(Serialize)]
pub struct ProcessJson<'a> {
    pub pid: u32,
    pub tid: u32,
    pub comm: &'a str,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<&'a str>,
    pub container: &'a Option<Container>,
}

pub fn json(p: &Process) -> ProcessJson<'_> {
    ProcessJson { pid: p.pid, tid: p.tid, comm: &p.comm, uid: p.uid, cmdline: p.cmdline.as_deref(), container: &p.container }
}

/// A container's name, else its short id.
pub fn container_label(c: &Container) -> Option<&str> {
    Some(c.label())
}

/// `comm[pid]` or `comm[pid] in web`, safe for a terminal; `-` for none.
pub fn text(p: Option<&Process>) -> String {
    let Some(p) = p else { return "-".into() };
    match p.container.as_ref().and_then(container_label) {
        Some(c) => format!("{}[{}] in {}", output::name(&p.comm), p.pid, output::name(c)),
        None => format!("{}[{}]", output::name(&p.comm), p.pid),
    }
}

/// `comm[pid]@container` for pcapng comments (one token, no spaces), `-`
/// for none; escaped like text.
pub fn token(p: Option<&Process>) -> String {
    let Some(p) = p else { return "-".into() };
    let comm = output::name(&p.comm).replace(' ', "\\x20");
    match p.container.as_ref().and_then(container_label) {
        Some(c) => format!("{comm}[{}]@{}", p.pid, output::name(c).replace(' ', "\\x20")),
        None => format!("{comm}[{}]", p.pid),
    }
}

/// ` proc: SENDER -> RECEIVER` for a packet line.
pub fn pair_text(sender: Option<&Process>, receiver: Option<&Process>) -> String {
    format!("  proc: {} -> {}", text(sender), text(receiver))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(comm: &str, container: Option<Container>) -> Process {
        Process { pid: 812, tid: 813, uid: 0, comm: comm.into(), start_ticks: 1, cgroup_id: 0, netns_ino: 1, cmdline: Some("curl -s x".into()), container }
    }

    #[test]
    fn text_json_and_tokens() {
        let web = Container { runtime: "docker".into(), id: "ab".repeat(32), name: Some("web".into()), pod: None };
        assert_eq!(text(Some(&p("curl", Some(web.clone())))), "curl[812] in web");
        assert_eq!(text(Some(&p("curl", None))), "curl[812]");
        assert_eq!(text(None), "-");
        assert_eq!(pair_text(Some(&p("curl", None)), None), "  proc: curl[812] -> -");
        let unnamed = Container { runtime: "docker".into(), id: "0123456789abcdef".into(), name: None, pod: None };
        assert_eq!(text(Some(&p("x", Some(unnamed)))), "x[812] in 0123456789ab");
        assert_eq!(token(Some(&p("my app", Some(web)))), "my\\x20app[812]@web");
        let j = serde_json::to_value(json(&p("curl", None))).expect("json");
        assert_eq!(j, serde_json::json!({"pid": 812, "tid": 813, "comm": "curl", "uid": 0, "cmdline": "curl -s x", "container": null}));
    }

    #[test]
    fn hostile_names_are_escaped_in_text_and_exact_in_json() {
        let q = p("\x1b]0;x\x07", None);
        let t = text(Some(&q));
        assert!(!t.chars().any(char::is_control), "{t:?}");
        assert_eq!(t, "\\x1b]0;x\\x07[812]");
        let j = serde_json::to_value(json(&q)).expect("json");
        assert_eq!(j["comm"], "\x1b]0;x\x07");
    }
}
