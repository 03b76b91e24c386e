#![no_main]
// See tracer::fuzzing::netlink_send for the input layout.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::netlink_send(data));
