//! Every knob of `sse-server`, parsed and validated once into a typed [`Config`].
//!
//! **Invariant:** no IO here beyond what the caller passes in (arguments and `PORT`).

use crate::cli::{at_least, num, positive, split_flag};
use crate::conn::ConnConfig;
use crate::hub::HubConfig;
use std::net::IpAddr;
use std::path::PathBuf;

/// The server's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([0, 0, 0, 0]),
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

/// The `--help` text; every flag with its default.
pub fn help() -> String {
    let d = Config::default();
    let c = &d.conn;
    format!(
        "sse-server: a Server-Sent Events server (the seed's /sse stream, its page, /metrics)

USAGE: sse-server [FLAGS]

FLAGS (each also accepted as --flag=value):
  --port N                TCP port (default {port}; the PORT environment variable sets it too,
                          the flag wins; 0 picks a free port)
  --bind ADDR             address to listen on (default {bind})
  --interval-ms N         time between two events of one stream (default {interval})
  --www DIR               serve the page from DIR instead of the copy built into the binary
  --threads N             event loops, one per core is best (default: CPUs here = {threads})
  --max-streams N         most concurrent streams; past it a client is told to retry later
                          (default: the file-descriptor limit minus 256)
  --head-timeout-ms N     a request head must arrive within this (default {head})
  --idle-timeout-ms N     close a kept-alive connection idle this long (default {idle})
  --stall-timeout-ms N    close a connection whose output makes no progress this long
                          (default {stall})
  --reconnect-ms N        mean of the jittered retry: sent on overload and shutdown
                          (default {reconnect}; spread over half to one and a half times it)
  --max-head-bytes N      request head size limit, 431 past it (default {max_head})
  --max-target-bytes N    request target limit, 414 past it (default {max_target})
  --max-headers N         header count limit, 431 past it (default {max_headers})
  --sndbuf BYTES          SO_SNDBUF of accepted sockets (default: the kernel's autotuning)
  --shutdown-grace-ms N   on SIGTERM/SIGINT, time allowed to end streams (default {grace})
HUB (POST /publish, GET /sse?topic=...):
  --publish-token T       publishers must send Authorization: Bearer T (also SSE_PUBLISH_TOKEN);
                          without it only loopback clients may publish
  --history-events N      events kept for resuming (default {hist_events})
  --history-bytes N       bytes of events kept (default {hist_bytes})
  --heartbeat-ms N        a comment line on a topic stream idle this long (default {heartbeat})
  --max-publish-bytes N   largest publish body, 413 past it (default {max_body})
  --timer-slack-ms N      ticks due within N ms share one wake-up; a frame may be up to N ms
                          late, never early (default: interval/40, from 1 to 2)
  -h, --help              this text
  -V, --version           the version

ENDPOINTS: GET /sse (the seed's clock stream), GET /sse?topic=T (a hub subscription; resume
with Last-Event-ID or lastEventID=), POST /publish (topic, data, type, retry as a form or JSON),
GET /metrics (Prometheus), GET /healthz, and the page's files (GET / is index.html).
SIGNALS: SIGTERM and SIGINT end every stream with a jittered retry: and exit 0; SIGHUP is
ignored.
",
        port = d.port,
        bind = d.bind,
        interval = c.interval_ms,
        threads = d.threads,
        head = c.head_timeout_ms,
        idle = c.idle_timeout_ms,
        stall = c.stall_timeout_ms,
        reconnect = c.reconnect_ms,
        max_head = c.limits.max_head,
        max_target = c.limits.max_target,
        max_headers = c.limits.max_headers,
        grace = d.shutdown_grace_ms,
        hist_events = d.hub.history_events,
        hist_bytes = d.hub.history_bytes,
        heartbeat = d.hub.heartbeat_ms,
        max_body = c.max_body,
    )
}

/// Parses the arguments (without the program name) and the `PORT` variable's value.
pub fn parse_args<I: IntoIterator<Item = String>>(
    args: I,
    env_port: Option<&str>,
) -> Result<Command, String> {
    let mut cfg = Config::default();
    if let Some(p) = env_port {
        cfg.port = p
            .trim()
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?;
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let c = &mut cfg.conn;
        match flag.as_str() {
            "--port" => cfg.port = num(&flag, &value()?)?,
            "--bind" => {
                let v = value()?;
                cfg.bind = v
                    .parse()
                    .map_err(|_| format!("--bind {v:?} is not an IP address"))?;
            }
            "--interval-ms" => c.interval_ms = positive(&flag, &value()?)?,
            "--www" => cfg.www = Some(PathBuf::from(value()?)),
            "--threads" => cfg.threads = positive(&flag, &value()?)?,
            "--max-streams" => cfg.max_streams = Some(num(&flag, &value()?)?),
            "--head-timeout-ms" => c.head_timeout_ms = positive(&flag, &value()?)?,
            "--idle-timeout-ms" => c.idle_timeout_ms = positive(&flag, &value()?)?,
            "--stall-timeout-ms" => c.stall_timeout_ms = positive(&flag, &value()?)?,
            "--reconnect-ms" => c.reconnect_ms = positive(&flag, &value()?)?,
            "--max-head-bytes" => c.limits.max_head = at_least(&flag, &value()?, 64)?,
            "--max-target-bytes" => c.limits.max_target = at_least(&flag, &value()?, 16)?,
            "--max-headers" => c.limits.max_headers = at_least(&flag, &value()?, 1)?.min(128),
            "--sndbuf" => cfg.sndbuf = Some(positive(&flag, &value()?)?),
            "--shutdown-grace-ms" => cfg.shutdown_grace_ms = num(&flag, &value()?)?,
            "--timer-slack-ms" => cfg.timer_slack_ms = Some(positive(&flag, &value()?)?),
            "--publish-token" => {
                let t = value()?;
                if t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()) {
                    return Err(format!("{flag} must be printable ASCII without spaces"));
                }
                cfg.publish_token = Some(t);
            }
            "--history-events" => cfg.hub.history_events = positive(&flag, &value()?)?,
            "--history-bytes" => cfg.hub.history_bytes = at_least(&flag, &value()?, 1024)?,
            "--heartbeat-ms" => cfg.hub.heartbeat_ms = positive(&flag, &value()?)?,
            "--max-publish-bytes" => c.max_body = positive(&flag, &value()?)?,
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    Ok(Command::Run(Box::new(cfg)))
}

impl Config {
    /// Limits derived from the config and the process's file-descriptor limit.
    pub fn effective_max_streams(&self, fd_limit: u64) -> usize {
        self.max_streams
            .unwrap_or_else(|| fd_limit.saturating_sub(256).max(1) as usize)
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
        match parse_args(args.iter().map(|s| s.to_string()), port)? {
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
        assert_eq!(c.bind.to_string(), "0.0.0.0");
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
        assert_eq!(parse_args(["--help".to_string()], None), Ok(Command::Help));
    }

    #[test]
    fn help_lists_every_flag() {
        let h = help();
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
}
