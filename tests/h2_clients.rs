//! HTTP/2 against clients nobody here wrote, over real sockets against the real binary: h2c
//! with prior knowledge on the plain port, ALPN `h2` on the TLS port (a test CA the test makes
//! with `openssl`, which every client is told to trust):
//!
//! - Python's `h2` (`tests/clients/h2frames.py`) for frame-level cases written from RFC 9113:
//!   the SETTINGS exchange and a PING, the clock's bytes inside DATA, stream and connection flow
//!   control (the server waits for WINDOW_UPDATE), RST_STREAM of one stream leaving the others
//!   ticking, GOAWAY on stop naming the last stream after the `retry:` frames. `h2` itself
//!   refuses what the RFC forbids (connection-specific fields, frames in the wrong state), so a
//!   case that runs to its end is also a conformance check of everything it saw;
//! - Node's own `http2` module (`h2node.mjs`): many streams on one session and a publish on it;
//!   Node's `eventsource` package over HTTPS and h2 (its fetch is undici's, with `allowH2`);
//! - `curl --http2` and `--http2-prior-knowledge`, `nghttp` (the page and its files, many
//!   requests) and `h2load` (1,000 requests, 10 connections, 10 streams each).
//!
//! The raw-frame attacks are `tests/h2.rs`'s. The Python and Node packages are pinned in
//! `tests/clients/` (see `common::clients`: skipped loudly when they cannot be installed, unless
//! `REQUIRE_CLIENTS=1`); `curl` with HTTP/2, `nghttp` and `h2load` (Debian `nghttp2-client`)
//! are skipped loudly when missing, unless `REQUIRE_H2_TOOLS=1` (CI).

mod common;
mod webdriver;

use common::clients::{clients_installed, Client};
use common::pki::{KeyKind, Pki};
use common::{Server, TempDir};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A server with plain HTTP (h2c by prior knowledge) and HTTPS (ALPN h2) on a test CA; the CA
/// file, the server and its TLS address. The directory holds the files until dropped.
fn https(tag: &str, args: &[&str]) -> (TempDir, std::path::PathBuf, Server, SocketAddr) {
    let dir = TempDir::new(tag);
    let pki = Pki::make(&dir.0, tag, KeyKind::Ecdsa);
    let (server, tls) = Server::start_tls(&pki.cert, &pki.key, args);
    (dir, pki.ca, server, tls)
}

/// `h2frames.py HOST PORT CASE [--tls CA] ARGS...`.
fn h2frames(addr: SocketAddr, ca: Option<&Path>, case: &str, args: &[&str]) -> Client {
    let mut a: Vec<OsString> = vec![
        addr.ip().to_string().into(),
        addr.port().to_string().into(),
        case.into(),
    ];
    if let Some(ca) = ca {
        a.push("--tls".into());
        a.push(ca.into());
    }
    a.extend(args.iter().map(OsString::from));
    let refs: Vec<&OsStr> = a.iter().map(OsString::as_os_str).collect();
    Client::script("python h2", "h2frames.py", &refs, &[])
}

/// The first line with `key`, waiting for it (panics on an error line first).
fn wait_line(c: &mut Client, key: &str) -> Value {
    c.wait_until(WAIT, |seen| {
        seen.iter()
            .any(|v| v.get(key).is_some() || v.get("error").is_some())
    });
    let v = c.seen.iter().find(|v| v.get(key).is_some());
    v.unwrap_or_else(|| panic!("{}: no {key:?}: {:?}", c.name, c.seen))
        .clone()
}

/// The value of `key` in the first line with it, waiting for it.
fn line(c: &mut Client, key: &str) -> Value {
    wait_line(c, key)[key].clone()
}

/// The client's run to its end; panics on an error line (what `h2` or the socket raised).
fn finish(c: &mut Client) -> Vec<Value> {
    let seen = c.wait_exit(WAIT).to_vec();
    assert!(
        seen.iter().all(|v| v.get("error").is_none()),
        "{}: {seen:?}",
        c.name
    );
    assert!(seen.iter().any(|v| v.get("end").is_some()), "{seen:?}");
    seen
}

fn get<'a>(seen: &'a [Value], key: &str) -> &'a Value {
    seen.iter()
        .find_map(|v| v.get(key))
        .unwrap_or_else(|| panic!("no {key:?} in {seen:?}"))
}

/// The clock's frames with the time in `content` replaced by `<time>`.
fn clock_frames(text: &str) -> Vec<String> {
    text.split_inclusive("\n\n")
        .filter(|f| f.ends_with("\n\n"))
        .map(|f| match f.find("\"content\":\"") {
            Some(i) => format!("{}<time>\"}}\n\n", &f[..i + 11]),
            None => f.to_owned(),
        })
        .collect()
}

#[test]
fn python_h2_exchanges_settings_and_a_ping_over_h2c_and_alpn_h2() {
    if !clients_installed() {
        return;
    }
    let (_dir, ca, server, tls) = https("h2-settings", &["--h2-max-streams", "7"]);
    for (addr, ca) in [(server.addr, None), (tls, Some(ca.as_path()))] {
        let mut c = h2frames(addr, ca, "settings", &[]);
        let seen = finish(&mut c);
        if ca.is_some() {
            assert_eq!(get(&seen, "alpn"), "h2", "{seen:?}");
        }
        // RFC 9113 3.4: the server's preface is a SETTINGS frame (type 4, not an ACK, stream
        // 0), the first frame it sends.
        assert_eq!(
            get(&seen, "first_frame"),
            &serde_json::json!({"type": 4, "flags": 0, "stream": 0}),
            "{seen:?}"
        );
        // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) is the flag's; SETTINGS_ENABLE_PUSH (0x2),
        // when sent, is 0 (a server never pushes).
        let settings = get(&seen, "settings");
        assert_eq!(settings["3"], 7, "{seen:?}");
        assert!(settings.get("2").map_or(true, |v| v == 0), "{seen:?}");
        // 6.5.3: our SETTINGS acknowledged; 6.7: the PING's 8 bytes come back in its ACK.
        assert_eq!(get(&seen, "settings_ack"), true, "{seen:?}");
        assert_eq!(
            get(&seen, "ping_ack"),
            "aDJ0cGluZyE=",
            "b64 of h2tping!: {seen:?}"
        );
        assert_eq!(get(&seen, "status"), "200", "{seen:?}");
        assert_eq!(get(&seen, "body"), "ok\n", "{seen:?}");
    }
}

#[test]
fn python_h2_data_frames_carry_the_clock_bytes_exactly() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--interval-ms", "50"]);
    let mut c = h2frames(server.addr, None, "clock", &["events=3"]);
    let seen = finish(&mut c);
    // The same stream over HTTP/1.1, for the bytes.
    let mut plain = server.connect();
    plain
        .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let three = |b: &[u8]| common::frames(b).len() >= 3;
    let h1 = common::read_until(&mut plain, WAIT, three);
    let h1 = String::from_utf8_lossy(&h1);
    let h1_body = h1.split_once("\r\n\r\n").unwrap().1;
    let h2_body = get(&seen, "data").as_str().unwrap();
    let want: Vec<String> = (0..3)
        .map(|i| {
            format!("event:sseEvent\nid:{i}\nretry: 30000\ndata: {{\"content\":\"<time>\"}}\n\n")
        })
        .collect();
    assert_eq!(clock_frames(h2_body)[..3], want[..], "{h2_body:?}");
    assert_eq!(clock_frames(h2_body)[..3], clock_frames(h1_body)[..3]);
    // The head: the event-stream fields, in h2's lowercase, and none of HTTP/1.1's
    // connection-specific ones (RFC 9113 8.2.2; `h2` would have refused the response).
    let headers: Vec<(String, String)> =
        serde_json::from_value(get(&seen, "headers").clone()).unwrap();
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            ":status",
            "content-type",
            "cache-control",
            "access-control-allow-origin",
            "x-accel-buffering",
            "date"
        ],
        "{headers:?}"
    );
    assert_eq!(headers[0].1, "200");
    assert_eq!(headers[1].1, "text/event-stream;charset=utf-8");

    // Last-Event-ID resumes the clock at the next id, as over HTTP/1.1.
    let mut c = h2frames(
        server.addr,
        None,
        "clock",
        &["events=1", "last_event_id=41"],
    );
    let seen = finish(&mut c);
    let data = get(&seen, "data").as_str().unwrap();
    assert!(data.starts_with("event:sseEvent\nid:42\n"), "{data:?}");
}

#[test]
fn python_h2_stream_flow_control_holds_data_until_window_update() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--interval-ms", "50"]);
    // An 8-byte stream window (SETTINGS_INITIAL_WINDOW_SIZE): 600 ms is 12 ticks, but at most
    // 8 bytes may come until the WINDOW_UPDATE.
    let mut c = h2frames(
        server.addr,
        None,
        "window",
        &["window=8", "wait_ms=600", "update=4096", "events=3"],
    );
    let seen = finish(&mut c);
    let before = get(&seen, "before").as_u64().unwrap();
    assert!(before <= 8, "{seen:?}");
    let after = seen.iter().find(|v| v.get("after").is_some()).unwrap();
    assert!(
        after["goaway"].is_null() && after["reset"].is_null(),
        "{seen:?}"
    );
    // What was held is sent once the window opens, from the start and whole: the ticks due
    // meanwhile are not lost in the middle of an event.
    let data = after["data"].as_str().unwrap();
    let frames = clock_frames(data);
    assert!(frames.len() >= 3, "{data:?}");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(
            f,
            &format!("event:sseEvent\nid:{i}\nretry: 30000\ndata: {{\"content\":\"<time>\"}}\n\n"),
            "{data:?}"
        );
    }
}

#[test]
fn python_h2_connection_flow_control_holds_data_until_window_update() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&[]);
    // A 1 MiB stream window, the connection's 65,535 bytes left as they are (RFC 9113 6.9.2:
    // SETTINGS cannot change it): of three 30,000-byte events, two fit and the third waits for
    // the connection's WINDOW_UPDATE.
    let mut c = h2frames(
        server.addr,
        None,
        "connwindow",
        &["window=1048576", "events=3"],
    );
    line(&mut c, "ready");
    let big = "x".repeat(30_000);
    for _ in 0..3 {
        server.publish("t", &big);
    }
    let seen = finish(&mut c);
    let before = get(&seen, "before").as_u64().unwrap();
    assert!((60_000..=65_535).contains(&before), "{before}: {seen:?}");
    assert_eq!(get(&seen, "events"), 3, "{seen:?}");
    assert!(get(&seen, "after").as_u64().unwrap() > 90_000, "{seen:?}");
}

#[test]
fn python_h2_rst_stream_of_one_stream_leaves_the_others_ticking() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--interval-ms", "100"]);
    let mut c = h2frames(server.addr, None, "reset", &["streams=3", "watch_s=1.2"]);
    let reset = wait_line(&mut c, "reset");
    assert_eq!(reset["streams"], serde_json::json!([1, 3, 5]));
    assert_eq!(reset["reset"], 3);
    // The server forgets the stream (its count), and keeps the connection.
    assert_eq!(server.wait_metric("sse_h2_streams_open", 2.0, WAIT), 2.0);
    assert_eq!(server.metric("sse_streams_open"), 2.0);
    assert_eq!(server.metric("sse_h2_connections_open"), 1.0);
    let seen = finish(&mut c);
    let after = get(&seen, "after");
    assert_eq!(after["3"], 0, "the reset stream got more: {seen:?}");
    for s in ["1", "5"] {
        // 1.2 s at 100 ms is 12 ticks; half of them, under a loaded machine.
        assert!(after[s].as_u64().unwrap() >= 6, "stream {s}: {seen:?}");
    }
    assert!(get(&seen, "goaway").is_null(), "{seen:?}");
}

#[test]
fn python_h2_goaway_on_stop_names_the_last_stream_after_the_retry_frames() {
    if !clients_installed() {
        return;
    }
    for tls in [false, true] {
        let (_dir, ca, server, tls_addr) = https("h2-goaway", &["--reconnect-ms", "1000"]);
        let (addr, ca) = if tls {
            (tls_addr, Some(ca.as_path()))
        } else {
            (server.addr, None)
        };
        let mut c = h2frames(addr, ca, "goaway", &["streams=3"]);
        assert_eq!(line(&mut c, "ready"), serde_json::json!([1, 3, 5]));
        server.wait_metric("sse_streams_open", 3.0, WAIT);
        server.signal("TERM");
        let seen = finish(&mut c);
        // RFC 9113 6.8: NO_ERROR, and the last stream the server processed: 5.
        let goaway = get(&seen, "goaway");
        assert_eq!(goaway["last_stream_id"], 5, "tls {tls}: {seen:?}");
        assert_eq!(goaway["error_code"], 0, "tls {tls}: {seen:?}");
        assert_eq!(get(&seen, "closed"), true);
        // Each stream got its jittered `retry:` (a line alone, 500 to 1500 ms) and its end,
        // all before the GOAWAY.
        for s in ["1", "3", "5"] {
            let data = get(&seen, "data")[s].as_str().unwrap();
            let ms: u64 = data
                .strip_prefix("retry: ")
                .and_then(|r| r.strip_suffix('\n'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("stream {s}: {data:?}"));
            assert!((500..=1500).contains(&ms), "stream {s}: {data:?}");
        }
        let log: Vec<Vec<Value>> = serde_json::from_value(get(&seen, "log").clone()).unwrap();
        let at = |what: &str, sid: Option<u64>| {
            log.iter().position(|e| {
                e[0] == what && sid.map_or(true, |s| e.get(1).and_then(Value::as_u64) == Some(s))
            })
        };
        let goaway_at = at("goaway", None).unwrap();
        for sid in [1, 3, 5] {
            let data_at = at("data", Some(sid)).unwrap_or_else(|| panic!("{log:?}"));
            let end_at = at("end", Some(sid)).unwrap_or_else(|| panic!("{log:?}"));
            assert!(data_at < end_at && end_at < goaway_at, "tls {tls}: {log:?}");
        }
    }
}

/// The metrics that say how many connections and streams are open over h2 on `transport`.
fn h2_counts(server: &Server, transport: &str) -> (f64, f64, f64) {
    (
        server.metric(&format!(
            "sse_connections_open_by_protocol{{proto=\"h2\",transport=\"{transport}\"}}"
        )),
        server.metric("sse_h2_connections_open"),
        server.metric("sse_h2_streams_open"),
    )
}

#[test]
fn node_http2_opens_many_streams_and_publishes_on_one_session_over_h2c_and_tls() {
    if !clients_installed() {
        return;
    }
    const STREAMS: usize = 30;
    let (_dir, ca, server, tls) = https("h2-node", &[]);
    let n = STREAMS.to_string();
    for (transport, base, ca) in [
        ("plain", format!("http://{}", server.addr), None),
        ("tls", format!("https://{tls}"), Some(ca.as_os_str())),
    ] {
        let mut args = vec![OsStr::new(&base), OsStr::new(&n)];
        args.extend(ca);
        let mut c = Client::script("node http2", "h2node.mjs", &args, &[]);
        let ready = wait_line(&mut c, "ready");
        assert_eq!(
            ready["statuses"],
            serde_json::json!(vec![200; STREAMS]),
            "{ready}"
        );
        let alpn = if transport == "tls" { "h2" } else { "h2c" };
        assert_eq!(ready["alpn"], alpn, "{ready}");
        // All of them on one connection, as the server counts it.
        assert_eq!(
            h2_counts(&server, transport),
            (1.0, 1.0, STREAMS as f64),
            "{transport}"
        );
        assert_eq!(server.metric("sse_streams_open"), STREAMS as f64);
        let from_rust = server.publish("t", "from-rust");
        let seen = finish(&mut c);
        let published = seen.iter().find(|v| v.get("published").is_some()).unwrap();
        assert_eq!(published["published"], 200, "{seen:?}");
        assert_ne!(published["id"].as_str().unwrap(), from_rust);
        let datas = get(&seen, "datas").as_array().unwrap();
        assert_eq!(datas.len(), STREAMS);
        for d in datas {
            assert_eq!(
                d,
                &serde_json::json!(["from-rust", "from-node"]),
                "{transport}"
            );
        }
        server.wait_metric("sse_h2_connections_open", 0.0, WAIT);
    }
}

#[test]
fn node_eventsource_reads_over_https_and_h2() {
    if !clients_installed() {
        return;
    }
    let (_dir, ca, server, tls) = https("h2-eventsource", &[]);
    let url = format!("https://{tls}/sse?topic=t");
    let mut c = Client::script(
        "eventsource over h2",
        "h2eventsource.mjs",
        &[OsStr::new(&url), ca.as_os_str()],
        &[],
    );
    c.wait_for("open", WAIT);
    // Over h2 indeed: one h2 connection on the TLS port holding the one stream.
    assert_eq!(h2_counts(&server, "tls"), (1.0, 1.0, 1.0));
    let ids = [server.publish("t", "one"), server.publish("t", "two")];
    c.wait_until(WAIT, |seen| {
        seen.iter().filter(|v| v.get("event").is_some()).count() >= 2
    });
    server.signal("TERM");
    c.wait_for("end", WAIT);
    assert_eq!(c.datas(), ["one", "two"], "{:?}", c.seen);
    let got: Vec<&str> = c
        .seen
        .iter()
        .filter_map(|v| v.get("event").and(v["id"].as_str()))
        .collect();
    assert_eq!(got, ids, "{:?}", c.seen);
}

/// Whether `curl` speaks HTTP/2 and `nghttp` and `h2load` are there; panics when not and
/// `REQUIRE_H2_TOOLS=1`.
fn h2_tools() -> bool {
    let curl_h2 = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let mut missing = Vec::new();
    if !curl_h2 {
        missing.push("curl with HTTP2");
    }
    for tool in ["nghttp", "h2load"] {
        if !has(tool) {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the HTTP/2 tool tests need {} (apt-get install curl nghttp2-client)",
        missing.join(", ")
    );
    if std::env::var("REQUIRE_H2_TOOLS").as_deref() == Ok("1") {
        panic!("REQUIRE_H2_TOOLS=1 but {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n************************************************************\n\
         SKIPPED: {why}.\nSet REQUIRE_H2_TOOLS=1 to make this a failure.\n\
         ************************************************************\n"
    );
    false
}

/// `program args...`: its exit code and stdout + stderr.
fn run(program: &str, args: &[&OsStr]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn curl_http2_over_tls_and_with_prior_knowledge() {
    if !h2_tools() {
        return;
    }
    let (_dir, ca, server, tls) = https("h2-curl", &["--interval-ms", "100"]);
    let ca = ca.as_os_str();
    let plain = |path: &str| format!("http://{}{path}", server.addr);
    let secure = |path: &str| format!("https://{tls}{path}");
    let fmt = OsStr::new("%{http_version} %{response_code}");
    for (mode, base) in [
        ("--http2", &secure as &dyn Fn(&str) -> String),
        ("--http2-prior-knowledge", &plain),
    ] {
        for (path, extra) in [
            ("/healthz", &[][..]),
            ("/", &[][..]),
            ("/metrics", &[][..]),
            ("/publish", &["-d", "topic=t&data=by-curl"][..]),
            (
                "/.well-known/mercure",
                &["-d", "topic=t&data=by-curl-as-mercure"][..],
            ),
        ] {
            let url = base(path);
            let mut args: Vec<&OsStr> = vec!["-sS".as_ref(), "--max-time".as_ref(), "10".as_ref()];
            args.extend([OsStr::new(mode), "--cacert".as_ref(), ca, "-o".as_ref()]);
            args.extend(["/dev/null".as_ref(), "-w".as_ref(), fmt]);
            args.extend(extra.iter().map(OsStr::new));
            args.push(url.as_ref());
            let (code, out) = run("curl", &args);
            assert_eq!((code, out.as_str()), (0, "2 200"), "curl {mode} {path}");
        }
        // A stream: the clock's first frames, cut by --max-time (exit 28).
        let url = base("/sse");
        let args: Vec<&OsStr> = vec![
            "-sN".as_ref(),
            mode.as_ref(),
            "--cacert".as_ref(),
            ca,
            "--max-time".as_ref(),
            "1".as_ref(),
            url.as_ref(),
        ];
        let (code, out) = run("curl", &args);
        assert_eq!(code, 28, "{out}");
        let frames = clock_frames(&out);
        assert!(frames.len() >= 3, "{out:?}");
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                f,
                &format!(
                    "event:sseEvent\nid:{i}\nretry: 30000\ndata: {{\"content\":\"<time>\"}}\n\n"
                )
            );
        }
    }
    // Each request its own connection, each over h2: 2 x (5 + 1).
    assert_eq!(server.metric("sse_h2_connections_total"), 12.0);
}

#[test]
fn nghttp_gets_the_page_its_files_and_many_requests_on_one_connection() {
    if !h2_tools() {
        return;
    }
    let (_dir, _ca, server, tls) = https("h2-nghttp", &[]);
    for base in [format!("http://{}", server.addr), format!("https://{tls}")] {
        let before = server.metric("sse_h2_connections_total");
        // -a: the page and the files it links (style, scripts), on the same connection.
        let page = format!("{base}/");
        let (code, out) = run(
            "nghttp",
            &["-n".as_ref(), "-a".as_ref(), "-s".as_ref(), page.as_ref()],
        );
        assert_eq!(code, 0, "{out}");
        let rows = stat_rows(&out);
        for path in ["/", "/style.css", "/app.js", "/hub.js", "/i18n.js"] {
            assert!(
                rows.iter().any(|(c, p)| *c == 200 && p == path),
                "{path}: {out}"
            );
        }
        assert!(rows.iter().all(|(c, _)| *c == 200), "{out}");
        // -m 50: the same request 50 times, concurrently, as 50 streams.
        let health = format!("{base}/healthz");
        let (code, out) = run(
            "nghttp",
            &[
                "-n".as_ref(),
                "-s".as_ref(),
                "-m".as_ref(),
                "50".as_ref(),
                health.as_ref(),
            ],
        );
        assert_eq!(code, 0, "{out}");
        let rows = stat_rows(&out);
        assert_eq!(rows.len(), 50, "{out}");
        assert!(
            rows.iter().all(|(c, p)| *c == 200 && p == "/healthz"),
            "{out}"
        );
        assert_eq!(
            server.metric("sse_h2_connections_total") - before,
            2.0,
            "{base}"
        );
    }
}

/// The (status, path) rows of `nghttp -s`'s table.
fn stat_rows(out: &str) -> Vec<(u16, String)> {
    out.lines()
        .skip_while(|l| !l.starts_with("id "))
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // id responseEnd requestStart process code size path
            Some((cols.get(4)?.parse().ok()?, cols.get(6)?.to_string()))
        })
        .collect()
}

#[test]
fn h2load_1000_requests_on_10_connections_of_10_streams_all_200() {
    if !h2_tools() {
        return;
    }
    let (_dir, _ca, server, tls) = https("h2-h2load", &[]);
    for base in [format!("http://{}", server.addr), format!("https://{tls}")] {
        let before = server.metric("sse_h2_connections_total");
        let url = format!("{base}/favicon.svg");
        let args = ["-n1000", "-c10", "-m10"].map(OsStr::new);
        let mut args = args.to_vec();
        args.push(url.as_ref());
        let (code, out) = run("h2load", &args);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"),
            "{out}"
        );
        assert!(
            out.contains("status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx"),
            "{out}"
        );
        if base.starts_with("https") {
            assert!(out.contains("Application protocol: h2"), "{out}");
        }
        assert_eq!(
            server.metric("sse_h2_connections_total") - before,
            10.0,
            "{base}"
        );
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TABS: usize = 12;

/// Held by each browser test for its whole run: two Chromiums at once would compete for the
/// machine's cores.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the browser is installed; panics if it is not and `REQUIRE_BROWSER=1`.
fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let why = "the browser test needs /usr/bin/chromium and /usr/bin/chromedriver \
               (apt-get install chromium chromium-driver)";
    if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("REQUIRE_BROWSER=1 but {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n************************************************************\n\
         SKIPPED: {why}.\nSet REQUIRE_BROWSER=1 to make this a failure.\n\
         ************************************************************\n"
    );
    false
}

/// The base64 SHA-256 of a certificate's SubjectPublicKeyInfo (what
/// `--ignore-certificate-errors-spki-list` takes): `openssl` prints the public key as PEM,
/// whose body is that DER.
fn spki_sha256(cert: &Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let (code, pem) = run(
        "openssl",
        &[
            "x509".as_ref(),
            "-in".as_ref(),
            cert.as_os_str(),
            "-pubkey".as_ref(),
            "-noout".as_ref(),
        ],
    );
    assert_eq!(code, 0, "{pem}");
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der))
}

/// A page that opens two event streams of its own (no sharing between tabs: each tab is
/// its own pair of subscriptions, as any app that points EventSource at the server).
const TAB_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>tab</title>
<script>
  const tab = new URLSearchParams(location.search).get("tab");
  window.got = { a: [], b: [] };
  window.open_ = { a: false, b: false };
  for (const s of ["a", "b"]) {
    const es = new EventSource(`/sse?topic=all&topic=tab${tab}-${s}`);
    es.onopen = () => { window.open_[s] = true; };
    es.onmessage = (e) => window.got[s].push(e.data);
  }
</script>
"#;

/// A server on the test CA serving `TAB_PAGE`, and Chromium (pinned to its certificate, plus
/// `extra` switches) with the first tab on the page, which opens the other tabs. The browser
/// must live no longer than the directory.
fn twelve_tabs(tag: &str, extra: &[&str]) -> (TempDir, Server, SocketAddr, webdriver::Browser) {
    let dir = TempDir::new(tag);
    let pki = Pki::make(&dir.0, tag, KeyKind::Ecdsa);
    let www = dir.path("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), TAB_PAGE).unwrap();
    let (server, tls) = Server::start_tls(&pki.cert, &pki.key, &["--www", www.to_str().unwrap()]);
    let mut args = vec![format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_sha256(&pki.cert)
    )];
    args.extend(extra.iter().map(|s| s.to_string()));
    let b = webdriver::Browser::start_with(
        CHROMEDRIVER,
        CHROMIUM,
        &webdriver::Options {
            args,
            no_preconnect: true,
            ..Default::default()
        },
    );
    b.goto(&format!("https://localhost:{}/?tab=0", tls.port()));
    // The other tabs, opened by the page (not awaited: over HTTP/1.1 their pages may never
    // load).
    b.exec(
        "const n = arguments[0]; setTimeout(() => { for (let i = 1; i < n; i++) \
           window.open(`/?tab=${i}`, `tab${i}`, 'noopener'); }, 0);",
        serde_json::json!([TABS]),
    );
    (dir, server, tls, b)
}

/// Real Chromium, 12 tabs of a page with 2 EventSources each, over HTTPS with a certificate
/// from the test's CA: all 24 streams are live at once, on ONE connection as the server counts
/// it (h2 by ALPN), and an event published once reaches all 24.
#[test]
fn chromium_12_tabs_of_2_streams_share_one_h2_connection() {
    if !browser_installed() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, server, _tls, b) = twelve_tabs("h2-chromium", &[]);
    let streams = 2 * TABS;
    let open = server.wait_metric("sse_streams_open", streams as f64, WAIT);
    assert_eq!(open, streams as f64);
    assert_eq!(h2_counts(&server, "tls"), (1.0, 1.0, streams as f64));
    // And no other connection on the TLS port (an HTTP/1.1 one, a spare).
    assert_eq!(server.metric("sse_tls_connections_open"), 1.0);
    let handles = b.cmd("GET", "/window/handles", None);
    let handles: Vec<String> = serde_json::from_value(handles).unwrap();
    assert_eq!(handles.len(), TABS);
    let id = server.publish("all", "to-every-tab");
    assert!(!id.is_empty());
    for h in &handles {
        b.switch_to(h);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let got = b.exec("return window.got", serde_json::json!([]));
            if got == serde_json::json!({"a": ["to-every-tab"], "b": ["to-every-tab"]}) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "tab {h}: {got}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The same 12 tabs with HTTP/2 turned off in Chromium: HTTP/1.1 over TLS, at most 6
/// connections to the origin, so only 6 streams ever open and the other tabs stall.
#[test]
fn chromium_12_tabs_over_http1_stall_at_6_connections() {
    if !browser_installed() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, server, _tls, _b) = twelve_tabs("h1-chromium", &["--disable-http2"]);
    server.wait_metric("sse_streams_open", 6.0, WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.metric("sse_streams_open"), 6.0);
    assert_eq!(server.metric("sse_h2_connections_open"), 0.0);
    assert_eq!(
        server.metric("sse_connections_open_by_protocol{proto=\"http1\",transport=\"tls\"}"),
        6.0
    );
}

#[test]
fn python_h2_head_answers_end_with_their_headers_and_carry_no_data() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = h2frames(server.addr, None, "head", &[]);
    let seen = finish(&mut c);
    for (path, len) in [("/", None), ("/healthz", Some("3"))] {
        let got = &get(&seen, "head")[path];
        assert_eq!(got["data"], 0, "{path}: {got}");
        assert_eq!(got["ended"], true, "{path}: {got}");
        let headers: Vec<(String, String)> =
            serde_json::from_value(got["headers"].clone()).unwrap();
        assert_eq!(headers[0], (":status".into(), "200".into()), "{path}");
        // The length of what a GET would get (RFC 9110 9.3.2).
        let cl = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.as_str());
        match len {
            Some(n) => assert_eq!(cl, Some(n), "{path}"),
            None => assert!(cl.is_some_and(|v| v.parse::<u64>().unwrap() > 0), "{path}"),
        }
    }
}

#[test]
fn python_h2_a_publish_whose_body_spans_three_data_frames_is_stored_whole() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&[]);
    let mut sub = server.subscribe("topic=t", "");
    let mut c = h2frames(server.addr, None, "publish", &[]);
    let seen = finish(&mut c);
    assert_eq!(get(&seen, "status"), "200", "{seen:?}");
    let id = get(&seen, "body").as_str().unwrap().trim().to_owned();
    let events = sub.take(1, WAIT);
    assert_eq!(events[0].id, id);
    assert_eq!(events[0].data, "x".repeat(3000));
}

/// The malformed requests of `set` (`h2frames.py malformed`), on h2c and over TLS: each is
/// refused (RST_STREAM PROTOCOL_ERROR, or a 4xx answer), none is routed as if well-formed
/// (nothing is published), and the connection goes on; `cases` of them.
fn malformed_are_refused(set: &str, cases: usize) {
    let (_dir, ca, server, tls) = https("h2-malformed", &[]);
    for (addr, ca) in [(server.addr, None), (tls, Some(ca.as_path()))] {
        let before = server.metric("sse_hub_publishes_total");
        let mut c = h2frames(addr, ca, "malformed", &[&format!("set={set}")]);
        let seen = finish(&mut c);
        let answers = get(&seen, "malformed").as_object().unwrap();
        assert_eq!(answers.len(), cases, "{seen:?}");
        for (name, a) in answers {
            let refused =
                a["reset"] == 1 || a["status"].as_str().is_some_and(|s| s.starts_with('4'));
            assert!(refused, "{name}: {a} ({seen:?})");
        }
        assert!(get(&seen, "goaway").is_null(), "{seen:?}");
        assert_eq!(get(&seen, "status"), "200", "{seen:?}");
        assert_eq!(
            server.metric("sse_hub_publishes_total"),
            before,
            "a malformed publish was stored"
        );
    }
}

/// RFC 9113 8.2 and 8.3: uppercase field names, connection-specific fields, a `te` other
/// than `trailers`, and missing, repeated, unknown or misplaced pseudo-fields.
#[test]
fn python_h2_requests_with_malformed_fields_are_refused_and_the_connection_goes_on() {
    if !clients_installed() {
        return;
    }
    malformed_are_refused("fields", 7);
}

/// RFC 9113 8.1.1: a `content-length` above or below the DATA's total.
#[test]
fn python_h2_a_content_length_that_is_not_the_data_length_is_refused() {
    if !clients_installed() {
        return;
    }
    malformed_are_refused("length", 2);
}
