//! Panic containment for decoders of untrusted bytes. Decoders are written
//! (and fuzzed) never to panic, and the known bugs of the libraries they use
//! are worked around before the bytes reach them; this is the last line:
//! a panic while decoding one message or record is caught, reported as that
//! input being malformed, and the tracer goes on. The process-wide panic
//! hook stays silent for contained panics (no message, no backtrace on the
//! audited host's terminal) and keeps its old behaviour for all others.

use std::{
    cell::{Cell, RefCell},
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

thread_local! {
    /// Set while this thread runs a contained decoder.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
    /// What the last contained panic said, and where.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set by the fuzz targets: panics must crash them, not be contained.
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// From now on, on this thread, [`contain`] lets panics through (for the
/// fuzz targets and the tests that replay their inputs: a panic anywhere
/// is a bug to fix, even where it would be contained).
pub fn strict() {
    STRICT.with(|s| s.set(true));
}

static HOOK: Once = Once::new();

/// A decoder panicked on some input; the panic was caught.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the decoder failed on this input ({0})")]
pub struct Panicked(pub String);

/// Runs `f`, turning a panic inside it into [`Panicked`] without printing
/// anything. `f` must only read its input and build new values: what it
/// leaves half-built on a panic is dropped, never used.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    if STRICT.with(Cell::get) {
        return Ok(f());
    }
    install_hook();
    let was = CONTAINED.with(|c| c.replace(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    r.map_err(|payload| {
        let text = LAST.with(|l| l.borrow_mut().take()).unwrap_or_else(|| payload_text(payload.as_ref()));
        Panicked(text)
    })
}

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let text = format!("{}{place}", payload_text(info.payload()));
                LAST.with(|l| *l.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_it() {
        let r: Result<u8, _> = contain(|| {
            let v: Vec<u8> = Vec::new();
            v[3]
        });
        let e = r.expect_err("contained");
        assert!(e.0.contains("index out of bounds"), "{e}");
        assert!(e.0.contains("contain.rs"), "where it happened: {e}");
        // The containment ends with the call: later work is unaffected.
        assert_eq!(contain(|| 7), Ok(7));
    }

    #[test]
    fn nested_containment_restores_the_outer_state() {
        let r = contain(|| {
            let inner: Result<(), _> = contain(|| panic!("inner"));
            assert!(inner.is_err());
            CONTAINED.with(Cell::get)
        });
        assert_eq!(r, Ok(true));
        assert!(!CONTAINED.with(Cell::get));
    }
}
