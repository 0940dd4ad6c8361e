//! Every knob of `sse-server`, parsed and validated once into a typed [`Config`].
//!
//! Every flag lives in one table, [`FLAGS`]: its name, its help, its default and how it sets the
//! config. The environment variable of a flag is derived from its name by one rule
//! ([`env_name`]: `--max-streams` is `SSE_MAX_STREAMS`), so a flag added to the table gets its
//! variable, its `--help` line and its parsing with no other code. The flag wins over the
//! variable; `PORT` is kept as the variable of `--port` of lowest precedence.
//!
//! **Invariant:** no IO here beyond what the caller passes in (arguments, a variable lookup).

use crate::core::ctx::ConnConfig;
use crate::hub::history::HubConfig;
use crate::util::cli::{at_least, num, port, positive, split_flag};
use std::net::IpAddr;
use std::path::PathBuf;

/// The server's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `::` (the default) is dual-stack: IPv6 and IPv4 on one listener, or `0.0.0.0` where the
    /// host has no IPv6.
    pub bind: IpAddr,
    pub port: u16,
    /// Serve the page from this folder instead of the copy embedded in the binary.
    pub www: Option<PathBuf>,
    /// Event loops (threads), each with its own `SO_REUSEPORT` listener.
    pub threads: usize,
    /// Most concurrent streams; `None` means "what the file-descriptor limit allows".
    pub max_streams: Option<usize>,
    /// `SO_SNDBUF` for accepted sockets; `None` keeps the kernel's default and autotuning.
    pub sndbuf: Option<usize>,
    /// How long SIGTERM/SIGINT wait for streams to end before the process exits.
    pub shutdown_grace_ms: u64,
    /// Timer wake-ups align to this grid; `None` derives it from the interval.
    pub timer_slack_ms: Option<u64>,
    /// Per-connection behaviour.
    pub conn: ConnConfig,
    /// The hub's history and heartbeat.
    pub hub: HubConfig,
    /// The bearer token publishers must present (`None`: loopback clients only).
    pub publish_token: Option<String>,
    /// `redis://[user:password@]host:port[/db]`: share one event store with other instances.
    pub redis: Option<String>,
    /// The directory the hub's event store lives in (`None`: the history is in memory only).
    pub data_dir: Option<PathBuf>,
    /// When the event store's writes are made durable.
    pub fsync: crate::durable::writer::Fsync,
    /// The HS256 key for subscriber and publisher tokens, given inline...
    pub jwt_key: Option<String>,
    /// ... or as a file read at start-up.
    pub jwt_key_file: Option<PathBuf>,
    /// Clock leeway for `exp` and `nbf`.
    pub jwt_leeway_ms: u64,
    /// `--jwt-audience`: the resource identifier a draft-08 access token's `aud` must name.
    pub jwt_audience: Option<String>,
    /// Topics whose events are private whatever the publisher says (selectors).
    pub private_topics: Vec<String>,
    /// The origins (`https://app.example`) allowed to read streams (default any) and to
    /// publish from a browser besides the server's own (default none).
    pub cors_origins: Vec<String>,
    /// How log lines look.
    pub log_format: crate::util::log::Format,
    /// Only start-up, shutdown, overload and error lines.
    pub quiet: bool,
    /// `--subscriptions`: subscription events and the subscriptions API (presence).
    pub subscriptions: bool,
    /// The certificate chain (PEM) served over TLS; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// With a certificate: HTTPS listens here and plain HTTP on `port`; without it, `port`
    /// is HTTPS only.
    pub tls_port: Option<u16>,
    /// Concurrent streams one HTTP/2 connection may open (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub h2_max_streams: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
            port: 3000,
            www: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_streams: None,
            sndbuf: None,
            shutdown_grace_ms: 3_000,
            timer_slack_ms: None,
            conn: ConnConfig::default(),
            hub: HubConfig::default(),
            publish_token: None,
            redis: None,
            data_dir: None,
            fsync: crate::durable::writer::Fsync::Batch,
            jwt_key: None,
            jwt_key_file: None,
            jwt_leeway_ms: crate::hub::jwt::DEFAULT_LEEWAY_MS,
            jwt_audience: None,
            private_topics: Vec::new(),
            cors_origins: Vec::new(),
            log_format: crate::util::log::Format::Text,
            quiet: false,
            subscriptions: false,
            tls_cert: None,
            tls_key: None,
            tls_port: None,
            h2_max_streams: 100,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// One flag that takes a value. The table [`FLAGS`] is the only place a flag is defined.
pub struct Flag {
    /// `--name`; the environment variable is [`env_name`] of it.
    pub name: &'static str,
    /// The value's placeholder in `--help` (`N`, `ADDR`, ...).
    pub value: &'static str,
    /// One line of help, without the default.
    pub help: &'static str,
    /// The default as `--help` shows it.
    pub default: fn(&Config) -> String,
    /// Sets the config from a value; `who` (the flag or the variable) names it in errors.
    pub set: fn(&mut Config, who: &str, value: &str) -> Result<(), String>,
}

/// Every flag that takes a value, in `--help` order.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--port",
        value: "N",
        help: "TCP port, 0 picks a free one (PORT is read too, below SSE_PORT)",
        default: |c| c.port.to_string(),
        set: |c, who, v| port(who, v).map(|n| c.port = n),
    },
    Flag {
        name: "--tls-cert",
        value: "PATH",
        help: "serve HTTPS with this certificate chain (PEM; RSA, ECDSA or Ed25519), with --tls-key; reread on SIGHUP",
        default: |_| "none: plain HTTP only".into(),
        set: |c, _, v| {
            c.tls_cert = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--tls-key",
        value: "PATH",
        help: "the private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)",
        default: |_| "none".into(),
        set: |c, _, v| {
            c.tls_key = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--tls-port",
        value: "N",
        help: "HTTPS on this port and plain HTTP on --port, side by side (0 picks a free one)",
        default: |_| "none: with --tls-cert, --port is HTTPS only".into(),
        set: |c, who, v| port(who, v).map(|n| c.tls_port = Some(n)),
    },
    Flag {
        name: "--h2-max-streams",
        value: "N",
        help: "concurrent streams one HTTP/2 connection may open",
        default: |c| c.h2_max_streams.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.h2_max_streams = n),
    },
    Flag {
        name: "--bind",
        value: "ADDR",
        help: "address to listen on; :: is IPv6 and IPv4 (0.0.0.0 without IPv6)",
        default: |c| c.bind.to_string(),
        set: |c, who, v| {
            c.bind = v
                .trim()
                .parse()
                .map_err(|_| format!("{who} {v:?} is not an IP address"))?;
            Ok(())
        },
    },
    Flag {
        name: "--interval-ms",
        value: "N",
        help: "time between two events of one stream",
        default: |c| c.conn.interval_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.interval_ms = n),
    },
    Flag {
        name: "--www",
        value: "DIR",
        help: "serve the page from DIR instead of the copy built into the binary",
        default: |_| "the built-in page".into(),
        set: |c, _, v| {
            c.www = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--threads",
        value: "N",
        help: "event loops, one per core is best",
        default: |c| format!("the CPUs, here {}", c.threads),
        set: |c, who, v| positive(who, v).map(|n| c.threads = n),
    },
    Flag {
        name: "--max-streams",
        value: "N",
        help: "most concurrent streams; past it a client is told to retry later",
        default: |_| "the descriptor limit minus a reserve of 1/8 of it, 16 to 256".into(),
        set: |c, who, v| num(who, v).map(|n| c.max_streams = Some(n)),
    },
    Flag {
        name: "--head-timeout-ms",
        value: "N",
        help: "a request head must arrive within this",
        default: |c| c.conn.head_timeout_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.head_timeout_ms = n),
    },
    Flag {
        name: "--idle-timeout-ms",
        value: "N",
        help: "close a kept-alive connection idle this long",
        default: |c| c.conn.idle_timeout_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.idle_timeout_ms = n),
    },
    Flag {
        name: "--stall-timeout-ms",
        value: "N",
        help: "close a connection whose output makes no progress this long",
        default: |c| c.conn.stall_timeout_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.stall_timeout_ms = n),
    },
    Flag {
        name: "--reconnect-ms",
        value: "N",
        help: "mean of the jittered retry: on overload and shutdown (half to 1.5 times it)",
        default: |c| c.conn.reconnect_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.reconnect_ms = n),
    },
    Flag {
        name: "--max-head-bytes",
        value: "N",
        help: "request head size limit, 431 past it",
        default: |c| c.conn.limits.max_head.to_string(),
        set: |c, who, v| at_least(who, v, 64).map(|n| c.conn.limits.max_head = n),
    },
    Flag {
        name: "--max-target-bytes",
        value: "N",
        help: "request target limit, 414 past it",
        default: |c| c.conn.limits.max_target.to_string(),
        set: |c, who, v| at_least(who, v, 16).map(|n| c.conn.limits.max_target = n),
    },
    Flag {
        name: "--max-headers",
        value: "N",
        help: "header count limit, 431 past it (at most 128)",
        default: |c| c.conn.limits.max_headers.to_string(),
        set: |c, who, v| at_least(who, v, 1).map(|n| c.conn.limits.max_headers = n.min(128)),
    },
    Flag {
        name: "--sndbuf",
        value: "BYTES",
        help: "SO_SNDBUF of accepted sockets",
        default: |_| "the kernel's autotuning".into(),
        set: |c, who, v| positive(who, v).map(|n| c.sndbuf = Some(n)),
    },
    Flag {
        name: "--shutdown-grace-ms",
        value: "N",
        help: "on SIGTERM/SIGINT, time allowed to end streams",
        default: |c| c.shutdown_grace_ms.to_string(),
        set: |c, who, v| num(who, v).map(|n| c.shutdown_grace_ms = n),
    },
    Flag {
        name: "--timer-slack-ms",
        value: "N",
        help: "ticks due within N ms share one wake-up; a frame may be N ms late, never early",
        default: |_| "interval/40, from 1 to 2".into(),
        set: |c, who, v| positive(who, v).map(|n| c.timer_slack_ms = Some(n)),
    },
    Flag {
        name: "--publish-token",
        value: "T",
        help: "POST /publish needs Authorization: Bearer T (never logged)",
        default: |_| "none: only loopback clients may publish, and only without --jwt-key".into(),
        set: |c, who, v| {
            if v.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(format!("{who} must be printable ASCII without spaces"));
            }
            c.publish_token = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--redis",
        value: "URL",
        help: "redis://[user:password@]host:port[/db]: one event log shared by every instance",
        default: |_| "none: this instance alone".into(),
        set: |c, _, v| {
            c.redis = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--data-dir",
        value: "DIR",
        help: "keep the event history in DIR (it must exist), so it survives restarts",
        default: |_| "none: the history is in memory only".into(),
        set: |c, who, v| {
            if v.is_empty() {
                return Err(format!("{who} needs a directory"));
            }
            c.data_dir = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--fsync",
        value: "always|batch|off",
        help: "with --data-dir: answer after a sync shared by the publishes queued (always, batch) or once written (off) (README)",
        default: |_| "batch".into(),
        set: |c, who, v| {
            c.fsync = crate::durable::writer::Fsync::parse(v)
                .ok_or_else(|| format!("{who} must be always, batch or off, not {v:?}"))?;
            Ok(())
        },
    },
    Flag {
        name: "--cors-origin",
        value: "ORIGIN",
        help: "an origin (https://app.example) allowed to read streams and to publish from a browser; repeat or separate with commas for more",
        default: |_| "streams: any (*); browser publishing: the server's own origin only".into(),
        set: |c, who, v| {
            for o in v.split(',').map(str::trim) {
                check_origin(o).map_err(|why| format!("{who}: {o:?} {why}"))?;
                c.cors_origins.push(o.to_string());
            }
            Ok(())
        },
    },
    Flag {
        name: "--log-format",
        value: "text|json",
        help: "one line per request, ended stream, start, stop and overload, on stderr",
        default: |_| "text".into(),
        set: |c, who, v| {
            c.log_format = match v {
                "text" => crate::util::log::Format::Text,
                "json" => crate::util::log::Format::Json,
                _ => return Err(format!("{who} must be text or json, not {v:?}")),
            };
            Ok(())
        },
    },
    Flag {
        name: "--quiet",
        value: "",
        help: "no line per request or stream (start, stop, overload and errors remain)",
        default: |_| "off".into(),
        set: |c, who, v| {
            c.quiet = match v {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(format!("{who} is a switch: 1 or 0, not {v:?}")),
            };
            Ok(())
        },
    },
    Flag {
        name: "--jwt-key",
        value: "KEY",
        help: "HS256 key of Mercure tokens (never logged); loopback then needs one to publish",
        default: |_| "none: no tokens, every topic public".into(),
        set: |c, _, v| {
            c.jwt_key = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--jwt-key-file",
        value: "PATH",
        help: "read the HS256 key from this file (trailing newline dropped)",
        default: |_| "none".into(),
        set: |c, _, v| {
            c.jwt_key_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "--jwt-leeway-ms",
        value: "N",
        help: "clock leeway when checking a token's exp and nbf",
        default: |d| d.jwt_leeway_ms.to_string(),
        set: |c, who, v| num(who, v).map(|n| c.jwt_leeway_ms = n),
    },
    Flag {
        name: "--jwt-audience",
        value: "URI",
        help: "the hub's resource identifier: an access token (at+jwt) must name it in aud",
        default: |_| "none: aud is not checked".into(),
        set: |c, _, v| {
            c.jwt_audience = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--subscriptions",
        value: "",
        help: "presence: private subscription events and GET /.well-known/mercure/subscriptions (needs --jwt-key)",
        default: |_| "off".into(),
        set: |c, who, v| {
            c.subscriptions = match v {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(format!("{who} is a switch: 1 or 0, not {v:?}")),
            };
            Ok(())
        },
    },
    Flag {
        name: "--private-topics",
        value: "SELECTOR",
        help: "events on matching topics (a, a/*, *) are private; repeat for more",
        default: |_| "none".into(),
        set: |c, _, v| {
            c.private_topics.push(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "--history-events",
        value: "N",
        help: "hub events kept for resuming, oldest dropped first",
        default: |d| d.hub.history_events.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.hub.history_events = n),
    },
    Flag {
        name: "--history-bytes",
        value: "N",
        help: "bytes of hub events kept for resuming",
        default: |d| d.hub.history_bytes.to_string(),
        set: |c, who, v| at_least(who, v, 1024).map(|n| c.hub.history_bytes = n),
    },
    Flag {
        name: "--heartbeat-ms",
        value: "N",
        help: "a comment line on a topic stream idle this long",
        default: |d| d.hub.heartbeat_ms.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.hub.heartbeat_ms = n),
    },
    Flag {
        name: "--max-publish-bytes",
        value: "N",
        help: "largest request body (a publish), 413 past it, decided from Content-Length",
        default: |d| d.conn.max_body.to_string(),
        set: |c, who, v| positive(who, v).map(|n| c.conn.max_body = n),
    },
];

/// The environment variable of a flag: `SSE_` and the name in capitals, `-` as `_`
/// (`--max-streams` is `SSE_MAX_STREAMS`).
pub fn env_name(flag: &str) -> String {
    let bare = flag.trim_start_matches('-');
    format!("SSE_{}", bare.to_ascii_uppercase().replace('-', "_"))
}

/// The `--help` text: every flag with its default and its variable.
pub fn help() -> String {
    let d = Config::default();
    let mut out = String::from(
        "sse-server: a Server-Sent Events server and push hub. Publishers POST events to topics;
subscribers stream them (EventSource, curl -N) with ordered ids, a bounded history, resume by
Last-Event-ID and a `reset` event when some were missed. Also a clock stream, a page to watch
streams and publish, and Prometheus figures.

USAGE: sse-server [FLAGS]

FLAGS (each also accepted as --flag=value, and from the environment variable shown; an empty
variable counts as unset, and a flag wins over its variable):
",
    );
    // The description column starts two spaces past the longest flag and its value, so no
    // flag ever runs into its text.
    let left = |f: &Flag| format!("  {} {}", f.name, f.value);
    let width = FLAGS.iter().map(|f| left(f).len()).max().unwrap_or(0) + 2;
    for f in FLAGS {
        out.push_str(&format!(
            "{:<width$}{}\n{:<width$}default: {}; env {}\n",
            left(f),
            f.help,
            "",
            (f.default)(&d),
            env_name(f.name)
        ));
    }
    out.push_str(&format!(
        "{:<width$}this text\n{:<width$}the version\n",
        "  -h, --help", "  -V, --version"
    ));
    out.push_str(
        "
ENDPOINTS:
  GET /sse                  a clock stream: one event every --interval-ms (resumes at
                            Last-Event-ID + 1)
  GET /sse?topic=T          a subscription to topic T (repeatable; * is every topic; a URI
                            Template selects the topics it matches); resume with Last-Event-ID
                            or lastEventID=
  POST /publish             publish an event (topic, data, type, retry, id, private; a form or
                            JSON); answers its id
  GET|POST /.well-known/mercure
                            the same as a Mercure hub (topic=, match=, match_urlpattern=)
  GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]
                            the active subscriptions (with --subscriptions)
  GET /metrics              Prometheus text; GET /metrics/stream: the same figures as a stream
  GET /healthz              200 ok; 503 while the Redis store is down
  GET /, GET /dashboard     the page and the live dashboard (--www serves your own files)
SIGNALS: SIGTERM and SIGINT end every stream with a jittered retry: and exit 0; SIGHUP rereads
the certificate and key (--tls-cert, --tls-key), and is otherwise ignored.
",
    );
    out
}

/// Whether `o` is an origin as browsers send it: `http` or `https`, `://`, a host, an optional
/// port, and nothing else (a trailing `/` or a path would never match any request's `Origin`).
fn check_origin(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("is not an origin: it must start with https:// or http://")?;
    if rest.is_empty()
        || rest
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b"/?#@*,".contains(&b))
    {
        return Err("is not an origin: scheme://host[:port], no path, no trailing /");
    }
    Ok(())
}

/// Parses the arguments (without the program name) and the environment, read through `env`
/// (a variable's value by name). Flags win over variables, `SSE_PORT` over `PORT`.
pub fn parse_args<I: IntoIterator<Item = String>>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    // The command line first, so that --help works whatever the environment holds.
    let mut given: Vec<(&Flag, String, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = split_flag(&arg);
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(flag) = FLAGS.iter().find(|f| f.name == name) else {
            return Err(format!("unknown argument {arg:?} (see --help)"));
        };
        // A switch (no placeholder) takes no value on the command line; `SSE_QUIET=1` and
        // `--quiet=0` still work.
        let value = if flag.value.is_empty() {
            inline.unwrap_or_else(|| "1".into())
        } else {
            inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))?
        };
        given.push((flag, name, value));
    }
    let mut cfg = Config::default();
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(v) = var("PORT") {
        cfg.port = port("PORT", &v)?;
    }
    for f in FLAGS {
        let name = env_name(f.name);
        if let Some(v) = var(&name) {
            (f.set)(&mut cfg, &name, &v)?;
        }
    }
    for (flag, name, value) in given {
        (flag.set)(&mut cfg, &name, &value)?;
    }
    if cfg.redis.is_some() && cfg.data_dir.is_some() {
        return Err(
            "--data-dir and --redis exclude each other: with --redis the event log is \
                    Redis's stream (turn on its persistence), so drop one of them"
                .into(),
        );
    }
    if cfg.subscriptions && cfg.jwt_key.is_none() && cfg.jwt_key_file.is_none() {
        return Err(
            "--subscriptions needs --jwt-key (or --jwt-key-file): subscription events are \
                    private, read only with a subscriber token"
                .into(),
        );
    }
    Ok(Command::Run(Box::new(cfg)))
}

impl Config {
    /// Descriptors kept out of `--max-streams` by default for the listeners, the page,
    /// `/metrics` and the process itself: 1/8 of the limit, from 16 to 256.
    pub fn fd_reserve(fd_limit: u64) -> u64 {
        (fd_limit / 8).clamp(16, 256)
    }

    /// Limits derived from the config and the process's file-descriptor limit.
    pub fn effective_max_streams(&self, fd_limit: u64) -> usize {
        self.max_streams
            .unwrap_or_else(|| fd_limit.saturating_sub(Self::fd_reserve(fd_limit)).max(1) as usize)
    }

    /// A start-up warning when anyone who reaches this machine's loopback may publish (no
    /// `--publish-token`, no JWT key) while the server listens beyond loopback: deployed like
    /// that, a local process or a proxy that does not say it forwards can publish unchecked.
    pub fn publish_warning(&self) -> Option<String> {
        let secured =
            self.publish_token.is_some() || self.jwt_key.is_some() || self.jwt_key_file.is_some();
        if secured || self.bind.is_loopback() {
            return None;
        }
        Some(format!(
            "publishing is open to every loopback client (no --publish-token, no --jwt-key) while listening on {}, beyond loopback: set SSE_PUBLISH_TOKEN, e.g. to the output of `openssl rand -hex 32`",
            self.bind
        ))
    }

    /// A start-up warning when the descriptor limit cannot hold the streams asked for (or, by
    /// default, only a few).
    pub fn fd_warning(&self, fd_limit: u64) -> Option<String> {
        let fit = fd_limit.saturating_sub(Self::fd_reserve(fd_limit));
        match self.max_streams {
            Some(n) if n as u64 > fit => Some(format!(
                "--max-streams {n} does not fit the file-descriptor limit {fd_limit}: about \
                 {fit} streams can be held, the next clients are shed; raise the limit \
                 (ulimit -n, LimitNOFILE=)"
            )),
            None if fit < 1024 => Some(format!(
                "the file-descriptor limit {fd_limit} holds only {} streams; raise it \
                 (ulimit -n, LimitNOFILE=) for more",
                self.effective_max_streams(fd_limit)
            )),
            _ => None,
        }
    }

    /// The timer grid in force: the flag, or 1/40 of the interval between 1 and 2 ms.
    pub fn timer_slack_ms(&self) -> u64 {
        self.timer_slack_ms
            .unwrap_or((self.conn.interval_ms / 40).clamp(1, 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], port: Option<&str>) -> Result<Config, String> {
        let env = |k: &str| (k == "PORT").then(|| port.map(str::to_owned)).flatten();
        run_env(args, &env)
    }

    fn run_env(args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()), env)? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&[], None).unwrap();
        assert_eq!(
            (c.port, c.conn.interval_ms, c.www.clone()),
            (3000, 2000, None)
        );
        assert_eq!(c.bind.to_string(), "::", "dual-stack by default");
        let c = run(
            &[
                "--port",
                "0",
                "--interval-ms=50",
                "--bind",
                "127.0.0.1",
                "--www",
                "/tmp/x",
            ],
            None,
        )
        .unwrap();
        assert_eq!((c.port, c.conn.interval_ms), (0, 50));
        assert_eq!(c.www.as_deref(), Some(std::path::Path::new("/tmp/x")));
        assert_eq!(run(&[], Some("4000")).unwrap().port, 4000);
        assert_eq!(
            run(&["--port", "5000"], Some("4000")).unwrap().port,
            5000,
            "the flag wins"
        );
        assert_eq!(
            run(&["--max-streams", "10"], None)
                .unwrap()
                .effective_max_streams(20_000),
            10
        );
        assert_eq!(
            run(&[], None).unwrap().effective_max_streams(20_000),
            19_744
        );
    }

    #[test]
    fn every_flag_has_a_variable_and_the_flag_wins() {
        assert_eq!(env_name("--max-streams"), "SSE_MAX_STREAMS");
        assert_eq!(env_name("--interval-ms"), "SSE_INTERVAL_MS");
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = run_env(
            &[],
            &vars(&[
                ("SSE_INTERVAL_MS", "50"),
                ("SSE_MAX_STREAMS", "7"),
                ("SSE_BIND", "127.0.0.1"),
                ("SSE_WWW", "/srv/www"),
                ("PORT", "4000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.conn.interval_ms, 50);
        assert_eq!(c.max_streams, Some(7));
        assert_eq!(c.bind.to_string(), "127.0.0.1");
        assert_eq!(c.www.as_deref(), Some(std::path::Path::new("/srv/www")));
        assert_eq!(c.port, 4000, "PORT still works");
        let both = vars(&[("PORT", "4000"), ("SSE_PORT", "4001")]);
        assert_eq!(
            run_env(&[], &both).unwrap().port,
            4001,
            "SSE_PORT over PORT"
        );
        assert_eq!(
            run_env(&["--port", "5"], &both).unwrap().port,
            5,
            "the flag wins"
        );
        let c = run_env(&["--interval-ms", "9"], &vars(&[("SSE_INTERVAL_MS", "50")]));
        assert_eq!(c.unwrap().conn.interval_ms, 9);
        assert_eq!(
            run_env(&[], &vars(&[("SSE_INTERVAL_MS", "")])).unwrap(),
            run(&[], None).unwrap(),
            "an empty variable is unset"
        );
        let err = run_env(&[], &vars(&[("SSE_INTERVAL_MS", "x")])).unwrap_err();
        assert!(err.contains("SSE_INTERVAL_MS"), "{err}");
        // Every flag in the table answers to its variable: a bad value names the variable.
        for f in FLAGS {
            let name = env_name(f.name);
            let env = |k: &str| (k == name).then(|| "-1x".to_string());
            match run_env(&[], &env) {
                Err(e) => assert!(e.contains(&name), "{e}"),
                Ok(_) => assert!(
                    [
                        "--www",
                        "--publish-token",
                        "--redis",
                        "--data-dir",
                        "--jwt-key",
                        "--jwt-key-file",
                        "--jwt-audience",
                        "--private-topics",
                        "--cors-origin",
                        "--tls-cert",
                        "--tls-key"
                    ]
                    .contains(&f.name),
                    "{} ignored",
                    f.name
                ),
            }
        }
    }

    #[test]
    fn the_data_dir_takes_an_fsync_policy_and_refuses_redis() {
        use crate::durable::writer::Fsync;
        let c = run(&["--data-dir", "/var/lib/x"], None).unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/var/lib/x")));
        assert_eq!(c.fsync, Fsync::Batch);
        let c = run(&["--data-dir=/d", "--fsync", "always"], None).unwrap();
        assert_eq!(c.fsync, Fsync::Always);
        let e = run(&["--fsync", "sometimes"], None).unwrap_err();
        assert!(e.contains("always, batch or off"), "{e}");
        let e = run(
            &["--data-dir", "/d", "--redis", "redis://127.0.0.1:6379"],
            None,
        )
        .unwrap_err();
        assert!(
            e.contains("--data-dir and --redis exclude each other"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn an_open_publisher_beyond_loopback_is_warned_about() {
        let w = run(&[], None)
            .unwrap()
            .publish_warning()
            .expect("default bind :: is open");
        assert!(
            w.contains("--publish-token") && w.contains("openssl rand -hex 32") && w.contains("::"),
            "{w}"
        );
        assert!(run(&["--bind", "0.0.0.0"], None)
            .unwrap()
            .publish_warning()
            .is_some());
        for quiet in [
            &["--bind", "127.0.0.1"][..],
            &["--bind", "::1"],
            &["--publish-token", "t0ken"],
            &["--jwt-key", "0123456789abcdef0123456789abcdef"],
        ] {
            assert_eq!(
                run(quiet, None).unwrap().publish_warning(),
                None,
                "{quiet:?}"
            );
        }
    }

    #[test]
    fn out_of_range_is_not_called_malformed() {
        let e = run(&["--port", "99999"], None).unwrap_err();
        assert!(e.contains("out of range") && e.contains("65535"), "{e}");
        let e = run(&[], Some("70000")).unwrap_err();
        assert!(e.contains("PORT") && e.contains("out of range"), "{e}");
        let e = run(&["--port", "x"], None).unwrap_err();
        assert!(e.contains("not a valid number"), "{e}");
    }

    #[test]
    fn the_descriptor_reserve_scales_with_the_limit() {
        let c = run(&[], None).unwrap();
        assert_eq!(
            c.effective_max_streams(256),
            224,
            "not 1 under ulimit -n 256"
        );
        assert_eq!(c.effective_max_streams(1024), 896);
        assert_eq!(c.effective_max_streams(64), 48);
        assert_eq!(c.effective_max_streams(1_048_576), 1_048_320);
        assert!(c.fd_warning(256).unwrap().contains("224"));
        assert_eq!(c.fd_warning(1_048_576), None);
        let c = run(&["--max-streams", "1000"], None).unwrap();
        assert!(c.fd_warning(256).unwrap().contains("--max-streams 1000"));
        assert_eq!(c.fd_warning(2048), None);
    }

    #[test]
    fn timer_slack_follows_the_interval() {
        let slack = |args: &[&str]| run(args, None).unwrap().timer_slack_ms();
        assert_eq!(slack(&[]), 2, "2 s interval: 2 ms grid");
        assert_eq!(slack(&["--interval-ms", "100"]), 2);
        assert_eq!(slack(&["--interval-ms", "60"]), 1);
        assert_eq!(slack(&["--interval-ms", "10"]), 1);
        assert_eq!(slack(&["--timer-slack-ms", "3"]), 3);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for args in [
            &["--port"][..],
            &["--port", "70000"],
            &["--interval-ms", "0"],
            &["--interval-ms", "-5"],
            &["--bind", "localhost:3"],
            &["--threads", "0"],
            &["--frobnicate"],
            &["--max-head-bytes", "10"],
        ] {
            assert!(run(args, None).is_err(), "{args:?}");
        }
        assert!(run(&[], Some("x")).is_err());
        assert_eq!(
            parse_args(["--help".to_string()], &|_| Some("junk".into())),
            Ok(Command::Help),
            "--help whatever the environment holds"
        );
    }

    #[test]
    fn help_lists_every_flag() {
        let h = help();
        for f in FLAGS {
            assert!(
                h.contains(&env_name(f.name)),
                "{} missing from --help",
                f.name
            );
        }
        for flag in [
            "--port",
            "--bind",
            "--interval-ms",
            "--www",
            "--threads",
            "--max-streams",
            "--head-timeout-ms",
            "--idle-timeout-ms",
            "--stall-timeout-ms",
            "--reconnect-ms",
            "--max-head-bytes",
            "--max-target-bytes",
            "--max-headers",
            "--sndbuf",
            "--shutdown-grace-ms",
            "--timer-slack-ms",
            "--help",
            "--version",
        ] {
            assert!(h.contains(flag), "{flag} missing from --help");
        }
    }

    /// Every flag row has its value, then at least two spaces, then its description, all
    /// descriptions in one column (`--private-topics SELECTOR` ran into its text once).
    #[test]
    fn help_columns_fit_the_longest_flag() {
        let h = help();
        let mut column = None;
        for f in FLAGS {
            let left = format!("  {} {}", f.name, f.value);
            let row = h
                .lines()
                .find(|l| l.starts_with(&format!("{left} ")))
                .unwrap_or_else(|| panic!("no row for {left:?} in:\n{h}"));
            let rest = &row[left.len()..];
            assert!(rest.starts_with("  "), "{row:?} runs into its text");
            let at = left.len() + rest.len() - rest.trim_start().len();
            assert_eq!(*column.get_or_insert(at), at, "{row:?} is out of column");
            assert!(row[at..].starts_with(f.help), "{row:?}");
        }
        let at = column.unwrap();
        for (row, text) in [
            ("  -h, --help ", "this text"),
            ("  -V, --version ", "the version"),
        ] {
            let line = h.lines().find(|l| l.starts_with(row)).expect(row);
            assert_eq!(line.find(text), Some(at), "{line:?}");
        }
    }
}
