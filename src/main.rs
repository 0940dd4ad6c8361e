//! `sse-server`: parse the flags, raise the descriptor limit, start the loops, wait for a signal.

use sse_server::config::{self, Command};
use sse_server::server::Server;
use sse_server::sys::{self, Signal, Signals};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let port_env = std::env::var("PORT").ok();
    let config = match config::parse_args(std::env::args().skip(1), port_env.as_deref()) {
        Ok(Command::Run(mut c)) => {
            if c.publish_token.is_none() {
                c.publish_token = std::env::var("SSE_PUBLISH_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty());
            }
            c
        }
        Ok(Command::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("sse-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sse-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sys::raise_fd_limit() {
        eprintln!("sse-server: could not raise the file-descriptor limit: {e}");
    }
    // Before any thread starts, so that every thread inherits the blocked signals.
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sse-server: signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "sse-server: cannot listen on {}:{}: {e}",
                config.bind, config.port
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    // The token itself is never printed, only whether there is one.
    let publishing = if config.publish_token.is_some() {
        "POST /publish needs the bearer token"
    } else {
        "POST /publish from loopback clients only (no --publish-token)"
    };
    println!(
        "sse-server listening on http://{host}:{}/ (stream at /sse, every {} ms; {} loops, up to {} streams; {publishing})",
        addr.port(),
        config.conn.interval_ms,
        config.threads,
        server.max_streams()
    );
    // SIGHUP (a closed terminal, a reload request) must not kill a server holding streams.
    while let Ok(Signal::Hangup) = signals.wait() {
        eprintln!("sse-server: SIGHUP ignored");
    }
    server.stop();
    // The loops end their streams and exit within the grace period; never hang past it.
    let grace = Duration::from_millis(config.shutdown_grace_ms + 500);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.join();
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(grace);
    ExitCode::SUCCESS
}
