//! What real client libraries make of the server's streams: Python's httpx-sse and Node's
//! `eventsource` package, each run as a child process on a real stream, must dispatch exactly
//! the published events, never an empty `message` for a heartbeat, for the `retry:` a stopping
//! server sends, or for the `retry:` of a refused stream.
//!
//! httpx-sse is loose: once it has seen an `id`, any blank line becomes an event (with empty
//! data). So the heartbeat is a comment line alone (`:\n`) and the `retry:` a line alone; these
//! tests caught the old `:\n\n` and `retry: N\n\n`.
//!
//! The clients are installed on first use, from their registries, into `tests/clients/python`
//! (pip, pinned in `tests/clients/requirements.txt`) and `tests/clients/node_modules` (npm, from
//! `tests/clients/package-lock.json`); both are ignored by git. Where `python3`, `node` or the
//! registries are missing the tests say so loudly and pass, unless `REQUIRE_CLIENTS=1` (CI).

mod common;

use common::clients::{clients_installed, Client};
use common::pki::{KeyKind, Pki};
use common::{Server, TempDir};
use std::time::Duration;

#[test]
fn heartbeats_and_the_shutdown_retry_are_no_events_to_httpx_sse_or_node_eventsource() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--heartbeat-ms", "1000", "--shutdown-grace-ms", "2000"]);
    let url = format!("http://{}/sse?topic=t", server.addr);
    // A raw subscriber beside them, to see the bytes the clients were given.
    let mut raw = server.subscribe("topic=t", "");
    let mut clients = [
        Client::start("httpx-sse", &url),
        Client::start("eventsource", &url),
    ];
    for c in &mut clients {
        c.wait_for("open", Duration::from_secs(15));
    }
    let hello = server.publish("t", "hello");
    // Heartbeats while the stream is idle (at least one: the deadline is kept in whole
    // seconds of the loop's clock, so a 1 s heartbeat comes 1 to 2 s after the last write).
    std::thread::sleep(Duration::from_millis(3_200));
    server.publish("t", "bye");
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    for c in &mut clients {
        c.wait_for("end", Duration::from_secs(10));
    }
    for c in &clients {
        assert_eq!(c.datas(), ["hello", "bye"], "{}: {:?}", c.name, c.seen);
    }
    assert!(raw.read_to_close(Duration::from_secs(5)), "{}", raw.text());
    let body = &raw.text();
    let after_hello = body
        .split_once(&format!("id: {hello}\ndata: hello\n\n"))
        .unwrap_or_else(|| panic!("no hello frame in {body:?}"))
        .1;
    let (beats, rest) = after_hello
        .split_once("id: ")
        .unwrap_or_else(|| panic!("no bye frame in {after_hello:?}"));
    assert!(
        !beats.is_empty() && beats.as_bytes().chunks(2).all(|c| c == b":\n"),
        "between two events only heartbeat lines, each `:` alone: {beats:?}"
    );
    let retry = rest
        .split_once("data: bye\n\n")
        .unwrap_or_else(|| panic!("no bye frame in {rest:?}"))
        .1;
    assert!(
        retry.starts_with("retry: ") && retry.ends_with('\n') && !retry.ends_with("\n\n"),
        "the shutdown retry: is a line alone: {retry:?}"
    );
}

#[test]
fn a_refused_stream_is_no_event_to_httpx_sse_or_node_eventsource() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--max-streams", "1"]);
    let _hold = common::open(server.addr, "/sse", "");
    server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(5));
    let url = format!("http://{}/sse", server.addr);
    for name in ["httpx-sse", "eventsource"] {
        let mut c = Client::start(name, &url);
        c.wait_for("end", Duration::from_secs(15));
        assert!(c.datas().is_empty(), "{name}: {:?}", c.seen);
    }
    assert!(server.metric("sse_streams_rejected_total") >= 2.0);
}

/// Node's `eventsource` package (trusting the test CA through `NODE_EXTRA_CA_CERTS`) and
/// httpx-sse (through an `ssl` context on the CA) read a topic over HTTPS while Node's `https`
/// module (its `ca` option) publishes to it: each dispatches exactly the published events, with
/// the ids the publishes were answered. The same clients without the CA never open: the chain
/// is checked, not skipped.
#[test]
fn node_eventsource_and_httpx_sse_get_exactly_the_published_events_over_https() {
    if !clients_installed() {
        return;
    }
    let dir = TempDir::new("https-clients");
    let pki = Pki::make(&dir.0, "clients", KeyKind::Ecdsa);
    let (server, tls) = Server::start_tls(&pki.cert, &pki.key, &[]);
    let base = format!("https://{tls}");
    let url = format!("{base}/sse?topic=t");
    let ca = pki.ca.as_os_str();
    let mut clients = [
        Client::start_with("httpx-sse", &url, &[("SSE_CA", ca)]),
        Client::start_with("eventsource", &url, &[("NODE_EXTRA_CA_CERTS", ca)]),
    ];
    let mut untrusting = [
        Client::start("httpx-sse", &url),
        Client::start("eventsource", &url),
    ];
    for c in &mut clients {
        c.wait_for("open", Duration::from_secs(15));
    }
    let publish = |data: &str| {
        let mut p = Client::script(
            "node https",
            "pub.mjs",
            &[base.as_ref(), ca, "t".as_ref(), data.as_ref()],
            &[],
        );
        let out = p.wait_exit(Duration::from_secs(15)).to_vec();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["status"], 200, "{out:?}");
        out[0]["body"].as_str().unwrap().trim().to_owned()
    };
    let ids = [publish("one"), publish("two")];
    assert!(!ids[0].is_empty() && ids[0] != ids[1], "{ids:?}");
    server.signal("TERM");
    for c in &mut clients {
        c.wait_for("end", Duration::from_secs(10));
        assert_eq!(c.datas(), ["one", "two"], "{}: {:?}", c.name, c.seen);
        let got: Vec<&str> = c
            .seen
            .iter()
            .filter(|v| v.get("event").is_some())
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, ids, "{}: {:?}", c.name, c.seen);
    }
    for c in &mut untrusting {
        c.wait_for("end", Duration::from_secs(10));
        assert!(
            c.seen
                .iter()
                .all(|v| v.get("open").is_none() && v.get("event").is_none()),
            "{} opened a stream without trusting the CA: {:?}",
            c.name,
            c.seen
        );
        let error = c.seen.last().unwrap()["error"].to_string().to_lowercase();
        assert!(error.contains("cert"), "{}: {:?}", c.name, c.seen);
    }
}

/// Node's `eventsource` package over HTTPS, dropped by the server (stopped), reconnects by
/// itself and resumes with `Last-Event-ID`: it gets the event published while it was away (by
/// a server on the same data dir but other ports, so no reconnect could have caught it live),
/// then the next live one, each once.
#[test]
fn node_eventsource_resumes_over_https_with_last_event_id_after_the_server_drops_it() {
    if !clients_installed() {
        return;
    }
    let dir = TempDir::new("https-resume");
    let pki = Pki::make(&dir.0, "resume", KeyKind::Ecdsa);
    let data = dir.path("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.to_str().unwrap();
    let args = ["--data-dir", data, "--reconnect-ms", "400"];
    let (mut first, tls) = Server::start_tls(&pki.cert, &pki.key, &args);
    let url = format!("https://{tls}/sse?topic=t");
    let mut c = Client::start_with(
        "eventsource",
        &url,
        &[
            ("NODE_EXTRA_CA_CERTS", pki.ca.as_os_str()),
            ("SSE_RECONNECT", "1".as_ref()),
        ],
    );
    c.wait_for("open", Duration::from_secs(15));
    let one = first.publish("t", "one");
    c.wait_until(Duration::from_secs(10), |seen| {
        seen.iter().any(|v| v.get("data").is_some())
    });
    let plain_port = first.addr.port();
    first.signal("TERM");
    assert!(first.child.wait().unwrap().success());
    c.wait_for("error", Duration::from_secs(10));
    // Away: another server on the same data dir, on ports the client does not know.
    let (between, _) = Server::start_tls(&pki.cert, &pki.key, &args);
    let two = between.publish("t", "two");
    drop(between);
    // The same ports again (a later flag wins over the helper's `--port 0 --tls-port 0`).
    let (plain_port, tls_port) = (plain_port.to_string(), tls.port().to_string());
    let mut again_args = args.to_vec();
    again_args.extend(["--port", &plain_port, "--tls-port", &tls_port]);
    let (again, _) = Server::start_tls(&pki.cert, &pki.key, &again_args);
    again.wait_metric("sse_streams_open", 1.0, Duration::from_secs(15));
    let three = again.publish("t", "three");
    c.wait_until(Duration::from_secs(10), |seen| {
        seen.iter().filter(|v| v.get("event").is_some()).count() >= 3
    });
    c.read_for(Duration::from_millis(300));
    assert_eq!(c.datas(), ["one", "two", "three"], "{:?}", c.seen);
    let ids: Vec<&str> = c
        .seen
        .iter()
        .filter_map(|v| v.get("event").and(v["id"].as_str()))
        .collect();
    assert_eq!(ids, [one, two, three], "{:?}", c.seen);
}
