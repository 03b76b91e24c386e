#![no_main]
// See tracer::fuzzing::ring_record for the input layout.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::ring_record(data));
