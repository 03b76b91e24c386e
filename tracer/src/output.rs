//! Where events go: text or JSON lines on stdout (or on stderr when stdout
//! carries pcapng, `-w -`), flushed line by line, through the one choke
//! point that escapes text ([`Sink`], with [`crate::sys::text`]); and the
//! [`Render`] trait every printable event implements.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use serde_json::Value;

use crate::sys::text::{SENTENCE_MAX, escape, field, json_safe};

/// One printable event: its JSON form and its text line.
pub trait Render {
    fn json(&self) -> Value;
    /// The text line, fields from outside already cut with [`crate::sys::text::field`]; the
    /// [`Sink`] escapes the whole line again, so nothing can slip through.
    fn text(&self) -> String;
    /// Lines printed under the text line (a netlink request's effects),
    /// each escaped like it.
    fn more_lines(&self) -> Vec<String> {
        Vec::new()
    }
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
    /// What was written, by stream, instead of writing it (tests).
    #[cfg(test)]
    captured: Option<Vec<(Stream, String)>>,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self::to(json, Stream::Stdout)
    }

    pub fn to(json: bool, stream: Stream) -> Self {
        Self {
            json,
            stream,
            written: 0,
            pending: Vec::new(),
            #[cfg(test)]
            captured: None,
        }
    }

    /// Adds an event's line to what the next [`Sink::flush`] writes: at
    /// packet rates one write per batch instead of one per line.
    pub fn defer(&mut self, ev: &dyn Render) {
        let line = if self.json {
            json_safe(ev.json_line())
        } else {
            let text = ev.text();
            let mut line = match escape(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(escaped) => escaped,
            };
            for more in ev.more_lines() {
                line.push('\n');
                line.push_str(&escape(&more));
            }
            line
        };
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.written += 1;
    }

    fn write_out(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(c) = &mut self.captured {
            c.push((stream, String::from_utf8_lossy(bytes).into_owned()));
            return Ok(());
        }
        match stream {
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
        let pending = std::mem::take(&mut self.pending);
        let r = self.write_out(self.stream, &pending);
        // The buffer is kept for the next lines.
        self.pending = pending;
        self.pending.clear();
        r
    }

    /// Reports lost events: in JSON as a `{"type":"lost",...}` line among
    /// the others, in text as a line on stderr.
    pub fn lost(&mut self, source: &str, count: u64, time: &str) -> io::Result<()> {
        self.flush()?;
        if self.json {
            let v = serde_json::json!({"type": "lost", "time": time, "source": source, "count": count});
            self.write_out(self.stream, format!("{v}\n").as_bytes())
        } else {
            let line = format!("tracer: {}\n", field(&format!("lost {count} {source} events"), SENTENCE_MAX));
            self.write_out(Stream::Stderr, line.as_bytes())
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

    fn captured(json: bool, stream: Stream) -> Sink {
        Sink { captured: Some(Vec::new()), ..Sink::to(json, stream) }
    }

    fn written(s: &Sink) -> Vec<(Stream, String)> {
        s.captured.clone().unwrap_or_default()
    }

    #[test]
    fn lines_are_written_together_at_flush_on_the_sinks_stream() {
        let mut s = captured(false, Stream::Stdout);
        s.defer(&Ev("a"));
        s.defer(&Ev("b\x07"));
        assert_eq!((s.written, s.buffered()), (2, "name=a\nname=b\\x07\n".len()));
        assert!(written(&s).is_empty(), "nothing before the flush");
        s.flush().expect("flush");
        assert_eq!(written(&s), vec![(Stream::Stdout, "name=a\nname=b\\x07\n".to_string())]);
        assert_eq!(s.buffered(), 0);
        s.flush().expect("flush");
        assert_eq!(written(&s).len(), 1, "an empty flush writes nothing");
    }

    #[test]
    fn lost_events_are_json_lines_in_json_and_stderr_lines_in_text() {
        let mut s = captured(true, Stream::Stdout);
        s.defer(&Ev("x"));
        s.lost("netlink_iov", 2, "T").expect("lost");
        let w = written(&s);
        // The pending line first, then the loss, both on stdout.
        assert_eq!(w.iter().map(|(st, _)| *st).collect::<Vec<_>>(), [Stream::Stdout, Stream::Stdout]);
        let v: Value = serde_json::from_str(w[1].1.trim_end()).expect("json");
        assert_eq!(v, serde_json::json!({"type": "lost", "time": "T", "source": "netlink_iov", "count": 2}));
        let mut s = captured(false, Stream::Stdout);
        s.lost("packet", 5, "T").expect("lost");
        assert_eq!(written(&s), vec![(Stream::Stderr, "tracer: lost 5 packet events\n".to_string())]);
    }

    #[test]
    fn with_pcapng_on_stdout_every_line_goes_to_stderr() {
        let mut s = captured(true, Stream::Stderr);
        s.defer(&Ev("x"));
        s.lost("packet", 1, "T").expect("lost");
        assert!(written(&s).iter().all(|(st, _)| *st == Stream::Stderr), "{:?}", written(&s));
        assert_eq!(written(&s).len(), 2);
    }
}
