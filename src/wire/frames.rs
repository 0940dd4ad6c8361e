//! The frames the server writes: the event-stream format's server side (the seed's frame, the
//! `retry:`-only frame, the heartbeat comment) and its media type. The client side is
//! [`crate::wire::event_stream`]; what feeds a stream is [`crate::core::stream`].
//!
//! Frames are encoded into a caller-owned buffer with no allocation once it has grown to one
//! frame; the date text is formatted at most once per millisecond by
//! [`crate::util::date::Dates`].
//!
//! **Invariant:** no IO and no clock: the wall-clock time is always an argument.

use crate::util::date::ISO_LEN;
use crate::util::number::{parse_u64, push_decimal};

/// The event stream's media type, as the seed sends it. The head is written by
/// [`crate::wire::head::Head::event_stream`]: the seed's fields plus `X-Accel-Buffering: no` so a
/// proxy in front (nginx) does not hold frames back. No `Content-Length` and no
/// `Transfer-Encoding`: the body is the raw event stream, delimited by the close (RFC 9112 6.3).
pub const CONTENT_TYPE: &str = "text/event-stream;charset=utf-8";

const FRAME_START: &[u8] = b"event:sseEvent\nid:";
const FRAME_MIDDLE: &[u8] = b"\nretry: 30000\ndata: {\"content\":\"";
const FRAME_END: &[u8] = b"\"}\n\n";

/// Appends the seed's frame for event `id` at the given ISO time:
/// `event:sseEvent\nid:<id>\nretry: 30000\ndata: {"content":"<iso>"}\n\n`.
pub fn encode_frame(out: &mut Vec<u8>, id: u64, iso: &[u8; ISO_LEN]) {
    out.extend_from_slice(FRAME_START);
    push_decimal(out, id);
    out.extend_from_slice(FRAME_MIDDLE);
    out.extend_from_slice(iso);
    out.extend_from_slice(FRAME_END);
}

/// Appends a line that only sets the client's reconnection time: `retry: <ms>\n`, with no
/// blank line after it. A conformant parser applies `retry` as it reads the line and
/// dispatches nothing (no data); loose ones (httpx-sse) turn any field followed by a blank
/// line into an empty `message` event. The connection closes right after it, so the line
/// alone is the whole frame.
pub fn encode_retry(out: &mut Vec<u8>, ms: u64) {
    out.extend_from_slice(b"retry: ");
    push_decimal(out, ms);
    out.push(b'\n');
}

/// A heartbeat: one comment line, no blank line after it, so that no client, however loose,
/// takes it (or a blank line) for an empty event. Sent only between whole frames.
pub const HEARTBEAT: &[u8] = b":\n";

/// The id a stream starts at, given the request's `Last-Event-ID` value: one past a decimal
/// number that fits in 64 bits, saturating (a resume from the largest id stays there, as the
/// ticks do, never restarting at 0); 0 for anything else (absent, empty, signs, spaces, more
/// than 64 bits), never an error.
pub fn first_id(last_event_id: Option<&[u8]>) -> u64 {
    last_event_id
        .and_then(parse_u64)
        .map_or(0, |n| n.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_the_seeds_bytes() {
        let mut out = Vec::new();
        encode_frame(&mut out, 0, b"2026-11-23T19:09:42.321Z");
        assert_eq!(
            out,
            b"event:sseEvent\nid:0\nretry: 30000\ndata: {\"content\":\"2026-11-23T19:09:42.321Z\"}\n\n"
        );
        out.clear();
        encode_frame(
            &mut out,
            18_446_744_073_709_551_615,
            b"2026-11-23T19:09:42.321Z",
        );
        assert!(out.starts_with(b"event:sseEvent\nid:18446744073709551615\nretry: 30000\n"));
        out.clear();
        encode_retry(&mut out, 7321);
        assert_eq!(out, b"retry: 7321\n");
    }

    #[test]
    fn frame_encoding_does_not_reallocate() {
        let mut out = Vec::with_capacity(128);
        let ptr = out.as_ptr();
        for id in [0, 99, u64::MAX] {
            out.clear();
            encode_frame(&mut out, id, b"2026-11-23T19:09:42.321Z");
        }
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn last_event_id() {
        let cases: &[(Option<&[u8]>, u64)] = &[
            (None, 0),
            (Some(b""), 0),
            (Some(b"0"), 1),
            (Some(b"41"), 42),
            (Some(b"007"), 8),
            (Some(b" 5"), 0),
            (Some(b"-1"), 0),
            (Some(b"+1"), 0),
            (Some(b"1.5"), 0),
            (Some(b"abc"), 0),
            (Some(b"18446744073709551614"), 18_446_744_073_709_551_615),
            (Some(b"18446744073709551615"), 18_446_744_073_709_551_615),
            (Some(b"99999999999999999999999"), 0),
        ];
        for &(input, want) in cases {
            assert_eq!(first_id(input), want, "{input:?}");
        }
    }
}
