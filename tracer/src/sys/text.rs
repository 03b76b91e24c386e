//! How text that came from outside is made safe for a terminal.
//!
//! Process, interface, namespace, container and nftables names, and the
//! kernel's extended-ack messages, are chosen by whoever sends a request or
//! starts a container: any local user. Text output escapes every control
//! character in them ([`escape`]) and cuts long ones ([`field`]); the
//! choke points are `output::Sink` (every text line of `netlink`, `packets`,
//! `--hops` and the default job), the `top` and `ns` tables (per cell, so
//! columns stay aligned), and [`warn`] / the binary's error line on stderr.
//! JSON stays exact: serde escapes C0 controls, and [`json_safe`] also
//! writes DEL, C1 controls and bidirectional overrides as `\uXXXX`, which a
//! JSON parser reads back as the same characters.

use std::{borrow::Cow, fmt::Write as _};

/// Longest name shown in text (process, interface, namespace, container,
/// nftables table/chain/set, kinds): longer ones end in [`ELLIPSIS`].
/// The kernel's own names are shorter (IFNAMSIZ 16, TASK_COMM_LEN 16);
/// container and nftables names can be far longer.
pub const NAME_MAX: usize = 64;
/// Longest message shown in text (extended acks, attribute values).
pub const MESSAGE_MAX: usize = 200;
/// Longest sentence on stderr (an error may quote several names).
pub const SENTENCE_MAX: usize = 1000;
/// What ends a text field that was cut.
pub const ELLIPSIS: &str = "...";

/// Characters a terminal may act on rather than show: C0 controls (tab and
/// newline included: one event is one line), DEL, and C1 controls (U+0080
/// to U+009F, which xterm and others obey when UTF-8 encoded too).
fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}')
}

/// Unicode formatting characters that reorder or break a line as shown
/// (bidirectional embeddings, overrides and isolates, line and paragraph
/// separators): a name with U+202E can make the rest of an audit line read
/// backwards.
fn is_format(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters as `\xNN` and Unicode formatting characters
/// as `\u{NNNN}`; everything else (printable Unicode, backslashes) as is.
/// Text from invalid UTF-8 reached us through lossy decoding, so it holds
/// U+FFFD where the bad bytes were, never the bytes themselves.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) || is_format(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    if is_control(c) {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else if is_format(c) {
        let _ = write!(out, "\\u{{{:04x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// `s` escaped, and cut to at most `max` characters (as shown, escapes
/// counted) with [`ELLIPSIS`] at the end when it was longer. An escape is
/// never cut in half.
pub fn field(s: &str, max: usize) -> Cow<'_, str> {
    let escaped = escape(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let keep = max.saturating_sub(ELLIPSIS.len());
    let mut out = String::with_capacity(max + 4);
    let mut shown = 0;
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        push_escaped(&mut piece, c);
        let n = piece.chars().count();
        if shown + n > keep {
            break;
        }
        out.push_str(&piece);
        shown += n;
    }
    out.push_str(ELLIPSIS);
    Cow::Owned(out)
}

/// A name for text output: [`field`] at [`NAME_MAX`].
pub fn name(s: &str) -> Cow<'_, str> {
    field(s, NAME_MAX)
}

/// A JSON line made safe for a terminal without changing what it says:
/// DEL, C1 controls and Unicode formatting characters (which serde writes
/// raw) become `\uXXXX` escapes. Valid because outside of strings JSON is
/// ASCII, so every such character is inside a string.
pub fn json_safe(line: String) -> String {
    let unsafe_in_json = |c: char| matches!(c, '\x7f'..='\u{9f}') || is_format(c);
    if !line.chars().any(unsafe_in_json) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_in_json(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// One line on stderr, `tracer: ` first, with outside text escaped and
/// the whole cut at [`SENTENCE_MAX`].
pub fn warn(msg: &str) {
    eprintln!("tracer: {}", field(msg, SENTENCE_MAX));
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape("eth0 lab-a/ïf"), Cow::Borrowed("eth0 lab-a/ïf")));
        assert_eq!(escape("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(escape("a\tb\nc\rd\0e\x7f"), "a\\x09b\\x0ac\\x0dd\\x00e\\x7f");
        // C1 controls as characters (UTF-8 C2 80 .. C2 9F), CSI among them.
        assert_eq!(escape("x\u{9b}31my\u{80}\u{9f}"), "x\\x9b31my\\x80\\x9f");
        // U+00A0 and beyond are printable.
        assert_eq!(escape("\u{a0}é"), "\u{a0}é");
        // A right-to-left override would reorder the rest of the line.
        assert_eq!(escape("ab\u{202e}cd\u{2066}"), "ab\\u{202e}cd\\u{2066}");
        // Lossy decoding of invalid UTF-8 leaves U+FFFD, never the byte.
        let lossy = String::from_utf8_lossy(b"n\xff\x9b");
        assert_eq!(escape(&lossy), "n\u{fffd}\u{fffd}");
        // Escaping twice changes nothing more: the Sink may see a field again.
        let once = escape("\x1b[2J\u{9b}").into_owned();
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn every_control_character_is_escaped() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let e = escape(&c.to_string()).into_owned();
            assert_eq!(e, format!("\\x{:02x}", c as u32));
            assert!(e.chars().all(|c| c.is_ascii_graphic()), "{e:?}");
        }
    }

    #[test]
    fn long_fields_are_cut_with_an_ellipsis() {
        assert_eq!(field("short", 10), "short");
        assert_eq!(field("0123456789", 10), "0123456789");
        assert_eq!(field("0123456789a", 10), "0123456...");
        // Escapes count as shown and are never cut in half.
        assert_eq!(field("ab\x1b\x1b\x1bcdef", 10), "ab\\x1b...");
        let long = "n".repeat(5000);
        assert_eq!(name(&long).chars().count(), NAME_MAX);
        assert!(name(&long).ends_with(ELLIPSIS));
        assert_eq!(field(&"\x07".repeat(100), 20).chars().count(), 19);
        // Multibyte characters count once.
        assert_eq!(field(&"é".repeat(20), 10), format!("{}...", "é".repeat(7)));
    }

    #[test]
    fn json_stays_exact_and_terminal_safe() {
        let comm = "x\x1b]0;p\x07\u{9b}\x7f\u{202e}é";
        let line = json_safe(serde_json::json!({"comm": comm}).to_string());
        assert!(line.chars().all(|c| !c.is_control() && !is_format(c)), "{line:?}");
        assert_eq!(line, r#"{"comm":"x\u001b]0;p\u0007\u009b\u007f\u202eé"}"#);
        let back: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back["comm"], comm);
        let plain = r#"{"a":"b"}"#.to_string();
        assert_eq!(json_safe(plain.clone()), plain);
    }
}
