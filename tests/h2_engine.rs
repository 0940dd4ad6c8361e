//! The HTTP/2 engine (`core::h2`, not yet driven by the server's loop) against clients nobody
//! here wrote: curl, nghttp, h2load and Node's `http2`, over a real socket on 127.0.0.1. A
//! small blocking harness below drives the engine exactly as the loop will: bytes in, requests
//! out, answers in, one buffer of frames out.

use sse_server::core::h2::{H2Config, H2};
use sse_server::wire::h2::frame::StreamEnd;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Serves h2c (prior knowledge) on 127.0.0.1, one thread per connection: `GET /hello` and any
/// other GET answer their path, `GET /events` three event-stream frames, `POST` the body's
/// length.
fn serve() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || run(s));
        }
    });
    port
}

fn run(mut s: TcpStream) {
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut h2 = H2::new(H2Config::default(), now());
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    loop {
        h2.poll_transmit(&mut out, now());
        if std::env::var_os("H2_TRACE").is_some() {
            let mut rest = &out[..];
            while let Some(h) = sse_server::wire::h2::frame::FrameHeader::parse(rest) {
                eprintln!("out {h:?}");
                rest = &rest[9 + h.len as usize..];
            }
        }
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
        if h2.is_closing() || start.elapsed() > Duration::from_secs(20) {
            if let Some(e) = h2.error() {
                eprintln!("h2 engine closed the connection: {e:?}");
            }
            return;
        }
        let limit = h2.read_limit().min(buf.len());
        match s.read(&mut buf[..limit]) {
            Ok(0) => return,
            Ok(n) => {
                if std::env::var_os("H2_TRACE").is_some() {
                    eprintln!("in {n} bytes: {:02x?}", &buf[..n.min(120)]);
                }
                h2.handle_input(&buf[..n], now())
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
        for r in h2.take_requests() {
            let path = String::from_utf8_lossy(&r.path).into_owned();
            if let Some(status) = r.refused {
                h2.send_headers(r.stream, status, &[], StreamEnd::End);
            } else if r.method == b"POST" {
                let text = format!("got {} bytes\n", r.body.len());
                h2.send_headers(
                    r.stream,
                    200,
                    &[("content-type", b"text/plain")],
                    StreamEnd::Open,
                );
                h2.send_data(r.stream, text.as_bytes(), StreamEnd::End);
            } else if path == "/events" {
                h2.send_headers(
                    r.stream,
                    200,
                    &[
                        ("content-type", b"text/event-stream"),
                        ("cache-control", b"no-cache"),
                    ],
                    StreamEnd::Open,
                );
                for i in 0..3 {
                    let frame = format!("id:{i}\ndata: tick {i}\n\n");
                    h2.send_data(
                        r.stream,
                        frame.as_bytes(),
                        if i == 2 {
                            StreamEnd::End
                        } else {
                            StreamEnd::Open
                        },
                    );
                }
            } else {
                let text = format!("path {path}\n");
                h2.send_headers(
                    r.stream,
                    200,
                    &[("content-type", b"text/plain")],
                    StreamEnd::Open,
                );
                h2.send_data(r.stream, text.as_bytes(), StreamEnd::End);
            }
        }
        h2.handle_timeout(now());
    }
}

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn curl_with_prior_knowledge_gets_posts_and_streams() {
    let port = serve();
    let base = format!("http://127.0.0.1:{port}");
    let got = run_tool(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        "-w",
        "%{http_version} %{response_code}\n",
        &format!("{base}/hello?x=1"),
    ]));
    assert_eq!(got, "path /hello?x=1\n2 200\n");
    let got = run_tool(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        "-d",
        &"a".repeat(40_000),
        &format!("{base}/publish"),
    ]));
    assert_eq!(got, "got 40000 bytes\n");
    let got = run_tool(Command::new("curl").args([
        "-sS",
        "-N",
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        &format!("{base}/events"),
    ]));
    assert_eq!(
        got,
        "id:0\ndata: tick 0\n\nid:1\ndata: tick 1\n\nid:2\ndata: tick 2\n\n"
    );
    // Not tested here: curl 7.88's `--parallel` with `--http2-prior-knowledge` ends every
    // transfer but the first with "Error in the HTTP2 framing layer" before it sends them,
    // against Node's own h2c server just the same; nghttp, h2load and Node below multiplex.
}

#[test]
fn nghttp_and_h2load_agree() {
    let port = serve();
    let got = run_tool(Command::new("nghttp").args([
        "-v",
        "-t",
        "10",
        &format!("http://127.0.0.1:{port}/events"),
        &format!("http://127.0.0.1:{port}/a"),
    ]));
    assert!(got.contains("data: tick 2"), "{got}");
    assert!(got.contains("path /a"), "{got}");
    assert!(got.contains("recv SETTINGS frame"), "{got}");
    // Our SETTINGS as nghttp read them.
    assert!(
        got.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]"),
        "{got}"
    );
    let got = run_tool(Command::new("h2load").args([
        "-n",
        "400",
        "-c",
        "4",
        "-m",
        "20",
        &format!("http://127.0.0.1:{port}/load"),
    ]));
    assert!(got.contains("400 succeeded, 0 failed, 0 errored"), "{got}");
}

#[test]
fn nodes_http2_client_runs_many_streams_on_one_session() {
    let port = serve();
    let script = format!(
        r#"
const http2 = require('http2');
const s = http2.connect('http://127.0.0.1:{port}');
s.on('error', e => {{ console.error(e); process.exit(2); }});
let left = 50; const seen = [];
for (let i = 0; i < 50; i++) {{
  const r = s.request({{ ':path': '/n' + i }});
  let body = '';
  r.setEncoding('utf8');
  r.on('response', h => {{ if (h[':status'] !== 200) process.exit(3); }});
  r.on('data', d => body += d);
  r.on('end', () => {{ seen.push(body); if (--left === 0) {{ s.close(); console.log(seen.sort().join('')); }} }});
}}
"#
    );
    let got = run_tool(Command::new("node").args(["-e", &script]));
    for i in 0..50 {
        assert!(got.contains(&format!("path /n{i}\n")), "{got}");
    }
}
