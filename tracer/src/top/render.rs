//! How `tracer top` prints an interval: one JSON object per row, or a
//! table (redrawn in place on a terminal, one after another otherwise).

use std::{
    io::{self, Write as _},
    net::IpAddr,
};

use serde::Serialize;

use super::stats::{By, Row, rate};
use crate::{
    ns::{Container, NetnsId},
    sys::{clock, text},
};

/// One interval, ready to print.
pub struct Report<'a> {
    pub by: By,
    pub wall_ns: u64,
    /// Seconds the counts were gathered over (measured, not the nominal interval).
    pub secs: f64,
    pub rows: &'a [Row],
    /// Lost so far, by source, for the table's header.
    pub lost: &'a [(&'static str, u64)],
}

/// A row as JSON: DESIGN.md's contract (`type`, `time`, `netns`,
/// `container`), then what the grouping has, then counts and rates.
#[derive(Serialize)]
struct RowJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    time: &'a str,
    interval_s: f64,
    by: &'static str,
    netns: &'a NetnsId,
    container: &'a Option<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifindex: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interfaces: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<crate::procs::render::ProcessJson<'a>>,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    rx_pps: f64,
    /// Bits per second, as iftop and interface speeds count them.
    rx_bps: f64,
    tx_pps: f64,
    tx_bps: f64,
    /// Drops, retransmitted segments and resets (sent and received) in
    /// the interval, when the tracepoints count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    drops: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retransmits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resets: Option<u64>,
}

/// Rates to 3 decimals: enough for any interval, and stable to compare.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn json_line(r: &Row, rep: &Report<'_>, time: &str) -> String {
    let f = r.flow.as_ref();
    let j = RowJson {
        ty: "top",
        time,
        interval_s: (rep.secs * 1e6).round() / 1e6,
        by: rep.by.name(),
        netns: &r.netns,
        container: &r.netns.owner,
        ifname: r.ifname.as_deref(),
        ifindex: r.ifindex,
        interfaces: r.interfaces,
        direction: f.map(|f| f.direction_name()),
        l3: f.map(|f| f.l3.as_str()),
        proto: f.and_then(|f| f.proto.as_deref()),
        src: f.and_then(|f| f.src),
        dst: f.and_then(|f| f.dst),
        sport: f.and_then(|f| f.sport),
        dport: f.and_then(|f| f.dport),
        vlan: f.and_then(|f| f.vlan),
        process: r.process.as_deref().map(crate::procs::render::json),
        rx_packets: r.rx.packets,
        rx_bytes: r.rx.bytes,
        tx_packets: r.tx.packets,
        tx_bytes: r.tx.bytes,
        rx_pps: round3(rate(r.rx.packets, rep.secs)),
        rx_bps: round3(rate(r.rx.bytes * 8, rep.secs)),
        tx_pps: round3(rate(r.tx.packets, rep.secs)),
        tx_bps: round3(rate(r.tx.bytes * 8, rep.secs)),
        drops: r.health.map(|h| h.drops),
        retransmits: r.health.map(|h| h.retransmits),
        resets: r.health.map(|h| h.resets),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// `987`, `1.23k`, `45.6M`, `789G`: three significant digits.
pub fn human(x: f64) -> String {
    let (v, unit) = match x {
        x if x >= 1e12 => (x / 1e12, "T"),
        x if x >= 1e9 => (x / 1e9, "G"),
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => return format!("{x:.0}"),
    };
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// A rate of rare events as a cell: a tenth where it is below 10 (one
/// drop in 2 s is `0.5`, not `0`), `-` when they are not counted.
fn events_cell(n: Option<u64>, secs: f64) -> String {
    match n {
        None => "-".into(),
        Some(0) => "0".into(),
        Some(n) if rate(n, secs) < 9.95 => format!("{:.1}", rate(n, secs)),
        Some(n) => human(rate(n, secs)),
    }
}

/// The drops and retransmissions per second of a row, two cells.
fn health_cells(r: &Row, s: f64) -> (String, String) {
    (events_cell(r.health.map(|h| h.drops), s), events_cell(r.health.map(|h| h.retransmits), s))
}

/// The header line of a table: time, grouping, interval and losses.
pub fn header(rep: &Report<'_>) -> String {
    let lost: Vec<String> = rep.lost.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{s}={n}")).collect();
    let lost = if lost.is_empty() { "none".to_string() } else { lost.join(" ") };
    format!(
        "{}  by {}  over {:.2} s  {} rows  lost: {lost}",
        clock::hms_micros(rep.wall_ns),
        rep.by.name(),
        rep.secs,
        rep.rows.len()
    )
}

/// `NAMESPACE/INTERFACE` as a table cell: both names cut and escaped;
/// `NAMESPACE/-` for the events of no traced interface.
fn where_cell(r: &Row) -> String {
    let ifname = if r.ifindex.is_none() && r.ifname.is_none() { "-" } else { r.ifname.as_deref().unwrap_or("?") };
    format!("{}/{}", text::name(&r.label), text::name(ifname))
}

/// Writes the table: at most `limit` rows, the largest first. Names are
/// cut and escaped here, cell by cell, so that columns stay aligned and
/// the caller's own terminal controls (the redraw) are the only ones.
pub fn table(rep: &Report<'_>, limit: usize, out: &mut impl io::Write) -> io::Result<()> {
    let rows = &rep.rows[..rep.rows.len().min(limit)];
    let s = rep.secs;
    let width = |cells: &[String], min: usize| cells.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(min);
    writeln!(out, "{}", header(rep))?;
    match rep.by {
        By::Container => {
            let labels: Vec<String> = rows.iter().map(|r| text::name(&r.label).into_owned()).collect();
            let w = width(&labels, 15);
            writeln!(
                out,
                "{:<w$}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}",
                "CONTAINER/NETNS", "IFACES", "RX PKT/S", "RX BIT/S", "TX PKT/S", "TX BIT/S", "DROP/S", "RETR/S"
            )?;
            for (r, label) in rows.iter().zip(&labels) {
                let (drops, retr) = health_cells(r, s);
                writeln!(
                    out,
                    "{:<w$}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}",
                    label,
                    r.interfaces.unwrap_or(0),
                    human(rate(r.rx.packets, s)),
                    human(rate(r.rx.bytes * 8, s)),
                    human(rate(r.tx.packets, s)),
                    human(rate(r.tx.bytes * 8, s)),
                    drops,
                    retr,
                )?;
            }
        }
        By::Process => {
            // Labels are `comm[pid] in container`, already escaped.
            let labels: Vec<String> = rows.iter().map(|r| crate::sys::text::field(&r.label, 2 * crate::sys::text::NAME_MAX).into_owned()).collect();
            let w = width(&labels, 7);
            writeln!(out, "{:<w$}  {:>9}  {:>9}  {:>9}  {:>9}", "PROCESS", "RX PKT/S", "RX BIT/S", "TX PKT/S", "TX BIT/S")?;
            for (r, label) in rows.iter().zip(&labels) {
                writeln!(
                    out,
                    "{:<w$}  {:>9}  {:>9}  {:>9}  {:>9}",
                    label,
                    human(rate(r.rx.packets, s)),
                    human(rate(r.rx.bytes * 8, s)),
                    human(rate(r.tx.packets, s)),
                    human(rate(r.tx.bytes * 8, s)),
                )?;
            }
        }
        // Reason rows are printed by `super::reasons`.
        By::Iface | By::Reason => {
            let names: Vec<String> = rows.iter().map(where_cell).collect();
            let w = width(&names, 9);
            writeln!(
                out,
                "{:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}",
                "INTERFACE", "RX PKT/S", "RX BIT/S", "TX PKT/S", "TX BIT/S", "DROP/S", "RETR/S"
            )?;
            for (r, name) in rows.iter().zip(&names) {
                let (drops, retr) = health_cells(r, s);
                writeln!(
                    out,
                    "{:<w$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}",
                    name,
                    human(rate(r.rx.packets, s)),
                    human(rate(r.rx.bytes * 8, s)),
                    human(rate(r.tx.packets, s)),
                    human(rate(r.tx.bytes * 8, s)),
                    drops,
                    retr,
                )?;
            }
        }
        By::Flow => {
            let names: Vec<String> = rows.iter().map(where_cell).collect();
            let w = width(&names, 9);
            writeln!(out, "{:<w$}  {:<3}  {:>8}  {:>8}  {:>6}  {:>6}  FLOW", "INTERFACE", "DIR", "PKT/S", "BIT/S", "DROP/S", "RETR/S")?;
            for (r, name) in rows.iter().zip(&names) {
                let c = if r.rx.is_zero() { r.tx } else { r.rx };
                // A row with no traffic (drops or retransmissions only)
                // says its direction from its key.
                let ingress = if c.is_zero() { r.flow.as_ref().is_some_and(|f| f.direction == tracer_common::packet::DIR_INGRESS) } else { !r.rx.is_zero() };
                let dir = if ingress { "In" } else { "Out" };
                let (drops, retr) = health_cells(r, s);
                writeln!(
                    out,
                    "{:<w$}  {:<3}  {:>8}  {:>8}  {:>6}  {:>6}  {}",
                    name,
                    dir,
                    human(rate(c.packets, s)),
                    human(rate(c.bytes * 8, s)),
                    drops,
                    retr,
                    r.flow.as_ref().map(|f| f.describe()).unwrap_or_default(),
                )?;
            }
        }
    }
    if rows.len() < rep.rows.len() {
        writeln!(out, "({} more rows)", rep.rows.len() - rows.len())?;
    }
    Ok(())
}

/// Rows of the terminal, when stdout is one.
pub fn terminal_rows() -> Option<usize> {
    // SAFETY: isatty and ioctl(TIOCGWINSZ) on our own stdout, into a local struct.
    unsafe {
        if libc::isatty(1) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 { Some(usize::from(ws.ws_row)) } else { Some(24) }
    }
}

/// Where reports go: stdout, as JSON lines, a table redrawn in place on a
/// terminal, or one table after another.
pub struct Printer {
    json: bool,
    /// Terminal height when redrawing in place.
    tty: Option<usize>,
    limit: Option<usize>,
    reports: u64,
}

impl Printer {
    pub fn new(json: bool, limit: Option<usize>) -> Self {
        Self { json, tty: if json { None } else { terminal_rows() }, limit, reports: 0 }
    }

    /// Whether the header of each report shows the losses so far (on a
    /// terminal); elsewhere they are lines of their own, as every command
    /// reports them.
    pub fn shows_losses(&self) -> bool {
        self.tty.is_some()
    }

    pub fn print(&mut self, rep: &Report<'_>) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::new();
        let time = clock::rfc3339(rep.wall_ns);
        if self.json {
            for r in rep.rows.iter().take(self.limit.unwrap_or(usize::MAX)) {
                buf.extend_from_slice(text::json_safe(json_line(r, rep, &time)).as_bytes());
                buf.push(b'\n');
            }
        } else if let Some(height) = self.tty {
            // Home, clear, redraw: header, column names, and what fits. These
            // are the only terminal controls written: the table escapes names.
            buf.extend_from_slice(b"\x1b[H\x1b[2J");
            let fit = height.saturating_sub(3).max(1);
            table(rep, self.limit.unwrap_or(fit).min(fit), &mut buf)?;
        } else {
            if self.reports > 0 {
                buf.push(b'\n');
            }
            table(rep, self.limit.unwrap_or(usize::MAX), &mut buf)?;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()?;
        self.reports += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::top::{
        stats::Health,
        stats::{Count, FlowFields},
    };

    fn row() -> Row {
        Row {
            netns: NetnsId { inode: 7, name: Some("lab-a".into()), ..Default::default() },
            label: "lab-a".into(),
            ifname: Some("eth0".into()),
            ifindex: Some(2),
            interfaces: None,
            flow: None,
            process: None,
            rx: Count { packets: 3, bytes: 300 },
            tx: Count { packets: 10, bytes: 1_000_000 },
            health: None,
        }
    }

    #[test]
    fn drops_and_retransmits_are_fields_and_columns() {
        let with = Row { health: Some(Health { drops: 41, retransmits: 1, resets: 2 }), ..row() };
        let none = Row { label: "lab-b".into(), ifname: None, ifindex: None, health: Some(Health { drops: 3, ..Health::default() }), ..row() };
        let rows = [with, none, Row { label: "lab-c".into(), ..row() }];
        let rep = Report { by: By::Iface, wall_ns: 0, secs: 2.0, rows: &rows, lost: &[] };
        let v: Value = serde_json::from_str(&json_line(&rows[0], &rep, "T")).expect("json");
        assert_eq!((v["drops"].as_u64(), v["retransmits"].as_u64(), v["resets"].as_u64()), (Some(41), Some(1), Some(2)));
        // Not counted (no tracepoints): the fields are absent, not 0.
        let v: Value = serde_json::from_str(&json_line(&rows[2], &rep, "T")).expect("json");
        assert!(v.get("drops").is_none() && v.get("retransmits").is_none() && v.get("resets").is_none(), "{v}");
        for by in [By::Container, By::Iface, By::Flow] {
            let rep = Report { by, ..rep };
            let mut out = Vec::new();
            table(&rep, 10, &mut out).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            let lines: Vec<&str> = text.lines().collect();
            let cols: Vec<&str> = lines[1].split_whitespace().collect();
            assert!(cols.contains(&"DROP/S") && cols.contains(&"RETR/S"), "{text}");
            let drop_col = lines[1].find("DROP/S").expect("column") + "DROP/S".len();
            let retr_col = lines[1].find("RETR/S").expect("column") + "RETR/S".len();
            // Right-aligned under their headers: 41 in 2 s is 20/s, 1 is
            // 0.5/s (not rounded to 0), and `-` where nothing is counted.
            assert!(lines[2][..drop_col].ends_with(" 20"), "{by:?}: {text}");
            assert!(lines[2][..retr_col].ends_with(" 0.5"), "{by:?}: {text}");
            assert!(lines[4][..drop_col].ends_with(" -") && lines[4][..retr_col].ends_with(" -"), "{by:?}: {text}");
            if by != By::Container {
                assert!(lines[3].starts_with("lab-b/- "), "{by:?}: {text}");
            }
            // Within 100 columns with names of every-day length.
            assert!(lines.iter().all(|l| l.chars().count() <= 100), "{by:?}: {text}");
        }
    }

    #[test]
    fn rare_events_keep_a_tenth() {
        assert_eq!(events_cell(None, 1.0), "-");
        assert_eq!(events_cell(Some(0), 1.0), "0");
        assert_eq!(events_cell(Some(1), 2.0), "0.5");
        assert_eq!(events_cell(Some(99), 10.0), "9.9");
        assert_eq!(events_cell(Some(20), 2.0), "10");
        assert_eq!(events_cell(Some(25_000), 2.0), "12.5k");
    }

    #[test]
    fn json_rows_carry_counts_and_rates() {
        let rows = [row()];
        let rep = Report { by: By::Iface, wall_ns: 0, secs: 0.5, rows: &rows, lost: &[] };
        let v: Value = serde_json::from_str(&json_line(&rows[0], &rep, "T")).expect("json");
        assert_eq!(v["type"], "top");
        assert_eq!(v["time"], "T");
        assert_eq!(v["by"], "iface");
        assert_eq!(v["interval_s"], 0.5);
        assert_eq!(v["netns"], serde_json::json!({"inode": 7, "name": "lab-a"}));
        assert!(v["container"].is_null());
        assert_eq!((v["ifname"].as_str(), v["ifindex"].as_u64()), (Some("eth0"), Some(2)));
        assert_eq!((v["rx_packets"].as_u64(), v["rx_bytes"].as_u64()), (Some(3), Some(300)));
        assert_eq!((v["rx_pps"].as_f64(), v["rx_bps"].as_f64()), (Some(6.0), Some(4800.0)));
        assert_eq!((v["tx_pps"].as_f64(), v["tx_bps"].as_f64()), (Some(20.0), Some(16_000_000.0)));
        assert!(v.get("direction").is_none() && v.get("interfaces").is_none());
    }

    #[test]
    fn json_flow_rows_name_the_flow() {
        let mut r = row();
        r.flow = Some(FlowFields {
            direction: 1,
            l3: "ipv4".into(),
            proto: Some("udp".into()),
            src: "10.0.0.1".parse().ok(),
            dst: "10.0.0.2".parse().ok(),
            sport: Some(1),
            dport: Some(2),
            vlan: None,
        });
        let rows = [r];
        let rep = Report { by: By::Flow, wall_ns: 0, secs: 1.0, rows: &rows, lost: &[] };
        let v: Value = serde_json::from_str(&json_line(&rows[0], &rep, "T")).expect("json");
        assert_eq!(v["direction"], "egress");
        assert_eq!((v["proto"].as_str(), v["src"].as_str(), v["dport"].as_u64()), (Some("udp"), Some("10.0.0.1"), Some(2)));
        assert!(v.get("vlan").is_none());
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1234.0), "1.23k");
        assert_eq!(human(45_600_000.0), "45.6M");
        assert_eq!(human(789e9), "789G");
    }

    #[test]
    fn tables_are_limited_and_say_so() {
        let rows = vec![row(), Row { label: "lab-b".into(), ..row() }, Row { label: "lab-c".into(), ..row() }];
        let rep = Report { by: By::Iface, wall_ns: 0, secs: 1.0, rows: &rows, lost: &[("flow", 0), ("stats", 2)] };
        let mut out = Vec::new();
        table(&rep, 2, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("by iface") && lines[0].ends_with("lost: stats=2"), "{text}");
        assert!(lines[1].starts_with("INTERFACE"), "{text}");
        assert!(lines[2].starts_with("lab-a/eth0") && lines[2].contains("8.00M"), "{text}");
        assert_eq!(lines[4], "(1 more rows)");
    }

    #[test]
    fn names_in_tables_are_escaped_cut_and_aligned() {
        let evil = Row { label: "web\x1b]0;pwned\x07".into(), ifname: Some("e\u{9b}1m".into()), ..row() };
        let long = Row { label: "c".repeat(300), ..row() };
        let rows = vec![evil, long, row()];
        for by in [By::Container, By::Iface, By::Flow] {
            let rep = Report { by, wall_ns: 0, secs: 1.0, rows: &rows, lost: &[] };
            let mut out = Vec::new();
            table(&rep, 10, &mut out).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{by:?}: {text:?}");
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines[2].starts_with("web\\x1b]0;pwned\\x07"), "{text}");
            if by != By::Container {
                assert!(lines[2].starts_with("web\\x1b]0;pwned\\x07/e\\x9b1m "), "{text}");
            }
            // The long name is cut, and the columns after the names line up.
            assert!(lines[3].starts_with(&format!("{}{}", "c".repeat(text::NAME_MAX - 3), text::ELLIPSIS)), "{text}");
            let chars: Vec<Vec<char>> = lines[1..5].iter().map(|l| l.chars().collect()).collect();
            if by == By::Flow {
                let dir = lines[1].find("DIR").expect("DIR column");
                assert!(chars[1..].iter().all(|l| l[dir] == 'I' && l[dir - 1] == ' ' && l[dir - 2] == ' '), "{text}");
            } else {
                assert!(chars.iter().all(|l| l.len() == chars[0].len()), "{text}");
            }
        }
    }
}
