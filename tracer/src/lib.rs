//! tracer: an eBPF tracer for Linux network namespaces and containers.
//!
//! The layers, bottom to top; each module imports only from those below it
//! (and from `tracer-common`), and no capability imports another:
//!
//! - `sys`: facts and primitives of the running system (kernel, namespace
//!   files, netlink on the wire, clock, text made safe, stop requests).
//! - `bpf`: the eBPF object: loading, BTF offsets, the hook table, the ring
//!   buffer reader, raw events, lost-event counts.
//! - `ns` and `output`: namespaces, containers, interfaces and the types
//!   events name them by; where events are printed.
//! - `procs`: process attribution, which packets, `top --by process` and
//!   doctor share: the socket programs on the cgroup v2 root, the join of
//!   packets to the processes at each end, and how a process is shown.
//! - `tc`: what every TC job shares: attaching, following, naming, filters,
//!   and the one start-up sequence.
//! - `frames`: captured frames as every job that shows them needs them:
//!   the decoder, the header fields, pcapng and the capture file.
//! - capabilities: `netlink`, `packets`, `drops`, `tcp`, `top`, `doctor`:
//!   each a decoder, its events and their renderers, and its validated job.
//! - [`app`]: the only reader of [`cli`]: the job plan, the one run loop,
//!   the default job's timeline, the error a user sees.
//!
//! The public surface is what the binary, the integration tests
//! ([`testing`]) and the fuzz targets ([`fuzzing`]) call; the rest is the
//! crate's own.

pub mod app;
pub(crate) mod bpf;
pub mod cli;
pub(crate) mod doctor;
pub(crate) mod drops;
pub(crate) mod frames;
pub mod fuzzing;
pub(crate) mod netlink;
pub(crate) mod ns;
pub(crate) mod output;
pub(crate) mod packets;
pub(crate) mod procs;
pub(crate) mod serve;
pub(crate) mod sys;
pub(crate) mod tc;
pub(crate) mod tcp;
pub mod testing;
pub(crate) mod top;
