//! `tracer top --by reason`: the packets the kernel dropped, per namespace
//! (with its container), interface and drop reason. The `skb:kfree_skb`
//! program counts them in per-CPU counters (`DROP_COUNTS`, in its counting
//! mode: no record per drop); [`ReasonMeter`] reads the map every interval
//! and turns its running totals into the interval's drops, [`rows`] names
//! them, and [`table`] / [`json_line`] print them. Names are the running
//! kernel's (`enum skb_drop_reason`, from BTF).

use std::{collections::HashMap, io, time::Instant};

use aya::Ebpf;
use tracer_common::{
    drops::{DropKey, REASON_NONE},
    maps,
};

use super::{
    counters::{CounterMap, CountersError},
    render::human,
    stats::rate,
};
use crate::{
    bpf::tp::EnumNames,
    ns::{NetnsId, names::NsNames},
    sys::{clock, text},
};

/// One row: the drops of one namespace, interface and reason in the interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonRow {
    pub netns: NetnsId,
    /// `None`: the drop had no device (the namespace is its socket's), or
    /// no namespace was found at all (inode 0).
    pub ifindex: Option<u32>,
    pub ifname: Option<String>,
    /// `None` on kernels whose `kfree_skb` has no reason (before 5.17).
    pub reason_code: Option<u32>,
    pub reason: Option<String>,
    /// Drops in the interval.
    pub drops: u64,
    /// Drops since the tracer started.
    pub total: u64,
}

/// A key's drops since the last read and since the start.
pub type KeyCount = (DropKey, u64, u64);

/// The drop counters and their totals at the last read.
pub struct ReasonMeter {
    map: CounterMap<DropKey>,
    prev: HashMap<DropKey, u64>,
    last_read: Instant,
}

impl ReasonMeter {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, CountersError> {
        Ok(Self { map: CounterMap::take(ebpf, maps::DROP_COUNTS)?, prev: HashMap::new(), last_read: Instant::now() })
    }

    /// The seconds since the last read, and per key the drops since then
    /// (0 included) and since the start.
    pub fn read(&mut self) -> Result<(f64, Vec<KeyCount>), CountersError> {
        let now_totals = self.map.read()?;
        let now = Instant::now();
        let secs = now.duration_since(self.last_read).as_secs_f64();
        self.last_read = now;
        let mut out = Vec::new();
        for (k, t) in now_totals {
            let before = self.prev.insert(k, t.packets).unwrap_or(0);
            // A counter never goes down (entries are never deleted).
            out.push((k, t.packets.saturating_sub(before), t.packets));
        }
        Ok((secs, out))
    }
}

/// The interval's counts as rows (those with drops in it), named, the
/// most drops first.
pub fn rows(counts: &[KeyCount], names: &NsNames, reasons: &EnumNames) -> Vec<ReasonRow> {
    let mut rows: Vec<ReasonRow> = counts
        .iter()
        .filter(|(_, drops, _)| *drops > 0)
        .map(|(k, drops, total)| {
            let ino = u64::from(k.netns_ino);
            let ifindex = (k.ifindex != 0).then_some(k.ifindex);
            let reason_code = (k.reason != REASON_NONE).then_some(k.reason);
            ReasonRow {
                netns: names.netns(ino),
                ifindex,
                ifname: ifindex.and_then(|i| names.ifname(ino, i)),
                reason_code,
                reason: reason_code.map(|c| reasons.name(u64::from(c)).map(String::from).unwrap_or_else(|| format!("UNKNOWN_{c}"))),
                drops: *drops,
                total: *total,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.drops.cmp(&a.drops).then(a.netns.inode.cmp(&b.netns.inode)).then(a.ifindex.cmp(&b.ifindex)).then(a.reason_code.cmp(&b.reason_code)));
    rows
}

fn label(r: &ReasonRow) -> String {
    if r.netns.inode == 0 { "?".into() } else { r.netns.label().into_owned() }
}

#[derive(serde::Serialize)]
struct RowJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    time: &'a str,
    interval_s: f64,
    by: &'static str,
    /// `null` when no namespace was found.
    netns: Option<&'a NetnsId>,
    container: Option<&'a crate::ns::Container>,
    ifname: Option<&'a str>,
    ifindex: Option<u32>,
    reason: Option<&'a str>,
    reason_code: Option<u32>,
    drops: u64,
    drops_per_s: f64,
    drops_total: u64,
}

/// One JSON line (the `top` rows' `type`, `time`, `interval_s`, `by`,
/// `netns`, `container`, `ifname`, `ifindex`, and the drop counts).
pub fn json_line(r: &ReasonRow, secs: f64, time: &str) -> String {
    let j = RowJson {
        ty: "top",
        time,
        interval_s: (secs * 1e6).round() / 1e6,
        by: "reason",
        netns: (r.netns.inode != 0).then_some(&r.netns),
        container: r.netns.owner.as_ref(),
        ifname: r.ifname.as_deref(),
        ifindex: r.ifindex,
        reason: r.reason.as_deref(),
        reason_code: r.reason_code,
        drops: r.drops,
        drops_per_s: (rate(r.drops, secs) * 1000.0).round() / 1000.0,
        drops_total: r.total,
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// The table of one report: a header line, then one line per row (names
/// cut and escaped cell by cell).
pub fn table(rows: &[ReasonRow], secs: f64, wall_ns: u64, lost: &[(&'static str, u64)], out: &mut impl io::Write) -> io::Result<()> {
    let lost: Vec<String> = lost.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{s}={n}")).collect();
    let lost = if lost.is_empty() { "none".to_string() } else { lost.join(" ") };
    writeln!(out, "{}  by reason  over {secs:.2} s  {} rows  lost: {lost}", clock::hms_micros(wall_ns), rows.len())?;
    let wheres: Vec<String> = rows.iter().map(|r| format!("{}/{}", text::name(&label(r)), text::name(r.ifname.as_deref().unwrap_or("-")))).collect();
    let w = wheres.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(15);
    writeln!(out, "{:<w$}  {:<24}  {:>8}  {:>8}  {:>8}", "CONTAINER/IFACE", "REASON", "DROPS/S", "DROPS", "TOTAL")?;
    for (r, wh) in rows.iter().zip(&wheres) {
        writeln!(
            out,
            "{:<w$}  {:<24}  {:>8}  {:>8}  {:>8}",
            wh,
            text::name(r.reason.as_deref().unwrap_or("-")),
            human(rate(r.drops, secs)),
            r.drops,
            r.total
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_named_and_largest_first() {
        let reasons = EnumNames::from_members(vec![("SKB_DROP_REASON_NETFILTER_DROP".into(), 12), ("SKB_DROP_REASON_NO_SOCKET".into(), 3)], &["SKB_DROP_REASON_"]);
        let names = NsNames::default();
        let k = |ns: u32, ifindex: u32, reason: u32| DropKey { netns_ino: ns, ifindex, reason, _pad: 0 };
        let r = rows(&[(k(7, 2, 3), 4, 10), (k(7, 2, 12), 37, 37), (k(0, 0, REASON_NONE), 1, 1), (k(7, 0, 99), 2, 2), (k(8, 1, 3), 0, 5)], &names, &reasons);
        let got: Vec<(Option<&str>, u64, Option<u32>)> = r.iter().map(|r| (r.reason.as_deref(), r.drops, r.ifindex)).collect();
        assert_eq!(got, [(Some("NETFILTER_DROP"), 37, Some(2)), (Some("NO_SOCKET"), 4, Some(2)), (Some("UNKNOWN_99"), 2, None), (None, 1, None)]);
        let j: serde_json::Value = serde_json::from_str(&json_line(&r[0], 0.5, "t")).expect("json");
        assert_eq!((j["by"].as_str(), j["reason"].as_str(), j["drops"].as_u64(), j["drops_per_s"].as_f64()), (Some("reason"), Some("NETFILTER_DROP"), Some(37), Some(74.0)));
        assert_eq!(j["netns"]["inode"], 7);
        let none: serde_json::Value = serde_json::from_str(&json_line(&r[3], 1.0, "t")).expect("json");
        assert!(none["netns"].is_null() && none["reason"].is_null(), "{none}");
        let mut out = Vec::new();
        table(&r, 1.0, 0, &[("drop_stats", 0)], &mut out).expect("table");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.lines().next().is_some_and(|l| l.ends_with("4 rows  lost: none")), "{s}");
        assert!(s.contains("7/-") && s.contains("?/-"), "{s}");
    }
}
