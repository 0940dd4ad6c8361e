//! The event-stream wire format on the server side: the response head, the seed's frame and the
//! `retry:`-only frame, and the date strings they carry.
//!
//! Frames are encoded into a caller-owned buffer with no allocation once it has grown to one
//! frame; the date text is formatted at most once per millisecond by [`Dates`].
//!
//! **Invariant:** no IO and no clock: the wall-clock time is always an argument.

use crate::http::{parse_u64, push_decimal};

/// The event stream's media type, as the seed sends it. The head is written by
/// [`crate::response::Head::event_stream`]: the seed's fields plus `X-Accel-Buffering: no` so a
/// proxy in front (nginx) does not hold frames back. No `Content-Length` and no
/// `Transfer-Encoding`: the body is the raw event stream, delimited by the close (RFC 9112 6.3).
pub const CONTENT_TYPE: &str = "text/event-stream;charset=utf-8";

const FRAME_START: &[u8] = b"event:sseEvent\nid:";
const FRAME_MIDDLE: &[u8] = b"\nretry: 30000\ndata: {\"content\":\"";
const FRAME_END: &[u8] = b"\"}\n\n";

/// Length of an ISO date as `JSON.stringify(new Date())` writes it (without the quotes).
pub const ISO_LEN: usize = 24;
/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const HTTP_DATE_LEN: usize = 29;

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

/// Formatted wall-clock dates, recomputed only when the millisecond (ISO) or the second (HTTP)
/// changes, so a burst of frames in one millisecond formats once.
#[derive(Clone, Debug)]
pub struct Dates {
    iso_ms: i64,
    iso: [u8; ISO_LEN],
    http_sec: i64,
    http: [u8; HTTP_DATE_LEN],
}

impl Default for Dates {
    fn default() -> Self {
        Self::new()
    }
}

impl Dates {
    /// A cache that formats on first use.
    pub fn new() -> Self {
        Dates {
            iso_ms: i64::MIN,
            iso: [b'0'; ISO_LEN],
            http_sec: i64::MIN,
            http: [b'0'; HTTP_DATE_LEN],
        }
    }

    /// `unix_ms` as `2026-11-23T19:09:42.321Z`.
    pub fn iso(&mut self, unix_ms: i64) -> &[u8; ISO_LEN] {
        if unix_ms != self.iso_ms {
            self.iso_ms = unix_ms;
            format_iso(&mut self.iso, unix_ms);
        }
        &self.iso
    }

    /// `unix_ms` as an IMF-fixdate for the `Date` header.
    pub fn http(&mut self, unix_ms: i64) -> &[u8; HTTP_DATE_LEN] {
        let sec = unix_ms.div_euclid(1000);
        if sec != self.http_sec {
            self.http_sec = sec;
            format_http(&mut self.http, sec);
        }
        &self.http
    }
}

fn civil(unix_sec: i64) -> time::OffsetDateTime {
    // Out-of-range clocks (before year -9999 or after 9999) clamp to the epoch rather than fail.
    time::OffsetDateTime::from_unix_timestamp(unix_sec).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

fn put_year(out: &mut [u8], year: i32) {
    let y = year.clamp(0, 9999) as u32;
    put2(&mut out[0..2], y / 100);
    put2(&mut out[2..4], y % 100);
}

fn format_iso(out: &mut [u8; ISO_LEN], unix_ms: i64) {
    let t = civil(unix_ms.div_euclid(1000));
    let ms = unix_ms.rem_euclid(1000) as u32;
    out.copy_from_slice(b"0000-00-00T00:00:00.000Z");
    put_year(&mut out[0..4], t.year());
    put2(&mut out[5..7], u8::from(t.month()) as u32);
    put2(&mut out[8..10], t.day() as u32);
    put2(&mut out[11..13], t.hour() as u32);
    put2(&mut out[14..16], t.minute() as u32);
    put2(&mut out[17..19], t.second() as u32);
    out[20] = b'0' + (ms / 100) as u8;
    put2(&mut out[21..23], ms % 100);
}

fn format_http(out: &mut [u8; HTTP_DATE_LEN], unix_sec: i64) {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = civil(unix_sec);
    out.copy_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
    out[0..3].copy_from_slice(DAYS[t.weekday().number_days_from_monday() as usize]);
    put2(&mut out[5..7], t.day() as u32);
    out[8..11].copy_from_slice(MONTHS[u8::from(t.month()) as usize - 1]);
    put_year(&mut out[12..16], t.year());
    put2(&mut out[17..19], t.hour() as u32);
    put2(&mut out[20..22], t.minute() as u32);
    put2(&mut out[23..25], t.second() as u32);
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
    fn iso_dates_match_javascript() {
        let mut d = Dates::new();
        // Values checked against `new Date(ms).toJSON()` in Node.
        assert_eq!(d.iso(0), b"1970-01-01T00:00:00.000Z");
        assert_eq!(d.iso(1_795_460_982_321), b"2026-11-23T19:09:42.321Z");
        assert_eq!(d.iso(951_782_400_007), b"2000-02-29T00:00:00.007Z");
        assert_eq!(d.iso(253_402_300_799_999), b"9999-12-31T23:59:59.999Z");
        assert_eq!(d.iso(-1), b"1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn http_dates() {
        let mut d = Dates::new();
        assert_eq!(d.http(784_111_777_000), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d.http(1_795_460_982_321), b"Mon, 23 Nov 2026 19:09:42 GMT");
        assert_eq!(d.http(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
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
