//! Where events go: text or JSON lines on stdout, flushed line by line.

use std::io::{self, Write};

use serde_json::Value;

/// One printable event: its JSON form and its text line.
pub trait Render {
    fn json(&self) -> Value;
    fn text(&self) -> String;
    /// The JSON line; events printed at high rates (packets) override it
    /// to serialize without building a `Value`.
    fn json_line(&self) -> String {
        self.json().to_string()
    }
}

pub struct Sink {
    json: bool,
    out: io::Stdout,
    pub written: u64,
    /// Lines kept by [`Sink::defer`] until [`Sink::flush`].
    pending: Vec<u8>,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self { json, out: io::stdout(), written: 0, pending: Vec::new() }
    }

    pub fn emit(&mut self, ev: &dyn Render) -> io::Result<()> {
        self.defer(ev);
        self.flush()
    }

    /// Adds an event's line to what the next [`Sink::flush`] writes: at
    /// packet rates one write per batch instead of one per line.
    pub fn defer(&mut self, ev: &dyn Render) {
        let line = if self.json { ev.json_line() } else { ev.text() };
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.written += 1;
    }

    /// Bytes deferred and not yet written.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut out = self.out.lock();
        let r = out.write_all(&self.pending).and_then(|_| out.flush());
        self.pending.clear();
        r
    }

    /// Reports lost events; in JSON as `{"type":"lost",...}` lines, in text on stderr.
    pub fn lost(&mut self, source: &str, count: u64, time: &str) -> io::Result<()> {
        self.flush()?;
        if self.json {
            let v = serde_json::json!({"type": "lost", "time": time, "source": source, "count": count});
            let mut out = self.out.lock();
            writeln!(out, "{v}")?;
            out.flush()
        } else {
            eprintln!("tracer: lost {count} {source} events");
            Ok(())
        }
    }
}
