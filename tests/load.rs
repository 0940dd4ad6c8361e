//! End-to-end tests of `sse-load`: the real binary against the real `sse-server`, against a
//! port nobody listens on, and against small in-test servers (chunked, silent), all on
//! 127.0.0.1 with ports picked by the kernel. Every run is bounded by a timeout.

mod common;

use common::Server;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `sse-load` with `args`, killing it if it outlives `limit`.
fn sse_load(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sse-load starts");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "sse-load ran past {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs `sse-load ... --json -q`, expects exit code 0, and returns the report.
fn report(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--json", "-q"]);
    let out = sse_load(&all, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/sse")
}

#[test]
fn fifty_streams_against_sse_server() {
    let server = Server::start(&["--interval-ms", "100"]);
    let r = report(&[&url(server.addr), "-c", "50", "-d", "2"]);
    assert_eq!(num(&r, &["streams", "established"]), 50.0, "{r:#}");
    assert_eq!(num(&r, &["streams", "failed"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["streams", "dropped"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["streams", "open_at_end"]), 50.0, "{r:#}");
    // 50 streams x 2 s / 100 ms = 1000 frames, less the ramp and the first interval.
    let frames = num(&r, &["frames"]);
    assert!((750.0..=1050.0).contains(&frames), "frames {frames}: {r:#}");
    let p50 = num(&r, &["frame_interval_ms", "p50"]);
    assert!((95.0..=105.0).contains(&p50), "interval p50 {p50}: {r:#}");
    for k in ["gaps", "missing", "duplicates", "without_id", "non_numeric"] {
        assert_eq!(num(&r, &["ids", k]), 0.0, "ids.{k}: {r:#}");
    }
    assert_eq!(num(&r, &["ids", "first_min"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["lateness_ms", "count"]), frames, "{r:#}");
    let late = num(&r, &["lateness_ms", "p99"]);
    assert!(late < 50.0, "lateness p99 {late} ms: {r:#}");
    assert_eq!(num(&r, &["retry_fields"]), frames);
    assert!(num(&r, &["bytes"]) >= frames * 70.0, "{r:#}");
}

#[test]
fn warmup_leaves_the_ramp_out_of_the_timing_figures() {
    let server = Server::start(&["--interval-ms", "100"]);
    let r = report(&[&url(server.addr), "-c", "10", "-d", "1.5", "--warmup", "1"]);
    assert_eq!(num(&r, &["warmup_s"]), 1.0, "{r:#}");
    let frames = num(&r, &["frames"]);
    let timed = num(&r, &["lateness_ms", "count"]);
    // About 140 frames in all, about 50 of them in the last half second.
    assert!(frames > 100.0, "{r:#}");
    assert!(
        timed > 20.0 && timed < frames * 0.6,
        "{timed} of {frames} frames timed: {r:#}"
    );
    // Every seed frame carries a timestamp, so the steady window counts exactly the timed ones.
    assert_eq!(num(&r, &["steady_frames"]), timed, "{r:#}");
    let rate = num(&r, &["steady_frames_per_s"]);
    assert!(rate > 40.0 && rate < 200.0, "10 streams at 10/s: {rate}");
}

#[test]
fn last_event_id_sets_the_first_id() {
    let server = Server::start(&["--interval-ms", "100"]);
    let r = report(&[
        &url(server.addr),
        "-c",
        "5",
        "-d",
        "0.6",
        "--last-event-id",
        "41",
    ]);
    assert_eq!(num(&r, &["streams", "established"]), 5.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "first_min"]), 42.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "first_max"]), 42.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "gaps"]), 0.0, "{r:#}");
}

#[test]
fn a_port_nobody_listens_on_fails_by_reason() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    // The listener is dropped: nothing listens on that port now.
    let r = report(&[&url(addr), "-c", "10", "-d", "1"]);
    assert_eq!(num(&r, &["streams", "established"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["streams", "failed"]), 10.0, "{r:#}");
    assert_eq!(
        num(&r, &["failed_by_reason", "connect_refused"]),
        10.0,
        "{r:#}"
    );
    assert_eq!(num(&r, &["frames"]), 0.0);
}

#[test]
fn a_silent_server_times_out_with_a_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold every connection without a word.
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let r = report(&[
        &url(addr),
        "-c",
        "4",
        "-d",
        "1.5",
        "--headers-timeout-ms",
        "300",
    ]);
    assert_eq!(
        num(&r, &["failed_by_reason", "headers_timeout"]),
        4.0,
        "{r:#}"
    );
}

/// The stream the chunked server sends: per frame, an ISO date; comments, CRLF line ends, a
/// two-line data field; each frame cut into chunks that split lines and one CRLF.
fn chunked_frame(id: u64) -> Vec<Vec<u8>> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut dates = sse_server::sse::Dates::new();
    let iso = String::from_utf8_lossy(dates.iso(now_ms)).into_owned();
    let frame = format!(
        ": keep-alive\r\nevent: tick\r\nid: {id}\r\ndata: {{\"content\":\"{iso}\"}}\r\ndata: second line\r\n\r\n"
    );
    let b = frame.as_bytes();
    // Cut inside ": keep-", inside "event", between the CR and LF after the id, and mid-data.
    let cr = frame.find(&format!("{id}\r\n")).unwrap() + id.to_string().len() + 1;
    let cuts = [7, 17, cr, cr + 12, b.len()];
    let mut prev = 0;
    cuts.iter()
        .map(|&c| {
            let piece = &b[prev..c];
            prev = c;
            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
            chunk.extend_from_slice(piece);
            chunk.extend_from_slice(b"\r\n");
            chunk
        })
        .collect()
}

fn serve_chunked(mut s: TcpStream, frames: u64) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n",
    );
    for id in 1..=frames {
        for chunk in chunked_frame(id) {
            if s.write_all(&chunk).is_err() {
                return;
            }
            // Some pieces arrive in separate reads, some together.
            if id % 2 == 0 {
                thread::sleep(Duration::from_millis(3));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Hold the stream open (no last chunk) until the client goes away.
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.read(&mut [0u8; 64]);
}

#[test]
fn chunked_crlf_stream_with_comments_is_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || serve_chunked(s, 12));
        }
    });
    let r = report(&[&url(addr), "-c", "5", "-d", "1.5"]);
    assert_eq!(num(&r, &["streams", "established"]), 5.0, "{r:#}");
    assert_eq!(num(&r, &["streams", "dropped"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["frames"]), 60.0, "{r:#}");
    assert_eq!(num(&r, &["comments"]), 60.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "first_min"]), 1.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "gaps"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["ids", "duplicates"]), 0.0, "{r:#}");
    assert_eq!(num(&r, &["lateness_ms", "count"]), 60.0, "{r:#}");
    let late = num(&r, &["lateness_ms", "max"]);
    assert!(late < 1000.0, "lateness {late}: {r:#}");
}

#[test]
fn a_chunked_body_that_ends_is_a_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n",
            );
            let _ = s.read(&mut buf);
        }
    });
    let r = report(&[&url(addr), "-c", "2", "-d", "0.5"]);
    assert_eq!(num(&r, &["streams", "established"]), 2.0, "{r:#}");
    assert_eq!(num(&r, &["dropped_by_reason", "ended"]), 2.0, "{r:#}");
    assert_eq!(num(&r, &["frames"]), 2.0, "{r:#}");
}

#[test]
fn the_human_report_and_progress_lines() {
    let server = Server::start(&["--interval-ms", "200"]);
    let out = sse_load(
        &[&url(server.addr), "-c", "3", "-d", "1.2"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "established 3 of 3",
        "interval",
        "lateness",
        "first seen 0",
        "cpu",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("open      3"), "progress:\n{progress}");
}

#[test]
fn bad_arguments_exit_2_and_only_loopback_is_loaded() {
    for args in [
        &["http://10.1.2.3:3000/sse"][..],
        &["http://example.com/sse"],
        &["-c", "0"],
        &["--nope"],
    ] {
        let out = sse_load(args, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    let out = sse_load(&["http://192.168.0.1/sse"], Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only targets this machine"), "{err}");
    let out = sse_load(&["--help"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--source-addrs") && help.contains("default"));
}
