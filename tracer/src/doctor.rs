//! `tracer doctor`: what this kernel offers the tracer, found by really
//! loading and attaching a tiny program of each kind; and the BTF
//! tracepoints of `drops` and `tcp`, each with the arguments its prototype
//! has here (`kfree_skb`'s `reason` from 5.17, `rx_sk` from 6.11) and so
//! the program that will be loaded for it; and where `tracer drops` runs
//! its packet filter (tried: [`crate::tc::cbpf::drops::probe`]).

use std::io::Write;

use serde::Serialize;

use crate::{
    bpf::{
        btf::{KernelBtf, VMLINUX},
        hooks::{self, CAPABILITY_KINDS, ProgramKind},
        load::{self as ebpf, LoadOptions},
        tp::{self, TpCheck},
    },
    sys,
};

#[derive(Debug, Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    pub available: bool,
    pub min_kernel: &'static str,
    pub used_by: Vec<&'static str>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CapabilityReport {
    pub capability: &'static str,
    pub available: bool,
    /// The program kind it will use here.
    pub via: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub kernel: String,
    pub btf: bool,
    pub btf_missing_fields: Vec<String>,
    pub lockdown: Option<String>,
    pub capabilities: Vec<(&'static str, bool)>,
    pub tracefs: String,
    /// `kernel.io_uring_disabled` (0: anyone may use io_uring, 1: only a
    /// chosen group, 2: nobody); `None` before 6.6, which has no switch.
    /// Netlink requests sent through io_uring pass no system call, so the
    /// audit does not see them (README, "Audit limits").
    pub io_uring_disabled: Option<u8>,
    pub kinds: Vec<KindReport>,
    pub features: Vec<CapabilityReport>,
    /// The BTF tracepoints of `drops` and `tcp` on this kernel.
    pub tracepoints: Vec<TpCheck>,
    /// skb, socket and `tcp_sock` fields their programs read that this
    /// kernel's BTF lacks (they do without: the field is left out).
    pub tracepoint_fields_missing: Vec<String>,
    pub can_run: bool,
    pub problem: Option<String>,
    /// Per-packet process attribution (see [`crate::procs`]).
    pub process_attribution: crate::procs::doctor::ProcReport,
    /// Where `tracer drops` runs its packet filter on this kernel.
    pub drop_filter: DropFilterReport,
}

/// `drop_filter` in JSON: `runs_in` is `kernel` or `userspace`, with why.
#[derive(Debug, Serialize)]
pub struct DropFilterReport {
    pub runs_in: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DropFilterReport {
    fn of(p: &crate::tc::cbpf::drops::Placement) -> Self {
        use crate::tc::cbpf::drops::Placement;
        match p {
            Placement::Kernel { .. } => Self { runs_in: "kernel", reason: None },
            Placement::Userspace(why) => Self { runs_in: "userspace", reason: Some(why.clone()) },
        }
    }
}

pub fn run() -> Report {
    let kernel = sys::kernel_release();
    let caps = sys::effective_caps();
    let capabilities = sys::CAPS.iter().map(|&(n, name)| (name, sys::has_cap(caps, n))).collect();
    let tracefs = match sys::ensure_tracefs() {
        Ok(true) => format!("{} (mounted now)", sys::TRACEFS),
        Ok(false) => sys::TRACEFS.to_string(),
        Err(e) => format!("missing, mounting failed: {e}"),
    };
    let btf = KernelBtf::open();
    let btf_ok = btf.is_ok();
    let btf_missing_fields = btf.as_ref().map(|b| b.kernel_offsets().1).unwrap_or_default();
    let tracepoints = btf.as_ref().map(tp::checks).unwrap_or_default();
    let tracepoint_fields_missing = btf.as_ref().map(|b| tp::sk_offsets(b).1).unwrap_or_default();

    let mut kinds = Vec::new();
    let mut problem = None;
    let mut process_attribution = crate::procs::doctor::ProcReport::not_probed();
    let mut drop_filter = DropFilterReport { runs_in: "userspace", reason: Some("the eBPF object could not be loaded".into()) };
    match ebpf::load(&LoadOptions { ring_bytes: 4096, ..Default::default() }) {
        Ok(mut loaded) => {
            process_attribution = crate::procs::doctor::probe(&mut loaded.ebpf);
            let aya_btf = aya::Btf::from_sys_fs().ok();
            for kind in ProgramKind::ALL {
                let r = hooks::probe(&mut loaded.ebpf, aya_btf.as_ref(), kind);
                let used_by = CAPABILITY_KINDS
                    .iter()
                    .filter(|(_, ks)| ks.contains(&kind))
                    .map(|(c, _)| c.name())
                    .collect();
                kinds.push(KindReport {
                    kind: kind.name(),
                    available: r.ok,
                    min_kernel: kind.min_kernel(),
                    used_by,
                    reason: (!r.ok).then_some(r.detail),
                });
            }
            let kfree = tracepoints.iter().find(|c| c.tracepoint == tp::KFREE_SKB.name).and_then(|c| c.program);
            drop_filter = DropFilterReport::of(&crate::tc::cbpf::drops::probe(&mut loaded.ebpf, kfree));
        }
        Err(e) => {
            problem = Some(e.to_string());
            for kind in ProgramKind::ALL {
                kinds.push(KindReport {
                    kind: kind.name(),
                    available: false,
                    min_kernel: kind.min_kernel(),
                    used_by: vec![],
                    reason: Some("the eBPF object could not be loaded".into()),
                });
            }
        }
    }
    let features: Vec<CapabilityReport> = CAPABILITY_KINDS
        .iter()
        .map(|(cap, ks)| {
            let fits = |name: &&str| tracepoints.iter().any(|c| c.tracepoint == *name && c.program.is_some());
            let via = ks
                .iter()
                .find(|k| kinds.iter().any(|r| r.kind == k.name() && r.available))
                .filter(|_| cap.needs_tracepoints().iter().all(fits));
            CapabilityReport { capability: cap.name(), available: via.is_some(), via: via.map(|k| k.name()) }
        })
        .collect();
    let can_run = btf_ok && problem.is_none() && features.iter().any(|f| f.available);
    if problem.is_none() {
        if let Err(e) = &btf {
            problem = Some(e.to_string());
        } else if !can_run {
            problem = Some("this kernel accepts none of the program kinds the tracer needs (tracepoints or TC)".into());
        }
    }
    if !btf_ok && !std::path::Path::new(VMLINUX).exists() {
        problem = Some(format!("{VMLINUX} is missing: tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"));
    }
    Report {
        ty: "doctor",
        kernel,
        btf: btf_ok,
        btf_missing_fields,
        lockdown: sys::lockdown(),
        capabilities,
        tracefs,
        io_uring_disabled: std::fs::read_to_string(IO_URING_DISABLED).ok().and_then(|v| v.trim().parse().ok()),
        kinds,
        features,
        tracepoints,
        tracepoint_fields_missing,
        can_run,
        problem,
        process_attribution,
        drop_filter,
    }
}

const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

pub fn print_text(r: &Report, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w, "kernel        {}", r.kernel)?;
    let btf = if r.btf {
        if r.btf_missing_fields.is_empty() {
            format!("{VMLINUX} (all kernel offsets resolved)")
        } else {
            format!("{VMLINUX} (missing: {})", r.btf_missing_fields.join(", "))
        }
    } else {
        "missing".to_string()
    };
    writeln!(w, "btf           {btf}")?;
    writeln!(w, "lockdown      {}", r.lockdown.as_deref().unwrap_or("unknown (securityfs not mounted)"))?;
    let caps: Vec<String> =
        r.capabilities.iter().map(|(n, ok)| format!("{n}={}", if *ok { "yes" } else { "no" })).collect();
    writeln!(w, "capabilities  {}", caps.join(" "))?;
    writeln!(w, "tracefs       {}", r.tracefs)?;
    let io_uring = match r.io_uring_disabled {
        Some(2) => "disabled (kernel.io_uring_disabled=2)".to_string(),
        Some(v) => format!(
            "{} (kernel.io_uring_disabled={v}): netlink requests sent through it are not audited; =2 closes it",
            if v == 0 { "open to every user" } else { "open to one group" }
        ),
        None => "no switch before 6.6: netlink requests sent through io_uring are not audited".to_string(),
    };
    writeln!(w, "io_uring      {io_uring}")?;
    writeln!(w)?;
    writeln!(w, "{:<12} {:<10} {:<11} {:<20} reason", "program", "status", "min kernel", "used by")?;
    for k in &r.kinds {
        let used = if k.used_by.is_empty() { "-".to_string() } else { k.used_by.join(", ") };
        writeln!(
            w,
            "{:<12} {:<10} {:<11} {:<20} {}",
            k.kind,
            if k.available { "available" } else { "refused" },
            k.min_kernel,
            used,
            k.reason.as_deref().unwrap_or("")
        )?;
    }
    if !r.tracepoints.is_empty() {
        writeln!(w)?;
        writeln!(w, "{:<20} {:<28} {:<36} {:<16} used by", "tracepoint (btf)", "program", "arguments read", "missing")?;
        for c in &r.tracepoints {
            let dash = |v: &[&str]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
            writeln!(
                w,
                "{:<20} {:<28} {:<36} {:<16} {}{}",
                c.tracepoint,
                c.program.unwrap_or("none"),
                dash(&c.present),
                dash(&c.missing),
                c.used_by,
                c.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            )?;
        }
        if !r.tracepoint_fields_missing.is_empty() {
            writeln!(w, "fields missing: {} (left out of drops and tcp)", r.tracepoint_fields_missing.join(", "))?;
        }
        let f = &r.drop_filter;
        match &f.reason {
            None => writeln!(w, "drop filter          in the kernel (libpcap's code as a tracing program tail-called from kfree_skb)")?,
            Some(why) => writeln!(w, "drop filter          in userspace, on every drop the kernel sends ({why})")?,
        }
    }
    crate::procs::doctor::print_text(&r.process_attribution, w)?;
    writeln!(w)?;
    for f in &r.features {
        match f.via {
            Some(via) => writeln!(w, "{:<16} yes, with {via}", f.capability)?,
            None => writeln!(w, "{:<16} no", f.capability)?,
        }
    }
    if let Some(p) = &r.problem {
        writeln!(w, "\ntracer cannot run here: {p}")?;
    } else {
        writeln!(w, "\ntracer can run here")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::tp::{KFREE_SKB, check};

    fn report(tracepoints: Vec<TpCheck>) -> Report {
        Report {
            ty: "doctor",
            kernel: "5.10.0".into(),
            btf: true,
            btf_missing_fields: vec![],
            lockdown: None,
            capabilities: vec![],
            tracefs: sys::TRACEFS.into(),
            io_uring_disabled: None,
            kinds: vec![],
            features: vec![],
            tracepoints,
            tracepoint_fields_missing: vec!["tcp_sock.bytes_received".into()],
            can_run: true,
            problem: None,
            process_attribution: crate::procs::doctor::ProcReport::not_probed(),
            drop_filter: DropFilterReport { runs_in: "kernel", reason: None },
        }
    }

    #[test]
    fn the_table_names_each_tracepoints_program_and_what_its_kernel_lacks() {
        // 5.10's kfree_skb: no reason, no rx_sk.
        let old = check(&KFREE_SKB, Ok(vec!["struct sk_buff *".into(), "void *".into()]));
        let mut out = Vec::new();
        print_text(&report(vec![old]), &mut out).expect("print");
        let out = String::from_utf8(out).expect("utf-8");
        let row = out.lines().find(|l| l.starts_with("kfree_skb")).unwrap_or_else(|| panic!("{out}"));
        let cols: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cols, ["kfree_skb", tracer_common::programs::DROP_KFREE_SKB, "skb, location", "reason, rx_sk", "drops, top --by reason, serve, the default job"], "{row}");
        assert!(out.contains("fields missing: tcp_sock.bytes_received"), "{out}");
        // No such tracepoint: no program, and why.
        let none = check(&KFREE_SKB, Err("no such tracepoint in this kernel".into()));
        let mut out = Vec::new();
        print_text(&report(vec![none]), &mut out).expect("print");
        let out = String::from_utf8(out).expect("utf-8");
        assert!(out.lines().any(|l| l.starts_with("kfree_skb") && l.contains(" none ") && l.ends_with("(no such tracepoint in this kernel)")), "{out}");
    }
}
