//! HTTPS in the server itself (`--tls-cert`, `--tls-key`, `--tls-port`), over real sockets,
//! with certificates made at test time by `openssl` (a test CA and server certificates with
//! RSA, ECDSA and Ed25519 keys): curl against the routes, a rustls client for what must be
//! seen byte by byte (the clock's bytes, `close_notify` on drain, a client that never reads),
//! the handshake's deadline, bytes that are not TLS, SIGHUP reload, bad files at start-up.

mod common;

use common::pki::{KeyKind, Pki};
use common::{Server, TempDir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The start most tests share: a test PKI (`s`, ECDSA P-256) in a fresh directory and a server
/// with plain HTTP and HTTPS on it; (the directory, the CA to trust, the server, the HTTPS
/// address). Dropped in reverse: the server stops before its directory is removed.
fn https(tag: &str, args: &[&str]) -> (TempDir, PathBuf, Server, SocketAddr) {
    let dir = TempDir::new(&format!("tls-{tag}"));
    let pki = Pki::make(&dir.0, "s", KeyKind::Ecdsa);
    let (server, tls) = Server::start_tls(&pki.cert, &pki.key, args);
    (dir, pki.ca, server, tls)
}

/// curl over HTTPS trusting `ca`; returns (exit code, body).
fn curl(ca: &Path, url: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection (handshake done) with read and write timeouts.
fn tls_connect(addr: SocketAddr, ca: &Path) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        client_config(ca),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

/// Reads from `s` until `pred` holds on everything read, or the timeout.
fn read_until(s: &mut impl Read, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !pred(&got) && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

/// Complete clock frames in bytes read after the head.
fn body_frames(b: &[u8]) -> usize {
    String::from_utf8_lossy(b).matches("\n\n").count()
}

/// The date and the frame's time blanked: what may differ between two reads of the clock.
fn normalise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split_inclusive('\n')
        .map(|l| {
            if l.starts_with("Date: ") {
                "Date: <date>\r\n".to_string()
            } else if let Some(i) = l.find("\"content\":\"") {
                format!("{}<time>\"}}\n", &l[..i + 11])
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn curl_gets_every_route_over_https_with_rsa_ecdsa_and_ed25519() {
    let dir = TempDir::new("tls-kinds");
    for (name, kind) in [
        ("rsa", KeyKind::Rsa),
        ("ecdsa", KeyKind::Ecdsa),
        ("ed25519", KeyKind::Ed25519),
    ] {
        let Pki { ca, cert, key } = Pki::make(&dir.0, name, kind);
        let (server, tls) = Server::start_tls(&cert, &key, &["--interval-ms", "100"]);
        let base = format!("https://localhost:{}", tls.port());
        let res = |extra: &[&str]| {
            ["--resolve", &format!("localhost:{}:127.0.0.1", tls.port())]
                .iter()
                .map(|s| s.to_string())
                .chain(extra.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>()
        };
        let args = res(&[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (rc, body) = curl(&ca, &format!("{base}/healthz"), &args);
        assert_eq!((rc, body.trim()), (0, "ok"), "{name}");
        // TLS 1.2 as well as 1.3.
        let mut a12 = args.clone();
        a12.extend_from_slice(&["--tlsv1.2", "--tls-max", "1.2"]);
        let (rc, body) = curl(&ca, &format!("{base}/healthz"), &a12);
        assert_eq!((rc, body.trim()), (0, "ok"), "{name} over TLS 1.2");
        // The clock stream: three frames within the time.
        let mut sse = args.clone();
        sse.extend_from_slice(&["-N", "--max-time", "1"]);
        let (_, body) = curl(&ca, &format!("{base}/sse"), &sse);
        assert!(
            body.matches("event:sseEvent").count() >= 3,
            "{name}: {body}"
        );
        // A subscription gets what is published, both over HTTPS.
        let ca2 = ca.clone();
        let base2 = base.clone();
        let sub_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let sub = std::thread::spawn(move || {
            let mut a: Vec<&str> = sub_args.iter().map(String::as_str).collect();
            a.extend_from_slice(&["-N", "--max-time", "3"]);
            curl(&ca2, &format!("{base2}/sse?topic=news"), &a).1
        });
        server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(5));
        let mut pubs = args.clone();
        pubs.extend_from_slice(&["-X", "POST", "-d", "topic=news", "-d", "data=over-tls"]);
        let (rc, id) = curl(&ca, &format!("{base}/publish"), &pubs);
        assert_eq!(rc, 0, "{id}");
        let got = sub.join().unwrap();
        assert!(got.contains("data: over-tls"), "{name}: {got}");
        assert!(got.contains(&format!("id: {}", id.trim())), "{name}: {got}");
        assert!(server.metric("sse_tls_handshakes_total") >= 5.0);
        assert_eq!(server.metric("sse_tls_errors_total"), 0.0);
    }
}

#[test]
fn the_clock_bytes_over_tls_are_the_plain_bytes() {
    let (_dir, ca, server, tls) = https("bytes", &["--interval-ms", "50"]);
    let req = b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let three = |b: &[u8]| common::frames(b).len() >= 3;
    let mut plain = server.connect();
    plain.write_all(req).unwrap();
    let plain = read_until(&mut plain, Duration::from_secs(5), three);
    let mut s = tls_connect(tls, &ca);
    s.write_all(req).unwrap();
    let secure = read_until(&mut s, Duration::from_secs(5), three);
    let cut = |b: &[u8]| {
        let text = normalise(b);
        // Up to the end of the third frame.
        let mut end = 0;
        for _ in 0..4 {
            end += text[end..].find("\n\n").map_or(text.len() - end, |i| i + 2);
        }
        text[..end.min(text.len())].to_string()
    };
    assert_eq!(cut(&secure), cut(&plain));
    assert!(cut(&plain).contains("event:sseEvent"));
}

#[test]
fn a_slow_handshake_is_closed_at_the_head_deadline_and_streams_keep_ticking() {
    let (_dir, ca, server, tls) = https(
        "slowloris",
        &[
            "--interval-ms",
            "100",
            "--head-timeout-ms",
            "500",
            "--threads",
            "1",
        ],
    );
    let mut stream = tls_connect(tls, &ca);
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut stream, Duration::from_secs(5), |b| {
        !common::frames(b).is_empty()
    });
    // The first bytes of a ClientHello (a handshake record's header), then nothing.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(tls).unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.push(s);
    }
    let start = Instant::now();
    for s in &mut slow {
        let mut b = [0u8; 64];
        let n = s.read(&mut b).unwrap_or(0);
        assert_eq!(n, 0, "a stalled handshake gets nothing but the close");
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    assert!(server.metric("sse_timeouts_total{kind=\"head\"}") >= 5.0);
    // The stream went on meanwhile, at its pace.
    let more = read_until(&mut stream, Duration::from_secs(5), |b| body_frames(b) >= 5);
    assert!(body_frames(&more) >= 5);
}

#[test]
fn bytes_that_are_not_tls_are_closed_and_counted() {
    let (_dir, ca, server, tls) = https("garbage", &[]);
    for garbage in [
        &b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
        &[0xff; 300][..],
    ] {
        let mut s = TcpStream::connect(tls).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        let start = Instant::now();
        let got = read_until(&mut s, Duration::from_secs(5), |_| false);
        assert!(start.elapsed() < Duration::from_secs(2), "closed at once");
        assert!(
            !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
            "no plain answer on the TLS port"
        );
    }
    assert_eq!(server.metric("sse_tls_errors_total"), 3.0);
    // The server is fine: a real client is served.
    let (rc, body) = curl(
        &ca,
        &format!("https://localhost:{}/healthz", tls.port()),
        &["--resolve", &format!("localhost:{}:127.0.0.1", tls.port())],
    );
    assert_eq!((rc, body.trim()), (0, "ok"));
    assert_eq!(server.metric("sse_tls_connections_open"), 0.0);
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_streams() {
    let dir = TempDir::new("tls-reload");
    let a = Pki::make(&dir.0, "a", KeyKind::Ecdsa);
    let b = Pki::make(&dir.0, "b", KeyKind::Rsa);
    let cert = dir.path("live.pem");
    let key = dir.path("live.key");
    std::fs::copy(&a.cert, &cert).unwrap();
    std::fs::copy(&a.key, &key).unwrap();
    let (server, tls, log) = Server::start_tls_logged(&cert, &key, &["--interval-ms", "100"]);
    let (ca_a, ca_b) = (&a.ca, &b.ca);
    let resolve = format!("localhost:{}:127.0.0.1", tls.port());
    let url = format!("https://localhost:{}/healthz", tls.port());
    assert_eq!(curl(ca_a, &url, &["--resolve", &resolve]).0, 0);
    assert_ne!(
        curl(ca_b, &url, &["--resolve", &resolve]).0,
        0,
        "B not served yet"
    );
    let mut stream = tls_connect(tls, ca_a);
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut stream, Duration::from_secs(5), |b| {
        !common::frames(b).is_empty()
    });

    std::fs::copy(&b.cert, &cert).unwrap();
    std::fs::copy(&b.key, &key).unwrap();
    server.signal("HUP");
    let wait_log = |what: &str| {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(l) = log.recv_timeout(Duration::from_millis(100)) {
                if l.contains("sighup") && l.contains(what) {
                    return l;
                }
            }
        }
        panic!("no sighup line with {what:?}");
    };
    wait_log("reloaded");
    assert_eq!(
        curl(ca_b, &url, &["--resolve", &resolve]).0,
        0,
        "B served now"
    );
    assert_ne!(curl(ca_a, &url, &["--resolve", &resolve]).0, 0, "A no more");
    // The stream from before the reload goes on.
    let more = read_until(&mut stream, Duration::from_secs(5), |b| body_frames(b) >= 3);
    assert!(body_frames(&more) >= 3);

    // A bad pair (A's key with B's certificate) is refused and B stays.
    std::fs::copy(&a.key, &key).unwrap();
    server.signal("HUP");
    let line = wait_log("failed");
    assert!(line.contains("does not match"), "{line}");
    assert_eq!(
        curl(ca_b, &url, &["--resolve", &resolve]).0,
        0,
        "B still served"
    );
}

#[test]
fn bad_certificate_files_stop_the_start_with_one_line() {
    let dir = TempDir::new("tls-bad");
    Pki::make(&dir.0, "a", KeyKind::Ecdsa);
    Pki::make(&dir.0, "b", KeyKind::Ecdsa);
    std::fs::write(dir.path("junk.pem"), "not a certificate\n").unwrap();
    let p = |n: &str| dir.path(n).to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                p("missing.pem"),
                "--tls-key".into(),
                p("a.key"),
            ],
            "cannot read",
        ),
        (
            vec![
                "--tls-cert".into(),
                p("junk.pem"),
                "--tls-key".into(),
                p("a.key"),
            ],
            "no certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                p("a.pem"),
                "--tls-key".into(),
                p("junk.pem"),
            ],
            "no private key",
        ),
        (
            vec![
                "--tls-cert".into(),
                p("a.pem"),
                "--tls-key".into(),
                p("b.key"),
            ],
            "does not match",
        ),
        (vec!["--tls-cert".into(), p("a.pem")], "needs --tls-key"),
        (vec!["--tls-port".into(), "0".into()], "needs --tls-cert"),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sse-server"))
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(&args)
            .env("SSE_QUIET", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
}

#[test]
fn drain_over_tls_sends_retry_then_close_notify() {
    let (_dir, ca, server, tls) = https("drain", &["--interval-ms", "100"]);
    let mut s = tls_connect(tls, &ca);
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut s, Duration::from_secs(5), |b| {
        !common::frames(b).is_empty()
    });
    server.signal("TERM");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // rustls reports a close without `close_notify` as an error: Ok(0) proves it came.
    let clean = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                eprintln!("{e}");
                break false;
            }
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("retry: "), "{text}");
    assert!(clean, "the stream ends with close_notify");
}

#[test]
fn a_tls_client_that_never_reads_is_closed_by_the_stall_rule() {
    let (_dir, ca, server, tls) = https(
        "stall", // A small history, so that what the server holds is the stalled stream's, not the
        // publishes'.
        &[
            "--stall-timeout-ms",
            "1000",
            "--sndbuf",
            "8192",
            "--threads",
            "1",
            "--history-bytes",
            "1048576",
        ],
    );
    let mut s = tls_connect(tls, &ca);
    socket2::SockRef::from(&s.sock)
        .set_recv_buffer_size(4096)
        .unwrap();
    s.write_all(b"GET /sse?topic=big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut s, Duration::from_secs(5), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    });
    // The client stops reading; the publisher goes on.
    let data = "x".repeat(16 * 1024);
    let rss0 = server.rss_bytes();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5)
        && server.metric("sse_timeouts_total{kind=\"stall\"}") < 1.0
    {
        server.publish("big", &data);
    }
    assert_eq!(
        server.metric("sse_timeouts_total{kind=\"stall\"}"),
        1.0,
        "the stalled TLS stream is closed"
    );
    assert_eq!(server.metric("sse_streams_open"), 0.0);
    let grown = server.rss_bytes().saturating_sub(rss0);
    assert!(grown < 8 << 20, "memory grew by {grown} bytes");
}

#[test]
fn sse_load_measures_streams_over_https() {
    let (dir, ca, server, tls) = https("load", &["--interval-ms", "100"]);
    let out = Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .arg(format!("https://127.0.0.1:{}/sse", tls.port()))
        .args(["-c", "20", "-d", "2", "--json", "-q", "--tls-ca"])
        .arg(&ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["streams"]["established"], 20, "{text}");
    assert!(v["frames"].as_u64().unwrap() >= 20 * 10, "{text}");
    assert!(server.metric("sse_tls_handshakes_total") >= 20.0);
    // Without the CA it refuses to start; with the wrong CA no stream opens.
    let out = Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .arg(format!("https://127.0.0.1:{}/sse", tls.port()))
        .args(["-c", "1", "-d", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
    let other = Pki::make(&dir.0, "other", KeyKind::Ecdsa);
    let out = Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .arg(format!("https://127.0.0.1:{}/sse", tls.port()))
        .args(["-c", "2", "-d", "1", "--json", "-q", "--tls-ca"])
        .arg(&other.ca)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["streams"]["established"], 0);
}

/// TLS sessions live beside the slab, by slab key (a plain slot carries only a flag): with one
/// loop, plain and TLS connections take turns on the same keys, and each is served on its own
/// terms: a plain connection on a key a TLS one left gets plain bytes, a TLS connection on a
/// key a plain one left gets its own session, and streams of both kinds tick side by side.
#[test]
fn plain_and_tls_connections_reusing_slab_keys_keep_their_own_transport() {
    let (_dir, ca, server, tls) = https("keys", &["--interval-ms", "50", "--threads", "1"]);
    let req = b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let two = |b: &[u8]| common::frames(b).len() >= 2;
    for round in 0..3 {
        // Keys 0..=3 in turn TLS, plain, TLS, plain; then every other one is closed and its key
        // taken by the other kind.
        let mut a = tls_connect(tls, &ca);
        let mut b = server.connect();
        let mut c = tls_connect(tls, &ca);
        let mut d = server.connect();
        for s in [&mut a as &mut dyn Write, &mut b, &mut c, &mut d] {
            s.write_all(req).unwrap();
        }
        assert!(two(&read_until(&mut a, Duration::from_secs(5), two)));
        assert!(two(&read_until(&mut b, Duration::from_secs(5), two)));
        drop(a);
        drop(b);
        // Let the loop see both closes before the next accepts take their keys.
        let end = Instant::now() + Duration::from_secs(5);
        while server.metric("sse_streams_open") > 2.0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(server.metric("sse_streams_open"), 2.0, "round {round}");
        let mut plain = server.connect();
        plain.write_all(req).unwrap();
        let got = read_until(&mut plain, Duration::from_secs(5), two);
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
            "round {round}: plain bytes on a key a TLS connection left: {got:?}"
        );
        assert!(two(&got));
        let mut secure = tls_connect(tls, &ca);
        secure.write_all(req).unwrap();
        let got = read_until(&mut secure, Duration::from_secs(5), two);
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        assert!(two(&got));
        // The older streams of both kinds went on meanwhile.
        assert!(two(&read_until(&mut c, Duration::from_secs(5), two)));
        assert!(two(&read_until(&mut d, Duration::from_secs(5), two)));
    }
    let end = Instant::now() + Duration::from_secs(5);
    while server.metric("sse_tls_connections_open") > 0.0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.metric("sse_tls_connections_open"), 0.0);
}

/// An `openssl s_client` run against `addr`: its stdin kept open (requests written to it),
/// its stdout and stderr collected by threads. Killed when dropped.
struct SClient {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl SClient {
    fn start(addr: SocketAddr, ca: &Path, args: &[&str]) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string()])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(ca)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl s_client runs");
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let readers: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut r in readers {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        SClient {
            stdin: child.stdin.take(),
            child,
            out,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until `pred` holds on everything s_client printed; returns it either way.
    fn wait(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + within;
        loop {
            let t = self.text();
            if pred(&t) || Instant::now() >= end {
                return t;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether s_client exited within `within`.
    fn exited(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenSSL's client streams over every suite the server has: TLS 1.3's three
/// (`-ciphersuites`) and TLS 1.2's ECDHE suites with AES-128-GCM, AES-256-GCM and
/// ChaCha20-Poly1305 for ECDSA and RSA certificates (`-cipher`): the session's own record
/// layer, after the handshake, against a TLS stack nobody here wrote.
#[test]
fn openssl_streams_over_every_tls12_and_tls13_suite() {
    let dir = TempDir::new("tls-suites");
    let ec = Pki::make(&dir.0, "ec", KeyKind::Ecdsa);
    let rsa = Pki::make(&dir.0, "rsa", KeyKind::Rsa);
    for (pki, version, flag, suite) in [
        ("ec", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"),
        ("ec", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"),
        (
            "ec",
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        ("ec", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("ec", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("ec", "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ("rsa", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("rsa", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"),
        ("rsa", "-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"),
    ] {
        let pki = if pki == "ec" { &ec } else { &rsa };
        let (server, tls) = Server::start_tls(&pki.cert, &pki.key, &["--interval-ms", "100"]);
        let mut s = SClient::start(tls, &pki.ca, &[version, flag, suite, "-brief", "-ign_eof"]);
        // A request, then frames.
        s.send(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let text = s.wait(Duration::from_secs(10), |t| {
            t.matches("event:sseEvent").count() >= 3
        });
        assert!(
            text.contains(&format!("Ciphersuite: {suite}")),
            "{suite}: {text}"
        );
        assert!(
            text.matches("event:sseEvent").count() >= 3,
            "{suite}: {text}"
        );
        assert!(text.contains("HTTP/1.1 200 OK"), "{suite}: {text}");
        assert_eq!(server.metric("sse_tls_errors_total"), 0.0, "{suite}");
        drop(s);
        server.wait_metric("sse_tls_connections_open", 0.0, Duration::from_secs(5));
    }
}

/// A TLS 1.3 `KeyUpdate` (s_client's `k` command) is not honoured: the server ends the stream
/// with `close_notify` (s_client reads a clean close: "closed"), counts it, and its other
/// streams go on.
#[test]
fn a_key_update_from_openssl_ends_the_stream_cleanly() {
    let (_dir, ca, server, tls) = https("keyupdate", &["--interval-ms", "100"]);
    let mut other = tls_connect(tls, &ca);
    other
        .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut s = SClient::start(tls, &ca, &["-tls1_3"]);
    s.send(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let text = s.wait(Duration::from_secs(10), |t| t.contains("event:sseEvent"));
    assert!(text.contains("event:sseEvent"), "{text}");
    s.send(b"k\n");
    let text = s.wait(Duration::from_secs(5), |t| t.contains("\nclosed"));
    assert!(text.contains("KEYUPDATE"), "{text}");
    assert!(
        text.contains("\nclosed"),
        "s_client saw close_notify: {text}"
    );
    assert!(s.exited(Duration::from_secs(5)), "{text}");
    assert_eq!(server.metric("sse_tls_errors_total"), 1.0);
    // The other stream still ticks.
    let got = read_until(&mut other, Duration::from_secs(5), |b| {
        common::frames(b).len() >= 3
    });
    assert!(common::frames(&got).len() >= 3);
    assert_eq!(server.metric("sse_tls_connections_open"), 1.0);
}

/// A session resumes, by TLS 1.3 ticket and by TLS 1.2 session id (`-sess_out`, then
/// `-sess_in`), and the resumed session's records serve the request.
#[test]
fn openssl_resumes_over_tls12_and_tls13() {
    let (dir, ca, server, tls) = https("resume", &[]);
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = dir.path(&format!("sess{version}"));
        let sess = sess.to_str().unwrap();
        for (flag, want) in [("-sess_out", "New, "), ("-sess_in", "Reused, ")] {
            let mut s = SClient::start(tls, &ca, &[version, flag, sess, "-ign_eof"]);
            s.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            assert!(s.exited(Duration::from_secs(10)), "{version} {flag}");
            let text = s.wait(Duration::from_secs(1), |t| t.contains("\nok"));
            assert!(text.contains(want), "{version} {flag}: {text}");
            assert!(text.contains("\r\n\r\nok"), "{version} {flag}: {text}");
        }
    }
    assert_eq!(server.metric("sse_tls_handshakes_total"), 4.0);
    assert_eq!(server.metric("sse_tls_errors_total"), 0.0);
}
