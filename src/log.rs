//! One line per thing an operator wants to know, on stderr: start-up, shutdown, overload,
//! the shared log going down and up, every answered request and every ended stream (never one
//! per frame). `--log-format text|json`; `--quiet` keeps only start-up, shutdown, overload and
//! errors. Paths are logged without their query (it may carry a token), tokens never.
//!
//! Lines are built in a buffer and written with one `write` of the locked stderr, so lines
//! from several loops never interleave.

use std::io::Write as _;
use std::sync::OnceLock;

/// How lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-25T16:55:01.123Z stream peer=127.0.0.1:5555 kind=clock ...`
    Text,
    /// One JSON object a line: `{"ts":"...","event":"stream","peer":"...",...}`.
    Json,
}

/// A value in a line.
pub enum V<'a> {
    S(&'a str),
    N(u64),
}

#[derive(Clone, Copy, Debug)]
struct Logger {
    format: Format,
    quiet: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the format and verbosity (once, at start-up; the default is text, not quiet).
pub fn init(format: Format, quiet: bool) {
    let _ = LOGGER.set(Logger { format, quiet });
}

fn logger() -> Logger {
    LOGGER.get().copied().unwrap_or(Logger {
        format: Format::Text,
        quiet: false,
    })
}

/// Whether per-connection lines (requests, streams) are written.
pub fn connections() -> bool {
    !logger().quiet
}

/// Writes one line: an event name and its fields, in order.
pub fn line(event: &str, fields: &[(&str, V<'_>)]) {
    let l = logger();
    let mut out = String::with_capacity(160);
    let mut ts = [0u8; crate::sse::ISO_LEN];
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    ts.copy_from_slice(crate::sse::Dates::new().iso(unix_ms));
    let ts = std::str::from_utf8(&ts).unwrap_or("");
    match l.format {
        Format::Text => {
            out.push_str(ts);
            out.push(' ');
            out.push_str(event);
            for (k, v) in fields {
                out.push(' ');
                out.push_str(k);
                out.push('=');
                match v {
                    V::S(s) if s.is_empty() || s.contains([' ', '"', '=']) => {
                        out.push_str(&serde_json::Value::from(*s).to_string())
                    }
                    V::S(s) => out.extend(s.chars().map(|c| if c.is_control() { '?' } else { c })),
                    V::N(n) => out.push_str(&n.to_string()),
                }
            }
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), ts.into());
            obj.insert("event".into(), event.into());
            for (k, v) in fields {
                let v = match v {
                    V::S(s) => serde_json::Value::from(*s),
                    V::N(n) => serde_json::Value::from(*n),
                };
                obj.insert((*k).into(), v);
            }
            out.push_str(&serde_json::Value::Object(obj).to_string());
        }
    }
    out.push('\n');
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_values_with_spaces_are_quoted_and_control_bytes_replaced() {
        // Only the formatting is checked here; the socket tests read real lines.
        let v = serde_json::Value::from("a b").to_string();
        assert_eq!(v, "\"a b\"");
    }
}
