//! One client stream's state machine, sans-IO: connect outcome, bytes and `now` in; the request
//! bytes, a deadline, measurements and an end [`Reason`] out.
//!
//! The loop calls [`Stream::handle_connected`] once the TCP handshake is done, writes
//! [`Stream::pending`] and reports it with [`Stream::on_sent`], feeds what it reads to
//! [`Stream::handle_input`] (at most [`Stream::read_limit`] bytes at a time), and calls
//! [`Stream::handle_timeout`] when [`Stream::timeout`] has passed. Any `Err(reason)` (or
//! [`Stream::handle_eof`]) ends the stream: the loop counts it with `Stats::end` and drops it.
//!
//! Memory: an open stream is this struct (about 200 bytes) plus the event parser's small
//! buffers; the response head is kept (up to [`StreamConfig::max_head`]) only while it is
//! incomplete. Reads go into the loop's shared buffer.
//!
//! **Invariant:** no socket, no clock: time comes in as [`Time`]; nothing panics on the peer's
//! bytes.

use super::response::{self, BodyKind, BodyReader, HeadScan};
use super::stats::{content_timestamp_us, parse_id, Reason, Stats};
use crate::wire::event_stream::{self, Item, Parser};

/// The knobs a stream obeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// The TCP handshake must finish within this.
    pub connect_timeout_ms: u64,
    /// The complete response head must arrive this long after the handshake.
    pub headers_timeout_ms: u64,
    /// Largest response head accepted.
    pub max_head: usize,
    /// Caps for the event stream.
    pub limits: event_stream::ParseLimits,
    /// The `Last-Event-ID` sent, which is also the parser's starting last event ID.
    pub last_event_id: Option<String>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            connect_timeout_ms: 5_000,
            headers_timeout_ms: 10_000,
            max_head: 16 * 1024,
            limits: event_stream::ParseLimits::default(),
            last_event_id: None,
        }
    }
}

/// The time, read once by the loop per batch of work and handed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    /// Monotonic microseconds since the run started.
    pub us: u64,
    /// Wall-clock microseconds since the Unix epoch (for frame timestamps).
    pub wall_us: i64,
}

impl Time {
    /// Monotonic milliseconds, the unit of deadlines.
    pub fn ms(self) -> u64 {
        self.us / 1000
    }
}

#[derive(Debug)]
enum Phase {
    /// TCP handshake under way.
    Connecting { deadline_ms: u64 },
    /// Sending the request (`sent` bytes so far) and reading the response head; `head` holds a
    /// partial head between reads.
    HeadScan {
        sent: usize,
        head: Vec<u8>,
        deadline_ms: u64,
    },
    /// The response is an event stream.
    Stream { body: BodyReader },
}

/// Per-stream frame bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// The first frame's arrival and the frames since (for the stream's whole-interval rate).
    first_frame_us: Option<u64>,
    frames: u64,
    last_frame_us: Option<u64>,
    last_id: Option<u64>,
    /// Hub mode: the highest publish sequence number delivered on this stream.
    last_seq: Option<u64>,
}

/// One stream. See the module docs.
#[derive(Debug)]
pub struct Stream {
    phase: Phase,
    /// When the connect started, then when it finished (the request's start).
    mark_us: u64,
    parser: Parser,
    track: Track,
}

impl Stream {
    /// A stream whose connect starts now.
    pub fn new(now: Time, cfg: &StreamConfig) -> Self {
        let parser = match &cfg.last_event_id {
            Some(id) => Parser::with_last_event_id(cfg.limits, id.as_bytes()),
            None => Parser::with_limits(cfg.limits),
        };
        Stream {
            phase: Phase::Connecting {
                deadline_ms: now.ms() + cfg.connect_timeout_ms,
            },
            mark_us: now.us,
            parser,
            track: Track::default(),
        }
    }

    /// Whether the TCP handshake is still under way.
    pub fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    /// The stream leaves the run (ended, or still open at its end): its rate over whole
    /// intervals, from its first frame to its last, joins the report's sum, and it no longer
    /// counts as ticking. Called once per stream.
    pub fn leave(&self, stats: &mut Stats) {
        let t = &self.track;
        if let (Some(first), Some(last)) = (t.first_frame_us, t.last_frame_us) {
            if t.frames >= 2 {
                stats.ticking = stats.ticking.saturating_sub(1);
                let span = last.saturating_sub(first).max(1);
                stats.rate_sum += (t.frames - 1) as f64 * 1e6 / span as f64;
            }
        }
    }

    /// Whether the response head was accepted (the stream is open).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Stream { .. })
    }

    /// The TCP handshake finished: the request may go out.
    pub fn handle_connected(&mut self, now: Time, cfg: &StreamConfig, stats: &mut Stats) {
        if let Phase::Connecting { .. } = self.phase {
            stats.connect_us.record(now.us.saturating_sub(self.mark_us));
            self.mark_us = now.us;
            self.phase = Phase::HeadScan {
                sent: 0,
                head: Vec::new(),
                deadline_ms: now.ms() + cfg.headers_timeout_ms,
            };
        }
    }

    /// The part of `request` not yet written.
    pub fn pending<'r>(&self, request: &'r [u8]) -> Option<&'r [u8]> {
        match self.phase {
            Phase::HeadScan { sent, .. } if sent < request.len() => Some(&request[sent..]),
            _ => None,
        }
    }

    /// `n` more request bytes went out.
    pub fn on_sent(&mut self, n: usize) {
        if let Phase::HeadScan { sent, .. } = &mut self.phase {
            *sent += n;
        }
    }

    /// Whether the loop should read now.
    pub fn wants_read(&self) -> bool {
        !self.is_connecting()
    }

    /// Most bytes to read at once: while the head is incomplete, the room left under the cap
    /// (plus one, to notice going over); unbounded afterwards.
    pub fn read_limit(&self, cfg: &StreamConfig) -> usize {
        match &self.phase {
            Phase::HeadScan { head, .. } => (cfg.max_head + 1).saturating_sub(head.len()).max(1),
            _ => usize::MAX,
        }
    }

    /// The next deadline, if any: an open stream has none (the run's end bounds it).
    pub fn timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Connecting { deadline_ms } | Phase::HeadScan { deadline_ms, .. } => {
                Some(deadline_ms)
            }
            Phase::Stream { .. } => None,
        }
    }

    /// The deadline may have passed: the reason to end the stream, if it has.
    pub fn handle_timeout(&self, now: Time) -> Option<Reason> {
        match self.phase {
            Phase::Connecting { deadline_ms } if now.ms() >= deadline_ms => {
                Some(Reason::ConnectTimeout)
            }
            Phase::HeadScan { deadline_ms, .. } if now.ms() >= deadline_ms => {
                Some(Reason::HeadersTimeout)
            }
            _ => None,
        }
    }

    /// The peer closed its side: why the stream ends.
    pub fn handle_eof(&self) -> Reason {
        match self.phase {
            Phase::Stream { .. } => Reason::Closed,
            _ => Reason::ClosedBeforeHeaders,
        }
    }

    /// HTTP/2: the stream's HEADERS went out at `now` (the TCP handshake is its connection's,
    /// timed there): the response head must come within the headers timeout.
    pub fn handle_requested(&mut self, now: Time, cfg: &StreamConfig) {
        self.mark_us = now.us;
        self.phase = Phase::HeadScan {
            sent: usize::MAX,
            head: Vec::new(),
            deadline_ms: now.ms() + cfg.headers_timeout_ms,
        };
    }

    /// HTTP/2: the response head, decoded by the connection: its `:status`, whether its
    /// `content-type` is `text/event-stream`, and whether it ended the stream. Opens the stream
    /// as an HTTP/1.1 head would (the same checks, counts and reasons); DATA payloads then go
    /// to [`Stream::handle_input`] as a close-delimited body.
    pub fn handle_head(
        &mut self,
        status: u16,
        event_stream: bool,
        end: bool,
        now: Time,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        if status != 200 {
            return Err(Reason::BadStatus(status));
        }
        if !event_stream {
            return Err(Reason::NotEventStream);
        }
        stats.established += 1;
        stats.last_established_us = now.us;
        stats.headers_us.record(now.us.saturating_sub(self.mark_us));
        self.phase = Phase::Stream {
            body: BodyReader::new(BodyKind::Close),
        };
        if end {
            return Err(Reason::Ended);
        }
        Ok(())
    }

    /// HTTP/2: the stream is to be asked for again (it was reset, or refused by a GOAWAY):
    /// back to waiting for its HEADERS, resuming from the last event id it saw (an event
    /// half-read when the stream stopped is dropped). Its counters carry on, so ids and
    /// publish sequence numbers are checked across the reopen.
    pub fn reopen(&mut self, cfg: &StreamConfig) {
        self.parser = Parser::with_last_event_id(cfg.limits, self.parser.last_event_id());
        self.phase = Phase::Connecting {
            deadline_ms: u64::MAX,
        };
    }

    /// The id the stream would resume from: the last event id it saw (or was started with).
    pub fn last_event_id(&self) -> &[u8] {
        self.parser.last_event_id()
    }

    /// Bytes from the peer.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        now: Time,
        cfg: &StreamConfig,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        match &mut self.phase {
            Phase::Connecting { .. } => Ok(()),
            Phase::HeadScan { head, .. } if head.is_empty() => self.on_head(data, now, cfg, stats),
            Phase::HeadScan { head, .. } => {
                let mut buf = std::mem::take(head);
                buf.extend_from_slice(data);
                self.on_head(&buf, now, cfg, stats)
            }
            Phase::Stream { .. } => self.on_body(data, now, stats),
        }
    }

    /// Parses the head from `data` (what was held plus what came); keeps a partial head, or
    /// opens the stream and passes on the bytes after the head.
    fn on_head(
        &mut self,
        mut data: &[u8],
        now: Time,
        cfg: &StreamConfig,
        stats: &mut Stats,
    ) -> Result<(), Reason> {
        let resp = loop {
            match response::parse_head(data) {
                Ok(HeadScan::Interim(len)) => data = &data[len..],
                Ok(HeadScan::Complete(resp)) => break resp,
                Ok(HeadScan::Partial) => {
                    if data.len() > cfg.max_head {
                        return Err(Reason::HeadTooLarge);
                    }
                    if let Phase::HeadScan { head, .. } = &mut self.phase {
                        head.clear();
                        head.extend_from_slice(data);
                    }
                    return Ok(());
                }
                Err(_) => return Err(Reason::BadResponse),
            }
        };
        if resp.len > cfg.max_head {
            return Err(Reason::HeadTooLarge);
        }
        if resp.status != 200 {
            return Err(Reason::BadStatus(resp.status));
        }
        if !resp.event_stream {
            return Err(Reason::NotEventStream);
        }
        stats.established += 1;
        stats.last_established_us = now.us;
        stats.headers_us.record(now.us.saturating_sub(self.mark_us));
        let body = BodyReader::new(resp.body);
        self.phase = Phase::Stream { body };
        if resp.body == BodyKind::Length(0) {
            return Err(Reason::Ended);
        }
        self.on_body(&data[resp.len..], now, stats)
    }

    fn on_body(&mut self, data: &[u8], now: Time, stats: &mut Stats) -> Result<(), Reason> {
        let Stream {
            phase,
            parser,
            track,
            ..
        } = self;
        let Phase::Stream { body } = phase else {
            return Ok(());
        };
        stats.body_bytes += data.len() as u64;
        let mut input = data;
        loop {
            match body.next(&mut input) {
                Ok(Some(payload)) => parser
                    .feed(payload, &mut |item| on_item(item, track, stats, now))
                    .map_err(|_| Reason::ParseError)?,
                Ok(None) => break,
                Err(_) => return Err(Reason::BodyError),
            }
        }
        if body.is_done() {
            return Err(Reason::Ended);
        }
        Ok(())
    }
}

/// Counts one parsed item: O(1) per frame, no allocation.
fn on_item(item: Item<'_>, track: &mut Track, stats: &mut Stats, now: Time) {
    let ev = match item {
        Item::Event(ev) => ev,
        Item::Retry(_) => {
            stats.retry_fields += 1;
            return;
        }
        Item::Comment(_) => {
            stats.comments += 1;
            return;
        }
    };
    stats.frames += 1;
    let run = stats.run_id;
    stats.deliveries.on_event(
        &mut track.last_seq,
        crate::load::hub::Received {
            event_type: ev.event_type,
            data: ev.data,
            wall_us: now.wall_us,
        },
        run,
    );
    let measuring = now.us >= stats.warmup_us;
    stats.measured_frames += u64::from(measuring);
    if let Some(prev) = track.last_frame_us.replace(now.us) {
        let gap = now.us.saturating_sub(prev);
        if measuring {
            stats.interval_us.record(gap);
        }
        stats.intervals += 1;
        stats.interval_sum_us += gap;
        if track.frames == 1 {
            stats.ticking += 1;
        }
    }
    track.first_frame_us.get_or_insert(now.us);
    track.frames += 1;
    if let Some(sent_us) = content_timestamp_us(ev.data).filter(|_| measuring) {
        let late = now.wall_us.saturating_sub(sent_us);
        if late < 0 {
            stats.early_frames += 1;
        }
        stats.lateness_us.record(late.max(0) as u64);
    }
    let ids = &mut stats.ids;
    if !ev.has_id {
        ids.without_id += 1;
        return;
    }
    let Some(id) = parse_id(ev.last_event_id) else {
        ids.non_numeric += 1;
        return;
    };
    match track.last_id.replace(id) {
        None => {
            ids.first_min = Some(ids.first_min.map_or(id, |m| m.min(id)));
            ids.first_max = Some(ids.first_max.map_or(id, |m| m.max(id)));
        }
        Some(prev) if id == prev.wrapping_add(1) => {}
        Some(prev) if id > prev => {
            ids.gaps += 1;
            ids.missing += id - prev - 1;
        }
        Some(_) => ids.duplicates += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n";
    const REQUEST: &[u8] = b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n";

    fn at(ms: u64) -> Time {
        Time {
            us: ms * 1000,
            wall_us: 1_795_460_982_000_000 + ms as i64 * 1000,
        }
    }

    fn frame(id: u64, ms: u64) -> Vec<u8> {
        let mut dates = crate::util::date::Dates::new();
        let mut out = Vec::new();
        crate::wire::frames::encode_frame(&mut out, id, dates.iso(1_795_460_982_000 + ms as i64));
        out
    }

    /// A stream connected at 0 ms with its request sent.
    fn open(cfg: &StreamConfig, stats: &mut Stats) -> Stream {
        let mut c = Stream::new(at(0), cfg);
        assert_eq!(c.timeout(), Some(cfg.connect_timeout_ms));
        c.handle_connected(at(1), cfg, stats);
        assert_eq!(c.pending(REQUEST), Some(REQUEST));
        c.on_sent(10);
        assert_eq!(c.pending(REQUEST), Some(&REQUEST[10..]));
        c.on_sent(REQUEST.len() - 10);
        assert_eq!(c.pending(REQUEST), None);
        c
    }

    #[test]
    fn a_seed_stream_is_measured() {
        let cfg = StreamConfig::default();
        let mut stats = Stats::default();
        let mut c = open(&cfg, &mut stats);
        // The head arrives in two pieces, the second with the first frame.
        let (h1, h2) = SEED_HEAD.split_at(20);
        c.handle_input(h1, at(2), &cfg, &mut stats).unwrap();
        assert!(!c.is_established());
        let mut second = h2.to_vec();
        second.extend_from_slice(&frame(0, 2));
        c.handle_input(&second, at(3), &cfg, &mut stats).unwrap();
        assert!(c.is_established());
        assert_eq!(c.timeout(), None);
        assert_eq!((stats.established, stats.frames), (1, 1));
        assert_eq!(stats.headers_us.max(), 2000);
        assert_eq!(stats.connect_us.max(), 1000);
        // Frames every 100 ms, each 1 ms late; one id skipped, then one repeated.
        for (id, ms) in [(1, 102), (2, 202), (4, 302), (4, 402), (5, 502)] {
            c.handle_input(&frame(id, ms), at(ms + 1), &cfg, &mut stats)
                .unwrap();
        }
        assert_eq!(stats.frames, 6);
        assert_eq!(stats.interval_us.count(), 5);
        assert_eq!(stats.interval_us.quantile(0.5), 100_000);
        // Whole intervals: 5 of them in 500 ms, the stream ticking; on leaving, its rate is
        // 10/s (frames 2 to 6 over the time from the first frame to the last).
        assert_eq!(
            (stats.intervals, stats.interval_sum_us, stats.ticking),
            (5, 500_000, 1)
        );
        c.leave(&mut stats);
        assert_eq!(stats.ticking, 0);
        assert!((stats.rate_sum - 10.0).abs() < 1e-9, "{}", stats.rate_sum);
        assert_eq!(stats.lateness_us.max(), 1000);
        assert_eq!(stats.lateness_us.count(), 6);
        assert_eq!(
            (stats.ids.gaps, stats.ids.missing, stats.ids.duplicates),
            (1, 1, 1)
        );
        assert_eq!(
            (stats.ids.first_min, stats.ids.first_max),
            (Some(0), Some(0))
        );
        assert_eq!(stats.retry_fields, 6);
        assert_eq!(c.handle_eof(), Reason::Closed);
    }

    #[test]
    fn chunked_stream() {
        let cfg = StreamConfig::default();
        let mut stats = Stats::default();
        let mut c = open(&cfg, &mut stats);
        // Chunks split lines, and one splits a CRLF; the payload is
        // ": hi\r\ndata: a\r\n\r\nid: 3\r\ndata: b\r\n\r\n".
        let input = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            8\r\n: hi\r\nda\r\n6\r\nta: a\r\r\n8\r\n\n\r\nid: 3\r\nc\r\n\r\ndata: b\r\n\r\r\n\
            1\r\n\n\r\n0\r\n\r\n";
        assert_eq!(
            c.handle_input(input, at(5), &cfg, &mut stats),
            Err(Reason::Ended)
        );
        assert_eq!((stats.frames, stats.comments), (2, 1));
        assert_eq!(stats.ids.without_id, 1);
        assert_eq!((stats.ids.first_min, stats.ids.non_numeric), (Some(3), 0));
    }

    #[test]
    fn failures_have_reasons() {
        let cfg = StreamConfig {
            max_head: 64,
            ..StreamConfig::default()
        };
        let cases: &[(&[u8], Reason)] = &[
            (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", Reason::BadStatus(503)),
            (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", Reason::NotEventStream),
            (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n", Reason::HeadTooLarge),
            (b"garbage\r\n\r\n", Reason::BadResponse),
            (&[&b"HTTP/1.1 200 OK\r\nX-Pad: "[..], &[b'a'; 60]].concat(), Reason::HeadTooLarge),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\nzz", Reason::HeadTooLarge),
        ];
        for &(input, want) in cases {
            let mut stats = Stats::default();
            let mut c = open(&cfg, &mut stats);
            assert_eq!(
                c.handle_input(input, at(2), &cfg, &mut stats),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(stats.established, 0);
        }
        let cfg = StreamConfig::default();
        let mut stats = Stats::default();
        let mut c = open(&cfg, &mut stats);
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\nzz";
        assert_eq!(
            c.handle_input(bad_chunk, at(2), &cfg, &mut stats),
            Err(Reason::BodyError)
        );
        // An interim response is skipped; a head may arrive byte by byte.
        let mut stats = Stats::default();
        let mut c = open(&cfg, &mut stats);
        let input = [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], SEED_HEAD].concat();
        for b in input.chunks(1) {
            c.handle_input(b, at(2), &cfg, &mut stats).unwrap();
        }
        assert!(c.is_established());
        assert_eq!(c.read_limit(&cfg), usize::MAX);
        // A parser cap is a parse error.
        let small = StreamConfig {
            limits: event_stream::ParseLimits {
                max_line: 8,
                max_data: 8,
            },
            ..StreamConfig::default()
        };
        let mut c = open(&small, &mut stats);
        let input = [SEED_HEAD, b"data: 0123456789\n"].concat();
        assert_eq!(
            c.handle_input(&input, at(2), &small, &mut stats),
            Err(Reason::ParseError)
        );
    }

    #[test]
    fn timeouts_and_early_close() {
        let cfg = StreamConfig::default();
        let c = Stream::new(at(0), &cfg);
        assert_eq!(c.handle_timeout(at(4_999)), None);
        assert_eq!(c.handle_timeout(at(5_000)), Some(Reason::ConnectTimeout));
        assert!(!c.wants_read());
        let mut stats = Stats::default();
        let c = open(&cfg, &mut stats);
        assert_eq!(c.timeout(), Some(10_001));
        assert_eq!(c.handle_timeout(at(10_001)), Some(Reason::HeadersTimeout));
        assert_eq!(c.handle_eof(), Reason::ClosedBeforeHeaders);
        assert_eq!(c.read_limit(&cfg), cfg.max_head + 1);
    }

    #[test]
    fn last_event_id_is_the_starting_id() {
        let cfg = StreamConfig {
            last_event_id: Some("41".into()),
            ..StreamConfig::default()
        };
        let mut stats = Stats::default();
        let mut c = open(&cfg, &mut stats);
        let input = [SEED_HEAD, &frame(42, 1)].concat();
        c.handle_input(&input, at(2), &cfg, &mut stats).unwrap();
        assert_eq!(
            (stats.ids.first_min, stats.ids.first_max),
            (Some(42), Some(42))
        );
    }
}
