//! libFuzzer target: arbitrary bytes, split where the fuzzer says, through one connection.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/cargo-fuzz request` from the repo root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_server::app::testing::Env;
use sse_server::core::ctx::ConnConfig;
use sse_server::wire::http;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so the fuzzer explores splits too.
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let _ = http::parse(bytes, &http::Limits::default());
    let mut env = Env::new(ConnConfig::default(), 2);
    let mut conn = env.conn();
    let mut fed = 0;
    while fed < bytes.len() {
        let wire = env.flush(&mut conn);
        assert!(wire.is_empty() || wire.starts_with(b"HTTP/1.1 ") || conn.is_stream());
        if conn.is_closed() || !conn.wants_read() {
            break;
        }
        let take = conn
            .read_limit(&env.cfg)
            .min(usize::from(split).max(1))
            .min(bytes.len() - fed);
        assert!(take > 0);
        env.input(&mut conn, &bytes[fed..fed + take]);
        assert!(conn.buffered_input() <= env.cfg.limits.max_head + env.cfg.max_body);
        fed += take;
    }
});
