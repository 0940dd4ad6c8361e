//! Every knob of `sse-load`, parsed and validated once into a typed [`LoadConfig`], and the target
//! URL, which must name a loopback address.
//!
//! **Invariant:** no IO: no name is resolved (only IP literals and `localhost`, which is taken
//! to mean 127.0.0.1, are accepted), so a typo can never send load off this machine.

use super::conn::StreamConfig;
use super::publish::{percent_encode, BodyFormat, PublishConfig};
use super::target::{parse_url, Target};
use crate::util::cli::{num, positive, split_flag};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// The URL used when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/sse";

/// The whole configuration of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    pub target: Target,
    /// Concurrent streams to open.
    pub connections: usize,
    /// `--spread N`: the i-th stream's path has `{spread}` replaced by `i % N` (1: unchanged).
    pub spread: usize,
    /// Length of the run, from the first connect.
    pub duration: Duration,
    /// Frame interval and lateness are measured only after this much of the run.
    pub warmup: Duration,
    /// New connects per second; 0 means as fast as `max_inflight` allows.
    pub rate: f64,
    /// Most streams between connect start and response head at any time.
    pub max_inflight: usize,
    /// Local addresses the connections are spread over (empty: the kernel picks).
    pub source_addrs: Vec<IpAddr>,
    /// Event loops (threads).
    pub threads: usize,
    /// JSON report instead of text.
    pub json: bool,
    /// No progress lines.
    pub quiet: bool,
    /// Per-stream behaviour.
    pub conn: StreamConfig,
    /// Topics the streams subscribe to (`--topic`, already appended to the target's query).
    pub topics: Vec<String>,
    /// Hub mode: the publisher, when `--publish-url` is given.
    pub publish: Option<PublishConfig>,
    /// Publishing stops this long before the run ends, so the last events can arrive.
    pub drain: Duration,
    /// When the run counts as failed (exit code 3).
    pub thresholds: Thresholds,
    /// Where to write the HTML report and the per-second CSV series.
    pub html: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    /// The CA certificate (PEM) `https://` targets are checked against (`--tls-ca`).
    pub tls_ca: Option<PathBuf>,
    /// `--h2`: the streams go over HTTP/2, this many per connection (`--h2-streams`).
    pub h2: Option<usize>,
}

/// The checks a run must pass for `sse-load` to exit 0 (by default: every stream opened and
/// stayed open; in hub mode also every publish succeeded and every delivery arrived).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Most streams allowed to fail to open (including those still opening at the end).
    pub max_failed: u64,
    /// Most open streams allowed to end before the run does.
    pub max_dropped: u64,
    /// Fewest streams that must open.
    pub min_established: u64,
    /// Highest delivery lateness p99 allowed, in milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Highest connect time p99 allowed, in milliseconds.
    pub max_connect_p99_ms: Option<f64>,
    /// Hub mode: highest publish-to-deliver p99, and publish answer p99, in milliseconds.
    pub max_deliver_p99_ms: Option<f64>,
    pub max_publish_p99_ms: Option<f64>,
    /// Hub mode: most deliveries allowed to be missing (expected minus received), and most
    /// publishes allowed to fail.
    pub max_missing: u64,
    pub max_publish_errors: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: parse_url(DEFAULT_URL).unwrap_or_else(|_| unreachable!("the default URL")),
            connections: 100,
            spread: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: 2000.0,
            max_inflight: 1000,
            source_addrs: Vec::new(),
            threads: 1,
            json: false,
            quiet: false,
            conn: StreamConfig::default(),
            topics: Vec::new(),
            publish: None,
            drain: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            html: None,
            csv: None,
            tls_ca: None,
            h2: None,
        }
    }
}

/// `--h2`'s streams per connection unless `--h2-streams` says.
pub const DEFAULT_H2_STREAMS: usize = 100;

impl LoadConfig {
    /// The request every stream sends (the first of [`requests`](Self::requests)).
    pub fn request(&self) -> Vec<u8> {
        self.request_for(0)
    }

    /// The requests the streams send in turn: one per `--spread` value.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        (0..self.spread.max(1))
            .map(|i| self.request_for(i))
            .collect()
    }

    /// The paths the streams ask for in turn: one per `--spread` value.
    pub fn paths(&self) -> Vec<String> {
        (0..self.spread.max(1)).map(|i| self.path_for(i)).collect()
    }

    fn path_for(&self, i: usize) -> String {
        if self.spread > 1 {
            self.target.path.replace("{spread}", &i.to_string())
        } else {
            self.target.path.clone()
        }
    }

    fn request_for(&self, i: usize) -> Vec<u8> {
        let path = self.path_for(i);
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: sse-load/{}\r\n",
            path,
            self.target.host,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(id) = &self.conn.last_event_id {
            r.push_str("Last-Event-ID: ");
            r.push_str(id);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadCommand {
    Run(Box<LoadConfig>),
    Help,
    Version,
}

/// The `--help` text: every flag with its default.
pub fn help() -> String {
    let d = LoadConfig::default();
    format!(
        "sse-load: open many Server-Sent Events streams against a server on this machine and
measure them

USAGE: sse-load [URL] [FLAGS]

URL defaults to {url}; its host must be a loopback address (127.0.0.0/8, ::1 or
localhost). http:// or https:// (with --tls-ca).

FLAGS (each also accepted as --flag=value):
  -c, --connections N         concurrent streams to open (default {c})
  -d, --duration SECONDS      length of the run from the first connect, fractions allowed
                              (default {d})
  -r, --rate N                new connects per second, 0 = no limit but --max-inflight
                              (default {rate})
      --max-inflight N        most streams between connect and response head at once
                              (default {inflight})
      --connect-timeout-ms N  TCP handshake timeout (default {ct})
      --headers-timeout-ms N  time allowed from handshake to the complete response head
                              (default {ht})
      --warmup SECONDS        measure frame interval and lateness only after this much of the
                              run, to leave the ramp out (default 0: the whole run)
      --last-event-id ID      send Last-Event-ID: ID with every request (default: none)
      --spread N              the i-th stream asks for the URL with {{spread}} replaced by
                              i % N (many subscriptions from one run; default 1: unchanged)
      --source-addrs N|LIST   spread connections over local addresses 127.0.0.1..127.0.0.N, or
                              over the comma-separated 127.x.y.z LIST, to get past the
                              ephemeral-port limit (default: one, picked by the kernel)
      --threads N             event loops, one thread each (default {threads})
      --json                  print the final report as JSON (default: text)
      --html FILE             also write a self-contained HTML report (charts, no scripts)
      --csv FILE              also write the per-second series as CSV
      --tls-ca FILE           trust this CA certificate (PEM) for https:// URLs (required for them)
      --h2                    HTTP/2: many streams per connection, h2c with prior knowledge on
                              http://, ALPN h2 on https:// (a server that does not pick h2
                              fails every stream with not_h2); the publisher stays HTTP/1.1
      --h2-streams N          streams per HTTP/2 connection (implies --h2; default {h2s})
  -q, --quiet                 no progress line each second (progress goes to stderr)
  -h, --help                  this text
  -V, --version               the version

HUB MODE (subscribe to topics while a publisher publishes timestamped events):
      --topic NAME            subscribe to NAME: appends topic=NAME to the URL's query;
                              repeatable (a URL with its own query, or nchan's /sub/CHANNEL,
                              works as given)
      --publish-url URL       POST events there (loopback only), one keep-alive connection
      --publish-rate N        publishes per second (default 1)
      --publish-format F      form (topic=..&data=..), json ({{\"topic\":..,\"data\":..}}) or
                              raw (the payload alone: nchan's /pub/CHANNEL) (default form)
      --publish-topic NAME    topic to publish to, repeatable (default: the --topic names)
      --publish-token T       send Authorization: Bearer T
      --publish-timeout-ms N  an answer must come within this (default 5000)
      --drain SECONDS         stop publishing this long before the end, so the last events
                              arrive (default 1, at most half the run)
  Each event's data is {{\"seq\":N,\"t_us\":SEND_TIME_US,\"run\":NONCE}}. Publishing
  starts once every stream has opened or failed, and not before --warmup.

CHECKS (exit code 3 when one fails; the report says which):
      --max-failed N          streams allowed to fail to open, including those still opening
                              at the end (default 0)
      --max-dropped N         open streams allowed to end early (default 0)
      --min-established N     streams that must open (default 0)
      --max-p99-ms X          highest delivery lateness p99
      --max-connect-p99-ms X  highest connect time p99
      --max-deliver-p99-ms X  hub mode: highest publish-to-deliver p99
      --max-publish-p99-ms X  hub mode: highest publish answer time p99
      --max-missing N         hub mode: deliveries allowed to be missing (default 0; a large
                              N allows loss)
      --max-publish-errors N  hub mode: publishes allowed to fail (default 0)

The report: streams established, failed (never opened) and dropped (ended early) by reason;
connect time and time to headers; frames and bytes; frame interval; delivery lateness
(receive time minus the frame's \"content\" timestamp, when frames carry one; a timestamp in
whole milliseconds adds 0 to 1 ms to it); id gaps and duplicates; this process's CPU time; in hub mode, publishes by status, publish
answer time, publish-to-deliver latency, deliveries expected and received, gaps, duplicates
and resets. Exit code 0 when every check passed, 3 when one failed, 2 on bad arguments, 1
when the run could not start.
",
        url = DEFAULT_URL,
        c = d.connections,
        d = d.duration.as_secs_f64(),
        rate = d.rate,
        inflight = d.max_inflight,
        ct = d.conn.connect_timeout_ms,
        ht = d.conn.headers_timeout_ms,
        threads = d.threads,
        h2s = DEFAULT_H2_STREAMS,
    )
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<LoadCommand, String> {
    let mut cfg = LoadConfig::default();
    let mut url: Option<String> = None;
    let mut sources: Option<String> = None;
    let mut publish_url: Option<String> = None;
    let mut publish_rate = 1.0;
    let mut publish_format = BodyFormat::Form;
    let mut publish_topics: Vec<String> = Vec::new();
    let mut publish_token: Option<String> = None;
    let mut publish_timeout_ms = 5_000;
    let mut drain: Option<f64> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(LoadCommand::Help),
            "-V" | "--version" => return Ok(LoadCommand::Version),
            "--json" => {
                cfg.json = true;
                continue;
            }
            "--h2" => {
                cfg.h2.get_or_insert(DEFAULT_H2_STREAMS);
                continue;
            }
            "-q" | "--quiet" => {
                cfg.quiet = true;
                continue;
            }
            _ => {}
        }
        if !flag.starts_with('-') {
            if url.replace(arg.clone()).is_some() {
                return Err(format!("unexpected argument {arg:?}: one URL only"));
            }
            continue;
        }
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-c" | "--connections" => cfg.connections = positive(&flag, &value()?)?,
            "-d" | "--duration" => {
                let v = value()?;
                let s: f64 = num(&flag, &v)?;
                if !(s > 0.0 && s <= 1e7) {
                    return Err(format!("{flag} must be above 0 (seconds)"));
                }
                cfg.duration = Duration::from_secs_f64(s);
            }
            "--warmup" => {
                let v = value()?;
                let s: f64 = num(&flag, &v)?;
                if !(0.0..=1e7).contains(&s) {
                    return Err(format!("{flag} must be 0 or more (seconds)"));
                }
                cfg.warmup = Duration::from_secs_f64(s);
            }
            "-r" | "--rate" => {
                let v = value()?;
                let r: f64 = num(&flag, &v)?;
                if !(r >= 0.0 && r.is_finite()) {
                    return Err(format!("{flag} must be 0 or more"));
                }
                cfg.rate = r;
            }
            "--max-inflight" => cfg.max_inflight = positive(&flag, &value()?)?,
            "--connect-timeout-ms" => cfg.conn.connect_timeout_ms = positive(&flag, &value()?)?,
            "--headers-timeout-ms" => cfg.conn.headers_timeout_ms = positive(&flag, &value()?)?,
            "--last-event-id" => {
                let v = value()?;
                cfg.conn.last_event_id = Some(header_value(&flag, v)?);
            }
            "--spread" => cfg.spread = positive(&flag, &value()?)?,
            "--source-addrs" => sources = Some(value()?),
            "--threads" => cfg.threads = positive(&flag, &value()?)?,
            "--html" => cfg.html = Some(PathBuf::from(value()?)),
            "--csv" => cfg.csv = Some(PathBuf::from(value()?)),
            "--tls-ca" => cfg.tls_ca = Some(PathBuf::from(value()?)),
            "--h2-streams" => {
                let n: usize = positive(&flag, &value()?)?;
                if n > 1_000_000 {
                    return Err(format!("{flag} must be 1 to 1000000"));
                }
                cfg.h2 = Some(n);
            }
            "--topic" => cfg.topics.push(topic(&flag, value()?)?),
            "--publish-url" => publish_url = Some(value()?),
            "--publish-rate" => {
                let v = value()?;
                let r: f64 = num(&flag, &v)?;
                if !(r > 0.0 && r <= 1e6) {
                    return Err(format!("{flag} must be above 0 (publishes per second)"));
                }
                publish_rate = r;
            }
            "--publish-format" => {
                let v = value()?;
                publish_format = BodyFormat::parse(&v)
                    .ok_or_else(|| format!("{flag} must be form, json or raw, not {v:?}"))?;
            }
            "--publish-topic" => publish_topics.push(topic(&flag, value()?)?),
            "--publish-token" => publish_token = Some(header_value(&flag, value()?)?),
            "--publish-timeout-ms" => publish_timeout_ms = positive(&flag, &value()?)?,
            "--drain" => {
                let v = value()?;
                let s: f64 = num(&flag, &v)?;
                if !(0.0..=1e7).contains(&s) {
                    return Err(format!("{flag} must be 0 or more (seconds)"));
                }
                drain = Some(s);
            }
            "--max-failed" => cfg.thresholds.max_failed = num(&flag, &value()?)?,
            "--max-dropped" => cfg.thresholds.max_dropped = num(&flag, &value()?)?,
            "--min-established" => cfg.thresholds.min_established = num(&flag, &value()?)?,
            "--max-missing" => cfg.thresholds.max_missing = num(&flag, &value()?)?,
            "--max-publish-errors" => cfg.thresholds.max_publish_errors = num(&flag, &value()?)?,
            "--max-p99-ms" => cfg.thresholds.max_p99_ms = Some(millis(&flag, &value()?)?),
            "--max-connect-p99-ms" => {
                cfg.thresholds.max_connect_p99_ms = Some(millis(&flag, &value()?)?)
            }
            "--max-deliver-p99-ms" => {
                cfg.thresholds.max_deliver_p99_ms = Some(millis(&flag, &value()?)?)
            }
            "--max-publish-p99-ms" => {
                cfg.thresholds.max_publish_p99_ms = Some(millis(&flag, &value()?)?)
            }
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if let Some(u) = url {
        cfg.target = parse_url(&u)?;
    }
    for t in &cfg.topics {
        let p = &mut cfg.target.path;
        p.push(if p.contains('?') { '&' } else { '?' });
        p.push_str("topic=");
        percent_encode(t, p);
    }
    let d = cfg.duration.as_secs_f64();
    cfg.drain = Duration::from_secs_f64(drain.unwrap_or(1.0).min(d / 2.0));
    if let Some(u) = publish_url {
        if publish_topics.is_empty() {
            publish_topics = cfg.topics.clone();
        }
        if publish_format != BodyFormat::Raw && publish_topics.is_empty() {
            return Err(
                "--publish-format form and json need a topic: give --topic or --publish-topic"
                    .into(),
            );
        }
        cfg.publish = Some(PublishConfig {
            target: parse_url(&u)?,
            rate: publish_rate,
            format: publish_format,
            topics: publish_topics,
            token: publish_token,
            answer_timeout_ms: publish_timeout_ms,
        });
    }
    let https = cfg.target.tls || cfg.publish.as_ref().is_some_and(|p| p.target.tls);
    if https && cfg.tls_ca.is_none() {
        return Err("https:// URLs need --tls-ca FILE (the CA certificate to trust)".into());
    }
    if let Some(s) = sources {
        cfg.source_addrs = parse_sources(&s, cfg.target.addr.ip())?;
    }
    cfg.threads = cfg.threads.min(cfg.connections);
    Ok(LoadCommand::Run(Box::new(cfg)))
}

/// A topic name: 1 to 256 bytes.
fn topic(flag: &str, v: String) -> Result<String, String> {
    if v.is_empty() || v.len() > 256 {
        return Err(format!("{flag} must be 1 to 256 bytes"));
    }
    Ok(v)
}

/// A value that goes into a request header as it is.
fn header_value(flag: &str, v: String) -> Result<String, String> {
    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("{flag} must not contain CR, LF or NUL"));
    }
    Ok(v)
}

/// A limit in milliseconds: 0 or more.
fn millis(flag: &str, v: &str) -> Result<f64, String> {
    let x: f64 = num(flag, v)?;
    if !(x >= 0.0 && x.is_finite()) {
        return Err(format!("{flag} must be 0 or more (milliseconds)"));
    }
    Ok(x)
}

/// `N` (127.0.0.1 to 127.0.0.N) or a comma-separated list of IPv4 loopback addresses.
fn parse_sources(s: &str, target: IpAddr) -> Result<Vec<IpAddr>, String> {
    if !target.is_ipv4() {
        return Err("--source-addrs needs an IPv4 loopback target (127.x.y.z)".into());
    }
    if let Ok(n) = s.trim().parse::<u32>() {
        if !(1..=254).contains(&n) {
            return Err("--source-addrs N must be 1 to 254".into());
        }
        return Ok((1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
            .collect());
    }
    s.split(',')
        .map(|a| match a.trim().parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(v4)) if v4.is_loopback() => Ok(ip),
            _ => Err(format!(
                "--source-addrs: {a:?} is not an IPv4 loopback address (127.x.y.z)"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<LoadConfig, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            LoadCommand::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spread_gives_each_stream_in_turn_its_own_path() {
        let c = run(&[
            "http://127.0.0.1:1/sse?topic=r%7Bid{spread}%7D",
            "--spread",
            "3",
        ])
        .unwrap();
        let reqs: Vec<String> = c
            .requests()
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect();
        assert_eq!(reqs.len(), 3);
        for (i, r) in reqs.iter().enumerate() {
            assert!(
                r.starts_with(&format!("GET /sse?topic=r%7Bid{i}%7D HTTP/1.1\r\n")),
                "{r}"
            );
        }
        // Without --spread the path is sent as given, braces and all.
        let c = run(&["http://127.0.0.1:1/sse?topic={spread}"]).unwrap();
        assert_eq!(c.requests().len(), 1);
        assert!(String::from_utf8(c.request())
            .unwrap()
            .starts_with("GET /sse?topic={spread} HTTP/1.1"));
        assert!(run(&["--spread", "0"]).is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let c = run(&[]).unwrap();
        assert_eq!(c.target.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!((c.target.path.as_str(), c.connections), ("/sse", 100));
        let c = run(&[
            "http://127.0.0.2:8080/events?x=1",
            "-c",
            "50",
            "--duration=2.5",
            "--rate",
            "0",
            "--max-inflight=7",
            "--last-event-id",
            "41",
            "--source-addrs",
            "3",
            "--threads",
            "2",
            "--json",
            "-q",
            "--connect-timeout-ms",
            "100",
            "--headers-timeout-ms=200",
        ])
        .unwrap();
        assert_eq!(c.target.addr, "127.0.0.2:8080".parse().unwrap());
        assert_eq!(c.target.path, "/events?x=1");
        assert_eq!(c.target.host, "127.0.0.2:8080");
        assert_eq!(
            (c.connections, c.duration),
            (50, Duration::from_millis(2500))
        );
        assert_eq!((c.rate, c.max_inflight, c.threads), (0.0, 7, 2));
        assert!(c.json && c.quiet);
        assert_eq!(c.conn.last_event_id.as_deref(), Some("41"));
        assert_eq!(
            (c.conn.connect_timeout_ms, c.conn.headers_timeout_ms),
            (100, 200)
        );
        assert_eq!(
            c.source_addrs,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
                .map(|a| a.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        let req = String::from_utf8(c.request()).unwrap();
        assert!(req.starts_with("GET /events?x=1 HTTP/1.1\r\nHost: 127.0.0.2:8080\r\n"));
        assert!(req.ends_with("Last-Event-ID: 41\r\n\r\n"));
        let c = run(&[
            "--source-addrs",
            "127.0.0.5, 127.1.2.3",
            "-c",
            "1",
            "--threads",
            "4",
        ])
        .unwrap();
        assert_eq!(c.source_addrs.len(), 2);
        assert_eq!(c.threads, 1, "no more loops than streams");
    }

    #[test]
    fn h2_flags() {
        assert_eq!(run(&[]).unwrap().h2, None);
        assert_eq!(run(&["--h2"]).unwrap().h2, Some(DEFAULT_H2_STREAMS));
        assert_eq!(run(&["--h2-streams", "7"]).unwrap().h2, Some(7));
        assert_eq!(run(&["--h2-streams=7", "--h2"]).unwrap().h2, Some(7));
        let c = run(&["http://127.0.0.1:1/s?t={spread}", "--spread", "2", "--h2"]).unwrap();
        assert_eq!(c.paths(), ["/s?t=0", "/s?t=1"]);
        for bad in [&["--h2-streams", "0"][..], &["--h2-streams", "x"]] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hub_flags() {
        let c = run(&[
            "http://127.0.0.1:3000/sse",
            "--topic",
            "a b",
            "--topic=c/d",
            "--publish-url",
            "http://127.0.0.1:3000/publish",
            "--publish-rate",
            "50",
            "--publish-token",
            "tok",
            "-d",
            "1",
            "--max-p99-ms",
            "5",
            "--max-missing",
            "10",
            "--min-established=3",
            "--html",
            "/tmp/r.html",
        ])
        .unwrap();
        assert_eq!(c.target.path, "/sse?topic=a%20b&topic=c%2Fd");
        let p = c.publish.unwrap();
        assert_eq!((p.rate, p.format), (50.0, BodyFormat::Form));
        assert_eq!(p.topics, ["a b", "c/d"]);
        assert_eq!(p.token.as_deref(), Some("tok"));
        assert_eq!(p.target.path, "/publish");
        assert_eq!(c.drain, Duration::from_millis(500), "at most half the run");
        assert_eq!(c.thresholds.max_p99_ms, Some(5.0));
        assert_eq!(
            (c.thresholds.max_missing, c.thresholds.min_established),
            (10, 3)
        );
        assert_eq!(c.html.as_deref(), Some(std::path::Path::new("/tmp/r.html")));
        let c = run(&[
            "http://127.0.0.1:3001/sub/bench?x=1",
            "--topic",
            "t",
            "--publish-url=http://127.0.0.1:3001/pub/bench",
            "--publish-format",
            "raw",
        ])
        .unwrap();
        assert_eq!(c.target.path, "/sub/bench?x=1&topic=t");
        assert_eq!(c.publish.unwrap().format, BodyFormat::Raw);
        for bad in [
            &["--publish-url", "http://127.0.0.1:1/publish"][..],
            &["--topic", "t", "--publish-url", "http://10.0.0.1:1/publish"],
            &[
                "--topic",
                "t",
                "--publish-url",
                "http://127.0.0.1:1/p",
                "--publish-rate",
                "0",
            ],
            &["--topic", "t", "--publish-format", "xml"],
            &["--topic", ""],
            &["--publish-token", "a\nb"],
            &["--max-p99-ms", "-1"],
            &["--max-failed", "x"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for args in [
            &["-c"][..],
            &["-c", "0"],
            &["-c", "x"],
            &["-d", "0"],
            &["-d", "-1"],
            &["-d", "NaN"],
            &["--rate", "-1"],
            &["--rate", "inf"],
            &["--threads", "0"],
            &["--last-event-id", "a\r\nX: y"],
            &["--source-addrs", "0"],
            &["--source-addrs", "255"],
            &["--source-addrs", "10.0.0.1"],
            &["http://[::1]:3000/", "--source-addrs", "2"],
            &["--frobnicate"],
            &["http://127.0.0.1/", "http://127.0.0.1/"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
        assert_eq!(parse_args(["--help".to_string()]), Ok(LoadCommand::Help));
        assert_eq!(parse_args(["-V".to_string()]), Ok(LoadCommand::Version));
    }

    /// Every flag row: the flag and its value, at least two spaces, then the description, all
    /// descriptions in one column (`--connect-timeout-ms N TCP` ran into its text).
    #[test]
    fn help_descriptions_share_one_column() {
        let h = help();
        let rows: Vec<&str> = h
            .lines()
            .filter(|l| l.starts_with("  -") || l.starts_with("      --"))
            .collect();
        assert!(rows.len() > 30, "{h}");
        let widest = rows
            .iter()
            .map(|l| {
                let flag = l.trim_start();
                let end = flag
                    .find("  ")
                    .unwrap_or_else(|| panic!("{l:?} runs into its text"));
                l.len() - flag.len() + end
            })
            .max()
            .unwrap();
        for l in &rows {
            let at = l.len() - l[widest..].trim_start().len();
            assert!(l[..at].ends_with("  "), "{l:?}");
            assert_eq!(at, widest + 2, "{l:?} is out of column");
        }
    }

    #[test]
    fn help_lists_every_flag() {
        let h = help();
        for flag in [
            "--connections",
            "--duration",
            "--rate",
            "--max-inflight",
            "--connect-timeout-ms",
            "--headers-timeout-ms",
            "--warmup",
            "--last-event-id",
            "--source-addrs",
            "--threads",
            "--json",
            "--quiet",
            "--html",
            "--csv",
            "--tls-ca",
            "--h2",
            "--h2-streams",
            "--topic",
            "--publish-url",
            "--publish-rate",
            "--publish-format",
            "--publish-topic",
            "--publish-token",
            "--publish-timeout-ms",
            "--drain",
            "--max-failed",
            "--max-dropped",
            "--min-established",
            "--max-p99-ms",
            "--max-connect-p99-ms",
            "--max-deliver-p99-ms",
            "--max-publish-p99-ms",
            "--max-missing",
            "--max-publish-errors",
            "--help",
            "--version",
        ] {
            assert!(h.contains(flag), "{flag} missing from --help");
        }
    }
}
