//! `sse-load`: parse the flags, raise the descriptor limit, run the load, print the report
//! (and write the HTML and CSV ones), and exit 3 when a check failed.

use sse_server::load::{self, LoadCommand};
use sse_server::util::sys;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cfg = match load::parse_args(std::env::args().skip(1)) {
        Ok(LoadCommand::Run(c)) => c,
        Ok(LoadCommand::Help) => {
            print!("{}", load::args::help());
            return ExitCode::SUCCESS;
        }
        Ok(LoadCommand::Version) => {
            println!("sse-load {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sse-load: {e}");
            return ExitCode::from(2);
        }
    };
    // Every stream is a descriptor: take all the hard limit allows, and say when it is short.
    match sys::raise_fd_limit() {
        Ok(limit) if (cfg.connections as u64).saturating_add(64) > limit => eprintln!(
            "sse-load: warning: {} streams but only {limit} file descriptors; the rest will fail as no_file_descriptors",
            cfg.connections
        ),
        Ok(_) => {}
        Err(e) => eprintln!("sse-load: could not raise the file-descriptor limit: {e}"),
    }
    let quiet = cfg.quiet;
    let report = match load::run(&cfg, |p| {
        if !quiet {
            eprintln!("{}", p.text());
        }
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sse-load: cannot run: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cfg.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    let mut code = ExitCode::SUCCESS;
    for (path, text) in [
        (
            &cfg.html,
            cfg.html.as_ref().map(|_| load::html::render(&report)),
        ),
        (&cfg.csv, cfg.csv.as_ref().map(|_| report.csv())),
    ] {
        if let (Some(path), Some(text)) = (path, text) {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("sse-load: cannot write {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    let failed = report.failed_checks();
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("sse-load: check failed: {f}");
        }
        return ExitCode::from(3);
    }
    code
}
