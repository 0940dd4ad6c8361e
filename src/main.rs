//! `sse-server`: parse the flags, raise the descriptor limit, start the loops, wait for a signal.

use sse_server::app::static_files::StaticFiles;
use sse_server::server::config::{self, Command};
use sse_server::server::loops::Server;
use sse_server::util::log::{self, V};
use sse_server::util::sys::{self, Signal, Signals};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let config = match config::parse_args(std::env::args().skip(1), &env) {
        Ok(Command::Run(c)) => {
            let verbosity = if c.quiet {
                log::Verbosity::Quiet
            } else {
                log::Verbosity::Normal
            };
            log::init(c.log_format, verbosity);
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
    // The page's folder is checked here so that a bad --www is blamed on --www, not on the
    // listening address.
    if let Some(dir) = &config.www {
        match StaticFiles::dir(dir) {
            Err(e) => {
                eprintln!("sse-server: --www {}: {e}", dir.display());
                return ExitCode::from(2);
            }
            Ok(files) if files.lookup("/").is_none() => eprintln!(
                "sse-server: warning: --www {} has no index.html: GET / will be 404",
                dir.display()
            ),
            Ok(_) => {}
        }
    }
    let fd_limit = match sys::raise_fd_limit() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sse-server: could not raise the file-descriptor limit: {e}");
            sys::fd_limit()
        }
    };
    if let Some(w) = config.fd_warning(fd_limit) {
        eprintln!("sse-server: warning: {w}");
    }
    if let Some(w) = config.publish_warning() {
        eprintln!("sse-server: warning: {w}");
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
            if e.get_ref()
                .is_some_and(|i| i.is::<sse_server::server::loops::StartError>())
            {
                eprintln!("sse-server: {e}");
            } else {
                let addr = std::net::SocketAddr::new(config.bind, config.port);
                eprintln!("sse-server: cannot listen on {addr}: {e}");
            }
            log::flush(Duration::from_millis(500));
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    // A URL that works: a wildcard address is reached as localhost, which names both ::1 and
    // 127.0.0.1 when the listener is dual-stack.
    let (host, reach) = match addr.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => ("localhost".to_string(), "IPv6 and IPv4, "),
        IpAddr::V4(ip) if ip.is_unspecified() => ("localhost".to_string(), "IPv4 only, "),
        IpAddr::V6(ip) => (format!("[{ip}]"), ""),
        ip => (ip.to_string(), ""),
    };
    // The token itself is never printed, only whether there is one.
    let jwt = config.jwt_key.is_some() || config.jwt_key_file.is_some();
    let publishing = match (config.publish_token.is_some(), jwt) {
        (true, _) => "POST /publish needs a bearer token",
        (false, true) => "POST /publish needs a publisher token, from loopback clients too",
        (false, false) => "POST /publish from loopback clients only (no --publish-token)",
    };
    if jwt && config.publish_token.is_none() {
        // Without a key, loopback clients publish with no token; a key turns that off, which
        // surprised people who added one only for private subscriptions.
        eprintln!(
            "sse-server: note: --jwt-key is set, so tokenless publishing from loopback is off: \
             publish with a publisher token (mercure.publish) or add --publish-token"
        );
    }
    let scheme = if server.tls_only() { "https" } else { "http" };
    println!(
        "sse-server listening on {scheme}://{host}:{}/ ({reach}stream at /sse, every {} ms; {} loops, up to {} streams; {publishing})",
        addr.port(),
        config.conn.interval_ms,
        config.threads,
        server.max_streams()
    );
    if let (Some(tls), false) = (server.tls_addr(), server.tls_only()) {
        println!("sse-server listening on https://{host}:{}/ too", tls.port());
    }
    let url = format!("{scheme}://{host}:{}/", addr.port());
    log::line(
        "start",
        &[
            ("url", V::S(&url)),
            ("loops", V::N(config.threads as u64)),
            ("max_streams", V::N(server.max_streams() as u64)),
            (
                "log",
                V::S(if config.quiet { "quiet" } else { "connections" }),
            ),
            (
                "event_log",
                V::S(if config.redis.is_some() {
                    "redis"
                } else if config.data_dir.is_some() {
                    "data-dir"
                } else {
                    "local"
                }),
            ),
        ],
    );
    // SIGHUP (a closed terminal, a reload request) must not kill a server holding streams;
    // with TLS it rereads the certificate, for the handshakes that follow.
    let signal = loop {
        match signals.wait() {
            Ok(Signal::Hangup) => match server.reload_tls() {
                None => log::line("sighup", &[("action", V::S("ignored"))]),
                Some(Ok(())) => {
                    let cert = server
                        .tls_cert_path()
                        .map_or_else(String::new, |p| p.display().to_string());
                    log::line(
                        "sighup",
                        &[
                            ("action", V::S("certificate reloaded")),
                            ("cert", V::S(&cert)),
                        ],
                    )
                }
                Some(Err(e)) => log::line(
                    "sighup",
                    &[
                        ("action", V::S("reload failed, old certificate kept")),
                        ("error", V::S(&e)),
                    ],
                ),
            },
            Ok(other) => break format!("{other:?}").to_lowercase(),
            Err(e) => break format!("error: {e}"),
        }
    };
    log::line(
        "shutdown",
        &[
            ("signal", V::S(&signal)),
            ("grace_ms", V::N(config.shutdown_grace_ms)),
        ],
    );
    server.stop();
    // The loops end their streams and exit within the grace period; never hang past it.
    let grace = Duration::from_millis(config.shutdown_grace_ms + 500);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.join();
        let _ = done_tx.send(());
    });
    let clean = done_rx.recv_timeout(grace).is_ok();
    log::line(
        "stopped",
        &[(
            "streams_ended",
            V::S(if clean { "all" } else { "grace period over" }),
        )],
    );
    // The last lines, if stderr takes them soon; a stuck stderr does not hold the exit.
    log::flush(Duration::from_millis(500));
    ExitCode::SUCCESS
}
