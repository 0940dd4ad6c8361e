//! The one test client: connect, subscribe (`GET /sse`, its head read, its body read with the
//! crate's own event-stream parser), publish (`POST /publish`), read a response head. Every
//! test file that talks to the server through a stream or a publish uses it, so what a test
//! reads is what a conforming `EventSource` reads, and a fix to how tests read lands once.
//!
//! **Registration.** A stream whose response head the client has read is registered in its
//! loop's topic index: the loop registers a new stream's topics in the same turn in which the
//! route answered, before that answer (the head) is written, and the stream's cursor starts at
//! the loop's mirror of the history at that moment, so every event published after the head
//! was read reaches it. A test therefore never sleeps between subscribing and publishing;
//! [`subscribe`] returns once the head is in.

use super::Response;
use sse_server::wire::event_stream::{Item, Parser};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a read may block before a test's own deadline is checked again.
const POLL: Duration = Duration::from_millis(20);
/// The longest a publish waits for its answer (a Redis publish may wait out an outage).
const PUBLISH_WAIT: Duration = Duration::from_secs(15);

/// A new connection to `addr` with read and write timeouts (so a broken server fails the test
/// instead of hanging it) and no Nagle delay (a request written in pieces goes out at once).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one response head from `s`, in chunks: the head's text and what followed it in the
/// last chunk. Panics if the connection closes first or nothing comes within the socket's
/// read timeout.
pub fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(at + 4);
            let head = String::from_utf8(got).expect("ASCII head");
            return (head, rest);
        }
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before the end of the head: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading head: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// The status code of a response head's status line.
pub fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"))
}

/// One dispatched event, as the crate's WHATWG parser reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The stream's last event ID when the event was dispatched (every hub frame sets its own).
    pub id: String,
    /// The event type (`message` when the frame names none).
    pub kind: String,
    /// The `data` lines joined by LF.
    pub data: String,
    /// Whether this event's own lines set the ID.
    pub has_id: bool,
}

/// A response to a `GET` read as an event stream: its head, then everything its body brought
/// so far, parsed by `sse_server::wire::event_stream::Parser` as it arrives.
pub struct Stream {
    pub sock: TcpStream,
    pub status: u16,
    /// The response head, status line to blank line.
    pub head: String,
    /// Every event dispatched so far, in order.
    pub events: Vec<Event>,
    /// Every comment line so far (without its colon): heartbeats.
    pub comments: Vec<String>,
    /// Every valid `retry` value so far, in milliseconds.
    pub retries: Vec<u64>,
    /// Every body byte read so far.
    pub raw: Vec<u8>,
    /// The server closed the connection (or reset it).
    pub closed: bool,
    /// Events before this index were handed out by [`take`](Self::take).
    taken: usize,
    parser: Parser,
}

/// Sends `GET {target}` (with `headers`, each line ending in CRLF) on a new connection and reads
/// the response head; whatever the status, the body that follows is read as an event stream.
pub fn open(addr: SocketAddr, target: &str, headers: &str) -> Stream {
    open_within(addr, target, headers, Duration::from_secs(5))
}

/// [`open`], waiting up to `head_within` for the response head (5 s there).
pub fn open_within(addr: SocketAddr, target: &str, headers: &str, head_within: Duration) -> Stream {
    let mut sock = connect(addr);
    sock.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
        .unwrap();
    sock.set_read_timeout(Some(head_within)).unwrap();
    let (head, rest) = read_head(&mut sock);
    let mut st = Stream {
        sock,
        status: status_of(&head),
        head,
        events: Vec::new(),
        comments: Vec::new(),
        retries: Vec::new(),
        raw: Vec::new(),
        closed: false,
        taken: 0,
        parser: Parser::new(),
    };
    st.feed(&rest);
    st
}

/// `GET /sse?{query}`: a subscription, registered once this returns (see the module's docs).
/// Panics unless the answer is `200 OK`.
pub fn subscribe(addr: SocketAddr, query: &str, headers: &str) -> Stream {
    let st = open(addr, &format!("/sse?{query}"), headers);
    assert!(st.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", st.head);
    st
}

impl Stream {
    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        let (events, comments, retries) = (&mut self.events, &mut self.comments, &mut self.retries);
        self.parser
            .feed(bytes, &mut |item| match item {
                Item::Event(e) => events.push(Event {
                    id: String::from_utf8_lossy(e.last_event_id).into_owned(),
                    kind: String::from_utf8_lossy(e.event_type).into_owned(),
                    data: e.data_lossy().into_owned(),
                    has_id: e.has_id,
                }),
                Item::Comment(c) => comments.push(String::from_utf8_lossy(c).into_owned()),
                Item::Retry(ms) => retries.push(ms),
            })
            .expect("a well-formed event stream");
    }

    /// One read of at most `wait`; false once the connection is closed.
    fn pump(&mut self, wait: Duration) -> bool {
        if self.closed {
            return false;
        }
        let mut buf = [0u8; 65536];
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        match self.sock.read(&mut buf) {
            Ok(0) => self.closed = true,
            Ok(n) => self.feed(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => self.closed = true,
        }
        !self.closed
    }

    /// Reads until `done(self)` holds; false if `within` passed or the connection closed first
    /// (`done` is asked once more then).
    pub fn read_until_state(&mut self, within: Duration, done: impl Fn(&Stream) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.pump(left.min(POLL)) {
                return done(self);
            }
        }
        true
    }

    /// Reads until `done(events so far)` holds; false if `within` passed or the connection
    /// closed first.
    pub fn read_until(&mut self, within: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        self.read_until_state(within, |st| done(&st.events))
    }

    /// Reads until the body so far contains `want`; false if `within` passed or the
    /// connection closed first.
    pub fn read_until_raw(&mut self, within: Duration, want: &[u8]) -> bool {
        self.read_until_state(within, |st| st.raw.windows(want.len()).any(|w| w == want))
    }

    /// Like [`read_until`](Self::read_until), but a timeout or a close fails the test, naming
    /// what arrived.
    pub fn expect_until(&mut self, within: Duration, done: impl Fn(&[Event]) -> bool) -> &[Event] {
        if !self.read_until(within, &done) {
            panic!(
                "{} after {within:?} with {:?}",
                if self.closed { "closed" } else { "timed out" },
                self.events
            );
        }
        &self.events
    }

    /// Reads for `d` (or until the server closes): what a client sees in that time.
    pub fn read_for(&mut self, d: Duration) -> &mut Self {
        let end = Instant::now() + d;
        while !self.closed {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.pump(left.min(POLL));
        }
        self
    }

    /// Reads for `d` expecting nothing more: no event, no close. Every event so far.
    pub fn quiet_for(&mut self, d: Duration) -> &[Event] {
        let n = self.events.len();
        self.read_for(d);
        assert!(!self.closed, "closed with {:?}", self.events);
        assert_eq!(self.events.len(), n, "unexpected {:?}", &self.events[n..]);
        &self.events
    }

    /// Reads until the server closes; true if it did within `within`.
    pub fn read_to_close(&mut self, within: Duration) -> bool {
        self.read_until_state(within, |st| st.closed)
    }

    /// Waits until at least `n` events arrived that no earlier `take` handed out, then hands
    /// out all of those (so more than `n` when more came). A timeout or a close fails the
    /// test.
    pub fn take(&mut self, n: usize, within: Duration) -> Vec<Event> {
        let from = self.taken;
        self.expect_until(within, |evs| evs.len() - from >= n);
        self.taken = self.events.len();
        self.events[from..].to_vec()
    }

    /// Hands out every event so far and forgets them and the body bytes read (a long stream
    /// read in turns holds only what came since the last turn).
    pub fn drain(&mut self) -> Vec<Event> {
        self.raw.clear();
        self.taken = 0;
        std::mem::take(&mut self.events)
    }

    /// The data of every event so far, in order.
    pub fn datas(&self) -> Vec<String> {
        self.events.iter().map(|e| e.data.clone()).collect()
    }

    /// The body so far as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// `application/x-www-form-urlencoded`.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// `application/json`.
pub const JSON: &str = "application/json";

/// Percent-encodes a form value (as `URLSearchParams` would: unreserved bytes as they are).
pub fn form_escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One `POST /publish` request, on a connection of its own (`Connection: close`).
#[derive(Clone, Debug)]
pub struct Publish {
    /// The `Host` field's value.
    host: String,
    /// Header lines, each ending in CRLF (the content type among them, if any).
    headers: String,
    body: String,
}

impl Publish {
    /// A request with exactly these header lines (each ending in CRLF; no `Content-Type`
    /// unless given) and this body.
    pub fn raw(headers: &str, body: &str) -> Publish {
        Publish {
            host: "x".to_owned(),
            headers: headers.to_owned(),
            body: body.to_owned(),
        }
    }

    /// A body of type `content_type`.
    pub fn typed(content_type: &str, body: &str) -> Publish {
        Publish::raw(&format!("Content-Type: {content_type}\r\n"), body)
    }

    /// A form body, sent as given (already encoded).
    pub fn form(body: &str) -> Publish {
        Publish::typed(FORM, body)
    }

    /// `topic={topic}&data={data}`, both sent as given (already encoded).
    pub fn event(topic: &str, data: &str) -> Publish {
        Publish::form(&format!("topic={topic}&data={data}"))
    }

    /// Sends `Host: {host}` (`x` otherwise): the server's own origin is judged by it.
    pub fn host(mut self, host: &str) -> Publish {
        self.host = host.to_owned();
        self
    }

    /// Adds `Authorization: Bearer {token}`.
    pub fn bearer(self, token: &str) -> Publish {
        self.header(&format!("Authorization: Bearer {token}"))
    }

    /// Adds one header line (given without its CRLF).
    pub fn header(mut self, line: &str) -> Publish {
        self.headers.push_str(line);
        self.headers.push_str("\r\n");
        self
    }

    /// The request's bytes (`Connection: close`).
    pub fn bytes(&self) -> Vec<u8> {
        self.with_headers("Connection: close\r\n")
    }

    /// The request's bytes for a connection that stays open for the next request.
    pub fn keep_alive_bytes(&self) -> Vec<u8> {
        self.with_headers("")
    }

    fn with_headers(&self, connection: &str) -> Vec<u8> {
        format!(
            "POST /publish HTTP/1.1\r\nHost: {}\r\n{connection}{}Content-Length: {}\r\n\r\n{}",
            self.host,
            self.headers,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }

    /// Sends the request; its answer, or `None` if the server closed or went away first.
    pub fn try_send(&self, addr: SocketAddr) -> Option<Response> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(PUBLISH_WAIT)).ok()?;
        s.write_all(&self.bytes()).ok()?;
        super::try_read_response(&mut s)
    }

    /// Sends the request; its answer (the test fails if none comes).
    pub fn send(&self, addr: SocketAddr) -> Response {
        self.try_send(addr)
            .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(&self.bytes())))
    }

    /// Sends the request: (status, the answer's body without its final newline: the id of a
    /// stored event, or the one-line reason of a refusal).
    pub fn answer(&self, addr: SocketAddr) -> (u16, String) {
        let r = self.send(addr);
        (r.status, r.text().trim_end().to_owned())
    }

    /// Sends the request, which must be stored: its id (the answer is the id and a newline).
    pub fn id(&self, addr: SocketAddr) -> String {
        let r = self.send(addr);
        let text = r.text();
        assert_eq!(r.status, 200, "{text}");
        assert!(text.ends_with('\n'), "{text:?}");
        text.trim_end().to_owned()
    }
}
