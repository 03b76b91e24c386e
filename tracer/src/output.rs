//! Where events go: text or JSON lines on stdout (or on stderr when stdout
//! carries pcapng, `-w -`), flushed line by line, through the one choke
//! point that escapes text ([`Sink`], with [`crate::sys::text`]); and the
//! [`Render`] trait every printable event implements.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use serde_json::Value;

use crate::sys::text::{escape, json_safe, warn};

/// One printable event: its JSON form and its text line.
pub trait Render {
    fn json(&self) -> Value;
    /// The text line, fields from outside already cut with [`crate::sys::text::field`]; the
    /// [`Sink`] escapes the whole line again, so nothing can slip through.
    fn text(&self) -> String;
    /// The JSON line; events printed at high rates (packets) override it
    /// to serialize without building a `Value`.
    fn json_line(&self) -> String {
        self.json().to_string()
    }
}

/// Which stream a [`Sink`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    /// When stdout carries pcapng (`-w -`).
    Stderr,
}

pub struct Sink {
    json: bool,
    stream: Stream,
    pub written: u64,
    /// Lines kept by [`Sink::defer`] until [`Sink::flush`].
    pending: Vec<u8>,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self::to(json, Stream::Stdout)
    }

    pub fn to(json: bool, stream: Stream) -> Self {
        Self { json, stream, written: 0, pending: Vec::new() }
    }

    /// Adds an event's line to what the next [`Sink::flush`] writes: at
    /// packet rates one write per batch instead of one per line.
    pub fn defer(&mut self, ev: &dyn Render) {
        let line = if self.json {
            json_safe(ev.json_line())
        } else {
            let text = ev.text();
            match escape(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(escaped) => escaped,
            }
        };
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.written += 1;
    }

    fn write_out(&self, bytes: &[u8]) -> io::Result<()> {
        match self.stream {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|_| out.flush())
            }
            Stream::Stderr => {
                let mut out = io::stderr().lock();
                out.write_all(bytes).and_then(|_| out.flush())
            }
        }
    }

    /// Bytes deferred and not yet written.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.write_out(&self.pending);
        self.pending.clear();
        r
    }

    /// Reports lost events; in JSON as `{"type":"lost",...}` lines, in text on stderr.
    pub fn lost(&mut self, source: &str, count: u64, time: &str) -> io::Result<()> {
        self.flush()?;
        if self.json {
            let v = serde_json::json!({"type": "lost", "time": time, "source": source, "count": count});
            self.write_out(format!("{v}\n").as_bytes())
        } else {
            warn(&format!("lost {count} {source} events"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ev(&'static str);
    impl Render for Ev {
        fn json(&self) -> Value {
            serde_json::json!({"name": self.0})
        }
        fn text(&self) -> String {
            format!("name={}", self.0)
        }
    }

    #[test]
    fn the_sink_escapes_text_lines_and_keeps_json_exact() {
        let mut s = Sink::to(false, Stream::Stderr);
        s.defer(&Ev("a\x1b[31m\nb\u{85}"));
        assert_eq!(String::from_utf8_lossy(&s.pending), "name=a\\x1b[31m\\x0ab\\x85\n");
        let mut s = Sink::to(true, Stream::Stderr);
        s.defer(&Ev("a\x1b\u{85}"));
        let line = String::from_utf8_lossy(&s.pending).into_owned();
        assert_eq!(line, "{\"name\":\"a\\u001b\\u0085\"}\n");
        let v: Value = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(v["name"], "a\x1b\u{85}");
    }
}
