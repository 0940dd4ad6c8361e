//! A client-side event-stream parser that follows the WHATWG HTML standard ("Server-sent
//! events", section 9.2.6, "Interpreting an event stream"), sans-IO.
//!
//! The caller feeds the response body in chunks of any size ([`Parser::feed`]); the parser
//! hands back, through a callback and borrowing its own buffers, every dispatched `Event`,
//! every valid `retry` field and every comment ([`Item`]). Chunk boundaries never change the
//! result: a CR at the end of one chunk and an LF at the start of the next are one line end, and
//! a byte-order mark split over chunks is still stripped.
//!
//! What the standard says, and this parser does: lines end in CRLF, LF or CR; an empty line
//! dispatches the event; a line starting with `:` is a comment; a line without a colon is a
//! field name with an empty value; one space after the colon is dropped; `data` lines are joined
//! with LF and the final LF removed; an event with an empty data buffer is not dispatched; the
//! event type defaults to `message` and is reset after each dispatch; the last event ID
//! persists across events and is ignored when the `id` value contains a NUL; `retry` takes only
//! ASCII digits; a leading UTF-8 BOM is stripped; an unterminated last event is never
//! dispatched. Values are handed over as bytes: the standard decodes the stream as UTF-8 (with
//! replacement) first, which cannot move a line end or a field name, so a caller that needs
//! text can decode the values it uses (`Event::data_lossy`).
//!
//! Memory: between events the parser holds only what a partial line needs, and every buffer has
//! a cap ([`ParseLimits`]); going past one is an [`Error`] (sticky), never unbounded growth. Steady
//! state costs no allocation per event: buffers are cleared, not freed, unless one grew large.
//!
//! **Invariant:** no IO, no clock, no panic on any input.

use std::fmt;

/// The UTF-8 encoding of U+FEFF, stripped once at the very start of the stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
/// A buffer that grew past this is freed after use rather than kept, so that one large event
/// does not pin memory on an otherwise idle stream.
const KEEP_CAPACITY: usize = 4096;

/// Size caps for untrusted input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longest line (without its line end), in bytes.
    pub max_line: usize,
    /// Largest data buffer of one event (the values of its `data` lines plus one LF each).
    pub max_data: usize,
}

impl Default for ParseLimits {
    /// 1 MiB each.
    fn default() -> Self {
        ParseLimits {
            max_line: 1 << 20,
            max_data: 1 << 20,
        }
    }
}

/// Why the parser gave up. Once returned, every later [`Parser::feed`] returns it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A line was longer than [`ParseLimits::max_line`].
    LineTooLong,
    /// An event's data was larger than [`ParseLimits::max_data`].
    EventTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::LineTooLong => "event-stream line too long",
            Error::EventTooLarge => "event data too large",
        })
    }
}

impl std::error::Error for Error {}

/// A dispatched event, borrowing the parser's buffers for the duration of the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedEvent<'a> {
    /// The event type: the last `event` field's value, or `message` when none (or an empty one)
    /// was given.
    pub event_type: &'a [u8],
    /// The `data` lines' values joined by LF, without a trailing LF.
    pub data: &'a [u8],
    /// The stream's last event ID when the event was dispatched (it persists across events).
    pub last_event_id: &'a [u8],
    /// Whether this event's own lines set the ID (an `id` field without a NUL), as opposed to
    /// inheriting it from an earlier event.
    pub has_id: bool,
}

impl ParsedEvent<'_> {
    /// The data as text, invalid UTF-8 replaced by U+FFFD as the standard's decoder does.
    pub fn data_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.data)
    }
}

/// What the parser reports while it consumes input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// An event was dispatched (a blank line ended a block with data).
    Event(ParsedEvent<'a>),
    /// A `retry` field set the reconnection time, in milliseconds (saturating at `u64::MAX`).
    Retry(u64),
    /// A comment line, without its leading colon (servers send these as keep-alives).
    Comment(&'a [u8]),
}

/// Progress through a possible byte-order mark at the start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BomState {
    /// `n` bytes of the stream so far, all matching the BOM's first `n` bytes.
    Bom(u8),
    /// Past the start: every byte is content.
    Body,
}

/// The event-stream parser for one stream. See the module docs.
#[derive(Clone, Debug)]
pub struct Parser {
    limits: ParseLimits,
    start: BomState,
    /// The previous chunk ended in CR: an LF starting the next one belongs to that line end.
    after_cr: bool,
    /// A sticky error.
    error: Option<Error>,
    /// The part of a line not yet ended, carried over to the next chunk.
    carry: Vec<u8>,
    /// The data buffer: each `data` value followed by LF.
    data: Vec<u8>,
    /// The event type buffer.
    event_type: Vec<u8>,
    /// The last event ID buffer (set by `id` fields).
    id_buffer: Vec<u8>,
    /// The last event ID string (set from the buffer when an event is dispatched).
    last_event_id: Vec<u8>,
    /// An `id` field was seen since the last blank line.
    id_in_block: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with the default [`ParseLimits`]; allocates nothing until input needs it.
    pub fn new() -> Self {
        Self::with_limits(ParseLimits::default())
    }

    /// A parser with the given caps.
    pub fn with_limits(limits: ParseLimits) -> Self {
        Parser {
            limits,
            start: BomState::Bom(0),
            after_cr: false,
            error: None,
            carry: Vec::new(),
            data: Vec::new(),
            event_type: Vec::new(),
            id_buffer: Vec::new(),
            last_event_id: Vec::new(),
            id_in_block: false,
        }
    }

    /// A parser that starts with a last event ID (as a client does when it reconnects with
    /// `Last-Event-ID`), so events without an `id` of their own report it.
    pub fn with_last_event_id(limits: ParseLimits, id: &[u8]) -> Self {
        let mut p = Self::with_limits(limits);
        if !id.contains(&0) {
            p.id_buffer = id.to_vec();
            p.last_event_id = id.to_vec();
        }
        p
    }

    /// The last event ID string: what a client sends as `Last-Event-ID` when it reconnects.
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_event_id
    }

    /// Bytes held for a line not yet ended (a measure of per-stream memory).
    pub fn pending_bytes(&self) -> usize {
        self.carry.len() + self.data.len()
    }

    /// Consumes the next piece of the stream, calling `on` for each item it completes, in
    /// stream order. Input may be split anywhere. After an error nothing more is parsed.
    pub fn feed<F: FnMut(Item<'_>)>(&mut self, mut input: &[u8], on: &mut F) -> Result<(), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let BomState::Bom(mut n) = self.start {
            while let Some((&b, rest)) = input.split_first() {
                if n as usize == BOM.len() || b != BOM[n as usize] {
                    break;
                }
                n += 1;
                input = rest;
            }
            if n as usize == BOM.len() {
                self.start = BomState::Body;
            } else if input.is_empty() {
                // Still a possible BOM prefix: decide when more bytes come.
                self.start = BomState::Bom(n);
                return Ok(());
            } else {
                // Not a BOM after all: the bytes held back are content.
                self.start = BomState::Body;
                let r = self.lines(&BOM[..n as usize], on);
                self.fail_on(r)?;
            }
        }
        let r = self.lines(input, on);
        self.fail_on(r)
    }

    fn fail_on(&mut self, r: Result<(), Error>) -> Result<(), Error> {
        if let Err(e) = r {
            self.error = Some(e);
            // Nothing more will be parsed: give the memory back now.
            self.carry = Vec::new();
            self.data = Vec::new();
        }
        r
    }

    fn lines<F: FnMut(Item<'_>)>(&mut self, mut input: &[u8], on: &mut F) -> Result<(), Error> {
        if self.after_cr {
            if let Some((&b, rest)) = input.split_first() {
                if b == b'\n' {
                    input = rest;
                }
                self.after_cr = false;
            }
        }
        while let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line = &input[..end];
            if self.carry.is_empty() {
                // The common case, no copy: the whole line is in this chunk.
                if line.len() > self.limits.max_line {
                    return Err(Error::LineTooLong);
                }
                self.line(line, on)?;
            } else {
                if self.carry.len() + line.len() > self.limits.max_line {
                    return Err(Error::LineTooLong);
                }
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(line);
                let r = self.line(&carry, on);
                carry.clear();
                if carry.capacity() <= KEEP_CAPACITY {
                    self.carry = carry;
                }
                r?;
            }
            let was_cr = input[end] == b'\r';
            input = &input[end + 1..];
            if was_cr {
                match input.split_first() {
                    Some((&b'\n', rest)) => input = rest,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if !input.is_empty() {
            if self.carry.len() + input.len() > self.limits.max_line {
                return Err(Error::LineTooLong);
            }
            self.carry.extend_from_slice(input);
        }
        Ok(())
    }

    fn line<F: FnMut(Item<'_>)>(&mut self, line: &[u8], on: &mut F) -> Result<(), Error> {
        let Some(&first) = line.first() else {
            self.dispatch(on);
            return Ok(());
        };
        if first == b':' {
            on(Item::Comment(&line[1..]));
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limits.max_data {
                    return Err(Error::EventTooLarge);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            // An id containing NUL is ignored, as is a retry that is not all digits.
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.extend_from_slice(value);
                self.id_in_block = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                on(Item::Retry(ms));
            }
            _ => {} // Unknown fields are ignored.
        }
        Ok(())
    }

    fn dispatch<F: FnMut(Item<'_>)>(&mut self, on: &mut F) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clear();
            self.last_event_id.extend_from_slice(&self.id_buffer);
        }
        let has_id = std::mem::take(&mut self.id_in_block);
        if let Some((_, data)) = self.data.split_last() {
            let event_type = if self.event_type.is_empty() {
                &b"message"[..]
            } else {
                &self.event_type
            };
            on(Item::Event(ParsedEvent {
                event_type,
                data,
                last_event_id: &self.last_event_id,
                has_id,
            }));
        }
        self.data.clear();
        self.event_type.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an [`Item`], to compare runs.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Event {
            ty: String,
            data: String,
            id: String,
            has_id: bool,
        },
        Retry(u64),
        Comment(String),
    }

    fn own(item: Item<'_>) -> Owned {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match item {
            Item::Event(e) => Owned::Event {
                ty: s(e.event_type),
                data: s(e.data),
                id: s(e.last_event_id),
                has_id: e.has_id,
            },
            Item::Retry(ms) => Owned::Retry(ms),
            Item::Comment(c) => Owned::Comment(s(c)),
        }
    }

    /// Feeds `chunks` in order; returns the items and the first error.
    fn run_with(limits: ParseLimits, chunks: &[&[u8]]) -> (Vec<Owned>, Option<Error>) {
        let mut p = Parser::with_limits(limits);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = p.feed(c, &mut |i| out.push(own(i))) {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    fn run(input: &[u8]) -> Vec<Owned> {
        let (items, err) = run_with(ParseLimits::default(), &[input]);
        assert_eq!(err, None);
        items
    }

    fn ev(ty: &str, data: &str, id: &str, has_id: bool) -> Owned {
        Owned::Event {
            ty: ty.into(),
            data: data.into(),
            id: id.into(),
            has_id,
        }
    }

    /// Events only (retry and comments dropped), as (type, data, last id).
    fn events(input: &[u8]) -> Vec<(String, String, String)> {
        run(input)
            .into_iter()
            .filter_map(|i| match i {
                Owned::Event { ty, data, id, .. } => Some((ty, data, id)),
                _ => None,
            })
            .collect()
    }

    fn check(input: &[u8], want: &[(&str, &str, &str)]) {
        let want: Vec<_> = want
            .iter()
            .map(|&(t, d, i)| (t.to_owned(), d.to_owned(), i.to_owned()))
            .collect();
        assert_eq!(
            events(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn the_seeds_frame() {
        let frame =
            b"event:sseEvent\nid:7\nretry: 30000\ndata: {\"content\":\"2026-11-23T19:09:42.321Z\"}\n\n";
        assert_eq!(
            run(frame),
            vec![
                Owned::Retry(30000),
                ev(
                    "sseEvent",
                    "{\"content\":\"2026-11-23T19:09:42.321Z\"}",
                    "7",
                    true
                )
            ]
        );
    }

    #[test]
    fn line_ends() {
        for sep in ["\n", "\r", "\r\n"] {
            let input = format!("data: a{sep}data: b{sep}{sep}data: c{sep}{sep}");
            check(
                input.as_bytes(),
                &[("message", "a\nb", ""), ("message", "c", "")],
            );
        }
        // Mixed, and CR CR is two line ends (an empty line), LF CR too.
        check(
            b"data:a\r\rdata:b\n\rdata:c\r\n\n",
            &[
                ("message", "a", ""),
                ("message", "b", ""),
                ("message", "c", ""),
            ],
        );
    }

    #[test]
    fn fields() {
        // One leading space is dropped, not two; no space is fine; a tab is kept.
        check(b"data:  two\n\n", &[("message", " two", "")]);
        check(b"data:none\n\n", &[("message", "none", "")]);
        check(b"data:\tx\n\n", &[("message", "\tx", "")]);
        // A field without a colon has an empty value: an empty data line still dispatches.
        check(b"data\n\n", &[("message", "", "")]);
        check(b"data\ndata\n\n", &[("message", "\n", "")]);
        // Only the first colon splits.
        check(b"data: a:b: c\n\n", &[("message", "a:b: c", "")]);
        // Names are case-sensitive; unknown fields are ignored.
        check(b"Data: x\nfoo: y\ndata: z\n\n", &[("message", "z", "")]);
        // An empty event type means message; it resets after each event.
        check(
            b"event: a\ndata: 1\n\nevent\ndata: 2\n\ndata: 3\n\n",
            &[("a", "1", ""), ("message", "2", ""), ("message", "3", "")],
        );
        // The last event field wins.
        check(b"event: a\nevent: b\ndata\n\n", &[("b", "", "")]);
    }

    #[test]
    fn comments_and_empty_events() {
        assert_eq!(
            run(b":hello\n: ping\n\n"),
            vec![
                Owned::Comment("hello".into()),
                Owned::Comment(" ping".into())
            ]
        );
        // No data: nothing dispatched, and the event type does not leak into the next event.
        check(b"event: x\n\ndata: y\n\n", &[("message", "y", "")]);
        check(b"\n\n\n", &[]);
    }

    #[test]
    fn last_event_id_persists_and_ignores_nul() {
        assert_eq!(
            run(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n"),
            vec![
                ev("message", "a", "1", true),
                ev("message", "b", "1", false),
                ev("message", "c", "", true),
                ev("message", "d", "", false),
            ]
        );
        // An id in a block without data still updates the last event id at the blank line.
        check(b"id: 5\n\ndata: x\n\n", &[("message", "x", "5")]);
        let mut p = Parser::new();
        p.feed(b"id: 5\n\nid: 6\n", &mut |_| {}).unwrap();
        assert_eq!(
            p.last_event_id(),
            b"5",
            "an undispatched id is not the last id"
        );
        let mut p = Parser::with_last_event_id(ParseLimits::default(), b"41");
        let mut got = Vec::new();
        p.feed(b"data: x\n\n", &mut |i| got.push(own(i))).unwrap();
        assert_eq!(got, vec![ev("message", "x", "41", false)]);
    }

    #[test]
    fn retry() {
        let retries = |input: &[u8]| -> Vec<u64> {
            run(input)
                .into_iter()
                .filter_map(|i| match i {
                    Owned::Retry(ms) => Some(ms),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(retries(b"retry: 1000\nretry:5\n"), vec![1000, 5]);
        assert_eq!(
            retries(b"retry: 1x\nretry: -1\nretry:\nretry\nretry:  5\nretry: 1.5\n"),
            Vec::<u64>::new()
        );
        assert_eq!(retries(b"retry: 99999999999999999999999\n"), vec![u64::MAX]);
    }

    #[test]
    fn bom() {
        check(b"\xEF\xBB\xBFdata: a\n\n", &[("message", "a", "")]);
        // Only one BOM, only at the start.
        check(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            &[("message", "b", "")],
        );
        check(
            b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
            &[("message", "a", "")],
        );
        // A partial BOM is content.
        check(b"\xEF\xBBdata: a\n\ndata: b\n\n", &[("message", "b", "")]);
        check(b"\xEF\n\ndata: b\n\n", &[("message", "b", "")]);
        let (items, _) = run_with(
            ParseLimits::default(),
            &[b"\xEF", b"\xBB", b"\xBF", b"data: a\n\n"],
        );
        assert_eq!(items, vec![ev("message", "a", "", false)]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        check(b"data: a\n\ndata: b\n", &[("message", "a", "")]);
        check(b"data: a\n\ndata: b", &[("message", "a", "")]);
        // A CR at the very end is a complete line, but the blank line is still missing.
        check(b"data: a\r", &[]);
        check(b"data: a\r\r", &[("message", "a", "")]);
    }

    #[test]
    fn non_utf8_is_not_a_problem() {
        let (items, err) = run_with(ParseLimits::default(), &[b"data: \xFF\xFE\n\n"]);
        assert_eq!(err, None);
        assert_eq!(items, vec![ev("message", "\u{FFFD}\u{FFFD}", "", false)]);
    }

    #[test]
    fn caps_are_errors() {
        let small = ParseLimits {
            max_line: 16,
            max_data: 16,
        };
        let (items, err) = run_with(small, &[b"data: ok\n\n", &[b'x'; 17]]);
        assert_eq!(items.len(), 1);
        assert_eq!(err, Some(Error::LineTooLong));
        // Split over many chunks, the partial line is capped just the same.
        let (_, err) = run_with(small, &[b"data: 12345", b"67890", b"123"]);
        assert_eq!(err, Some(Error::LineTooLong));
        // A line of exactly the cap is fine.
        let (items, err) = run_with(small, &[b"data:67890123456\n\n"]);
        assert_eq!((items.len(), err), (1, None));
        // Data adds up across lines.
        let (_, err) = run_with(small, &[b"data: 1234567\ndata: 1234567\ndata: 1\n"]);
        assert_eq!(err, Some(Error::EventTooLarge));
        // Sticky.
        let mut p = Parser::with_limits(small);
        assert!(p.feed(&[b'x'; 40], &mut |_| {}).is_err());
        assert_eq!(
            p.feed(b"\n\ndata: a\n\n", &mut |_| panic!()),
            Err(Error::LineTooLong)
        );
    }

    #[test]
    fn steady_state_keeps_small_buffers() {
        let mut p = Parser::new();
        let frame = b"event:sseEvent\nid:1\ndata: {\"content\":\"x\"}\n\n";
        for _ in 0..3 {
            p.feed(frame, &mut |_| {}).unwrap();
        }
        assert_eq!(p.pending_bytes(), 0);
        let ptr = p.data.as_ptr();
        for _ in 0..100 {
            p.feed(frame, &mut |_| {}).unwrap();
        }
        assert_eq!(p.data.as_ptr(), ptr, "no reallocation per event");
        // One big event does not pin its buffer.
        let big = format!("data: {}\n\n", "y".repeat(10_000));
        p.feed(big.as_bytes(), &mut |_| {}).unwrap();
        assert_eq!(p.data.capacity(), 0);
    }

    /// A corpus exercising every rule, used by the chunking tests.
    const CORPUS: &[&[u8]] = &[
        b"\xEF\xBB\xBFdata: a\r\n\r\n",
        b"event:sseEvent\nid:7\nretry: 30000\ndata: {\"content\":\"2026-11-23T19:09:42.321Z\"}\n\n",
        b": comment\r\ndata: one\r\ndata:two\r\rid: 9\revent: e\r\rdata\n\n",
        b"\xEF\xBBdata: x\n\n\xEF\xBB\xBFdata: y\r\n\r\nretry: 5\rretry: x\n:\n\nid: a\0b\ndata: z\n\n",
        b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: unterminated\r\n",
        b"\r\n\r\n\n\n\r\r:c\r\n",
        b"data\r\ndata\r\n\r\nid\r\ndata:q\r\n\r\n",
        b"data: caf\xC3\xA9 \xE2\x82\xAC\r\n\r\n",
        b"\xEF\xBB",
        b"\xEF",
    ];

    #[test]
    fn any_split_gives_the_same_items() {
        for &input in CORPUS {
            let whole = run_with(ParseLimits::default(), &[input]);
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                assert_eq!(
                    run_with(ParseLimits::default(), &[a, b]),
                    whole,
                    "split at {i} of {:?}",
                    String::from_utf8_lossy(input)
                );
                for j in i..=input.len() {
                    let (b1, c) = b.split_at(j - i);
                    assert_eq!(run_with(ParseLimits::default(), &[a, b1, c]), whole);
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                run_with(ParseLimits::default(), &bytes),
                whole,
                "byte by byte"
            );
        }
    }

    #[test]
    fn any_split_gives_the_same_error() {
        let small = ParseLimits {
            max_line: 8,
            max_data: 12,
        };
        for &input in &[
            &b"data: 1\n\ndata: 123\r\ndata: 12345\n\n"[..],
            b"data: 1\r\n\r\n:123456789\n",
            b"data:12\n\ndata:12345678\n",
            b"data:1\n\ndata:123\ndata:123\ndata:123\ndata:123\n",
        ] {
            let whole = run_with(small, &[input]);
            assert!(whole.1.is_some(), "{:?}", String::from_utf8_lossy(input));
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                assert_eq!(run_with(small, &[a, b]), whole, "split at {i}");
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"data".to_vec()),
                Just(b"data:".to_vec()),
                Just(b"data: ".to_vec()),
                Just(b"id:".to_vec()),
                Just(b"event:".to_vec()),
                Just(b"retry:".to_vec()),
                Just(b":".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(BOM.to_vec()),
                Just(vec![0]),
                Just(b"12".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..4),
            ]
        }

        proptest! {
            #[test]
            fn random_chunking_matches_whole(
                pieces in proptest::collection::vec(piece(), 0..40),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let input: Vec<u8> = pieces.concat();
                let whole = run_with(ParseLimits::default(), &[&input]);
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
                at.sort_unstable();
                let mut chunks = Vec::new();
                let mut prev = 0;
                for a in at {
                    chunks.push(&input[prev..a]);
                    prev = a;
                }
                chunks.push(&input[prev..]);
                prop_assert_eq!(run_with(ParseLimits::default(), &chunks), whole);
            }

            #[test]
            fn never_panics_and_stays_bounded(input in proptest::collection::vec(any::<u8>(), 0..512)) {
                let small = ParseLimits { max_line: 32, max_data: 64 };
                let mut p = Parser::with_limits(small);
                for c in input.chunks(7) {
                    let _ = p.feed(c, &mut |_| {});
                    prop_assert!(p.carry.len() <= 32 && p.data.len() <= 64);
                }
            }
        }
    }
}
