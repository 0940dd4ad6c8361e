//! What feeds an event stream: a [`Source`]. The connection core ([`crate::core::conn`]) owns the
//! HTTP lifecycle and the output path; a source only says when it next needs the clock
//! ([`Source::deadline`]), notes that its time came ([`Source::on_timeout`]) and encodes what is
//! due into the loop's scratch buffer when the socket can take it ([`Source::poll`]).
//!
//! Kinds:
//! - [`Source::Clock`]: the seed's timed stream, one frame per interval from the stream's start.
//! - [`Source::Topics`]: a hub subscription, a cursor into the loop's mirror of the history
//!   ([`crate::hub::history::LocalHub`]); everything after the cursor that matches its topics goes out
//!   in one write (up to [`BATCH_BYTES`]), a comment line when idle for the heartbeat.
//! - [`Source::Figures`]: the server's own figures (`GET /metrics/stream`), every sample after
//!   its cursor, polled once a second.
//! - [`Source::Replay`]: a hub subscription whose first part is read back from the shared store
//!   (a resume older than this loop's history, with `--redis`): a cursor into the store, one
//!   page asked for at a time and only once the previous one is written; it becomes the
//!   `Topics` source it carries when the store's part is sent.
//!
//! **Invariant:** no IO and no clock; a source keeps no bytes of its own (an unwritten tail is
//! the connection's), so an idle stream costs the size of this enum.

use crate::core::body::{Body, HeldBytes};
use crate::core::ctx::{Ctx, Now};
use crate::hub::history::{EventScope, Filter, Mark, ResetReason, StorePage};
use crate::wire::frames;
use std::sync::Arc;

/// `ms` rounded up to whole seconds, saturating in a `u32` (136 years of loop clock).
fn seconds(ms: u64) -> u32 {
    ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32
}

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
        /// Frames sent (for the log).
        sent: u32,
    },
    /// The server's own figures (`/metrics/stream`): every sample after `cursor`, polled once
    /// a second.
    Figures { cursor: u64, next: u64, due: bool },
    /// A hub subscription: `cursor` is the last sequence number handed to the socket; a
    /// comment goes out when nothing did by `heartbeat_s` (whole seconds of the loop clock:
    /// a heartbeat needs no finer time, and every subscriber is smaller for it).
    Topics {
        cursor: u64,
        heartbeat_s: u32,
        filter: Filter,
        /// Which subscribed topics' private events the subscriber's token may read.
        private: u32,
        /// When the subscriber's token expires, in whole seconds of the loop clock (0: never).
        expires_s: u32,
        /// The heartbeat time passed: a comment goes out at the next poll if nothing else does.
        beat: bool,
        /// `markPrivate=1`: a `private` event naming each private event's id goes just
        /// before it.
        mark: bool,
        /// Events sent, saturating (for the log; 16 bits keep every subscriber within 40
        /// bytes).
        sent: u16,
    },
    /// A hub subscription replaying the shared store first (boxed: rare, and every other stream
    /// stays small).
    Replay(Box<Replay>),
}

// What ARCHITECTURE.md says a subscriber costs: a source is 40 bytes at most (the `Topics`
// variant is the largest; a replay is boxed so that it never makes every stream bigger).
const _: () = assert!(std::mem::size_of::<Source>() <= 40);

/// The store's part of a subscription (see [`Source::Replay`]).
#[derive(Debug)]
pub struct Replay {
    /// The `Topics` source it becomes; its cursor is set when it does. Its topics are
    /// registered from the start, so the topic ids it holds cannot be reused meanwhile.
    live: Source,
    /// The last store position sent (a sequence number), and where the store's part ends (this
    /// loop's `evicted` when asked; moved on if the history dropped more meanwhile).
    after: u64,
    until: u64,
    /// The ticket of the page asked for, if one is.
    asked: Option<u32>,
    /// Entries to ask for in the next page.
    count: u32,
    /// From the store's start (`earliest`): the first page follows whatever it begins with
    /// (what the store trimmed before is not retained, so no `reset` says it was missed).
    whole: bool,
    /// The publisher id the replay resumes after, until the first page says which entry has
    /// it (see [`crate::hub::history::Start::StoreId`]); `after` means nothing until then.
    resolve: Option<Box<str>>,
    /// A resume whose answer names the id it resumes after (Mercure's `Last-Event-ID`
    /// response field), which only the first page can tell: the head waits here until then.
    anchor: Option<Box<Anchor>>,
}

/// The answer's head of a resume from the shared store, held until the first page (see
/// [`Replay::anchor`]), and the token's selectors that decide whether the entry it resumes
/// after may be named.
#[derive(Debug)]
struct Anchor {
    /// The finished head, once the connection handed it over ([`Source::hold_head`]).
    head: Option<Vec<u8>>,
    claims: Option<crate::hub::jwt::Selectors>,
}

impl Anchor {
    /// The head with its `Last-Event-ID`: the id of the entry the page was read after, if the
    /// page follows it directly and this subscriber may read it; else [`EARLIEST`] (the
    /// store lost it, no entry has the publisher id, Redis did not answer, or a private
    /// entry whose id the field must not disclose), as a resume from memory says.
    ///
    /// [`EARLIEST`]: crate::hub::history::EARLIEST
    fn release(self, page: Option<&StorePage>) -> Vec<u8> {
        let readable = |p: &crate::hub::publish::Publish| {
            !p.topics.is_empty()
                && (!p.private
                    || self
                        .claims
                        .as_ref()
                        .is_some_and(|c| p.topics.iter().any(|t| c.matches(t))))
        };
        let id = match page.filter(|p| p.follows).and_then(|p| p.resumed.as_ref()) {
            Some((id, p)) if readable(p) => p.id.as_deref().unwrap_or(id),
            _ => crate::hub::history::EARLIEST,
        };
        let mut head = self.head.unwrap_or_default();
        if !head.is_empty() {
            crate::wire::head::insert_field(&mut head, "Last-Event-ID", id);
        }
        head
    }
}

/// What a replaying stream asks the shared store for: entries in `(after, until]`, at most
/// `count`, answered under `ticket`; with `after_id`, after the entry that has that
/// publisher id instead (and up to it at least).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub ticket: u32,
    pub after: u64,
    pub until: u64,
    pub count: u32,
    pub after_id: Option<Box<str>>,
}

/// What a hub subscription stream starts from (see [`Source::topics`]).
#[derive(Debug)]
pub struct Subscription {
    /// Events after this sequence number are its.
    pub cursor: u64,
    /// Its topics, and which of their private events it may read (as in [`Filter`]).
    pub filter: Filter,
    pub private: u32,
    /// A heartbeat comment after this long without a frame.
    pub heartbeat_ms: u64,
    /// When it ends on the loop clock (a token's expiry), if ever.
    pub expires_ms: Option<u64>,
    /// Each private event is preceded by its marker (`markPrivate=1`, see
    /// [`crate::hub::parse::PRIVATE_MARK_TYPE`]).
    pub mark_private: bool,
}

/// Whether the connection's previous output has all gone out when a stream's deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Previous {
    Written,
    Unwritten,
}

impl Source {
    /// The seed's clock stream, starting one interval from `now`, at the id after
    /// `last_event_id` (see [`frames::first_id`]).
    pub fn clock(now: Now, interval_ms: u64, last_event_id: Option<&[u8]>) -> Source {
        Source::Clock {
            next_tick: now.ms + interval_ms,
            next_id: frames::first_id(last_event_id),
            due: false,
            sent: 0,
        }
    }

    /// When the source next needs [`on_timeout`](Self::on_timeout).
    pub fn deadline(&self) -> u64 {
        match self {
            Source::Clock { next_tick, .. } => *next_tick,
            Source::Topics {
                heartbeat_s,
                expires_s,
                ..
            } if *expires_s > 0 => u64::from((*heartbeat_s).min(*expires_s)) * 1000,
            Source::Topics { heartbeat_s, .. } => u64::from(*heartbeat_s) * 1000,
            Source::Replay(r) => r.live.deadline(),
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

    /// A hub subscription (see [`Subscription`]).
    pub fn topics(now: Now, sub: Subscription) -> Source {
        Source::Topics {
            cursor: sub.cursor,
            heartbeat_s: seconds(now.ms + sub.heartbeat_ms),
            filter: sub.filter,
            private: sub.private,
            expires_s: sub.expires_ms.map_or(0, |ms| seconds(ms).max(1)),
            beat: false,
            mark: sub.mark_private,
            sent: 0,
        }
    }

    /// A hub subscription that first replays the shared store's entries in `(after, until]`,
    /// then goes on as `live` (a [`Source::topics`]).
    pub fn replay(live: Source, after: u64, until: u64) -> Source {
        Source::Replay(Box::new(Replay {
            live,
            after,
            until,
            asked: None,
            count: 1,
            whole: false,
            resolve: None,
            anchor: None,
        }))
    }

    /// A replay whose answer names the id it resumes after, from its first page (see
    /// `Replay::anchor`); `claims` are the subscriber's token's selectors.
    pub fn naming_anchor(mut self, claims: Option<&crate::hub::jwt::Selectors>) -> Source {
        if let Source::Replay(r) = &mut self {
            r.anchor = Some(Box::new(Anchor {
                head: None,
                claims: claims.cloned(),
            }));
        }
        self
    }

    /// The connection hands over the answer's finished head: a replay naming its anchor keeps
    /// it until its first page (nothing is written before it meanwhile) and returns `None`;
    /// any other source gives it back, to be written now.
    pub fn hold_head(&mut self, head: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Source::Replay(r) => match r.anchor.as_deref_mut() {
                Some(a) if a.head.is_none() => {
                    a.head = Some(head);
                    None
                }
                _ => Some(head),
            },
            _ => Some(head),
        }
    }

    /// A head still held (the stream ends, or a heartbeat is due, before the first page):
    /// released now, naming no id ([`EARLIEST`](crate::hub::history::EARLIEST)).
    pub fn release_head(&mut self) -> Option<Vec<u8>> {
        let Source::Replay(r) = self else {
            return None;
        };
        r.anchor.take().map(|a| a.release(None))
    }

    /// [`replay`](Self::replay) after the entry whose publisher id is `id`, which the first
    /// page finds (see [`crate::hub::history::Start::StoreId`]).
    pub fn replay_after_id(live: Source, id: Box<str>, until: u64) -> Source {
        let mut s = Source::replay(live, until, until);
        if let Source::Replay(r) = &mut s {
            r.resolve = Some(id);
        }
        s
    }

    /// A replay of everything the shared store holds up to `until` (Mercure's `earliest`),
    /// then `live`.
    pub fn replay_all(live: Source, until: u64) -> Source {
        let mut source = Source::replay(live, 0, until);
        if let Source::Replay(r) = &mut source {
            r.whole = true;
        }
        source
    }

    /// What kind of stream this is, as the log names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Clock { .. } => "clock",
            Source::Figures { .. } => "figures",
            Source::Topics { .. } | Source::Replay(_) => "topics",
        }
    }

    /// Frames or events sent so far (a topic stream's count saturates at 65,535).
    pub fn sent(&self) -> u64 {
        match self {
            Source::Clock { sent, .. } => u64::from(*sent),
            Source::Topics { sent, .. } => u64::from(*sent),
            Source::Replay(r) => r.live.sent(),
            Source::Figures { .. } => 0,
        }
    }

    /// The subscription's topics, for a hub stream.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            Source::Topics { filter, .. } => Some(filter),
            Source::Replay(r) => r.live.filter(),
            Source::Clock { .. } | Source::Figures { .. } => None,
        }
    }

    /// A replay's next page, if it needs one and none is asked for yet; `ticket` names it.
    pub fn page_request(&mut self, ticket: impl FnOnce() -> u32) -> Option<PageRequest> {
        let Source::Replay(r) = self else {
            return None;
        };
        if r.asked.is_some() {
            return None;
        }
        let ticket = ticket();
        r.asked = Some(ticket);
        Some(PageRequest {
            ticket,
            after: r.after,
            until: r.until,
            count: r.count,
            after_id: r.resolve.clone(),
        })
    }

    /// A page of the shared store arrived for a replay: the frames of its entries this
    /// subscription may read (the hub's one visibility rule), to write before anything else,
    /// and the cursor moved past them. A page that does not follow the cursor (the store lost
    /// entries), or no page at all (Redis unreachable), gives `reset` instead and the stream
    /// goes live from the newest event, as for a gap in the local history. Once the store's part
    /// is sent, the source becomes its live `Topics` source. `None`: not this stream's page.
    pub fn on_page(
        &mut self,
        ticket: u32,
        page: Result<StorePage, String>,
        ctx: &mut Ctx<'_>,
    ) -> Option<Body> {
        let Source::Replay(r) = self else {
            return None;
        };
        if r.asked != Some(ticket) {
            return None;
        }
        r.asked = None;
        // A held head goes first, with the id this page says the replay resumes after.
        let mut out = match r.anchor.take() {
            Some(a) => a.release(page.as_ref().ok().filter(|p| {
                // A publisher id no entry has: not the page's position either.
                r.resolve.is_none() || p.from.is_some()
            })),
            None => Vec::new(),
        };
        // From the store's start, until an entry is read: no position to check yet.
        let whole = r.whole && r.after == 0;
        if let Some(id) = r.resolve.take() {
            // The first page says where the publisher id is; no entry has it: as for an id
            // unknown here, `reset`.
            match page
                .as_ref()
                .ok()
                .and_then(|p| p.from.as_deref())
                .and_then(|f| ctx.hub.hub.parse_id(f.as_bytes()))
            {
                Some(seq) => {
                    r.after = seq;
                    r.until = r.until.max(seq);
                }
                None => {
                    ctx.hub.encode_reset(&mut out, ResetReason::UnknownId, &id);
                    return Some(self.go_live_after_reset(out, ctx));
                }
            }
        }
        let page = match page {
            Ok(page) if page.follows || whole => page,
            Ok(page) => {
                let last = ctx.hub.hub.id(r.after);
                ctx.hub
                    .encode_reset_oldest(&mut out, ResetReason::Gap, &last, page.oldest);
                return Some(self.go_live_after_reset(out, ctx));
            }
            Err(_) => {
                let last = ctx.hub.hub.id(r.after);
                ctx.hub.encode_reset(&mut out, ResetReason::Gap, &last);
                return Some(self.go_live_after_reset(out, ctx));
            }
        };
        let hub = &*ctx.hub;
        let Source::Topics {
            filter,
            private,
            sent,
            mark,
            ..
        } = &mut r.live
        else {
            return None;
        };
        let mut delivered = 0u64;
        for (id, p) in &page.entries {
            let Some(seq) = hub.hub.parse_id(id.as_bytes()) else {
                continue;
            };
            if seq <= r.after || seq > r.until {
                continue;
            }
            if p.topics.is_empty() {
                // The store's mark that it was deleted and started again: what this replay
                // read before it and what follows are from two stores. Before anything of a
                // replay from the store's start, it marks that start, where nothing was missed.
                if !(whole && r.after == 0) {
                    out.extend_from_slice(&hub.hub.store_reset_frame(r.after, seq));
                }
            } else if hub.visible(
                filter,
                *private,
                EventScope {
                    topics: &p.topics,
                    private: p.private,
                },
            ) {
                if *mark && p.private {
                    encode_private_mark(&mut out, |o| {
                        o.extend_from_slice(p.id.as_deref().unwrap_or(id).as_bytes())
                    });
                }
                out.extend_from_slice(&hub.hub.encode(seq, p));
                delivered += 1;
            }
            r.after = seq;
        }
        // Past entries that could not be read too (skipped, and counted by the bridge).
        if let Some(last) = page
            .last
            .as_deref()
            .and_then(|l| hub.hub.parse_id(l.as_bytes()))
        {
            r.after = r.after.max(last.min(r.until));
        }
        *sent = sent.saturating_add(delivered.min(u64::from(u16::MAX)) as u16);
        ctx.shard.deliveries.add(delivered);
        r.count = page.next_count.max(1);
        // `r.after` stays the last entry read (or where the replay began): the next page checks
        // that it is still in the store, so it must be a real entry. `r.until` may be none (the
        // history's start loaded from the store is its first entry's id minus one).
        if page.end || r.after >= r.until {
            let evicted = hub.evicted();
            if r.after < evicted {
                // The history dropped more while the store's part was read (read on to there),
                // or the range ended at a position no entry has, before the history's first
                // event: read on to that event, an entry the store has, so that the stream goes
                // live at a real entry (a later replay from it finds it).
                let until = match hub.after(r.until.max(evicted)).next() {
                    Some(first) if evicted <= r.until => first.seq,
                    _ => r.until.max(evicted),
                };
                if until > r.until {
                    r.until = until;
                } else {
                    // Nothing here to read on to (the history holds no event after the range):
                    // live from the range's end.
                    r.after = until;
                }
            }
            if r.after >= evicted {
                let after = r.after;
                let Source::Replay(r) = std::mem::replace(self, Source::figures_placeholder())
                else {
                    unreachable!()
                };
                let mut live = r.live;
                if let Source::Topics { cursor, .. } = &mut live {
                    *cursor = after;
                }
                *self = live;
            }
        }
        let hold = page.hold.again(out.len() as u64);
        drop(page);
        (!out.is_empty()).then(|| Body::Held(Arc::new(HeldBytes { bytes: out, hold })))
    }

    /// Ends a replay with the `reset` in `frame`: live from the newest event.
    fn go_live_after_reset(&mut self, frame: Vec<u8>, ctx: &mut Ctx<'_>) -> Body {
        ctx.shard.resets[ResetReason::Gap as usize].inc();
        let head = ctx.hub.head();
        if let Source::Replay(r) = std::mem::replace(self, Source::figures_placeholder()) {
            let mut live = r.live;
            if let Source::Topics { cursor, .. } = &mut live {
                *cursor = head;
            }
            *self = live;
        }
        Body::Shared(frame.into())
    }

    /// A value to swap in for an instant while a source is rebuilt.
    fn figures_placeholder() -> Source {
        Source::Figures {
            cursor: 0,
            next: 0,
            due: false,
        }
    }

    /// `n` of the `len` bytes [`poll`](Self::poll) produced were written. Returns how much of
    /// the scratch to keep for later: up to the end of the frame the write stopped in (at most
    /// one partial frame is kept; the events after it are read again from the history).
    pub fn on_written(&mut self, n: usize, len: usize, now: Now, ctx: &mut Ctx<'_>) -> usize {
        let Source::Topics { cursor, sent, .. } = self else {
            // A replay's pages go out through the connection's outbox; what its poll gives
            // (a heartbeat) is kept whole.
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
        *sent = sent.saturating_add(delivered.min(u64::from(u16::MAX)) as u16);
        keep.min(len)
    }

    /// The deadline passed. With the previous output still [`Previous::Unwritten`], nothing
    /// new may be queued (at most one partial frame is pending per stream). Returns `true`
    /// when the stream must end (its token expired).
    pub fn on_timeout(&mut self, now: Now, previous: Previous, ctx: &mut Ctx<'_>) -> bool {
        if let Source::Replay(r) = self {
            return r.live.on_timeout(now, previous, ctx);
        }
        let blocked = previous == Previous::Unwritten;
        if let Source::Topics { expires_s, .. } = self {
            if *expires_s > 0 && now.ms >= u64::from(*expires_s) * 1000 {
                return true;
            }
        }
        match self {
            Source::Clock {
                next_tick, due: d, ..
            } => {
                if now.ms < *next_tick {
                    return false;
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
                heartbeat_s, beat, ..
            } => {
                if now.ms >= u64::from(*heartbeat_s) * 1000 {
                    // The deadline never stays in the past (that would spin the loop while the
                    // socket cannot take the comment); the comment itself waits for a poll,
                    // and is pointless while output is still unwritten.
                    *heartbeat_s = seconds(now.ms + ctx.hub.hub.config().heartbeat_ms);
                    *beat = !blocked;
                }
            }
            Source::Replay(_) => {}
        }
        false
    }

    /// Appends what is due to `out` (the loop's scratch); returns whether anything was.
    pub fn poll(&mut self, now: Now, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) -> bool {
        if let Source::Topics { cursor, .. } = self {
            if *cursor < ctx.hub.evicted() && ctx.hub.hub.is_redis() {
                // Fell behind this loop's history, but the shared store keeps more: read what
                // was dropped back from it (page by page), rather than skip it.
                // A cursor of 0 subscribed before the store held anything: no entry is its
                // position, so it reads from the store's start, where it missed nothing.
                let (after, until) = (*cursor, ctx.hub.evicted());
                let live = std::mem::replace(self, Source::figures_placeholder());
                *self = match after {
                    0 => Source::replay_all(live, until),
                    _ => Source::replay(live, after, until),
                };
                return false;
            }
        }
        match self {
            Source::Replay(r) => {
                // Waiting for a page of the store: only a heartbeat goes out meanwhile.
                let Source::Topics {
                    heartbeat_s, beat, ..
                } = &mut r.live
                else {
                    return false;
                };
                if !std::mem::take(beat) {
                    return false;
                }
                // A head still held goes out before it (the page is late: it names no id).
                if let Some(a) = r.anchor.take() {
                    out.extend_from_slice(&a.release(None));
                }
                ctx.hub.marks.clear();
                out.extend_from_slice(frames::HEARTBEAT);
                *heartbeat_s = seconds(now.ms + ctx.hub.hub.config().heartbeat_ms);
                true
            }
            Source::Clock {
                next_id, due, sent, ..
            } => {
                if !*due {
                    return false;
                }
                *due = false;
                *sent = sent.saturating_add(1);
                frames::encode_frame(out, *next_id, ctx.dates.iso(now.unix_ms));
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
                    out.extend_from_slice(frames::HEARTBEAT);
                }
                true
            }
            Source::Topics {
                cursor,
                heartbeat_s,
                filter,
                private,
                beat,
                mark,
                ..
            } => {
                let hub = &mut *ctx.hub;
                let mut marks = std::mem::take(&mut hub.marks);
                marks.clear();
                if *cursor < hub.evicted() {
                    // Fell behind the retained history (and there is no shared store to read it
                    // back from): say so, then go live.
                    let last = hub.hub.id(*cursor);
                    hub.encode_reset(out, ResetReason::Gap, &last);
                    ctx.shard.resets[ResetReason::Gap as usize].inc();
                    *cursor = hub.head();
                } else {
                    for ev in hub.after(*cursor) {
                        if out.len() >= BATCH_BYTES {
                            break;
                        }
                        if hub.matches(filter, *private, ev) {
                            if *mark && ev.private {
                                // Part of the event's frame as far as a partial write goes
                                // (its mark ends after both).
                                encode_private_mark(out, |o| hub.hub.push_event_id(o, ev));
                            }
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
                        out.extend_from_slice(frames::HEARTBEAT);
                    }
                }
                hub.marks = marks;
                if out.is_empty() {
                    return false;
                }
                *heartbeat_s = seconds(now.ms + hub.hub.config().heartbeat_ms);
                *beat = false;
                true
            }
        }
    }
}

/// The marker before a private event for a subscriber that asked (`markPrivate=1`): an event
/// of the reserved type `private` whose data is the event's id.
fn encode_private_mark(out: &mut Vec<u8>, id: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"event: private\ndata: ");
    id(out);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use crate::app::testing::Env;
    use crate::core::ctx::ConnConfig;
    use crate::hub::history::{Hub, HubConfig, Ids, LocalHub, Publish, RedisBatch, StorePage};
    use std::sync::Arc;

    const KEY: &[u8] = b"a-test-key-that-is-long-enough-for-hs256!";

    fn entry(id: &str, topic: &str, data: &str) -> (String, Publish) {
        (
            id.into(),
            Publish {
                topics: vec![topic.into()],
                data: data.into(),
                private: topic.starts_with("secret/"),
                ..Publish::default()
            },
        )
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// What follows the answer's head in `out`, a resume from the shared store's first output
    /// (its head is held until then), after checking that the head names `anchor`.
    fn after_head(out: &str, anchor: &str) -> String {
        let (head, rest) = out.split_once("\r\n\r\n").expect("the head first");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.ends_with(&format!("\r\nLast-Event-ID: {anchor}")),
            "{head}"
        );
        rest.to_string()
    }

    /// The interleaving that leaked a private event: a deep resume waits for the shared store;
    /// meanwhile the topic index is swept (its topic had no other subscriber) and a new topic
    /// is created. The resume's topic id must not be dropped and handed to the new topic, and
    /// the new topic's private event must never reach it.
    #[test]
    fn a_sweep_while_a_replay_waits_for_the_store_cannot_hand_its_topic_to_another() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        h.hub.set_sweep_every(0);
        h.app.jwt = Some(crate::hub::jwt::Verifier::new(KEY, 0));
        let log: Vec<_> = (0..5)
            .map(|i| entry(&format!("100-{i}"), "secret/1", &format!("s1-{i}")))
            .collect();
        hub.append_redis_entries(log.clone(), 0, RedisBatch::Backfill);
        h.hub.sync();
        let token = crate::hub::jwt::sign_hs256(KEY, r#"{"mercure":{"subscribe":["secret/1"]}}"#);
        // A resumes from 100-0: older than the history (100-3, 100-4), so from the store.
        let mut a = h.conn();
        h.input(
            &mut a,
            format!(
                "GET /sse?topic=secret/1 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 100-0\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        );
        // The loop's step: what became a stream is registered at once (key 7).
        let filter = a.filter().expect("a hub stream from the start").clone();
        h.hub.register(&filter, 7);
        // The head waits for the first page (it names the id resumed after).
        assert_eq!(text(&h.flush(&mut a)), "");
        let want = h
            .with(|ctx, _, _, _| a.page_request(ctx))
            .expect("asks for a page");
        assert_eq!(
            (hub.id(want.after), hub.id(want.until)),
            ("100-0".into(), "100-2".into())
        );
        assert_eq!(
            h.with(|ctx, _, _, _| a.page_request(ctx)),
            None,
            "one page at a time"
        );
        // While the page is read: a sweep, with the loop's notion of alive, then a new topic.
        let alive = |k: u32, t: Option<u32>| k == 7 && filter.names(t);
        assert!(h.hub.sweep_due());
        h.hub.sweep(alive);
        let other = h.hub.intern("secret/2").unwrap();
        assert!(
            !filter.names(Some(other)),
            "secret/2 got the resume's topic id"
        );
        h.hub.register(&crate::hub::history::Filter::One(other), 8);
        hub.append_redis_entries(
            vec![entry("101-0", "secret/2", "not-for-a")],
            0,
            RedisBatch::Live,
        );
        h.hub.sync();
        // The pages arrive (the store as it is: one more page, since the history dropped 100-2
        // meanwhile): the replay, then live, with only secret/1's events.
        let mut want = Some(want);
        let mut replay = String::new();
        while let Some(w) = want {
            let entries: Vec<_> = log
                .iter()
                .filter(|(id, _)| {
                    let seq = hub.parse_id(id.as_bytes()).unwrap();
                    seq > w.after && seq <= w.until
                })
                .cloned()
                .collect();
            let page = StorePage {
                entries,
                follows: true,
                end: true,
                next_count: 2,
                ..StorePage::default()
            };
            h.later.send_page(0, w.ticket, Ok(page));
            h.complete(&mut a);
            replay += &text(&h.flush(&mut a));
            want = h.with(|ctx, _, _, _| a.page_request(ctx));
        }
        hub.append_redis_entries(
            vec![entry("102-0", "secret/1", "s1-live")],
            0,
            RedisBatch::Live,
        );
        h.hub.sync();
        let live = text(&h.flush(&mut a));
        let got = after_head(&replay, "earliest") + &live;
        assert!(!got.contains("not-for-a"), "{got}");
        let ids: Vec<&str> = got.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
        assert_eq!(ids, ["100-1", "100-2", "100-3", "100-4", "102-0"], "{got}");
    }

    /// The history loaded from the store at start begins after its first entry's id minus one,
    /// which no entry has. A replay whose range ends there, then reads on (the history dropped
    /// more meanwhile, or to hand over to the history), must ask from the last entry it read:
    /// the store's start check of a position no entry has fails, a false `reset`. The store
    /// here answers as Redis does (`follows` only when the position is an entry).
    /// A live stream that subscribed before the store held anything (its cursor is 0, which no
    /// entry is) and then fell behind this loop's tiny history reads the store from its start:
    /// it missed nothing, so no `reset` (seen as a gap reset naming `0-0` under load).
    #[test]
    fn a_stream_from_before_the_first_entry_that_falls_behind_reads_from_the_store_start() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        let mut a = h.conn();
        h.input(&mut a, b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\n\r\n");
        let filter = a.filter().expect("a hub stream").clone();
        h.hub.register(&filter, 7);
        let mut got = text(&h.flush(&mut a));
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        // The store's creation mark, then five events, all before the stream is polled again.
        let mut log = vec![(
            "100-0".to_string(),
            Publish {
                topics: Vec::new(),
                ..Publish::default()
            },
        )];
        log.extend((1..6).map(|i| entry(&format!("100-{i}"), "t", &format!("e{i}"))));
        hub.append_redis_entries(log.clone(), 0, RedisBatch::Live);
        h.hub.sync();
        got += &text(&h.flush(&mut a));
        let mut pages = 0;
        while let Some(w) = h.with(|ctx, _, _, _| a.page_request(ctx)) {
            pages += 1;
            assert!(pages < 10, "the replay never ends");
            let entries: Vec<_> = log
                .iter()
                .filter(|(id, _)| {
                    let seq = hub.parse_id(id.as_bytes()).unwrap();
                    seq > w.after && seq <= w.until
                })
                .cloned()
                .collect();
            // As Redis answers the start check: only a position an entry has follows.
            let follows = log
                .iter()
                .any(|(id, _)| hub.parse_id(id.as_bytes()) == Some(w.after));
            let page = StorePage {
                entries,
                follows,
                end: true,
                next_count: 8,
                ..StorePage::default()
            };
            h.later.send_page(0, w.ticket, Ok(page));
            h.complete(&mut a);
            got += &text(&h.flush(&mut a));
        }
        assert!(pages > 0, "the stream fell behind and read the store");
        assert!(!got.contains("event: reset"), "{got}");
        let datas: Vec<&str> = got
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(datas, ["e1", "e2", "e3", "e4", "e5"], "{got}");
    }

    #[test]
    fn a_replay_reads_on_from_a_real_entry_when_its_range_ended_at_none() {
        for evict_meanwhile in [true, false] {
            let mut h = Env::new(ConnConfig::default(), 100);
            let hub = Arc::new(Hub::with_ids(
                HubConfig {
                    history_events: 2,
                    ..HubConfig::default()
                },
                Ids::Redis,
                1,
                Box::new(|_| {}),
            ));
            h.hub = LocalHub::new(hub.clone(), 0);
            let mut log: Vec<_> = (0..5)
                .map(|i| entry(&format!("100-{i}"), "t", &format!("e{i}")))
                .collect();
            log.push(entry("101-0", "t", "f0"));
            log.push(entry("102-0", "t", "f1"));
            // Loaded at start: the last two; the history begins after "101-0" minus one.
            hub.append_redis_entries(log[5..].to_vec(), 0, RedisBatch::Backfill);
            h.hub.sync();
            assert_eq!(h.hub.evicted(), hub.parse_id(b"101-0").unwrap() - 1);
            let mut a = h.conn();
            h.input(
                &mut a,
                b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 100-0\r\n\r\n",
            );
            let filter = a.filter().expect("a hub stream").clone();
            h.hub.register(&filter, 7);
            assert_eq!(
                text(&h.flush(&mut a)),
                "",
                "the head waits for the first page"
            );
            let mut got = String::new();
            let mut want = h.with(|ctx, _, _, _| a.page_request(ctx));
            let mut pages = 0;
            while let Some(w) = want {
                pages += 1;
                assert!(pages < 10, "{evict_meanwhile}: the replay never ends");
                let entries: Vec<_> = log
                    .iter()
                    .filter(|(id, _)| {
                        let seq = hub.parse_id(id.as_bytes()).unwrap();
                        seq > w.after && seq <= w.until
                    })
                    .cloned()
                    .collect();
                let follows = log
                    .iter()
                    .any(|(id, _)| hub.parse_id(id.as_bytes()) == Some(w.after));
                assert!(follows, "{evict_meanwhile}: asked from {}", hub.id(w.after));
                let page = StorePage {
                    entries,
                    follows,
                    end: true,
                    next_count: 8,
                    ..StorePage::default()
                };
                if evict_meanwhile && pages == 1 {
                    // Published while the first page is read: the history drops 101-0.
                    let e = entry("103-0", "t", "f2");
                    log.push(e.clone());
                    hub.append_redis_entries(vec![e], 0, RedisBatch::Live);
                    h.hub.sync();
                }
                h.later.send_page(0, w.ticket, Ok(page));
                h.complete(&mut a);
                got += &text(&h.flush(&mut a));
                want = h.with(|ctx, _, _, _| a.page_request(ctx));
            }
            // Live now, at a real entry: published after, and the history drops everything it
            // held, so the stream reads back from the store once more, from there.
            for i in 4..7 {
                let e = entry(&format!("10{i}-0"), "t", &format!("f{}", i - 2));
                log.push(e.clone());
                hub.append_redis_entries(vec![e], 0, RedisBatch::Live);
            }
            h.hub.sync();
            got += &text(&h.flush(&mut a));
            while let Some(w) = h.with(|ctx, _, _, _| a.page_request(ctx)) {
                pages += 1;
                assert!(pages < 20, "{evict_meanwhile}: the replay never ends");
                let entries: Vec<_> = log
                    .iter()
                    .filter(|(id, _)| {
                        let seq = hub.parse_id(id.as_bytes()).unwrap();
                        seq > w.after && seq <= w.until
                    })
                    .cloned()
                    .collect();
                let follows = log
                    .iter()
                    .any(|(id, _)| hub.parse_id(id.as_bytes()) == Some(w.after));
                assert!(follows, "{evict_meanwhile}: asked from {}", hub.id(w.after));
                let page = StorePage {
                    entries,
                    follows,
                    end: true,
                    next_count: 8,
                    ..StorePage::default()
                };
                h.later.send_page(0, w.ticket, Ok(page));
                h.complete(&mut a);
                got += &text(&h.flush(&mut a));
            }
            got += &text(&h.flush(&mut a));
            let got = after_head(&got, "earliest");
            assert!(!got.contains("reset"), "{evict_meanwhile}: {got}");
            let ids: Vec<&str> = got.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
            let want: Vec<&str> = log[1..].iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, want, "{evict_meanwhile}: {got}");
        }
    }

    /// `markPrivate=1` on a resume read back from the shared store: each private event of the
    /// store's part is preceded by its marker, as on the live path.
    #[test]
    fn a_replay_from_the_store_marks_private_events_when_asked() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        h.app.jwt = Some(crate::hub::jwt::Verifier::new(KEY, 0));
        let log: Vec<_> = (0..4)
            .map(|i| entry(&format!("100-{i}"), "secret/1", &format!("s{i}")))
            .collect();
        hub.append_redis_entries(log.clone(), 0, RedisBatch::Backfill);
        h.hub.sync();
        let token = crate::hub::jwt::sign_hs256(KEY, r#"{"mercure":{"subscribe":["secret/1"]}}"#);
        let mut a = h.conn();
        h.input(
            &mut a,
            format!(
                "GET /sse?topic=secret/1&markPrivate=1 HTTP/1.1\r\nHost: x\r\n\
                 Last-Event-ID: 100-0\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        );
        let filter = a.filter().expect("a hub stream").clone();
        h.hub.register(&filter, 7);
        assert_eq!(
            text(&h.flush(&mut a)),
            "",
            "the head waits for the first page"
        );
        let mut got = String::new();
        let mut want = h.with(|ctx, _, _, _| a.page_request(ctx));
        while let Some(w) = want {
            let entries: Vec<_> = log
                .iter()
                .filter(|(id, _)| {
                    let seq = hub.parse_id(id.as_bytes()).unwrap();
                    seq > w.after && seq <= w.until
                })
                .cloned()
                .collect();
            let page = StorePage {
                entries,
                follows: true,
                end: true,
                next_count: 2,
                // The entry resumed after: private, and this token may read it.
                resumed: Some(log[0].clone()),
                ..StorePage::default()
            };
            h.later.send_page(0, w.ticket, Ok(page));
            h.complete(&mut a);
            got += &text(&h.flush(&mut a));
            want = h.with(|ctx, _, _, _| a.page_request(ctx));
        }
        let got = after_head(&got, "100-0");
        assert!(
            got.starts_with("event: private\ndata: 100-1\n\nid: 100-1\ndata: s1\n\n"),
            "{got}"
        );
        assert_eq!(got.matches("event: private\n").count(), 3, "{got}");
    }

    /// With the shared store, a resume id newer than anything this instance has read (given by
    /// another instance a moment ago) is checked in the store: there, the stream goes live from
    /// it; not there (never issued), `reset`.
    #[test]
    fn a_resume_id_this_instance_has_not_read_yet_is_checked_in_the_store() {
        for exists in [true, false] {
            let mut h = Env::new(ConnConfig::default(), 100);
            let hub = Arc::new(Hub::with_ids(
                HubConfig::default(),
                Ids::Redis,
                1,
                Box::new(|_| {}),
            ));
            h.hub = LocalHub::new(hub.clone(), 0);
            hub.append_redis_entries(vec![entry("100-0", "t", "0")], 0, RedisBatch::Backfill);
            h.hub.sync();
            let mut a = h.conn();
            h.input(
                &mut a,
                b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 200-0\r\n\r\n",
            );
            h.flush(&mut a);
            let want = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
            assert_eq!(
                (hub.id(want.after), hub.id(want.until)),
                ("200-0".into(), "200-0".into())
            );
            let page = StorePage {
                follows: exists,
                end: true,
                oldest: Some("100-0".into()),
                resumed: exists.then(|| entry("200-0", "t", "seen")),
                ..StorePage::default()
            };
            h.later.send_page(0, want.ticket, Ok(page));
            h.complete(&mut a);
            let first = after_head(
                &text(&h.flush(&mut a)),
                if exists { "200-0" } else { "earliest" },
            );
            hub.append_redis_entries(
                vec![entry("200-0", "t", "seen"), entry("200-1", "t", "new")],
                0,
                RedisBatch::Live,
            );
            h.hub.sync();
            let then = text(&h.flush(&mut a));
            if exists {
                assert_eq!(first, "");
                assert_eq!(then, "id: 200-1\ndata: new\n\n");
            } else {
                assert!(
                    first.contains("event: reset") && first.contains("\"gap\""),
                    "{first}"
                );
                assert_eq!(then, "id: 200-0\ndata: seen\n\nid: 200-1\ndata: new\n\n");
            }
        }
    }

    /// A replay waiting for its page (Redis slow, the replay budget full) keeps the connection
    /// alive with the same heartbeat as a live stream.
    #[test]
    fn a_replay_waiting_for_its_page_sends_heartbeats() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                heartbeat_ms: 1_000,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        let log: Vec<_> = (0..6)
            .map(|i| entry(&format!("100-{i}"), "t", &format!("{i}")))
            .collect();
        hub.append_redis_entries(log, 0, RedisBatch::Backfill);
        h.hub.sync();
        let mut a = h.conn();
        h.input(
            &mut a,
            b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 100-0\r\n\r\n",
        );
        assert_eq!(h.flush(&mut a), b"", "the head waits for the first page");
        let want = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
        h.advance(2_000);
        // The page is late: the head goes out before the heartbeat, naming no id.
        let beat = text(&h.tick(&mut a));
        assert_eq!(
            after_head(&beat, "earliest").as_bytes(),
            crate::wire::frames::HEARTBEAT
        );
        assert!(a.filter().is_some(), "still a subscriber, still waiting");
        h.advance(2_000);
        assert_eq!(h.tick(&mut a), crate::wire::frames::HEARTBEAT);
        // The page then: its events, and no second head.
        let page = StorePage {
            entries: vec![entry("100-1", "t", "1")],
            follows: true,
            resumed: Some(entry("100-0", "t", "0")),
            next_count: 1,
            ..StorePage::default()
        };
        h.later.send_page(0, want.ticket, Ok(page));
        h.complete(&mut a);
        assert_eq!(text(&h.flush(&mut a)), "id: 100-1\ndata: 1\n\n");
    }

    /// A resume from the shared store that ends before its first page (the server stops)
    /// still gets its head, naming no id, before its `retry:`.
    #[test]
    fn a_replay_ended_before_its_first_page_still_answers_with_its_head() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        let log: Vec<_> = (0..6)
            .map(|i| entry(&format!("100-{i}"), "t", &format!("{i}")))
            .collect();
        hub.append_redis_entries(log, 0, RedisBatch::Backfill);
        h.hub.sync();
        let mut a = h.conn();
        h.input(
            &mut a,
            b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 100-0\r\n\r\n",
        );
        assert_eq!(h.flush(&mut a), b"", "the head waits for the first page");
        let want = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
        h.with(|ctx, _, now, _| a.drain(now, ctx));
        let out = text(&h.flush(&mut a));
        let rest = after_head(&out, "earliest");
        assert!(rest.starts_with("retry: "), "{out}");
        // The page arriving after the end writes nothing more.
        h.later.send_page(0, want.ticket, Ok(StorePage::default()));
        h.complete(&mut a);
        assert_eq!(text(&h.flush(&mut a)), "");
    }

    /// A page of entries that could not be read (skipped by the bridge) still moves the
    /// replay's cursor past them: the next page starts after them, never asks for them again.
    #[test]
    fn a_page_of_unreadable_entries_moves_the_cursor_on() {
        let mut h = Env::new(ConnConfig::default(), 100);
        let hub = Arc::new(Hub::with_ids(
            HubConfig {
                history_events: 2,
                ..HubConfig::default()
            },
            Ids::Redis,
            1,
            Box::new(|_| {}),
        ));
        h.hub = LocalHub::new(hub.clone(), 0);
        let log: Vec<_> = (0..6)
            .map(|i| entry(&format!("100-{i}"), "t", &format!("{i}")))
            .collect();
        hub.append_redis_entries(log, 0, RedisBatch::Backfill);
        h.hub.sync();
        let mut a = h.conn();
        h.input(
            &mut a,
            b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 100-0\r\n\r\n",
        );
        h.flush(&mut a);
        let want = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
        let page = StorePage {
            follows: true,
            last: Some("100-1".into()),
            next_count: 1,
            ..StorePage::default()
        };
        h.later.send_page(0, want.ticket, Ok(page));
        h.complete(&mut a);
        assert_eq!(after_head(&text(&h.flush(&mut a)), "earliest"), "");
        let next = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
        assert_eq!(hub.id(next.after), "100-1");
    }

    /// A page that does not follow the resume id (trimmed from the store) gives `reset` with the
    /// store's oldest id, and the stream goes live; no page (Redis unreachable) gives `reset` too.
    #[test]
    fn a_page_that_does_not_follow_or_no_page_gives_a_reset_then_live() {
        for page in [
            Ok(StorePage {
                entries: vec![entry("100-3", "t", "x")],
                follows: false,
                oldest: Some("100-3".into()),
                ..StorePage::default()
            }),
            Err("Redis down".to_string()),
        ] {
            let mut h = Env::new(ConnConfig::default(), 100);
            let hub = Arc::new(Hub::with_ids(
                HubConfig {
                    history_events: 2,
                    ..HubConfig::default()
                },
                Ids::Redis,
                1,
                Box::new(|_| {}),
            ));
            h.hub = LocalHub::new(hub.clone(), 0);
            let log: Vec<_> = (0..5)
                .map(|i| entry(&format!("100-{i}"), "t", &format!("{i}")))
                .collect();
            hub.append_redis_entries(log, 0, RedisBatch::Backfill);
            h.hub.sync();
            let mut a = h.conn();
            h.input(
                &mut a,
                b"GET /sse?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\r\n\r\n",
            );
            h.flush(&mut a);
            let want = h.with(|ctx, _, _, _| a.page_request(ctx)).unwrap();
            h.later.send_page(0, want.ticket, page);
            h.complete(&mut a);
            let got = after_head(&text(&h.flush(&mut a)), "earliest");
            assert_eq!(
                got,
                format!(
                    "id: 100-4\nevent: reset\ndata: {{\"lastEventId\":\"1-0\",\"oldest\":\"100-3\",\"reason\":\"gap\"}}\n\n"
                )
            );
            hub.append_redis_entries(vec![entry("101-0", "t", "live")], 0, RedisBatch::Live);
            h.hub.sync();
            assert_eq!(text(&h.flush(&mut a)), "id: 101-0\ndata: live\n\n");
        }
    }

    /// Heap bytes that `n` live subscriptions to `query` hold on one loop (streams answered,
    /// registered in the topic index, their heads written), per subscription.
    fn heap_per_subscription(query: &str, n: usize) -> i64 {
        use crate::util::test_alloc::live_bytes;
        let mut h = Env::new(ConnConfig::default(), 2 * n);
        let request = format!("GET /sse?{query} HTTP/1.1\r\nHost: x\r\n\r\n");
        // Warm: the topic's or template's entry and the cache exist before counting.
        let mut warm = h.conn();
        h.input(&mut warm, request.as_bytes());
        let filter = warm.filter().expect("a hub stream").clone();
        h.hub.register(&filter, 0);
        h.flush(&mut warm);
        let mut conns = Vec::with_capacity(n);
        let before = live_bytes();
        for k in 1..=n {
            let mut c = h.conn();
            h.input(&mut c, request.as_bytes());
            let filter = c.filter().expect("a hub stream");
            h.hub.register(filter, k);
            h.flush(&mut c);
            conns.push(c);
        }
        let held = live_bytes() - before;
        drop(conns);
        held / n as i64
    }

    /// A subscription to a URI Template holds no more heap than one to an exact topic (plus a
    /// small bound): the compiled template is the loop's, shared by its subscribers, and the
    /// subscriber's own state is the same two words.
    #[test]
    fn a_template_subscription_costs_the_heap_of_an_exact_one() {
        let exact = heap_per_subscription("topic=https%3A%2F%2Fexample.com%2Frooms%2Fbench", 2000);
        let template =
            heap_per_subscription("topic=https%3A%2F%2Fexample.com%2Frooms%2F%7Bid7%7D", 2000);
        eprintln!("heap per subscription: exact {exact} B, template {template} B");
        assert!(
            template <= exact + 8,
            "template {template} B against exact {exact} B"
        );
    }
}
