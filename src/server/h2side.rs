//! The HTTP/2 connections of a loop, beside its slab: each h2 connection's engine
//! ([`H2Link`]) and, for each of its streams, the slab slot that serves it. No socket here:
//! the loop (`server/loops.rs`) reads and writes; this file moves a stream's `Conn` output into
//! its connection's engine ([`write_stream`]).
//!
//! **One slab slot per h2 stream.** A stream's slot holds a [`Conn`] like any HTTP/1.1
//! connection's (no socket: its transport is its connection's engine), so the topic index, the
//! timer wheel, presence, answers given later and fan-out keep keying subscribers by slab key,
//! unchanged. The connection's slot holds the socket; its engine lives here, indexed by its
//! slab key, so a plain HTTP/1.1 slot pays nothing for h2 (as for TLS, `Sessions`).

use crate::core::conn::Conn;
use crate::core::ctx::{Ctx, Now};
use crate::core::h2::H2;
use crate::core::h2map::ResponseHead;
use crate::wire::h2::frame::StreamEnd;
use std::net::SocketAddr;

/// DATA a stream may have queued in its engine, unsent, before its `Conn` is told the
/// transport took no more (as a socket's send buffer would): what bounds a stream's memory
/// in the engine, and what makes a stream whose client does not read meet the `Conn`'s own
/// stall rule.
pub const STREAM_ROOM: usize = 16 * 1024;

/// One stream of an h2 connection, served by the slab slot `key`.
#[derive(Debug)]
pub struct Sub {
    pub key: u32,
    pub id: u32,
    /// The request was `HEAD`: the answer has no body whatever its `Content-Length`.
    pub head_only: bool,
    /// The response head went out as HEADERS.
    pub head_sent: bool,
    /// Body bytes still to come when the head said how many (`u64::MAX`: until the `Conn`
    /// ends it).
    pub remaining: u64,
    /// END_STREAM is queued: the stream is done on our side.
    pub ended: bool,
    /// Its `Conn` has output the engine had no room for: driven again once there is.
    pub waiting: bool,
}

/// One h2 connection: its engine and streams, and its socket's unwritten bytes.
pub struct H2Link {
    pub engine: H2,
    pub subs: Vec<Sub>,
    /// The peer's address, for the log lines of its streams.
    pub peer: Option<SocketAddr>,
    /// Plain transport: bytes the socket did not take, from `out_at` on (TLS keeps its
    /// records in its session instead).
    pub out: Vec<u8>,
    pub out_at: usize,
    /// Closed if the socket takes none of the pending bytes before this.
    pub stall_deadline: u64,
    /// With no stream open: closed (GOAWAY) at this time.
    pub idle_deadline: u64,
    /// The write side is shut: reading (and discarding) until the client's FIN or this.
    pub linger_deadline: Option<u64>,
    /// Some stream is [`Sub::waiting`] (a quick test before looking at each).
    pub blocked: bool,
    /// In the loop's list of connections to flush.
    pub dirty: bool,
    /// A first request arrived (the idle timeout replaces the head timeout).
    pub served: bool,
}

impl H2Link {
    pub fn new(engine: H2, peer: Option<SocketAddr>, idle_deadline: u64) -> Box<H2Link> {
        Box::new(H2Link {
            engine,
            subs: Vec::new(),
            peer,
            out: Vec::new(),
            out_at: 0,
            stall_deadline: 0,
            idle_deadline,
            linger_deadline: None,
            blocked: false,
            dirty: false,
            served: false,
        })
    }

    /// Unwritten bytes of the plain transport.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_at..]
    }

    /// `n` bytes of [`pending`](Self::pending) went out.
    pub fn on_written(&mut self, n: usize) {
        self.out_at += n;
        if self.out_at >= self.out.len() {
            self.out = Vec::new();
            self.out_at = 0;
        }
    }

    pub fn sub(&self, key: usize) -> Option<&Sub> {
        self.subs.iter().find(|s| s.key as usize == key)
    }

    /// The streams waiting for room in the engine that have some now (no longer marked
    /// waiting: a stream that still cannot hand everything over is marked again).
    pub fn take_unblocked(&mut self) -> Vec<usize> {
        if !self.blocked {
            return Vec::new();
        }
        let mut still = false;
        let mut ready = Vec::new();
        for s in self.subs.iter_mut().filter(|s| s.waiting) {
            match self.engine.queued(s.id) {
                Some(q) if q >= STREAM_ROOM => still = true,
                _ => {
                    s.waiting = false;
                    ready.push(s.key as usize);
                }
            }
        }
        self.blocked = still;
        ready
    }

    pub fn key_of(&self, id: u32) -> Option<usize> {
        self.subs
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.key as usize)
    }
}

/// A slab key's h2 role.
enum Entry {
    Conn(Box<H2Link>),
    Stream { parent: u32 },
}

/// The loop's h2 connections and streams, by slab key: empty until the loop meets one.
#[derive(Default)]
pub struct H2Table(Vec<Option<Entry>>);

impl H2Table {
    fn set(&mut self, k: usize, e: Entry) {
        if self.0.len() <= k {
            self.0.resize_with(k + 1, || None);
        }
        self.0[k] = Some(e);
    }

    pub fn insert_conn(&mut self, k: usize, link: Box<H2Link>) {
        self.set(k, Entry::Conn(link));
    }

    pub fn insert_stream(&mut self, k: usize, parent: usize) {
        self.set(
            k,
            Entry::Stream {
                parent: parent as u32,
            },
        );
    }

    pub fn remove(&mut self, k: usize) -> Option<Box<H2Link>> {
        match self.0.get_mut(k).and_then(Option::take) {
            Some(Entry::Conn(link)) => Some(link),
            _ => None,
        }
    }

    /// The connection at slab key `k`.
    pub fn link(&mut self, k: usize) -> Option<&mut H2Link> {
        match self.0.get_mut(k) {
            Some(Some(Entry::Conn(link))) => Some(link),
            _ => None,
        }
    }

    /// The connection a stream's slot belongs to.
    pub fn parent(&self, k: usize) -> Option<usize> {
        match self.0.get(k) {
            Some(Some(Entry::Stream { parent })) => Some(*parent as usize),
            _ => None,
        }
    }
}

/// Moves what the stream `key`'s `Conn` has to write into its engine, as a socket write would:
/// the response head becomes HEADERS (its hop-by-hop fields dropped), the rest DATA, at most
/// [`STREAM_ROOM`] queued; what the engine has no room for stays with the `Conn` (one partial
/// frame, its stall deadline, skipped ticks), which is driven again once DATA went out.
/// END_STREAM goes with the last byte of a body of known length. Returns whether anything
/// moved.
pub fn write_stream(
    link: &mut H2Link,
    key: usize,
    conn: &mut Conn,
    ctx: &mut Ctx<'_>,
    scratch: &mut Vec<u8>,
    now: Now,
) -> bool {
    let Some(i) = link.subs.iter().position(|s| s.key as usize == key) else {
        return false;
    };
    let mut progress = false;
    loop {
        let sub = &mut link.subs[i];
        if sub.ended {
            break;
        }
        let Some(queued) = link.engine.queued(sub.id) else {
            // The engine has forgotten the stream (reset): its `Conn` is ended by the loop.
            break;
        };
        let room = STREAM_ROOM.saturating_sub(queued);
        if room == 0 {
            sub.waiting = true;
            link.blocked = true;
            break;
        }
        let Some([a, b]) = conn.poll_transmit(now, ctx, scratch) else {
            break;
        };
        if !sub.head_sent {
            // A `Conn` hands its head whole (an outbox's first slice, never split before
            // anything of it was written).
            let joined;
            let head = match ResponseHead::parse(a) {
                Some(h) => h,
                None => {
                    joined = [a, b].concat();
                    match ResponseHead::parse(&joined) {
                        Some(h) => h,
                        None => {
                            conn.on_sent(0, scratch, now, ctx);
                            conn.abort(ctx);
                            break;
                        }
                    }
                }
            };
            let body = head.body_len(sub.head_only);
            let fields: Vec<(&str, &[u8])> = head
                .fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let end = if body == Some(0) {
                StreamEnd::End
            } else {
                StreamEnd::Open
            };
            link.engine.send_headers(sub.id, head.status, &fields, end);
            sub.head_sent = true;
            sub.remaining = body.unwrap_or(u64::MAX);
            sub.ended = end == StreamEnd::End;
            // A body the head says is empty is not sent (a `HEAD`'s `Conn` sends none).
            let n = if sub.ended {
                a.len() + b.len()
            } else {
                head.len
            };
            conn.on_sent(n, scratch, now, ctx);
            progress = true;
            continue;
        }
        let len = a.len() + b.len();
        let n = len
            .min(room)
            .min(sub.remaining.min(usize::MAX as u64) as usize);
        let last = sub.remaining != u64::MAX && n as u64 == sub.remaining;
        if n == 0 {
            conn.on_sent(0, scratch, now, ctx);
            break;
        }
        let in_a = n.min(a.len());
        let fin = |yes: bool| if yes { StreamEnd::End } else { StreamEnd::Open };
        if in_a > 0 {
            link.engine
                .send_data(sub.id, &a[..in_a], fin(last && n == in_a));
        }
        if n > in_a {
            link.engine.send_data(sub.id, &b[..n - in_a], fin(last));
        }
        if sub.remaining != u64::MAX {
            sub.remaining -= n as u64;
        }
        sub.ended = last;
        conn.on_sent(n, scratch, now, ctx);
        progress |= n > 0;
        if n < len && !last {
            link.subs[i].waiting = true;
            link.blocked = true;
            break;
        }
    }
    progress
}
