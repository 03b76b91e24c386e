//! Rebuild when bpf-linker changes, since cargo does not track linkers.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
