//! Test lab
