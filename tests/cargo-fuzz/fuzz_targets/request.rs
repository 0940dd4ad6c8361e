//! libFuzzer target: arbitrary bytes, split where the fuzzer says, through one connection.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/cargo-fuzz request` from the repo root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_server::conn::{Conn, ConnConfig, Ctx, Now, Rng};
use sse_server::http;
use sse_server::metrics::{Metrics, ProcessStats};
use sse_server::sse::Dates;
use sse_server::static_files::StaticFiles;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so the fuzzer explores splits too.
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let _ = http::parse(bytes, &http::Limits::default());
    let cfg = ConnConfig::default();
    let files = StaticFiles::embedded();
    let metrics = Metrics::new(1, 2);
    let mut dates = Dates::new();
    let mut rng = Rng::new(1);
    let now = Now {
        ms: 0,
        unix_ms: 1_795_460_982_321,
    };
    let mut conn = Conn::new(now, &cfg);
    let mut ctx = Ctx {
        cfg: &cfg,
        files: &files,
        metrics: &metrics,
        shard: metrics.shard(0),
        dates: &mut dates,
        rng: &mut rng,
        process_stats: ProcessStats::default,
        draining: false,
    };
    let mut fed = 0;
    while fed < bytes.len() {
        while let Some([a, b]) = conn.pending() {
            let n = a.len() + b.len();
            assert!(a.is_empty() || a.starts_with(b"HTTP/1.1 ") || !conn.is_stream());
            conn.on_sent(n, now, &mut ctx);
        }
        if conn.is_closed() || !conn.wants_read() {
            break;
        }
        let take = conn
            .read_limit(&cfg)
            .min(usize::from(split).max(1))
            .min(bytes.len() - fed);
        assert!(take > 0);
        conn.handle_input(&bytes[fed..fed + take], now, &mut ctx);
        assert!(conn.buffered_input() <= cfg.limits.max_head);
        fed += take;
    }
});
