#![no_main]
// See tracer::fuzzing::filter for the input layout.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::filter(data));
