//! What feeds an event stream: a [`Source`]. The connection core ([`crate::conn`]) owns the
//! HTTP lifecycle and the output path; a source only says when it next needs the clock
//! ([`Source::deadline`]), notes that its time came ([`Source::on_timeout`]) and encodes what is
//! due into the loop's scratch buffer when the socket can take it ([`Source::poll`]).
//!
//! Kinds:
//! - [`Source::Clock`]: the seed's timed stream, one frame per interval from the stream's start.
//!
//! **Invariant:** no IO and no clock; a source keeps no bytes of its own (an unwritten tail is
//! the connection's), so an idle stream costs the size of this enum.

use crate::conn::{Ctx, Now};
use crate::sse;

/// The stream kinds. See the module docs.
#[derive(Debug)]
pub enum Source {
    /// The seed's clock: frame `next_id` is due at `next_tick`; `due` once the tick passed and
    /// the frame has not been encoded yet.
    Clock {
        next_tick: u64,
        next_id: u64,
        due: bool,
    },
}

impl Source {
    /// The seed's clock stream, starting one interval from `now`, at the id after
    /// `last_event_id` (see [`sse::first_id`]).
    pub fn clock(now: Now, interval_ms: u64, last_event_id: Option<&[u8]>) -> Source {
        Source::Clock {
            next_tick: now.ms + interval_ms,
            next_id: sse::first_id(last_event_id),
            due: false,
        }
    }

    /// When the source next needs [`on_timeout`](Self::on_timeout).
    pub fn deadline(&self) -> u64 {
        match self {
            Source::Clock { next_tick, .. } => *next_tick,
        }
    }

    /// The deadline passed. `blocked`: the previous output is still unwritten, so nothing new
    /// may be queued (at most one partial frame is pending per stream).
    pub fn on_timeout(&mut self, now: Now, blocked: bool, ctx: &mut Ctx<'_>) {
        match self {
            Source::Clock {
                next_tick, due: d, ..
            } => {
                if now.ms < *next_tick {
                    return;
                }
                let interval = ctx.cfg.interval_ms.max(1);
                let missed = (now.ms - *next_tick) / interval + 1;
                *next_tick += missed * interval;
                // Ticks the loop was too late for are skipped, never sent in a burst; a tick
                // that finds the client has not read the previous frame is dropped too.
                let mut skipped = missed - 1;
                if blocked || *d {
                    skipped += 1;
                } else {
                    *d = true;
                }
                ctx.shard.frames_skipped.add(skipped);
            }
        }
    }

    /// Appends what is due to `out` (the loop's scratch); returns whether anything was.
    pub fn poll(&mut self, now: Now, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) -> bool {
        match self {
            Source::Clock { next_id, due, .. } => {
                if !*due {
                    return false;
                }
                *due = false;
                sse::encode_frame(out, *next_id, ctx.dates.iso(now.unix_ms));
                // Saturating: a resumed id near the top of the range stays there rather than
                // wrapping to 0 or overflowing.
                *next_id = next_id.saturating_add(1);
                ctx.shard.frames_sent.inc();
                true
            }
        }
    }
}
