//! End-to-end benchmark: start a server, drive it with `sse-load`, read the server's RSS and CPU
//! from /proc, and print one markdown table per scenario, with the peers from
//! `../shared/peers/` measured in the same run when they are built.
//!
//! ```text
//! cargo bench --bench e2e                      # every scenario
//! cargo bench --bench e2e -- hold rate knee cores   # a subset
//! cargo bench --bench e2e -- fanout throughput      # the hub scenarios
//! cargo bench --bench e2e -- hub-small              # a few-second check of the hub rows
//! cargo bench --bench e2e -- logging                # 10,000 x 100 ms with the log on and off
//! cargo bench --bench e2e -- durable                # the data dir against memory and Redis's AOF
//! SSE_BENCH_QUICK=1 cargo bench --bench e2e -- durable   # a few-second check that it runs
//! cargo bench --bench e2e -- fanout-templates       # 19,000 subscribers: 100 URI Templates
//!                                                   # against one exact topic, same run
//! cargo bench --bench e2e -- h2-fanout              # 19,000 subscribers over 190 HTTP/2
//!                                                   # connections (h2c, TLS) beside 19,000
//!                                                   # HTTP/1.1 ones, same run
//! SSE_BENCH_BASELINE=/tmp/old/sse-server SSE_BENCH_ROUNDS=3 cargo bench --bench e2e -- rate fanout
//!                                                   # before/after: another build, rows alternated
//!                                                   # (in `durable`: a `batch` row of that build)
//! cargo bench --bench e2e -- tls                    # HTTPS: plain, the server's own TLS, nginx
//!                                                   # terminating TLS in front; then handshakes
//! cargo bench --bench e2e -- handshakes             # TLS handshakes on one core against nginx
//! SSE_BENCH_QUICK=1 cargo bench --bench e2e -- tls  # a few-minute check that it runs
//! ```
//!
//! `tls` (issue: HTTPS in the server itself) runs, rows alternated over `SSE_BENCH_ROUNDS`, plain
//! HTTP, the server's own HTTPS (`--tls-port`) and nginx terminating TLS in front of the plain
//! server (`deploy/nginx.conf` with README's `listen ... ssl` lines, one worker per core):
//! 1,000 and 10,000 idle streams (user-space memory per stream: the server's RSS growth plus
//! nginx's master and workers'), 10,000 streams × 100 ms (CPU per delivered frame, server plus
//! nginx, over `sse_frames_sent_total`), and prints the ratios against plain HTTP. Then
//! `handshakes`: new TLS connections per second against `sse-server --threads 1` and nginx
//! with one worker, same certificate (P-256 ECDSA, then RSA-2048), from
//! `SSE_BENCH_HANDSHAKE_CLIENTS` rustls client threads (default two per core) that never offer
//! a session (nginx's access log shows none resumed), each connection `GET /healthz` then the
//! server's close; the server's CPU per handshake and its inverse, one core's capacity, so the
//! figure is the server's even where the clients set the pace. One certificate, made by
//! `tests/common/pki.rs`. Needs nginx for its rows (skipped with a note otherwise).
//!
//! The hub scenarios (`fanout`: 19,000 subscribers of one topic, 1 publish/s; `throughput`:
//! 1,000 subscribers, 100 publishes/s) run sse-server (`GET /sse?topic=bench`,
//! `POST /publish`) and nchan (`../shared/peers/nchan/run`, when nginx and its nchan module are
//! installed: `GET /sub/bench`, `POST /pub/bench`), with `sse-load`'s publisher, and print
//! publish-to-deliver latency, deliveries, and the server's CPU and RSS per subscriber (nginx's
//! master and workers summed). Each hub scenario also has a `sse-server --data-dir` row (the
//! default `--fsync batch`), to compare with the memory history in the same run.
//!
//! `durable` (issue: history that survives a restart) measures, rows alternated over
//! `SSE_BENCH_ROUNDS`: the floor, timed in Rust, three kinds (a 128-byte write + `fdatasync`
//! appended; the same over preallocated zeros; the 4 KiB block holding the record `pwrite`n
//! through `O_DIRECT|O_DSYNC` over preallocated zeros, "not supported here" where the file
//! system refuses `O_DIRECT`) each at two paces: 2,000 back to back and 400 at the fixed rate's
//! cadence (one every 10 ms: a sync after idling costs more than one in a tight loop); per
//! store (memory history, `--data-dir --fsync batch`, `--fsync always`, `--redis` with a fresh
//! `redis-server` at `appendonly yes` + `appendfsync everysec`, then `always`) a fresh server,
//! `sse-load`'s publisher at 100 publishes/s (answer latency below saturation) and a light
//! client at the same rate, then, per connection count C of `SSE_BENCH_WRK_CONNECTIONS` (one
//! count or a comma-separated list such as `16,64,256`; default 16), another fresh server and
//! `wrk -t1 -cC -d10s --latency -s benches/publish.lua` (publishes/s counting 2xx answers only,
//! a column per C); then start-up time (spawn to the first 200 of `/healthz`) with a full default
//! history in the data dir (10,000 events, ~64 MiB), page cache warm and evicted. It prints the
//! floor's table; the stores' table (wrk's publishes/s, the fixed rate's answers and deliveries)
//! and the wrk phases' (as wrk saw them and as the server did); the server's own answer times
//! (`sse_publish_answer_seconds`) beside the clients' at the fixed rate and the light client's;
//! the data dir's stages per phase (queue, write, sync, stored, answer, from its metrics);
//! start-up; then the issue's goals, medians over rounds: batch against Redis everysec in
//! publishes/s at each C and each store at its best C; batch's answer p99 at the fixed rate
//! over the floor at the same cadence of the fastest kind there (the like-for-like figure) and
//! over that kind back to back, the same for the light client and the server side; the
//! server's answer p99 over the p99 of the syncs the log made in the same phase; under wrk over
//! the fastest back-to-back floor; always against Redis always in publishes/s and in answer
//! p99 at the fixed rate; and a table of batch's p99 over every floor's. It needs `wrk` (else
//! no throughput columns or goals) and `redis-server` (else its rows say "not run"). Data dirs,
//! the floor's file and Redis's AOF go in `$SSE_BENCH_DATA_DIR` (default: the temp dir), so
//! point it at the file system to measure; a line names it. `SSE_BENCH_QUICK=1` shortens
//! every window (2 s, 50 publishes/s, 200 syncs back to back and 50 at the cadence, 1,000
//! events) for a check that the scenario runs.
//!
//! Peers are looked up in `$SSE_PEERS_TARGET` (default `/tmp/peers`, built with
//! `cargo build --release --manifest-path ../shared/peers/<peer>/Cargo.toml --target-dir /tmp/peers`)
//! and `$SSE_EXPRESS_DIR` (default `/tmp/node-express`, a copy of the Express peer after
//! `npm install`); a missing peer is skipped with a note. Under `cargo test` (no `--bench`
//! argument) it only runs a small smoke scenario against sse-server, so it cannot rot.

#[path = "../tests/common/pki.rs"]
mod pki;

use pki::{KeyKind, Pki};
use serde_json::Value;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSE_LOAD: &str = env!("CARGO_BIN_EXE_sse-load");
const SSE_SERVER: &str = env!("CARGO_BIN_EXE_sse-server");

/// A server to measure.
#[derive(Clone)]
struct Spec {
    name: String,
    program: String,
    args: Vec<String>,
    /// Whether it reads PORT / INTERVAL_MS from the environment (the peers) or flags (ours).
    env_config: bool,
    /// How sse-load reaches it (`tls` scenario: HTTPS, the server's own or nginx's).
    transport: Transport,
}

/// How sse-load reaches a server.
#[derive(Clone)]
enum Transport {
    /// Plain HTTP on the server's port.
    Plain,
    /// The server's own HTTPS (`--tls-cert`, `--tls-key`, `--tls-port`) with this certificate;
    /// `/metrics` is read on its plain port beside.
    Tls(Pki),
    /// nginx terminating TLS with this certificate in front of the server's plain port
    /// ([`Nginx::start_front`]).
    Nginx(Pki),
}

impl Spec {
    fn ours(name: &str, extra: &[&str]) -> Spec {
        let args = extra.iter().map(|s| s.to_string()).collect();
        Spec {
            name: name.into(),
            program: SSE_SERVER.into(),
            args,
            env_config: false,
            transport: Transport::Plain,
        }
    }

    /// Starts it on `port` (and, for its own HTTPS, `--tls-port tls_port`).
    fn spawn(&self, port: u16, tls_port: u16, interval_ms: u64) -> Child {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.env_config {
            cmd.env("PORT", port.to_string())
                .env("INTERVAL_MS", interval_ms.to_string());
        } else {
            cmd.args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--interval-ms",
                &interval_ms.to_string(),
            ]);
        }
        if let Transport::Tls(pki) = &self.transport {
            cmd.arg("--tls-cert")
                .arg(&pki.cert)
                .arg("--tls-key")
                .arg(&pki.key)
                .args(["--tls-port", &tls_port.to_string()]);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name))
    }
}

fn peers() -> (Vec<Spec>, Vec<String>) {
    let target =
        PathBuf::from(std::env::var("SSE_PEERS_TARGET").unwrap_or_else(|_| "/tmp/peers".into()));
    let express = PathBuf::from(
        std::env::var("SSE_EXPRESS_DIR").unwrap_or_else(|_| "/tmp/node-express".into()),
    );
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (name, bin) in [("floor", "sse-floor"), ("axum-sse", "axum-sse-peer")] {
        let path = target.join("release").join(bin);
        if path.exists() {
            found.push(Spec {
                name: name.into(),
                program: path.display().to_string(),
                args: vec![],
                env_config: true,
                transport: Transport::Plain,
            });
        } else {
            missing.push(format!("{name} ({} not built)", path.display()));
        }
    }
    if express.join("node_modules/express").exists() {
        let server = express.join("server.js").display().to_string();
        found.push(Spec {
            name: "node-express".into(),
            program: "node".into(),
            args: vec![server],
            env_config: true,
            transport: Transport::Plain,
        });
    } else {
        missing.push(format!(
            "node-express ({} has no node_modules)",
            express.display()
        ));
    }
    (found, missing)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process (all its threads).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One measured run of one server.
struct Row {
    name: String,
    report: Value,
    /// RSS (bytes) before the streams and with them all open, at the end of the window, and CPU
    /// over the window (% of one core): the server's plus, with nginx in front, nginx's (master
    /// and workers).
    rss_base: u64,
    rss_full: u64,
    cpu_pct: f64,
    /// nginx's own part of the three figures above, when it is in front.
    front: Option<Front>,
    window_s: f64,
    streams: usize,
    skipped: Option<f64>,
    /// Frames the server sent in the window (`sse_frames_sent_total`), for CPU per delivery.
    frames: Option<f64>,
}

impl Row {
    fn get(&self, path: &str) -> f64 {
        let mut v = &self.report;
        for key in path.split('.') {
            v = &v[key];
        }
        v.as_f64().unwrap_or(f64::NAN)
    }

    /// User-space memory per stream: the RSS the streams added (server and nginx), per stream.
    fn rss_per_stream(&self) -> f64 {
        (self.rss_full as f64 - self.rss_base as f64) / self.streams as f64
    }

    /// CPU seconds per frame delivered in the window (server and nginx), in µs; NaN without
    /// the server's frame count or without frames.
    fn cpu_us_per_frame(&self) -> f64 {
        match self.frames {
            Some(f) if f >= 1.0 => self.cpu_pct / 100.0 * self.window_s * 1e6 / f,
            _ => f64::NAN,
        }
    }
}

/// nginx's part of a row: RSS before and with the streams, CPU over the window (% of a core).
struct Front {
    rss_base: u64,
    rss_full: u64,
    cpu_pct: f64,
}

struct Case {
    streams: usize,
    interval_ms: u64,
    window_s: u64,
    /// sse-load's loops. One alone saturates first near 100k frames/s, and its queueing then
    /// dominates every server's lateness; below that, one loop is the lighter neighbour.
    client_threads: usize,
    /// What the streams request.
    path: &'static str,
}

fn run(spec: &Spec, case: &Case) -> Row {
    let port = free_port();
    // Where sse-load connects: the server's plain port, its own HTTPS port, or nginx's.
    let mut front_port = match spec.transport {
        Transport::Tls(_) => free_port(),
        _ => port,
    };
    let mut server = spec.spawn(port, front_port, case.interval_ms);
    let pid = server.id();
    wait_listening(port);
    let nginx = match &spec.transport {
        Transport::Nginx(pki) => {
            let n = Nginx::start_front(pki, port);
            front_port = n.port;
            Some(n)
        }
        _ => None,
    };
    wait_listening(front_port);
    std::thread::sleep(Duration::from_millis(500));
    // (CPU seconds, RSS bytes) of the server and of nginx, when it is in front.
    let usage = || {
        let ours = (cpu_seconds(pid), proc_status_kb(pid, "VmRSS:") * 1024);
        (ours, nginx.as_ref().map(|n| tree_usage(n.child.id())))
    };
    let (_, front_base) = usage();
    let rss_base = proc_status_kb(pid, "VmRSS:") * 1024;
    let fds_base = open_fds(pid);
    // Connect at up to 4000/s from 4 source addresses (past the ephemeral-port limit and any
    // TIME_WAIT left by the previous run), settle, then measure a window of steady state.
    let rate = 4000;
    let ramp_s = (case.streams / rate) as u64 + 4;
    let settle_s = 2 + case.interval_ms.div_ceil(1000);
    let duration = ramp_s + settle_s + case.window_s + 2;
    let mut load = Command::new(SSE_LOAD);
    let url = match &spec.transport {
        Transport::Plain => format!("http://127.0.0.1:{port}{}", case.path),
        Transport::Tls(pki) | Transport::Nginx(pki) => {
            load.arg("--tls-ca").arg(&pki.ca);
            format!("https://127.0.0.1:{front_port}{}", case.path)
        }
    };
    let load = load
        .args([
            &url,
            "-c",
            &case.streams.to_string(),
            "-d",
            &duration.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args([
            "--source-addrs",
            "4",
            "--warmup",
            &(ramp_s + settle_s).to_string(),
            "--threads",
            &case.client_threads.to_string(),
            "--json",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sse-load starts");
    let started = Instant::now();
    // Behind nginx each stream is an upstream connection of the server's too.
    while open_fds(pid) < fds_base + case.streams && started.elapsed() < Duration::from_secs(ramp_s)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(settle_s));
    let ours = !spec.env_config;
    let frames0 = ours
        .then(|| metric(port, "sse_frames_sent_total"))
        .flatten();
    let ((cpu0, _), front0) = usage();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(case.window_s));
    let ((cpu1, rss_full), front1) = usage();
    let window_s = t0.elapsed().as_secs_f64();
    let frames1 = ours
        .then(|| metric(port, "sse_frames_sent_total"))
        .flatten();
    let skipped = ours
        .then(|| metric(port, "sse_frames_skipped_total"))
        .flatten();
    let out = load.wait_with_output().expect("sse-load finishes");
    drop(nginx);
    let _ = server.kill();
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sse-load --json output for {}: {e}: {}",
            spec.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let front = match (front_base, front0, front1) {
        (Some((_, rss_base)), Some((c0, _)), Some((c1, rss_full))) => Some(Front {
            rss_base,
            rss_full,
            cpu_pct: (c1 - c0) / window_s * 100.0,
        }),
        _ => None,
    };
    let (front_base, front_full, front_cpu) = front
        .as_ref()
        .map_or((0, 0, 0.0), |f| (f.rss_base, f.rss_full, f.cpu_pct));
    Row {
        name: spec.name.clone(),
        report,
        rss_base: rss_base + front_base,
        rss_full: rss_full + front_full,
        cpu_pct: (cpu1 - cpu0) / window_s * 100.0 + front_cpu,
        front,
        window_s,
        streams: case.streams,
        skipped,
        frames: frames0.zip(frames1).map(|(a, b)| b - a),
    }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    metrics_text(port)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn print_table(title: &str, case: &Case, rows: &[Row]) {
    println!(
        "\n### {title}: {} streams × {} ms, {} s window, sse-load --threads {}\n",
        case.streams, case.interval_ms, case.window_s, case.client_threads
    );
    println!("| server | established / failed / dropped (pending) | connect p99 | headers p50 | RSS per stream | server CPU | CPU vs floor | sse-load CPU | frames/s after warm-up (ideal {}) | interval p99 / max | lateness p50 / p99 / p99.9 / max | id gaps / dups | skipped ticks |", case.streams as u64 * 1000 / case.interval_ms);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let floor_cpu = rows.iter().find(|r| r.name == "floor").map(|r| r.cpu_pct);
    for r in rows {
        let per_stream = r.rss_per_stream();
        let vs_floor = floor_cpu.map_or("—".to_string(), |f| format!("{:.2}×", r.cpu_pct / f));
        println!(
            "| {} | {} / {} / {}{} | {:.1} ms | {:.1} ms | {:.0} B | {:.1} % | {} | {:.1} % | {:.0} | {:.1} / {:.1} ms | {:.2} / {:.2} / {:.2} / {:.1} ms | {} / {} | {} |",
            r.name,
            r.get("streams.established"),
            r.get("streams.failed"),
            r.get("streams.dropped"),
            match r.get("streams.pending_at_end") {
                p if p > 0.0 => format!(" ({p})"),
                _ => String::new(),
            },
            r.get("connect_ms.p99"),
            r.get("headers_ms.p50"),
            per_stream,
            r.cpu_pct,
            vs_floor,
            r.get("cpu.percent_of_one_core"),
            r.get("steady_frames_per_s"),
            r.get("frame_interval_ms.p99"),
            r.get("frame_interval_ms.max"),
            r.get("lateness_ms.p50"),
            r.get("lateness_ms.p99"),
            r.get("lateness_ms.p999"),
            r.get("lateness_ms.max"),
            r.get("ids.gaps"),
            r.get("ids.duplicates"),
            r.skipped.map_or("—".to_string(), |s| format!("{s:.0}")),
        );
    }
    if rows.iter().any(|r| r.front.is_some()) {
        println!("\nBehind nginx: RSS per stream and server CPU are the server's plus nginx's (master and workers).");
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = proc_meminfo_kb("MemTotal:");
    format!(
        "{cores} cores ({cpu}), {} GiB, Linux {}",
        mem_kb / (1024 * 1024),
        kernel.trim()
    )
}

fn proc_meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn smoke() {
    let case = Case {
        streams: 50,
        interval_ms: 200,
        window_s: 1,
        client_threads: 1,
        path: "/sse",
    };
    let row = run(&Spec::ours("sse-server", &["--threads", "1"]), &case);
    assert_eq!(row.get("streams.established"), 50.0, "{}", row.report);
    assert_eq!(row.get("streams.failed"), 0.0, "{}", row.report);
    assert!(row.get("frames") > 0.0);
    println!(
        "e2e smoke: 50 streams established, {} frames; run `cargo bench --bench e2e` for figures",
        row.get("frames")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        smoke();
        return;
    }
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |s: &str| wanted.is_empty() || wanted.contains(&s);
    // Stops the bench's redis-server and removes the bench dir when main ends, by a panic too.
    let _cleanup = Cleanup;
    let (peers, missing) = peers();
    let today = time::OffsetDateTime::now_utc().date();
    println!("## sse-server end-to-end benchmark, {today}");
    println!(
        "\nMachine: {}. Server and sse-load share it, on loopback.",
        machine()
    );
    println!(
        "Command: `cargo bench --bench e2e{}{}`",
        if wanted.is_empty() { "" } else { " -- " },
        wanted.join(" ")
    );
    for m in &missing {
        println!("Skipped peer: {m}");
    }
    let ours = Spec::ours("sse-server", &[]);
    let mut all = vec![ours.clone()];
    if let Some(program) = baseline() {
        all.push(Spec {
            name: "sse-server (baseline)".into(),
            program,
            args: Vec::new(),
            env_config: false,
            transport: Transport::Plain,
        });
    }
    all.extend(peers.iter().cloned());
    // Rows alternate (ours, baseline, peers, ours, ...) so a drift of the machine during the
    // run falls on every server alike.
    let all: Vec<Spec> = (0..rounds()).flat_map(|_| all.iter().cloned()).collect();
    if want("hold") {
        let case = Case {
            streams: 19_000,
            interval_ms: 2000,
            window_s: 10,
            client_threads: 1,
            path: "/sse",
        };
        let rows: Vec<Row> = all.iter().map(|s| run(s, &case)).collect();
        print_table("Streams held", &case, &rows);
    }
    if want("rate") {
        let case = Case {
            streams: 10_000,
            interval_ms: 100,
            window_s: 10,
            client_threads: 2,
            path: "/sse",
        };
        let rows: Vec<Row> = all.iter().map(|s| run(s, &case)).collect();
        print_table("Frame rate", &case, &rows);
    }
    if want("knee") {
        // Just below saturation of this 2-core machine (server and sse-load together).
        let case = Case {
            streams: 10_000,
            interval_ms: 150,
            window_s: 10,
            client_threads: 2,
            path: "/sse",
        };
        let specs: Vec<Spec> = all
            .iter()
            .filter(|s| s.name == "sse-server" || s.name == "floor")
            .cloned()
            .collect();
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("Below saturation", &case, &rows);
    }
    if want("cores") {
        let case = Case {
            streams: 10_000,
            interval_ms: 100,
            window_s: 10,
            client_threads: 2,
            path: "/sse",
        };
        let mut specs = vec![
            Spec::ours("sse-server --threads 1", &["--threads", "1"]),
            Spec::ours("sse-server --threads 2", &["--threads", "2"]),
        ];
        specs.extend(peers.iter().filter(|p| p.name == "floor").cloned());
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("What a second loop buys", &case, &rows);
    }
    if wanted.contains(&"tls") {
        tls_scenario();
    } else if wanted.contains(&"handshakes") {
        handshake_scenario();
    }
    if wanted.contains(&"logging") {
        // What the log costs: one line per request and per ended stream, none per frame.
        let case = Case {
            streams: 10_000,
            interval_ms: 100,
            window_s: 10,
            client_threads: 2,
            path: "/sse",
        };
        let specs = [
            Spec::ours("sse-server (log on)", &[]),
            Spec::ours("sse-server --quiet", &["--quiet"]),
        ];
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("Logging on and off", &case, &rows);
    }
    hub_scenarios(&want, &wanted);
    if want("durable") {
        durable_scenario();
    }
}

/// Dropped at the end of `main` (returned from or unwound by a panic): stops the bench's
/// `redis-server` and removes the bench dir.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        stop_bench_redis();
        remove_bench_dir();
    }
}

/// A hub to measure: how to start it, and where to subscribe and publish.
struct Hub {
    name: &'static str,
    /// The program and its arguments, given the port.
    command: fn(u16) -> Command,
    sub_path: &'static str,
    pub_path: &'static str,
    format: &'static str,
    /// The topic published to.
    topic: &'static str,
    /// `sse-load --spread`: subscribers spread over this many paths (`{spread}` in `sub_path`).
    spread: usize,
    /// `http` or `https` (then the server is started with the bench's certificate and
    /// sse-load trusts its CA).
    scheme: &'static str,
    /// More `sse-load` arguments (`--h2`).
    load_args: &'static [&'static str],
}

/// A `redis-server` for the "sse-server + Redis" rows, started once per bench run on a free
/// loopback port (persistence off) and stopped by [`stop_bench_redis`] when `main` ends;
/// `None` when `redis-server` is not installed or does not answer.
fn bench_redis() -> Option<u16> {
    static PORT: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let program = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = fresh_dir("redis");
        let child = Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        // Kept for stop_bench_redis, which main's Cleanup calls.
        *BENCH_REDIS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(port)
    })
}

/// The `redis-server` [`bench_redis`] started, if it did.
static BENCH_REDIS: std::sync::Mutex<Option<Child>> = std::sync::Mutex::new(None);

/// Stops the bench's `redis-server`, if one was started (`main`'s [`Cleanup`] calls it).
fn stop_bench_redis() {
    let child = BENCH_REDIS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(mut child) = child {
        stop_child(&mut child);
    }
}

fn nchan_run() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/nchan/run")
}

/// `SSE_BENCH_BASELINE`: another `sse-server` binary (say, a release build of an earlier
/// commit) measured beside this one in the same run, for before/after comparisons.
fn baseline() -> Option<String> {
    std::env::var("SSE_BENCH_BASELINE")
        .ok()
        .filter(|p| !p.is_empty())
}

/// `SSE_BENCH_ROUNDS` (default 1): how many times each scenario's rows are run, alternated.
fn rounds() -> usize {
    std::env::var("SSE_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

fn hubs() -> (Vec<Hub>, Option<String>) {
    let mut found = vec![Hub {
        name: "sse-server",
        command: |port| {
            let mut c = Command::new(SSE_SERVER);
            c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            c
        },
        sub_path: "/sse?topic=bench",
        pub_path: "/publish",
        format: "form",
        topic: "bench",
        spread: 1,
        scheme: "http",
        load_args: &[],
    }];
    found.push(Hub {
        name: "sse-server --data-dir",
        command: |port| {
            let mut c = Command::new(SSE_SERVER);
            c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            c.arg("--data-dir").arg(fresh_dir(&format!("hub-{port}")));
            c
        },
        sub_path: "/sse?topic=bench",
        pub_path: "/publish",
        format: "form",
        topic: "bench",
        spread: 1,
        scheme: "http",
        load_args: &[],
    });
    if baseline().is_some() {
        found.push(Hub {
            name: "sse-server (baseline)",
            command: |port| {
                let mut c = Command::new(baseline().unwrap_or_default());
                c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
                c
            },
            sub_path: "/sse?topic=bench",
            pub_path: "/publish",
            format: "form",
            topic: "bench",
            spread: 1,
            scheme: "http",
            load_args: &[],
        });
    }
    if bench_redis().is_some() {
        found.push(Hub {
            name: "sse-server + Redis",
            command: |port| {
                let mut c = Command::new(SSE_SERVER);
                let url = format!("redis://127.0.0.1:{}", bench_redis().unwrap_or(6379));
                c.args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--redis",
                    &url,
                ]);
                c
            },
            sub_path: "/sse?topic=bench",
            pub_path: "/publish",
            format: "form",
            topic: "bench",
            spread: 1,
            scheme: "http",
            load_args: &[],
        });
    }
    let module = std::path::Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if nchan_run().exists() && module.exists() && nginx {
        found.push(Hub {
            name: "nchan",
            command: |port| {
                let mut c = Command::new(nchan_run());
                c.arg(port.to_string());
                c
            },
            sub_path: "/sub/bench",
            pub_path: "/pub/bench",
            format: "raw",
            topic: "bench",
            spread: 1,
            scheme: "http",
            load_args: &[],
        });
        (found, None)
    } else {
        (
            found,
            Some(format!(
                "nchan (needs {} and nginx with {})",
                nchan_run().display(),
                module.display()
            )),
        )
    }
}

/// A process and its children (nginx's workers): (CPU seconds, RSS bytes), summed.
fn tree_usage(pid: u32) -> (f64, u64) {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids.iter().fold((0.0, 0), |(c, r), &p| {
        (c + cpu_seconds(p), r + proc_status_kb(p, "VmRSS:") * 1024)
    })
}

struct HubCase {
    subscribers: usize,
    publish_rate: f64,
    window_s: u64,
}

struct HubRow {
    name: String,
    report: Value,
    rss_per_sub: f64,
    cpu_pct: f64,
    cpu_us_per_delivery: f64,
    /// The server's own publish-to-write time per delivery over the window
    /// (`sse_hub_delivery_latency_seconds`, read on a plain port only): what the hub took,
    /// apart from the client's reading.
    server_write: Option<Hist>,
}

/// The issue's fan-out: 19,000 subscribers, one publish a second, a 10 s window (quick: 2,000
/// and 3 s, a check that it runs).
fn fanout_case() -> HubCase {
    if quick() {
        HubCase {
            subscribers: 2_000,
            publish_rate: 1.0,
            window_s: 3,
        }
    } else {
        HubCase {
            subscribers: 19_000,
            publish_rate: 1.0,
            window_s: 10,
        }
    }
}

fn run_hub(hub: &Hub, case: &HubCase) -> HubRow {
    let port = free_port();
    let mut server = (hub.command)(port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", hub.name));
    let pid = server.id();
    wait_listening(port);
    std::thread::sleep(Duration::from_millis(500));
    let (_, rss_base) = tree_usage(pid);
    // Ramp at 4000 connects/s, settle, then publish through the window; publishing starts at
    // the end of the warm-up (every subscriber is open by then) and stops 1 s before the end.
    let ramp_s = (case.subscribers / 4000) as u64 + 3;
    let warmup = ramp_s + 1;
    let duration = warmup + case.window_s + 2;
    let base = format!("{}://127.0.0.1:{port}", hub.scheme);
    let mut load = Command::new(SSE_LOAD);
    load.args(hub.load_args);
    // `SSE_BENCH_HUB_THREADS=N`: sse-load's event loops (default 1), the same for every row.
    if let Ok(n) = std::env::var("SSE_BENCH_HUB_THREADS") {
        load.args(["--threads", &n]);
    }
    if hub.scheme == "https" {
        load.arg("--tls-ca").arg(&bench_pki().ca);
    }
    let load = load
        .args([
            &format!("{base}{}", hub.sub_path),
            "-c",
            &case.subscribers.to_string(),
            "-d",
            &duration.to_string(),
            "--rate",
            "4000",
            "--source-addrs",
            "4",
            "--warmup",
            &warmup.to_string(),
            "--publish-url",
            &format!("{base}{}", hub.pub_path),
            "--publish-format",
            hub.format,
            "--publish-topic",
            hub.topic,
            "--spread",
            &hub.spread.to_string(),
            "--publish-rate",
            &case.publish_rate.to_string(),
            "--drain",
            "1",
            "--json",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sse-load starts");
    std::thread::sleep(Duration::from_secs(warmup) + Duration::from_millis(500));
    let plain = hub.scheme == "http";
    let write_hist = || {
        let name = "sse_hub_delivery_latency_seconds";
        plain.then(|| Hist::read(&metrics_text(port), name, ""))
    };
    let write0 = write_hist();
    let (cpu0, _) = tree_usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(case.window_s));
    let (cpu1, rss_full) = tree_usage(pid);
    let server_write = write_hist()
        .zip(write0)
        .map(|(end, start)| end.since(&start))
        .filter(|h| h.count() > 0.0);
    let window_s = t0.elapsed().as_secs_f64();
    let out = load.wait_with_output().expect("sse-load finishes");
    // nginx's master stops its workers on SIGTERM; sse-server exits on it.
    // SAFETY: kill(2) on the child this bench started and has not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sse-load --json output for {}: {e}: {}",
            hub.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    // Deliveries in the window, from the rate received over the publishing span.
    let g = |path: &str| {
        let mut v = &report;
        for k in path.split('.') {
            v = &v[k];
        }
        v.as_f64().unwrap_or(0.0)
    };
    let span_s = (g("hub.published.stopped_ms") - g("hub.published.started_ms")) / 1000.0;
    let deliveries = g("hub.deliveries.received") / span_s.max(1e-3) * window_s;
    HubRow {
        name: hub.name.into(),
        report,
        rss_per_sub: (rss_full as f64 - rss_base as f64) / case.subscribers as f64,
        cpu_pct: (cpu1 - cpu0) / window_s * 100.0,
        cpu_us_per_delivery: if deliveries >= 1.0 {
            (cpu1 - cpu0) * 1e6 / deliveries
        } else {
            f64::NAN
        },
        server_write,
    }
}

fn print_hub_table(title: &str, case: &HubCase, rows: &[HubRow]) {
    println!(
        "\n### {title}: {} subscribers of one topic, {} publishes/s, {} s window{}\n",
        case.subscribers,
        case.publish_rate,
        case.window_s,
        if quick() {
            " (SSE_BENCH_QUICK: figures not meaningful)"
        } else {
            ""
        }
    );
    println!("| hub | subscribers established / failed / dropped | publishes ok / sent | deliveries received / expected (missing, dups, gaps) | publish→deliver p50 / p99 / p99.9 / max | publish answer p50 / p99 | server CPU | CPU per delivery | RSS per subscriber |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let g = |path: &str| {
            let mut v = &r.report;
            for k in path.split('.') {
                v = &v[k];
            }
            v.as_f64().unwrap_or(f64::NAN)
        };
        println!(
            "| {} | {} / {} / {} | {} / {} | {} / {} ({}, {}, {}) | {:.2} / {:.2} / {:.2} / {:.1} ms | {:.2} / {:.2} ms | {:.1} % | {} | {:.0} B |",
            r.name,
            g("streams.established"),
            g("streams.failed"),
            g("streams.dropped"),
            g("hub.published.ok"),
            g("hub.published.sent"),
            g("hub.deliveries.received"),
            g("hub.deliveries.expected"),
            g("hub.deliveries.missing"),
            g("hub.deliveries.duplicates"),
            g("hub.deliveries.gaps"),
            g("hub.deliver_ms.p50"),
            g("hub.deliver_ms.p99"),
            g("hub.deliver_ms.p999"),
            g("hub.deliver_ms.max"),
            g("hub.published.answer_ms.p50"),
            g("hub.published.answer_ms.p99"),
            r.cpu_pct,
            if r.cpu_us_per_delivery.is_nan() {
                "—".to_string()
            } else {
                format!("{:.2} µs", r.cpu_us_per_delivery)
            },
            r.rss_per_sub,
        );
    }
}

fn hub_scenarios(want: &dyn Fn(&str) -> bool, explicit: &[&str]) {
    // Found when a hub scenario runs (finding them starts the bench's redis-server).
    let mut found = None;
    let cases = [
        (
            "fanout",
            "Hub fan-out",
            HubCase {
                subscribers: 19_000,
                publish_rate: 1.0,
                window_s: 10,
            },
        ),
        (
            "throughput",
            "Hub throughput",
            HubCase {
                subscribers: 1_000,
                publish_rate: 100.0,
                window_s: 10,
            },
        ),
        (
            "hub-small",
            "Hub check at small scale",
            HubCase {
                subscribers: 200,
                publish_rate: 20.0,
                window_s: 3,
            },
        ),
    ];
    if want("fanout-templates") {
        fanout_templates();
    }
    if want("h2-fanout") {
        h2_fanout();
    }
    for (key, title, case) in cases {
        // The small check runs only when named.
        if !(want(key) && (key != "hub-small" || explicit.contains(&key))) {
            continue;
        }
        let (hubs, missing) = &*found.get_or_insert_with(hubs);
        if let Some(m) = missing {
            println!("Skipped hub: {m}");
        }
        let rows: Vec<HubRow> = (0..rounds())
            .flat_map(|_| hubs.iter())
            .map(|h| run_hub(h, &case))
            .collect();
        print_hub_table(title, &case, &rows);
    }
}

/// `fanout-templates` (issue: Mercure hub): the 19,000-subscriber fan-out with the subscribers
/// spread over 100 URI Template selectors (`https://example.com/rooms/{id<i>}`, i < 100, each
/// matching the published topic, so every subscriber expects every event), beside the same
/// fan-out on the exact topic `https://example.com/rooms/bench`, rows alternated. Quick:
/// 2,000 subscribers, 3 s.
fn fanout_templates() {
    fn ours(port: u16) -> Command {
        let mut c = Command::new(SSE_SERVER);
        c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
        c
    }
    let exact = Hub {
        name: "sse-server, exact topic",
        command: ours,
        sub_path: "/sse?topic=https%3A%2F%2Fexample.com%2Frooms%2Fbench",
        pub_path: "/publish",
        format: "form",
        topic: "https://example.com/rooms/bench",
        spread: 1,
        scheme: "http",
        load_args: &[],
    };
    let templates = Hub {
        name: "sse-server, 100 URI Templates",
        sub_path: "/sse?topic=https%3A%2F%2Fexample.com%2Frooms%2F%7Bid{spread}%7D",
        spread: 100,
        ..exact
    };
    let case = fanout_case();
    let rows: Vec<HubRow> = (0..rounds())
        .flat_map(|_| [&exact, &templates])
        .map(|h| run_hub(h, &case))
        .collect();
    print_hub_table(
        "Hub fan-out, exact topic against 100 URI Templates",
        &case,
        &rows,
    );
}

/// The certificate the HTTPS hub rows serve (P-256, `tests/common/pki.rs`), made once per run
/// in the bench directory.
fn bench_pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| Pki::make(&fresh_dir("hub-pki"), "hub", KeyKind::Ecdsa))
}

/// `h2-fanout` (issue 22): the 19,000-subscriber fan-out (one topic, one publish a second) over
/// 190 HTTP/2 connections of 100 streams each (h2c with prior knowledge), beside the same
/// fan-out over 19,000 HTTP/1.1 connections and over 190 TLS connections with ALPN h2, rows
/// alternated over `SSE_BENCH_ROUNDS`; then connections and streams per row and the ratio of
/// each h2 row's publish-to-deliver p99 to HTTP/1.1's (medians over the rounds; the goal is
/// 0.3 or less). Quick: 2,000 subscribers (20 connections), 3 s.
fn h2_fanout() {
    fn ours(port: u16) -> Command {
        let mut c = Command::new(SSE_SERVER);
        c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
        c
    }
    fn ours_tls(port: u16) -> Command {
        let mut c = ours(port);
        let pki = bench_pki();
        c.arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key);
        c
    }
    let h1 = Hub {
        name: "sse-server, HTTP/1.1 (a connection per subscriber)",
        command: ours,
        sub_path: "/sse?topic=bench",
        pub_path: "/publish",
        format: "form",
        topic: "bench",
        spread: 1,
        scheme: "http",
        load_args: &[],
    };
    let h2 = Hub {
        name: "sse-server, h2c (100 streams a connection)",
        load_args: &["--h2", "--h2-streams", "100"],
        ..h1
    };
    let h2_tls = Hub {
        name: "sse-server, TLS + h2 (100 streams a connection)",
        command: ours_tls,
        scheme: "https",
        ..h2
    };
    let case = fanout_case();
    let rows: Vec<HubRow> = (0..rounds())
        .flat_map(|_| [&h1, &h2, &h2_tls])
        .map(|h| run_hub(h, &case))
        .collect();
    print_hub_table("Hub fan-out over HTTP/1.1 and over HTTP/2", &case, &rows);
    let g = |r: &HubRow, path: &str| {
        let mut v = &r.report;
        for k in path.split('.') {
            v = &v[k];
        }
        v.as_f64().unwrap_or(f64::NAN)
    };
    let median_p99 = |name: &str| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.name == name)
            .map(|r| g(r, "hub.deliver_ms.p99"))
            .collect();
        median(&v)
    };
    println!("
| hub | connections | streams established | publish→deliver p50 / p99 | p99 / HTTP/1.1 p99 (goal ≤ 0.3) | server's publish→write mean / p99 (bucket-interpolated) | server mean / HTTP/1.1's |");
    println!("|---|---|---|---|---|---|---|");
    let server_mean = |name: &str| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.name == name)
            .filter_map(|r| r.server_write.as_ref().map(Hist::mean_ms))
            .collect();
        median(&v)
    };
    let base_server = server_mean(h1.name);
    let base = median_p99(h1.name);
    for r in &rows {
        let h2 = r.report["protocol"] == "h2";
        let connections = if h2 {
            g(r, "h2.connections")
        } else {
            g(r, "streams.established")
        };
        let ratio = if h2 {
            format!(
                "{:.2} (median {:.2})",
                g(r, "hub.deliver_ms.p99") / base,
                median_p99(&r.name) / base
            )
        } else {
            "—".to_string()
        };
        let (server, server_ratio) = match &r.server_write {
            Some(w) => (
                format!("{:.2} / {:.1} ms", w.mean_ms(), w.quantile_ms(0.99)),
                if h2 {
                    format!("{:.2}", w.mean_ms() / base_server)
                } else {
                    "—".to_string()
                },
            ),
            None => ("— (TLS only)".to_string(), "—".to_string()),
        };
        println!(
            "| {} | {} | {} | {:.2} / {:.2} ms | {} | {} | {} |",
            r.name,
            connections,
            g(r, "streams.established"),
            g(r, "hub.deliver_ms.p50"),
            g(r, "hub.deliver_ms.p99"),
            ratio,
            server,
            server_ratio
        );
    }
}

/// `SSE_BENCH_QUICK=1`: short windows and small loads in the scenarios that read it (`durable`,
/// `tls`, `handshakes`, `fanout-templates`, `h2-fanout`), a check that they still run (their
/// figures mean nothing).
fn quick() -> bool {
    std::env::var("SSE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where the bench keeps data dirs and Redis's AOF: `$SSE_BENCH_DATA_DIR` (a directory on the
/// file system to measure), else the temp dir; a fresh `sse-bench-<pid>` folder inside it,
/// removed by [`remove_bench_dir`] at the end of `main`.
fn bench_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let parent = std::env::var_os("SSE_BENCH_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!("sse-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir.canonicalize().unwrap_or(dir)
    })
    .clone()
}

/// HTTPS against plain HTTP, side by side, each HTTPS twice: the server's own TLS, and nginx
/// terminating TLS in front of the server's plain HTTP (`deploy/nginx.conf` with README's
/// `listen ... ssl` lines, [`Nginx::start_front`]). Rows: idle streams (user-space memory per
/// stream, server + nginx) at 1,000 and 10,000, and the frame rate at 10,000 × 100 ms (CPU per
/// delivery, server + nginx), alternated over `SSE_BENCH_ROUNDS`; then the issue's ratios, then
/// the handshakes ([`handshake_scenario`]). One certificate for all: P-256, signed by a test
/// CA (`tests/common/pki.rs`), made with `openssl` in the bench directory. `SSE_BENCH_QUICK=1`:
/// 2,000 streams and 2 s windows, a check that it runs.
fn tls_scenario() {
    let dir = fresh_dir("tls");
    let pki = Pki::make(&dir, "s", KeyKind::Ecdsa);
    let plain = Spec::ours("sse-server (HTTP)", &[]);
    let tls = Spec {
        transport: Transport::Tls(pki.clone()),
        ..Spec::ours("sse-server (HTTPS)", &[])
    };
    let nginx = Spec {
        transport: Transport::Nginx(pki.clone()),
        ..Spec::ours("nginx (HTTPS) → sse-server (HTTP)", &[])
    };
    let mut kinds = vec![&plain, &tls];
    if nginx_program().is_some() {
        kinds.push(&nginx);
    } else {
        println!("Skipped: nginx in front (nginx is not installed).");
    }
    let specs: Vec<&Spec> = (0..rounds()).flat_map(|_| kinds.clone()).collect();
    let quick = quick();
    let (sizes, window_s): (&[usize], u64) = if quick {
        (&[2_000], 2)
    } else {
        (&[1_000, 10_000], 10)
    };
    let mut idle = Vec::new();
    for &streams in sizes {
        // Idle: a topic nobody publishes to; the heartbeat is far away.
        let case = Case {
            streams,
            interval_ms: 2000,
            window_s,
            client_threads: 2,
            path: "/sse?topic=bench-idle",
        };
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("Idle streams, HTTP and HTTPS", &case, &rows);
        idle = rows;
    }
    let case = Case {
        streams: *sizes.last().unwrap_or(&10_000),
        interval_ms: 100,
        window_s,
        client_threads: 2,
        path: "/sse",
    };
    let rate: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
    print_table("Frame rate, HTTP and HTTPS", &case, &rate);
    let names: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
    print_tls_ratios(&idle, &rate, &names);
    handshake_scenario();
}

/// The issue's HTTPS figures against plain HTTP, medians over rounds: the user-space memory of
/// an idle stream (the largest idle case) and the CPU per delivery at the frame rate.
fn print_tls_ratios(idle: &[Row], rate: &[Row], names: &[&str]) {
    let median_of_rows = |rows: &[Row], name: &str, f: &dyn Fn(&Row) -> f64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.name == name).map(f).collect();
        median(&v)
    };
    let (Some(i), Some(r)) = (idle.first(), rate.first()) else {
        return;
    };
    println!(
        "\n### HTTPS against HTTP: idle memory at {} streams, CPU per delivery at {} × 100 ms (medians over {} round(s))\n",
        i.streams,
        r.streams,
        rounds()
    );
    println!("| transport | idle: user-space RSS per stream (server + nginx) | vs HTTP | CPU per delivery (server + nginx) | vs HTTP | of it nginx's: RSS per stream, CPU |");
    println!("|---|---|---|---|---|---|");
    let base_rss = median_of_rows(idle, names[0], &Row::rss_per_stream);
    let base_cpu = median_of_rows(rate, names[0], &Row::cpu_us_per_frame);
    for &name in names {
        let rss = median_of_rows(idle, name, &Row::rss_per_stream);
        let cpu = median_of_rows(rate, name, &Row::cpu_us_per_frame);
        let nginx = |rows: &[Row], f: &dyn Fn(&Front, &Row) -> f64| {
            median_of_rows(rows, name, &|r| {
                r.front.as_ref().map_or(f64::NAN, |n| f(n, r))
            })
        };
        let front_rss = nginx(idle, &|n, r| {
            (n.rss_full as f64 - n.rss_base as f64) / r.streams as f64
        });
        let front_cpu = nginx(rate, &|n, r| n.cpu_pct / r.cpu_pct);
        println!(
            "| {name} | {rss:.0} B | {:.2}× | {cpu:.2} µs | {:.2}× | {} |",
            rss / base_rss,
            cpu / base_cpu,
            if front_rss.is_nan() {
                "—".to_string()
            } else {
                format!("{front_rss:.0} B, {:.0} % of the CPU", front_cpu * 100.0)
            }
        );
    }
}

/// nginx in the foreground (a master and its workers) on a fresh prefix in the bench
/// directory; stopped (SIGTERM, fast shutdown) and reaped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Terminating TLS in front of sse-server's plain HTTP on `upstream`: `deploy/nginx.conf` as
    /// shipped, its upstream pointed at the server and its `listen 80;` made README's HTTPS
    /// (`listen ... ssl` and the certificate lines, `reuseport` so the kernel spreads
    /// connections over the workers as it does over the server's loops); one worker per core,
    /// as the server has one loop per core; no access log (the server's is on, one line per
    /// stream, not per frame).
    fn start_front(pki: &Pki, upstream: u16) -> Nginx {
        let port = free_port();
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .expect("deploy/nginx.conf");
        let site = replace_once(
            &shipped,
            "server 127.0.0.1:3000;",
            &format!("server 127.0.0.1:{upstream};"),
        );
        let site = replace_once(
            &site,
            "listen 80;",
            &format!(
                "listen 127.0.0.1:{port} ssl reuseport backlog=4096;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;",
                pki.cert.display(),
                pki.key.display()
            ),
        );
        let site = replace_once(&site, "listen [::]:80;", "");
        Nginx::start("front", port, "auto", "access_log off;", &site)
    }

    /// Answering `GET /healthz` itself over TLS with `pki`'s certificate, one worker: the peer
    /// of the handshake rows. Its access log holds `$ssl_session_reused` per request, to show
    /// no handshake was a resumption.
    fn start_healthz(pki: &Pki) -> Nginx {
        let port = free_port();
        let site = format!(
            "server {{
    listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {};
    ssl_certificate_key {};
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /healthz {{ return 200 \"ok\\n\"; }}
}}
",
            pki.cert.display(),
            pki.key.display()
        );
        Nginx::start(
            "healthz",
            port,
            "1",
            "log_format reused '$ssl_session_reused';\n    access_log DIR/access.log reused buffer=64k flush=1s;",
            &site,
        )
    }

    /// `DIR` in `log` is the prefix.
    fn start(tag: &str, port: u16, workers: &str, log: &str, site: &str) -> Nginx {
        let dir = fresh_dir(&format!("nginx-{tag}"));
        let d = dir.display().to_string();
        std::fs::write(dir.join("site.conf"), site).expect("write site.conf");
        let log = log.replace("DIR", &d);
        // Descriptors: behind nginx a stream is two connections of a worker, so a worker may
        // use all the hard limit nginx inherits (raising it needs a privilege a container may
        // lack).
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let nofile = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
            0 => lim.rlim_max.min(1 << 20),
            _ => 20_000,
        };
        let main = format!(
            "daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {}; }}
http {{
    {log}
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
",
            nofile - 64
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).expect("write nginx.conf");
        let mut child = Command::new(nginx_program().expect("nginx is installed"))
            .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let error_log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nginx exited ({status}): {}", error_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not listen on {port}: {}",
                error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this bench started and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
        // What went wrong on nginx's side (descriptors, connections) is said, not lost.
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        for line in log.lines().filter(|l| {
            ["[alert]", "[crit]", "[emerg]"]
                .iter()
                .any(|level| l.contains(level))
        }) {
            eprintln!("nginx: {line}");
        }
    }
}

fn nginx_program() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// `text` with `from` replaced; the shipped file must contain it exactly once, or the bench
/// would quietly measure some other configuration.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx.conf must contain {from:?} once"
    );
    text.replacen(from, to, 1)
}

/// Who answers the handshakes.
#[derive(Clone, Copy)]
enum Peer {
    /// `sse-server --threads 1 --quiet` with its own HTTPS (`--tls-port`).
    Ours,
    /// nginx, one worker, answering `/healthz` itself ([`Nginx::start_healthz`]).
    Nginx,
}

/// One handshake row.
struct HandshakeRow {
    peer: &'static str,
    key: &'static str,
    /// What the clients agreed with it (protocol, suite, key exchange).
    negotiated: String,
    wall_s: f64,
    /// Connections the clients completed with a `200`, and those that failed.
    done: f64,
    failed: f64,
    /// Handshakes the server counted (`sse_tls_handshakes_total`, or nginx's access log lines).
    server_count: f64,
    /// Resumed handshakes by the server's account (nginx's log; `None` for sse-server, which
    /// does not count them: the clients never offer a session).
    resumed: Option<f64>,
    cpu_s: f64,
}

/// `SSE_BENCH_HANDSHAKE_CLIENTS`: how many client threads open connections at once (default:
/// two per core; each waits on its connection's round trips).
fn handshake_clients() -> usize {
    std::env::var("SSE_BENCH_HANDSHAKE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// New TLS connections per second on one core, against one peer: [`handshake_load`] for
/// `seconds`. The server's CPU over the run divided by the handshakes it counted is its cost
/// per handshake; one core's capacity is its inverse, whether or not the clients kept it busy.
fn handshakes(peer: Peer, key: &'static str, pki: &Pki, seconds: u64) -> HandshakeRow {
    let port = free_port();
    let (mut child, nginx, tls_port, pid) = match peer {
        Peer::Ours => {
            let tls_port = free_port();
            let mut cmd = Command::new(SSE_SERVER);
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--threads",
                    "1",
                    "--quiet",
                    "--tls-port",
                    &tls_port.to_string(),
                ])
                .arg("--tls-cert")
                .arg(&pki.cert)
                .arg("--tls-key")
                .arg(&pki.key)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd.spawn().expect("sse-server starts");
            let pid = child.id();
            wait_listening(port);
            wait_listening(tls_port);
            (Some(child), None, tls_port, pid)
        }
        Peer::Nginx => {
            let n = Nginx::start_healthz(pki);
            let (p, pid) = (n.port, n.child.id());
            (None, Some(n), p, pid)
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let count = || match peer {
        Peer::Ours => metric(port, "sse_tls_handshakes_total").unwrap_or(f64::NAN),
        Peer::Nginx => 0.0,
    };
    let before = count();
    let (cpu0, _) = tree_usage(pid);
    let t0 = Instant::now();
    let load = handshake_load(tls_port, &pki.ca, handshake_clients(), seconds);
    let wall_s = t0.elapsed().as_secs_f64();
    let (cpu1, _) = tree_usage(pid);
    let (server_count, resumed) = match nginx {
        Some(n) => {
            let log = n.dir.join("access.log");
            drop(n); // stops it, which flushes the access log
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let reused = text.lines().filter(|l| l.trim() == "r").count() as f64;
            (text.lines().count() as f64, Some(reused))
        }
        None => (count() - before, None),
    };
    if let Some(c) = child.as_mut() {
        stop_child(c);
    }
    HandshakeRow {
        peer: match peer {
            Peer::Ours => "sse-server --threads 1",
            Peer::Nginx => "nginx, worker_processes 1",
        },
        key,
        negotiated: load.negotiated,
        wall_s,
        done: load.done as f64,
        failed: load.failed as f64,
        server_count,
        resumed,
        cpu_s: cpu1 - cpu0,
    }
}

/// SIGTERM (a clean stop, as systemd does) and reap; nothing if it was reaped already.
fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        // SAFETY: kill(2) on a child this bench started and has not reaped (`try_wait` just
        // found it running; once it exits it stays a zombie until we reap it).
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let _ = child.wait();
}

/// What [`handshake_load`] did.
struct HandshakeLoad {
    done: u64,
    failed: u64,
    negotiated: String,
}

/// `clients` threads, each opening connections to 127.0.0.1:`port` one after another for
/// `seconds`: a full TLS handshake (rustls, the test CA trusted, resumption disabled, so no
/// session is ever offered), `GET /healthz` with `Connection: close`, the answer read to the
/// server's close. A connection counts as done when the answer is a `200`.
fn handshake_load(port: u16, ca: &std::path::Path, clients: usize, seconds: u64) -> HandshakeLoad {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("the CA's PEM") {
        roots.add(c.expect("a certificate")).expect("a usable CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let (done, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let negotiated = Mutex::new(String::new());
    let end = Instant::now() + Duration::from_secs(seconds);
    let one = || -> Result<String, String> {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let conn =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        // A close without close_notify is an error to rustls; what was read counts.
        let _ = s.read_to_end(&mut answer);
        if !answer.starts_with(b"HTTP/1.1 200") {
            return Err(String::from_utf8_lossy(&answer).into_owned());
        }
        let shown = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        Ok(format!(
            "{} {} {}",
            shown(s.conn.protocol_version().map(|v| format!("{v:?}"))),
            shown(
                s.conn
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
            ),
            shown(
                s.conn
                    .negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
            ),
        ))
    };
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                while Instant::now() < end {
                    match one() {
                        Ok(n) => {
                            if done.fetch_add(1, Ordering::Relaxed) == 0 {
                                *negotiated.lock().unwrap() = n;
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    HandshakeLoad {
        done: done.into_inner(),
        failed: failed.into_inner(),
        negotiated: negotiated.into_inner().unwrap(),
    }
}

/// `handshakes` (also part of `tls`): sse-server and nginx, each on one core, the same
/// certificate, P-256 ECDSA then RSA-2048, rows alternated over `SSE_BENCH_ROUNDS`.
fn handshake_scenario() {
    if nginx_program().is_none() {
        println!("Skipped: handshakes against nginx (not installed).");
    }
    let dir = fresh_dir("handshakes");
    let keys = [
        ("ECDSA P-256", Pki::make(&dir, "ecdsa", KeyKind::Ecdsa)),
        ("RSA-2048", Pki::make(&dir, "rsa", KeyKind::Rsa)),
    ];
    let seconds = if quick() { 2 } else { 10 };
    let mut rows = Vec::new();
    for _ in 0..rounds() {
        for (key, pki) in &keys {
            rows.push(handshakes(Peer::Ours, key, pki, seconds));
            if nginx_program().is_some() {
                rows.push(handshakes(Peer::Nginx, key, pki, seconds));
            }
        }
    }
    println!(
        "\n### TLS handshakes on one core: {} client threads for {seconds} s, each connection a full handshake (rustls, no resumption), `GET /healthz`, the server's close\n",
        handshake_clients()
    );
    println!("| server | key | negotiated | connections done / failed | handshakes the server counted | resumed | handshakes/s reached | server CPU | server CPU per handshake | one core's capacity (1 / CPU per handshake) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let per = r.cpu_s / r.server_count;
        println!(
            "| {} | {} | {} | {:.0} / {:.0} | {:.0} | {} | {:.0} | {:.0} % | {:.1} µs | {:.0} /s |",
            r.peer,
            r.key,
            r.negotiated,
            r.done,
            r.failed,
            r.server_count,
            r.resumed
                .map_or("— (not offered)".to_string(), |n| format!("{n:.0}")),
            r.server_count / r.wall_s,
            r.cpu_s / r.wall_s * 100.0,
            per * 1e6,
            1.0 / per
        );
    }
    println!("\nA server CPU well under 100 % means the clients, not the server, set the rate reached: the capacity column is the server's figure.");
    for (key, _) in &keys {
        let capacity = |peer: &str| {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| r.key == *key && r.peer.starts_with(peer))
                .map(|r| r.server_count / r.cpu_s)
                .collect();
            median(&v)
        };
        println!(
            "- {key}: sse-server's capacity {:.2}× nginx's (medians)",
            capacity("sse-server") / capacity("nginx")
        );
    }
}

fn remove_bench_dir() {
    let _ = std::fs::remove_dir_all(bench_dir());
}

/// An empty directory `name` in [`bench_dir`] (emptied if a previous row left one).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = bench_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The file system holding `path`, from `/proc/self/mounts` (the longest mount point above it).
fn file_system_of(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0], f[1]))
        })
        .max_by_key(|m| m.0)
        .map_or("unknown file system".into(), |(_, kind, dev, at)| {
            format!("{kind} on {dev}, mounted at {at}")
        })
}

/// The value at quantile `q` of sorted samples (the nearest rank: for percentiles of samples).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median of values in any order (say, one figure over rounds): the middle one, or the mean
/// of the two middle ones for an even count; NaN for none.
fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// How the floor's records reach the file.
#[derive(Clone, Copy, PartialEq)]
enum Floor {
    /// Appended: each sync also makes the file's new size durable (metadata to journal).
    Append,
    /// Written over space allocated and zero-filled (and synced) beforehand: each sync has
    /// only the data to write.
    Overwrite,
    /// Over preallocated zeros through a descriptor opened `O_DIRECT | O_DSYNC`: each round
    /// `pwrite`s the 4 KiB block holding the record from a 4 KiB-aligned buffer, and the write
    /// returns once the block is durable, no page cache and no separate sync.
    Direct,
}

impl Floor {
    const ALL: [Floor; 3] = [Floor::Append, Floor::Overwrite, Floor::Direct];

    fn name(self) -> &'static str {
        match self {
            Floor::Append => "128-byte write + fdatasync, appended",
            Floor::Overwrite => "128-byte write + fdatasync, over preallocated zeros",
            Floor::Direct => "4 KiB pwrite, O_DIRECT|O_DSYNC, over preallocated zeros",
        }
    }
}

/// The floor's pace: syncs back to back, or one every `1 / rate` seconds (the fixed-rate
/// publisher's cadence: a sync after ~10 ms idle costs more than one in a tight loop).
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    BackToBack,
    Rate(f64),
}

impl Pace {
    fn name(self) -> String {
        match self {
            Pace::BackToBack => "back-to-back".into(),
            Pace::Rate(r) => format!("one every {:.0} ms ({r}/s)", 1e3 / r),
        }
    }
}

/// One floor measurement: its kind, its pace, and its samples (ms, sorted; `None` when the file
/// system refuses `O_DIRECT`, as tmpfs does).
struct FloorRun {
    how: Floor,
    pace: Pace,
    ms: Option<Vec<f64>>,
}

/// The 4 KiB block size of [`Floor::Direct`], and its buffer's alignment.
const BLOCK: usize = 4096;

/// A zeroed [`BLOCK`]-byte buffer aligned to [`BLOCK`], as `O_DIRECT` wants.
struct AlignedBlock(std::ptr::NonNull<u8>);

impl AlignedBlock {
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("a 4 KiB layout")
    }

    fn new() -> AlignedBlock {
        let layout = Self::layout();
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        AlignedBlock(
            std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout)),
        )
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: BLOCK bytes allocated and zeroed (so initialized) by `new`, owned by self and
        // borrowed mutably through it.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), BLOCK) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), Self::layout()) }
    }
}

/// The floor, `rounds` times at `pace`, in milliseconds, sorted: `write` of a 128-byte record
/// and `File::sync_data` (fdatasync), timed together; or, [`Floor::Direct`], the `pwrite` alone
/// of the 4 KiB block holding the record (it syncs). The file is created (zero-filled for the
/// preallocated kinds) and synced first, so the loop pays what a log pays per group commit. At
/// a rate, each round starts at its time (`start + i / rate`), as the fixed-rate publisher's
/// do, so the disk idles between syncs as it does under that publisher. `None` when opening
/// with `O_DIRECT` fails (e.g. tmpfs).
fn sync_floor(rounds: usize, how: Floor, pace: Pace) -> Option<Vec<f64>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let dir = fresh_dir("floor");
    let path = dir.join("sync");
    let file = std::fs::File::create(&path).expect("create the floor's file");
    if how != Floor::Append {
        let len = (rounds * 128).div_ceil(BLOCK) * BLOCK;
        file.write_all_at(&vec![0u8; len], 0).expect("zero-fill");
    }
    file.sync_all().expect("sync");
    let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
    let direct = match how {
        Floor::Direct => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                .open(&path)
                .ok()?,
        ),
        _ => None,
    };
    let mut block = AlignedBlock::new();
    let record = [0x5au8; 128];
    let period = match pace {
        Pace::BackToBack => None,
        Pace::Rate(r) => Some(Duration::from_secs_f64(1.0 / r)),
    };
    let start = Instant::now();
    let mut ms = Vec::with_capacity(rounds);
    for i in 0..rounds {
        if let Some(period) = period {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let at = i * 128;
        if direct.is_some() {
            // The block as the file holds it: the records so far, zeros after.
            let bytes = block.bytes();
            if at % BLOCK == 0 {
                bytes.fill(0);
            }
            bytes[at % BLOCK..at % BLOCK + 128].copy_from_slice(&record);
        }
        let t = Instant::now();
        match &direct {
            Some(direct) => {
                // EINVAL here too on a file system that accepts the flag but not the write.
                direct
                    .write_all_at(block.bytes(), (at / BLOCK * BLOCK) as u64)
                    .ok()?;
            }
            None => {
                file.write_all_at(&record, at as u64).expect("write");
                file.sync_data().expect("fdatasync");
            }
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Some(sorted(ms))
}

/// Where a durable row keeps its history.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    DataDir(&'static str),
    /// Redis with `appendonly yes` and this `appendfsync`.
    Redis(&'static str),
    /// `--data-dir` with this `--fsync`, run by the `SSE_BENCH_BASELINE` binary.
    Baseline(&'static str),
}

impl Store {
    /// The rows: [`Store::ALL`], with `batch` by the baseline binary after ours when
    /// `SSE_BENCH_BASELINE` names one.
    fn rows() -> Vec<Store> {
        let mut v = Store::ALL.to_vec();
        if baseline().is_some() {
            v.insert(2, Store::Baseline("batch"));
        }
        v
    }

    const ALL: [Store; 5] = [
        Store::Memory,
        Store::DataDir("batch"),
        Store::DataDir("always"),
        Store::Redis("everysec"),
        Store::Redis("always"),
    ];

    fn name(self) -> String {
        match self {
            Store::Memory => "sse-server (memory history)".into(),
            Store::DataDir(f) => format!("sse-server --data-dir --fsync {f}"),
            Store::Redis(f) => format!("sse-server --redis (appendfsync {f})"),
            Store::Baseline(f) => format!("sse-server --data-dir --fsync {f} (baseline)"),
        }
    }

    /// The name in the goals' lines: `batch`, `Redis everysec`.
    fn short(self) -> String {
        match self {
            Store::Memory => "memory".into(),
            Store::DataDir(f) => f.into(),
            Store::Redis(f) => format!("Redis {f}"),
            Store::Baseline(f) => format!("{f} (baseline)"),
        }
    }
}

/// A `redis-server` of one durable row: AOF on (`appendonly yes`, `appendfsync` as given), RDB
/// snapshots off, its files in a fresh directory of [`bench_dir`]; shut down when dropped.
struct AofRedis {
    child: Child,
    port: u16,
}

impl AofRedis {
    fn start(appendfsync: &str) -> Option<AofRedis> {
        let program = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = free_port();
        let dir = fresh_dir(&format!("redis-{appendfsync}"));
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                appendfsync,
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let redis = AofRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for AofRedis {
    fn drop(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            use std::io::Write;
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `wrk --latency` printed: requests/s, latency p50 / p99 in ms, requests, non-2xx
/// answers, and its socket-errors line (empty when none).
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: f64,
    non_2xx: f64,
    errors: String,
}

impl Wrk {
    /// Successful publishes a second: wrk's requests/s without its non-2xx answers.
    fn ok_rps(&self) -> f64 {
        if self.non_2xx > 0.0 {
            self.rps * (1.0 - self.non_2xx / self.requests)
        } else {
            self.rps
        }
    }
}

/// `1.23ms`, `456.00us`, `1.01s`, `2.00m` as milliseconds.
fn wrk_duration_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        _ => f64::NAN,
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

fn parse_wrk(out: &str) -> Wrk {
    let after = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let number = |prefix: &str| after(prefix).and_then(|v| v.parse().ok());
    Wrk {
        rps: number("Requests/sec:").unwrap_or(f64::NAN),
        p50_ms: after("50%").map_or(f64::NAN, wrk_duration_ms),
        p99_ms: after("99%").map_or(f64::NAN, wrk_duration_ms),
        requests: out
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN),
        non_2xx: number("Non-2xx or 3xx responses:").unwrap_or(0.0),
        errors: after("Socket errors:").unwrap_or_default().to_string(),
    }
}

/// The publisher's connection counts under wrk, one wrk phase each: `SSE_BENCH_WRK_CONNECTIONS`,
/// one count or a comma-separated list (`16,64,256`), default 16; repeats dropped.
fn wrk_connections() -> Vec<u32> {
    let Ok(v) = std::env::var("SSE_BENCH_WRK_CONNECTIONS") else {
        return vec![16];
    };
    let mut counts = Vec::new();
    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let c: u32 = c.parse().ok().filter(|&c| c > 0).unwrap_or_else(|| {
            panic!("SSE_BENCH_WRK_CONNECTIONS={v:?}: want positive counts, comma-separated")
        });
        if !counts.contains(&c) {
            counts.push(c);
        }
    }
    if counts.is_empty() {
        counts.push(16);
    }
    counts
}

fn wrk_installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `wrk -t1 -cC -dNs --latency -s benches/publish.lua`: publishes as fast as answers come, from
/// C `connections` (one of `SSE_BENCH_WRK_CONNECTIONS`: a group commit's groups are at most C).
fn wrk_publish(port: u16, seconds: u64, connections: u32) -> Wrk {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/publish.lua");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
            script,
        ])
        .arg(format!("http://127.0.0.1:{port}/publish"))
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk runs");
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// `sse-load`'s publisher at a fixed rate (one request at a time on one keep-alive connection)
/// with 10 subscribers: answer and publish-to-deliver latency below saturation.
fn rated_publish(port: u16, rate: f64, window_s: u64) -> Value {
    let base = format!("http://127.0.0.1:{port}");
    let out = Command::new(SSE_LOAD)
        .args([&format!("{base}/sse?topic=bench"), "-c", "10"])
        // Publishing runs from the end of the warm-up to the drain: `window_s` seconds.
        .args([
            "-d",
            &(window_s + 2).to_string(),
            "--warmup",
            "1",
            "--drain",
            "1",
        ])
        .args(["--publish-url", &format!("{base}/publish")])
        .args(["--publish-format", "form", "--publish-topic", "bench"])
        .args(["--publish-rate", &rate.to_string(), "--json", "--quiet"])
        .stderr(Stdio::inherit())
        .output()
        .expect("sse-load runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sse-load --json output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Starts `sse-server` (flags `extra`) and waits until it listens.
fn spawn_ours(port: u16, extra: &[String]) -> Child {
    spawn_bin(SSE_SERVER, port, extra)
}

fn spawn_bin(bin: &str, port: u16, extra: &[String]) -> Child {
    let child = Command::new(bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sse-server starts");
    wait_listening(port);
    child
}

/// The light client: one keep-alive connection, blocking, `rate` publishes a second for
/// `window_s` seconds (each sent at its time, or at once if the previous answer came late),
/// timing only each round trip (request written to answer read), in ms, sorted. Every answer
/// must be 200.
fn light_publish(port: u16, rate: f64, window_s: u64) -> Vec<f64> {
    use std::io::{BufReader, Write};
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect the light client");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let n = (rate * window_s as f64) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let request = publish_request(
            "bench",
            &format!("%7B%22seq%22%3A{i}%2C%22light%22%3Atrue%7D"),
        );
        let t = Instant::now();
        writer.write_all(request.as_bytes()).expect("publish");
        let status = read_answer(&mut reader);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "light publish {i}: {status}"
        );
    }
    sorted(ms)
}

/// A keep-alive `POST /publish` of `data` (form-encoded already) to `topic`, as a form.
fn publish_request(topic: &str, data: &str) -> String {
    let body = format!("topic={topic}&data={data}");
    format!(
        "POST /publish HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The whole `/metrics` text now (empty if it could not be read).
fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// A latency histogram read from `/metrics`: cumulative counts by upper bound (ms; the last
/// `+Inf`) and the sum (ms).
#[derive(Clone, Default)]
struct Hist {
    bounds_ms: Vec<f64>,
    cumulative: Vec<f64>,
    sum_ms: f64,
}

impl Hist {
    /// Histogram `name` with `label` (`store="memory"`, or empty) in a `/metrics` text.
    fn read(text: &str, name: &str, label: &str) -> Hist {
        let sep = if label.is_empty() { "" } else { "," };
        let bucket = format!("{name}_bucket{{{label}{sep}le=\"");
        let sum = if label.is_empty() {
            format!("{name}_sum ")
        } else {
            format!("{name}_sum{{{label}}} ")
        };
        let mut h = Hist::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&bucket) {
                let Some((le, n)) = rest.split_once("\"} ") else {
                    continue;
                };
                h.bounds_ms
                    .push(le.parse::<f64>().map_or(f64::INFINITY, |s| s * 1e3));
                h.cumulative.push(n.trim().parse().unwrap_or(f64::NAN));
            } else if let Some(v) = line.strip_prefix(&sum) {
                h.sum_ms = v.trim().parse::<f64>().unwrap_or(f64::NAN) * 1e3;
            }
        }
        h
    }

    /// What was recorded between `earlier` and `self`.
    fn since(&self, earlier: &Hist) -> Hist {
        let before = |i: usize| earlier.cumulative.get(i).copied().unwrap_or(0.0);
        Hist {
            bounds_ms: self.bounds_ms.clone(),
            cumulative: self
                .cumulative
                .iter()
                .enumerate()
                .map(|(i, c)| c - before(i))
                .collect(),
            sum_ms: self.sum_ms - earlier.sum_ms,
        }
    }

    fn count(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    fn mean_ms(&self) -> f64 {
        self.sum_ms / self.count()
    }

    /// Quantile `q`, interpolated linearly within its bucket (so known to within that
    /// bucket's width); the last finite bound if it fell in `+Inf`.
    fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total.is_nan() || total <= 0.0 {
            return f64::NAN;
        }
        let want = q * total;
        let mut low = 0.0;
        let mut below = 0.0;
        for (b, c) in self.bounds_ms.iter().zip(&self.cumulative) {
            if *c >= want {
                if b.is_infinite() {
                    return low;
                }
                let inside = c - below;
                let f = if inside > 0.0 {
                    (want - below) / inside
                } else {
                    1.0
                };
                return low + f * (b - low);
            }
            low = *b;
            below = *c;
        }
        f64::NAN
    }
}

/// The publish answer histogram's label for a row's store.
fn store_label(store: Store) -> &'static str {
    match store {
        Store::Memory => "store=\"memory\"",
        Store::DataDir(_) | Store::Baseline(_) => "store=\"data-dir\"",
        Store::Redis(_) => "store=\"redis\"",
    }
}

/// The server's own figures over one phase of a row: its publish answers, and with the data
/// dir the stages of its log (queue, write, sync, stored).
#[derive(Clone, Default)]
struct ServerSide {
    answer: Hist,
    queue: Hist,
    write: Hist,
    sync: Hist,
    stored: Hist,
}

impl ServerSide {
    fn between(before: &str, after: &str, store: Store) -> ServerSide {
        let h = |name: &str, label: &str| {
            Hist::read(after, name, label).since(&Hist::read(before, name, label))
        };
        ServerSide {
            answer: h("sse_publish_answer_seconds", store_label(store)),
            queue: h("sse_data_log_queue_seconds", ""),
            write: h("sse_data_log_write_seconds", ""),
            sync: h("sse_data_log_sync_seconds", ""),
            stored: h("sse_data_log_stored_seconds", ""),
        }
    }
}

struct DurableRow {
    store: Store,
    /// `None` when the store could not be started (no `redis-server`).
    rated: Option<Value>,
    /// The light client's round trips (ms, sorted).
    light: Vec<f64>,
    /// The server's figures during sse-load's fixed rate and the light client's.
    server_rated: ServerSide,
    server_light: ServerSide,
    /// One per wrk connection count, in `SSE_BENCH_WRK_CONNECTIONS`'s order (none without wrk or
    /// the store).
    wrk: Vec<WrkPhase>,
}

/// One wrk phase of a row: its connection count, wrk's figures and the server's.
struct WrkPhase {
    connections: u32,
    wrk: Wrk,
    server: ServerSide,
}

impl DurableRow {
    /// The wrk phase at `connections`, if it ran.
    fn wrk_at(&self, connections: u32) -> Option<&WrkPhase> {
        self.wrk.iter().find(|p| p.connections == connections)
    }
}

/// A fresh server on a store (a fresh data dir, or a fresh Redis), stopped by [`Running::stop`]
/// or when dropped (a panic too), then its Redis.
struct Running {
    server: Child,
    redis: Option<AofRedis>,
    port: u16,
}

impl Running {
    /// `None` when the store cannot be started (no `redis-server`).
    fn start(store: Store) -> Option<Running> {
        let port = free_port();
        let mut redis = None;
        let extra: Vec<String> = match store {
            Store::Memory => Vec::new(),
            Store::DataDir(fsync) | Store::Baseline(fsync) => {
                let dir = fresh_dir(&format!("data-{fsync}"));
                vec![
                    "--data-dir".into(),
                    dir.display().to_string(),
                    "--fsync".into(),
                    fsync.into(),
                ]
            }
            Store::Redis(appendfsync) => {
                let r = AofRedis::start(appendfsync)?;
                let url = format!("redis://127.0.0.1:{}", r.port);
                redis = Some(r);
                vec!["--redis".into(), url]
            }
        };
        let server = match (store, baseline()) {
            (Store::Baseline(_), Some(bin)) => spawn_bin(&bin, port, &extra),
            _ => spawn_ours(port, &extra),
        };
        Some(Running {
            server,
            redis,
            port,
        })
    }

    fn stop(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_child(&mut self.server);
        drop(self.redis.take());
    }
}

/// One row: a fresh server (and a fresh Redis or data dir) for the rated publisher and the light
/// client, then per count in `connections` another fresh one for wrk, so that every wrk phase
/// starts from the same empty store.
fn run_store(store: Store, rate: f64, window_s: u64, connections: &[u32]) -> DurableRow {
    let Some(running) = Running::start(store) else {
        return DurableRow {
            store,
            rated: None,
            light: Vec::new(),
            server_rated: ServerSide::default(),
            server_light: ServerSide::default(),
            wrk: Vec::new(),
        };
    };
    let port = running.port;
    let m0 = metrics_text(port);
    let rated = rated_publish(port, rate, window_s);
    let m1 = metrics_text(port);
    let light = light_publish(port, rate, window_s);
    let m2 = metrics_text(port);
    running.stop();
    let mut wrk = Vec::new();
    for &c in connections {
        let Some(running) = Running::start(store) else {
            break;
        };
        let before = metrics_text(running.port);
        let w = wrk_publish(running.port, window_s, c);
        let after = metrics_text(running.port);
        running.stop();
        wrk.push(WrkPhase {
            connections: c,
            wrk: w,
            server: ServerSide::between(&before, &after, store),
        });
    }
    DurableRow {
        store,
        rated: Some(rated),
        light,
        server_rated: ServerSide::between(&m0, &m1, store),
        server_light: ServerSide::between(&m1, &m2, store),
        wrk,
    }
}

/// Reads one HTTP/1.1 answer on a keep-alive connection: its status line, returned, then its
/// head and its `Content-Length` body, skipped.
fn read_answer(reader: &mut impl std::io::BufRead) -> String {
    let mut status = String::new();
    reader.read_line(&mut status).expect("answer");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("answer head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut skip = vec![0; length];
    reader.read_exact(&mut skip).expect("answer body");
    status
}

/// A keep-alive client that publishes `count` events of `size` bytes of data, sequentially,
/// and checks each answer is 200.
fn fill(port: u16, count: usize, size: usize) {
    use std::io::{BufReader, Write};
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to fill");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let request = publish_request("fill", &"x".repeat(size));
    for i in 0..count {
        writer.write_all(request.as_bytes()).expect("publish");
        let status = read_answer(&mut reader);
        assert!(status.starts_with("HTTP/1.1 200"), "fill {i}: {status}");
    }
}

/// Whether `GET /healthz` answers 200 now.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut text).is_ok()
        && text.starts_with("HTTP/1.1 200")
}

/// Evicts a directory's files from the page cache (`POSIX_FADV_DONTNEED`, after a sync so
/// the pages are clean), so the next start reads them from the disk.
fn evict(dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(f) = std::fs::File::open(entry.path()) {
            let _ = f.sync_all();
            // SAFETY: posix_fadvise on a descriptor we own, whole file.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

struct Startup {
    events: f64,
    history_bytes: f64,
    disk_bytes: f64,
    recovered: f64,
    /// Spawn to the first 200 of `/healthz`, in ms, sorted: page cache warm, then evicted.
    warm_ms: Vec<f64>,
    cold_ms: Vec<f64>,
}

/// Fills a data dir past the default history (10,000 events, 64 MiB), then times starts.
fn startup(events: usize, starts: usize) -> Startup {
    let dir = fresh_dir("startup");
    let flags = vec![
        "--data-dir".to_string(),
        dir.display().to_string(),
        "--fsync".into(),
        "off".into(),
    ];
    let port = free_port();
    let server = Running {
        server: spawn_ours(port, &flags),
        redis: None,
        port,
    };
    // 6,500 bytes of data: 10,000 events cost ~66 MB of the 64 MiB (67.1 MB) history bytes,
    // so both limits are nearly reached; 2 % more events so the oldest have been dropped.
    fill(port, events + events / 50, 6_500);
    let held = |p: u16, name: &str| metric(p, name).unwrap_or(f64::NAN);
    let (held_events, history_bytes) = (
        held(port, "sse_hub_history_events"),
        held(port, "sse_hub_history_bytes"),
    );
    let disk_bytes = held(port, "sse_data_log_bytes");
    server.stop();
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    let mut recovered = f64::NAN;
    for i in 0..2 * starts {
        let evicted = i % 2 == 1;
        if evicted {
            evict(&dir);
        }
        let port = free_port();
        let t = Instant::now();
        let server = Command::new(SSE_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(&flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sse-server starts");
        let mut child = Running {
            server,
            redis: None,
            port,
        };
        while !healthy(port) {
            assert!(
                t.elapsed() < Duration::from_secs(60)
                    && matches!(child.server.try_wait(), Ok(None)),
                "sse-server did not answer /healthz with 200"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if evicted { &mut cold } else { &mut warm }.push(ms);
        recovered = held(port, "sse_data_log_recovered_events");
        child.stop();
    }
    Startup {
        events: held_events,
        history_bytes,
        disk_bytes,
        recovered,
        warm_ms: sorted(warm),
        cold_ms: sorted(cold),
    }
}

/// The median over rounds of one store's figure.
fn median_of(rows: &[DurableRow], store: Store, figure: impl Fn(&DurableRow) -> f64) -> f64 {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.store == store)
        .map(figure)
        .filter(|v| !v.is_nan())
        .collect();
    median(&v)
}

fn json_f64(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// Issue's `Performance` section: the disk's sync floor, publishes against memory, the data
/// dir (`batch`, `always`) and Redis's AOF (`everysec`, `always`), and start-up with a full
/// history, rows alternated over `SSE_BENCH_ROUNDS`.
fn durable_scenario() {
    let quick = quick();
    let (floor_rounds, cadence_rounds, window_s, rate, events, starts) = if quick {
        (200, 50, 2, 50.0, 1_000, 1)
    } else {
        (2_000, 400, 10, 100.0, 10_000, 5)
    };
    let wrk = wrk_installed();
    let connections = if wrk { wrk_connections() } else { Vec::new() };
    let dir = bench_dir();
    let counts = connections
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let wrk_phases = if connections.is_empty() {
        String::new()
    } else {
        format!(", then per C in {counts} a fresh server and `wrk -t1 -cC -d{window_s}s --latency -s benches/publish.lua`")
    };
    println!(
        "\n### Durable history: the floor ({floor_rounds} syncs back to back, {cadence_rounds} at {rate}/s, per kind); per row a fresh server, `sse-load` at {rate} publishes/s for {window_s} s (10 subscribers) and the light client{wrk_phases}{}\n",
        if quick { " (SSE_BENCH_QUICK: figures not meaningful)" } else { "" }
    );
    println!(
        "Data dirs, the floor's file and Redis's AOF in {} ({}).",
        dir.display(),
        file_system_of(&dir)
    );
    if !wrk {
        println!("Skipped: wrk (not installed): no throughput columns.");
    }
    let mut floors = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..rounds() {
        for (pace, n) in [
            (Pace::BackToBack, floor_rounds),
            (Pace::Rate(rate), cadence_rounds),
        ] {
            for how in Floor::ALL {
                let ms = sync_floor(n, how, pace);
                floors.push(FloorRun { how, pace, ms });
            }
        }
        for store in Store::rows() {
            rows.push(run_store(store, rate, window_s, &connections));
        }
    }
    println!("\n| floor | pace | syncs | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for f in &floors {
        let Some(ms) = &f.ms else {
            println!(
                "| {} | {} | not supported here (O_DIRECT refused) | | | | |",
                floor_cell(f.how),
                f.pace.name()
            );
            continue;
        };
        println!(
            "| {} | {} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            floor_cell(f.how),
            f.pace.name(),
            ms.len(),
            quantile(ms, 0.5),
            quantile(ms, 0.9),
            quantile(ms, 0.99),
            quantile(ms, 1.0)
        );
    }
    print_durable_rows(&rows, rate, &connections);
    print_durable_server_side(&rows, rate);
    let s = startup(events, starts);
    println!(
        "\nStart-up with a full history: {} events, {:.1} MiB held (limits 10,000 events, 64 MiB), {:.1} MiB of segments, {} events recovered at the last start; spawn to the first `/healthz` 200:\n",
        s.events,
        s.history_bytes / 1048576.0,
        s.disk_bytes / 1048576.0,
        s.recovered
    );
    println!("| page cache | starts | min | median | max |");
    println!("|---|---|---|---|---|");
    for (label, v) in [
        ("warm", &s.warm_ms),
        ("segments evicted (POSIX_FADV_DONTNEED)", &s.cold_ms),
    ] {
        println!(
            "| {label} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            v.len(),
            quantile(v, 0.0),
            median(v),
            quantile(v, 1.0)
        );
    }
    print_durable_ratios(&rows, &floors, rate, &connections);
}

/// The wrk column heads, one per connection count.
fn wrk_heads(connections: &[u32], what: &str) -> String {
    connections
        .iter()
        .map(|c| format!(" {} |", format!("wrk -c{c} {what}").trim_end()))
        .collect()
}

/// A floor's name in a table cell (its `|` escaped).
fn floor_cell(how: Floor) -> String {
    how.name().replace('|', "\\|")
}

fn print_durable_rows(rows: &[DurableRow], rate: f64, connections: &[u32]) {
    println!(
        "\n| store |{} at {rate}/s: ok / sent | at {rate}/s: answer p50 / p99 / max | at {rate}/s: publish→deliver p99 |",
        wrk_heads(connections, "publishes/s (2xx only)")
    );
    println!("|---|{}---|---|---|", "---|".repeat(connections.len()));
    for r in rows {
        let Some(rated) = &r.rated else {
            println!(
                "| {} | not run (redis-server missing or not answering) |{}",
                r.store.name(),
                " |".repeat(connections.len() + 2)
            );
            continue;
        };
        let g = |p: &str| json_f64(rated, p);
        let rps: String = connections
            .iter()
            .map(|&c| match r.wrk_at(c) {
                Some(p) => format!(" {:.0} |", p.wrk.ok_rps()),
                None => " — |".into(),
            })
            .collect();
        println!(
            "| {} |{rps} {} / {} | {:.2} / {:.2} / {:.1} ms | {:.2} ms |",
            r.store.name(),
            g("hub.published.ok"),
            g("hub.published.sent"),
            g("hub.published.answer_ms.p50"),
            g("hub.published.answer_ms.p99"),
            g("hub.published.answer_ms.max"),
            g("hub.deliver_ms.p99"),
        );
    }
    if connections.is_empty() {
        return;
    }
    println!("\nThe wrk phases (each on a fresh server and store), answers as wrk saw them and as the server did (`sse_publish_answer_seconds`, interpolated within buckets):\n");
    println!("| store | wrk -c | publishes/s (2xx only) | non-2xx / requests | answer p50 / p99 | server answer p50 / p99 | socket errors |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        for p in &r.wrk {
            let w = &p.wrk;
            let errors = if w.errors.is_empty() {
                "none"
            } else {
                &w.errors
            };
            println!(
                "| {} | {} | {:.0} | {} / {} | {:.2} / {:.2} ms | {:.3} / {:.3} ms | {errors} |",
                r.store.name(),
                p.connections,
                w.ok_rps(),
                w.non_2xx,
                w.requests,
                w.p50_ms,
                w.p99_ms,
                p.server.answer.quantile_ms(0.5),
                p.server.answer.quantile_ms(0.99),
            );
        }
    }
}

/// The server's own answer times beside the clients', and the data dir's stages.
fn print_durable_server_side(rows: &[DurableRow], rate: f64) {
    let pair = |h: &Hist| format!("{:.3} / {:.3} ms", h.quantile_ms(0.5), h.quantile_ms(0.99));
    println!("\nAnswer times seen by the server (`sse_publish_answer_seconds`: request complete to the answer's last byte written; p50 / p99 interpolated within buckets 25-250 µs wide below 1 ms) beside the clients' (sse-load's publisher with 10 subscribers; the light client: one keep-alive connection, blocking, timing the round trip only); wrk's are in the table above:\n");
    println!("| store | sse-load at {rate}/s: client p50 / p99 | server p50 / p99 | light client at {rate}/s: round trip p50 / p99 / max | server p50 / p99 |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let Some(rated) = &r.rated else {
            continue;
        };
        let l = &r.light;
        println!(
            "| {} | {:.3} / {:.3} ms | {} | {:.3} / {:.3} / {:.3} ms | {} |",
            r.store.name(),
            json_f64(rated, "hub.published.answer_ms.p50"),
            json_f64(rated, "hub.published.answer_ms.p99"),
            pair(&r.server_rated.answer),
            quantile(l, 0.5),
            quantile(l, 0.99),
            quantile(l, 1.0),
            pair(&r.server_light.answer),
        );
    }
    println!("\nThe data dir's stages (mean / p99, ms): queue (submit to the log's thread taking it), write, sync (per batch), stored (submit to the log's answer), the server's answer, and what follows the log's answer (answer − stored: the hand-back through the loop's waker and the answer's write), per phase:\n");
    println!("| store | phase | publishes | per sync | queue | write | sync | stored | answer | answer − stored (mean) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // A figure, or a dash where a phase had nothing to measure (0 / 0).
    let cell = |v: f64, digits: usize| {
        if v.is_finite() {
            format!("{v:.digits$}")
        } else {
            "—".to_string()
        }
    };
    let mp = |h: &Hist| {
        if h.count() > 0.0 {
            format!("{:.3} / {:.3}", h.mean_ms(), h.quantile_ms(0.99))
        } else {
            "—".to_string()
        }
    };
    for r in rows
        .iter()
        .filter(|r| matches!(r.store, Store::DataDir(_) | Store::Baseline(_)))
    {
        let phases = std::iter::once((format!("light client, {rate}/s"), &r.server_light)).chain(
            r.wrk
                .iter()
                .map(|p| (format!("wrk -c{}", p.connections), &p.server)),
        );
        for (phase, s) in phases {
            println!(
                "| {} | {phase} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                r.store.name(),
                s.stored.count(),
                cell(s.stored.count() / s.sync.count(), 1),
                mp(&s.queue),
                mp(&s.write),
                mp(&s.sync),
                mp(&s.stored),
                mp(&s.answer),
                cell(s.answer.mean_ms() - s.stored.mean_ms(), 3),
            );
        }
    }
}

/// The median over rounds of one floor's p99 (NaN if it never ran here).
fn floor_p99(floors: &[FloorRun], how: Floor, pace: Pace) -> f64 {
    let v: Vec<f64> = floors
        .iter()
        .filter(|f| f.how == how && f.pace == pace)
        .filter_map(|f| f.ms.as_ref().map(|ms| quantile(ms, 0.99)))
        .collect();
    median(&v)
}

/// The floor kind with the lowest p99 at `pace`, and that p99: the comparison's denominator, so
/// that no ratio is flattered by a slow way of syncing.
fn fastest_floor(floors: &[FloorRun], pace: Pace) -> (Floor, f64) {
    Floor::ALL
        .into_iter()
        .map(|how| (how, floor_p99(floors, how, pace)))
        .filter(|(_, p99)| !p99.is_nan())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((Floor::Append, f64::NAN))
}

/// The issue's goals, from the medians over rounds.
fn print_durable_ratios(rows: &[DurableRow], floors: &[FloorRun], rate: f64, connections: &[u32]) {
    let rps = |s, c| {
        median_of(rows, s, |r| {
            r.wrk_at(c).map_or(f64::NAN, |p| p.wrk.ok_rps())
        })
    };
    let wrk_p99 = |s, c| median_of(rows, s, |r| r.wrk_at(c).map_or(f64::NAN, |p| p.wrk.p99_ms));
    let wrk_server_p99 = |s, c| {
        median_of(rows, s, |r| {
            r.wrk_at(c)
                .map_or(f64::NAN, |p| p.server.answer.quantile_ms(0.99))
        })
    };
    let rated_p99 = |s| {
        median_of(rows, s, |r| {
            r.rated
                .as_ref()
                .map_or(f64::NAN, |v| json_f64(v, "hub.published.answer_ms.p99"))
        })
    };
    let light_p99 = |s| median_of(rows, s, |r| quantile(&r.light, 0.99));
    let server_p99 = |s| median_of(rows, s, |r| r.server_light.answer.quantile_ms(0.99));
    let batch = Store::DataDir("batch");
    let always = Store::DataDir("always");
    println!("\nGoals (medians over rounds):\n");
    // Publishes/s at each concurrency, then each store at its own best one; none without wrk.
    let throughput = |ours: Store, theirs: Store, goal: &str| {
        if connections.is_empty() {
            return;
        }
        // A store that never ran here (no redis-server) has no figures to compare with.
        if connections.iter().all(|&c| rps(theirs, c).is_nan()) {
            println!(
                "- {} vs {}, wrk publishes/s: {} did not run here (goal {goal})",
                ours.short(),
                theirs.short(),
                theirs.short()
            );
            return;
        }
        for &c in connections {
            println!(
                "- {} vs {}, wrk publishes/s (2xx answers only) at -c{c}: {:.2}× ({:.0} vs {:.0}) (goal {goal})",
                ours.short(),
                theirs.short(),
                rps(ours, c) / rps(theirs, c),
                rps(ours, c),
                rps(theirs, c)
            );
        }
        let best = |s| {
            connections
                .iter()
                .map(|&c| (c, rps(s, c)))
                .filter(|(_, v)| !v.is_nan())
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, f64::NAN))
        };
        let (oc, o) = best(ours);
        let (tc, t) = best(theirs);
        println!(
            "- {} vs {}, wrk publishes/s (2xx answers only), each at its best concurrency: {:.2}× ({o:.0} at -c{oc} vs {t:.0} at -c{tc}) (goal {goal})",
            ours.short(),
            theirs.short(),
            o / t
        );
    };
    throughput(batch, Store::Redis("everysec"), "≥ 1");
    // Below saturation the log syncs one publish every 1/rate s: the like-for-like floor is the
    // one at that cadence, of the fastest kind measured.
    let cadence = Pace::Rate(rate);
    let (kind, at_cadence) = fastest_floor(floors, cadence);
    let back_to_back = floor_p99(floors, kind, Pace::BackToBack);
    println!(
        "- batch answer p99 at the fixed rate (sse-load, {rate}/s, {:.3} ms) over the floor at the same cadence: {:.2}× (the like-for-like figure; floor: {}, {}, p99 {at_cadence:.3} ms, the fastest kind at that cadence); over the same kind back-to-back (p99 {back_to_back:.3} ms): {:.2}× (goal ≤ 2)",
        rated_p99(batch),
        rated_p99(batch) / at_cadence,
        kind.name(),
        cadence.name(),
        rated_p99(batch) / back_to_back,
    );
    println!(
        "- the same, light client: {:.2}× at the cadence, {:.2}× back-to-back (round trip p99 {:.3} ms; memory history {:.3} ms); server side: {:.2}× at the cadence, {:.2}× back-to-back (answer p99 {:.3} ms; memory history {:.3} ms)",
        light_p99(batch) / at_cadence,
        light_p99(batch) / back_to_back,
        light_p99(batch),
        light_p99(Store::Memory),
        server_p99(batch) / at_cadence,
        server_p99(batch) / back_to_back,
        server_p99(batch),
        server_p99(Store::Memory),
    );
    // The disk's own syncs in the same window, as the log timed them: a floor measured
    // minutes apart moves with the disk's mood; these are the syncs each answer waited for.
    let sync_light = |s| median_of(rows, s, |r| r.server_light.sync.quantile_ms(0.99));
    let sync_wrk = |s, c| {
        median_of(rows, s, |r| {
            r.wrk_at(c)
                .map_or(f64::NAN, |p| p.server.sync.quantile_ms(0.99))
        })
    };
    let same_window: String = connections
        .iter()
        .map(|&c| {
            format!(
                ", wrk -c{c} {:.2}× ({:.3} over {:.3} ms)",
                wrk_server_p99(batch, c) / sync_wrk(batch, c),
                wrk_server_p99(batch, c),
                sync_wrk(batch, c)
            )
        })
        .collect();
    println!(
        "- batch answer p99 on the server over the p99 of the syncs the log made in the same phase: light client at {rate}/s {:.2}× ({:.3} over {:.3} ms){same_window} (goal ≤ 2)",
        server_p99(batch) / sync_light(batch),
        server_p99(batch),
        sync_light(batch),
    );
    // Under wrk the log syncs back to back: the fastest back-to-back floor.
    let (b2b_kind, b2b) = fastest_floor(floors, Pace::BackToBack);
    let under_wrk: Vec<String> = connections
        .iter()
        .map(|&c| {
            format!(
                "-c{c} {:.2}× (server side {:.2}×)",
                wrk_p99(batch, c) / b2b,
                wrk_server_p99(batch, c) / b2b
            )
        })
        .collect();
    if !under_wrk.is_empty() {
        println!(
            "- batch answer p99 under wrk over the fastest back-to-back floor ({}, p99 {b2b:.3} ms): {}",
            b2b_kind.name(),
            under_wrk.join(", ")
        );
    }
    throughput(always, Store::Redis("always"), "≥ 0.9");
    let redis_always = rated_p99(Store::Redis("always"));
    if redis_always.is_nan() {
        println!(
            "- always answer p99 at the fixed rate: {:.2} ms (Redis always did not run here)",
            rated_p99(always)
        );
    } else {
        println!(
            "- always vs Redis always, answer p99 at the fixed rate: {:.2} vs {redis_always:.2} ms",
            rated_p99(always)
        );
    }
    println!("\nbatch's answer p99 over every floor's p99 (medians over rounds), and which the goals' lines use: at the fixed rate the fastest kind at its cadence (and that kind back-to-back), under wrk the fastest kind back-to-back:\n");
    println!(
        "| floor | pace | floor p99 | sse-load at {rate}/s | light client | server side (light client) |{} used above |",
        wrk_heads(connections, "")
    );
    println!(
        "|---|---|---|---|---|---|{}---|",
        "---|".repeat(connections.len())
    );
    for pace in [Pace::BackToBack, cadence] {
        for how in Floor::ALL {
            let f = floor_p99(floors, how, pace);
            if f.is_nan() {
                println!(
                    "| {} | {} | not supported here | | | |{} |",
                    floor_cell(how),
                    pace.name(),
                    " |".repeat(connections.len())
                );
                continue;
            }
            let wrk: String = connections
                .iter()
                .map(|&c| format!(" {:.2}× |", wrk_p99(batch, c) / f))
                .collect();
            let used = [
                (how == kind && pace == cadence, "fixed rate"),
                (
                    how == kind && pace == Pace::BackToBack,
                    "fixed rate, back-to-back figure",
                ),
                (
                    how == b2b_kind && pace == Pace::BackToBack && !wrk.is_empty(),
                    "wrk",
                ),
            ]
            .into_iter()
            .filter_map(|(on, what)| on.then_some(what))
            .collect::<Vec<_>>()
            .join("; ");
            println!(
                "| {} | {} | {f:.3} ms | {:.2}× | {:.2}× | {:.2}× |{wrk} {used} |",
                floor_cell(how),
                pace.name(),
                rated_p99(batch) / f,
                light_p99(batch) / f,
                server_p99(batch) / f,
            );
        }
    }
}
