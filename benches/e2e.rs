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
//! SSE_BENCH_BASELINE=/tmp/old/sse-server SSE_BENCH_ROUNDS=3 cargo bench --bench e2e -- rate fanout
//!                                                   # before/after: another build, rows alternated
//! ```
//!
//! The hub scenarios (`fanout`: 19,000 subscribers of one topic, 1 publish/s; `throughput`:
//! 1,000 subscribers, 100 publishes/s) run sse-server (`GET /sse?topic=bench`,
//! `POST /publish`) and nchan (`../shared/peers/nchan/run`, when nginx and its nchan module are
//! installed: `GET /sub/bench`, `POST /pub/bench`), with `sse-load`'s publisher, and print
//! publish-to-deliver latency, deliveries, and the server's CPU and RSS per subscriber (nginx's
//! master and workers summed).
//!
//! Peers are looked up in `$SSE_PEERS_TARGET` (default `/tmp/peers`, built with
//! `cargo build --release --manifest-path ../shared/peers/<peer>/Cargo.toml --target-dir /tmp/peers`)
//! and `$SSE_EXPRESS_DIR` (default `/tmp/node-express`, a copy of the Express peer after
//! `npm install`); a missing peer is skipped with a note. Under `cargo test` (no `--bench`
//! argument) it only runs a small smoke scenario against sse-server, so it cannot rot.

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
}

impl Spec {
    fn ours(name: &str, extra: &[&str]) -> Spec {
        let args = extra.iter().map(|s| s.to_string()).collect();
        Spec {
            name: name.into(),
            program: SSE_SERVER.into(),
            args,
            env_config: false,
        }
    }

    fn spawn(&self, port: u16, interval_ms: u64) -> Child {
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
    rss_base: u64,
    rss_full: u64,
    cpu_pct: f64,
    window_s: f64,
    streams: usize,
    skipped: Option<f64>,
}

impl Row {
    fn get(&self, path: &str) -> f64 {
        let mut v = &self.report;
        for key in path.split('.') {
            v = &v[key];
        }
        v.as_f64().unwrap_or(f64::NAN)
    }
}

struct Case {
    streams: usize,
    interval_ms: u64,
    window_s: u64,
    /// sse-load's loops. One alone saturates first near 100k frames/s, and its queueing then
    /// dominates every server's lateness; below that, one loop is the lighter neighbour.
    client_threads: usize,
}

fn run(spec: &Spec, case: &Case) -> Row {
    let port = free_port();
    let mut server = spec.spawn(port, case.interval_ms);
    let pid = server.id();
    wait_listening(port);
    std::thread::sleep(Duration::from_millis(500));
    let rss_base = proc_status_kb(pid, "VmRSS:") * 1024;
    let fds_base = open_fds(pid);
    // Connect at up to 4000/s from 4 source addresses (past the ephemeral-port limit and any
    // TIME_WAIT left by the previous run), settle, then measure a window of steady state.
    let rate = 4000;
    let ramp_s = (case.streams / rate) as u64 + 4;
    let settle_s = 2 + case.interval_ms.div_ceil(1000);
    let duration = ramp_s + settle_s + case.window_s + 2;
    let url = format!("http://127.0.0.1:{port}/sse");
    let load = Command::new(SSE_LOAD)
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
    while open_fds(pid) < fds_base + case.streams && started.elapsed() < Duration::from_secs(ramp_s)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(settle_s));
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(case.window_s));
    let cpu1 = cpu_seconds(pid);
    let window_s = t0.elapsed().as_secs_f64();
    let rss_full = proc_status_kb(pid, "VmRSS:") * 1024;
    let skipped = (!spec.env_config)
        .then(|| metric(port, "sse_frames_skipped_total"))
        .flatten();
    let out = load.wait_with_output().expect("sse-load finishes");
    let _ = server.kill();
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sse-load --json output for {}: {e}: {}",
            spec.name,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Row {
        name: spec.name.clone(),
        report,
        rss_base,
        rss_full,
        cpu_pct: (cpu1 - cpu0) / window_s * 100.0,
        window_s,
        streams: case.streams,
        skipped,
    }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
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
        let per_stream = (r.rss_full as f64 - r.rss_base as f64) / r.streams as f64;
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
        let _ = r.window_s;
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
        };
        let mut specs = vec![
            Spec::ours("sse-server --threads 1", &["--threads", "1"]),
            Spec::ours("sse-server --threads 2", &["--threads", "2"]),
        ];
        specs.extend(peers.iter().filter(|p| p.name == "floor").cloned());
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("What a second loop buys", &case, &rows);
    }
    if wanted.contains(&"logging") {
        // What the log costs: one line per request and per ended stream, none per frame.
        let case = Case {
            streams: 10_000,
            interval_ms: 100,
            window_s: 10,
            client_threads: 2,
        };
        let specs = [
            Spec::ours("sse-server (log on)", &[]),
            Spec::ours("sse-server --quiet", &["--quiet"]),
        ];
        let rows: Vec<Row> = specs.iter().map(|s| run(s, &case)).collect();
        print_table("Logging on and off", &case, &rows);
    }
    hub_scenarios(&want, &wanted);
    stop_bench_redis();
}

/// A hub to measure: how to start it, and where to subscribe and publish.
struct Hub {
    name: &'static str,
    /// The program and its arguments, given the port.
    command: fn(u16) -> Command,
    sub_path: &'static str,
    pub_path: &'static str,
    format: &'static str,
}

/// A `redis-server` for the "sse-server + Redis" rows, started once per bench run on a free
/// loopback port (persistence off) and left to end with the bench process's process group;
/// `None` when `redis-server` is not installed.
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
        let dir = std::env::temp_dir().join(format!("sse-bench-redis-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
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
        // Ended when the bench exits (the child is killed by the guard below).
        static GUARD: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());
        GUARD.lock().unwrap().push(child);
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

/// Stops the bench's `redis-server` (call at the end of `main`).
fn stop_bench_redis() {
    if let Some(port) = bench_redis() {
        // SHUTDOWN NOSAVE over a plain connection: no client library in the bench.
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
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
    }];
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
    let base = format!("http://127.0.0.1:{port}");
    let load = Command::new(SSE_LOAD)
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
            "bench",
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
    let (cpu0, _) = tree_usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(case.window_s));
    let (cpu1, rss_full) = tree_usage(pid);
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
    }
}

fn print_hub_table(title: &str, case: &HubCase, rows: &[HubRow]) {
    println!(
        "\n### {title}: {} subscribers of one topic, {} publishes/s, {} s window\n",
        case.subscribers, case.publish_rate, case.window_s
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
    let (hubs, missing) = hubs();
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
    for (key, title, case) in cases {
        // The small check runs only when named.
        if !(want(key) && (key != "hub-small" || explicit.contains(&key))) {
            continue;
        }
        if let Some(m) = &missing {
            println!("Skipped hub: {m}");
        }
        let rows: Vec<HubRow> = (0..rounds())
            .flat_map(|_| hubs.iter())
            .map(|h| run_hub(h, &case))
            .collect();
        print_hub_table(title, &case, &rows);
    }
}
