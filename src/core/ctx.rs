//! What a connection is driven with, lent by its loop for one call: the time ([`Now`]), its
//! limits ([`ConnConfig`]), its randomness ([`Rng`]), the loop's state it may touch ([`Ctx`]),
//! and what it reports back for the operator log ([`StreamEnd`], [`Answered`]).
//!
//! A leaf of the connection core: the connection ([`crate::core::conn`]) and the stream
//! sources ([`crate::core::stream`]) both take a [`Ctx`], and nothing here names a reply or a
//! source, so neither imports the other through it.
//!
//! **Invariant:** no IO and no clock: [`Now`] is read by the loop and handed in.

use crate::core::metrics::{Metrics, Shard};
use crate::hub::history::LocalHub;
use crate::util::date::Dates;
use crate::wire::http::{Limits, Method, Request, Status};

/// The timing and size knobs a connection obeys (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    /// Time between two frames of the seed's clock stream.
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
    pub limits: Limits,
    /// The largest request body read (413 past it, decided from `Content-Length`).
    pub max_body: usize,
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
            limits: Limits::default(),
            max_body: 1 << 20,
        }
    }
}

/// Monotonic milliseconds (for deadlines) and wall-clock milliseconds (for dates), read once by
/// the loop and handed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
    pub unix_ms: i64,
    /// Monotonic microseconds on the same clock as `ms` (for latency figures).
    pub us: u64,
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

    /// A reconnection delay spread uniformly over `[mean/2, mean*3/2)`.
    pub fn jitter(&mut self, mean_ms: u64) -> u64 {
        let base = mean_ms.max(2);
        base / 2 + self.below(base)
    }
}

/// Why a stream ended (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    Error,
    Stalled,
    Timeout,
    Shutdown,
    TokenExpired,
}

impl End {
    /// The word the log uses.
    pub fn as_str(self) -> &'static str {
        match self {
            End::ClientClosed => "client-closed",
            End::Error => "write-error",
            End::Stalled => "stalled",
            End::Timeout => "timeout",
            End::Shutdown => "shutdown",
            End::TokenExpired => "token-expired",
        }
    }
}

/// A stream that just ended, for the loop to log (the loop adds who and how long).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    pub kind: &'static str,
    pub why: End,
    pub opened_s: u32,
    pub frames: u64,
}

/// A request as the log names it: its method and its path (never the query, which may carry
/// a token). For a head that could not be parsed, what its request line seemed to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Box<str>,
    pub path: Box<str>,
}

impl RequestLine {
    pub(crate) fn of(req: &Request<'_>) -> RequestLine {
        let method = match req.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        };
        RequestLine {
            method: method.into(),
            path: req.path.into(),
        }
    }

    /// The first two words of a head that was refused (at most 16 and 256 bytes, the path
    /// without its query), `-` for what is missing; the log quotes whatever is odd in them.
    pub(crate) fn guess(buf: &[u8]) -> RequestLine {
        let start = buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(buf.len());
        let line = &buf[start..];
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let word = |w: Option<&[u8]>, max: usize| -> Box<str> {
            match w {
                Some(w) => String::from_utf8_lossy(&w[..w.len().min(max)])
                    .trim_end_matches('\r')
                    .into(),
                None => "-".into(),
            }
        };
        let method = word(words.next(), 16);
        let path = words
            .next()
            .map(|t| &t[..t.iter().position(|&b| b == b'?').unwrap_or(t.len())]);
        RequestLine {
            method,
            path: word(path, 256),
        }
    }
}

/// A request answered with its final status (for the loop's log line). A request that
/// became a stream is not here: the stream's own line says how it went when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub line: RequestLine,
    pub status: Status,
    /// Body bytes sent.
    pub bytes: u64,
}

/// What a connection needs from its event loop, lent for the duration of one call. Built in
/// one place by the loop (`server::loops::ctx`) and in one by [`crate::app::testing::Env`] for tests.
pub struct Ctx<'a> {
    pub cfg: &'a ConnConfig,
    pub metrics: &'a Metrics,
    pub shard: &'a Shard,
    pub dates: &'a mut Dates,
    pub rng: &'a mut Rng,
    /// The loop's view of the hub (what hub streams read from).
    pub hub: &'a mut LocalHub,
    /// Streams that ended during this call, for the loop's log.
    pub ended: &'a mut Vec<StreamEnd>,
    /// Requests answered during this call with their final status, for the loop's log.
    pub answered: &'a mut Vec<Answered>,
    /// The server is shutting down: no new streams, every answer closes.
    pub draining: bool,
}
