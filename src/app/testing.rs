//! A connection's surroundings without a loop or a socket, for unit tests, property tests and
//! the fuzz target: one constructor for the context, so a new field is one edit. Time is
//! synthetic ([`Env::advance`]); "the socket" takes everything (or what a test says).

use crate::app::routes::{self, App, Call, Peer};
use crate::app::static_files::StaticFiles;
use crate::core::conn::{Conn, Served};
use crate::core::ctx::{ConnConfig, Ctx, Now, Rng};
use crate::core::metrics::Metrics;
use crate::core::reply::{Answer, Completion, Later};
use crate::hub::history::{Hub, HubConfig, LocalHub};
use crate::util::date::Dates;
use crate::util::sys::ProcessStats;
use std::sync::Arc;

/// Everything a loop lends a connection, owned.
pub struct Env {
    pub cfg: ConnConfig,
    pub metrics: Metrics,
    pub app: App,
    pub dates: Dates,
    pub rng: Rng,
    pub now: Now,
    pub draining: bool,
    /// One loop's view of a hub whose loops are never woken (tests call `sync`).
    pub hub: LocalHub,
    /// Answers given later arrive here (see [`Env::complete`]).
    pub later: Later,
    pub completions: std::sync::mpsc::Receiver<Completion>,
    /// Streams that ended (what the loop would log).
    pub ended: Vec<crate::core::ctx::StreamEnd>,
    /// Requests answered with their final status (what the loop would log).
    pub answered: Vec<crate::core::ctx::Answered>,
    /// The loop's frame scratch.
    pub scratch: Vec<u8>,
}

impl Env {
    /// One loop, `max_streams` streams, the embedded page, fixed process figures, and a clock
    /// at 2026-11-23T19:09:41.321Z (monotonic 1 s).
    pub fn new(cfg: ConnConfig, max_streams: usize) -> Env {
        let (tx, completions) = std::sync::mpsc::channel();
        Env {
            later: Later::new(tx, Arc::new(|| {})),
            completions,
            cfg,
            metrics: Metrics::new(1, max_streams),
            app: App {
                files: StaticFiles::embedded(),
                process_stats: ProcessStats::default,
                publish_token: None,
                bridge: None,
                store: None,
                jwt: None,
                private_topics: Default::default(),
                cors_origins: Vec::new(),
                test_panic: false,
            },
            dates: Dates::new(),
            rng: Rng::new(7),
            now: Now {
                ms: 1_000,
                unix_ms: 1_795_460_982_321,
                us: 1_000_000,
            },
            draining: false,
            hub: LocalHub::new(
                Arc::new(Hub::new(
                    HubConfig::default(),
                    "t".into(),
                    1,
                    Box::new(|_| {}),
                )),
                0,
            ),
            scratch: Vec::with_capacity(256),
            ended: Vec::new(),
            answered: Vec::new(),
        }
    }

    /// Runs `f` with the context and what the loop lends the application.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Ctx<'_>, Lent<'_>, Now, &mut Vec<u8>) -> R) -> R {
        let mut ctx = Ctx {
            cfg: &self.cfg,
            metrics: &self.metrics,
            shard: self.metrics.shard(0),
            dates: &mut self.dates,
            rng: &mut self.rng,
            hub: &mut self.hub,
            ended: &mut self.ended,
            answered: &mut self.answered,
            draining: self.draining,
        };
        let lent = Lent {
            app: &self.app,
            later: &self.later,
        };
        f(&mut ctx, lent, self.now, &mut self.scratch)
    }

    /// A new connection at the current time.
    pub fn conn(&self) -> Conn {
        Conn::new(self.now, &self.cfg)
    }

    /// Feeds `bytes` and lets the connection answer what became complete.
    pub fn input(&mut self, c: &mut Conn, bytes: &[u8]) {
        self.with(|ctx, app, now, _| {
            c.handle_input(bytes, now, ctx);
            let _ = serve(c, ctx, app, now);
        });
    }

    /// Writes everything the connection has to write, as a socket with room for all of it
    /// would, answering pipelined requests as their turn comes; returns the bytes.
    pub fn flush(&mut self, c: &mut Conn) -> Vec<u8> {
        self.write_at_most(c, usize::MAX)
    }

    /// Like [`flush`](Self::flush), but the socket takes at most `room` bytes in all.
    pub fn write_at_most(&mut self, c: &mut Conn, mut room: usize) -> Vec<u8> {
        self.with(|ctx, app, now, scratch| {
            let mut wire = Vec::new();
            while let Some([a, b]) = c.poll_transmit(now, ctx, scratch) {
                let n = (a.len() + b.len()).min(room);
                let take_a = n.min(a.len());
                wire.extend_from_slice(&a[..take_a]);
                wire.extend_from_slice(&b[..n - take_a]);
                room -= n;
                c.on_sent(n, scratch, now, ctx);
                if room == 0 || c.is_closed() {
                    break;
                }
                let _ = serve(c, ctx, app, now);
            }
            wire
        })
    }

    /// Hands every answer given later to `c` (all are for it in these tests).
    pub fn complete(&mut self, c: &mut Conn) {
        while let Ok(done) = self.completions.try_recv() {
            self.with(|ctx, _, now, _| match done.answer {
                Answer::Reply(reply) => c.complete(done.ticket, reply, now, ctx),
                Answer::Page(page) => c.page(done.ticket, page, now, ctx),
            });
        }
    }

    /// Moves the clocks forward.
    pub fn advance(&mut self, ms: u64) {
        self.now.ms += ms;
        self.now.unix_ms += ms as i64;
        self.now.us += ms * 1000;
    }

    /// Fires the connection's timer if due, then writes what that produced.
    pub fn tick(&mut self, c: &mut Conn) -> Vec<u8> {
        if c.timeout().is_some_and(|t| t <= self.now.ms) {
            self.with(|ctx, _, now, _| c.handle_timeout(now, ctx));
        }
        self.flush(c)
    }
}

/// What the loop lends the application besides the connection's context: the application
/// itself and where answers given later go.
#[derive(Clone, Copy)]
pub struct Lent<'a> {
    pub app: &'a App,
    pub later: &'a Later,
}

/// The loop's request step: route what is complete (what the connection became is for the
/// caller to register, as the loop does).
pub fn serve<'c>(c: &'c mut Conn, ctx: &mut Ctx<'_>, lent: Lent<'_>, now: Now) -> Served<'c> {
    c.serve(now, ctx, |req, body, ctx| {
        let call = Call {
            app: lent.app,
            req,
            peer: Peer {
                loopback: true,
                key: 0,
                later: lent.later,
            },
            now,
        };
        routes::route(call, body, ctx)
    })
}
