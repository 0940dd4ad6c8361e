//! Nothing open by accident, over real sockets: a request forwarded by a proxy is never trusted
//! as a loopback client (tokenless loopback publishing does not extend to what a proxy on this
//! machine forwards), and a publish from a web page is accepted only from the server's own
//! origin or a `--cors-origin` one (CSRF). The same rules through real nginx are in
//! `tests/nginx.rs`.

mod common;

use common::{Publish, Response, Server, FORM};

/// `POST /publish` of a form event on `topic`, with `extra` header lines (each ending CRLF).
fn publish(server: &Server, topic: &str, extra: &str) -> Response {
    Publish::raw(
        &format!("Content-Type: {FORM}\r\n{extra}"),
        &format!("topic={topic}&data=x"),
    )
    .host(&server.addr.to_string())
    .send(server.addr)
}

fn published(server: &Server) -> f64 {
    server.metric("sse_hub_publishes_total")
}

#[test]
fn a_forwarded_request_is_no_loopback_client() {
    let server = Server::start(&[]);
    // Straight from loopback: open, as before.
    let r = publish(&server, "t", "");
    assert_eq!(r.status, 200, "{}", r.text());
    for proxy in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "Forwarded: for=203.0.113.9;proto=https\r\n",
        "X-Real-IP: 203.0.113.9\r\n",
        "X-Forwarded-Host: example.com\r\n",
    ] {
        let before = published(&server);
        let r = publish(&server, "t", proxy);
        assert_eq!(r.status, 401, "{proxy:?}: {} {}", r.head, r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let text = r.text();
        assert!(
            text.contains("proxy") && text.contains("--publish-token") && text.lines().count() == 1,
            "{proxy:?}: a clear one-line reason, not {text:?}"
        );
        assert_eq!(published(&server), before, "{proxy:?} was published");
    }

    // With a token, a forwarded request publishes with it, and only with it.
    let token = "0123456789abcdef0123456789abcdef";
    let server = Server::start(&["--publish-token", token]);
    let fwd = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(publish(&server, "t", fwd).status, 401);
    let bearer = format!("{fwd}Authorization: Bearer {token}\r\n");
    let r = publish(&server, "t", &bearer);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_cross_site_form_cannot_publish() {
    let server = Server::start(&[]);
    let before = published(&server);
    // What a form on another site makes a browser send (a "simple" request: no preflight).
    let r = publish(
        &server,
        "t",
        "Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\n",
    );
    assert_eq!(r.status, 403, "{} {}", r.head, r.text());
    let text = r.text();
    assert!(
        text.contains("\"https://evil.example\"") && text.lines().count() == 1,
        "the 403 names the origin: {text:?}"
    );
    // A sandboxed frame, a data: page, a file: page: the opaque origin.
    let r = publish(
        &server,
        "t",
        "Origin: null\r\nSec-Fetch-Site: cross-site\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("\"null\""), "{}", r.text());
    // The browser says cross-site but sends no Origin.
    let r = publish(&server, "t", "Sec-Fetch-Site: cross-site\r\n");
    assert_eq!(r.status, 403, "{}", r.text());
    let r = publish(&server, "t", "Sec-Fetch-Site: same-site\r\n");
    assert_eq!(r.status, 403, "{}", r.text());
    // Another port of this host is another origin; so is https on this one.
    let port = server.addr.port();
    for other in [
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let r = publish(&server, "t", &format!("Origin: {other}\r\n"));
        assert_eq!(r.status, 403, "{other}: {}", r.text());
    }
    assert_eq!(published(&server), before, "a refused publish was stored");
    assert_eq!(
        server.metric("sse_hub_publishes_rejected_total{reason=\"forbidden\"}"),
        7.0
    );
}

#[test]
fn the_servers_own_origin_and_clients_without_origin_publish() {
    let server = Server::start(&[]);
    let own = format!("http://{}", server.addr);
    for extra in [
        // The page's own fetch (Chromium sends Origin on every POST).
        format!("Origin: {own}\r\nSec-Fetch-Site: same-origin\r\n"),
        // Without Sec-Fetch-Site (older browsers): Origin against Host.
        format!("Origin: {own}\r\n"),
        // The browser's word alone (a proxy that rewrites Host in front).
        "Origin: http://example.com\r\nSec-Fetch-Site: same-origin\r\n".to_string(),
        // curl, a backend: no Origin at all.
        String::new(),
        "Sec-Fetch-Site: none\r\n".to_string(),
    ] {
        let r = publish(&server, "t", &extra);
        assert_eq!(r.status, 200, "{extra:?}: {}", r.text());
    }
    // Behind a TLS-terminating proxy: the origin is https, as X-Forwarded-Proto says (a token
    // is then needed: the request is forwarded).
    let token = "0123456789abcdef0123456789abcdef";
    let server = Server::start(&["--publish-token", token]);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = publish(
        &server,
        "t",
        &format!(
            "{auth}Origin: https://{}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.9\r\n",
            server.addr
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A token does not make a foreign page's request acceptable.
    let r = publish(
        &server,
        "t",
        &format!("{auth}Origin: https://evil.example\r\n"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn a_cors_origin_may_publish_from_a_browser() {
    let server = Server::start(&[
        "--cors-origin",
        "https://app.example",
        "--cors-origin",
        "https://b.example, http://c.example:8080",
    ]);
    for o in [
        "https://app.example",
        "https://b.example",
        "http://c.example:8080",
    ] {
        let r = publish(
            &server,
            "t",
            &format!("Origin: {o}\r\nSec-Fetch-Site: cross-site\r\n"),
        );
        assert_eq!(r.status, 200, "{o}: {}", r.text());
        // The answer names the origin that asked, so each of them can read it.
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(o),
            "{}",
            r.head
        );
    }
    for o in ["https://evil.example", "null", "http://c.example"] {
        let r = publish(&server, "t", &format!("Origin: {o}\r\n"));
        assert_eq!(r.status, 403, "{o}: {}", r.text());
        assert!(r.text().contains(&format!("{o:?}")), "{}", r.text());
        assert!(r.text().contains("https://app.example"), "{}", r.text());
    }
}

#[test]
fn a_cors_origin_must_be_an_origin() {
    for bad in [
        "https://app.example/",
        "app.example",
        "https://a.example/path",
        "*",
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"))
            .args(["--cors-origin", bad, "--port", "0", "--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Refused at once; a server that accepted it would run until killed.
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > std::time::Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{bad} accepted");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains("--cors-origin") && err.contains(bad), "{err}");
    }
}

#[test]
fn a_foreign_origin_is_refused_before_the_body() {
    // With `Expect: 100-continue` the client waits for the server's word before sending the
    // body: a foreign page's publish gets its 403 at once, never a 100.
    let server = Server::start(&[]);
    let mut s = server.connect();
    std::io::Write::write_all(
        &mut s,
        b"POST /publish HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\
          Expect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 16\r\n\r\n",
    )
    .unwrap();
    let r = common::read_response(&mut s);
    assert_eq!(r.status, 403, "{} {}", r.head, r.text());
    assert!(
        r.text().contains("\"https://evil.example\""),
        "{}",
        r.text()
    );
}
