//! The event loops: the only part of `sse-load` that touches sockets, `mio`, threads and clocks.
//!
//! [`run`] starts `--threads` loops; each owns a share of the streams (every `threads`-th one),
//! of the connect rate and of the in-flight budget, a slab of connections indexed by token (each
//! carrying one HTTP/1.1 [`Stream`], or with `--h2` an [`H2Conn`] of many), a
//! [`TimerWheel`] holding each connection's next deadline, its [`Stats`], and one read buffer shared
//! by all its streams. The calling thread prints nothing itself: once a second it hands a
//! [`Progress`] (summed from counters each loop publishes) to a callback, and at the end it
//! merges the loops' stats into a [`Report`].
//!
//! Readiness: a socket is registered once for read and write, edge-triggered; an event sets the
//! slot's flags and an operation clears them on `WouldBlock`. One Linux-specific shortcut, for
//! the 100,000-frames-a-second case: a read that returns less than was asked leaves nothing
//! behind, and any byte (or FIN) that arrives later raises a new edge, so the loop stops there
//! instead of paying a second `read` for the `WouldBlock`. It still reads to the end when the
//! event said the peer closed, so a close is never missed.
//!
//! **Invariant:** after any call into a [`Stream`] the loop either drops the stream (counting its
//! reason) or re-arms its timer from [`Stream::timeout`]; a handshake always has a deadline.
//! **Invariant:** connections go only to the configured loopback target (checked by
//! [`super::target::parse_url`]), from the configured loopback sources.

use super::args::LoadConfig;
use super::conn::{Stream, StreamConfig, Time};
use super::h2::{H2Conn, H2Setup, Slot};
use super::publish::{PublishStats, Publisher};
use super::report::{Report, Sample};
use super::stats::{Reason, Stats};
use crate::util::slab::Slab;
use crate::util::timer::TimerWheel;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One read buffer per loop, shared by all its streams.
const READ_BUF: usize = 64 * 1024;
/// Connects started per loop iteration before the loop serves events again (fairness).
const OPEN_BUDGET: usize = 256;
/// Longest sleep, so that published progress is never stale by much.
const MAX_SLEEP_US: u64 = 200_000;
/// The progress line's frames/s is taken over the whole intervals that ended in this many
/// seconds (see `Sample::rates`).
const ROLLING_S: usize = 5;

/// What the loops share, read-only.
struct Setup {
    target: SocketAddr,
    /// With an `https://` target: the TLS client configuration and the server's name.
    tls: Option<Tls>,
    sources: Vec<IpAddr>,
    /// What a stream sends: the one request, or one per `--spread` value, in turn.
    requests: Vec<Vec<u8>>,
    /// `--h2`: streams per connection, and what their requests carry.
    h2: Option<(usize, H2Setup)>,
    conn: StreamConfig,
    start: Instant,
    /// The run ends this many microseconds after `start`.
    end_us: u64,
    /// Frame timing is recorded from this many microseconds after `start`.
    warmup_us: u64,
    /// This run's nonce, carried by published payloads.
    run_id: u64,
}

impl Setup {
    fn now(&self) -> Time {
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        Time {
            us: self.start.elapsed().as_micros() as u64,
            wall_us,
        }
    }
}

/// One loop's share of the work.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    /// Streams this loop opens.
    count: usize,
    /// The global index of its first stream, and the step between its streams.
    first: usize,
    stride: usize,
    /// Connects per second (0: no limit).
    rate: f64,
    max_inflight: usize,
}

impl Plan {
    fn for_loop(cfg: &LoadConfig, i: usize) -> Plan {
        let t = cfg.threads.max(1);
        let n = cfg.connections;
        let count = n / t + usize::from(i < n % t);
        let share = count as f64 / n.max(1) as f64;
        Plan {
            count,
            first: i,
            stride: t,
            rate: cfg.rate * share,
            max_inflight: ((cfg.max_inflight as f64 * share).ceil() as usize).max(1),
        }
    }
}

/// Counters a loop publishes for the progress line.
#[derive(Default)]
struct Published {
    open: AtomicU64,
    opening: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Streams that opened or failed: when every stream has, publishing may start.
    settled: AtomicU64,
    deliveries: AtomicU64,
    /// Whole intervals, their time and the streams ticking (see `Stats::intervals`).
    intervals: AtomicU64,
    interval_us: AtomicU64,
    ticking: AtomicU64,
}

/// Counters the publisher publishes.
#[derive(Default)]
struct PubPublished {
    sent: AtomicU64,
    ok: AtomicU64,
    expected: AtomicU64,
}

/// The once-a-second view of a run in progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Streams open now.
    pub open: u64,
    /// Streams between connect start and response head.
    pub opening: u64,
    /// Frames so far, and per second over the last few seconds (a rolling mean).
    pub frames: u64,
    pub frames_per_s: f64,
    /// Body bytes per second over the last few seconds.
    pub bytes_per_s: f64,
    /// Streams that never opened, and open streams that ended, so far.
    pub failed: u64,
    pub dropped: u64,
    /// Hub mode: publishes sent so far, and published events received (all streams).
    pub hub: bool,
    pub published: u64,
    pub delivered: u64,
}

impl Progress {
    /// The progress line.
    pub fn text(&self) -> String {
        let mut t = format!(
            "[{:6.1}s] open {:6}  opening {:5}  frames/s {:9.0}  MB/s {:7.2}  failed {:6}  dropped {:6}",
            self.elapsed_s,
            self.open,
            self.opening,
            self.frames_per_s,
            self.bytes_per_s / 1e6,
            self.failed,
            self.dropped
        );
        if self.hub {
            t.push_str(&format!(
                "  published {:7}  delivered {:9}",
                self.published, self.delivered
            ));
        }
        t
    }
}

/// Runs the whole load, calling `on_progress` about once a second, and returns the report.
/// Errors only when the loops cannot be set up (no poller, no thread).
pub fn run(cfg: &LoadConfig, mut on_progress: impl FnMut(&Progress)) -> io::Result<Report> {
    let (cpu0, _) = rusage();
    let start = Instant::now();
    let wall_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let tls = match &cfg.tls_ca {
        Some(ca) => Some(client_config(ca)?),
        None => None,
    };
    let tls_for = |t: &crate::load::target::Target| -> io::Result<Option<Tls>> {
        match (&tls, t.tls) {
            (Some(config), true) => Ok(Some(Tls {
                config: config.clone(),
                name: server_name(t)?,
            })),
            _ => Ok(None),
        }
    };
    // `--h2` over TLS offers ALPN h2 only (the publisher's connection offers nothing: it
    // speaks HTTP/1.1).
    let streams_tls = match tls_for(&cfg.target)? {
        Some(mut t) if cfg.h2.is_some() => {
            let mut config = (*t.config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            t.config = Arc::new(config);
            Some(t)
        }
        other => other,
    };
    let setup = Arc::new(Setup {
        target: cfg.target.addr,
        tls: streams_tls,
        sources: cfg.source_addrs.clone(),
        requests: cfg.requests(),
        h2: cfg.h2.map(|n| {
            (
                n,
                H2Setup {
                    authority: cfg.target.host.clone(),
                    scheme: if cfg.target.tls { "https" } else { "http" },
                    paths: cfg.paths(),
                    conn: cfg.conn.clone(),
                },
            )
        }),
        conn: cfg.conn.clone(),
        start,
        end_us: cfg.duration.as_micros() as u64,
        warmup_us: cfg.warmup.as_micros() as u64,
        // Any value that differs between runs will do: it only tells this run's events from
        // an older run's replayed by a hub's history. Several sse-load processes measuring one
        // run (subscribers on several instances, one publisher) share it through
        // SSE_LOAD_RUN_ID.
        run_id: std::env::var("SSE_LOAD_RUN_ID")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or((wall_us ^ (u64::from(std::process::id()) << 40)) & ((1 << 53) - 1)),
    });
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut handles = Vec::with_capacity(threads);
    let mut published = Vec::with_capacity(threads);
    for i in 0..threads {
        let p = Arc::new(Published::default());
        let lp = Loop::new(setup.clone(), Plan::for_loop(cfg, i), p.clone())?;
        let tx = done_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sse-load-{i}"))
            .spawn(move || {
                let stats = lp.run();
                let _ = tx.send(());
                stats
            })?;
        handles.push(handle);
        published.push(p);
    }
    let pub_published = Arc::new(PubPublished::default());
    let publisher = match &cfg.publish {
        Some(pc) => {
            let stop_us = setup.end_us.saturating_sub(cfg.drain.as_micros() as u64);
            let pl = PubLoop {
                poll: Poll::new()?,
                setup: setup.clone(),
                publisher: Publisher::new(pc.clone(), setup.run_id, stop_us),
                target: pc.target.addr,
                tls: tls_for(&pc.target)?,
                subscribers: published.clone(),
                connections: cfg.connections as u64,
                published: pub_published.clone(),
            };
            Some(
                std::thread::Builder::new()
                    .name("sse-load-publisher".into())
                    .spawn(move || pl.run())?,
            )
        }
        None => None,
    };
    drop(done_tx);

    let mut done = 0;
    let mut tick = 1u32;
    // The last ROLLING_S + 1 samples, for the rolling rates.
    let mut recent: std::collections::VecDeque<Sample> = std::collections::VecDeque::new();
    recent.push_back(Sample::default());
    let mut series = Vec::new();
    while done < threads {
        let at = setup.start + Duration::from_secs(u64::from(tick));
        match done_rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
            Ok(()) => done += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tick += 1;
                let sum = |f: fn(&Published) -> &AtomicU64| -> u64 {
                    published.iter().map(|p| f(p).load(Ordering::Relaxed)).sum()
                };
                let sample = Sample {
                    t_s: setup.start.elapsed().as_secs_f64(),
                    open: sum(|p| &p.open),
                    opening: sum(|p| &p.opening),
                    failed: sum(|p| &p.failed),
                    dropped: sum(|p| &p.dropped),
                    frames: sum(|p| &p.frames),
                    bytes: sum(|p| &p.bytes),
                    delivered: sum(|p| &p.deliveries),
                    published: pub_published.sent.load(Ordering::Relaxed),
                    published_ok: pub_published.ok.load(Ordering::Relaxed),
                    expected: pub_published.expected.load(Ordering::Relaxed),
                    intervals: sum(|p| &p.intervals),
                    interval_us: sum(|p| &p.interval_us),
                    ticking: sum(|p| &p.ticking),
                };
                if recent.len() > ROLLING_S {
                    recent.pop_front();
                }
                let first = recent.front().cloned().unwrap_or_default();
                let (frames_per_s, bytes_per_s) = Sample::rates(&first, &sample);
                on_progress(&Progress {
                    elapsed_s: sample.t_s,
                    open: sample.open,
                    opening: sample.opening,
                    frames: sample.frames,
                    frames_per_s,
                    bytes_per_s,
                    failed: sample.failed,
                    dropped: sample.dropped,
                    hub: cfg.publish.is_some(),
                    published: sample.published,
                    delivered: sample.delivered,
                });
                recent.push_back(sample.clone());
                series.push(sample);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut stats = Stats {
        warmup_us: setup.warmup_us,
        ..Stats::default()
    };
    for h in handles {
        let s = h
            .join()
            .map_err(|_| io::Error::other("an sse-load event loop panicked"))?;
        stats.merge(&s);
    }
    let publish = match publisher {
        Some(h) => Some(
            h.join()
                .map_err(|_| io::Error::other("the sse-load publisher panicked"))?,
        ),
        None => None,
    };
    let wall_s = setup.start.elapsed().as_secs_f64();
    let (cpu1, max_rss) = rusage();
    let run = crate::load::report::Measured {
        elapsed_s: cfg.duration.as_secs_f64(),
        cpu_s: cpu1 - cpu0,
        max_rss_bytes: max_rss,
    };
    let mut report = Report::new(cfg, stats, run);
    report.cpu_wall_s = wall_s;
    report.publish = publish;
    report.series = series;
    Ok(report)
}

/// The publisher's loop (hub mode): one connection, on its own thread so that a slow answer
/// never holds up the streams' loops, and the streams' loops never delay a publish.
struct PubLoop {
    poll: Poll,
    setup: Arc<Setup>,
    publisher: Publisher,
    target: SocketAddr,
    tls: Option<Tls>,
    subscribers: Vec<Arc<Published>>,
    connections: u64,
    published: Arc<PubPublished>,
}

impl PubLoop {
    fn run(mut self) -> PublishStats {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; 16 * 1024];
        let mut sock: Option<PublisherSocket> = None;
        loop {
            let now = self.setup.now();
            if now.us >= self.setup.end_us {
                break;
            }
            let sum = |f: fn(&Published) -> &AtomicU64| -> u64 {
                self.subscribers
                    .iter()
                    .map(|p| f(p).load(Ordering::Relaxed))
                    .sum()
            };
            let p = &mut self.publisher;
            if !p.is_started()
                && now.us >= self.setup.warmup_us
                && sum(|s| &s.settled) >= self.connections
            {
                p.start(now);
            }
            if sock.is_none() && p.wants_connect(now) {
                match connect(self.target, None).and_then(|mut s| {
                    self.poll.registry().register(
                        &mut s,
                        Token(0),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    Ok(s)
                }) {
                    Ok(s) => {
                        p.handle_connecting(now);
                        sock = Some(PublisherSocket {
                            sock: s,
                            tls: self.tls.as_ref().and_then(Tls::session),
                            readable: false,
                            writable: false,
                        });
                    }
                    Err(_) => {
                        p.handle_connecting(now);
                        p.handle_close(now);
                    }
                }
            }
            if let Some(s) = &mut sock {
                let open = sum(|s| &s.open);
                let ok = s.drive(p, &mut buf, now, open);
                if !ok || p.handle_timeout(now) || p.wants_close() {
                    let _ = self.poll.registry().deregister(&mut s.sock);
                    sock = None;
                    p.handle_close(now);
                }
            }
            let ps = &p.stats;
            self.published.sent.store(ps.sent, Ordering::Relaxed);
            self.published.ok.store(ps.ok(), Ordering::Relaxed);
            self.published
                .expected
                .store(ps.expected, Ordering::Relaxed);
            // Before publishing starts, look at the streams' progress every 10 ms.
            let mut next = self.setup.end_us.min(now.us + MAX_SLEEP_US);
            if !p.is_started() {
                next = next.min(now.us + 10_000);
            }
            if let Some(t) = p.timeout(now) {
                next = next.min(t.max(now.us));
            }
            let wait = Duration::from_micros(next.saturating_sub(now.us));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("sse-load: publisher poll failed: {e}");
                    break;
                }
            }
            if let Some(s) = &mut sock {
                for ev in events.iter() {
                    s.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    s.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                }
            }
        }
        let mut stats = std::mem::take(&mut self.publisher.stats);
        if stats.started_us.is_some() && stats.stopped_us.is_none() {
            stats.stopped_us = Some(self.setup.end_us);
        }
        stats
    }
}

/// The publisher's socket, its TLS session (for an `https://` target) and its remembered
/// readiness.
struct PublisherSocket {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    readable: bool,
    writable: bool,
}

impl PublisherSocket {
    /// Connect check, request writes and answer reads for the publisher `p`, until
    /// `WouldBlock`; `open`: the streams open now. `false` when the connection must be
    /// dropped.
    fn drive(&mut self, p: &mut Publisher, buf: &mut [u8], now: Time, open: u64) -> bool {
        let PublisherSocket {
            sock,
            tls,
            readable,
            writable,
        } = self;
        if p.is_connecting() {
            if !*writable && !*readable {
                return true;
            }
            if sock.take_error().ok().flatten().is_some() {
                return false;
            }
            match sock.peer_addr() {
                Ok(_) => p.handle_connected(),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    (*readable, *writable) = (false, false);
                    return true;
                }
                Err(_) => return false,
            }
        }
        loop {
            // Answers first: a request is built only once the previous one was answered.
            while *readable {
                match sock_read(sock, tls.as_deref_mut(), buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        if p.handle_input(&buf[..n], now).is_err() {
                            return false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => *readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            if !*writable {
                return true;
            }
            let Some(out) = p.poll_transmit(now, open) else {
                return true;
            };
            match sock_write(sock, tls.as_deref_mut(), out) {
                Ok(0) => return false,
                Ok(n) => p.on_sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// What a connection carries: one HTTP/1.1 stream, or (`--h2`) an HTTP/2 connection's streams.
/// The HTTP/1.1 stream stays inline (as before `--h2`: no extra allocation per stream); the
/// HTTP/2 connection, one per hundred streams, is boxed.
#[allow(clippy::large_enum_variant)]
enum Session {
    H1 {
        stream: Stream,
        /// Which of the setup's requests it sends.
        request: usize,
    },
    H2(Box<H2Conn>),
}

impl Session {
    fn is_connecting(&self) -> bool {
        match self {
            Session::H1 { stream, .. } => stream.is_connecting(),
            Session::H2(c) => c.is_connecting(),
        }
    }

    /// Streams it carries that are not open yet (the loop's in-flight count).
    fn opening(&self) -> usize {
        match self {
            Session::H1 { stream, .. } => usize::from(!stream.is_established()),
            Session::H2(c) => c.opening(),
        }
    }

    fn timeout(&self) -> Option<u64> {
        match self {
            Session::H1 { stream, .. } => stream.timeout(),
            Session::H2(c) => c.timeout(),
        }
    }

    /// The connection ends: every stream it carries is counted (dropped if open, failed if
    /// not) and leaves the run.
    fn end(&mut self, reason: Reason, stats: &mut Stats) {
        match self {
            Session::H1 { stream, .. } => {
                if stream.is_established() {
                    stats.end_dropped(reason);
                } else {
                    stats.end_failed(reason);
                }
                stream.leave(stats);
            }
            Session::H2(c) => c.end(reason, stats),
        }
    }

    /// The run is over: its streams count as open or still opening.
    fn at_end(&self, stats: &mut Stats) {
        match self {
            Session::H1 { stream, .. } => {
                stream.leave(stats);
                if stream.is_established() {
                    stats.open_at_end += 1;
                } else {
                    stats.pending_at_end += 1;
                }
            }
            Session::H2(c) => c.at_end(stats),
        }
    }
}

/// One connection's socket, what it carries, and its remembered readiness.
struct Client {
    sock: TcpStream,
    /// The TLS session, for an `https://` target.
    tls: Option<Box<ClientConnection>>,
    session: Session,
    /// `--h2` over TLS: the server's ALPN choice was checked.
    alpn_checked: bool,
    readable: bool,
    writable: bool,
    /// An event said the peer closed (or errored): read to the end, no shortcut.
    read_closed: bool,
}

struct Loop {
    poll: Poll,
    setup: Arc<Setup>,
    plan: Plan,
    published: Arc<Published>,
    slab: Slab<Client>,
    /// Streams opened by this loop (which request the next sends).
    opened: usize,
    wheel: TimerWheel,
    read_buf: Box<[u8]>,
    stats: Stats,
    /// Streams started so far, and those between connect start and response head.
    started: usize,
    inflight: usize,
}

impl Loop {
    fn new(setup: Arc<Setup>, plan: Plan, published: Arc<Published>) -> io::Result<Loop> {
        let (warmup_us, run_id) = (setup.warmup_us, setup.run_id);
        Ok(Loop {
            poll: Poll::new()?,
            setup,
            plan,
            published,
            slab: Slab::default(),
            opened: 0,
            wheel: TimerWheel::new(0),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            stats: Stats {
                warmup_us,
                run_id,
                ..Stats::default()
            },
            started: 0,
            inflight: 0,
        })
    }

    fn run(mut self) -> Stats {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.setup.now();
            if now.us >= self.setup.end_us {
                break;
            }
            let more = self.open_more(now);
            let timeout = if more {
                Duration::ZERO
            } else {
                self.poll_timeout(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("sse-load: poll failed: {e}");
                break;
            }
            for ev in events.iter() {
                let k = ev.token().0;
                let Some(slot) = self.slab.get_mut(k) else {
                    continue;
                };
                // Errors and hang-ups surface through the next read, write or connect check.
                let closed = ev.is_read_closed() || ev.is_error();
                slot.readable |= ev.is_readable() || closed;
                slot.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                slot.read_closed |= closed;
                let now = self.setup.now();
                self.drive(k, now);
            }
            self.fire_timers();
            self.publish();
        }
        self.finish()
    }

    /// The next time a connect may start, if one is waiting only for the rate.
    fn next_open_us(&self) -> Option<u64> {
        if self.started >= self.plan.count || self.inflight >= self.plan.max_inflight {
            return None;
        }
        if self.plan.rate <= 0.0 {
            return Some(0);
        }
        Some((self.started as f64 * 1e6 / self.plan.rate).ceil() as u64)
    }

    fn poll_timeout(&self, now: Time) -> Duration {
        let mut next = self.setup.end_us.min(now.us + MAX_SLEEP_US);
        if let Some(t) = self.next_open_us() {
            next = next.min(t);
        }
        if let Some(ms) = self.wheel.next_wakeup() {
            next = next.min(ms.saturating_mul(1000));
        }
        Duration::from_micros(next.saturating_sub(now.us))
    }

    /// Starts the connects the rate and the in-flight budget allow; true when the budget per
    /// iteration ran out with more allowed (poll without sleeping, then come back).
    fn open_more(&mut self, now: Time) -> bool {
        for _ in 0..OPEN_BUDGET {
            match self.next_open_us() {
                Some(t) if t <= now.us => self.open_one(now),
                _ => return false,
            }
        }
        self.next_open_us().is_some_and(|t| t <= now.us)
    }

    fn open_one(&mut self, now: Time) {
        let index = self.plan.first + self.started * self.plan.stride;
        let session = match &self.setup.h2 {
            None => {
                self.started += 1;
                self.stats.attempted += 1;
                let request = self.opened % self.setup.requests.len().max(1);
                self.opened += 1;
                Session::H1 {
                    stream: Stream::new(now, &self.setup.conn),
                    request,
                }
            }
            Some((per_conn, h2)) => {
                let k = (*per_conn).min(self.plan.count - self.started).max(1);
                self.started += k;
                self.stats.attempted += k as u64;
                let paths = h2.paths.len().max(1);
                let slots = (0..k)
                    .map(|_| {
                        let path = self.opened % paths;
                        self.opened += 1;
                        Slot::new(now, &self.setup.conn, path)
                    })
                    .collect();
                Session::H2(Box::new(H2Conn::new(now, &self.setup.conn, slots)))
            }
        };
        self.connect(index, session);
    }

    /// Opens a connection from the source for stream number `index`, carrying `session`.
    fn connect(&mut self, index: usize, mut session: Session) {
        let sources = &self.setup.sources;
        let source = (!sources.is_empty()).then(|| sources[index % sources.len()]);
        let sock = match connect(self.setup.target, source) {
            Ok(s) => s,
            Err(e) => {
                session.end(Reason::from_connect(&e), &mut self.stats);
                return;
            }
        };
        if let Session::H2(_) = session {
            self.stats.h2.connections += 1;
        }
        let deadline = session.timeout();
        let opening = session.opening();
        let k = self.slab.insert(Client {
            sock,
            tls: self.setup.tls.as_ref().and_then(Tls::session),
            session,
            alpn_checked: false,
            readable: false,
            writable: false,
            read_closed: false,
        });
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        if let Err(e) = self.poll.registry().register(
            &mut slot.sock,
            Token(k),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            if let Some(mut slot) = self.slab.remove(k) {
                slot.session.end(Reason::from_connect(&e), &mut self.stats);
            }
            return;
        }
        self.inflight += opening;
        if let Some(d) = deadline {
            self.wheel.arm(k, d);
        }
    }

    /// Moves a connection as far as its readiness allows; then re-arms its timer or drops it.
    fn drive(&mut self, k: usize, now: Time) {
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        let before = slot.session.opening();
        let result = slot.drive(&mut self.read_buf, &self.setup, &mut self.stats, now);
        self.settle(k, before, result);
    }

    /// After a call into connection `k` (which had `before` streams opening): the in-flight
    /// count follows, orphans move to a new connection, and the connection is dropped (its
    /// streams counted) or its timer re-armed.
    fn settle(&mut self, k: usize, before: usize, result: Result<(), Reason>) {
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        let orphans = match &mut slot.session {
            Session::H2(c) => c.take_orphans(),
            Session::H1 { .. } => Vec::new(),
        };
        let done = matches!(&slot.session, Session::H2(c) if c.is_done());
        let after = slot.session.opening();
        let deadline = slot.session.timeout();
        self.inflight = (self.inflight + after).saturating_sub(before);
        if !orphans.is_empty() {
            let now = self.setup.now();
            let index = self.plan.first + k * self.plan.stride;
            let conn = H2Conn::new(now, &self.setup.conn, orphans);
            self.connect(index, Session::H2(Box::new(conn)));
        }
        match result {
            Err(reason) => self.end(k, reason),
            Ok(()) if done => self.close(k),
            Ok(()) => match deadline {
                Some(d) if self.wheel.deadline(k) != Some(d) => self.wheel.arm(k, d),
                Some(_) => {}
                None => self.wheel.cancel(k),
            },
        }
    }

    /// Drops a connection, counting why for each stream it carries.
    fn end(&mut self, k: usize, reason: Reason) {
        self.wheel.cancel(k);
        if let Some(mut slot) = self.slab.remove(k) {
            self.inflight = self.inflight.saturating_sub(slot.session.opening());
            slot.session.end(reason, &mut self.stats);
            let _ = self.poll.registry().deregister(&mut slot.sock);
        }
    }

    /// Drops a connection that carries nothing any more (every stream was counted).
    fn close(&mut self, k: usize) {
        self.wheel.cancel(k);
        if let Some(mut slot) = self.slab.remove(k) {
            let _ = self.poll.registry().deregister(&mut slot.sock);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.setup.now();
        while let Some(k) = self.wheel.pop_expired(now.ms()) {
            let Some(slot) = self.slab.get_mut(k) else {
                continue;
            };
            let before = slot.session.opening();
            let ended = match &mut slot.session {
                Session::H1 { stream, .. } => stream.handle_timeout(now),
                Session::H2(c) => match &self.setup.h2 {
                    Some((_, h2)) => c.handle_timeout(now, h2, &mut self.stats),
                    None => None,
                },
            };
            match ended {
                Some(reason) => {
                    // Settle the counts first (orphans), then end it.
                    self.settle(k, before, Err(reason));
                }
                None => {
                    // What the timeout queued (resets, requests) goes out now.
                    let result = slot.drive(&mut self.read_buf, &self.setup, &mut self.stats, now);
                    self.settle(k, before, result);
                }
            }
        }
    }

    fn publish(&self) {
        let p = &*self.published;
        let s = &self.stats;
        let dropped = s.dropped_total();
        p.open
            .store(s.established.saturating_sub(dropped), Ordering::Relaxed);
        p.opening.store(self.inflight as u64, Ordering::Relaxed);
        p.frames.store(s.frames, Ordering::Relaxed);
        p.bytes.store(s.body_bytes, Ordering::Relaxed);
        p.failed.store(s.failed_total(), Ordering::Relaxed);
        p.dropped.store(dropped, Ordering::Relaxed);
        p.settled
            .store(s.established + s.failed_total(), Ordering::Relaxed);
        p.deliveries.store(s.deliveries.received, Ordering::Relaxed);
        p.intervals.store(s.intervals, Ordering::Relaxed);
        p.interval_us.store(s.interval_sum_us, Ordering::Relaxed);
        p.ticking.store(s.ticking, Ordering::Relaxed);
    }

    /// The run is over: counts what is still open or opening, and closes everything.
    fn finish(mut self) -> Stats {
        self.publish();
        for slot in self.slab.values() {
            slot.session.at_end(&mut self.stats);
        }
        self.stats
    }
}

impl Client {
    /// Connect check, request write and reads for one connection, until `WouldBlock` (or the
    /// short-read shortcut, see the module docs), then what the reads queued (HTTP/2's acks
    /// and window updates). `Err` ends the connection.
    fn drive(
        &mut self,
        buf: &mut [u8],
        setup: &Setup,
        stats: &mut Stats,
        now: Time,
    ) -> Result<(), Reason> {
        let slot = self;
        if slot.session.is_connecting() {
            if !slot.writable && !slot.readable {
                return Ok(());
            }
            if let Some(e) = slot.sock.take_error().unwrap_or_else(Some) {
                return Err(Reason::from_connect(&e));
            }
            match slot.sock.peer_addr() {
                Ok(_) => match (&mut slot.session, &setup.h2) {
                    (Session::H1 { stream, .. }, _) => {
                        stream.handle_connected(now, &setup.conn, stats)
                    }
                    (Session::H2(c), Some((_, h2))) => c.handle_connected(now, h2, stats),
                    (Session::H2(_), None) => return Err(Reason::NotH2),
                },
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // A spurious wakeup: the handshake is still under way.
                    slot.writable = false;
                    slot.readable = false;
                    return Ok(());
                }
                Err(e) => return Err(Reason::from_connect(&e)),
            }
        }
        if let Some(tls) = slot.tls.as_deref_mut() {
            // The handshake's records (and anything rustls holds) go out first.
            match tls_flush(&mut slot.sock, tls) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Reason::from_io(&e)),
            }
        }
        slot.write_pending(setup)?;
        let result = slot.read(buf, setup, stats, now);
        if result.is_err() && matches!(slot.session, Session::H1 { .. }) {
            return result;
        }
        // HTTP/2: what the reads queued (acks, window updates, a GOAWAY before closing).
        let written = slot.write_pending(setup);
        result.and(written)
    }

    /// Writes what the connection has to send while the socket takes it.
    fn write_pending(&mut self, setup: &Setup) -> Result<(), Reason> {
        while self.writable {
            let out = match &self.session {
                Session::H1 { stream, request } => stream.pending(&setup.requests[*request]),
                Session::H2(c) => c.pending(),
            };
            let Some(out) = out else {
                break;
            };
            match sock_write(&mut self.sock, self.tls.as_deref_mut(), out) {
                Ok(0) => return Err(Reason::Reset),
                Ok(n) => match &mut self.session {
                    Session::H1 { stream, .. } => stream.on_sent(n),
                    Session::H2(c) => c.on_sent(n),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Reason::from_io(&e)),
            }
        }
        Ok(())
    }

    /// Reads while the socket has bytes and the connection wants them.
    fn read(
        &mut self,
        buf: &mut [u8],
        setup: &Setup,
        stats: &mut Stats,
        now: Time,
    ) -> Result<(), Reason> {
        loop {
            if !self.readable {
                return Ok(());
            }
            let limit = match &self.session {
                Session::H1 { stream, .. } if stream.wants_read() => {
                    stream.read_limit(&setup.conn).min(buf.len())
                }
                Session::H2(c) if c.wants_read() => buf.len(),
                _ => return Ok(()),
            };
            match sock_read(&mut self.sock, self.tls.as_deref_mut(), &mut buf[..limit]) {
                Ok(0) => {
                    return Err(match &self.session {
                        Session::H1 { stream, .. } => stream.handle_eof(),
                        Session::H2(c) => c.handle_eof(),
                    })
                }
                Ok(n) => {
                    self.check_alpn()?;
                    match (&mut self.session, &setup.h2) {
                        (Session::H1 { stream, .. }, _) => {
                            stream.handle_input(&buf[..n], now, &setup.conn, stats)?
                        }
                        (Session::H2(c), Some((_, h2))) => {
                            c.handle_input(&buf[..n], now, h2, stats)?
                        }
                        (Session::H2(_), None) => return Err(Reason::NotH2),
                    }
                    // Over TLS a short read of plaintext says nothing of the socket.
                    if n < limit && !self.read_closed && self.tls.is_none() {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.check_alpn()?;
                    self.readable = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(self.session, Session::H2(_)) && no_h2_alpn(&e) => {
                    return Err(Reason::NotH2)
                }
                Err(e) => return Err(Reason::from_io(&e)),
            }
        }
    }

    /// `--h2` over TLS: once the handshake is done, the server must have picked `h2`.
    fn check_alpn(&mut self) -> Result<(), Reason> {
        if self.alpn_checked || !matches!(self.session, Session::H2(_)) {
            return Ok(());
        }
        let Some(tls) = self.tls.as_deref() else {
            return Ok(());
        };
        if tls.is_handshaking() {
            return Ok(());
        }
        self.alpn_checked = true;
        if tls.alpn_protocol() != Some(b"h2") {
            return Err(Reason::NotH2);
        }
        Ok(())
    }
}

/// Whether a TLS error is the server's refusal of every protocol offered (only `h2` is, with
/// `--h2`): the `no_application_protocol` alert.
fn no_h2_alpn(e: &io::Error) -> bool {
    use rustls::AlertDescription::NoApplicationProtocol;
    matches!(
        e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(NoApplicationProtocol))
            | Some(rustls::Error::NoApplicationProtocol)
    )
}

/// A nonblocking connect to `target`, from `source` when given. With a source, the socket is
/// bound with `IP_BIND_ADDRESS_NO_PORT` so the kernel picks the port at connect time, per
/// (source, destination) pair, instead of reserving one per socket at bind time: that is what
/// lets N sources carry N times the ephemeral-port range.
fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

fn set_bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local, on a descriptor
    // the socket owns for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

use crate::util::sys::rusage;

/// An `https://` target: the client configuration (trusting `--tls-ca`) and the name the
/// server's certificate must carry.
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// A session for a new connection (`None` only if rustls refuses the configuration).
    fn session(&self) -> Option<Box<ClientConnection>> {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .ok()
            .map(Box::new)
    }
}

/// The client configuration trusting the CA certificates in `ca` (PEM).
fn client_config(ca: &std::path::Path) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--tls-ca {}: {e}", ca.display()),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| bad(format!("{e:?}")))?
    {
        let cert = cert.map_err(|e| bad(format!("{e:?}")))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the target's certificate must carry: its host (`localhost` or the IP literal).
fn server_name(
    t: &crate::load::target::Target,
) -> io::Result<rustls::pki_types::ServerName<'static>> {
    let host = match t.host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => t.host.as_str(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", t.url)))
}

/// Writes what the TLS session holds, until it is empty (`WouldBlock` when the socket is full).
fn tls_flush(sock: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        if tls.write_tls(sock)? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// `write` on the socket, or through its TLS session: the plaintext is taken by the session
/// (which holds it during the handshake) and as many records as the socket takes are written.
fn sock_write(
    sock: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    data: &[u8],
) -> io::Result<usize> {
    let Some(tls) = tls else {
        return sock.write(data);
    };
    let n = tls.writer().write(data)?;
    match tls_flush(sock, tls) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => {}
        Err(e) => return Err(e),
    }
    if n == 0 && !data.is_empty() {
        // The session's buffer is full until the socket takes its records.
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// `read` on the socket, or through its TLS session: records are read and processed (the
/// handshake's answers written) until plaintext comes, the socket would block, or it ends.
fn sock_read(
    sock: &mut TcpStream,
    tls: Option<&mut ClientConnection>,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(tls) = tls else {
        return sock.read(buf);
    };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        match tls_flush(sock, tls) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::target::parse_url;

    #[test]
    fn plans_split_the_work() {
        let cfg = LoadConfig {
            connections: 10,
            threads: 3,
            rate: 300.0,
            max_inflight: 30,
            ..LoadConfig::default()
        };
        let plans: Vec<Plan> = (0..3).map(|i| Plan::for_loop(&cfg, i)).collect();
        assert_eq!(plans.iter().map(|p| p.count).sum::<usize>(), 10);
        assert_eq!(plans[0].count, 4);
        assert!((plans.iter().map(|p| p.rate).sum::<f64>() - 300.0).abs() < 1e-9);
        assert!(plans.iter().all(|p| p.max_inflight >= 9 && p.stride == 3));
    }

    #[test]
    fn a_refused_run_reports_failures() {
        // Bind a port and drop the listener: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let cfg = LoadConfig {
            target: parse_url(&format!("http://127.0.0.1:{port}/sse")).unwrap(),
            connections: 20,
            duration: Duration::from_millis(300),
            rate: 0.0,
            ..LoadConfig::default()
        };
        let report = run(&cfg, |_| {}).unwrap();
        assert_eq!(report.stats.failed.get(&Reason::ConnectRefused), Some(&20));
        assert_eq!(report.stats.established, 0);
    }
}
