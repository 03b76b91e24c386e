//! The kernel side of tracer: small programs that capture, filter and hand
//! events to userspace through one ring buffer. Decoding happens in userspace.
#![no_std]
#![no_main]
// Inline assembly for the atomic add of the loss counters (kernel.rs).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod drops;
mod filter;
mod kernel;
mod netlink;
mod obs;
mod packet;
mod probe;
mod tcp;
mod sock;
mod tc;
mod top;
mod top_proc;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
