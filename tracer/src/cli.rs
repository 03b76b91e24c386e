//! Command-line flags, as clap parses them: nothing here but their shapes
//! and help. `app` alone reads them, and validates them into one
//! job before anything touches the kernel.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    about = "eBPF tracer for Linux network namespaces and containers",
    long_about = "eBPF tracer for Linux network namespaces and containers.\n\n\
        With no subcommand it traces everything: netlink changes and packets of \
        every namespace, merged into one timeline."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Print one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Stop after this many seconds.
    #[arg(long, global = true, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after this many events (`top`: reports).
    #[arg(short = 'c', long, global = true, value_name = "N")]
    pub count: Option<u64>,
    /// Size of the kernel ring buffer in KiB (a power of two; default 16384).
    #[arg(short = 'B', long = "buffer-size", global = true, value_name = "KIB")]
    pub buffer_kib: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check what this kernel offers the tracer, by loading a tiny program of each kind.
    Doctor,
    /// Audit netlink requests (links, addresses, routes, ...): who sent them, where, and the result.
    Netlink(NetlinkArgs),
    /// Trace packets on the veth and bridge interfaces of every namespace or container.
    Packets(PacketArgs),
    /// List network namespaces with their processes, containers and interfaces.
    Ns(NsArgs),
    /// Live per-container, per-interface and per-flow rates, counted in the kernel.
    Top(TopArgs),
    /// Serve packet, byte, netlink and loss counters as Prometheus metrics over HTTP.
    Serve(ServeArgs),
    /// Every packet the kernel drops, with its reason and the function that dropped it.
    Drops(DropsArgs),
    /// TCP connection health: states, retransmissions, resets, RTT, a summary at close.
    Tcp(TcpArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct DropsArgs {
    /// Where (`-i`: drops without a device are then left out), and which
    /// packets (the pcap-filter expression runs on the bytes copied).
    #[command(flatten)]
    pub tc: TcArgs,
    /// Only these drop reasons, as the kernel names them (e.g.
    /// NETFILTER_DROP,NO_SOCKET; comma-separated).
    #[arg(long, value_name = "LIST")]
    pub reason: Option<String>,
    /// Bytes of each dropped packet to capture (at most 256).
    #[arg(long, value_name = "N")]
    pub snaplen: Option<u32>,
    /// Write the dropped packets as pcapng to FILE, or to standard output
    /// with `-` (reason and function in each packet's comment).
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct TcpArgs {
    #[command(flatten)]
    pub sel: Selectors,
    /// Every namespace, following those that appear later (the default).
    #[arg(long, conflicts_with_all = ["netns", "pid", "container"])]
    pub all: bool,
    /// Least seconds between two RTT readings of one connection.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub rtt_interval: f64,
    /// Filter expression (pcap-filter(7), as tcpdump) on the connection's
    /// addresses and ports, the socket's own as source; may also be given
    /// as trailing words.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Filter expression as trailing words, as tcpdump takes it.
    #[arg(trailing_var_arg = true, value_name = "EXPR")]
    pub expr: Vec<String>,
}

/// `--netns`, `--pid`, `--container`: at most one of them.
#[derive(Debug, Args, Clone, Default)]
#[group(multiple = false)]
pub struct Selectors {
    /// Only this network namespace: a name in /run/netns, a path, or an inode number.
    #[arg(long, value_name = "NAME|PATH|INODE")]
    pub netns: Option<String>,
    /// Only the network namespace of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only this container: a name or an id prefix.
    #[arg(long, value_name = "NAME|ID")]
    pub container: Option<String>,
}

/// What the TC jobs (`packets`, `top`) take alike: where, and which packets.
#[derive(Debug, Args, Clone, Default)]
pub struct TcArgs {
    #[command(flatten)]
    pub sel: Selectors,
    /// Every namespace, following those that appear later (the default).
    #[arg(long, conflicts_with_all = ["netns", "pid", "container"])]
    pub all: bool,
    /// Only interfaces whose name matches this glob (comma-separated globs).
    #[arg(short = 'i', long = "iface", value_name = "GLOB")]
    pub iface: Option<String>,
    /// Filter expression (tcpdump syntax subset); may also be given as trailing words.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Filter expression as trailing words, as tcpdump takes it.
    #[arg(trailing_var_arg = true, value_name = "EXPR")]
    pub expr: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct NsArgs {
    #[command(flatten)]
    pub sel: Selectors,
}

#[derive(Debug, Args, Clone, Default)]
pub struct NetlinkArgs {
    #[command(flatten)]
    pub sel: Selectors,
    /// Netlink protocols to report: route, netfilter, generic, xfrm, all (comma-separated).
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub protocol: String,
    /// Only these message types, e.g. RTM_NEWLINK,RTM_DELADDR.
    #[arg(long = "type", value_name = "LIST")]
    pub types: Option<String>,
    /// Also report requests that change nothing: GETs and dumps, nftables batch
    /// markers, and the empty RTM_NEWLINK iproute2 sends to probe the kernel.
    #[arg(long)]
    pub include_get: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PacketArgs {
    #[command(flatten)]
    pub tc: TcArgs,
    /// Bytes of each packet to capture.
    #[arg(long, value_name = "N")]
    pub snaplen: Option<u32>,
    /// Write packets as pcapng to FILE, or to standard output with `-`
    /// (never through a symbolic link; a new file is made 0600).
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// With -w: start a new file when the current one is larger than SIZE
    /// millions of bytes (k, m, g: KiB, MiB, GiB), named FILE, FILE1, FILE2...
    #[arg(short = 'C', value_name = "SIZE")]
    pub file_size: Option<String>,
    /// With -w: start a new file every SECS seconds; FILE is a strftime(3)
    /// pattern, e.g. `cap-%H%M%S.pcapng`.
    #[arg(short = 'G', value_name = "SECS")]
    pub rotate_seconds: Option<u64>,
    /// With -C: keep at most N files, overwriting the first ones (a ring);
    /// with -G: stop after N files.
    #[arg(short = 'W', value_name = "N")]
    pub file_count: Option<u32>,
    /// Read packets from a pcapng or pcap file (ours or tcpdump's) instead
    /// of capturing; the filter runs in userspace, as `tcpdump -r` runs it.
    #[arg(short = 'r', value_name = "FILE", conflicts_with_all = ["all", "netns", "pid", "container", "iface", "hops", "process", "comm"])]
    pub read: Option<PathBuf>,
    /// Show each packet's path across interfaces, with transit times.
    #[arg(long)]
    pub hops: bool,
    /// Only packets of this process's sockets (sent by them or arriving
    /// for them), selected in the kernel; traces the process's namespace
    /// unless --all, --netns or --container says otherwise.
    #[arg(long = "process", value_name = "PID")]
    pub process: Option<u32>,
    /// Only packets of the sockets of processes with this name (as
    /// /proc/PID/comm has it), selected in the kernel.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Do not attribute packets to processes (no programs on the cgroup
    /// v2 root, no process fields).
    #[arg(long, conflicts_with_all = ["process", "comm"])]
    pub no_process: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub tc: TcArgs,
    /// Seconds between reports.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// One row per container (or namespace), interface, flow, process or drop reason.
    #[arg(long, value_enum, default_value = "container")]
    pub by: By,
    /// At most this many rows per report (largest first); on a terminal,
    /// by default as many as fit.
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `tracer top --by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One row per container (or namespace without one).
    Container,
    /// One row per interface.
    Iface,
    /// One row per flow, interface and direction.
    Flow,
    /// One row per local process: what its sockets sent and received.
    Process,
    /// One row per container (or namespace), interface and drop reason:
    /// the packets the kernel dropped (`skb:kfree_skb`), counted in the kernel.
    Reason,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub tc: TcArgs,
    /// Address and port to listen on [default: 127.0.0.1:9464] (loopback;
    /// another address exposes the metrics to whoever reaches it).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Seconds the series of a namespace or interface that went away are
    /// kept before they are removed [default: 300].
    #[arg(long, value_name = "SECS")]
    pub grace: Option<f64>,
}
