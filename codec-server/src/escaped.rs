//! Request text in log lines. Anything a request carries (header values,
//! token errors, user names from tokens or proxies, key ids from payloads,
//! error messages that quote them) is written through [`Escaped`], so that no
//! request can end a log line early and forge the next one, in text logs or
//! JSON.

use std::fmt;

/// Displays a string with control characters, backslashes and quotes escaped
/// as Rust writes them (`\n`, `\u{1b}`, `\\`, `\"`): one log line stays one
/// line, and what was escaped can still be read.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || matches!(c, '\\' | '"') || is_line_break(c) {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        Ok(())
    }
}

/// Unicode line and paragraph separators, which some log viewers break on.
fn is_line_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_a_request_sends_breaks_a_line() {
        let hostile = "x\n2026-12-03T00:00:00Z INFO tcodec::audit: forged\r\u{1b}[2J\u{2028}\"\\";
        let shown = Escaped(hostile).to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() || is_line_break(c)),
            "{shown}"
        );
        assert_eq!(
            shown,
            r#"x\n2026-12-03T00:00:00Z INFO tcodec::audit: forged\r\u{1b}[2J\u{2028}\"\\"#
        );
        assert_eq!(Escaped("ada@example.com").to_string(), "ada@example.com");
        assert_eq!(Escaped("Zoë").to_string(), "Zoë");
    }
}
