//! Every knob of `sse-load`, parsed and validated once into a typed [`Config`], and the target
//! URL, which must name a loopback address.
//!
//! **Invariant:** no IO: no name is resolved (only IP literals and `localhost`, which is taken
//! to mean 127.0.0.1, are accepted), so a typo can never send load off this machine.

use super::conn::ConnConfig;
use crate::cli::{num, positive, split_flag};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The URL used when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/sse";

/// Where the streams go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The loopback address and port to connect to.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// The whole configuration of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub target: Target,
    /// Concurrent streams to open.
    pub connections: usize,
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
    pub conn: ConnConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: parse_url(DEFAULT_URL).unwrap_or_else(|_| unreachable!("the default URL")),
            connections: 100,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: 2000.0,
            max_inflight: 1000,
            source_addrs: Vec::new(),
            threads: 1,
            json: false,
            quiet: false,
            conn: ConnConfig::default(),
        }
    }
}

impl Config {
    /// The request every stream sends.
    pub fn request(&self) -> Vec<u8> {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: sse-load/{}\r\n",
            self.target.path,
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
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// The `--help` text: every flag with its default.
pub fn help() -> String {
    let d = Config::default();
    format!(
        "sse-load: open many Server-Sent Events streams against a server on this machine and
measure them

USAGE: sse-load [URL] [FLAGS]

URL defaults to {url}; its host must be a loopback address (127.0.0.0/8, ::1 or
localhost). http only.

FLAGS (each also accepted as --flag=value):
  -c, --connections N        concurrent streams to open (default {c})
  -d, --duration SECONDS     length of the run from the first connect, fractions allowed
                             (default {d})
  -r, --rate N               new connects per second, 0 = no limit but --max-inflight
                             (default {rate})
      --max-inflight N       most streams between connect and response head at once
                             (default {inflight})
      --connect-timeout-ms N TCP handshake timeout (default {ct})
      --headers-timeout-ms N time allowed from handshake to the complete response head
                             (default {ht})
      --warmup SECONDS       measure frame interval and lateness only after this much of the
                             run, to leave the ramp out (default 0: the whole run)
      --last-event-id ID     send Last-Event-ID: ID with every request (default: none)
      --source-addrs N|LIST  spread connections over local addresses 127.0.0.1..127.0.0.N, or
                             over the comma-separated 127.x.y.z LIST, to get past the
                             ephemeral-port limit (default: one, picked by the kernel)
      --threads N            event loops, one thread each (default {threads})
      --json                 print the final report as JSON (default: text)
  -q, --quiet                no progress line each second (progress goes to stderr)
  -h, --help                 this text
  -V, --version              the version

The report: streams established, failed (never opened) and dropped (ended early) by reason;
connect time and time to headers; frames and bytes; frame interval; delivery lateness
(receive time minus the frame's \"content\" timestamp, when frames carry one; a timestamp in
whole milliseconds adds 0 to 1 ms to it); id gaps and duplicates; this process's CPU time. Exit code 0 when the run completed (failures are
reported, not fatal), 2 on bad arguments, 1 when the run could not start.
",
        url = DEFAULT_URL,
        c = d.connections,
        d = d.duration.as_secs_f64(),
        rate = d.rate,
        inflight = d.max_inflight,
        ct = d.conn.connect_timeout_ms,
        ht = d.conn.headers_timeout_ms,
        threads = d.threads,
    )
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut cfg = Config::default();
    let mut url: Option<String> = None;
    let mut sources: Option<String> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" => {
                cfg.json = true;
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
                if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(format!("{flag} must not contain CR, LF or NUL"));
                }
                cfg.conn.last_event_id = Some(v);
            }
            "--source-addrs" => sources = Some(value()?),
            "--threads" => cfg.threads = positive(&flag, &value()?)?,
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if let Some(u) = url {
        cfg.target = parse_url(&u)?;
    }
    if let Some(s) = sources {
        cfg.source_addrs = parse_sources(&s, cfg.target.addr.ip())?;
    }
    cfg.threads = cfg.threads.min(cfg.connections);
    Ok(Command::Run(Box::new(cfg)))
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

/// Parses `http://HOST[:PORT][/PATH]`, where HOST is a loopback IP literal (`[::1]` for IPv6)
/// or `localhost`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?}: the path must not contain spaces or controls"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url:?}: user info is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: bad port"))?,
            ),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        None => 80,
        Some(p) => p
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!(
                "{url:?}: the host must be a loopback IP address or localhost (no name lookups)"
            )
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{url:?}: refusing to load {ip}: sse-load only targets this machine (127.0.0.0/8 or ::1)"
        ));
    }
    Ok(Target {
        url: url.to_owned(),
        addr: SocketAddr::new(ip, port),
        host: authority.to_owned(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
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
    fn urls() {
        let t = parse_url("http://[::1]:3000/sse").unwrap();
        assert_eq!(t.addr, "[::1]:3000".parse().unwrap());
        let t = parse_url("http://localhost/").unwrap();
        assert_eq!(
            (t.addr, t.host.as_str()),
            ("127.0.0.1:80".parse().unwrap(), "localhost")
        );
        let t = parse_url("http://127.9.9.9:1?q").unwrap();
        assert_eq!(t.path, "/?q");
        let t = parse_url("http://127.0.0.1:1/a#frag").unwrap();
        assert_eq!(t.path, "/a");
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:3000/sse",
            "http://10.0.0.1:3000/sse",
            "http://8.8.8.8/",
            "http://[2001:db8::1]:80/",
            "http://example.com/sse",
            "http://127.0.0.1.nip.io/",
            "http://0.0.0.0:3000/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://[::1/",
            "http://u@127.0.0.1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let e = parse_url("http://192.168.1.10:3000/sse").unwrap_err();
        assert!(e.contains("only targets this machine"), "{e}");
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
        assert_eq!(parse_args(["--help".to_string()]), Ok(Command::Help));
        assert_eq!(parse_args(["-V".to_string()]), Ok(Command::Version));
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
            "--help",
            "--version",
        ] {
            assert!(h.contains(flag), "{flag} missing from --help");
        }
    }
}
