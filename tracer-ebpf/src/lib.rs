#![no_std]
// This file exists so that tracer-ebpf can be a build-dependency of tracer;
// the programs live in main.rs and its modules.
