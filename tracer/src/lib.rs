//! tracer: an eBPF tracer for Linux network namespaces and containers.
//! The binary is thin: [`app::run`] is what it calls.

pub mod app;
pub mod bpf;
pub mod cli;
pub mod doctor;
pub mod fuzzing;
pub mod netlink;
pub mod ns;
pub mod output;
pub mod packets;
pub mod sys;
pub mod tc;
pub mod top;
