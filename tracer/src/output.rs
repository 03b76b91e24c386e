//! Where events go: text or JSON lines on stdout, flushed line by line.

use std::io::{self, Write};

use serde_json::Value;

/// One printable event: its JSON form and its text line.
pub trait Render {
    fn json(&self) -> Value;
    fn text(&self) -> String;
}

pub struct Sink {
    json: bool,
    out: io::Stdout,
    pub written: u64,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self { json, out: io::stdout(), written: 0 }
    }

    pub fn emit(&mut self, ev: &dyn Render) -> io::Result<()> {
        let line = if self.json { ev.json().to_string() } else { ev.text() };
        let mut out = self.out.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        self.written += 1;
        Ok(())
    }

    /// Reports lost events; in JSON as `{"type":"lost",...}` lines, in text on stderr.
    pub fn lost(&mut self, source: &str, count: u64, time: &str) -> io::Result<()> {
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
