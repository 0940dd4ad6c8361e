//! One HTTP/1.1 connection's lifecycle, sans-IO: bytes and `now` in, bytes and a deadline out.
//! The application is not here: a complete request is handed to the loop's router through
//! [`Conn::serve`], and the [`Reply`] it returns is queued.
//!
//! The event loop:
//! - feeds what it read ([`Conn::handle_input`], [`Conn::handle_eof`]) and lets the connection
//!   answer what is complete ([`Conn::serve`]);
//! - calls [`Conn::handle_timeout`] once [`Conn::timeout`] has passed;
//! - asks what to write with [`Conn::poll_transmit`] and reports how much went out with
//!   [`Conn::on_sent`]: the one output path, for responses and frames alike;
//! - shuts the write side when [`Conn::take_shutdown`] says so and drops the socket once
//!   [`Conn::is_closed`].
//!
//! Memory: an idle stream is its [`Source`] and nothing else. A frame is encoded into the
//! loop's scratch buffer and written from there; only bytes the socket did not take are copied
//! into the connection's outbox, and at most one such tail is ever pending: a source is not
//! polled while it exists.
//!
//! **Invariant:** nothing here touches a socket or reads a clock; `now` is always an argument.
//! **Invariant:** a connection counts in `sse_streams_open` exactly while its state is `Stream`;
//! leaving that state always goes through `Conn::leave_stream`.

use crate::core::body::Body;
use crate::core::ctx::{Answered, ConnConfig, Ctx, End, Now, RequestLine, StreamEnd};
use crate::core::metrics::Timeout;
use crate::core::reply::{Reply, Then, Timing};
use crate::core::stream::{Previous, Source};
use crate::wire::frames;
use crate::wire::head::Connection;
use crate::wire::http::{self, Method, Request, Status};

/// What one call to [`Conn::serve`] did: the one way the loop learns that a connection became
/// a stream, and all it needs to register it.
#[must_use]
#[derive(Debug)]
pub enum Served<'c> {
    /// No complete request to answer (or an earlier answer is still being written).
    Idle,
    /// A request was answered (or `100 Continue` queued); the connection is what it was.
    Answered,
    /// The request made the connection a stream, which the loop registers now.
    Stream(NewStream<'c>),
}

impl Served<'_> {
    /// Whether anything was queued (the loop goes round again).
    pub fn progress(&self) -> bool {
        !matches!(self, Served::Idle)
    }
}

/// A connection that just became a stream: what the loop registers.
#[derive(Debug)]
pub struct NewStream<'c> {
    /// Its hub subscription's topics, for the loop's topic index (`None`: not a hub
    /// subscription: the clock, the figures).
    pub topics: Option<&'c crate::hub::history::Filter>,
    /// What its presence joins with (`--subscriptions`).
    pub joining: Option<Box<crate::hub::history::Joining>>,
}

/// Bytes accepted by the connection but not yet taken by the socket.
#[derive(Debug)]
struct Outbox {
    head: Vec<u8>,
    body: Option<Body>,
    sent: usize,
    /// Closed if no byte goes out before this.
    stall_deadline: u64,
    /// A publish's answer: when its request was complete (µs, the loop's clock), so that the
    /// time to its last byte is measured (see [`crate::core::reply::Timing`]).
    timed_since: Option<u64>,
}

impl Outbox {
    fn new(head: Vec<u8>, body: Option<Body>, now: Now, cfg: &ConnConfig) -> Box<Self> {
        Box::new(Outbox {
            head,
            body,
            sent: 0,
            stall_deadline: now.ms + cfg.stall_timeout_ms,
            timed_since: None,
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

/// An answer to come (see [`Reading::waiting`]).
#[derive(Clone, Debug)]
struct Waiting {
    ticket: u32,
    keep_alive: bool,
    /// The request it answers, for the log line once the answer is known.
    line: RequestLine,
    /// A publish: when its request was complete (see [`Outbox::timed_since`]).
    timed_since: Option<u64>,
}

/// A request being read: a partial head, a head waiting for its body, or pipelined bytes.
#[derive(Debug)]
struct Reading {
    buf: Vec<u8>,
    deadline: u64,
    /// A kept-alive connection that has not sent a byte of its next request yet.
    idle: bool,
    /// Head plus body length, once the head is parsed and a body is still arriving; else 0.
    need: usize,
    /// The request was answered `Pending`: its reply comes through [`Conn::complete`] with
    /// this ticket, then the connection is kept alive if the flag says so.
    waiting: Option<Waiting>,
}

/// What a reply made of the connection (see [`Served`]).
enum Became {
    Same,
    Stream(Option<Box<crate::hub::history::Joining>>),
}

/// How a reply is sent: whether the connection may be kept for another request, whether the
/// request was a `HEAD` (head only), and the request it answers (for the log).
struct How {
    keep_alive: bool,
    head_only: bool,
    line: RequestLine,
    /// An answer given later to a publish: when its request was complete.
    timed_since: Option<u64>,
}

/// Where the connection is in its life.
#[derive(Debug)]
enum State {
    /// Reading a request (boxed: a stream does not carry a reader's fields).
    Head(Box<Reading>),
    /// An event stream fed by its source.
    Stream(Source),
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
    /// When the connection was accepted, in whole seconds of the loop clock (for the log).
    opened_s: u32,
}

// What ARCHITECTURE.md says a connection costs: 56 bytes at most, its source included (no
// buffer until the kernel refuses part of a write).
const _: () = assert!(std::mem::size_of::<Conn>() <= 56);

impl Conn {
    /// A freshly accepted connection: waiting for its first request head.
    pub fn new(now: Now, cfg: &ConnConfig) -> Self {
        Conn {
            state: State::Head(Box::new(Reading {
                buf: Vec::new(),
                deadline: now.ms + cfg.head_timeout_ms,
                idle: false,
                need: 0,
                waiting: None,
            })),
            out: None,
            eof: false,
            shutdown: false,
            opened_s: (now.ms / 1000).min(u64::from(u32::MAX)) as u32,
        }
    }

    /// Whether the loop should read from the socket now.
    pub fn wants_read(&self) -> bool {
        if self.eof {
            return false;
        }
        match &self.state {
            State::Head(r) => {
                self.out.is_none() && r.waiting.is_none() && (r.need == 0 || r.buf.len() < r.need)
            }
            State::Stream(_) | State::Linger { .. } => true,
            State::Finishing | State::Closed => false,
        }
    }

    /// How many bytes the connection can take in one read: the rest of a body being read, or
    /// the room left under the head limit while a head is read; unbounded (the bytes are
    /// discarded) otherwise.
    pub fn read_limit(&self, cfg: &ConnConfig) -> usize {
        match &self.state {
            State::Head(r) if r.need > 0 => r.need.saturating_sub(r.buf.len()),
            State::Head(r) => cfg.limits.max_head.saturating_sub(r.buf.len()),
            _ => usize::MAX,
        }
    }

    /// Bytes of client input held (a partial request or pipelined requests); never more than
    /// the head limit plus the body limit.
    pub fn buffered_input(&self) -> usize {
        match &self.state {
            State::Head(r) => r.buf.len(),
            _ => 0,
        }
    }

    /// The input held at a request's start, when nothing is being answered (no response
    /// pending, none awaited, no body being read): what the loop looks at to tell an HTTP/2
    /// preface from a request. `None` mid-request or mid-answer.
    pub fn unanswered_input(&self) -> Option<&[u8]> {
        match &self.state {
            State::Head(r) if self.out.is_none() && r.waiting.is_none() && r.need == 0 => {
                Some(&r.buf)
            }
            _ => None,
        }
    }

    /// A hub stream's topics (for the loop's topic index).
    pub fn filter(&self) -> Option<&crate::hub::history::Filter> {
        match &self.state {
            State::Stream(source) => source.filter(),
            _ => None,
        }
    }

    /// The next page of the shared store a replaying stream needs, once what it has is written
    /// (so a replay holds one page at a time, however far back it starts); the loop asks the
    /// store for it and hands the answer to [`page`](Self::page).
    pub fn page_request(&mut self, ctx: &mut Ctx<'_>) -> Option<crate::core::stream::PageRequest> {
        if self.out.is_some() {
            return None;
        }
        match &mut self.state {
            State::Stream(source) => source.page_request(|| ctx.hub.ticket()),
            _ => None,
        }
    }

    /// A page of the shared store for the replay that asked under `ticket` (ignored otherwise:
    /// the stream ended, or another connection has its slab key now).
    pub fn page(
        &mut self,
        ticket: u32,
        page: Result<crate::hub::history::StorePage, String>,
        now: Now,
        ctx: &mut Ctx<'_>,
    ) {
        let State::Stream(source) = &mut self.state else {
            return;
        };
        let Some(body) = source.on_page(ticket, page, ctx) else {
            return;
        };
        let head = match self.out.take() {
            // A heartbeat still partly unwritten goes first.
            Some(o) => o.slices().concat(),
            None => Vec::new(),
        };
        self.out = Some(Outbox::new(head, Some(body), now, ctx.cfg));
    }

    /// Whether the connection is a live event stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Stream(_))
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
            State::Head(r) if self.out.is_none() => Some(r.deadline),
            State::Stream(source) => Some(source.deadline()),
            State::Linger { deadline } => Some(*deadline),
            _ => None,
        };
        match (stall, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes received from the client (at most [`read_limit`](Self::read_limit)).
    pub fn handle_input(&mut self, data: &[u8], now: Now, ctx: &mut Ctx<'_>) {
        // A stream, a finishing or a lingering connection reads only to notice the close.
        let State::Head(r) = &mut self.state else {
            return;
        };
        if data.is_empty() {
            return;
        }
        if r.idle {
            r.idle = false;
            r.deadline = now.ms + ctx.cfg.head_timeout_ms;
        }
        r.buf.extend_from_slice(data);
    }

    /// Answers the request at the start of the input once it is complete (head, and body when
    /// there is one) and nothing earlier is still being written: `route` turns it into a
    /// [`Reply`], which is queued. Malformed input is answered here with its status, and the
    /// connection closes. Returns what it did: [`Served::Stream`] when the connection became a
    /// stream (the only way the loop learns it).
    pub fn serve<F>(&mut self, now: Now, ctx: &mut Ctx<'_>, route: F) -> Served<'_>
    where
        F: FnOnce(&Request<'_>, &[u8], &mut Ctx<'_>) -> Reply,
    {
        if self.out.is_some() {
            return Served::Idle;
        }
        let State::Head(r) = &mut self.state else {
            return Served::Idle;
        };
        if r.waiting.is_some() || r.buf.is_empty() || (r.need > 0 && r.buf.len() < r.need) {
            return Served::Idle;
        }
        let (reply, used, keep_alive, head_only, line) = match http::parse(&r.buf, &ctx.cfg.limits)
        {
            Ok(None) => return Served::Idle,
            Err(e) => (
                Reply::error(e.status()),
                r.buf.len(),
                false,
                false,
                RequestLine::guess(&r.buf),
            ),
            Ok(Some(req)) => {
                let body_len = req.content_length;
                let line = RequestLine::of(&req);
                if let Method::Other(_) = req.method {
                    // No path serves it: the router answers from the head (405 and the
                    // path's Allow); the body is never read, the close discards it.
                    let reply = route(&req, &[], ctx).closing();
                    (reply, r.buf.len(), false, false, line)
                } else if body_len > ctx.cfg.max_body as u64 {
                    // Decided from the head: the body is never read.
                    (
                        Reply::error(Status::PayloadTooLarge),
                        r.buf.len(),
                        false,
                        false,
                        line,
                    )
                } else {
                    let total = req.head_len + body_len as usize;
                    if r.buf.len() < total {
                        r.need = total;
                        if !req.expect_continue {
                            return Served::Idle;
                        }
                        // The client waits for a word before it sends the body: the head
                        // alone is routed (`body` shorter than `Content-Length`), once.
                        let reply = route(&req, &r.buf[req.head_len..], ctx);
                        if matches!(reply.then, Then::Continue) {
                            self.out = Some(Outbox::new(
                                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                                None,
                                now,
                                ctx.cfg,
                            ));
                            return Served::Answered;
                        }
                        // Refused from its head: the body is never read, and what of it
                        // may already be on its way is discarded by the close.
                        (reply.closing(), r.buf.len(), false, false, line)
                    } else {
                        let keep_alive = req.keep_alive;
                        let head_only = req.method == Method::Head;
                        let reply = route(&req, &r.buf[req.head_len..total], ctx);
                        (reply, total, keep_alive, head_only, line)
                    }
                }
            }
        };
        r.need = 0;
        r.buf.drain(..used);
        if r.buf.is_empty() {
            // An empty buffer gives its memory back: idle connections hold none.
            r.buf = Vec::new();
        }
        let how = How {
            keep_alive,
            head_only,
            line,
            timed_since: None,
        };
        match self.respond(reply, how, now, ctx) {
            Became::Same => Served::Answered,
            Became::Stream(joining) => Served::Stream(NewStream {
                topics: self.filter(),
                joining,
            }),
        }
    }

    /// The answer to a request that was answered `Pending` under `ticket` (ignored otherwise:
    /// the connection timed out waiting, or is another one at the same slab key).
    pub fn complete(&mut self, ticket: u32, reply: Reply, now: Now, ctx: &mut Ctx<'_>) {
        let State::Head(r) = &mut self.state else {
            return;
        };
        if !r.waiting.as_ref().is_some_and(|w| w.ticket == ticket) {
            return;
        }
        let Some(w) = r.waiting.take() else {
            return;
        };
        let how = How {
            keep_alive: w.keep_alive,
            head_only: false,
            line: w.line,
            timed_since: w.timed_since,
        };
        self.respond(reply, how, now, ctx);
    }

    /// The client closed its sending side (read returned 0).
    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        self.eof = true;
        match &self.state {
            // A half-closed client may still be reading its last response: finish it first.
            State::Head(_) if self.out.is_some() => self.state = State::Finishing,
            // A publish waiting for the store is still answered (then the connection closes).
            State::Head(r) if r.waiting.is_some() => {}
            State::Finishing => {}
            _ => self.close(ctx, End::ClientClosed),
        }
    }

    /// A write failed or the socket reported an error: the connection is gone.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx, End::Error);
    }

    /// The deadline from [`timeout`](Self::timeout) has passed (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        if self
            .out
            .as_ref()
            .is_some_and(|o| now.ms >= o.stall_deadline)
        {
            ctx.shard.timeout(Timeout::Stall);
            self.close(ctx, End::Stalled);
            return;
        }
        let blocked = self.out.is_some();
        match &mut self.state {
            State::Head(r) if !blocked && now.ms >= r.deadline => {
                if let Some(w) = r.waiting.take() {
                    // The answer did not come in time: say so rather than hang.
                    let reply = Reply::text(
                        Status::ServiceUnavailable,
                        "503 Service Unavailable: no answer from the event log in time\n",
                        &[("Retry-After", "1")],
                    );
                    let how = How {
                        keep_alive: w.keep_alive,
                        head_only: false,
                        line: w.line,
                        timed_since: w.timed_since,
                    };
                    self.respond(reply, how, now, ctx);
                } else if r.idle || r.buf.is_empty() {
                    // Nothing of a request arrived: close without an answer.
                    ctx.shard
                        .timeout(if r.idle { Timeout::Idle } else { Timeout::Head });
                    self.close(ctx, End::Timeout);
                } else {
                    ctx.shard.timeout(Timeout::Head);
                    let how = How {
                        keep_alive: false,
                        head_only: false,
                        line: RequestLine::guess(&r.buf),
                        timed_since: None,
                    };
                    self.respond(Reply::error(Status::RequestTimeout), how, now, ctx);
                }
            }
            State::Stream(source) => {
                let previous = if blocked {
                    Previous::Unwritten
                } else {
                    Previous::Written
                };
                let expired = source.on_timeout(now, previous, ctx);
                if expired {
                    // The subscriber's token expired: a jittered retry, so the client comes
                    // back (with a fresh token) without every client at once.
                    self.end_stream(now, ctx, End::TokenExpired);
                }
            }
            State::Linger { deadline } if now.ms >= *deadline => self.close(ctx, End::Timeout),
            _ => {}
        }
    }

    /// What to write now, as (up to) two slices for one vectored write: the unwritten rest of
    /// a response or frame, else whatever the stream's source has due, encoded into the loop's
    /// `scratch`. After writing, the loop reports with [`on_sent`](Self::on_sent), even for 0
    /// bytes.
    pub fn poll_transmit<'a>(
        &'a mut self,
        now: Now,
        ctx: &mut Ctx<'_>,
        scratch: &'a mut Vec<u8>,
    ) -> Option<[&'a [u8]; 2]> {
        scratch.clear();
        if self.out.is_some() {
            return self.out.as_ref().map(|o| o.slices());
        }
        if let State::Stream(source) = &mut self.state {
            if source.poll(now, ctx, scratch) {
                return Some([scratch.as_slice(), &[]]);
            }
        }
        None
    }

    /// `n` bytes of what [`poll_transmit`](Self::poll_transmit) returned were written
    /// (`scratch` is the buffer it was given). A response advances; an unwritten tail of the
    /// scratch is copied into the outbox, the only allocation on the frame path.
    pub fn on_sent(&mut self, n: usize, scratch: &[u8], now: Now, ctx: &mut Ctx<'_>) {
        let is_stream = self.is_stream();
        let Some(out) = self.out.as_mut() else {
            ctx.shard.bytes_sent.add(n as u64);
            let keep = match &mut self.state {
                State::Stream(source) => source.on_written(n, scratch.len(), now, ctx),
                _ => scratch.len(),
            };
            if n < keep {
                self.out = Some(Outbox::new(scratch[n..keep].to_vec(), None, now, ctx.cfg));
            }
            return;
        };
        if n == 0 {
            return;
        }
        out.sent += n;
        out.stall_deadline = now.ms + ctx.cfg.stall_timeout_ms;
        if is_stream {
            ctx.shard.bytes_sent.add(n as u64);
        }
        if out.remaining() == 0 {
            if let Some(since) = out.timed_since {
                ctx.shard.publish_answered(now.us.saturating_sub(since));
            }
            self.out = None;
            self.output_drained(now, ctx);
        }
    }

    /// Whether output the socket did not take is pending (then [`poll_transmit`] returns
    /// that tail, whatever the source has due).
    ///
    /// [`poll_transmit`]: Self::poll_transmit
    pub fn output_pending(&self) -> bool {
        self.out.is_some()
    }

    /// The transport below made progress on bytes this connection already counts as given to
    /// it (TLS records of a pending tail): the pending tail is not stalled.
    pub fn on_transport_progress(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        if let Some(out) = self.out.as_mut() {
            out.stall_deadline = now.ms + ctx.cfg.stall_timeout_ms;
        }
    }

    /// Ends a stream: a jittered `retry:` (unless a partial frame is still pending) and a
    /// close.
    fn end_stream(&mut self, now: Now, ctx: &mut Ctx<'_>, why: End) {
        // A head still held (a resume from the shared store before its first page) goes
        // first: the retry needs its answer.
        let held = match &mut self.state {
            State::Stream(source) => source.release_head(),
            _ => None,
        };
        self.leave_stream(ctx, why);
        if self.out.is_none() {
            let mut frame = held.unwrap_or_default();
            frames::encode_retry(&mut frame, ctx.rng.jitter(ctx.cfg.reconnect_ms));
            self.out = Some(Outbox::new(frame, None, now, ctx.cfg));
        }
        self.state = State::Finishing;
    }

    /// The server is stopping: a stream gets a jittered `retry:` and is closed, a response in
    /// flight is finished, an idle connection is closed; a request still arriving is read and
    /// answered (with `Connection: close`), and one waiting for the event store gets its answer,
    /// until the grace ends ([`abandon`](Self::abandon)).
    pub fn drain(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Stream(ref source) => {
                if let Source::Topics {
                    cursor,
                    filter,
                    private,
                    ..
                } = source
                {
                    // Answered publishes this stream will not get: counted, not lost silently.
                    let hub = &*ctx.hub;
                    let missed = hub
                        .after(*cursor)
                        .filter(|e| hub.matches(filter, *private, e))
                        .count();
                    ctx.shard.undelivered.add(missed as u64);
                }
                self.end_stream(now, ctx, End::Shutdown);
            }
            State::Head(_) if self.out.is_some() => self.state = State::Finishing,
            // A publish waiting for the store gets its answer (or its timeout) first.
            State::Head(ref r) if r.waiting.is_some() => {}
            // A request partly received (a publish's body still arriving) is answered too.
            State::Head(ref r) if !r.buf.is_empty() => {}
            State::Head(_) => self.close(ctx, End::Shutdown),
            State::Finishing | State::Linger { .. } | State::Closed => {}
        }
    }

    /// The grace is over and the loop ends now: a request still waiting for the event store's
    /// answer, or still arriving, is answered `503` with `Retry-After` (never closed without an
    /// answer); anything else is left as it is. The loop writes what this queued, once.
    pub fn abandon(&mut self, now: Now, ctx: &mut Ctx<'_>) {
        if self.out.is_some() {
            return;
        }
        let State::Head(r) = &mut self.state else {
            return;
        };
        let line = match r.waiting.take() {
            Some(w) => w.line,
            None if !r.buf.is_empty() => RequestLine::guess(&r.buf),
            None => return,
        };
        let reply = Reply::text(
            Status::ServiceUnavailable,
            "503 Service Unavailable: the server is stopping; try again (another instance)\n",
            &[("Retry-After", "1")],
        );
        let how = How {
            keep_alive: false,
            head_only: false,
            line,
            timed_since: None,
        };
        self.respond(reply, how, now, ctx);
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
            State::Head(r) => {
                // Pipelined bytes are answered by the next `serve`.
                r.idle = r.buf.is_empty();
                r.deadline = now.ms
                    + if r.idle {
                        ctx.cfg.idle_timeout_ms
                    } else {
                        ctx.cfg.head_timeout_ms
                    };
            }
            _ => {}
        }
    }

    /// Queues a reply. A stream reply holds an admission slot, released when the stream ends.
    /// A final answer (neither a stream nor one to come) is recorded for the log.
    fn respond(&mut self, reply: Reply, how: How, now: Now, ctx: &mut Ctx<'_>) -> Became {
        let How {
            keep_alive,
            head_only,
            line,
            timed_since,
        } = how;
        let Reply {
            status,
            head,
            body,
            then,
            timing,
        } = reply;
        // A publish's answer is timed from its request (or, given later, from the request it
        // answers).
        let timed_since = match timing {
            Timing::Publish => timed_since.or(Some(now.us)),
            Timing::Untimed => timed_since,
        };
        if !matches!(then, Then::Pending(_)) {
            ctx.shard.response(status);
        }
        let date = ctx.dates.http(now.unix_ms);
        match then {
            Then::Stream(mut source, joining) if !head_only => {
                let head = head.finish(date, Connection::KeepAlive);
                ctx.shard.streams_total.inc();
                if source.filter().is_some() {
                    ctx.shard.topic_streams_opened.inc();
                }
                // A resume from the shared store keeps its head until its first page says
                // which id it resumes after; nothing is written before it.
                let head = source.hold_head(head);
                self.state = State::Stream(source);
                // A body here is the stream's first bytes (a hub's `reset`).
                self.out = match (head, body) {
                    (None, None) => None,
                    (head, body) => Some(Outbox::new(head.unwrap_or_default(), body, now, ctx.cfg)),
                };
                return Became::Stream(joining);
            }
            Then::Pending(ticket) => {
                if let State::Head(r) = &mut self.state {
                    r.waiting = Some(Waiting {
                        ticket,
                        keep_alive,
                        line,
                        timed_since,
                    });
                    r.deadline = now.ms + ctx.cfg.head_timeout_ms;
                }
            }
            then => {
                if matches!(then, Then::Stream(..)) {
                    // A HEAD never becomes a stream: give the slot back.
                    ctx.metrics.admission().close();
                }
                let close = matches!(then, Then::Close) || !keep_alive || ctx.draining || self.eof;
                let connection = if close {
                    Connection::Close
                } else {
                    Connection::KeepAlive
                };
                let head = head.finish(date, connection);
                let body = body.filter(|b| !head_only && !b.bytes().is_empty());
                ctx.answered.push(Answered {
                    line,
                    status,
                    bytes: body.as_ref().map_or(0, |b| b.bytes().len() as u64),
                });
                let mut out = Outbox::new(head, body, now, ctx.cfg);
                out.timed_since = timed_since;
                self.out = Some(out);
                if close {
                    self.state = State::Finishing;
                }
            }
        }
        Became::Same
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, why: End) {
        if let State::Head(r) = &mut self.state {
            r.waiting = None;
        }
        self.leave_stream(ctx, why);
        self.out = None;
        self.state = State::Closed;
    }

    /// Leaves the `Stream` state's accounting (no-op for other states), and records how the
    /// stream went for the loop's log.
    fn leave_stream(&mut self, ctx: &mut Ctx<'_>, why: End) {
        if let State::Stream(source) = &self.state {
            if source.filter().is_some() {
                ctx.shard.topic_streams_closed.inc();
            }
            ctx.metrics.admission().close();
            ctx.shard.streams_closed.inc();
            ctx.ended.push(StreamEnd {
                kind: source.kind(),
                why,
                opened_s: self.opened_s,
                frames: source.sent(),
            });
            self.state = State::Finishing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::Env;

    fn env() -> Env {
        Env::new(
            ConnConfig {
                interval_ms: 100,
                ..ConnConfig::default()
            },
            3,
        )
    }

    const GET_SSE: &[u8] = b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n";

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    const STREAM_HEAD: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\n\
        Cache-Control: no-cache\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\
        X-Accel-Buffering: no\r\nDate: ";

    /// What `serve` did, as the loop reads it: `Stream` with its topics and its presence.
    fn served(h: &mut Env, c: &mut Conn, bytes: &[u8]) -> String {
        h.with(|ctx, lent, now, _| {
            c.handle_input(bytes, now, ctx);
            match crate::app::testing::serve(c, ctx, lent, now) {
                Served::Idle => "idle".to_string(),
                Served::Answered => "answered".to_string(),
                Served::Stream(new) => format!(
                    "stream topics={} joining={:?}",
                    new.topics.is_some(),
                    new.joining.map(|j| j.selectors)
                ),
            }
        })
    }

    /// The loop learns that a connection became a stream from `serve`'s answer alone, once,
    /// with what it registers: the subscription's topics (none for the clock) and, with
    /// `--subscriptions`, its presence; a `HEAD` of a stream, an incomplete head and a running
    /// stream are not new streams.
    #[test]
    fn serve_says_once_what_the_connection_became() {
        let mut h = env();
        let mut c = h.conn();
        assert_eq!(served(&mut h, &mut c, b"GET /sse HTTP/1.1\r\n"), "idle");
        assert_eq!(
            served(&mut h, &mut c, b"Host: x\r\n\r\n"),
            "stream topics=false joining=None"
        );
        h.flush(&mut c);
        assert_eq!(served(&mut h, &mut c, b""), "idle");
        assert!(c.is_stream());

        let mut c = h.conn();
        assert_eq!(
            served(
                &mut h,
                &mut c,
                b"HEAD /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            "answered"
        );
        assert!(!c.is_stream());
        assert_eq!(h.metrics.streams_open(), 1, "the HEAD gave its slot back");

        let mut c = h.conn();
        assert_eq!(
            served(
                &mut h,
                &mut c,
                b"GET /sse?topic=a&topic=b HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            "stream topics=true joining=None"
        );
        assert_eq!(h.metrics.shard(0).topic_streams_opened.get(), 1);

        h.hub.hub.enable_presence(9);
        let mut c = h.conn();
        assert_eq!(
            served(
                &mut h,
                &mut c,
                b"GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            "stream topics=true joining=Some([(\"a\", None)])"
        );
    }

    #[test]
    fn stream_headers_at_once_then_frames_on_the_interval() {
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        let head = text(&h.flush(&mut c));
        assert!(head.starts_with(STREAM_HEAD), "{head}");
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
        // The loop's per-tick path, minus the socket: expire a timer, poll the connection into
        // the shared scratch, report it written, re-arm. After one warm-up round nothing may
        // allocate.
        let mut h = Env::new(
            ConnConfig {
                interval_ms: 100,
                ..ConnConfig::default()
            },
            1000,
        );
        let mut conns: Vec<Conn> = (0..1000)
            .map(|_| {
                let mut c = h.conn();
                h.input(&mut c, GET_SSE);
                h.flush(&mut c);
                c
            })
            .collect();
        let mut wheel = crate::util::timer::TimerWheel::new(h.now.ms);
        for (k, c) in conns.iter().enumerate() {
            wheel.arm(k, c.timeout().unwrap());
        }
        let round =
            |h: &mut Env, conns: &mut Vec<Conn>, wheel: &mut crate::util::timer::TimerWheel| {
                h.advance(100);
                let mut frames = 0;
                while let Some(k) = wheel.pop_expired(h.now.ms) {
                    let c = &mut conns[k];
                    h.with(|ctx, _, now, scratch| {
                        c.handle_timeout(now, ctx);
                        while let Some([a, b]) = c.poll_transmit(now, ctx, scratch) {
                            let n = a.len() + b.len();
                            c.on_sent(n, scratch, now, ctx);
                            frames += 1;
                        }
                    });
                    wheel.arm(k, c.timeout().unwrap());
                }
                frames
            };
        assert_eq!(round(&mut h, &mut conns, &mut wheel), 1000);
        let before = crate::util::test_alloc::allocations();
        for _ in 0..50 {
            assert_eq!(round(&mut h, &mut conns, &mut wheel), 1000);
        }
        assert_eq!(
            crate::util::test_alloc::allocations() - before,
            0,
            "50,000 frames in steady state"
        );
        assert_eq!(h.metrics.shard(0).frames_sent.get(), 51_000);
    }

    #[test]
    fn last_event_id_resumes() {
        let mut h = env();
        for (id, want) in [("41", "id:42\n"), ("nope", "id:0\n")] {
            let mut c = h.conn();
            h.input(
                &mut c,
                format!("GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {id}\r\n\r\n").as_bytes(),
            );
            h.flush(&mut c);
            h.advance(100);
            assert!(text(&h.tick(&mut c)).starts_with(&format!("event:sseEvent\n{want}")));
        }
    }

    #[test]
    fn ids_saturate_instead_of_wrapping() {
        let mut h = env();
        let mut c = h.conn();
        h.input(
            &mut c,
            b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 18446744073709551614\r\n\r\n",
        );
        h.flush(&mut c);
        for _ in 0..3 {
            h.advance(100);
            assert!(text(&h.tick(&mut c)).contains("id:18446744073709551615\n"));
        }
    }

    #[test]
    fn head_split_into_single_bytes() {
        let mut h = env();
        let mut c = h.conn();
        for &b in GET_SSE {
            assert!(h.flush(&mut c).is_empty());
            h.input(&mut c, &[b]);
        }
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(c.is_stream());
    }

    #[test]
    fn a_slow_reader_keeps_one_partial_frame_and_skips_ticks() {
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.advance(100);
        h.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        // The socket takes only 10 bytes: the rest is kept.
        let first = h.write_at_most(&mut c, 10);
        assert_eq!(first.len(), 10);
        // Three more ticks while the client does not read: skipped, nothing more queued.
        for _ in 0..3 {
            h.advance(100);
            h.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        }
        assert_eq!(h.metrics.shard(0).frames_skipped.get(), 3);
        let rest = h.write_at_most(&mut c, 0);
        assert!(rest.is_empty());
        // No progress for the stall timeout: closed, and the stream slot freed.
        h.advance(h.cfg.stall_timeout_ms);
        h.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        assert!(c.is_closed());
        assert_eq!(h.metrics.streams_open(), 0);
        assert_eq!(
            h.metrics.shard(0).timeouts[Timeout::Stall as usize].get(),
            1
        );
    }

    #[test]
    fn the_unwritten_tail_goes_out_whole_before_the_next_frame() {
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.advance(100);
        h.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        let mut wire = h.write_at_most(&mut c, 10);
        wire.extend(h.flush(&mut c));
        assert!(text(&wire).starts_with("event:sseEvent\nid:0\n") && wire.ends_with(b"\n\n"));
        h.advance(100);
        assert!(text(&h.tick(&mut c)).starts_with("event:sseEvent\nid:1\n"));
    }

    #[test]
    fn late_loop_skips_missed_ticks_instead_of_bursting() {
        let mut h = env();
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
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.with(|ctx, _, _, _| c.handle_eof(ctx));
        assert!(c.is_closed());
        assert_eq!(c.timeout(), None);
        assert_eq!(h.metrics.streams_open(), 0);
    }

    #[test]
    fn max_streams_answers_retry_and_close() {
        let mut h = env();
        let mut conns: Vec<Conn> = (0..3).map(|_| h.conn()).collect();
        for c in conns.iter_mut() {
            h.input(c, GET_SSE);
        }
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        let wire = text(&h.flush(&mut c));
        assert!(wire.contains("\r\nConnection: close\r\n"), "{wire}");
        assert_eq!(wire.matches("Connection:").count(), 1, "{wire}");
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
        let mut h = env();
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
            let mut h = env();
            let mut c = h.conn();
            h.input(&mut c, input);
            let wire = text(&h.flush(&mut c));
            assert!(wire.starts_with(&format!("HTTP/1.1 {code} ")), "{wire}");
            assert!(wire.contains("Connection: close\r\n"));
            assert!(c.take_shutdown());
            assert!(!c.is_closed(), "lingers for the client's FIN");
            h.with(|ctx, _, _, _| c.handle_eof(ctx));
            assert!(c.is_closed());
        }
    }

    #[test]
    fn oversized_head_is_431_within_the_read_limit() {
        let mut h = env();
        let mut c = h.conn();
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        head.resize(20_000, b'a');
        let mut fed = 0;
        let mut wire = Vec::new();
        while wire.is_empty() {
            let n = c.read_limit(&h.cfg).min(1000).min(head.len() - fed);
            assert!(n > 0);
            h.input(&mut c, &head[fed..fed + n]);
            fed += n;
            wire = h.flush(&mut c);
        }
        assert!(fed <= h.cfg.limits.max_head);
        assert!(text(&wire).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn head_and_idle_timeouts() {
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, b"GET / HT");
        h.advance(h.cfg.head_timeout_ms);
        assert!(text(&h.tick(&mut c)).starts_with("HTTP/1.1 408 "));
        // An idle kept-alive connection is closed quietly.
        let mut c = h.conn();
        h.input(&mut c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        h.flush(&mut c);
        h.advance(h.cfg.idle_timeout_ms);
        assert!(h.tick(&mut c).is_empty());
        assert!(c.is_closed());
    }

    #[test]
    fn drain_ends_streams_with_a_retry() {
        let mut h = env();
        let mut c = h.conn();
        h.input(&mut c, GET_SSE);
        h.flush(&mut c);
        h.with(|ctx, _, now, _| c.drain(now, ctx));
        assert_eq!(h.metrics.streams_open(), 0);
        let wire = text(&h.flush(&mut c));
        assert!(
            wire.starts_with("retry: ") && wire.ends_with('\n') && !wire.ends_with("\n\n"),
            "{wire}"
        );
        assert!(c.take_shutdown());
    }

    #[test]
    fn not_modified_with_matching_etag() {
        let mut h = env();
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

    fn hub_env(history: usize) -> Env {
        use crate::hub::history::{Hub, HubConfig, LocalHub};
        let mut h = env();
        h.hub = LocalHub::new(
            std::sync::Arc::new(Hub::new(
                HubConfig {
                    history_events: history,
                    heartbeat_ms: 1_000,
                    ..HubConfig::default()
                },
                "t".into(),
                1,
                Box::new(|_| {}),
            )),
            0,
        );
        h
    }

    /// A publish's answer is timed from the request complete to its last byte written (a
    /// partial write records nothing yet), in the loop's clock; other requests are not timed.
    #[test]
    fn a_publish_answer_is_timed_to_its_last_byte() {
        let mut h = hub_env(100);
        let answers = |h: &Env| -> u64 {
            let s = h.metrics.shard(0);
            s.publish_answer_buckets.iter().map(|c| c.get()).sum()
        };
        let mut c = h.conn();
        h.input(
            &mut c,
            b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\ntopic=a&data=x",
        );
        h.advance(2);
        let first = h.write_at_most(&mut c, 10);
        assert_eq!(text(&first), "HTTP/1.1 2");
        assert_eq!(answers(&h), 0, "not all written yet");
        h.advance(3);
        assert!(text(&h.flush(&mut c)).ends_with("t-1\n"));
        let s = h.metrics.shard(0);
        assert_eq!(answers(&h), 1);
        assert_eq!(s.publish_answer_sum_us.get(), 5_000);
        assert_eq!(
            s.publish_answer_buckets[crate::util::latency::bucket(5_000)].get(),
            1
        );
        h.input(&mut c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        h.advance(1);
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 200"));
        assert_eq!(answers(&h), 1, "a GET is not a publish");
    }

    fn publish(h: &mut Env, topic: &str, data: &str) {
        let p = crate::hub::history::Publish {
            topics: vec![topic.into()],
            data: data.into(),
            ..Default::default()
        };
        h.hub.hub.publish(&p, h.now.us);
        h.hub.sync();
    }

    #[test]
    fn topic_streams_get_matching_events_and_heartbeats_when_idle() {
        let mut h = hub_env(100);
        let mut c = h.conn();
        h.input(&mut c, b"GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text(&h.flush(&mut c)).starts_with("HTTP/1.1 200 OK\r\n"));
        publish(&mut h, "b", "not for us");
        publish(&mut h, "a", "hello");
        assert_eq!(text(&h.flush(&mut c)), "id: t-2\ndata: hello\n\n");
        assert_eq!(h.metrics.shard(0).deliveries.get(), 1);
        h.advance(999);
        assert!(h.tick(&mut c).is_empty());
        h.advance(1);
        assert_eq!(text(&h.tick(&mut c)), ":\n");
        assert_eq!(c.timeout(), Some(h.now.ms + 1_000));
    }

    #[test]
    fn a_partial_write_keeps_one_frame_and_rereads_the_rest() {
        let mut h = hub_env(100);
        let mut c = h.conn();
        h.input(&mut c, b"GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        h.flush(&mut c);
        for i in 0..3 {
            publish(&mut h, "a", &format!("e{i}"));
        }
        let first = h.write_at_most(&mut c, 5);
        assert_eq!(first, b"id: t");
        // What is kept is the rest of that one frame; the next two come from the history.
        let rest = h.flush(&mut c);
        assert_eq!(
            text(&[first, rest].concat()),
            "id: t-1\ndata: e0\n\nid: t-2\ndata: e1\n\nid: t-3\ndata: e2\n\n"
        );
        assert_eq!(h.metrics.shard(0).deliveries.get(), 3);
    }

    #[test]
    fn a_blocked_stream_never_spins_on_its_heartbeat() {
        let mut h = hub_env(100);
        let mut c = h.conn();
        h.input(&mut c, b"GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        h.flush(&mut c);
        publish(&mut h, "a", "x");
        // The socket takes nothing: no outbox is kept (the event is re-read later).
        assert!(h.write_at_most(&mut c, 0).is_empty());
        h.advance(5_000);
        h.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        assert!(c.timeout().unwrap() > h.now.ms, "the deadline moved on");
        assert_eq!(text(&h.flush(&mut c)), "id: t-1\ndata: x\n\n");
    }

    #[test]
    fn a_subscriber_that_falls_behind_the_history_gets_a_reset() {
        let mut h = hub_env(3);
        let mut c = h.conn();
        h.input(&mut c, b"GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n");
        h.flush(&mut c);
        for i in 0..10 {
            publish(&mut h, "a", &i.to_string());
        }
        let wire = text(&h.flush(&mut c));
        assert!(
            wire.starts_with("id: t-10\nevent: reset\ndata: {\"lastEventId\":\"t-0\",\"oldest\":\"t-8\",\"reason\":\"gap\"}\n\n"),
            "{wire}"
        );
        publish(&mut h, "a", "live");
        assert_eq!(text(&h.flush(&mut c)), "id: t-11\ndata: live\n\n");
        // Draining with answered events unsent counts them.
        publish(&mut h, "a", "late");
        h.with(|ctx, _, now, _| c.drain(now, ctx));
        assert_eq!(h.metrics.shard(0).undelivered.get(), 1);
    }
}
