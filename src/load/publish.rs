//! The publisher of a hub test, sans-IO: one keep-alive HTTP/1.1 connection that `POST`s a
//! timestamped event at a fixed rate, one request at a time, and counts the answers.
//!
//! The driver connects and calls [`Publisher::handle_connected`]; once publishing may begin it
//! calls [`Publisher::start`]; then, whenever the socket is writable, it asks
//! [`Publisher::poll_transmit`] for bytes (a new request is built only when one is due and the
//! previous one was answered) and reports them with [`Publisher::on_sent`]; it feeds what it
//! reads to [`Publisher::handle_input`], and a closed or broken connection to
//! [`Publisher::handle_close`], after which it reconnects when [`Publisher::timeout`] says.
//!
//! Schedule: publish `k` is due at `start + k / rate`. A publish that cannot go out on time
//! (the previous answer is late) goes out as soon as it can; when the publisher falls more than
//! one interval behind, the schedule restarts from now (counted in `behind`) instead of sending
//! a burst. The payload's `t_us` is the wall clock when the request is built, just before its
//! `write`, so a late publish does not inflate publish-to-deliver latency.
//!
//! Expected deliveries: each publish answered `2xx` should reach every subscriber that was open
//! when it was sent (the driver passes that number to `poll_transmit`).
//!
//! **Invariant:** no socket, no clock: time comes in as [`Time`]; nothing panics on the peer's
//! bytes; the response head is capped at 16 KiB and a body is skipped, never stored.

use super::conn::Time;
use super::histogram::Histogram;
use super::hub::Payload;
use super::response::{self, BodyKind, BodyReader, HeadScan};
use super::target::Target;
use std::collections::BTreeMap;

/// Largest response head accepted from the hub.
const MAX_HEAD: usize = 16 * 1024;
/// Wait before reconnecting after a connection is lost or refused, in microseconds.
const RECONNECT_US: u64 = 100_000;

/// How a publish request carries the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`: `topic=..&data=..` (the Mercure-style API).
    Form,
    /// `application/json`: `{"topic":[..],"data":".."}`.
    Json,
    /// The payload alone as the body (nchan's `/pub/<channel>`).
    Raw,
}

impl BodyFormat {
    pub fn parse(s: &str) -> Option<BodyFormat> {
        match s {
            "form" => Some(BodyFormat::Form),
            "json" => Some(BodyFormat::Json),
            "raw" => Some(BodyFormat::Raw),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::Form => "form",
            BodyFormat::Json => "json",
            BodyFormat::Raw => "raw",
        }
    }
}

/// The publisher's knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishConfig {
    /// Where to `POST` (loopback only, checked like the stream URL).
    pub target: Target,
    /// Publishes per second.
    pub rate: f64,
    pub format: BodyFormat,
    /// Topics named in form and JSON publishes.
    pub topics: Vec<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The answer must come within this, or the publish counts as lost and the connection is
    /// dropped.
    pub answer_timeout_ms: u64,
}

/// The hub's answer was not HTTP/1.x, too large, or came unasked: drop the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAnswer;

/// What the publisher counted.
#[derive(Clone, Debug, Default)]
pub struct PublishStats {
    /// Requests sent.
    pub sent: u64,
    /// Answers by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection lost, answer timeout, malformed answer).
    pub lost: u64,
    /// Request start to complete answer, in microseconds.
    pub answer_us: Histogram,
    /// Sum over `2xx` answers of the subscribers open when that publish was sent.
    pub expected: u64,
    /// Connections opened (the first included).
    pub connections: u64,
    /// Times the schedule restarted because the publisher fell more than an interval behind.
    pub behind: u64,
    /// When publishing started and when it stopped, in microseconds from the run's start.
    pub started_us: Option<u64>,
    pub stopped_us: Option<u64>,
}

impl PublishStats {
    /// Answers with a `2xx` status.
    pub fn ok(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Publishes that did not succeed: non-`2xx` answers and lost requests.
    pub fn errors(&self) -> u64 {
        self.sent.saturating_sub(self.ok())
    }
}

/// The request in flight.
#[derive(Debug)]
struct Inflight {
    /// Bytes of the request already written.
    written: usize,
    started_us: u64,
    subscribers: u64,
    /// The answer so far: its head while incomplete, then its body's framing.
    head: Vec<u8>,
    body: Option<BodyReader>,
    status: u16,
}

#[derive(Debug)]
enum Link {
    /// No connection; reconnect at `at_us`.
    Down {
        at_us: u64,
    },
    Connecting {
        deadline_us: u64,
    },
    Up,
}

/// The publisher. See the module docs.
#[derive(Debug)]
pub struct Publisher {
    cfg: PublishConfig,
    run: u64,
    link: Link,
    /// The request being written or awaiting its answer, and its bytes.
    inflight: Option<Inflight>,
    request: Vec<u8>,
    /// When publishing started, and the due time of the next publish.
    start_us: Option<u64>,
    next_due_us: u64,
    stop_us: u64,
    next_seq: u64,
    /// The answer said it would close the connection: reconnect after it.
    closing: bool,
    pub stats: PublishStats,
}

impl Publisher {
    /// A publisher for run `run` that stops publishing at `stop_us` (run time).
    pub fn new(cfg: PublishConfig, run: u64, stop_us: u64) -> Publisher {
        Publisher {
            cfg,
            run,
            link: Link::Down { at_us: 0 },
            inflight: None,
            request: Vec::new(),
            start_us: None,
            next_due_us: 0,
            stop_us,
            next_seq: 1,
            closing: false,
            stats: PublishStats::default(),
        }
    }

    fn interval_us(&self) -> u64 {
        (1e6 / self.cfg.rate).round().max(1.0) as u64
    }

    /// Whether the driver should open a connection now.
    pub fn wants_connect(&self, now: Time) -> bool {
        matches!(self.link, Link::Down { at_us } if now.us >= at_us) && !self.is_done(now)
    }

    /// A connect started (the driver opened a socket).
    pub fn handle_connecting(&mut self, now: Time) {
        self.stats.connections += 1;
        self.link = Link::Connecting {
            deadline_us: now.us + self.cfg.answer_timeout_ms * 1000,
        };
    }

    /// The TCP handshake finished.
    pub fn handle_connected(&mut self) {
        if let Link::Connecting { .. } = self.link {
            self.link = Link::Up;
        }
    }

    /// Whether the handshake is under way.
    pub fn is_connecting(&self) -> bool {
        matches!(self.link, Link::Connecting { .. })
    }

    /// Publishing may begin now.
    pub fn start(&mut self, now: Time) {
        if self.start_us.is_none() {
            self.start_us = Some(now.us);
            self.next_due_us = now.us;
            self.stats.started_us = Some(now.us);
        }
    }

    pub fn is_started(&self) -> bool {
        self.start_us.is_some()
    }

    /// Publishing is over (past the stop time with nothing in flight).
    pub fn is_done(&self, now: Time) -> bool {
        now.us >= self.stop_us && self.inflight.is_none()
    }

    /// The request bytes to write now, if any: the rest of the request in flight, or a new
    /// request when one is due. `subscribers` is the number of streams open now.
    pub fn poll_transmit(&mut self, now: Time, subscribers: u64) -> Option<&[u8]> {
        if !matches!(self.link, Link::Up) || self.closing {
            return None;
        }
        if self.inflight.is_none() {
            self.start_us?;
            if now.us >= self.stop_us {
                if self.stats.stopped_us.is_none() {
                    self.stats.stopped_us = Some(now.us);
                }
                return None;
            }
            if now.us < self.next_due_us {
                return None;
            }
            let interval = self.interval_us();
            self.next_due_us += interval;
            if self.next_due_us + interval < now.us {
                self.stats.behind += 1;
                self.next_due_us = now.us + interval;
            }
            self.build(now, subscribers);
        }
        let f = self.inflight.as_ref()?;
        (f.written < self.request.len()).then(|| &self.request[f.written..])
    }

    fn build(&mut self, now: Time, subscribers: u64) {
        let mut payload = String::with_capacity(64);
        Payload {
            seq: self.next_seq,
            t_us: now.wall_us,
            run: self.run,
        }
        .write(&mut payload);
        self.next_seq += 1;
        let (ctype, body) = match self.cfg.format {
            BodyFormat::Form => {
                let mut b = String::new();
                for t in &self.cfg.topics {
                    b.push_str("topic=");
                    percent_encode(t, &mut b);
                    b.push('&');
                }
                b.push_str("data=");
                percent_encode(&payload, &mut b);
                ("application/x-www-form-urlencoded", b)
            }
            BodyFormat::Json => {
                let b = serde_json::json!({"topic": self.cfg.topics, "data": payload});
                ("application/json", b.to_string())
            }
            BodyFormat::Raw => ("application/json", payload),
        };
        let t = &self.cfg.target;
        self.request.clear();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nUser-Agent: sse-load/{}\r\n",
            t.path,
            t.host,
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &self.cfg.token {
            head.push_str("Authorization: Bearer ");
            head.push_str(token);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        self.request.extend_from_slice(head.as_bytes());
        self.request.extend_from_slice(body.as_bytes());
        self.stats.sent += 1;
        self.inflight = Some(Inflight {
            written: 0,
            started_us: now.us,
            subscribers,
            head: Vec::new(),
            body: None,
            status: 0,
        });
    }

    /// `n` request bytes went out.
    pub fn on_sent(&mut self, n: usize) {
        if let Some(f) = &mut self.inflight {
            f.written += n;
        }
    }

    /// Bytes from the hub. `Err` means the connection must be dropped (a malformed answer, or
    /// bytes nobody asked for); the driver then calls [`handle_close`](Self::handle_close).
    pub fn handle_input(&mut self, data: &[u8], now: Time) -> Result<(), BadAnswer> {
        let Some(f) = &mut self.inflight else {
            return if data.is_empty() {
                Ok(())
            } else {
                Err(BadAnswer)
            };
        };
        let mut rest = data;
        if f.body.is_none() {
            f.head.extend_from_slice(data);
            let mut skip = 0;
            let resp = loop {
                match response::parse_head(&f.head[skip..]) {
                    Ok(HeadScan::Interim(len)) => skip += len,
                    Ok(HeadScan::Complete(r)) => break r,
                    Ok(HeadScan::Partial) if f.head.len() <= MAX_HEAD => return Ok(()),
                    _ => return Err(BadAnswer),
                }
            };
            let consumed_before = f.head.len() - data.len();
            let head_end = skip + resp.len;
            rest = &data[head_end.saturating_sub(consumed_before).min(data.len())..];
            f.status = resp.status;
            // A close-delimited answer ends with the connection; after an answer that says
            // `Connection: close` (or an HTTP/1.0 one) the next request needs a new one.
            if resp.body == BodyKind::Close || says_close(&f.head[skip..]) {
                self.closing = true;
            }
            f.body = Some(BodyReader::new(resp.body));
            f.head = Vec::new();
        }
        let body = f.body.as_mut().ok_or(BadAnswer)?;
        while let Some(_skipped) = body.next(&mut rest).map_err(|_| BadAnswer)? {}
        if body.is_done() {
            self.answered(now);
        }
        if !rest.is_empty() {
            return Err(BadAnswer);
        }
        Ok(())
    }

    fn answered(&mut self, now: Time) {
        if let Some(f) = self.inflight.take() {
            *self.stats.by_status.entry(f.status).or_default() += 1;
            self.stats
                .answer_us
                .record(now.us.saturating_sub(f.started_us));
            if (200..300).contains(&f.status) {
                self.stats.expected += f.subscribers;
            }
        }
    }

    /// Whether the driver should close the connection: the last answer said it would be
    /// closed, and it is complete.
    pub fn wants_close(&self) -> bool {
        self.closing && self.inflight.is_none()
    }

    /// The connection closed or broke. A close-delimited answer ends here; a request without
    /// an answer is lost. After a clean close the next connection opens at once, after a
    /// failure a little later, so a hub that refuses connections is not hammered.
    pub fn handle_close(&mut self, now: Time) {
        let mut clean = self.closing;
        if let Some(f) = &self.inflight {
            if self.closing && f.body.is_some() {
                self.answered(now);
            } else {
                self.inflight = None;
                self.stats.lost += 1;
                clean = false;
            }
        }
        self.closing = false;
        self.link = Link::Down {
            at_us: now.us + if clean { 0 } else { RECONNECT_US },
        };
    }

    /// When the driver should call back: the next publish, the reconnect, or the deadline of
    /// the handshake or the answer (whose passing it reports through
    /// [`handle_timeout`](Self::handle_timeout)). Microseconds of run time; `None` once
    /// publishing is over, or before it starts with the link up.
    pub fn timeout(&self, now: Time) -> Option<u64> {
        if self.is_done(now) {
            return None;
        }
        match self.link {
            Link::Down { at_us } => Some(at_us),
            Link::Connecting { deadline_us } => Some(deadline_us),
            Link::Up => match &self.inflight {
                Some(f) => Some(f.started_us + self.cfg.answer_timeout_ms * 1000),
                None => self.start_us.map(|_| self.next_due_us.min(self.stop_us)),
            },
        }
    }

    /// Whether a handshake or an answer is overdue: the driver then drops the connection and
    /// calls [`handle_close`](Self::handle_close).
    pub fn handle_timeout(&self, now: Time) -> bool {
        match (&self.link, &self.inflight) {
            (Link::Connecting { deadline_us }, _) => now.us >= *deadline_us,
            (Link::Up, Some(f)) => now.us >= f.started_us + self.cfg.answer_timeout_ms * 1000,
            _ => false,
        }
    }
}

/// Whether a complete response head ends the connection after its body: `Connection: close`,
/// or HTTP/1.0 without `Connection: keep-alive`.
fn says_close(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    if resp.parse(head).is_err() {
        return true;
    }
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    close
}

/// Appends `s` percent-encoded for a query string or a form body: unreserved bytes as they
/// are, everything else as `%XX`.
pub fn percent_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::target::parse_url;

    fn at(ms: u64) -> Time {
        Time {
            us: ms * 1000,
            wall_us: 1_795_460_982_000_000 + ms as i64 * 1000,
        }
    }

    fn publisher(format: BodyFormat, rate: f64) -> Publisher {
        let cfg = PublishConfig {
            target: parse_url("http://127.0.0.1:3000/publish").unwrap(),
            rate,
            format,
            topics: vec!["a b".into(), "c".into()],
            token: Some("s3cret".into()),
            answer_timeout_ms: 5000,
        };
        let mut p = Publisher::new(cfg, 42, 10_000_000);
        assert!(p.wants_connect(at(0)));
        p.handle_connecting(at(0));
        assert!(p.is_connecting() && !p.wants_connect(at(0)));
        p.handle_connected();
        p
    }

    fn take(p: &mut Publisher, now: Time, subs: u64) -> Option<String> {
        let out = p.poll_transmit(now, subs)?.to_vec();
        p.on_sent(out.len());
        Some(String::from_utf8(out).unwrap())
    }

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n17";

    #[test]
    fn form_requests_on_schedule_and_expected_deliveries() {
        let mut p = publisher(BodyFormat::Form, 10.0);
        assert_eq!(take(&mut p, at(0), 5), None, "nothing before start");
        p.start(at(1000));
        let req = take(&mut p, at(1000), 5).unwrap();
        assert!(req.starts_with("POST /publish HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nContent-Type: application/x-www-form-urlencoded\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer s3cret\r\n"));
        let body = req.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            "topic=a%20b&topic=c&data=%7B%22seq%22%3A1%2C%22t_us%22%3A1795460983000000%2C%22run%22%3A42%7D"
        );
        assert!(req.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert_eq!(take(&mut p, at(1001), 5), None, "one request at a time");
        // The answer comes in two pieces, 3 ms after the request.
        p.handle_input(&OK[..20], at(1002)).unwrap();
        p.handle_input(&OK[20..], at(1003)).unwrap();
        assert_eq!(p.stats.ok(), 1);
        assert_eq!(p.stats.expected, 5);
        assert_eq!(p.stats.answer_us.max(), 3000);
        assert_eq!(p.timeout(at(1003)), Some(1_100_000));
        assert_eq!(take(&mut p, at(1050), 5), None, "not due yet");
        let req = take(&mut p, at(1100), 7).unwrap();
        assert!(req.contains("%22seq%22%3A2%2C"), "{req}");
        // A refusal counts by status, and expects nothing.
        p.handle_input(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno\n",
            at(1101),
        )
        .unwrap();
        assert_eq!(p.stats.by_status.get(&401), Some(&1));
        assert_eq!((p.stats.expected, p.stats.errors()), (5, 1));
    }

    #[test]
    fn json_and_raw_bodies() {
        let mut p = publisher(BodyFormat::Json, 1.0);
        p.start(at(0));
        let req = take(&mut p, at(0), 1).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["topic"], serde_json::json!(["a b", "c"]));
        let data = body["data"].as_str().unwrap();
        assert_eq!(
            Payload::parse(data.as_bytes()),
            Some(Payload {
                seq: 1,
                t_us: 1_795_460_982_000_000,
                run: 42
            })
        );
        let mut p = publisher(BodyFormat::Raw, 1.0);
        p.start(at(0));
        let req = take(&mut p, at(0), 1).unwrap();
        assert!(req.ends_with("\r\n\r\n{\"seq\":1,\"t_us\":1795460982000000,\"run\":42}"));
        // nchan answers 201/202 with a text body, byte by byte here.
        let answer = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nq: 1\n";
        for b in answer.chunks(1) {
            p.handle_input(b, at(1)).unwrap();
        }
        assert_eq!((p.stats.ok(), p.stats.expected), (1, 1));
    }

    #[test]
    fn lost_answers_reconnects_and_falling_behind() {
        let mut p = publisher(BodyFormat::Raw, 100.0);
        p.start(at(0));
        take(&mut p, at(0), 3).unwrap();
        // The connection breaks before the answer: the publish is lost, nothing expected.
        p.handle_close(at(5));
        assert_eq!(
            (p.stats.lost, p.stats.expected, p.stats.errors()),
            (1, 0, 1)
        );
        assert!(!p.wants_connect(at(50)));
        assert!(p.wants_connect(at(105)));
        p.handle_connecting(at(105));
        assert!(p.handle_timeout(at(5105)));
        p.handle_connected();
        assert_eq!(p.stats.connections, 2);
        // Far behind schedule: the next publish goes now and the schedule restarts.
        take(&mut p, at(500), 3).unwrap();
        assert_eq!(p.stats.behind, 1);
        p.handle_input(OK, at(501)).unwrap();
        assert_eq!(p.timeout(at(501)), Some(510_000));
        // An answer that overstays the timeout is reported; junk is an error.
        take(&mut p, at(510), 3).unwrap();
        assert!(!p.handle_timeout(at(5509)) && p.handle_timeout(at(5510)));
        assert!(p.handle_input(b"NOT HTTP\r\n\r\n", at(520)).is_err());
        // A close-delimited answer completes at the close, then the link reconnects.
        let mut p = publisher(BodyFormat::Raw, 1.0);
        p.start(at(0));
        take(&mut p, at(0), 2).unwrap();
        p.handle_input(b"HTTP/1.0 200 OK\r\n\r\nid", at(1)).unwrap();
        assert_eq!(
            take(&mut p, at(2000), 2),
            None,
            "no request on a closing link"
        );
        p.handle_close(at(2));
        assert_eq!((p.stats.ok(), p.stats.lost, p.stats.expected), (1, 0, 2));
        // An answer that says Connection: close: no more requests on it; the driver closes it
        // and the next connection opens at once.
        let mut p = publisher(BodyFormat::Raw, 1.0);
        p.start(at(0));
        take(&mut p, at(0), 2).unwrap();
        p.handle_input(
            b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            at(1),
        )
        .unwrap();
        assert!(p.wants_close());
        assert_eq!(take(&mut p, at(1000), 2), None);
        p.handle_close(at(1000));
        assert!(p.wants_connect(at(1000)));
        assert_eq!((p.stats.errors(), p.stats.lost), (1, 0));
        // Publishing stops at the stop time.
        let mut p = publisher(BodyFormat::Raw, 1.0);
        p.stop_us = 1_500_000;
        p.start(at(0));
        take(&mut p, at(0), 1).unwrap();
        p.handle_input(OK, at(1)).unwrap();
        take(&mut p, at(1000), 1).unwrap();
        p.handle_input(OK, at(1001)).unwrap();
        assert_eq!(take(&mut p, at(2000), 1), None);
        assert!(p.is_done(at(2000)));
        assert_eq!(p.stats.stopped_us, Some(2_000_000));
        assert!(!p.wants_connect(at(3000)));
    }
}
