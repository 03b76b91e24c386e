#![no_main]
// See tracer::fuzzing::packet for the input layout.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::packet(data));
