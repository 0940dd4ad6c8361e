//! What feeds an event stream: a [`Source`]. The connection core ([`crate::conn`]) owns the
//! HTTP lifecycle and the output path; a source only says when it next needs the clock
//! ([`Source::deadline`]), notes that its time came ([`Source::on_timeout`]) and encodes what is
//! due into the loop's scratch buffer when the socket can take it ([`Source::poll`]).
//!
//! Kinds:
//! - [`Source::Clock`]: the seed's timed stream, one frame per interval from the stream's start.
//! - [`Source::Topics`]: a hub subscription, a cursor into the loop's mirror of the history
//!   ([`crate::hub::LocalHub`]); everything after the cursor that matches its topics goes out
//!   in one write (up to [`BATCH_BYTES`]), a comment line when idle for the heartbeat.
//!
//! **Invariant:** no IO and no clock; a source keeps no bytes of its own (an unwritten tail is
//! the connection's), so an idle stream costs the size of this enum.

use crate::conn::{Ctx, Now};
use crate::hub::{Filter, Mark, ResetReason};
use crate::sse;

/// The most bytes of events one poll puts in the scratch for one subscriber.
pub const BATCH_BYTES: usize = 64 * 1024;

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
    /// The server's own figures (`/metrics/stream`): every sample after `cursor`, polled once
    /// a second.
    Figures { cursor: u64, next: u64, due: bool },
    /// A hub subscription: `cursor` is the last sequence number handed to the socket; a
    /// comment goes out when nothing did by `heartbeat_at`.
    Topics {
        cursor: u64,
        heartbeat_at: u64,
        filter: Filter,
        /// The heartbeat time passed: a comment goes out at the next poll if nothing else does.
        beat: bool,
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
            Source::Topics { heartbeat_at, .. } => *heartbeat_at,
            Source::Figures { next, .. } => *next,
        }
    }

    /// The figures stream: the samples kept so far at once, then each new one.
    pub fn figures(now: Now) -> Source {
        Source::Figures {
            cursor: 0,
            next: now.ms + 1_000,
            due: true,
        }
    }

    /// A hub subscription starting after `cursor`.
    pub fn topics(now: Now, cursor: u64, filter: Filter, heartbeat_ms: u64) -> Source {
        Source::Topics {
            cursor,
            heartbeat_at: now.ms + heartbeat_ms,
            filter,
            beat: false,
        }
    }

    /// The subscription's topics, for a hub stream.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            Source::Topics { filter, .. } => Some(filter),
            Source::Clock { .. } | Source::Figures { .. } => None,
        }
    }

    /// `n` of the `len` bytes [`poll`](Self::poll) produced were written. Returns how much of
    /// the scratch to keep for later: up to the end of the frame the write stopped in (at most
    /// one partial frame is kept; the events after it are read again from the history).
    pub fn on_written(&mut self, n: usize, len: usize, now: Now, ctx: &mut Ctx<'_>) -> usize {
        let Source::Topics { cursor, .. } = self else {
            return len;
        };
        let marks = &ctx.hub.marks;
        if marks.is_empty() {
            // A `reset` or a heartbeat: keep whatever is unwritten.
            return len;
        }
        let mut start = 0;
        let mut keep = n;
        let mut delivered = 0;
        for m in marks {
            if n <= start {
                // Not started: this frame and the ones after it are read again later.
                *cursor = m.seq - 1;
                break;
            }
            delivered += 1;
            ctx.shard
                .delivery_latency(now.us.saturating_sub(m.published_us));
            if n < m.end {
                // The write stopped in this frame: its tail is kept, and it is the last one
                // handed to the socket.
                keep = m.end;
                *cursor = m.seq;
                break;
            }
            start = m.end;
        }
        ctx.shard.deliveries.add(delivered);
        keep.min(len)
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
            Source::Figures { next, due, .. } => {
                if now.ms >= *next {
                    *next = now.ms + 1_000;
                    *due = !blocked;
                }
            }
            Source::Topics {
                heartbeat_at, beat, ..
            } => {
                if now.ms >= *heartbeat_at {
                    // The deadline never stays in the past (that would spin the loop while the
                    // socket cannot take the comment); the comment itself waits for a poll,
                    // and is pointless while output is still unwritten.
                    *heartbeat_at = now.ms + ctx.hub.hub.config().heartbeat_ms;
                    *beat = !blocked;
                }
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
            Source::Figures { cursor, due, .. } => {
                if !std::mem::take(due) {
                    return false;
                }
                *cursor = ctx.metrics.samples_after(*cursor, out);
                if out.is_empty() {
                    // Nothing new this second: a comment keeps proxies from timing out.
                    out.extend_from_slice(b":\n\n");
                }
                true
            }
            Source::Topics {
                cursor,
                heartbeat_at,
                filter,
                beat,
            } => {
                let hub = &mut *ctx.hub;
                let mut marks = std::mem::take(&mut hub.marks);
                marks.clear();
                if *cursor < hub.evicted() {
                    // Fell behind the retained history: say so, then go live.
                    let last = hub.hub.id(*cursor);
                    hub.encode_reset(out, ResetReason::Gap, &last);
                    ctx.shard.resets[ResetReason::Gap as usize].inc();
                    *cursor = hub.head();
                } else {
                    for ev in hub.after(*cursor) {
                        if out.len() >= BATCH_BYTES {
                            break;
                        }
                        if hub.matches(filter, ev) {
                            out.extend_from_slice(&ev.frame);
                            marks.push(Mark {
                                seq: ev.seq,
                                end: out.len(),
                                published_us: ev.published_us,
                            });
                        }
                        *cursor = ev.seq;
                    }
                    if out.is_empty() && *beat {
                        out.extend_from_slice(b":\n\n");
                    }
                }
                hub.marks = marks;
                if out.is_empty() {
                    return false;
                }
                *heartbeat_at = now.ms + hub.hub.config().heartbeat_ms;
                *beat = false;
                true
            }
        }
    }
}
