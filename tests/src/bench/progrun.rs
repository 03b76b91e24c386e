//! What each TC program of a mode costs per run with no traffic and no
//! noise: the tracer starts as in the throughput rounds, and the kernel's
//! test harness (`BPF_PROG_TEST_RUN`) runs each program it attached on one
//! frame, in batches, on a fresh skb of the loopback device (so the
//! device's namespace is the benchmark's, and no socket is attached). The
//! mean time per run comes from the harness's own clock; a second pass
//! with the run-time statistics on shows what they add to every run (the
//! figures of the `programs` table carry that). An empty program (return
//! "continue") gives the floor of both.
//!
//! Records the programs emit go to the tracer's ring and are read by it
//! as usual: batches are small and spaced so the ring never fills (a
//! refused reserve would make a run cheaper than a real one).

use std::{os::fd::OwnedFd, time::Duration};

use super::{
    bpf::{self, StatsOn},
    round::{self, Mode, Rig},
    table::Table,
};

/// Runs per batch, and batches per figure (the median is kept).
const REPEAT: u32 = 2000;
const BATCHES: usize = 15;

/// An Ethernet + IPv4 frame of `len` bytes from `src` to `dst` carrying
/// `proto` (17 UDP, 6 TCP) between ports 40000 and 5201; TCP with the ACK
/// flag. Checksums are left zero: no program here checks them.
pub fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> Vec<u8> {
    let len = len.max(14 + 20 + 20);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let l4 = &mut f[34..];
    l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&5201u16.to_be_bytes());
    if proto == 17 {
        l4[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    } else {
        l4[12] = 5 << 4; // data offset: 20 bytes
        l4[13] = 0x10; // ACK
    }
    f
}

fn v4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().map(|a| a.octets()).unwrap_or([10, 0, 0, 1])
}

/// (median and least ns per run from the harness, ns per run by the
/// run-time statistics when `with_stats`).
fn measure(fd: &OwnedFd, frame: &[u8], with_stats: bool) -> Result<((u32, u32), Option<f64>), String> {
    let before = bpf::stats_of(fd);
    let mut ns = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        ns.push(bpf::test_run_fd(fd, frame, REPEAT)?.ns_per_run);
        std::thread::sleep(Duration::from_millis(30));
    }
    ns.sort_unstable();
    let stats = with_stats
        .then(|| {
            let ((r0, t0), (r1, t1)) = (before?, bpf::stats_of(fd)?);
            (r1 > r0).then(|| (t1 - t0) as f64 / (r1 - r0) as f64)
        })
        .flatten();
    Ok(((ns[ns.len() / 2], ns[0]), stats))
}

/// The TC programs attached through TCX links: what runs per packet
/// (filters and capture bodies run through them by tail calls). Loaded
/// but unattached programs (`top` by container counts with the kernel's
/// interface counters) are left out.
fn entry_programs(pid: u32) -> Vec<bpf::Prog> {
    bpf::linked_programs(pid)
        .into_iter()
        .filter(|p| p.prog_type == bpf::PROG_TYPE_TC && (p.name.ends_with("_ingress") || p.name.ends_with("_egress")))
        .collect()
}

pub fn table(rig: &Rig, modes: &[Mode]) {
    println!("\n## TC program cost in the kernel's test harness (BPF_PROG_TEST_RUN), ns per run, no traffic\n");
    let frames = [frame(v4(&rig.a.ip), v4(&rig.b.ip), 17, 64), frame(v4(&rig.a.ip), v4(&rig.b.ip), 6, 1514)];
    let mut t = Table::new(&["mode", "program", "64-byte UDP ns/run (least)", "1514-byte TCP ns/run (least)", "with run-time statistics on (UDP / TCP)"]);
    let fmt = |s: Option<f64>| s.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    // Two passes per program: the harness's clock alone, then with the
    // statistics on (they cost every run two clock reads).
    let both = |fd: &OwnedFd| -> Result<[String; 3], String> {
        let (u, _) = measure(fd, &frames[0], false)?;
        let (c, _) = measure(fd, &frames[1], false)?;
        let on = StatsOn::enable();
        let (_, us) = measure(fd, &frames[0], on.is_some())?;
        let (_, cs) = measure(fd, &frames[1], on.is_some())?;
        let mm = |(med, min): (u32, u32)| format!("{med} ({min})");
        Ok([mm(u), mm(c), format!("{} / {}", fmt(us), fmt(cs))])
    };
    match bpf::empty_tc_program().and_then(|fd| both(&fd)) {
        Ok([u, c, s]) => t.row(vec!["(an empty program: the floor)".into(), "-".into(), u, c, s]),
        Err(e) => t.row(vec!["(an empty program: the floor)".into(), format!("error: {e}"), "-".into(), "-".into(), "-".into()]),
    }
    for m in modes.iter().filter(|m| m.args.is_some()) {
        let rows = round::with_tool(rig, m, |pid| {
            let progs = entry_programs(pid);
            if progs.is_empty() {
                return vec![vec![m.label.clone(), "no TC program attached".into(), "-".into(), "-".into(), "-".into()]];
            }
            progs
                .iter()
                .map(|p| {
                    let cells = bpf::prog_fd(p.id)
                        .ok_or_else(|| "the program went away".to_string())
                        .and_then(|fd| both(&fd))
                        .map(|c| c.to_vec())
                        .unwrap_or_else(|e| vec![format!("error: {e}"), "-".into(), "-".into()]);
                    let mut row = vec![m.label.clone(), p.name.clone()];
                    row.extend(cells);
                    row
                })
                .collect()
        });
        match rows {
            Ok(rows) => rows.into_iter().for_each(|r| t.row(r)),
            Err(e) => t.row(vec![m.label.clone(), format!("error: {e}"), "-".into(), "-".into(), "-".into()]),
        }
    }
    println!("{}", t.render());
    println!(
        "\nMedian (and least) of {BATCHES} batches of {REPEAT} runs per figure, a fresh skb on the loopback device each batch (no socket, so no process attribution work), caches warm: the programs' own cost, below what the same program costs on real traffic (the `programs` table). The run-time statistics column is the kernel's accounting for the same runs."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_asked_length_and_headers() {
        let u = frame([10, 0, 0, 1], [10, 0, 0, 2], 17, 64);
        assert_eq!(u.len(), 64);
        assert_eq!(&u[12..14], &[0x08, 0x00]);
        assert_eq!(u[14 + 9], 17);
        assert_eq!(u16::from_be_bytes([u[16], u[17]]), 50, "IPv4 total length");
        assert_eq!(u16::from_be_bytes([u[38], u[39]]), 30, "UDP length");
        assert_eq!(&u[30..34], &[10, 0, 0, 2]);
        let t = frame([10, 0, 0, 1], [10, 0, 0, 2], 6, 1514);
        assert_eq!(t.len(), 1514);
        assert_eq!(t[14 + 9], 6);
        assert_eq!(t[34 + 13], 0x10);
        assert_eq!(u16::from_be_bytes([t[36], t[37]]), 5201);
    }
}
