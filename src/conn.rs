//! One connection's protocol state machine, sans-IO: bytes and `now` in, bytes and a deadline out.
//!
//! The event loop feeds what it read ([`Conn::handle_input`], [`Conn::handle_eof`]), calls
//! [`Conn::handle_timeout`] when [`Conn::timeout`] has passed, writes what [`Conn::pending`]
//! holds (or the frame a tick appended to the loop's scratch buffer) and reports how much went
//! out ([`Conn::on_sent`], [`Conn::on_sent_scratch`]). It shuts the write side down when
//! [`Conn::take_shutdown`] says so and drops the socket once [`Conn::is_closed`].
//!
//! Memory: an idle stream is its [`State::Stream`] (two integers) and nothing else. Bytes that
//! could not be written are kept in an [`Outbox`] only until the socket takes them, and at most
//! one is ever pending: a tick that finds the previous frame unwritten is skipped, never queued.
//!
//! **Invariant:** nothing here touches a socket or reads a clock; `now` is always an argument.
//! **Invariant:** a connection counts in `sse_streams_open` exactly while its state is `Stream`.

use crate::http::{self, HttpError, Method, Request, Status};
use crate::metrics::{Metrics, ProcessStats, Shard, Timeout};
use crate::sse::{self, Dates};
use crate::static_files::{self, Body, StaticFiles};

/// The timing and size knobs a connection obeys (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    /// Time between two frames of one stream.
    pub interval_ms: u64,
    /// A request head must be complete this long after the connection (or the request) starts.
    pub head_timeout_ms: u64,
    /// A kept-alive connection with no new request is closed after this long.
    pub idle_timeout_ms: u64,
    /// A connection whose pending output makes no progress for this long is closed.
    pub stall_timeout_ms: u64,
    /// After the write side is shut down, how long to wait for the client's FIN.
    pub linger_ms: u64,
    /// Mean of the jittered `retry:` sent when a stream is refused or the server stops.
    pub reconnect_ms: u64,
    /// Request head limits.
    pub limits: http::Limits,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            interval_ms: 2000,
            head_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
            linger_ms: 2_000,
            reconnect_ms: 5_000,
            limits: http::Limits::default(),
        }
    }
}

/// Monotonic milliseconds (for deadlines) and wall-clock milliseconds (for dates), read once by
/// the loop and handed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
    pub unix_ms: i64,
}

/// A small, fast, non-cryptographic generator for retry jitter.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; a zero seed is replaced (xorshift cannot leave zero).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What a connection needs from its event loop, lent for the duration of one call.
pub struct Ctx<'a> {
    pub cfg: &'a ConnConfig,
    pub files: &'a StaticFiles,
    pub metrics: &'a Metrics,
    pub shard: &'a Shard,
    pub dates: &'a mut Dates,
    pub rng: &'a mut Rng,
    /// Reads the process figures for `/metrics` (the loop's window onto the OS).
    pub process_stats: fn() -> ProcessStats,
    /// The server is shutting down: new streams get a `retry:` and a close.
    pub draining: bool,
}

/// Bytes accepted by the connection but not yet taken by the socket.
#[derive(Debug)]
struct Outbox {
    head: Vec<u8>,
    body: Option<Body>,
    sent: usize,
    /// Closed if no byte goes out before this.
    stall_deadline: u64,
}

impl Outbox {
    fn new(head: Vec<u8>, body: Option<Body>, now: Now, cfg: &ConnConfig) -> Box<Self> {
        Box::new(Outbox {
            head,
            body,
            sent: 0,
            stall_deadline: now.ms + cfg.stall_timeout_ms,
        })
    }

    fn slices(&self) -> [&[u8]; 2] {
        let body = self.body.as_ref().map_or(&[][..], Body::bytes);
        match self.sent.checked_sub(self.head.len()) {
            None => [&self.head[self.sent..], body],
            Some(into_body) => [&[], &body[into_body..]],
        }
    }

    fn remaining(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |b| b.bytes().len()) - self.sent
    }
}

/// Where the connection is in its life.
#[derive(Debug)]
enum State {
    /// Waiting for a request head; `buf` holds a partial head or pipelined bytes.
    /// `idle`: a kept-alive connection that has not sent a byte of its next request yet.
    Head {
        buf: Vec<u8>,
        deadline: u64,
        idle: bool,
    },
    /// An event stream: the next tick's time and the next frame's id.
    Stream { next_tick: u64, next_id: u64 },
    /// A last response is being written; then the write side is shut down.
    Finishing,
    /// Write side shut down; reading (and discarding) until the client's FIN or the deadline,
    /// so that unread input does not turn the close into a reset that loses the response.
    Linger { deadline: u64 },
    /// Done: the loop drops the socket.
    Closed,
}

/// One HTTP connection. See the module docs.
#[derive(Debug)]
pub struct Conn {
    state: State,
    out: Option<Box<Outbox>>,
    /// The client sent its FIN; nothing more will be read.
    eof: bool,
    /// The write side should be shut down (once) by the loop.
    shutdown: bool,
}

impl Conn {
    /// A freshly accepted connection: waiting for its first request head.
    pub fn new(now: Now, cfg: &ConnConfig) -> Self {
        Conn {
            state: State::Head {
                buf: Vec::new(),
                deadline: now.ms + cfg.head_timeout_ms,
                idle: false,
            },
            out: None,
            eof: false,
            shutdown: false,
        }
    }

    /// Whether the loop should read from the socket now.
    pub fn wants_read(&self) -> bool {
        if self.eof {
            return false;
        }
        match self.state {
            State::Head { .. } => self.out.is_none(),
            State::Stream { .. } | State::Linger { .. } => true,
            State::Finishing | State::Closed => false,
        }
    }

    /// How many bytes the connection can take in one read: the room left under the head limit
    /// while a head is being read; unbounded (the bytes are discarded) otherwise.
    pub fn read_limit(&self, cfg: &ConnConfig) -> usize {
        match &self.state {
            State::Head { buf, .. } => cfg.limits.max_head.saturating_sub(buf.len()),
            _ => usize::MAX,
        }
    }

    /// Bytes of client input held (a partial head or pipelined requests); never more than
    /// the head limit.
    pub fn buffered_input(&self) -> usize {
        match &self.state {
            State::Head { buf, .. } => buf.len(),
            _ => 0,
        }
    }

    /// Whether the connection is a live event stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Stream { .. })
    }

    /// Whether the loop should drop the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the loop should shut the socket's write side down; true once.
    pub fn take_shutdown(&mut self) -> bool {
        std::mem::take(&mut self.shutdown)
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn timeout(&self) -> Option<u64> {
        let stall = self.out.as_ref().map(|o| o.stall_deadline);
        let own = match &self.state {
            State::Head { deadline, .. } if self.out.is_none() => Some(*deadline),
            State::Stream { next_tick, .. } => Some(*next_tick),
            State::Linger { deadline } => Some(*deadline),
            _ => None,
        };
        match (stall, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes waiting to be written, as (up to) two slices for one vectored write.
    pub fn pending(&self) -> Option<[&[u8]; 2]> {
        self.out.as_ref().map(|o| o.slices())
    }

    /// Bytes received from the client.
    pub fn handle_input(&mut self, data: &[u8], now: Now, ctx: &mut Ctx<'_>) {
        let State::Head {
            buf,
            deadline,
            idle,
        } = &mut self.state
        else {
            // A stream, a finishing or a lingering connection reads only to notice the close.
            return;
        };
        if data.is_empty() {
            return;
        }
        if *idle {
            *idle = false;
            *deadline = now.ms + ctx.cfg.head_timeout_ms;
        }
        let mut stash = std::mem::take(buf);
        if self.out.is_some() {
            // Still answering an earlier request: keep the bytes (bounded by `read_limit`).
            stash.extend_from_slice(data);
        } else if stash.is_empty() {
            let used = self.answer_one(data, now, ctx);
            stash.extend_from_slice(&data[used..]);
        } else {
            stash.extend_from_slice(data);
            let used = self.answer_one(&stash, now, ctx);
            stash.drain(..used);
        }
        self.restore_buf(stash);
    }

    /// The client closed its sending side (read returned 0).
    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        self.eof = true;
        match &self.state {
            // A half-closed client may still be reading its last response: finish it first.
            State::Head { .. } if self.out.is_some() => self.state = State::Finishing,
            State::Finishing => {}
            _ => self.close(ctx),
        }
    }

    /// A write failed or the socket reported an error: the connection is gone.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx);
    }

    /// The deadline from [`timeout`](Self::timeout) has passed (spurious calls are harmless).
    /// A stream's tick appends its frame to `scratch`, which the loop writes at once, then
    /// reports with [`on_sent_scratch`](Self::on_sent_scratch).
    pub fn handle_timeout(&mut self, now: Now, ctx: &mut Ctx<'_>, scratch: &mut Vec<u8>) {
        if self
            .out
            .as_ref()
            .is_some_and(|o| now.ms >= o.stall_deadline)
        {
            ctx.shard.timeout(Timeout::Stall);
            self.close(ctx);
            return;
        }
        match &mut self.state {
            State::Head {
                buf,
                deadline,
                idle,
            } if self.out.is_none() && now.ms >= *deadline => {
                if *idle || buf.is_empty() {
                    // Nothing of a request arrived: close without an answer.
                    ctx.shard
                        .timeout(if *idle { Timeout::Idle } else { Timeout::Head });
                    self.close(ctx);
                } else {
                    ctx.shard.timeout(Timeout::Head);
                    self.respond_error(Status::RequestTimeout, now, ctx);
                }
            }
            State::Stream { next_tick, next_id } if now.ms >= *next_tick => {
                let interval = ctx.cfg.interval_ms.max(1);
                let due = (now.ms - *next_tick) / interval + 1;
                *next_tick += due * interval;
                let mut skipped = due - 1;
                if self.out.is_some() {
                    // The client has not read the previous frame: drop this tick, keep one
                    // partial frame at most.
                    skipped += 1;
                } else {
                    sse::encode_frame(scratch, *next_id, ctx.dates.iso(now.unix_ms));
                    *next_id += 1;
                    ctx.shard.frames_sent.inc();
                }
                ctx.shard.frames_skipped.add(skipped);
            }
            State::Linger { deadline } if now.ms >= *deadline => self.close(ctx),
            _ => {}
        }
    }

    /// `n` bytes of [`pending`](Self::pending) were written.
    pub fn on_sent(&mut self, n: usize, now: Now, ctx: &mut Ctx<'_>) {
        let is_stream = self.is_stream();
        let Some(out) = self.out.as_mut() else { return };
        if n == 0 {
            return;
        }
        out.sent += n;
        out.stall_deadline = now.ms + ctx.cfg.stall_timeout_ms;
        if is_stream {
            ctx.shard.bytes_sent.add(n as u64);
        }
        if out.remaining() == 0 {
            self.out = None;
            self.output_drained(now, ctx);
        }
    }

    /// `n` of the `scratch` bytes a tick produced were written; the rest is kept.
    pub fn on_sent_scratch(&mut self, scratch: &[u8], n: usize, now: Now, ctx: &mut Ctx<'_>) {
        ctx.shard.bytes_sent.add(n as u64);
        if n < scratch.len() {
            self.out = Some(Outbox::new(scratch[n..].to_vec(), None, now, ctx.cfg));
        }
    }

    /// The server is stopping: a stream gets a jittered `retry:` and is closed, a response in
    /// flight is finished, an idle or half-read connection is closed.
    pub fn drain(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Stream { .. } => {
                self.leave_stream(ctx);
                if self.out.is_none() {
                    let mut frame = Vec::with_capacity(16);
                    sse::encode_retry(&mut frame, jitter(ctx));
                    self.out = Some(Outbox::new(frame, None, now, ctx.cfg));
                }
                self.state = State::Finishing;
            }
            State::Head { .. } if self.out.is_some() => self.state = State::Finishing,
            State::Head { .. } => self.close(ctx),
            State::Finishing | State::Linger { .. } | State::Closed => {}
        }
    }

    fn restore_buf(&mut self, stash: Vec<u8>) {
        if let State::Head { buf, .. } = &mut self.state {
            // An empty buffer gives its memory back: idle connections hold none.
            *buf = if stash.is_empty() { Vec::new() } else { stash };
        }
    }

    /// Parses and answers at most one request at the start of `input`; returns the bytes used
    /// (0 while the head is incomplete, everything on an error, which closes).
    fn answer_one(&mut self, input: &[u8], now: Now, ctx: &mut Ctx<'_>) -> usize {
        match http::parse(input, &ctx.cfg.limits) {
            Ok(None) => 0,
            Ok(Some(req)) => {
                self.respond(&req, now, ctx);
                req.head_len
            }
            Err(e) => {
                self.respond_http_error(e, now, ctx);
                input.len()
            }
        }
    }

    /// Called when the outbox has been written out completely.
    fn output_drained(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        match &mut self.state {
            // The client already sent its FIN: nothing to wait for.
            State::Finishing if self.eof => self.state = State::Closed,
            State::Finishing => {
                self.state = State::Linger {
                    deadline: now.ms + ctx.cfg.linger_ms,
                };
                self.shutdown = true;
            }
            State::Head {
                buf,
                deadline,
                idle,
            } => {
                if buf.is_empty() {
                    *idle = true;
                    *deadline = now.ms + ctx.cfg.idle_timeout_ms;
                } else {
                    // Pipelined bytes arrived with the previous request: answer them now.
                    *idle = false;
                    *deadline = now.ms + ctx.cfg.head_timeout_ms;
                    let stash = std::mem::take(buf);
                    let used = self.answer_one(&stash, now, ctx);
                    let mut stash = stash;
                    stash.drain(..used);
                    self.restore_buf(stash);
                }
            }
            _ => {}
        }
    }

    fn respond(&mut self, req: &Request<'_>, now: Now, ctx: &mut Ctx<'_>) {
        let close = !req.keep_alive || ctx.draining || self.eof;
        let head_only = req.method == Method::Head;
        match req.path {
            "/sse" => self.respond_stream(req, close, now, ctx),
            "/metrics" => {
                let mut text = String::with_capacity(4096);
                ctx.metrics.render(&mut text, &(ctx.process_stats)());
                let body = Body::Shared(text.into_bytes().into());
                let ct = "text/plain; version=0.0.4; charset=utf-8";
                self.respond_body(
                    Status::Ok,
                    ct,
                    body,
                    head_only,
                    close,
                    &["Cache-Control: no-store\r\n"],
                    now,
                    ctx,
                );
            }
            "/healthz" => {
                let ct = "text/plain; charset=utf-8";
                let body = Body::Static(b"ok\n");
                self.respond_body(
                    Status::Ok,
                    ct,
                    body,
                    head_only,
                    close,
                    &["Cache-Control: no-store\r\n"],
                    now,
                    ctx,
                );
            }
            path => match ctx.files.lookup(path) {
                Some(file) => {
                    let etag = format!("ETag: {}\r\n", file.etag);
                    let extra = [
                        etag.as_str(),
                        "Cache-Control: no-cache\r\n",
                        "X-Content-Type-Options: nosniff\r\n",
                    ];
                    if req
                        .if_none_match
                        .is_some_and(|v| static_files::none_match(v, &file.etag))
                    {
                        let mut head = Vec::with_capacity(256);
                        let date = ctx.dates.http(now.unix_ms);
                        http::write_head(
                            &mut head,
                            Status::NotModified,
                            date,
                            None,
                            None,
                            close,
                            &extra,
                        );
                        self.queue(Status::NotModified, head, None, close, now, ctx);
                    } else {
                        self.respond_body(
                            Status::Ok,
                            file.content_type,
                            file.body,
                            head_only,
                            close,
                            &extra,
                            now,
                            ctx,
                        );
                    }
                }
                None => {
                    let ct = "text/plain; charset=utf-8";
                    let body = Body::Static(b"404 Not Found\n");
                    self.respond_body(Status::NotFound, ct, body, head_only, close, &[], now, ctx);
                }
            },
        }
    }

    fn respond_stream(&mut self, req: &Request<'_>, close: bool, now: Now, ctx: &mut Ctx<'_>) {
        let date = ctx.dates.http(now.unix_ms);
        let mut head = Vec::with_capacity(256);
        if req.method == Method::Head {
            head.extend_from_slice(sse::STREAM_HEADERS.as_bytes());
            push_date_end(&mut head, date, close);
            self.queue(Status::Ok, head, None, close, now, ctx);
            return;
        }
        if ctx.draining || !ctx.metrics.try_open_stream() {
            // Browsers give up for good on a non-200 or a 5xx; a 200 with a retry and a close
            // makes an EventSource come back later, and the jitter spreads the returns.
            if !ctx.draining {
                ctx.shard.streams_rejected.inc();
            }
            head.extend_from_slice(sse::CLOSING_STREAM_HEADERS.as_bytes());
            push_date_end(&mut head, date, false);
            sse::encode_retry(&mut head, jitter(ctx));
            self.queue(Status::Ok, head, None, true, now, ctx);
            return;
        }
        head.extend_from_slice(sse::STREAM_HEADERS.as_bytes());
        push_date_end(&mut head, date, false);
        ctx.shard.response(Status::Ok);
        ctx.shard.streams_total.inc();
        self.state = State::Stream {
            next_tick: now.ms + ctx.cfg.interval_ms,
            next_id: sse::first_id(req.last_event_id),
        };
        self.out = Some(Outbox::new(head, None, now, ctx.cfg));
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_body(
        &mut self,
        status: Status,
        content_type: &str,
        body: Body,
        head_only: bool,
        close: bool,
        extra: &[&str],
        now: Now,
        ctx: &mut Ctx<'_>,
    ) {
        let mut head = Vec::with_capacity(256);
        let date = ctx.dates.http(now.unix_ms);
        let len = body.bytes().len();
        http::write_head(
            &mut head,
            status,
            date,
            Some(content_type),
            Some(len),
            close,
            extra,
        );
        let body = (!head_only && len > 0).then_some(body);
        self.queue(status, head, body, close, now, ctx);
    }

    fn respond_http_error(&mut self, e: HttpError, now: Now, ctx: &mut Ctx<'_>) {
        self.respond_error(e.status(), now, ctx);
    }

    /// An error answer; always closes, since what follows the bad bytes cannot be trusted.
    fn respond_error(&mut self, status: Status, now: Now, ctx: &mut Ctx<'_>) {
        let text = match status {
            Status::BadRequest => "400 Bad Request\n",
            Status::MethodNotAllowed => "405 Method Not Allowed\n",
            Status::RequestTimeout => "408 Request Timeout\n",
            Status::UriTooLong => "414 URI Too Long\n",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large\n",
            Status::NotImplemented => "501 Not Implemented\n",
            _ => "error\n",
        };
        let extra: &[&str] = if status == Status::MethodNotAllowed {
            &["Allow: GET, HEAD\r\n"]
        } else {
            &[]
        };
        let ct = "text/plain; charset=utf-8";
        self.respond_body(
            status,
            ct,
            Body::Static(text.as_bytes()),
            false,
            true,
            extra,
            now,
            ctx,
        );
    }

    fn queue(
        &mut self,
        status: Status,
        head: Vec<u8>,
        body: Option<Body>,
        close: bool,
        now: Now,
        ctx: &mut Ctx<'_>,
    ) {
        ctx.shard.response(status);
        self.out = Some(Outbox::new(head, body, now, ctx.cfg));
        if close {
            self.state = State::Finishing;
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.leave_stream(ctx);
        self.out = None;
        self.state = State::Closed;
    }

    /// Leaves the `Stream` state's accounting (no-op for other states).
    fn leave_stream(&mut self, ctx: &mut Ctx<'_>) {
        if self.is_stream() {
            ctx.metrics.close_stream();
            ctx.shard.streams_closed.inc();
            self.state = State::Finishing;
        }
    }
}

fn push_date_end(head: &mut Vec<u8>, date: &[u8], close: bool) {
    head.extend_from_slice(b"Date: ");
    head.extend_from_slice(date);
    head.extend_from_slice(if close {
        b"\r\nConnection: close\r\n\r\n"
    } else {
        b"\r\n\r\n"
    });
}

/// A reconnection delay spread uniformly over [reconnect/2, reconnect*3/2).
fn jitter(ctx: &mut Ctx<'_>) -> u64 {
    let base = ctx.cfg.reconnect_ms.max(2);
    base / 2 + ctx.rng.below(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection plus everything its loop would lend it, driven with synthetic time.
    struct Harness {
        cfg: ConnConfig,
        files: StaticFiles,
        metrics: Metrics,
        dates: Dates,
        rng: Rng,
        now: Now,
        draining: bool,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                cfg: ConnConfig {
                    interval_ms: 100,
                    ..ConnConfig::default()
                },
                files: StaticFiles::embedded(),
                metrics: Metrics::new(1, 3),
                dates: Dates::new(),
                rng: Rng::new(7),
                now: Now {
                    ms: 1_000,
                    unix_ms: 1_795_460_982_321,
                },
                draining: false,
            }
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut Ctx<'_>, Now) -> R) -> R {
            let mut ctx = Ctx {
                cfg: &self.cfg,
                files: &self.files,
                metrics: &self.metrics,
                shard: self.metrics.shard(0),
                dates: &mut self.dates,
                rng: &mut self.rng,
                process_stats: ProcessStats::default,
                draining: self.draining,
            };
            f(&mut ctx, self.now)
        }

        fn conn(&mut self) -> Conn {
            Conn::new(self.now, &self.cfg)
        }

        fn input(&mut self, c: &mut Conn, bytes: &[u8]) {
            self.with(|ctx, now| c.handle_input(bytes, now, ctx));
        }

        /// Writes everything pending, as a socket with room for all of it would.
        fn flush(&mut self, c: &mut Conn) -> Vec<u8> {
            let mut wire = Vec::new();
            while let Some([a, b]) = c.pending() {
                wire.extend_from_slice(a);
                wire.extend_from_slice(b);
                let n = a.len() + b.len();
                self.with(|ctx, now| c.on_sent(n, now, ctx));
            }
            wire
        }

        fn advance(&mut self, ms: u64) {
            self.now.ms += ms;
            self.now.unix_ms += ms as i64;
        }

        /// Fires the connection's timer if due and returns the frame bytes it produced.
        fn tick(&mut self, c: &mut Conn) -> Vec<u8> {
            let mut scratch = Vec::new();
            if c.timeout().is_some_and(|t| t <= self.now.ms) {
                self.with(|ctx, now| c.handle_timeout(now, ctx, &mut scratch));
                let n = scratch.len();
                self.with(|ctx, now| c.on_sent_scratch(&scratch, n, now, ctx));
            }
            scratch
        }
    }

    const GET_SSE: &[u8] = b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n";

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn stream_headers_at_once_then_frames_on_the_interval() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        let head = text(&h.flush(&mut c));
        assert!(head.starts_with(sse::STREAM_HEADERS), "{head}");
        assert!(head.ends_with("\r\n\r\n") && !head.contains("Content-Length"));
        assert_eq!(h.metrics.streams_open(), 1);
        assert_eq!(c.timeout(), Some(1_100));
        h.advance(99);
        assert!(h.tick(&mut c).is_empty());
        h.advance(1);
        assert_eq!(
            text(&h.tick(&mut c)),
            "event:sseEvent\nid:0\nretry: 30000\ndata: {\"content\":\"2026-11-23T19:09:42.421Z\"}\n\n"
        );
        h.advance(100);
        assert!(text(&h.tick(&mut c)).starts_with("event:sseEvent\nid:1\n"));
        assert_eq!(c.timeout(), Some(1_300));
    }

    #[test]
    fn steady_streams_allocate_nothing_per_frame() {
        // The loop's per-tick path, minus the socket: expire a timer, encode into the shared
        // scratch, report it written, re-arm. After one warm-up round nothing may allocate.
        let mut h = Harness::new();
        h.metrics = Metrics::new(1, 1000);
        let mut conns: Vec<Conn> = (0..1000)
            .map(|_| {
                let mut c = h.conn();
                h.input(&mut c, GET_SSE);
                h.flush(&mut c);
                c
            })
            .collect();
        let mut wheel = crate::timer::TimerWheel::new(h.now.ms);
        for (k, c) in conns.iter().enumerate() {
            wheel.arm(k, c.timeout().unwrap());
        }
        let mut scratch = Vec::with_capacity(256);
        let mut round =
            |h: &mut Harness, conns: &mut Vec<Conn>, wheel: &mut crate::timer::TimerWheel| {
                h.advance(100);
                let mut frames = 0;
                while let Some(k) = wheel.pop_expired(h.now.ms) {
                    let c = &mut conns[k];
                    scratch.clear();
                    h.with(|ctx, now| c.handle_timeout(now, ctx, &mut scratch));
                    let n = scratch.len();
                    h.with(|ctx, now| c.on_sent_scratch(&scratch, n, now, ctx));
                    frames += usize::from(n > 0);
                    wheel.arm(k, c.timeout().unwrap());
                }
                frames
            };
        assert_eq!(round(&mut h, &mut conns, &mut wheel), 1000);
        let before = crate::test_alloc::allocations();
        for _ in 0..50 {
            assert_eq!(round(&mut h, &mut conns, &mut wheel), 1000);
        }
        assert_eq!(
            crate::test_alloc::allocations() - before,
            0,
            "50,000 frames in steady state"
        );
        assert_eq!(h.metrics.shard(0).frames_sent.get(), 51_000);
    }

    #[test]
    fn last_event_id_resumes() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(
            &mut c,
            b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\n\r\n",
        );
        h.flush(&mut c);
        h.advance(100);
        assert!(text(&h.tick(&mut c)).starts_with("event:sseEvent\nid:42\n"));
        let mut c = h.conn();
        h.input(
            &mut c,
            b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: nope\r\n\r\n",
        );
        h.flush(&mut c);
        h.advance(100);
        assert!(text(&h.tick(&mut c)).starts_with("event:sseEvent\nid:0\n"));
    }

    #[test]
    fn head_split_into_single_bytes() {
        let mut h = Harness::new();
        let mut c = h.conn();
        for &b in GET_SSE {
            assert!(c.pending().is_none());
            h.input(&mut c, &[b]);
        }
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(c.is_stream());
    }

    #[test]
    fn a_slow_reader_keeps_one_partial_frame_and_skips_ticks() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.advance(100);
        let mut scratch = Vec::new();
        h.with(|ctx, now| c.handle_timeout(now, ctx, &mut scratch));
        // The socket took only 10 bytes: the rest is kept.
        h.with(|ctx, now| c.on_sent_scratch(&scratch, 10, now, ctx));
        let [a, b] = c.pending().unwrap();
        assert_eq!([a, b].concat(), &scratch[10..]);
        // Three more ticks while the client does not read: skipped, nothing more queued.
        for _ in 0..3 {
            h.advance(100);
            assert!(h.tick(&mut c).is_empty());
        }
        assert_eq!(h.metrics.shard(0).frames_skipped.get(), 3);
        assert_eq!(c.pending().unwrap().concat().len(), scratch.len() - 10);
        // No progress for the stall timeout: closed, and the stream slot freed.
        h.advance(h.cfg.stall_timeout_ms);
        h.tick(&mut c);
        assert!(c.is_closed());
        assert_eq!(h.metrics.streams_open(), 0);
        assert_eq!(
            h.metrics.shard(0).timeouts[Timeout::Stall as usize].get(),
            1
        );
    }

    #[test]
    fn late_loop_skips_missed_ticks_instead_of_bursting() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.advance(350);
        assert!(text(&h.tick(&mut c)).contains("id:0\n"));
        assert!(h.tick(&mut c).is_empty());
        assert_eq!(c.timeout(), Some(1_400));
        assert_eq!(h.metrics.shard(0).frames_skipped.get(), 2);
    }

    #[test]
    fn eof_closes_a_stream_and_frees_its_slot() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.with(|ctx, _| c.handle_eof(ctx));
        assert!(c.is_closed());
        assert_eq!(c.timeout(), None);
        assert_eq!(h.metrics.streams_open(), 0);
    }

    #[test]
    fn max_streams_answers_retry_and_close() {
        let mut h = Harness::new();
        let mut conns: Vec<Conn> = (0..3).map(|_| h.conn()).collect();
        for c in conns.iter_mut() {
            h.input(c, GET_SSE);
        }
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        let wire = text(&h.flush(&mut c));
        assert!(wire.starts_with(sse::CLOSING_STREAM_HEADERS), "{wire}");
        let retry: u64 = wire
            .split("retry: ")
            .nth(1)
            .unwrap()
            .trim_end()
            .parse()
            .unwrap();
        assert!((2_500..7_500).contains(&retry), "{retry}");
        assert!(c.take_shutdown());
        assert_eq!(h.metrics.shard(0).streams_rejected.get(), 1);
        assert_eq!(h.metrics.streams_open(), 3);
    }

    #[test]
    fn keep_alive_and_pipelining_answer_in_order() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!c.wants_read(), "no reading while a response is pending");
        let wire = text(&h.flush(&mut c));
        let statuses: Vec<&str> = wire.lines().filter(|l| l.starts_with("HTTP/1.1")).collect();
        assert_eq!(
            statuses,
            [
                "HTTP/1.1 404 Not Found",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK"
            ]
        );
        assert!(wire.ends_with("ok\n"));
        assert!(c.wants_read());
        assert_eq!(c.timeout(), Some(h.now.ms + h.cfg.idle_timeout_ms));
    }

    #[test]
    fn errors_close_after_answering() {
        for (input, code) in [
            (&b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "405"),
            (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", "501"),
            (b"GET / HTTP/1.1\r\n\r\n", "400"),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "501",
            ),
        ] {
            let mut h = Harness::new();
            let mut c = h.conn();
            h.input(&mut c, input);
            let wire = text(&h.flush(&mut c));
            assert!(wire.starts_with(&format!("HTTP/1.1 {code} ")), "{wire}");
            assert!(wire.contains("Connection: close\r\n"));
            assert!(c.take_shutdown());
            assert!(!c.is_closed(), "lingers for the client's FIN");
            h.with(|ctx, _| c.handle_eof(ctx));
            assert!(c.is_closed());
        }
    }

    #[test]
    fn oversized_head_is_431_within_the_read_limit() {
        let mut h = Harness::new();
        let mut c = h.conn();
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        head.resize(20_000, b'a');
        let mut fed = 0;
        while c.pending().is_none() {
            let n = c.read_limit(&h.cfg).min(1000).min(head.len() - fed);
            assert!(n > 0);
            h.input(&mut c, &head[fed..fed + n]);
            fed += n;
        }
        assert!(fed <= h.cfg.limits.max_head);
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn head_and_idle_timeouts() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, b"GET / HT");
        h.advance(h.cfg.head_timeout_ms);
        h.tick(&mut c);
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 408 "));
        // An idle kept-alive connection is closed quietly.
        let mut c = h.conn();
        h.input(&mut c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        h.flush(&mut c);
        h.advance(h.cfg.idle_timeout_ms);
        h.tick(&mut c);
        assert!(c.is_closed() && c.pending().is_none());
    }

    #[test]
    fn drain_ends_streams_with_a_retry() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.with(|ctx, now| c.drain(now, ctx));
        assert_eq!(h.metrics.streams_open(), 0);
        let wire = text(&h.flush(&mut c));
        assert!(
            wire.starts_with("retry: ") && wire.ends_with("\n\n"),
            "{wire}"
        );
        assert!(c.take_shutdown());
    }

    #[test]
    fn not_modified_with_matching_etag() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.input(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let wire = text(&h.flush(&mut c));
        let etag = wire
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .unwrap()
            .to_owned();
        assert!(wire.contains("X-Content-Type-Options: nosniff\r\n"));
        h.input(
            &mut c,
            format!("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
        );
        let wire = text(&h.flush(&mut c));
        assert!(
            wire.starts_with("HTTP/1.1 304 ") && wire.ends_with("\r\n\r\n"),
            "{wire}"
        );
    }
}
