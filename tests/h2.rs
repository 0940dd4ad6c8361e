//! HTTP/2 served by the real binary: h2c with prior knowledge on the plain port (and ALPN `h2`
//! over TLS in `tls.rs`'s way), every route through the same `Conn` rules, and the attacks of
//! RFC 9113's security section against a real socket. Raw frames come from the small client
//! below (written from the RFC with the crate's frame and HPACK codecs); curl and nghttp are
//! the clients nobody here wrote.

mod common;

use common::Server;
use sse_server::wire::h2::frame::{
    self, setting, ErrorCode, Frame, FrameHeader, HeaderBlock, StreamEnd, PREFACE,
};
use sse_server::wire::h2::hpack::{self, Decoder};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the client read, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Headers {
        stream: u32,
        fields: Vec<(String, String)>,
        end: bool,
    },
    Data {
        stream: u32,
        data: Vec<u8>,
        end: bool,
    },
    Rst {
        stream: u32,
        code: ErrorCode,
    },
    GoAway {
        last: u32,
        code: ErrorCode,
    },
    Settings,
    Other,
    /// The server closed the connection.
    Closed,
}

/// A response head: status, fields, END_STREAM.
type Head = (u16, Vec<(String, String)>, bool);

/// A raw h2 client: writes frames it is told to, reads and decodes what comes back.
struct H2c {
    s: TcpStream,
    inb: Vec<u8>,
    dec: Decoder,
    got: Vec<Got>,
    closed: bool,
}

impl H2c {
    /// Connects and sends the preface and an empty SETTINGS.
    fn connect(addr: SocketAddr) -> H2c {
        Self::connect_with(addr, &[])
    }

    fn connect_with(addr: SocketAddr, settings: &[(u16, u32)]) -> H2c {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut c = H2c {
            s,
            inb: Vec::new(),
            dec: Decoder::new(4096),
            got: Vec::new(),
            closed: false,
        };
        let mut out = PREFACE.to_vec();
        frame::put_settings(&mut out, settings);
        c.send(&out);
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// A request's HEADERS (`:scheme http`, `:authority test`).
    fn request(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        end: bool,
    ) {
        let mut out = Vec::new();
        put_request(&mut out, stream, method, path, fields, end);
        self.send(&out);
    }

    fn get(&mut self, stream: u32, path: &str) {
        self.request(stream, "GET", path, &[], true);
    }

    fn data(&mut self, stream: u32, data: &[u8], end: bool) {
        let mut out = Vec::new();
        let fin = if end { StreamEnd::End } else { StreamEnd::Open };
        frame::put_data(&mut out, stream, data, fin);
        self.send(&out);
    }

    /// Reads for `wait`, or until `done` holds for what was read so far.
    fn read_until(&mut self, wait: Duration, done: impl Fn(&[Got]) -> bool) -> &[Got] {
        let end = Instant::now() + wait;
        let mut buf = [0u8; 16384];
        while Instant::now() < end && !self.closed && !done(&self.got) {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    self.got.push(Got::Closed);
                }
                Ok(n) => {
                    self.inb.extend_from_slice(&buf[..n]);
                    self.parse();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    self.closed = true;
                    self.got.push(Got::Closed);
                }
            }
        }
        &self.got
    }

    fn read_for(&mut self, wait: Duration) -> &[Got] {
        self.read_until(wait, |_| false)
    }

    fn parse(&mut self) {
        let mut pos = 0;
        while let Some(h) = FrameHeader::parse(&self.inb[pos..]) {
            let end = pos + 9 + h.len as usize;
            if self.inb.len() < end {
                break;
            }
            let payload = self.inb[pos + 9..end].to_vec();
            pos = end;
            let got = match frame::parse(&h, &payload).expect("the server's frames parse") {
                Frame::Headers {
                    stream,
                    end_stream,
                    block,
                    ..
                } => {
                    let mut fields = Vec::new();
                    self.dec.decode(block, 1 << 20, &mut fields).unwrap();
                    Got::Headers {
                        stream,
                        fields: fields
                            .into_iter()
                            .map(|(n, v)| {
                                (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                            })
                            .collect(),
                        end: end_stream,
                    }
                }
                Frame::Data {
                    stream,
                    end_stream,
                    data,
                    ..
                } => Got::Data {
                    stream,
                    data: data.to_vec(),
                    end: end_stream,
                },
                Frame::RstStream { stream, code } => Got::Rst { stream, code },
                Frame::GoAway {
                    last_stream, code, ..
                } => Got::GoAway {
                    last: last_stream,
                    code,
                },
                Frame::Settings { .. } => Got::Settings,
                _ => Got::Other,
            };
            self.got.push(got);
        }
        self.inb.drain(..pos);
    }

    /// Everything a stream got as DATA, in order.
    fn body(&self, stream: u32) -> Vec<u8> {
        self.got
            .iter()
            .filter_map(|g| match g {
                Got::Data {
                    stream: s, data, ..
                } if *s == stream => Some(&data[..]),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// A stream's response head: status, fields, END_STREAM.
    fn head(&self, stream: u32) -> Option<Head> {
        self.got.iter().find_map(|g| match g {
            Got::Headers {
                stream: s,
                fields,
                end,
            } if *s == stream => Some((fields[0].1.parse().unwrap(), fields[1..].to_vec(), *end)),
            _ => None,
        })
    }

    fn ended(&self, stream: u32) -> bool {
        self.got.iter().any(|g| {
            matches!(g, Got::Data { stream: s, end: true, .. } | Got::Headers { stream: s, end: true, .. } if *s == stream)
        })
    }

    fn reset(&self, stream: u32) -> Option<ErrorCode> {
        self.got.iter().find_map(|g| match g {
            Got::Rst { stream: s, code } if *s == stream => Some(*code),
            _ => None,
        })
    }

    fn goaway(&self) -> Option<(u32, ErrorCode)> {
        self.got.iter().find_map(|g| match g {
            Got::GoAway { last, code } => Some((*last, *code)),
            _ => None,
        })
    }
}

fn put_request(
    out: &mut Vec<u8>,
    stream: u32,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    end: bool,
) {
    let mut block = Vec::new();
    hpack::encode_field(&mut block, b":method", method.as_bytes());
    hpack::encode_field(&mut block, b":scheme", b"http");
    hpack::encode_field(&mut block, b":path", path.as_bytes());
    hpack::encode_field(&mut block, b":authority", b"test");
    for (n, v) in fields {
        hpack::encode_field(&mut block, n.as_bytes(), v.as_bytes());
    }
    frame::put_headers(
        out,
        HeaderBlock {
            stream,
            block: &block,
            end: if end { StreamEnd::End } else { StreamEnd::Open },
            max_frame: 16384,
        },
    );
}

/// The complete frames of a stream's body (DATA payloads joined).
fn body_frames(body: &[u8]) -> Vec<String> {
    let mut head = b"\r\n\r\n".to_vec();
    head.extend_from_slice(body);
    common::frames(&head)
}

/// The seed's clock frames with their time replaced (the one thing that differs by when).
fn clock_frames(body: &[u8]) -> Vec<String> {
    body_frames(body)
        .into_iter()
        .map(|f| {
            let mut out = String::new();
            for line in f.split_inclusive('\n') {
                match line.find("\"content\":\"") {
                    Some(at) => {
                        out.push_str(&line[..at]);
                        out.push_str("\"content\":\"<time>\"}\n");
                    }
                    None => out.push_str(line),
                }
            }
            out
        })
        .collect()
}

/// A plain HTTP/1.1 clock stream beside the attack: it must keep its ticks.
struct Witness {
    s: TcpStream,
    got: Vec<u8>,
}

impl Witness {
    fn start(server: &Server) -> Witness {
        let mut s = server.connect();
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        Witness { s, got: Vec::new() }
    }

    /// Frames received so far.
    fn frames(&mut self) -> usize {
        let mut buf = [0u8; 8192];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => panic!("the witness stream was closed"),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        common::frames(&self.got).len()
    }

    /// Asserts the stream keeps ticking (at 100 ms: some frames in 600 ms).
    fn still_ticks(&mut self) {
        let before = self.frames();
        std::thread::sleep(Duration::from_millis(600));
        let after = self.frames();
        assert!(
            after >= before + 3,
            "the HTTP/1.1 witness stalled: {before} -> {after}"
        );
    }
}

fn fast_clock() -> Server {
    Server::start(&["--interval-ms", "100"])
}

#[test]
fn curl_with_prior_knowledge_gets_the_clocks_bytes_inside_data_frames() {
    let server = fast_clock();
    let mut h1 = server.connect();
    h1.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let h1_bytes = common::read_until(&mut h1, Duration::from_secs(5), |b| {
        common::frames(b).len() >= 3
    });
    let h1_body = &h1_bytes[h1_bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-N", "--max-time", "0.45"])
        .arg(format!("http://{}/sse", server.addr))
        .arg("-D")
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/2 200 \r\n"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("connection:"), "{text}");
    let body = &text.as_bytes()[text.find("\r\n\r\n").unwrap() + 4..];
    let h2 = clock_frames(body);
    let h1 = clock_frames(h1_body);
    assert!(h2.len() >= 3, "{text}");
    assert_eq!(h2[..3], h1[..3], "the clock's frames differ over h2");
}

#[test]
fn a_publish_over_h2_reaches_a_topic_stream_over_h2_on_another_stream_of_one_connection() {
    let server = Server::start(&[]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/sse?topic=news");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter()
            .any(|g| matches!(g, Got::Headers { stream: 1, .. }))
    });
    let (status, fields, end) = c.head(1).unwrap();
    assert_eq!(status, 200);
    assert!(!end);
    assert!(fields
        .iter()
        .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")));
    let body = "topic=news&data=hello%20h2";
    c.request(
        3,
        "POST",
        "/publish",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", &body.len().to_string()),
        ],
        false,
    );
    c.data(3, body.as_bytes(), true);
    c.read_until(Duration::from_secs(5), |g| {
        let d: Vec<u8> = g
            .iter()
            .filter_map(|g| match g {
                Got::Data {
                    stream: 1, data, ..
                } => Some(&data[..]),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&d).contains("data: hello h2\n\n")
    });
    let (status, _, _) = c.head(3).unwrap();
    assert_eq!(status, 200);
    assert!(c.ended(3));
    let id = String::from_utf8(c.body(3)).unwrap();
    let events = String::from_utf8(c.body(1)).unwrap();
    assert_eq!(events, format!("id: {}\ndata: hello h2\n\n", id.trim()));
    assert_eq!(server.metric("sse_h2_connections_open"), 1.0);
    assert_eq!(server.metric("sse_h2_streams_open"), 1.0);
    assert_eq!(server.metric("sse_streams_open"), 1.0);
    assert_eq!(
        server.metric("sse_connections_open_by_protocol{proto=\"h2\",transport=\"plain\"}"),
        1.0
    );
}

#[test]
fn every_route_answers_over_h2_as_over_http1() {
    let server = Server::start(&["--max-publish-bytes", "1000"]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/nope");
    c.request(3, "POST", "/healthz", &[], true);
    c.request(
        5,
        "POST",
        "/publish",
        &[("content-type", "application/x-www-form-urlencoded")],
        false,
    );
    c.data(5, &[b'a'; 1500], true);
    // Past the head limit (8 KiB by default) in all, each field within it: 431, as over
    // HTTP/1.1. (One string longer than the whole limit ends the connection instead:
    // COMPRESSION_ERROR, RFC 9113 section 10.5.1; see `an_hpack_bomb_is_431_and_the_connection_goes_on`.)
    let big = "x".repeat(3_000);
    c.request(
        7,
        "GET",
        "/",
        &[("x-a", &big), ("x-b", &big), ("x-c", &big)],
        true,
    );
    c.request(9, "HEAD", "/", &[], true);
    c.get(11, "/metrics");
    c.get(13, "/");
    c.read_until(Duration::from_secs(5), |g| {
        [1, 3, 5, 7, 9, 11, 13].iter().all(|&s| {
            g.iter().any(|g| {
                matches!(g, Got::Data { stream, end: true, .. } | Got::Headers { stream, end: true, .. } | Got::Rst { stream, .. } if *stream == s)
            })
        })
    });
    let status = |s| c.head(s).map(|h| h.0);
    assert_eq!(status(1), Some(404));
    assert_eq!(status(3), Some(405));
    assert_eq!(status(5), Some(413));
    assert_eq!(
        status(7),
        Some(431),
        "{:?}",
        c.got
            .iter()
            .filter(|g| !matches!(g, Got::Data { .. }))
            .collect::<Vec<_>>()
    );
    let (st, fields, end) = c.head(9).unwrap();
    assert_eq!(st, 200);
    assert!(end, "a HEAD's answer ends with its HEADERS");
    assert!(fields.iter().any(|(n, _)| n == "content-length"));
    assert!(c.body(9).is_empty());
    assert_eq!(status(11), Some(200));
    assert!(String::from_utf8_lossy(&c.body(11)).contains("sse_h2_streams_open"));
    let (st, fields, _) = c.head(13).unwrap();
    assert_eq!(st, 200);
    let len: usize = fields
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(c.body(13).len(), len);
    assert!(String::from_utf8_lossy(&c.body(13)).contains("<html"));
    for s in [1, 3, 5, 7, 9, 11, 13] {
        let (_, fields, _) = c.head(s).unwrap();
        assert!(
            !fields
                .iter()
                .any(|(n, _)| n == "connection" || n == "keep-alive"),
            "{s}: {fields:?}"
        );
    }
    // A content-length that is not the DATA's length is malformed (RFC 9113 section 8.1.1):
    // that stream is reset, the connection goes on.
    c.request(15, "POST", "/publish", &[("content-length", "50")], false);
    c.data(15, b"topic=t&data=x", true);
    // The connection is still good for more.
    c.get(17, "/healthz");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter().any(|g| {
            matches!(
                g,
                Got::Data {
                    stream: 15,
                    end: true,
                    ..
                }
            )
        })
    });
    assert_eq!(String::from_utf8(c.body(17)).unwrap(), "ok\n");
    assert_eq!(c.reset(15), Some(ErrorCode::ProtocolError));
    assert_eq!(c.head(15), None);
    assert_eq!(c.goaway(), None);
}

#[test]
fn a_stream_the_client_resets_ends_while_its_connection_and_others_go_on() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/sse?topic=a");
    c.get(3, "/sse");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter()
            .filter(|g| matches!(g, Got::Headers { .. }))
            .count()
            == 2
    });
    assert_eq!(
        server.wait_metric("sse_streams_open", 2.0, Duration::from_secs(5)),
        2.0
    );
    let mut out = Vec::new();
    frame::put_rst_stream(&mut out, 1, ErrorCode::Cancel);
    c.send(&out);
    assert_eq!(
        server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(5)),
        1.0
    );
    assert_eq!(server.metric("sse_h2_streams_open"), 1.0);
    let before = body_frames(&c.body(3)).len();
    c.read_for(Duration::from_millis(500));
    assert!(body_frames(&c.body(3)).len() >= before + 3);
    // The connection closing ends the rest.
    drop(c);
    assert_eq!(
        server.wait_metric("sse_streams_open", 0.0, Duration::from_secs(5)),
        0.0
    );
    assert_eq!(
        server.wait_metric("sse_h2_connections_open", 0.0, Duration::from_secs(5)),
        0.0
    );
    assert_eq!(server.metric("sse_h2_streams_open"), 0.0);
}

#[test]
fn nghttp_runs_many_event_streams_on_one_connection() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut cmd = Command::new("nghttp");
    cmd.arg("-n");
    for i in 0..40 {
        cmd.arg(format!("http://{}/sse?topic=t{i}", server.addr));
    }
    let mut child = cmd.spawn().unwrap();
    let open = server.wait_metric("sse_h2_streams_open", 40.0, Duration::from_secs(10));
    let conns = server.metric("sse_h2_connections_open");
    let streams = server.metric("sse_streams_open");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((open, conns, streams), (40.0, 1.0, 40.0));
    assert_eq!(
        server.wait_metric("sse_streams_open", 0.0, Duration::from_secs(5)),
        0.0
    );
}

#[test]
fn a_stream_whose_window_stays_closed_is_reset_while_the_others_tick() {
    let server = Server::start(&["--interval-ms", "100", "--stall-timeout-ms", "1000"]);
    let mut witness = Witness::start(&server);
    // Every stream starts with no window; the client opens stream 3's, never stream 1's.
    let mut c = H2c::connect_with(server.addr, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    c.get(1, "/sse");
    c.get(3, "/sse");
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 3, 1 << 20);
    frame::put_window_update(&mut out, 0, 1 << 20);
    c.send(&out);
    c.read_until(Duration::from_secs(5), |g| {
        g.iter().any(|g| matches!(g, Got::Rst { stream: 1, .. }))
    });
    assert_eq!(c.reset(1), Some(ErrorCode::Cancel));
    assert!(c.body(1).is_empty());
    let before = body_frames(&c.body(3)).len();
    assert!(before >= 5, "{before}");
    c.read_for(Duration::from_millis(500));
    assert!(body_frames(&c.body(3)).len() >= before + 3);
    assert_eq!(
        server.wait_metric("sse_h2_streams_open", 1.0, Duration::from_secs(5)),
        1.0
    );
    // The clock witness counts too: two streams in all.
    assert_eq!(server.metric("sse_streams_open"), 2.0);
    witness.still_ticks();
}

#[test]
fn rapid_reset_is_bounded_then_goaway_enhance_your_calm() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut witness = Witness::start(&server);
    let rss_before = server.rss_bytes();
    let mut c = H2c::connect(server.addr);
    let mut out = Vec::new();
    for i in 0..5_000u32 {
        let id = 1 + 2 * i;
        put_request(&mut out, id, "GET", "/sse?topic=r", &[], true);
        frame::put_rst_stream(&mut out, id, ErrorCode::Cancel);
    }
    c.send(&out);
    c.read_until(Duration::from_secs(10), |g| {
        g.iter().any(|g| matches!(g, Got::GoAway { .. }))
    });
    let (last, code) = c.goaway().expect("a GOAWAY");
    assert_eq!(code, ErrorCode::EnhanceYourCalm);
    assert!(last < 2 * 5_000, "{last}");
    c.read_for(Duration::from_secs(2));
    assert!(c.closed, "the connection is closed after its GOAWAY");
    assert_eq!(
        server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(5)),
        1.0
    );
    assert_eq!(server.metric("sse_h2_streams_open"), 0.0);
    witness.still_ticks();
    let grown = server.rss_bytes().saturating_sub(rss_before);
    assert!(grown < 8 << 20, "RSS grew {grown} bytes");
}

#[test]
fn data_held_by_the_connection_window_goes_out_once_the_client_opens_it() {
    let server = Server::start(&[]);
    let mut c = H2c::connect_with(server.addr, &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
    c.get(1, "/sse?topic=big");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter()
            .any(|g| matches!(g, Got::Headers { stream: 1, .. }))
    });
    let data = "x".repeat(30_000);
    for _ in 0..3 {
        server.publish("big", &data);
    }
    // The connection's window (65,535 bytes) is all the client gets until it opens it.
    c.read_for(Duration::from_millis(500));
    assert_eq!(c.body(1).len(), 65_535);
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 0, 1 << 20);
    c.send(&out);
    c.read_until(Duration::from_secs(5), |g| {
        let n: usize = g
            .iter()
            .map(|g| match g {
                Got::Data {
                    stream: 1, data, ..
                } => data.len(),
                _ => 0,
            })
            .sum();
        n >= 90_000
    });
    let body = String::from_utf8(c.body(1)).unwrap();
    assert_eq!(body.matches(&data[..]).count(), 3, "{} bytes", body.len());
}

/// Reads `stream`'s frames from `c` until `n` streams got a DATA frame each.
fn data_on_all(g: &[Got], streams: &[u32]) -> bool {
    streams.iter().all(|&s| {
        g.iter()
            .any(|g| matches!(g, Got::Data { stream, .. } if *stream == s))
    })
}

#[test]
fn a_publish_to_many_streams_of_one_connection_goes_out_in_one_write() {
    let server = Server::start(&[]);
    let mut c = H2c::connect(server.addr);
    let ids: Vec<u32> = (0..50).map(|i| 1 + 2 * i).collect();
    for &id in &ids {
        c.get(id, "/sse?topic=fan");
    }
    c.read_until(Duration::from_secs(5), |g| {
        g.iter()
            .filter(|g| matches!(g, Got::Headers { .. }))
            .count()
            == ids.len()
    });
    assert_eq!(
        server.wait_metric("sse_streams_open", 50.0, Duration::from_secs(5)),
        50.0
    );
    let before = server.metric("sse_h2_writes_total");
    server.publish("fan", "to-all");
    c.read_until(Duration::from_secs(5), |g| data_on_all(g, &ids));
    for &id in &ids {
        assert!(String::from_utf8(c.body(id))
            .unwrap()
            .ends_with("data: to-all\n\n"));
    }
    // The writing loop counts its write just after it returns: the client may ask first.
    let start = Instant::now();
    let mut writes = server.metric("sse_h2_writes_total") - before;
    while writes < 1.0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
        writes = server.metric("sse_h2_writes_total") - before;
    }
    assert!(
        (1.0..=2.0).contains(&writes),
        "50 streams' frames took {writes} writes"
    );
}

#[test]
fn curl_over_https_gets_h2_by_alpn_from_a_test_ca() {
    let dir = common::TempDir::new("h2tls");
    let pki = common::pki::Pki::make(&dir.0, "h2", common::pki::KeyKind::Ecdsa);
    let (server, tls) = Server::start_tls(&pki.cert, &pki.key, &["--interval-ms", "100"]);
    let url = format!("https://localhost:{}/", tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.port());
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&pki.ca)
        .args(["--resolve", &resolve, "-w", "\n%{http_version}"])
        .arg(format!("{url}healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n\n2", "{out:?}");
    let out = Command::new("curl")
        .args(["-sS", "--http2", "-N", "--max-time", "0.45", "--cacert"])
        .arg(&pki.ca)
        .args(["--resolve", &resolve])
        .arg(format!("{url}sse"))
        .output()
        .unwrap();
    let frames = body_frames(&out.stdout);
    assert!(frames.len() >= 3, "{out:?}");
    assert!(
        frames[0].starts_with("event:sseEvent\nid:0\n"),
        "{frames:?}"
    );
    assert_eq!(server.metric("sse_h2_connections_total"), 2.0);
    assert_eq!(server.metric("sse_tls_handshakes_total"), 2.0);
}

#[test]
fn drain_sends_each_stream_its_retry_then_goaway_with_the_last_stream_then_closes() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/sse");
    c.get(3, "/sse?topic=d");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter()
            .filter(|g| matches!(g, Got::Headers { .. }))
            .count()
            == 2
    });
    server.signal("TERM");
    c.read_until(Duration::from_secs(5), |_| false);
    assert!(c.closed, "closed after the drain");
    let goaway_at = c
        .got
        .iter()
        .position(|g| matches!(g, Got::GoAway { .. }))
        .expect("a GOAWAY");
    assert_eq!(c.goaway(), Some((3, ErrorCode::NoError)));
    for s in [1, 3] {
        let end_at = c
            .got
            .iter()
            .position(|g| matches!(g, Got::Data { stream, end: true, .. } if *stream == s))
            .unwrap_or_else(|| panic!("stream {s} not ended: {:?}", c.got));
        assert!(end_at < goaway_at, "stream {s}'s end after the GOAWAY");
        let body = String::from_utf8(c.body(s)).unwrap();
        let last = body.rsplit("\n\n").next().unwrap();
        assert!(
            last.starts_with("retry: ") && last.ends_with('\n'),
            "{body:?}"
        );
    }
}

#[test]
fn h2_requests_are_logged_as_http1_ones_with_proto_h2() {
    let (server, lines) = Server::start_logged(&[]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/healthz?token=secret");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter().any(|g| {
            matches!(
                g,
                Got::Data {
                    stream: 1,
                    end: true,
                    ..
                }
            )
        })
    });
    let end = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let l = lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .expect("a request line");
        if l.contains("request") && l.contains("/healthz") {
            break l;
        }
    };
    assert!(line.contains("proto=h2"), "{line}");
    assert!(line.contains("status=200"), "{line}");
    assert!(!line.contains("secret"), "{line}");
}

/// Starts the server for an attack: a fast clock (for the witness) and a short stall timeout.
fn attacked() -> (Server, Witness, u64) {
    let server = Server::start(&["--interval-ms", "100", "--stall-timeout-ms", "1000"]);
    let witness = Witness::start(&server);
    let rss = server.rss_bytes();
    (server, witness, rss)
}

/// After an attack: the witness ticks, memory stayed bounded, no h2 stream is left.
fn survived(server: &Server, witness: &mut Witness, rss_before: u64) {
    witness.still_ticks();
    let grown = server.peak_rss_bytes().saturating_sub(rss_before);
    assert!(grown < 32 << 20, "peak RSS grew {grown} bytes");
    assert_eq!(
        server.wait_metric("sse_h2_streams_open", 0.0, Duration::from_secs(5)),
        0.0
    );
    assert_eq!(
        server.wait_metric("sse_h2_connections_open", 0.0, Duration::from_secs(5)),
        0.0
    );
    assert_eq!(server.metric("sse_streams_open"), 1.0, "the witness only");
}

/// Reads until the server's GOAWAY and close; its code.
fn goaway_and_close(c: &mut H2c) -> ErrorCode {
    c.read_until(Duration::from_secs(10), |g| g.contains(&Got::Closed));
    assert!(
        c.closed,
        "the connection was not closed: {:?}",
        c.got.last()
    );
    c.goaway().expect("a GOAWAY before the close").1
}

#[test]
fn a_continuation_flood_ends_the_connection_with_enhance_your_calm() {
    let (server, mut witness, rss) = attacked();
    let mut c = H2c::connect(server.addr);
    let mut out = Vec::new();
    // HEADERS without END_HEADERS, then CONTINUATION frames without end.
    frame::header(3, 0x1, 0, 1).put(&mut out);
    out.extend_from_slice(&[0x82, 0x86, 0x84]);
    for _ in 0..2_000 {
        frame::header(1024, 0x9, 0, 1).put(&mut out);
        out.extend_from_slice(&[0x40; 1024]);
    }
    c.send(&out);
    assert_eq!(goaway_and_close(&mut c), ErrorCode::EnhanceYourCalm);
    survived(&server, &mut witness, rss);
}

#[test]
fn an_hpack_bomb_is_431_and_the_connection_goes_on() {
    let (server, mut witness, rss) = attacked();
    let mut c = H2c::connect(server.addr);
    // A 4,000-byte value put in the dynamic table, then a block naming it a thousand times:
    // 1,000 bytes that decode to 4 MB.
    let mut block = Vec::new();
    hpack::encode_field(&mut block, b":method", b"GET");
    hpack::encode_field(&mut block, b":scheme", b"http");
    hpack::encode_field(&mut block, b":path", b"/healthz");
    hpack::encode_field(&mut block, b":authority", b"test");
    block.push(0x40);
    hpack::put_integer(&mut block, 0, 7, 6);
    block.extend_from_slice(b"x-bomb");
    hpack::put_integer(&mut block, 0, 7, 4_000);
    block.extend(std::iter::repeat_n(b'y', 4_000));
    let mut out = Vec::new();
    frame::put_headers(
        &mut out,
        HeaderBlock {
            stream: 1,
            block: &block,
            end: StreamEnd::End,
            max_frame: 16384,
        },
    );
    let mut bomb = Vec::new();
    hpack::encode_field(&mut bomb, b":method", b"GET");
    hpack::encode_field(&mut bomb, b":scheme", b"http");
    hpack::encode_field(&mut bomb, b":path", b"/healthz");
    hpack::encode_field(&mut bomb, b":authority", b"test");
    bomb.extend(std::iter::repeat_n(0xbe, 1_000));
    frame::put_headers(
        &mut out,
        HeaderBlock {
            stream: 3,
            block: &bomb,
            end: StreamEnd::End,
            max_frame: 16384,
        },
    );
    c.send(&out);
    c.get(5, "/healthz");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter().any(|g| {
            matches!(
                g,
                Got::Data {
                    stream: 5,
                    end: true,
                    ..
                }
            )
        })
    });
    assert_eq!(c.head(1).map(|h| h.0), Some(200));
    assert_eq!(c.head(3).map(|h| h.0), Some(431));
    assert_eq!(c.head(5).map(|h| h.0), Some(200));
    assert_eq!(c.goaway(), None);
    drop(c);
    survived(&server, &mut witness, rss);
}

#[test]
fn settings_and_ping_floods_end_the_connection_with_enhance_your_calm() {
    let (server, mut witness, rss) = attacked();
    for ping in [false, true] {
        let mut c = H2c::connect(server.addr);
        let mut out = Vec::new();
        for i in 0..20_000u64 {
            if ping {
                frame::header(8, 0x6, 0, 0).put(&mut out);
                out.extend_from_slice(&i.to_be_bytes());
            } else {
                frame::put_settings(&mut out, &[(setting::INITIAL_WINDOW_SIZE, 65_535)]);
            }
        }
        c.send(&out);
        assert_eq!(
            goaway_and_close(&mut c),
            ErrorCode::EnhanceYourCalm,
            "ping {ping}"
        );
    }
    survived(&server, &mut witness, rss);
}

#[test]
fn stream_ids_reused_or_going_backwards_end_the_connection() {
    let (server, mut witness, rss) = attacked();
    for ids in [[5, 3], [1, 1]] {
        let mut c = H2c::connect(server.addr);
        c.get(ids[0], "/healthz");
        c.read_until(Duration::from_secs(5), |g| {
            g.iter().any(|g| matches!(g, Got::Data { end: true, .. }))
        });
        c.get(ids[1], "/healthz");
        assert_eq!(
            goaway_and_close(&mut c),
            ErrorCode::ProtocolError,
            "{ids:?}"
        );
        assert_eq!(c.goaway().unwrap().0, ids[0]);
    }
    survived(&server, &mut witness, rss);
}

#[test]
fn an_oversized_frame_and_a_bad_preface_are_closed_cleanly() {
    let (server, mut witness, rss) = attacked();
    let mut c = H2c::connect(server.addr);
    let mut out = Vec::new();
    frame::header(1 << 20, 0x0, 0, 1).put(&mut out);
    c.send(&out);
    c.send(&vec![0u8; 64 * 1024]);
    assert_eq!(goaway_and_close(&mut c), ErrorCode::FrameSizeError);
    // A preface that goes wrong after its start, seen as h2 (its first read is the
    // preface's start): GOAWAY PROTOCOL_ERROR, then the close.
    let mut s = server.connect();
    s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"\r\nXX\r\n\r\n").unwrap();
    let got = common::read_until(&mut s, Duration::from_secs(5), |_| false);
    let settings = FrameHeader::parse(&got).expect("a frame");
    assert_eq!(settings.kind, 0x4, "our SETTINGS first: {got:02x?}");
    let goaway = FrameHeader::parse(&got[9 + settings.len as usize..]).expect("a GOAWAY");
    assert_eq!(goaway.kind, 0x7, "{got:02x?}");
    let code = &got[9 + settings.len as usize + 9 + 4..][..4];
    assert_eq!(code, [0, 0, 0, 1], "PROTOCOL_ERROR");
    // One that is wrong within its first read is not h2: HTTP/1.1 answers it, and closes.
    let mut s = server.connect();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").unwrap();
    let got = common::read_until(&mut s, Duration::from_secs(5), |_| false);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    survived(&server, &mut witness, rss);
}

#[test]
fn a_client_that_never_reads_is_closed_after_the_stall_timeout_with_memory_bounded() {
    let (server, mut witness, rss) = attacked();
    let mut c = H2c::connect_with(server.addr, &[(setting::INITIAL_WINDOW_SIZE, 1 << 30)]);
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 0, (1 << 30) - 65_535);
    c.send(&out);
    for i in 0..50 {
        c.get(1 + 2 * i, "/sse?topic=flood");
    }
    assert_eq!(
        server.wait_metric("sse_h2_streams_open", 50.0, Duration::from_secs(5)),
        50.0
    );
    // The client reads nothing from here on.
    let data = "z".repeat(30_000);
    for _ in 0..100 {
        server.publish("flood", &data);
    }
    survived(&server, &mut witness, rss);
    assert!(server.metric("sse_timeouts_total{kind=\"stall\"}") >= 1.0);
}

#[test]
fn h2_max_streams_refuses_the_stream_past_it() {
    let server = Server::start(&["--h2-max-streams", "2"]);
    let mut c = H2c::connect(server.addr);
    c.get(1, "/sse");
    c.get(3, "/sse?topic=a");
    c.get(5, "/sse?topic=b");
    c.read_until(Duration::from_secs(5), |g| {
        g.iter().any(|g| matches!(g, Got::Rst { stream: 5, .. }))
            && g.iter()
                .filter(|g| matches!(g, Got::Headers { .. }))
                .count()
                == 2
    });
    assert_eq!(c.reset(5), Some(ErrorCode::RefusedStream));
    assert_eq!(c.head(1).map(|h| h.0), Some(200));
    assert_eq!(c.head(3).map(|h| h.0), Some(200));
    assert_eq!(c.goaway(), None);
    assert_eq!(server.metric("sse_h2_streams_open"), 2.0);
    // The announced limit.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(PREFACE).unwrap();
    let got = common::read_until(&mut s, Duration::from_secs(5), |b| b.len() >= 9 + 18);
    let h = FrameHeader::parse(&got).unwrap();
    let params = &got[9..9 + h.len as usize];
    assert!(
        frame::settings(params).any(|(id, v)| id == setting::MAX_CONCURRENT_STREAMS && v == 2),
        "{params:02x?}"
    );
}
