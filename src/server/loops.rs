//! The event loops: the only code that touches sockets, `mio` and clocks.
//!
//! [`Server::start`] binds one listener per loop (with `SO_REUSEPORT` when there are several, so
//! the kernel spreads connections) and runs each loop on its own thread. A loop owns its
//! connections (a slab indexed by token), one [`TimerWheel`] holding each connection's next
//! deadline, a read scratch buffer and a frame scratch buffer shared by all its connections,
//! its view of the hub (fan-out of published events to its own subscribers, in chunks), and
//! the queue of answers given later (publishes stored by Redis).
//!
//! Readiness: every socket is registered once for read and write, edge-triggered. An event only
//! sets the slot's `readable`/`writable` flags; an operation clears a flag when it meets
//! `WouldBlock`. What the loop actually does is derived from the connection's state
//! ([`Conn::wants_read`], [`Conn::poll_transmit`]), never tracked on the side, and no interest is
//! ever re-registered: a stream costs no `epoll_ctl` after its accept.
//!
//! **Invariant:** after any call into a [`Conn`], the loop writes what it produced, then re-arms
//! the connection's timer from [`Conn::timeout`], or removes the connection when it is closed.
//! **Invariant:** every wait has a deadline: a connection without one is a bug, asserted in
//! debug builds.

use crate::app::routes::{self, App, Call, Peer};
use crate::app::static_files::StaticFiles;
use crate::core::conn::{Conn, Served};
use crate::core::ctx::{ConnConfig, Ctx, Now, Rng};
use crate::core::metrics::Metrics;
use crate::core::reply::Reply;
use crate::core::reply::{Answer, Completion, Later};
use crate::core::tls::{Proto, Tls, MAX_ENCRYPT};
use crate::hub::history::{Hub, Ids, LocalHub};
use crate::server::config::Config;
use crate::server::listen::{bind, is_mapped_loopback};
pub use crate::server::setup::StartError;
use crate::server::setup::{
    epoch_tag, jwt_verifier, open_data_dir, render_redis, start_data_dir, start_redis,
};
use crate::server::tls::{server_config, Certs};
use crate::util::date::Dates;
use crate::util::log::{self, V};
use crate::util::slab::Slab;
use crate::util::sys;
use crate::util::timer::TimerWheel;
use crate::wire::head::Connection;
use crate::wire::http::Status;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// The connection accepted with the reserve descriptor, being told to come back later.
const SHED: Token = Token(usize::MAX - 2);
/// The HTTPS listener beside a plain one (`--tls-port`).
const TLS_LISTENER: Token = Token(usize::MAX - 3);
/// How long a shed connection's request line is waited for (see [`Shedding`]).
const SHED_WAIT_MS: u64 = 20;
/// Bytes read per `read` call; larger than any head the limits allow.
const READ_CHUNK: usize = 16 * 1024;
/// Connections accepted per readiness event before the loop serves others (fairness).
const ACCEPT_BUDGET: usize = 256;
/// How long accepting pauses when no file descriptor is left and none could be freed.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// Subscribers written to before the loop looks at other events again during a fan-out.
const FANOUT_CHUNK: usize = 64;
/// Timers fired between two readings of the clocks (a frame's date is at most this stale).
const CLOCK_REFRESH_EVERY: u32 = 4;

/// What every loop shares.
struct ServerState {
    conn: ConnConfig,
    sndbuf: Option<usize>,
    app: App,
    metrics: Metrics,
    stop: AtomicBool,
    grace_ms: u64,
    /// Timer wake-ups are aligned to multiples of this many milliseconds.
    slack_ms: u64,
    /// Number of event loops.
    loops: usize,
    hub: Arc<Hub>,
    /// The monotonic clock's zero, shared so that times taken on different loops compare.
    epoch: Instant,
    /// With `--tls-cert`: the TLS configuration of every session (its certificate resolver
    /// is `certs`, reread on SIGHUP).
    tls: Option<Arc<rustls::ServerConfig>>,
    certs: Option<Arc<Certs>>,
}

/// A running server: its loops and how to stop them.
pub struct Server {
    addr: SocketAddr,
    /// Where HTTPS listens: `addr` itself when only TLS is served.
    tls_addr: Option<SocketAddr>,
    /// Held while the server runs: see [`bind`].
    _lock: Option<std::os::unix::net::UnixDatagram>,
    _tls_lock: Option<std::os::unix::net::UnixDatagram>,
    shared: Arc<ServerState>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
    /// With `--data-dir`: stopped once the loops are (queued publishes written, a last sync).
    data_store: Option<Arc<crate::durable::writer::DurableStore>>,
}

impl Server {
    /// Binds the listeners and starts `config.threads` event loops.
    pub fn start(config: &Config) -> io::Result<Server> {
        // The certificate first: a bad one is the operator's first problem to hear about.
        let certs = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Certs::load(cert, key).map_err(|e| io::Error::other(StartError(e)))?)
            }
            (None, None) if config.tls_port.is_some() => {
                return Err(io::Error::other(StartError(
                    "--tls-port needs --tls-cert and --tls-key".into(),
                )))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(io::Error::other(StartError(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                )))
            }
            (None, Some(_)) => {
                return Err(io::Error::other(StartError(
                    "--tls-key needs --tls-cert (the certificate chain)".into(),
                )))
            }
        };
        let tls = match &certs {
            Some(c) => Some(server_config(c.clone()).map_err(|e| io::Error::other(StartError(e)))?),
            None => None,
        };
        let files = match &config.www {
            Some(dir) => StaticFiles::dir(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("--www {}: {e}", dir.display())))?,
            None => StaticFiles::embedded(),
        };
        let threads = config.threads.max(1);
        let max_streams = config.effective_max_streams(sys::fd_limit());
        let wakers_cell: Arc<std::sync::OnceLock<Vec<Arc<Waker>>>> = Arc::default();
        let notify = {
            let cell = wakers_cell.clone();
            Box::new(move |i: usize| {
                if let Some(w) = cell.get().and_then(|ws| ws.get(i)) {
                    let _ = w.wake();
                }
            })
        };
        // The data dir is read back first: its ids keep the epoch it was created with.
        let data = match &config.data_dir {
            Some(dir) => Some(open_data_dir(dir, config)?),
            None => None,
        };
        let ids = match (&config.redis, &data) {
            (Some(_), _) => Ids::Redis,
            (None, Some(d)) => Ids::Local {
                epoch: d.epoch().to_string(),
            },
            (None, None) => Ids::Local { epoch: epoch_tag() },
        };
        let hub = Arc::new(Hub::with_ids(config.hub, ids, threads, notify));
        if config.subscriptions {
            // Before the shared store's backfill is read: its subscription events count.
            hub.enable_presence(crate::server::setup::instance_tag());
        }
        let metrics = Metrics::new(threads, max_streams);
        {
            let hub = hub.clone();
            metrics.set_history_probe(Box::new(move || hub.retained()));
        }
        let mut app = App::new(files);
        app.publish_token = config.publish_token.clone();
        app.jwt = jwt_verifier(config)?;
        app.cors_origins = config.cors_origins.clone();
        app.private_topics =
            crate::hub::jwt::Selectors::new(config.private_topics.iter().map(String::as_str));
        if let Some(url) = &config.redis {
            let bridge = start_redis(url, config, &hub)?;
            let stats = bridge.clone();
            metrics.set_extra(Box::new(move |out| render_redis(out, &stats.stats())));
            metrics.set_publish_store("redis");
            app.store = Some(bridge.clone());
            if config.subscriptions {
                let key = crate::redis::bridge::BridgeConfig::DEFAULT_KEY;
                crate::redis::presence::start(url, key, &hub, bridge.clone())
                    .map_err(|e| io::Error::other(format!("--subscriptions with --redis: {e}")))?;
            }
            app.bridge = Some(bridge);
        }
        let mut data_store = None;
        if let Some(opening) = data {
            let store = start_data_dir(opening, config, &hub)?;
            let stats = store.clone();
            metrics.set_extra(Box::new(move |out| {
                crate::durable::writer::render(out, &stats.stats())
            }));
            metrics.set_publish_store("data-dir");
            app.store = Some(store.clone());
            data_store = Some(store);
        }
        let shared = Arc::new(ServerState {
            conn: config.conn.clone(),
            sndbuf: config.sndbuf,
            app,
            metrics,
            stop: AtomicBool::new(false),
            grace_ms: config.shutdown_grace_ms,
            slack_ms: config.timer_slack_ms(),
            loops: threads,
            hub,
            epoch: Instant::now(),
            tls,
            certs,
        });
        // `/metrics` reads the descriptor count this thread takes once a second.
        sys::start_fd_sampler();
        let (listeners, lock) = bind(SocketAddr::new(config.bind, config.port), threads)?;
        let addr = listeners[0].local_addr()?;
        // HTTPS beside plain HTTP (`--tls-port`), or instead of it (only the certificate).
        let (tls_listeners, tls_lock, tls_addr, main_is_tls) = match config.tls_port {
            Some(p) if shared.tls.is_some() => {
                let (ls, lock) = bind(SocketAddr::new(config.bind, p), threads)?;
                let a = ls[0].local_addr()?;
                (
                    ls.into_iter().map(Some).collect::<Vec<_>>(),
                    lock,
                    Some(a),
                    false,
                )
            }
            _ if shared.tls.is_some() => {
                ((0..threads).map(|_| None).collect(), None, Some(addr), true)
            }
            _ => ((0..threads).map(|_| None).collect(), None, None, false),
        };
        let mut loops = Vec::with_capacity(threads);
        for (i, (listener, tls_listener)) in listeners.into_iter().zip(tls_listeners).enumerate() {
            let listeners = Listeners {
                main: listener,
                main_is_tls,
                tls: tls_listener,
            };
            loops.push(EventLoop::new(i, listeners, shared.clone())?);
        }
        let wakers: Vec<Arc<Waker>> = loops.iter().map(|l| l.waker.clone()).collect();
        let _ = wakers_cell.set(wakers.clone());
        let threads = loops
            .into_iter()
            .map(|l| {
                std::thread::Builder::new()
                    .name(format!("sse-loop-{}", l.id))
                    .spawn(move || {
                        // A loop that panicked would leave a silent half-server: its streams
                        // gone, its share of connections still routed to it by the kernel.
                        // Stop the whole process, loudly (the panic message is printed first).
                        let id = l.id;
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.run()))
                            .is_err()
                        {
                            eprintln!("sse-server: event loop {id} panicked; exiting");
                            std::process::exit(70);
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Server {
            addr,
            tls_addr,
            _lock: lock,
            _tls_lock: tls_lock,
            shared,
            wakers,
            threads,
            data_store,
        })
    }

    /// The address the listeners are bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where HTTPS listens, if anywhere (the same as [`local_addr`](Self::local_addr) when
    /// only HTTPS is served).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Whether the plain listener serves HTTPS (only the certificate flags were given).
    pub fn tls_only(&self) -> bool {
        self.tls_addr == Some(self.addr)
    }

    /// Rereads the certificate and key (SIGHUP): new handshakes get the new pair, established
    /// sessions go on; on error the old pair stays. `None` without TLS.
    pub fn reload_tls(&self) -> Option<Result<(), String>> {
        self.shared.certs.as_ref().map(|c| c.reload())
    }

    /// The certificate file, with TLS.
    pub fn tls_cert_path(&self) -> Option<&std::path::Path> {
        self.shared.certs.as_ref().map(|c| c.cert_path())
    }

    /// The most concurrent streams this server admits.
    pub fn max_streams(&self) -> usize {
        self.shared.metrics.admission().max()
    }

    /// The hub every loop shares.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// Asks every loop to stop: no more accepts, streams end with a `retry:`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// Waits for every loop to finish.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(store) = &self.data_store {
            store.stop();
        }
    }
}

/// A connection accepted with the reserve descriptor while out of descriptors, waiting (at
/// most [`SHED_WAIT_MS`], without the loop waiting: it is registered like any socket) for its
/// request line, whose target says whether it gets a stream's `retry:` or a `503`.
struct Shedding {
    sock: TcpStream,
    line: [u8; 512],
    n: usize,
    deadline: u64,
}

/// What [`EventLoop::shed_one`] managed.
enum Shed {
    /// A waiting client was told to come back later.
    Answered,
    /// No connection was waiting.
    NothingWaiting,
    /// No reserve descriptor to spend.
    NoReserve,
}

/// One connection's socket, protocol state and remembered readiness.
struct Slot {
    sock: TcpStream,
    conn: Conn,
    readable: bool,
    writable: bool,
    /// The peer is on loopback (may publish without a token).
    loopback: bool,
    /// The connection came in on an HTTPS listener: its TLS session is the loop's
    /// `sessions[k]` (a plain connection pays this byte of padding, no more).
    tls: bool,
}

// What ARCHITECTURE.md says an idle stream costs in the slab: a slot (socket, connection,
// readiness and TLS flags), as the slab stores it, is 64 bytes at most (80 in debug builds,
// where mio's socket also carries a 12-byte selector id). TLS sessions live beside the slab
// (`EventLoop::sessions`), so a plain connection carries no pointer to one.
const _: () =
    assert!(std::mem::size_of::<Option<Slot>>() <= if cfg!(debug_assertions) { 80 } else { 64 });

/// The HTTPS connections' TLS sessions, indexed by slab key: empty until the loop accepts a TLS
/// connection, then as long as the highest key one had (a pointer per key, `None` for plain
/// ones), so a server without TLS pays nothing and no lookup hashes.
#[derive(Default)]
struct Sessions(Vec<Option<Box<Tls>>>);

impl Sessions {
    fn insert(&mut self, k: usize, tls: Box<Tls>) {
        if self.0.len() <= k {
            self.0.resize_with(k + 1, || None);
        }
        self.0[k] = Some(tls);
    }

    /// The session of TLS slot `k`. A slot marked TLS always has one (set before the slot is
    /// driven, dropped with it); `None` would be a bug, handled as a closed connection.
    fn get(&mut self, k: usize) -> Option<&mut Tls> {
        self.0.get_mut(k).and_then(|t| t.as_deref_mut())
    }

    fn remove(&mut self, k: usize) {
        if let Some(t) = self.0.get_mut(k) {
            *t = None;
        }
    }
}

/// The listeners a loop accepts from.
struct Listeners {
    main: TcpListener,
    /// `main` serves HTTPS (only the certificate flags were given).
    main_is_tls: bool,
    /// The HTTPS listener beside the plain one (`--tls-port`).
    tls: Option<TcpListener>,
}

/// One TLS connection's transport for one call of [`write_tls`] or [`read_tls`]: its socket,
/// the readiness flag the call spends (`writable` or `readable`), its session, and the time.
struct TlsIo<'a> {
    sock: &'a mut TcpStream,
    ready: &'a mut bool,
    tls: &'a mut Tls,
    now: Now,
}

/// The loop-owned things a connection borrows for one call.
struct LoopState {
    dates: Dates,
    rng: Rng,
    /// This loop's view of the hub.
    local: LocalHub,
    /// Streams ended during the last call, to log.
    ended: Vec<crate::core::ctx::StreamEnd>,
    /// Requests answered during the last call, to log.
    answered: Vec<crate::core::ctx::Answered>,
}

struct EventLoop {
    id: usize,
    poll: Poll,
    waker: Arc<Waker>,
    listener: Option<TcpListener>,
    /// The listener above serves HTTPS (only the certificate flags were given).
    listener_is_tls: bool,
    /// The HTTPS listener beside the plain one (`--tls-port`).
    tls_listener: Option<TcpListener>,
    shared: Arc<ServerState>,
    slab: Slab<Slot>,
    /// The TLS sessions of the slots marked `tls`, by slab key.
    sessions: Sessions,
    wheel: TimerWheel,
    read_buf: Box<[u8]>,
    /// Where a stream's source encodes what is due; written from here, so a frame written
    /// whole is never copied or allocated.
    scratch: Vec<u8>,
    /// Where a TLS connection's output is encrypted, written from here like `scratch`.
    tls_scratch: Vec<u8>,
    /// What the loop lends its connections (see [`ctx`]).
    st: LoopState,
    /// Where answers given later are sent (a sender to `completions`, and the waker); lent to
    /// the application with each request's [`Peer`].
    later: Later,
    /// Overload counters last logged (streams refused, connections shed) and when to look
    /// again: one line a second at most, however hard the storm.
    overload_seen: (u64, u64),
    overload_check_at: u64,
    /// Answers given later (publishes stored by the shared store) come back through here.
    completions: std::sync::mpsc::Receiver<Completion>,
    /// Slab keys of the subscribers new events concern, and how far the fan-out has gone.
    audience_at: usize,
    /// Scratch for the keys of the latest events (reused).
    audience_new: Vec<u32>,
    /// Slab keys of the subscribers a batch of published events concerns (reused).
    audience: Vec<u32>,
    /// More connections may be waiting in the backlog (budget ran out, or accepting paused).
    accept_again_at: Option<u64>,
    /// A descriptor held back so that, with none left, one connection can still be answered.
    reserve_fd: Option<std::fs::File>,
    /// The connection the reserve descriptor was spent on, until it is answered.
    shedding: Option<Box<Shedding>>,
    /// Shutting down: set once `stop` is seen, with the time by which to exit.
    drain_deadline: Option<u64>,
}

impl EventLoop {
    fn new(id: usize, listeners: Listeners, shared: Arc<ServerState>) -> io::Result<Self> {
        let Listeners {
            main: mut listener,
            main_is_tls: listener_is_tls,
            tls: mut tls_listener,
        } = listeners;
        let hub = shared.hub.clone();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(l) = tls_listener.as_mut() {
            poll.registry()
                .register(l, TLS_LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (id as u64) << 32;
        let (tx, completions) = std::sync::mpsc::channel();
        let later = {
            let waker = waker.clone();
            Later::new(
                tx,
                Arc::new(move || {
                    let _ = waker.wake();
                }),
            )
        };
        Ok(EventLoop {
            st: LoopState {
                dates: Dates::new(),
                rng: Rng::new(seed),
                local: {
                    let mut local = LocalHub::new(hub, id);
                    if let Some(n) = test_sweep_every() {
                        local.set_sweep_every(n);
                    }
                    local
                },
                ended: Vec::new(),
                answered: Vec::new(),
            },
            later,
            completions,
            overload_seen: (0, 0),
            overload_check_at: 0,
            id,
            poll,
            waker,
            listener: Some(listener),
            listener_is_tls,
            tls_listener,
            shared,
            slab: Slab::default(),
            sessions: Sessions::default(),
            wheel: TimerWheel::new(0),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            scratch: Vec::with_capacity(256),
            tls_scratch: Vec::new(),
            audience: Vec::new(),
            audience_at: 0,
            audience_new: Vec::new(),
            accept_again_at: None,
            reserve_fd: std::fs::File::open("/dev/null").ok(),
            shedding: None,
            drain_deadline: None,
        })
    }

    fn now(&self) -> Now {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let us = self.shared.epoch.elapsed().as_micros() as u64;
        Now {
            ms: us / 1000,
            unix_ms,
            us,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // Events stored before this loop could be woken (the shared store's backfill arrives
        // while the loops are being built): take them now, which also re-arms the wake-up.
        self.fan_out();
        loop {
            let now = self.now();
            if let Some(deadline) = self.drain_deadline {
                if self.slab.is_empty() {
                    return;
                }
                if now.ms >= deadline {
                    self.abandon_all(now);
                    return;
                }
            }
            // A fan-out in progress: look at other events without waiting, then go on with it.
            let timeout = if self.audience.is_empty() {
                self.poll_timeout(now.ms)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("sse-server: loop {}: poll failed: {e}", self.id);
                return;
            }
            let now = self.now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now),
                    TLS_LISTENER => self.accept_tls(now),
                    SHED => self.read_shed(now),
                    WAKER => {
                        self.check_stop(now);
                        self.complete_later(now);
                        self.fan_out();
                    }
                    Token(k) => {
                        if let Some(slot) = self.slab.get_mut(k) {
                            // Errors and hang-ups surface through the next read or write.
                            slot.readable |=
                                ev.is_readable() || ev.is_read_closed() || ev.is_error();
                            slot.writable |=
                                ev.is_writable() || ev.is_write_closed() || ev.is_error();
                            self.drive(k, now);
                        }
                    }
                }
            }
            self.fire_timers();
            if self.shedding.as_ref().is_some_and(|s| now.ms >= s.deadline) {
                self.finish_shed(now);
            }
            if !self.audience.is_empty() {
                self.fan_out_some();
            }
            self.each_second();
            if self.st.local.sweep_due() {
                let slab = &self.slab;
                self.st.local.sweep(|k, g| alive(slab, k, g));
            }
            let now = self.now();
            if self.accept_again_at.is_some_and(|t| now.ms >= t) {
                self.accept_again_at = None;
                self.accept(now);
            }
        }
    }

    fn poll_timeout(&self, now: u64) -> Option<Duration> {
        // Ticks due within one slack period share a wake-up: fewer wake-ups of this loop and of
        // the clients it writes to, at the price of a frame up to `slack_ms` late, never early.
        // Each loop's grid is offset by its share of the period, so that several loops do not
        // burst into the same clients at the same instant.
        let slack = self.shared.slack_ms.max(1);
        let offset = self.id as u64 * slack / self.shared.loops as u64;
        let timers = self
            .wheel
            .next_wakeup()
            .map(|t| (t + slack - offset).div_ceil(slack) * slack + offset - slack);
        // Loop 0 wakes once a second at least, to sample the figures.
        let second = (self.id == 0).then_some(self.overload_check_at);
        let shed = self.shedding.as_ref().map(|s| s.deadline);
        let candidates = [
            timers,
            self.accept_again_at,
            self.drain_deadline,
            second,
            shed,
        ];
        let next = candidates.into_iter().flatten().min()?;
        Some(Duration::from_millis(next.saturating_sub(now)))
    }

    fn fire_timers(&mut self) {
        let mut now = self.now();
        let mut since_refresh = 0;
        while let Some(k) = self.wheel.pop_expired(now.ms) {
            since_refresh += 1;
            if since_refresh == CLOCK_REFRESH_EVERY {
                since_refresh = 0;
                now = self.now();
            }
            self.on_timer(k, now);
        }
    }

    /// Once a second: loop 0 samples the figures of `/metrics/stream` (a small `/proc` read and
    /// `getrusage`, here rather than on a thread of their own, whose allocator arena alone
    /// would cost more memory than a thousand streams); every loop logs overload if any.
    fn each_second(&mut self) {
        let now = self.now();
        if now.ms < self.overload_check_at {
            return;
        }
        self.overload_check_at = now.ms + 1000;
        if self.id == 0 {
            self.shared.metrics.sample(now.unix_ms, &sys::light_stats());
        }
        let shard = self.shared.metrics.shard(self.id);
        let seen = (shard.streams_rejected.get(), shard.streams_shed.get());
        if seen != self.overload_seen {
            log::line(
                "overload",
                &[
                    ("loop", V::N(self.id as u64)),
                    ("streams_refused", V::N(seen.0 - self.overload_seen.0)),
                    ("shed_out_of_files", V::N(seen.1 - self.overload_seen.1)),
                    (
                        "streams_open",
                        V::N(self.shared.metrics.streams_open() as u64),
                    ),
                ],
            );
            self.overload_seen = seen;
        }
    }

    /// Hands answers given later to their connections (if still there): replies to requests
    /// answered `Pending`, and pages of the shared store for replaying streams.
    fn complete_later(&mut self, now: Now) {
        self.later.rearm();
        while let Ok(done) = self.completions.try_recv() {
            let shared = &*self.shared;
            let Some(slot) = self.slab.get_mut(done.key) else {
                continue;
            };
            let draining = phase(&self.drain_deadline);
            let mut ctx = ctx(shared, self.id, &mut self.st, draining);
            match done.answer {
                Answer::Reply(reply) => slot.conn.complete(done.ticket, reply, now, &mut ctx),
                Answer::Page(page) => slot.conn.page(done.ticket, page, now, &mut ctx),
            }
            self.drive(done.key, now);
        }
    }

    /// Mirrors newly published events and hands them to this loop's subscribers.
    fn fan_out(&mut self) {
        if let Some((first, last)) = self.st.local.sync() {
            let slab = &self.slab;
            let mut more = std::mem::take(&mut self.audience_new);
            self.st
                .local
                .audience(first, last, |k, g| alive(slab, k, g), &mut more);
            // A subscriber already waiting its turn is served everything new then: its cursor
            // takes all of it in one write, and a second visit finds nothing to do.
            self.audience.extend_from_slice(&more);
            more.clear();
            self.audience_new = more;
        }
        self.fan_out_some();
    }

    /// Drives the next [`FANOUT_CHUNK`] subscribers waiting for new events; the loop comes
    /// back for the rest after serving whatever else is ready (so a publish or a page request
    /// on this loop waits for one chunk, not for the whole fan-out).
    fn fan_out_some(&mut self) {
        let keys = std::mem::take(&mut self.audience);
        let end = (self.audience_at + FANOUT_CHUNK).min(keys.len());
        let mut now = self.now();
        for (i, &k) in keys[self.audience_at..end].iter().enumerate() {
            if i % 64 == 63 {
                // A long fan-out: keep the times taken for latency figures honest.
                now = self.now();
            }
            self.drive(k as usize, now);
        }
        self.audience = keys;
        self.audience_at = end;
        if end >= self.audience.len() {
            self.audience.clear();
            self.audience_at = 0;
        }
        let cache = self.st.local.take_match_stats();
        if cache != crate::hub::selector::CacheStats::default() {
            let shard = self.shared.metrics.shard(self.id);
            shard.selector_cache_hits.add(cache.hits);
            shard.selector_cache_misses.add(cache.misses);
            shard.selector_cache_evictions.add(cache.evictions);
        }
    }

    fn on_timer(&mut self, k: usize, now: Now) {
        let shared = &*self.shared;
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        let draining = phase(&self.drain_deadline);
        let mut ctx = ctx(shared, self.id, &mut self.st, draining);
        slot.conn.handle_timeout(now, &mut ctx);
        self.drive(k, now);
    }

    /// Moves a connection as far as its readiness allows: writes what it has to write, reads
    /// input, answers complete requests, repeats while any of these makes progress; then
    /// re-arms its timer or removes it.
    fn drive(&mut self, k: usize, now: Now) {
        let shared = &*self.shared;
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        let draining = phase(&self.drain_deadline);
        let mut ctx = ctx(shared, self.id, &mut self.st, draining);
        let conn = &mut slot.conn;
        // The one test the plain path pays for TLS: a flag in the slot's padding. A TLS slot
        // without its session (a bug) is closed rather than served in the clear.
        let mut tls = if slot.tls { self.sessions.get(k) } else { None };
        if slot.tls && tls.is_none() {
            debug_assert!(false, "TLS slot {k} has no session");
            conn.abort(&mut ctx);
        }
        loop {
            // Answers are logged before they are written: once written, the client may close
            // and take its address with it.
            if !ctx.answered.is_empty() {
                log_answered(ctx.answered, &slot.sock);
            }
            let mut progress = false;
            if let Some(tls) = tls.as_deref_mut() {
                let io = TlsIo {
                    sock: &mut slot.sock,
                    ready: &mut slot.writable,
                    tls,
                    now,
                };
                match write_tls(
                    io,
                    conn,
                    &mut ctx,
                    (&mut self.scratch, &mut self.tls_scratch),
                ) {
                    Ok(p) => progress |= p,
                    Err(()) => conn.abort(&mut ctx),
                }
            }
            while slot.writable && !slot.tls {
                let Some([a, b]) = conn.poll_transmit(now, &mut ctx, &mut self.scratch) else {
                    break;
                };
                // A frame is one slice: plain write(2), which the kernel serves with less work
                // than writev(2) (no iovec to import); a head and a body go out together.
                let written = if b.is_empty() {
                    slot.sock.write(a)
                } else {
                    slot.sock
                        .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                };
                let (n, wrote) = match written {
                    Ok(0) => (0, Err(())),
                    Ok(n) => (n, Ok(true)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => (0, Ok(true)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        slot.writable = false;
                        (0, Ok(false))
                    }
                    Err(_) => (0, Err(())),
                };
                // Reported even for 0 bytes: what the source encoded is kept, not lost.
                conn.on_sent(n, &self.scratch, now, &mut ctx);
                match wrote {
                    Ok(again) => {
                        progress |= n > 0;
                        if !again {
                            break;
                        }
                    }
                    Err(()) => {
                        conn.abort(&mut ctx);
                        break;
                    }
                }
            }
            if conn.take_shutdown() {
                // Over TLS the `close_notify` goes out first; the write side is shut once it has.
                if tls.as_deref_mut().is_some_and(|tls| !tls.close()) {
                    progress = true;
                } else {
                    let _ = slot.sock.shutdown(Shutdown::Write);
                }
            }
            if let Some(tls) = tls.as_deref_mut() {
                if slot.readable && conn.wants_read() {
                    let io = TlsIo {
                        sock: &mut slot.sock,
                        ready: &mut slot.readable,
                        tls,
                        now,
                    };
                    progress |= read_tls(io, conn, &mut ctx, &mut self.read_buf);
                }
            } else if slot.readable && conn.wants_read() {
                let limit = conn.read_limit(&shared.conn).min(self.read_buf.len());
                match slot.sock.read(&mut self.read_buf[..limit]) {
                    Ok(0) => conn.handle_eof(&mut ctx),
                    Ok(n) => conn.handle_input(&self.read_buf[..n], now, &mut ctx),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.readable = false,
                    Err(_) => conn.abort(&mut ctx),
                }
                progress |= slot.readable;
            }
            let app = &shared.app;
            let peer = Peer {
                loopback: slot.loopback,
                key: k,
                later: &self.later,
            };
            let served = conn.serve(now, &mut ctx, |req, body, ctx| {
                let call = Call {
                    app,
                    req,
                    peer,
                    now,
                };
                routes::route(call, body, ctx)
            });
            progress |= served.progress();
            // The one place a connection that became a stream is registered: its topics in
            // this loop's index (in the step the hub decided them, so no sweep comes between),
            // then its presence (`--subscriptions`), so a subscriber to its own presence hears
            // it too.
            if let Served::Stream(new) = served {
                if let Some(topics) = new.topics {
                    ctx.hub.register(topics, k);
                }
                if let Some(joining) = new.joining {
                    let joined = ctx.hub.presence_started(k, *joining);
                    publish_presence(shared, joined, now);
                }
            }
            if conn.is_closed() || !progress {
                break;
            }
        }
        if !self.st.answered.is_empty() {
            log_answered(&mut self.st.answered, &slot.sock);
        }
        if !self.st.ended.is_empty() {
            log_ended(&mut self.st.ended, &slot.sock, now);
        }
        let conn = &mut slot.conn;
        // A replaying stream whose last page is written asks for its next one; the read runs
        // on the bridge's range thread and the page comes back through `later`.
        let want = {
            let draining = phase(&self.drain_deadline);
            conn.page_request(&mut self::ctx(shared, self.id, &mut self.st, draining))
        };
        if let Some(want) = want {
            let done = self.later.page_done(k, want.ticket);
            ask_page(shared, &self.st.local, want, done);
        }
        let conn = &mut slot.conn;
        // A stream with a presence that is no longer one (closed, drained, abandoned): its
        // `active: false` events.
        if !conn.is_stream() && self.st.local.is_present(k) {
            let left = self.st.local.presence_ended(k);
            publish_presence(shared, left, now);
        }
        if conn.is_closed() {
            self.remove(k);
            return;
        }
        let deadline = conn.timeout();
        debug_assert!(
            deadline.is_some(),
            "a live connection always has a deadline: {conn:?}"
        );
        match deadline {
            Some(d) if self.wheel.deadline(k) != Some(d) => self.wheel.arm(k, d),
            Some(_) => {}
            None => self.wheel.cancel(k),
        }
    }

    fn remove(&mut self, k: usize) {
        self.wheel.cancel(k);
        if self.st.local.is_present(k) {
            let left = self.st.local.presence_ended(k);
            let now = self.now();
            publish_presence(&self.shared, left, now);
        }
        if let Some(mut slot) = self.slab.remove(k) {
            let _ = self.poll.registry().deregister(&mut slot.sock);
            let shard = self.shared.metrics.shard(self.id);
            shard.connections_closed.inc();
            if slot.tls {
                self.sessions.remove(k);
                shard.tls_connections_closed.inc();
            }
        }
        // A descriptor just came free: give the reserve and any waiting connections a go.
        if self.reserve_fd.is_none() {
            self.reserve_fd = std::fs::File::open("/dev/null").ok();
        }
        if self.accept_again_at.is_some() {
            self.accept_again_at = Some(0);
        }
    }

    fn accept(&mut self, now: Now) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let transport = match self.listener_is_tls {
            true => Transport::Tls,
            false => Transport::Plain,
        };
        self.accept_from(&listener, transport, now);
        self.listener = Some(listener);
        // Accepting again after a pause serves both listeners.
        if self.accept_again_at.is_none() {
            self.accept_tls(now);
        }
    }

    fn accept_tls(&mut self, now: Now) {
        let Some(listener) = self.tls_listener.take() else {
            return;
        };
        self.accept_from(&listener, Transport::Tls, now);
        self.tls_listener = Some(listener);
    }

    fn accept_from(&mut self, listener: &TcpListener, transport: Transport, now: Now) {
        let shared = self.shared.clone();
        let shard = shared.metrics.shard(self.id);
        for _ in 0..ACCEPT_BUDGET {
            match listener.accept() {
                Ok((sock, peer)) => {
                    shard.connections_total.inc();
                    let session = match &shared.tls {
                        Some(config) if transport == Transport::Tls => {
                            shard.tls_connections_total.inc();
                            match Tls::new(config.clone()) {
                                Ok(t) => Some(t),
                                Err(_) => {
                                    shard.tls_errors.inc();
                                    shard.tls_connections_closed.inc();
                                    shard.connections_closed.inc();
                                    continue;
                                }
                            }
                        }
                        _ => None,
                    };
                    self.add(sock, peer, session, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if sys::is_fd_exhaustion(&e) => {
                    // Linux reserves the descriptor before it looks at the queue, so this
                    // error does not even say a connection is waiting; `shed_one` finds out.
                    shard.accept_fd_exhausted.inc();
                    if transport == Transport::Tls {
                        // A plain answer means nothing to a TLS client: no shedding here,
                        // only the pause.
                        self.accept_again_at = Some(now.ms + ACCEPT_BACKOFF_MS);
                        return;
                    }
                    match self.shed_one(listener, now) {
                        Shed::Answered => {}
                        // The backlog is empty: the next connection raises a new edge.
                        Shed::NothingWaiting => return,
                        Shed::NoReserve => {
                            // Nothing can be answered now; try again when a descriptor frees
                            // up (see `remove`) or after a pause, but never spin.
                            self.accept_again_at = Some(now.ms + ACCEPT_BACKOFF_MS);
                            return;
                        }
                    }
                }
                Err(_) => {
                    // ECONNABORTED and friends: that one connection is gone, the listener is fine.
                    shard.accept_errors.inc();
                }
            }
        }
        // Budget spent: come back after serving the others.
        self.accept_again_at = Some(now.ms);
    }

    /// With no descriptor left, spends the reserve one on a waiting client, to tell it to
    /// come back later ([`Shedding`]); the reserve is taken back once it is answered. One at
    /// a time: while one is being answered there is no reserve.
    fn shed_one(&mut self, listener: &TcpListener, now: Now) -> Shed {
        if self.shedding.is_some() || self.reserve_fd.take().is_none() {
            return Shed::NoReserve;
        }
        let Ok((sock, _)) = listener.accept() else {
            self.reserve_fd = std::fs::File::open("/dev/null").ok();
            return Shed::NothingWaiting;
        };
        let mut shed = Box::new(Shedding {
            sock,
            line: [0; 512],
            n: 0,
            deadline: now.ms + SHED_WAIT_MS,
        });
        let registered = self
            .poll
            .registry()
            .register(&mut shed.sock, SHED, Interest::READABLE)
            .is_ok();
        self.shedding = Some(shed);
        if registered {
            // Its request line may be there already.
            self.read_shed(now);
        } else {
            self.finish_shed(now);
        }
        Shed::Answered
    }

    /// Reads what the shed connection sent; answers once its target is known (or nothing
    /// more will come).
    fn read_shed(&mut self, now: Now) {
        let Some(shed) = self.shedding.as_mut() else {
            return;
        };
        let done = loop {
            if shed.n == shed.line.len() || target(&shed.line[..shed.n]).is_some() {
                break true;
            }
            match shed.sock.read(&mut shed.line[shed.n..]) {
                Ok(0) => break true,
                Ok(k) => shed.n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if done {
            self.finish_shed(now);
        }
    }

    /// Answers the shed connection (a stream's jittered `retry:`, or `503` for anything else;
    /// a target still unknown counts as a stream, whose refusal an EventSource obeys and any
    /// other client reads as a close), closes it and takes the reserve descriptor back.
    fn finish_shed(&mut self, now: Now) {
        let Some(mut shed) = self.shedding.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut shed.sock);
        let wants_stream = match target(&shed.line[..shed.n]) {
            Some(t) => t.starts_with(b"/sse") || t.starts_with(b"/metrics/stream"),
            None => true,
        };
        let reply = if wants_stream {
            Reply::stream_refused(self.st.rng.jitter(self.shared.conn.reconnect_ms))
        } else {
            Reply::text(
                Status::ServiceUnavailable,
                "server out of files\n",
                &[("Retry-After", "5")],
            )
        };
        let mut answer = reply
            .head
            .finish(self.st.dates.http(now.unix_ms), Connection::Close);
        if let Some(body) = &reply.body {
            answer.extend_from_slice(body.bytes());
        }
        // One write into an empty socket buffer: a few hundred bytes always fit.
        let _ = shed.sock.write(&answer);
        let _ = shed.sock.shutdown(Shutdown::Write);
        drop(shed);
        self.shared.metrics.shard(self.id).streams_shed.inc();
        self.reserve_fd = std::fs::File::open("/dev/null").ok();
        // Others may be waiting in the backlog: go on accepting (and shedding) now.
        if self.accept_again_at.is_some() {
            self.accept_again_at = Some(0);
        }
    }

    fn add(&mut self, sock: TcpStream, peer: SocketAddr, session: Option<Box<Tls>>, now: Now) {
        let loopback = peer.ip().is_loopback() || is_mapped_loopback(&peer);
        let _ = sock.set_nodelay(true);
        if let Some(n) = self.shared.sndbuf {
            let _ = socket2::SockRef::from(&sock).set_send_buffer_size(n);
        }
        let conn = Conn::new(now, &self.shared.conn);
        let deadline = conn.timeout();
        let k = self.slab.insert(Slot {
            sock,
            conn,
            readable: false,
            writable: true,
            loopback,
            tls: session.is_some(),
        });
        if let Some(session) = session {
            self.sessions.insert(k, session);
        }
        let registry: &Registry = self.poll.registry();
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        if registry
            .register(
                &mut slot.sock,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            let tls = self.slab.remove(k).is_some_and(|s| s.tls);
            if tls {
                self.sessions.remove(k);
            }
            let shard = self.shared.metrics.shard(self.id);
            shard.connections_closed.inc();
            if tls {
                shard.tls_connections_closed.inc();
            }
            return;
        }
        if let Some(d) = deadline {
            self.wheel.arm(k, d);
        }
    }

    /// The grace is over: the event store takes no more writes (so a publish answered `503` here
    /// is never stored later), and every request still waiting for its answer, or still
    /// arriving, is answered `503` with `Retry-After`, written once before the loop ends.
    fn abandon_all(&mut self, now: Now) {
        if let Some(store) = &self.shared.app.store {
            store.stop_writes();
        }
        let keys: Vec<usize> = self.slab.keys().collect();
        for k in keys {
            let shared = &*self.shared;
            if let Some(slot) = self.slab.get_mut(k) {
                let mut ctx = ctx(shared, self.id, &mut self.st, Phase::Draining);
                slot.conn.abandon(now, &mut ctx);
            }
            self.drive(k, now);
        }
    }

    fn check_stop(&mut self, now: Now) {
        if self.drain_deadline.is_some() || !self.shared.stop.load(Ordering::SeqCst) {
            return;
        }
        self.drain_deadline = Some(now.ms + self.shared.grace_ms);
        self.finish_shed(now);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some(mut l) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.accept_again_at = None;
        let keys: Vec<usize> = self.slab.keys().collect();
        for k in keys {
            let shared = &*self.shared;
            if let Some(slot) = self.slab.get_mut(k) {
                let mut ctx = ctx(shared, self.id, &mut self.st, Phase::Draining);
                slot.conn.drain(now, &mut ctx);
            }
            self.drive(k, now);
        }
    }
}

/// Which listener a connection came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

/// Whether a loop is serving or draining (after SIGTERM: its streams get `retry:` and close),
/// from its drain deadline.
fn phase<T>(drain_deadline: &Option<T>) -> Phase {
    match drain_deadline {
        Some(_) => Phase::Draining,
        None => Phase::Serving,
    }
}

/// A loop's phase: serving, or draining after SIGTERM.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
}

/// The context lent to loop `id`'s connections.
fn ctx<'a>(shared: &'a ServerState, id: usize, st: &'a mut LoopState, phase: Phase) -> Ctx<'a> {
    let draining = phase == Phase::Draining;
    Ctx {
        cfg: &shared.conn,
        metrics: &shared.metrics,
        shard: shared.metrics.shard(id),
        dates: &mut st.dates,
        rng: &mut st.rng,
        hub: &mut st.local,
        ended: &mut st.ended,
        answered: &mut st.answered,
        draining,
    }
}

/// The target of a request line ("METHOD SP target SP"), once the second space has
/// arrived; `None` before.
fn target(line: &[u8]) -> Option<&[u8]> {
    let mut words = line.splitn(3, |&b| b == b' ');
    let _method = words.next()?;
    let target = words.next()?;
    words.next()?;
    Some(target)
}

/// Debug builds with `SSE_TEST_SWEEP_EVERY=n`: the topic index is swept every `n`
/// registrations, so tests can interleave sweeps with everything else in a short run.
fn test_sweep_every() -> Option<usize> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("SSE_TEST_SWEEP_EVERY").ok()?.parse().ok()
}

/// Asks the shared store for a replay's page, answered through `done` (`Err` at once without
/// one).
fn ask_page(
    shared: &ServerState,
    hub: &LocalHub,
    want: crate::core::stream::PageRequest,
    done: crate::redis::bridge::PageDone,
) {
    match &shared.app.bridge {
        Some(store) => match want.after_id {
            Some(id) => {
                store.range_after_publisher_id(id.into(), hub.hub.id(want.until), want.count, done)
            }
            None => store.range(
                hub.hub.id(want.after),
                hub.hub.id(want.until),
                want.count,
                done,
            ),
        },
        None => done(Err("no shared store".into())),
    }
}

/// The log lines of requests answered with their final status (a stream's request is logged
/// when the stream ends; an answer given later, when it is given).
fn log_answered(answered: &mut Vec<crate::core::ctx::Answered>, sock: &TcpStream) {
    if !log::connections() {
        answered.clear();
        return;
    }
    let peer = sock
        .peer_addr()
        .map_or_else(|_| "-".to_string(), |a| a.to_string());
    for a in answered.drain(..) {
        let status = a.status.code().to_string();
        log::line(
            "request",
            &[
                ("peer", V::S(&peer)),
                ("method", V::S(&a.line.method)),
                // The path only: a query may carry a token.
                ("path", V::S(&a.line.path)),
                ("status", V::S(&status)),
                ("bytes", V::N(a.bytes)),
            ],
        );
    }
}

/// The log lines of streams that ended.
fn log_ended(ended: &mut Vec<crate::core::ctx::StreamEnd>, sock: &TcpStream, now: Now) {
    let connections = log::connections();
    for e in ended.drain(..) {
        if !connections {
            continue;
        }
        let peer = sock
            .peer_addr()
            .map_or_else(|_| "-".to_string(), |a| a.to_string());
        let secs = (now.ms / 1000).saturating_sub(u64::from(e.opened_s));
        log::line(
            "stream",
            &[
                ("peer", V::S(&peer)),
                ("kind", V::S(e.kind)),
                ("duration_s", V::N(secs)),
                ("frames", V::N(e.frames)),
                ("end", V::S(e.why.as_str())),
            ],
        );
    }
}

/// Publishes subscription events (`--subscriptions`) as any publish is stored: through the
/// event store when there is one (answered on its thread; a refusal there is counted by the store
/// like any failed write), else into the history. Never waits.
fn publish_presence(shared: &ServerState, events: Vec<crate::hub::history::Publish>, now: Now) {
    for p in events {
        match &shared.app.store {
            Some(store) => store.submit(p, Box::new(|_| {})),
            None => {
                shared.hub.publish(&p, now.us);
            }
        }
    }
}

/// Whether slab key `k` holds a stream subscribed to local topic `topic` (`None`: to `*`).
fn alive(slab: &Slab<Slot>, k: u32, topic: Option<u32>) -> bool {
    slab.get(k as usize)
        .and_then(|s| s.conn.filter())
        .is_some_and(|f| f.names(topic))
}

/// Writes a TLS connection's output: first the records the socket refused before, then what
/// the connection has to write, encrypted into the loop's `enc` scratch and written from there
/// (one `write(2)` per frame, as on the plain path). Returns whether anything went out;
/// `Err` when the connection is gone.
///
/// What the connection is told keeps its rules (one pending tail, skipped ticks, the stall
/// timeout): records written whole are reported whole; when the socket refuses part of them,
/// the records are kept in the session and the connection is told all but the last byte was
/// written, so it holds a one-byte tail (and its stall deadline) until the records have gone,
/// and frames after the batch are neither encrypted nor lost. A response (the connection's own
/// pending tail) is encrypted [`MAX_ENCRYPT`] bytes at a time.
fn write_tls(
    io: TlsIo<'_>,
    conn: &mut Conn,
    ctx: &mut Ctx<'_>,
    (scratch, enc): (&mut Vec<u8>, &mut Vec<u8>),
) -> Result<bool, ()> {
    let TlsIo {
        sock,
        ready: writable,
        tls,
        now,
    } = io;
    let mut progress = false;
    while *writable {
        if !tls.pending().is_empty() {
            match sock.write(tls.pending()) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    progress = true;
                    if tls.on_written(n) {
                        let _ = sock.shutdown(Shutdown::Write);
                    }
                    conn.on_transport_progress(now, ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(_) => return Err(()),
            }
            continue;
        }
        if tls.held() > 0 {
            // The records holding the start of the connection's pending tail are out.
            if conn.poll_transmit(now, ctx, scratch).is_some() {
                conn.on_sent(tls.held(), scratch, now, ctx);
            }
            tls.clear_held();
            progress = true;
            continue;
        }
        if tls.is_handshaking() {
            break;
        }
        let capped = conn.output_pending();
        let Some([a, b]) = conn.poll_transmit(now, ctx, scratch) else {
            break;
        };
        let (a, b) = if capped && a.len() + b.len() > MAX_ENCRYPT {
            let in_a = a.len().min(MAX_ENCRYPT);
            (&a[..in_a], &b[..(MAX_ENCRYPT - in_a).min(b.len())])
        } else {
            (a, b)
        };
        let len = a.len() + b.len();
        if len == 0 {
            conn.on_sent(0, scratch, now, ctx);
            break;
        }
        if tls.encrypt([a, b], enc).is_err() {
            return Err(());
        }
        let mut w = 0;
        while w < enc.len() {
            match sock.write(&enc[w..]) {
                Ok(0) => return Err(()),
                Ok(n) => w += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *writable = false;
                    break;
                }
                Err(_) => return Err(()),
            }
        }
        progress |= w > 0;
        if w == enc.len() {
            conn.on_sent(len, scratch, now, ctx);
        } else {
            tls.keep_unwritten(&enc[w..], 1);
            conn.on_sent(len - 1, scratch, now, ctx);
        }
    }
    Ok(progress)
}

/// Reads a TLS connection's input: decrypted bytes the connection has not taken yet go first
/// (as many as it takes: its limits hold over TLS), then the socket, whose records run the
/// handshake (its flight is written by [`write_tls`]) or are decrypted for the connection.
/// Bytes that are not TLS, or a failed handshake, close the connection (counted). Returns
/// whether anything happened.
fn read_tls(io: TlsIo<'_>, conn: &mut Conn, ctx: &mut Ctx<'_>, read_buf: &mut [u8]) -> bool {
    let TlsIo {
        sock,
        ready: readable,
        tls,
        now,
    } = io;
    if tls.plaintext().is_empty() {
        if tls.peer_closed() {
            conn.handle_eof(ctx);
            return true;
        }
        let room = tls.room().min(read_buf.len());
        if room == 0 {
            return false;
        }
        match sock.read(&mut read_buf[..room]) {
            Ok(0) => {
                conn.handle_eof(ctx);
                return true;
            }
            Ok(n) => match tls.handle_tls(&read_buf[..n]) {
                Ok(established) => {
                    if established {
                        ctx.shard.tls_handshakes.inc();
                        // The negotiated protocol picks the codec: HTTP/1.1's `Conn` today.
                        match tls.proto() {
                            Some(Proto::Http1) | None => {}
                        }
                    }
                }
                Err(_) => {
                    ctx.shard.tls_errors.inc();
                    conn.abort(ctx);
                    return true;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                return false;
            }
            Err(_) => {
                conn.abort(ctx);
                return true;
            }
        }
    }
    let plain = tls.plaintext();
    let take = plain.len().min(conn.read_limit(ctx.cfg));
    if take > 0 {
        conn.handle_input(&plain[..take], now, ctx);
        tls.consume(take);
    }
    true
}
