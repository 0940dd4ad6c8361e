//! Micro-benchmarks of the hot pieces: request parsing, frame encoding, the timing wheel at
//! 100k entries (arm, cancel, and one full interval of expire + re-arm), token
//! verification per subscribe (target: under 5 µs), and a publish matched against 10,000
//! distinct URI Template selectors (`selectors`: the loop's step that finds a new event's
//! subscribers, `LocalHub::audience`, with the pattern cache cold and warm; target: under 1 ms
//! at p99, printed beside criterion's figures from 2,000 timed publishes of each).
//!
//! `cargo bench --bench micro` (`-- selectors` for that one). Under `cargo test --all-targets`
//! each runs once as a smoke test.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sse_server::hub::history::{Hub, HubConfig, LocalHub, Publish};
use sse_server::hub::jwt::{self, Verifier};
use sse_server::hub::selector::Kind;
use sse_server::util::date::Dates;
use sse_server::util::timer::TimerWheel;
use sse_server::wire::frames;
use sse_server::wire::http::{self, Limits};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const BROWSER_HEAD: &[u8] = b"GET /sse HTTP/1.1\r\nHost: localhost:3000\r\nConnection: keep-alive\r\n\
Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 1234\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: zh-CN,zh;q=0.9,en;q=0.8\r\n\
Origin: http://localhost:3000\r\nReferer: http://localhost:3000/\r\n\r\n";

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(BROWSER_HEAD.len() as u64));
    g.bench_function("browser_sse_head", |b| {
        b.iter(|| http::parse(black_box(BROWSER_HEAD), &limits).map(|r| r.map(|r| r.head_len)))
    });
    let curl = b"GET /sse HTTP/1.1\r\nHost: localhost:3000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    g.bench_function("curl_sse_head", |b| {
        b.iter(|| http::parse(black_box(curl), &limits).map(|r| r.is_some()))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(256);
    let mut dates = Dates::new();
    let mut ms = 1_795_460_982_321i64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_same_ms", |b| {
        let iso = *dates.iso(ms);
        let mut id = 0u64;
        b.iter(|| {
            out.clear();
            frames::encode_frame(&mut out, black_box(id), &iso);
            id += 1;
            out.len()
        })
    });
    g.bench_function("frame_new_ms_each_time", |b| {
        let mut id = 0u64;
        b.iter(|| {
            ms += 1;
            out.clear();
            let iso = *dates.iso(black_box(ms));
            frames::encode_frame(&mut out, id, &iso);
            id += 1;
            out.len()
        })
    });
    g.finish();
}

const N: usize = 100_000;

/// A wheel with `N` keys spread over a 2 s interval, as `N` streams would be.
fn full_wheel() -> TimerWheel {
    let mut w = TimerWheel::new(0);
    for k in 0..N {
        w.arm(k, 1 + (k as u64 * 7919) % 2000);
    }
    w
}

fn timer(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_100k");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("arm_100k", |b| {
        b.iter_batched(
            || TimerWheel::new(0),
            |mut w| {
                for k in 0..N {
                    w.arm(k, 1 + (k as u64 * 7919) % 2000);
                }
                w
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("cancel_100k", |b| {
        b.iter_batched(
            full_wheel,
            |mut w| {
                for k in 0..N {
                    w.cancel(k);
                }
                w
            },
            BatchSize::LargeInput,
        )
    });
    // One whole interval: every key expires once, in deadline order, and is re-armed for its
    // next tick; the loop's steady state.
    g.bench_function("expire_and_rearm_100k", |b| {
        b.iter_batched(
            full_wheel,
            |mut w| {
                let mut fired = 0;
                for now in 1..=2000u64 {
                    while let Some(k) = w.pop_expired(now) {
                        w.arm(k, now + 2000);
                        fired += 1;
                    }
                }
                assert_eq!(fired, N);
                w
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// What one subscribe with a token costs: pull it out of the `Cookie` header, verify it (HS256,
/// the claims' JSON), and match the requested topics; and what a refused token costs.
fn token(c: &mut Criterion) {
    let key = b"a 32-byte-or-longer key for the benchmark";
    let now = 1_795_000_000_000i64;
    let claims = r#"{"mercure":{"subscribe":["chat/42","news/*","user/1234/inbox"]},"exp":1795003600,"sub":"user/1234"}"#;
    let t = jwt::sign_hs256(key, claims);
    let cookie = format!("theme=dark; {}={t}; lang=en", jwt::COOKIE_NAME);
    let verifier = Verifier::new(key, jwt::DEFAULT_LEEWAY_MS);
    let mut g = c.benchmark_group("jwt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_subscriber", |b| {
        b.iter(|| verifier.verify(black_box(t.as_bytes()), now).is_ok())
    });
    g.bench_function("subscribe_from_cookie", |b| {
        b.iter(|| {
            let t = jwt::cookie_token(black_box(cookie.as_bytes()), jwt::COOKIE_NAME).unwrap();
            let claims = verifier.verify(t, now).unwrap();
            claims.subscribe.matches_any(["news/7", "chat/42"])
        })
    });
    // Well-formed, signed with another key: refused only at the MAC, the dearest refusal.
    let forged = jwt::sign_hs256(b"not the hub's key", claims);
    assert_eq!(
        verifier.verify(forged.as_bytes(), now).unwrap_err(),
        jwt::JwtError::BadSignature
    );
    g.bench_function("refuse_bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(forged.as_bytes()), now).is_err())
    });
    g.finish();
}

/// 10,000 subscribers, each on its own URI Template (`https://example.com/rooms/{id}/s<i>`): every
/// one shares the literal start of the published topics, so none is ruled out by its prefix and
/// each is a candidate for every new topic. A publish on `https://example.com/rooms/<n>/s<k>`
/// is for exactly one of them.
const SELECTORS: usize = 10_000;

fn selector_hub() -> (Arc<Hub>, LocalHub) {
    let hub = Arc::new(Hub::new(
        HubConfig {
            history_events: 64,
            ..HubConfig::default()
        },
        "bench".into(),
        1,
        Box::new(|_| {}),
    ));
    let mut local = LocalHub::new(hub.clone(), 0);
    for i in 0..SELECTORS {
        let text = format!("https://example.com/rooms/{{id}}/s{i}");
        let sub = local
            .subscribe_selectors(&[(Kind::Template, &text)], None, None)
            .expect("a template compiles");
        local.register(&sub.filter, i);
    }
    (hub, local)
}

/// One publish on `topic` and the loop's step that finds who it is for; returns how many.
fn publish_and_match(hub: &Hub, local: &mut LocalHub, topic: String, out: &mut Vec<u32>) -> usize {
    let p = Publish {
        topics: vec![topic],
        data: "x".into(),
        ..Publish::default()
    };
    let seq = hub.publish(&p, 0);
    local.sync();
    local.audience(seq, seq, |_, _| true, out);
    out.len()
}

/// The p99 of `n` timed publishes (`topic(i)` names the i-th), in µs.
fn p99_us(hub: &Hub, local: &mut LocalHub, n: usize, topic: impl Fn(usize) -> String) -> f64 {
    let mut out = Vec::new();
    let mut took: Vec<f64> = (0..n)
        .map(|i| {
            let t = topic(i);
            let t0 = Instant::now();
            assert_eq!(publish_and_match(hub, local, t, &mut out), 1);
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    took.sort_by(f64::total_cmp);
    took[(n * 99 / 100).min(n - 1)]
}

fn selectors(c: &mut Criterion) {
    let (hub, mut local) = selector_hub();
    // A new topic each time: every template is asked (the cache has never seen the topic).
    let cold = |i: usize| format!("https://example.com/rooms/{i}/s{}", i % SELECTORS);
    // The same topic each time: the cache answers every template.
    let warm = |_: usize| "https://example.com/rooms/7/s42".to_string();
    if std::env::args().any(|a| a == "--bench") {
        for (name, topic) in [("cold", &cold as &dyn Fn(usize) -> String), ("warm", &warm)] {
            let p99 = p99_us(&hub, &mut local, 2_000, topic);
            println!(
                "selectors/10000_templates_{name}: p99 {p99:.1} µs per publish (2,000 publishes)"
            );
        }
    }
    let mut g = c.benchmark_group("selectors");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::new();
    let mut i = 1_000_000usize;
    g.bench_function("10000_templates_cold", |b| {
        b.iter(|| {
            i += 1;
            publish_and_match(&hub, &mut local, cold(i), &mut out)
        })
    });
    g.bench_function("10000_templates_warm", |b| {
        b.iter(|| publish_and_match(&hub, &mut local, warm(0), &mut out))
    });
    g.finish();
}

criterion_group!(benches, parse, encode, timer, token, selectors);
criterion_main!(benches);
