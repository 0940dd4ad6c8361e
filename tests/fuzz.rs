//! Property tests: arbitrary and mutated bytes, split at arbitrary points, through the request
//! path (the parser, then a whole connection state machine). Nothing panics, every answer is a
//! well-formed response with a status this server knows, and input held stays under the limit.

use proptest::prelude::*;
use sse_server::app::testing::Env;
use sse_server::core::ctx::ConnConfig;
use sse_server::wire::http::{self, Limits};

const SEEDS: &[&[u8]] = &[
    b"GET /sse HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\nLast-Event-ID: 7\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"abc\"\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"POST /sse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
];

const KNOWN: [&str; 16] = [
    "200", "204", "304", "400", "401", "403", "404", "405", "408", "413", "414", "415", "431",
    "501", "503", "505",
];

/// Bytes from one of the seeds with random edits (flips, insertions, deletions), or raw noise.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        0..SEEDS.len(),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0..3u8), 0..12),
    )
        .prop_map(|(i, edits)| {
            let mut v = SEEDS[i].to_vec();
            for (pos, byte, kind) in edits {
                let p = pos as usize % (v.len() + 1);
                match kind {
                    0 if p < v.len() => v[p] = byte,
                    1 => v.insert(p, byte),
                    _ if p < v.len() => {
                        v.remove(p);
                    }
                    _ => {}
                }
            }
            v
        });
    prop_oneof![mutated, prop::collection::vec(any::<u8>(), 0..2048)]
}

/// Checks that `wire` is a sequence of responses, each starting with a known status line.
fn check_responses(wire: &[u8]) {
    let text = String::from_utf8_lossy(wire);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 "), "{text:?}");
    for part in text.split("HTTP/1.1 ").skip(1) {
        let code = &part[..3.min(part.len())];
        if part.contains("\r\n") && code.bytes().all(|b| b.is_ascii_digit()) {
            assert!(KNOWN.contains(&code), "unknown status {code} in {text:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(bytes in input()) {
        let limits = Limits::default();
        if let Ok(Some(req)) = http::parse(&bytes, &limits) {
            prop_assert!(req.head_len <= bytes.len());
            prop_assert!(req.path.starts_with('/'));
        }
    }

    #[test]
    fn connection_survives_any_input(bytes in input(), cuts in prop::collection::vec(any::<u16>(), 0..16)) {
        let cfg = ConnConfig { limits: Limits { max_head: 1024, max_target: 256, max_headers: 16 }, ..ConnConfig::default() };
        let mut env = Env::new(cfg, 4);
        let mut conn = env.conn();
        let mut points: Vec<usize> = cuts.iter().map(|&c| c as usize % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut wire = Vec::new();
        let mut fed = 0;
        for &end in &points {
            while fed < end {
                // Output first, as the loop does; then input only when the connection wants it.
                wire.extend(env.flush(&mut conn));
                if conn.is_closed() || !conn.wants_read() {
                    break;
                }
                let take = conn.read_limit(&env.cfg).min(end - fed);
                prop_assert!(take > 0, "a connection that wants to read has room");
                env.input(&mut conn, &bytes[fed..fed + take]);
                fed += take;
                prop_assert!(conn.buffered_input() <= env.cfg.limits.max_head + env.cfg.max_body);
                env.advance(1);
            }
        }
        wire.extend(env.flush(&mut conn));
        // Time passing never panics either, and always leaves a deadline or a close.
        for _ in 0..3 {
            if let Some(t) = conn.timeout() {
                env.advance(t.saturating_sub(env.now.ms));
                wire.extend(env.tick(&mut conn));
            }
        }
        prop_assert!(conn.is_closed() || conn.timeout().is_some());
        check_responses(&wire);
    }
}
