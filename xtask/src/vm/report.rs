//! What a guest's run comes to: per test file the tests that passed and
//! failed (read from libtest's output), `tracer doctor`'s table of program
//! kinds, why a guest did not get to the end, and the times; printed per
//! kernel and as one summary table.

use std::{fmt::Write as _, time::Duration};

use serde_json::Value;

use super::vm_dir;
use crate::host::step;

/// One test binary's result in a guest.
pub struct TestFile {
    pub file: String,
    pub status: Option<i32>,
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    /// libtest's "failures:" section, or the tail of the log.
    pub detail: String,
}

pub struct KernelResult {
    pub name: &'static str,
    pub release: String,
    pub package: String,
    pub doctor: Option<Value>,
    pub doctor_err: String,
    pub tests: Vec<TestFile>,
    /// Why the guest did not get to the end, if it did not.
    pub problem: Option<String>,
    pub prep_time: Duration,
    pub run_time: Duration,
}

impl KernelResult {
    pub fn failed(name: &'static str, problem: String) -> Self {
        KernelResult {
            name,
            release: String::new(),
            package: String::new(),
            doctor: None,
            doctor_err: String::new(),
            tests: vec![],
            problem: Some(problem),
            prep_time: Duration::ZERO,
            run_time: Duration::ZERO,
        }
    }

    pub fn ok(&self) -> bool {
        self.problem.is_none() && self.tests.iter().all(|t| t.status == Some(0) && t.failed.is_empty())
    }
}


pub fn parse_libtest(file: &str, status: Option<i32>, log: &str) -> TestFile {
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for l in log.lines() {
        let Some(rest) = l.strip_prefix("test ") else { continue };
        if let Some(name) = rest.strip_suffix(" ... ok") {
            passed.push(name.to_string());
        } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
            failed.push(name.to_string());
        }
    }
    let detail = match log.find("\nfailures:\n") {
        Some(i) => log[i + 1..].to_string(),
        None if status != Some(0) => log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
        None => String::new(),
    };
    TestFile { file: file.to_string(), status, passed, failed, detail }
}

pub fn print_kernel(r: &KernelResult) {
    let mut s = String::new();
    writeln!(s, "\n== Linux {} ({}, {}) ==", r.name, r.release, r.package).ok();
    match &r.doctor {
        Some(d) => {
            writeln!(s, "{:<12} {:<10} reason", "program", "status").ok();
            for k in d["kinds"].as_array().into_iter().flatten() {
                writeln!(
                    s,
                    "{:<12} {:<10} {}",
                    k["kind"].as_str().unwrap_or("?"),
                    if k["available"] == true { "available" } else { "refused" },
                    k["reason"].as_str().unwrap_or("")
                )
                .ok();
            }
            for f in d["features"].as_array().into_iter().flatten() {
                let via = f["via"].as_str().map(|v| format!("yes, with {v}")).unwrap_or_else(|| "no".into());
                writeln!(s, "{:<16} {via}", f["capability"].as_str().unwrap_or("?")).ok();
            }
            if let Some(p) = d["problem"].as_str() {
                writeln!(s, "doctor: tracer cannot run here: {p}").ok();
            }
        }
        None if r.problem.is_none() => {
            writeln!(s, "doctor printed no JSON: {}", r.doctor_err.trim()).ok();
        }
        None => {}
    }
    // Files a name filter left empty say nothing.
    for t in r.tests.iter().filter(|t| t.status != Some(0) || !t.passed.is_empty() || !t.failed.is_empty()) {
        let status = match t.status {
            Some(0) => String::new(),
            Some(124) => " (timed out)".into(),
            Some(c) => format!(" (exit {c})"),
            None => " (did not run)".into(),
        };
        writeln!(s, "{:<11} {} passed, {} failed{status}", t.file, t.passed.len(), t.failed.len()).ok();
        for f in &t.failed {
            writeln!(s, "  FAILED {f}").ok();
        }
        if !t.detail.is_empty() && (t.status != Some(0) || !t.failed.is_empty()) {
            // Verifier logs run to thousands of lines: the log file has them.
            const SHOWN: usize = 40;
            for l in t.detail.lines().take(SHOWN) {
                writeln!(s, "  | {l}").ok();
            }
            let n = t.detail.lines().count();
            if n > SHOWN {
                let log = vm_dir().join("out").join(r.name).join(format!("{}.log", t.file));
                writeln!(s, "  | ... {} more lines in {}", n - SHOWN, log.display()).ok();
            }
        }
    }
    if let Some(p) = &r.problem {
        writeln!(s, "problem: {p}").ok();
    }
    writeln!(s, "time: {} s to prepare, {} s boot to power-off", r.prep_time.as_secs(), r.run_time.as_secs()).ok();
    eprint!("{s}");
}

pub fn print_summary(results: &[KernelResult]) {
    if results.is_empty() {
        step("no kernel was tested");
        return;
    }
    eprintln!("\n{:<7} {:<24} {:<9} {:<9} {:<20} result", "kernel", "release", "tcx", "fentry", "tests");
    for r in results {
        let kind = |n: &str| {
            r.doctor
                .as_ref()
                .and_then(|d| d["kinds"].as_array()?.iter().find(|k| k["kind"] == n).map(|k| k["available"] == true))
                .map(|a| if a { "yes" } else { "no" })
                .unwrap_or("?")
        };
        let passed: usize = r.tests.iter().map(|t| t.passed.len()).sum();
        let failed: usize = r.tests.iter().map(|t| t.failed.len()).sum();
        eprintln!(
            "{:<7} {:<24} {:<9} {:<9} {:<20} {} ({} s)",
            r.name,
            r.release,
            kind("tcx"),
            kind("fentry"),
            format!("{passed} passed, {failed} failed"),
            if r.ok() { "ok" } else { "FAILED" },
            r.run_time.as_secs()
        );
    }
}
