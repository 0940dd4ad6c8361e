//! What one event loop measures: counters, failure reasons, and log-linear histograms; and the
//! per-frame helpers (the `content` timestamp, numeric ids) that feed them.
//!
//! Everything here is plain data owned by one loop, so recording is a few adds with no locks;
//! loops' [`Stats`] are merged once at the end of the run.
//!
//! **Invariant:** no IO, no clock; recording a value is O(1) and never allocates (the reason
//! maps only grow by one entry per distinct reason).

use super::histogram::Histogram;
use super::hub::Deliveries;
use std::collections::BTreeMap;
use std::io;

/// Why a stream failed to open, or ended before the run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The connect was refused (nothing listening, or the backlog said no).
    ConnectRefused,
    /// The TCP handshake did not finish within the connect timeout.
    ConnectTimeout,
    /// No local address/port was free (ephemeral ports exhausted): `EADDRNOTAVAIL`.
    AddrNotAvailable,
    /// This process ran out of file descriptors (`EMFILE`, `ENFILE`).
    NoFileDescriptors,
    /// Any other error while connecting (unreachable and the like).
    ConnectError,
    /// The peer reset the connection.
    Reset,
    /// The peer closed the connection before a complete response head.
    ClosedBeforeHeaders,
    /// No complete response head within the headers timeout.
    HeadersTimeout,
    /// The response head was larger than the cap.
    HeadTooLarge,
    /// The response head was not valid HTTP/1.x.
    BadResponse,
    /// The response status was not 200.
    BadStatus(u16),
    /// The response was not `text/event-stream`.
    NotEventStream,
    /// The stream was closed by the peer while open (end of a close-delimited body).
    Closed,
    /// The response body ended cleanly (last chunk, or `Content-Length` reached).
    Ended,
    /// The chunked transfer coding was malformed.
    BodyError,
    /// The event stream broke a parser cap (line or event too large).
    ParseError,
    /// Any other socket error.
    IoError,
    /// HTTP/2: the server reset the stream (RST_STREAM).
    StreamReset,
    /// HTTP/2: the connection broke the protocol (a bad frame or field block, either side's
    /// GOAWAY with an error code).
    H2Error,
    /// `--h2`: the server does not speak HTTP/2 (TLS picked another ALPN protocol, or a
    /// plain server answered the preface with HTTP/1.x).
    NotH2,
}

/// Where a socket error happened: in the TCP handshake, or on an established connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Established,
}

impl Reason {
    /// The reason's name in reports: `snake_case`, with the code for a bad status.
    pub fn name(self) -> String {
        let s = match self {
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::AddrNotAvailable => "addr_not_available",
            Reason::NoFileDescriptors => "no_file_descriptors",
            Reason::ConnectError => "connect_error",
            Reason::Reset => "reset",
            Reason::ClosedBeforeHeaders => "closed_before_headers",
            Reason::HeadersTimeout => "headers_timeout",
            Reason::HeadTooLarge => "head_too_large",
            Reason::BadResponse => "bad_response",
            Reason::BadStatus(code) => return format!("bad_status_{code}"),
            Reason::NotEventStream => "not_event_stream",
            Reason::Closed => "closed",
            Reason::Ended => "ended",
            Reason::BodyError => "body_error",
            Reason::ParseError => "parse_error",
            Reason::IoError => "io_error",
            Reason::StreamReset => "stream_reset",
            Reason::H2Error => "h2_error",
            Reason::NotH2 => "not_h2",
        };
        s.to_owned()
    }

    /// Classifies a socket error on an established connection.
    pub fn from_io(e: &io::Error) -> Reason {
        Reason::classify(e, Phase::Established)
    }

    /// Classifies a socket error from the TCP handshake.
    pub fn from_connect(e: &io::Error) -> Reason {
        Reason::classify(e, Phase::Connecting)
    }

    fn classify(e: &io::Error, phase: Phase) -> Reason {
        let connecting = phase == Phase::Connecting;
        use io::ErrorKind as K;
        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
            return Reason::NoFileDescriptors;
        }
        match e.kind() {
            K::ConnectionRefused => Reason::ConnectRefused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Reason::Reset,
            K::AddrNotAvailable => Reason::AddrNotAvailable,
            K::TimedOut if connecting => Reason::ConnectTimeout,
            _ if connecting => Reason::ConnectError,
            _ => Reason::IoError,
        }
    }
}

/// Id continuity across the frames of each stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdStats {
    /// Frames whose id jumped forward by more than one.
    pub gaps: u64,
    /// Ids skipped by those jumps, in total.
    pub missing: u64,
    /// Frames whose id was not above the previous one (repeats, or going back).
    pub duplicates: u64,
    /// Frames whose block had no `id` field.
    pub without_id: u64,
    /// Frames whose id was not a decimal number (not checked for gaps).
    pub non_numeric: u64,
    /// Smallest and largest first id over all streams.
    pub first_min: Option<u64>,
    pub first_max: Option<u64>,
}

/// `--h2`: what the connections did, beside the streams they carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct H2Counts {
    /// Connections opened (each carrying up to `--h2-streams` streams).
    pub connections: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// RST_STREAM frames received for a stream the run was carrying.
    pub resets: u64,
    /// Streams refused before their head (RST_STREAM `REFUSED_STREAM`, or past a GOAWAY's
    /// last stream id): asked for again, not counted as failures.
    pub refused: u64,
    /// Streams asked for again (after a reset or a refusal), with `Last-Event-ID`.
    pub reopened: u64,
    /// PINGs answered, and WINDOW_UPDATEs sent.
    pub pings: u64,
    pub window_updates: u64,
}

impl H2Counts {
    fn merge(&mut self, o: &H2Counts) {
        self.connections += o.connections;
        self.goaways += o.goaways;
        self.resets += o.resets;
        self.refused += o.refused;
        self.reopened += o.reopened;
        self.pings += o.pings;
        self.window_updates += o.window_updates;
    }
}

/// Everything one loop counts. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Connects started (including those failing at once).
    pub attempted: u64,
    /// Streams that got a 200 `text/event-stream` head.
    pub established: u64,
    /// Streams that never opened, by reason.
    pub failed: BTreeMap<Reason, u64>,
    /// Open streams that ended before the run did, by reason.
    pub dropped: BTreeMap<Reason, u64>,
    /// Still connecting or waiting for the head when the run ended.
    pub pending_at_end: u64,
    /// Open when the run ended.
    pub open_at_end: u64,
    /// Connect start to TCP established, in microseconds.
    pub connect_us: Histogram,
    /// TCP established (request sent) to complete response head, in microseconds.
    pub headers_us: Histogram,
    /// Time between two frames of one stream, in microseconds.
    pub interval_us: Histogram,
    /// Receive time minus the frame's `content` timestamp, in microseconds (negative values
    /// count as 0 and in `early_frames`).
    pub lateness_us: Histogram,
    /// Frames whose timestamp was after their receive time (clock granularity, or skew).
    pub early_frames: u64,
    /// Events dispatched.
    pub frames: u64,
    /// Whole intervals: frames after a stream's first, all of the run (warm-up included), and
    /// the time they took, in microseconds. Their ratio is a stream's rate however the streams'
    /// ticks line up with a sampling window.
    pub intervals: u64,
    pub interval_sum_us: u64,
    /// Open streams that have completed at least one interval.
    pub ticking: u64,
    /// The sum, over the streams that left (ended, or open at the end of the run), of each
    /// one's rate over whole intervals from its first frame to its last (frames per second).
    pub rate_sum: f64,
    /// Events dispatched from `warmup_us` on (the steady-state window).
    pub measured_frames: u64,
    /// Response body bytes (after the head, before de-chunking).
    pub body_bytes: u64,
    /// Valid `retry` fields.
    pub retry_fields: u64,
    /// Comment lines.
    pub comments: u64,
    pub ids: IdStats,
    /// When the last stream opened, in microseconds from the start of the run.
    pub last_established_us: u64,
    /// Frame intervals and lateness are recorded only from this time on (`--warmup`), so the
    /// figures describe the steady state rather than the ramp.
    pub warmup_us: u64,
    /// Hub mode: this run's nonce, which published payloads carry.
    pub run_id: u64,
    /// Hub mode: published events received, and their latency, gaps, duplicates and resets.
    pub deliveries: Deliveries,
    /// `--h2`: the connections' counts.
    pub h2: H2Counts,
}

impl Stats {
    /// Counts the end of a stream that never opened: a failure.
    pub fn end_failed(&mut self, reason: Reason) {
        *self.failed.entry(reason).or_default() += 1;
    }

    /// Counts the end of a stream that had opened: a drop.
    pub fn end_dropped(&mut self, reason: Reason) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// Streams that never opened.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Open streams that ended early.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Adds another loop's figures.
    pub fn merge(&mut self, o: &Stats) {
        self.attempted += o.attempted;
        self.established += o.established;
        for (r, n) in &o.failed {
            *self.failed.entry(*r).or_default() += n;
        }
        for (r, n) in &o.dropped {
            *self.dropped.entry(*r).or_default() += n;
        }
        self.pending_at_end += o.pending_at_end;
        self.open_at_end += o.open_at_end;
        self.connect_us.merge(&o.connect_us);
        self.headers_us.merge(&o.headers_us);
        self.interval_us.merge(&o.interval_us);
        self.lateness_us.merge(&o.lateness_us);
        self.early_frames += o.early_frames;
        self.frames += o.frames;
        self.intervals += o.intervals;
        self.interval_sum_us += o.interval_sum_us;
        self.ticking += o.ticking;
        self.rate_sum += o.rate_sum;
        self.measured_frames += o.measured_frames;
        self.body_bytes += o.body_bytes;
        self.retry_fields += o.retry_fields;
        self.comments += o.comments;
        let (a, b) = (&mut self.ids, &o.ids);
        a.gaps += b.gaps;
        a.missing += b.missing;
        a.duplicates += b.duplicates;
        a.without_id += b.without_id;
        a.non_numeric += b.non_numeric;
        a.first_min = min_opt(a.first_min, b.first_min);
        a.first_max = a.first_max.max(b.first_max);
        self.last_established_us = self.last_established_us.max(o.last_established_us);
        self.deliveries.merge(&o.deliveries);
        self.h2.merge(&o.h2);
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// A decimal id (ASCII digits only, no sign, fits `u64`), as servers that number frames send:
/// the server's own decimal parser, so client and server agree on what an id is.
pub use crate::util::number::parse_u64 as parse_id;

/// The timestamp of a frame whose data carries `"content":"<ISO 8601 date>"` (the seed's frame
/// and its peers'), in microseconds since the Unix epoch.
pub fn content_timestamp_us(data: &[u8]) -> Option<i64> {
    const PREFIX: &[u8] = b"{\"content\":\"";
    const KEY: &[u8] = b"\"content\"";
    if let Some(rest) = data.strip_prefix(PREFIX) {
        return parse_iso_us(rest);
    }
    let at = data.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = skip_ws(&data[at + KEY.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    parse_iso_us(rest.strip_prefix(b"\"")?)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// Parses the start of `s` as `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)` into
/// microseconds since the Unix epoch. Anything else (including no zone) is `None`.
pub fn parse_iso_us(s: &[u8]) -> Option<i64> {
    fn digits(s: &[u8], from: usize, n: usize) -> Option<i64> {
        let part = s.get(from..from + n)?;
        part.iter().try_fold(0i64, |v, &d| {
            d.is_ascii_digit().then(|| v * 10 + i64::from(d - b'0'))
        })
    }
    let sep = |i: usize, c: u8| s.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && (sep(10, b'T') || sep(10, b't') || sep(10, b' '))) {
        return None;
    }
    if !(sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (hour, min, sec) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if sep(i, b'.') || sep(i, b',') {
        i += 1;
        let start = i;
        while let Some(d) = s.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start < 6 {
                micros = micros * 10 + i64::from(d - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_s = match s.get(i)? {
        b'Z' | b'z' => 0,
        &c @ (b'+' | b'-') => {
            let h = digits(s, i + 1, 2)?;
            let m = if sep(i + 3, b':') {
                digits(s, i + 4, 2)?
            } else {
                digits(s, i + 3, 2)?
            };
            let off = h * 3600 + m * 60;
            if c == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::date::Dates;

    #[test]
    fn reasons_have_names_and_classify_errors() {
        assert_eq!(Reason::BadStatus(503).name(), "bad_status_503");
        assert_eq!(Reason::ConnectRefused.name(), "connect_refused");
        let e = |code| io::Error::from_raw_os_error(code);
        assert_eq!(
            Reason::from_connect(&e(libc::ECONNREFUSED)),
            Reason::ConnectRefused
        );
        assert_eq!(Reason::from_io(&e(libc::ECONNRESET)), Reason::Reset);
        assert_eq!(
            Reason::from_connect(&e(libc::EADDRNOTAVAIL)),
            Reason::AddrNotAvailable
        );
        assert_eq!(
            Reason::from_connect(&e(libc::EMFILE)),
            Reason::NoFileDescriptors
        );
        assert_eq!(
            Reason::from_connect(&e(libc::ETIMEDOUT)),
            Reason::ConnectTimeout
        );
        assert_eq!(
            Reason::from_connect(&e(libc::EHOSTUNREACH)),
            Reason::ConnectError
        );
        assert_eq!(Reason::from_io(&e(libc::EIO)), Reason::IoError);
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id(b"0"), Some(0));
        assert_eq!(parse_id(b"42"), Some(42));
        assert_eq!(parse_id(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"-1",
            b" 1",
            b"1a",
            b"abc",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn iso_dates_round_trip_the_servers_format() {
        let mut dates = Dates::new();
        for ms in [
            0i64,
            1_795_460_982_321,
            951_782_400_007,
            253_402_300_799_999,
            -1,
            1_700_000_000_000,
        ] {
            let iso = *dates.iso(ms);
            assert_eq!(parse_iso_us(&iso), Some(ms * 1000), "{ms}");
        }
        // Every day of a few years, against the time crate.
        for day in (-800_000i64..800_000).step_by(97) {
            let secs = day * 86_400 + 3_723;
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let s = format!(
                "{:04}-{:02}-{:02}T01:02:03Z",
                t.year(),
                u8::from(t.month()),
                t.day()
            );
            if t.year() >= 0 {
                assert_eq!(parse_iso_us(s.as_bytes()), Some(secs * 1_000_000), "{s}");
            }
        }
    }

    #[test]
    fn iso_variants() {
        let base = 1_795_460_982_000_000i64; // 2026-11-23T19:09:42Z
        let cases: &[(&str, Option<i64>)] = &[
            ("2026-11-23T19:09:42Z", Some(base)),
            ("2026-11-23T19:09:42.5Z", Some(base + 500_000)),
            ("2026-11-23T19:09:42.123456789Z", Some(base + 123_456)),
            ("2026-11-23T20:09:42+01:00", Some(base)),
            ("2026-11-23T18:09:42-0100", Some(base)),
            ("2026-11-23T19:09:42.321Z\"}", Some(base + 321_000)),
            ("2026-11-23T19:09:42", None),
            ("2026-11-23T19:09:42.Z", None),
            ("2026-13-23T19:09:42Z", None),
            ("2026-11-23X19:09:42Z", None),
            ("2026-11-2", None),
            ("", None),
            ("not a date at all, no", None),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_iso_us(s.as_bytes()), want, "{s}");
        }
    }

    #[test]
    fn content_timestamps() {
        let t = Some(1_795_460_982_321_000);
        assert_eq!(
            content_timestamp_us(b"{\"content\":\"2026-11-23T19:09:42.321Z\"}"),
            t
        );
        assert_eq!(
            content_timestamp_us(b"{\"n\": 1, \"content\" : \"2026-11-23T19:09:42.321Z\"}"),
            t
        );
        assert_eq!(content_timestamp_us(b"{\"content\":42}"), None);
        assert_eq!(content_timestamp_us(b"hello"), None);
        assert_eq!(content_timestamp_us(b""), None);
        assert_eq!(content_timestamp_us(b"{\"content\":\""), None);
    }

    #[test]
    fn stats_merge_and_end() {
        let mut a = Stats::default();
        a.end_failed(Reason::ConnectRefused);
        a.end_dropped(Reason::Closed);
        a.ids.first_min = Some(5);
        a.ids.first_max = Some(5);
        let mut b = Stats::default();
        b.end_failed(Reason::ConnectRefused);
        b.ids.first_min = Some(3);
        b.ids.first_max = Some(9);
        b.frames = 7;
        a.merge(&b);
        assert_eq!(a.failed.get(&Reason::ConnectRefused), Some(&2));
        assert_eq!((a.failed_total(), a.dropped_total(), a.frames), (2, 1, 7));
        assert_eq!((a.ids.first_min, a.ids.first_max), (Some(3), Some(9)));
    }
}
