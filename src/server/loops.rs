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
use crate::core::h2::{H2Config, H2Event, H2Request, H2};
use crate::core::h2map;
use crate::core::metrics::{Metrics, Timeout};
use crate::core::reply::Reply;
use crate::core::reply::{Answer, Completion, Later};
use crate::core::tls::{Proto, Tls, TlsError, MAX_ENCRYPT};
use crate::hub::backend::Wake;
use crate::hub::history::{Hub, Ids, LocalHub};
use crate::server::config::Config;
use crate::server::h2side::{self, H2Link, H2Table, Sub};
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
use crate::wire::h2::frame::{ErrorCode, StreamEnd};
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
    /// What each h2 connection's engine is built with.
    h2: H2Config,
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
        // The hub wakes loop `i` through the same `Wake` as the loop's answers given later, so
        // that a backend handing over a batch wakes each loop once (`with_wakes_held`).
        let wakes_cell: Arc<std::sync::OnceLock<Vec<Wake>>> = Arc::default();
        let notify = {
            let cell = wakes_cell.clone();
            Box::new(move |i: usize| {
                if let Some(w) = cell.get().and_then(|ws| ws.get(i)) {
                    crate::hub::backend::wake(w);
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
            h2: h2_config(config),
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
        let _ = wakes_cell.set(loops.iter().map(|l| l.later.wake().clone()).collect());
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

/// One connection's socket, protocol state and remembered readiness; or one h2 stream's
/// `Conn` (no socket: its connection's slot has it, see `server/h2side.rs`).
struct Slot {
    /// `None` for an h2 stream.
    sock: Option<TcpStream>,
    conn: Conn,
    readable: bool,
    writable: bool,
    /// The peer is on loopback (may publish without a token).
    loopback: bool,
    /// What the slot is (a plain connection pays this byte of padding, no more).
    kind: Kind,
}

/// What a slab slot holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A plain HTTP/1.1 connection.
    Plain,
    /// An HTTPS connection (HTTP/1.1, or still handshaking): its TLS session is the loop's
    /// `sessions[k]`.
    Tls,
    /// An h2 connection over plain TCP (prior knowledge): its engine is `h2.link(k)`, its
    /// `conn` is unused.
    H2,
    /// An h2 connection over TLS (ALPN `h2`): its session in `sessions`, its engine in `h2`.
    H2Tls,
    /// One h2 stream: `conn` serves it, `h2.parent(k)` is its connection.
    H2Stream,
}

impl Kind {
    fn is_tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::H2Tls)
    }

    fn is_h2_conn(self) -> bool {
        matches!(self, Kind::H2 | Kind::H2Tls)
    }
}

// What ARCHITECTURE.md says an idle stream costs in the slab: a slot (socket, connection,
// readiness flags and kind), as the slab stores it, is 64 bytes at most (80 in debug builds,
// where mio's socket also carries a 12-byte selector id). TLS sessions and h2 engines live
// beside the slab (`EventLoop::sessions`, `EventLoop::h2`), so a plain connection carries no
// pointer to one; an h2 stream's slot is the same size (its socket `None`).
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
    /// The h2 connections' engines and their streams' slots, by slab key.
    h2: H2Table,
    /// h2 connections whose streams queued frames since their last write (slab keys), and
    /// since when: flushed together, one write per connection for all its streams due.
    h2_dirty: Vec<u32>,
    h2_dirty_since: Option<u64>,
    /// The h2 connection being driven (its streams need not mark it dirty).
    h2_driving: Option<usize>,
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
        let wake: Wake = {
            let waker = waker.clone();
            Arc::new(move || {
                let _ = waker.wake();
            })
        };
        let later = Later::new(tx, wake);
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
            h2: H2Table::default(),
            h2_dirty: Vec::new(),
            h2_dirty_since: None,
            h2_driving: None,
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
            // h2 connections write what their streams queued, one write each; during a long
            // fan-out, at least every timer slack.
            if let Some(since) = self.h2_dirty_since {
                let now = self.now();
                if self.audience.is_empty() || now.ms >= since + self.shared.slack_ms.max(1) {
                    self.flush_h2_dirty(now);
                }
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
        if slot.kind.is_h2_conn() {
            return self.h2_timeout(k, now);
        }
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
        if slot.kind.is_h2_conn() {
            return self.drive_h2(k, now);
        }
        let draining = phase(&self.drain_deadline);
        let mut ctx = ctx(shared, self.id, &mut self.st, draining);
        let conn = &mut slot.conn;
        // The one test the plain path pays for TLS and h2: the slot's kind, in its padding.
        // A TLS slot without its session (a bug) is closed rather than served in the clear.
        let mut tls = if slot.kind == Kind::Tls {
            self.sessions.get(k)
        } else {
            None
        };
        if slot.kind == Kind::Tls && tls.is_none() {
            debug_assert!(false, "TLS slot {k} has no session");
            conn.abort(&mut ctx);
        }
        // An h2 stream writes into its connection's engine.
        let parent = match slot.kind {
            Kind::H2Stream => self.h2.parent(k),
            _ => None,
        };
        let mut link = match parent {
            Some(p) => self.h2.link(p),
            None => None,
        };
        if slot.kind == Kind::H2Stream && link.is_none() {
            debug_assert!(false, "h2 stream {k} has no connection");
            conn.abort(&mut ctx);
        }
        let peer = |sock: &Option<TcpStream>, link: &Option<&mut H2Link>| match link {
            Some(l) => Who::H2(l.peer),
            None => Who::Sock(sock.as_ref().and_then(|s| s.peer_addr().ok())),
        };
        let mut switch_h2 = false;
        loop {
            // Answers are logged before they are written: once written, the client may close
            // and take its address with it.
            if !ctx.answered.is_empty() {
                log_answered(ctx.answered, || peer(&slot.sock, &link));
            }
            let mut progress = false;
            if let Some(link) = link.as_deref_mut() {
                progress |= h2side::write_stream(link, k, conn, &mut ctx, &mut self.scratch, now);
            }
            if let (Some(tls), Some(sock)) = (tls.as_deref_mut(), slot.sock.as_mut()) {
                let io = TlsIo {
                    sock,
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
            while slot.writable && slot.kind == Kind::Plain {
                let Some(sock) = slot.sock.as_mut() else {
                    break;
                };
                let Some([a, b]) = conn.poll_transmit(now, &mut ctx, &mut self.scratch) else {
                    break;
                };
                // A frame is one slice: plain write(2), which the kernel serves with less work
                // than writev(2) (no iovec to import); a head and a body go out together.
                let written = if b.is_empty() {
                    sock.write(a)
                } else {
                    sock.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
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
            if link.is_none() && conn.take_shutdown() {
                // Over TLS the `close_notify` goes out first; the write side is shut once it has.
                if tls.as_deref_mut().is_some_and(|tls| !tls.close()) {
                    progress = true;
                } else if let Some(sock) = slot.sock.as_ref() {
                    let _ = sock.shutdown(Shutdown::Write);
                }
            }
            if let (Some(tls), Some(sock)) = (tls.as_deref_mut(), slot.sock.as_mut()) {
                if slot.readable && conn.wants_read() {
                    let io = TlsIo {
                        sock,
                        ready: &mut slot.readable,
                        tls,
                        now,
                    };
                    progress |= read_tls(io, conn, &mut ctx, &mut self.read_buf);
                }
                if tls.proto() == Some(Proto::H2) {
                    // ALPN chose h2: the engine takes the session's plaintext from here on.
                    self.scratch.clear();
                    switch_h2 = true;
                    break;
                }
            } else if slot.readable && slot.kind == Kind::Plain && conn.wants_read() {
                let Some(sock) = slot.sock.as_mut() else {
                    break;
                };
                let limit = conn.read_limit(&shared.conn).min(self.read_buf.len());
                match sock.read(&mut self.read_buf[..limit]) {
                    Ok(0) => conn.handle_eof(&mut ctx),
                    Ok(n) => {
                        // h2 with prior knowledge: a connection that starts with the preface
                        // (at a request's start) is h2 from here on.
                        if let Some(start) = conn
                            .unanswered_input()
                            .filter(|start| starts_h2(start, &self.read_buf[..n]))
                        {
                            self.scratch.clear();
                            self.scratch.extend_from_slice(start);
                            self.scratch.extend_from_slice(&self.read_buf[..n]);
                            switch_h2 = true;
                            break;
                        }
                        conn.handle_input(&self.read_buf[..n], now, &mut ctx)
                    }
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
        if switch_h2 {
            let first = std::mem::take(&mut self.scratch);
            self.start_h2(k, &first, now);
            self.scratch = first;
            return;
        }
        if !self.st.answered.is_empty() {
            log_answered(&mut self.st.answered, || peer(&slot.sock, &link));
        }
        if !self.st.ended.is_empty() {
            log_ended(&mut self.st.ended, || peer(&slot.sock, &link), now);
        }
        // An h2 stream: its connection writes what it queued (with its other streams' due
        // frames); a stream whose answer is complete, or whose `Conn` ended, ends on the wire.
        if let (Some(p), Some(link)) = (parent, link) {
            if !link.dirty && self.h2_driving != Some(p) {
                link.dirty = true;
                self.h2_dirty.push(p as u32);
                self.h2_dirty_since.get_or_insert(now.ms);
            }
            let conn = &mut slot.conn;
            let sub = link.sub(k);
            let done = sub.map_or(true, |s| s.ended);
            let gone = sub.is_some_and(|s| link.engine.queued(s.id).is_none());
            if done || gone || conn.take_shutdown() || conn.is_closed() {
                if let Some(s) = link.sub(k) {
                    let id = s.id;
                    if !s.ended && !gone {
                        if s.head_sent && !conn.is_closed() {
                            // The `Conn` finished its answer (a stream's `retry:`, a close).
                            link.engine.send_data(id, &[], StreamEnd::End);
                        } else {
                            link.engine.reset(id, ErrorCode::Cancel);
                        }
                    }
                }
                let draining = phase(&self.drain_deadline);
                let mut ctx = self::ctx(shared, self.id, &mut self.st, draining);
                if !conn.is_closed() {
                    conn.abort(&mut ctx);
                }
                if !self.st.ended.is_empty() {
                    let who = Who::H2(link.peer);
                    log_ended(&mut self.st.ended, || who, now);
                }
            }
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

    /// Makes slot `k` an h2 connection: its engine, fed `first` (the bytes a plain connection
    /// read so far; nothing over TLS, whose session holds them), then driven. The slot's
    /// `Conn` is replaced by a fresh one nothing drives.
    fn start_h2(&mut self, k: usize, first: &[u8], now: Now) {
        let Some(slot) = self.slab.get_mut(k) else {
            return;
        };
        slot.kind = match slot.kind {
            Kind::Tls => Kind::H2Tls,
            _ => Kind::H2,
        };
        slot.conn = Conn::new(now, &self.shared.conn);
        let peer = slot.sock.as_ref().and_then(|s| s.peer_addr().ok());
        let mut engine = H2::new(self.shared.h2.clone(), now.ms);
        if !first.is_empty() {
            engine.handle_input(first, now.ms);
        }
        let idle = now.ms + self.shared.conn.head_timeout_ms;
        self.h2.insert_conn(k, H2Link::new(engine, peer, idle));
        let shard = self.shared.metrics.shard(self.id);
        shard.h2_connections_total.inc();
        if slot.kind == Kind::H2Tls {
            shard.h2_tls_connections_total.inc();
        }
        self.drive_h2(k, now);
    }

    /// Moves h2 connection `k` as far as it goes: writes what its engine has (its streams'
    /// frames due together in one write), reads into the engine, opens a slot for each new
    /// request, ends the streams the client reset, drives the streams that waited for room;
    /// then re-arms its timer or closes it.
    fn drive_h2(&mut self, k: usize, now: Now) {
        let outer = self.h2_driving.replace(k);
        loop {
            let mut progress = false;
            match self.flush_h2(k, now) {
                Ok(p) => progress |= p,
                Err(()) => {
                    self.h2_driving = outer;
                    return self.close_h2(k, now);
                }
            }
            match self.read_h2(k, now) {
                Ok(p) => progress |= p,
                Err(()) => {
                    // Flush what the engine has to say (a GOAWAY) before closing, if it can.
                    let _ = self.flush_h2(k, now);
                    self.h2_driving = outer;
                    return self.close_h2(k, now);
                }
            }
            let Some(link) = self.h2.link(k) else {
                self.h2_driving = outer;
                return;
            };
            let requests = link.engine.take_requests();
            let gone: Vec<usize> = link
                .engine
                .take_events()
                .into_iter()
                .filter_map(|H2Event::StreamGone(id)| link.key_of(id))
                .collect();
            // Streams that waited for room in the engine: DATA went out, drive them again.
            let blocked = link.take_unblocked();
            progress |= !requests.is_empty() || !gone.is_empty() || !blocked.is_empty();
            for sk in gone {
                self.end_h2_stream(sk, now);
            }
            for req in requests {
                self.open_h2_stream(k, req, now);
            }
            for sk in blocked {
                self.drive(sk, now);
            }
            if !progress {
                break;
            }
        }
        self.h2_driving = outer;
        self.arm_h2(k);
    }

    /// Writes h2 connection `k`'s output: first what the socket refused before, then what its
    /// engine has due (control frames, then DATA of every stream with window), in one write;
    /// over TLS encrypted into the loop's `tls_scratch`. Only an unwritten tail is copied. Once
    /// the engine is closing and everything is out, the write side is shut (TLS:
    /// `close_notify` first) and the connection lingers. `Err`: the connection is gone.
    fn flush_h2(&mut self, k: usize, now: Now) -> Result<bool, ()> {
        let Some(slot) = self.slab.get_mut(k) else {
            return Err(());
        };
        let Some(link) = self.h2.link(k) else {
            return Err(());
        };
        let Some(sock) = slot.sock.as_mut() else {
            return Err(());
        };
        let mut tls = match slot.kind {
            Kind::H2Tls => Some(self.sessions.get(k).ok_or(())?),
            _ => None,
        };
        let stall = self.shared.conn.stall_timeout_ms;
        let mut progress = false;
        while slot.writable {
            let pending = match tls.as_deref() {
                Some(t) => t.pending(),
                None => link.pending(),
            };
            if !pending.is_empty() {
                match sock.write(pending) {
                    Ok(0) => return Err(()),
                    Ok(n) => {
                        self.shared.metrics.shard(self.id).h2_writes.inc();
                        progress = true;
                        link.stall_deadline = now.ms + stall;
                        match tls.as_deref_mut() {
                            Some(t) => {
                                if t.on_written(n) {
                                    let _ = sock.shutdown(Shutdown::Write);
                                }
                            }
                            None => link.on_written(n),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.writable = false,
                    Err(_) => return Err(()),
                }
                continue;
            }
            if link.linger_deadline.is_some() {
                break;
            }
            link.engine.poll_transmit(&mut self.scratch, now.ms);
            if self.scratch.is_empty() {
                if link.engine.is_closing() {
                    // All said (a GOAWAY last): shut the write side, read until the FIN.
                    link.linger_deadline = Some(now.ms + self.shared.conn.linger_ms);
                    let notify_queued = tls.as_deref_mut().is_some_and(|t| !t.close());
                    if notify_queued {
                        // `close_notify` is pending: written next, then the write side shut.
                        continue;
                    }
                    let _ = sock.shutdown(Shutdown::Write);
                }
                break;
            }
            link.stall_deadline = now.ms + stall;
            let out: &[u8] = match tls.as_deref_mut() {
                Some(t) => match t.encrypt([&self.scratch, &[]], &mut self.tls_scratch) {
                    Ok(()) => &self.tls_scratch,
                    // The session's keys are spent: its `close_notify` is pending instead
                    // (written above, the write side shut); the next frames end the connection.
                    Err(TlsError::KeysSpent) => continue,
                    Err(_) => return Err(()),
                },
                None => &self.scratch,
            };
            let mut w = 0;
            while w < out.len() {
                match sock.write(&out[w..]) {
                    Ok(0) => return Err(()),
                    Ok(n) => {
                        w += n;
                        self.shared.metrics.shard(self.id).h2_writes.inc();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        slot.writable = false;
                        break;
                    }
                    Err(_) => return Err(()),
                }
            }
            progress |= w > 0;
            if w < out.len() {
                match tls.as_deref_mut() {
                    Some(t) => t.keep_unwritten(&out[w..], 0),
                    None => link.out.extend_from_slice(&out[w..]),
                }
            }
        }
        Ok(progress)
    }

    /// Reads what h2 connection `k`'s socket has into its engine (over TLS, through its
    /// session: decrypted bytes the engine has not taken go first), at most what the engine
    /// takes now. A lingering connection's input is read and dropped. `Err`: the client closed
    /// or the transport failed.
    fn read_h2(&mut self, k: usize, now: Now) -> Result<bool, ()> {
        let Some(slot) = self.slab.get_mut(k) else {
            return Err(());
        };
        let Some(link) = self.h2.link(k) else {
            return Err(());
        };
        let Some(sock) = slot.sock.as_mut() else {
            return Err(());
        };
        let lingering = link.linger_deadline.is_some();
        let limit = match lingering {
            true => self.read_buf.len(),
            false => link.engine.read_limit().min(self.read_buf.len()),
        };
        if slot.kind == Kind::H2Tls {
            let tls = self.sessions.get(k).ok_or(())?;
            let plain = tls.plaintext();
            if !plain.is_empty() {
                let take = plain.len().min(limit);
                if take == 0 {
                    return Ok(false);
                }
                if !lingering {
                    link.engine.handle_input(&plain[..take], now.ms);
                }
                tls.consume(take);
                return Ok(true);
            }
            if tls.peer_closed() {
                return Err(());
            }
            let room = tls.room().min(self.read_buf.len());
            if !slot.readable || room == 0 || limit == 0 {
                return Ok(false);
            }
            return match sock.read(&mut self.read_buf[..room]) {
                Ok(0) => Err(()),
                Ok(n) => match tls.handle_tls(&self.read_buf[..n]) {
                    Ok(_) => Ok(true),
                    Err(_) => {
                        self.shared.metrics.shard(self.id).tls_errors.inc();
                        // The alert that says why (or `close_notify`), if the socket takes it
                        // now: the connection is closed either way.
                        if !tls.pending().is_empty() {
                            let _ = sock.write(tls.pending());
                        }
                        Err(())
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.readable = false;
                    Ok(false)
                }
                Err(_) => Err(()),
            };
        }
        if !slot.readable || limit == 0 {
            return Ok(false);
        }
        match sock.read(&mut self.read_buf[..limit]) {
            Ok(0) => Err(()),
            Ok(n) => {
                if !lingering {
                    link.engine.handle_input(&self.read_buf[..n], now.ms);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                slot.readable = false;
                Ok(false)
            }
            Err(_) => Err(()),
        }
    }

    /// A new request on h2 connection `k`: a slab slot whose `Conn` reads it as HTTP/1.1 (the
    /// same route, limits, timeouts and logs), driven at once. A request the engine already
    /// refused (`431`, `413`) is answered here; one that cannot be put as HTTP/1.1 is reset.
    fn open_h2_stream(&mut self, k: usize, req: H2Request, now: Now) {
        let Some(loopback) = self.slab.get(k).map(|s| s.loopback) else {
            return;
        };
        let Some(link) = self.h2.link(k) else {
            return;
        };
        let id = req.stream;
        if let Some(code) = req.refused {
            let status = Status::ALL
                .into_iter()
                .find(|s| s.code() == code)
                .unwrap_or(Status::BadRequest);
            let reply = Reply::error(status);
            let head = reply
                .head
                .finish(self.st.dates.http(now.unix_ms), Connection::Close);
            let body = reply.body.as_ref().map_or(&[][..], |b| b.bytes());
            if let Some(h) = h2map::ResponseHead::parse(&head) {
                let fields: Vec<(&str, &[u8])> = h
                    .fields
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect();
                let end = match body.is_empty() {
                    true => StreamEnd::End,
                    false => StreamEnd::Open,
                };
                link.engine.send_headers(id, h.status, &fields, end);
                if !body.is_empty() {
                    link.engine.send_data(id, body, StreamEnd::End);
                }
            }
            let shard = self.shared.metrics.shard(self.id);
            shard.response(status);
            let mut answered = vec![crate::core::ctx::Answered {
                line: crate::core::ctx::RequestLine {
                    method: String::from_utf8_lossy(&req.method).into(),
                    path: String::from_utf8_lossy(&req.path)
                        .split('?')
                        .next()
                        .unwrap_or("")
                        .into(),
                },
                status,
                bytes: body.len() as u64,
            }];
            let who = Who::H2(link.peer);
            log_answered(&mut answered, || who);
            return;
        }
        let mut bytes = Vec::new();
        if h2map::request_bytes(&req, &mut bytes).is_err() {
            // Malformed (RFC 9113 section 8.1.1): a stream error.
            link.engine.reset(id, ErrorCode::ProtocolError);
            return;
        }
        let sk = self.slab.insert(Slot {
            sock: None,
            conn: Conn::new(now, &self.shared.conn),
            readable: false,
            writable: true,
            loopback,
            kind: Kind::H2Stream,
        });
        self.h2.insert_stream(sk, k);
        let Some(link) = self.h2.link(k) else {
            return;
        };
        link.subs.push(Sub {
            key: sk as u32,
            id,
            head_only: req.method == b"HEAD",
            head_sent: false,
            remaining: 0,
            ended: false,
            waiting: false,
        });
        link.served = true;
        self.shared.metrics.shard(self.id).h2_streams_total.inc();
        if let Some(slot) = self.slab.get_mut(sk) {
            let draining = phase(&self.drain_deadline);
            let mut ctx = ctx(&self.shared, self.id, &mut self.st, draining);
            slot.conn.handle_input(&bytes, now, &mut ctx);
        }
        self.drive(sk, now);
    }

    /// The client reset h2 stream slot `sk`, the engine reset it (stalled), or its connection
    /// ended: its `Conn` ends as a connection that closed would (presence leaves, the topic
    /// index forgets it, the log says so) and the slot is freed.
    fn end_h2_stream(&mut self, sk: usize, now: Now) {
        let shared = &*self.shared;
        let Some(slot) = self.slab.get_mut(sk) else {
            return;
        };
        let draining = phase(&self.drain_deadline);
        let mut ctx = ctx(shared, self.id, &mut self.st, draining);
        slot.conn.handle_eof(&mut ctx);
        if !slot.conn.is_closed() {
            slot.conn.abort(&mut ctx);
        }
        self.drive(sk, now);
    }

    /// Closes h2 connection `k` and every stream of it.
    fn close_h2(&mut self, k: usize, now: Now) {
        let keys: Vec<usize> = self
            .h2
            .link(k)
            .map(|l| l.subs.iter().map(|s| s.key as usize).collect())
            .unwrap_or_default();
        for sk in keys {
            self.end_h2_stream(sk, now);
        }
        self.remove(k);
    }

    /// Re-arms h2 connection `k`'s timer: a stream's stall (window closed), the socket's stall
    /// (unwritten bytes), the idle time with no stream open, the linger.
    fn arm_h2(&mut self, k: usize) {
        let tls_pending = self
            .sessions
            .get(k)
            .is_some_and(|t| !t.pending().is_empty());
        let Some(link) = self.h2.link(k) else {
            return;
        };
        let candidates = [
            link.engine.timeout(),
            link.linger_deadline,
            link.subs.is_empty().then_some(link.idle_deadline),
            (tls_pending || !link.pending().is_empty()).then_some(link.stall_deadline),
        ];
        match candidates.into_iter().flatten().min() {
            Some(d) if self.wheel.deadline(k) != Some(d) => self.wheel.arm(k, d),
            Some(_) => {}
            None => self.wheel.cancel(k),
        }
    }

    /// h2 connection `k`'s deadline passed: streams stalled past the stall timeout are reset,
    /// a socket that took nothing for the stall timeout is closed, an idle connection gets
    /// GOAWAY, a lingering one is closed.
    fn h2_timeout(&mut self, k: usize, now: Now) {
        let tls_pending = self
            .sessions
            .get(k)
            .is_some_and(|t| !t.pending().is_empty());
        let shard = self.shared.metrics.shard(self.id);
        let Some(link) = self.h2.link(k) else {
            return;
        };
        link.engine.handle_timeout(now.ms);
        if link.linger_deadline.is_some_and(|t| now.ms >= t) {
            return self.close_h2(k, now);
        }
        let pending = tls_pending || !link.pending().is_empty();
        if pending && now.ms >= link.stall_deadline {
            shard.timeout(Timeout::Stall);
            return self.close_h2(k, now);
        }
        if link.subs.is_empty() && now.ms >= link.idle_deadline {
            shard.timeout(match link.served {
                true => Timeout::Idle,
                false => Timeout::Head,
            });
            link.engine.go_away();
            // The engine may still hold streams it answered itself: the GOAWAY says enough.
            link.idle_deadline = now.ms + self.shared.conn.idle_timeout_ms;
        }
        self.drive_h2(k, now);
    }

    /// Writes every h2 connection whose streams queued frames (one write each for all its
    /// streams' frames due together).
    fn flush_h2_dirty(&mut self, now: Now) {
        let mut dirty = std::mem::take(&mut self.h2_dirty);
        self.h2_dirty_since = None;
        for &p in &dirty {
            if let Some(link) = self.h2.link(p as usize) {
                link.dirty = false;
            }
        }
        for &p in &dirty {
            if self.h2.link(p as usize).is_some() {
                self.drive_h2(p as usize, now);
            }
        }
        dirty.clear();
        if self.h2_dirty.is_empty() {
            self.h2_dirty = dirty;
        }
    }

    fn remove(&mut self, k: usize) {
        self.wheel.cancel(k);
        if self.st.local.is_present(k) {
            let left = self.st.local.presence_ended(k);
            let now = self.now();
            publish_presence(&self.shared, left, now);
        }
        let Some(slot) = self.slab.remove(k) else {
            return;
        };
        let shard = self.shared.metrics.shard(self.id);
        if slot.kind == Kind::H2Stream {
            // Not a connection: its connection forgets it (and is idle when it was the last).
            let idle = self.now().ms + self.shared.conn.idle_timeout_ms;
            let parent = self.h2.parent(k);
            if let Some(link) = parent.and_then(|p| self.h2.link(p)) {
                link.subs.retain(|s| s.key as usize != k);
                if link.subs.is_empty() {
                    link.idle_deadline = idle;
                }
            }
            self.h2.remove(k);
            shard.h2_streams_closed.inc();
            return;
        }
        if let Some(mut sock) = slot.sock {
            let _ = self.poll.registry().deregister(&mut sock);
        }
        shard.connections_closed.inc();
        if slot.kind.is_tls() {
            self.sessions.remove(k);
            shard.tls_connections_closed.inc();
        }
        if slot.kind.is_h2_conn() {
            self.h2.remove(k);
            shard.h2_connections_closed.inc();
            if slot.kind == Kind::H2Tls {
                shard.h2_tls_connections_closed.inc();
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
            sock: Some(sock),
            conn,
            readable: false,
            writable: true,
            loopback,
            kind: match session {
                Some(_) => Kind::Tls,
                None => Kind::Plain,
            },
        });
        if let Some(session) = session {
            self.sessions.insert(k, session);
        }
        let registry: &Registry = self.poll.registry();
        let Some(sock) = self.slab.get_mut(k).and_then(|s| s.sock.as_mut()) else {
            return;
        };
        if registry
            .register(sock, Token(k), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            let tls = self.slab.remove(k).is_some_and(|s| s.kind.is_tls());
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
                if slot.kind.is_h2_conn() {
                    continue;
                }
                let mut ctx = ctx(shared, self.id, &mut self.st, Phase::Draining);
                slot.conn.abandon(now, &mut ctx);
            }
            self.drive(k, now);
        }
        // What h2 streams queued is written once, like any connection's.
        self.flush_h2_dirty(now);
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
        let mut h2 = Vec::new();
        for k in keys {
            let shared = &*self.shared;
            if let Some(slot) = self.slab.get_mut(k) {
                if slot.kind.is_h2_conn() {
                    h2.push(k);
                    continue;
                }
                let mut ctx = ctx(shared, self.id, &mut self.st, Phase::Draining);
                slot.conn.drain(now, &mut ctx);
            }
            self.drive(k, now);
        }
        // h2: the streams' `retry:` frames (queued above) go out first, then GOAWAY with the
        // last stream id; the connection closes once its streams are done.
        for k in h2 {
            self.drive_h2(k, now);
            if let Some(link) = self.h2.link(k) {
                link.engine.go_away();
            }
            self.drive_h2(k, now);
        }
        self.flush_h2_dirty(now);
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

/// Whose request a log line is about: a connection's (its socket's peer) or an h2 stream's
/// (its connection's peer, and the line says `proto=h2`).
#[derive(Clone, Copy)]
enum Who {
    Sock(Option<SocketAddr>),
    H2(Option<SocketAddr>),
}

impl Who {
    fn peer(self) -> String {
        match self {
            Who::Sock(a) | Who::H2(a) => a.map_or_else(|| "-".to_string(), |a| a.to_string()),
        }
    }

    /// The fields that follow `peer` in a line: `proto=h2` for an h2 stream, nothing else.
    fn proto(self) -> Option<(&'static str, V<'static>)> {
        match self {
            Who::Sock(_) => None,
            Who::H2(_) => Some(("proto", V::S("h2"))),
        }
    }
}

/// The log lines of requests answered with their final status (a stream's request is logged
/// when the stream ends; an answer given later, when it is given). `who` is asked only when
/// connections are logged.
fn log_answered(answered: &mut Vec<crate::core::ctx::Answered>, who: impl FnOnce() -> Who) {
    if !log::connections() {
        answered.clear();
        return;
    }
    let who = who();
    let peer = who.peer();
    for a in answered.drain(..) {
        let status = a.status.code().to_string();
        let mut fields = vec![("peer", V::S(&peer))];
        fields.extend(who.proto());
        fields.extend([
            ("method", V::S(&a.line.method)),
            // The path only: a query may carry a token.
            ("path", V::S(&a.line.path)),
            ("status", V::S(&status)),
            ("bytes", V::N(a.bytes)),
        ]);
        log::line("request", &fields);
    }
}

/// The log lines of streams that ended.
fn log_ended(ended: &mut Vec<crate::core::ctx::StreamEnd>, who: impl FnOnce() -> Who, now: Now) {
    if !log::connections() {
        ended.clear();
        return;
    }
    let who = who();
    let peer = who.peer();
    for e in ended.drain(..) {
        let secs = (now.ms / 1000).saturating_sub(u64::from(e.opened_s));
        let mut fields = vec![("peer", V::S(&peer))];
        fields.extend(who.proto());
        fields.extend([
            ("kind", V::S(e.kind)),
            ("duration_s", V::N(secs)),
            ("frames", V::N(e.frames)),
            ("end", V::S(e.why.as_str())),
        ]);
        log::line("stream", &fields);
    }
}

/// Whether a connection's first bytes (`held`, then `new`) are the HTTP/2 client preface, or
/// its start: four bytes at least (`PRI `), which no HTTP/1.1 request this server answers
/// begins with.
fn starts_h2(held: &[u8], new: &[u8]) -> bool {
    let preface = crate::wire::h2::frame::PREFACE;
    held.len() + new.len() >= 4
        && held
            .iter()
            .chain(new)
            .take(preface.len())
            .zip(preface)
            .all(|(a, b)| a == b)
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
        match tls.encrypt([a, b], enc) {
            Ok(()) => {}
            // The session's keys are spent: its `close_notify` is pending instead of the
            // frame; written above, the write side shut, then the next turn ends the
            // connection (the session encrypts nothing more).
            Err(TlsError::KeysSpent) => continue,
            Err(_) => return Err(()),
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
                    }
                }
                Err(_) => {
                    ctx.shard.tls_errors.inc();
                    // The alert that says why (or `close_notify`), if the socket takes it now:
                    // the connection is closed either way.
                    if !tls.pending().is_empty() {
                        let _ = sock.write(tls.pending());
                    }
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
    if tls.proto() == Some(Proto::H2) {
        // The negotiated protocol picks the codec: h2's engine takes the plaintext (the loop
        // makes the slot an h2 connection now).
        return true;
    }
    let plain = tls.plaintext();
    let take = plain.len().min(conn.read_limit(ctx.cfg));
    if take > 0 {
        conn.handle_input(&plain[..take], now, ctx);
        tls.consume(take);
    }
    true
}

/// The h2 engine's limits, from the flags they map to: the header list from the head limit,
/// the body from `--max-body`, the stall from `--stall-timeout-ms`.
fn h2_config(config: &Config) -> H2Config {
    H2Config {
        max_streams: config.h2_max_streams,
        max_list: config.conn.limits.max_head,
        max_body: config.conn.max_body,
        stall_ms: config.conn.stall_timeout_ms,
        ..H2Config::default()
    }
}
