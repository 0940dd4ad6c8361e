//! The application: which request gets which answer. The connection core ([`crate::conn`])
//! hands each complete request here (through the loop) and queues the [`Reply`]; adding an
//! endpoint means adding a match arm here, never touching the state machine.
//!
//! Endpoints: `GET /sse` (the seed's clock stream), `GET /metrics` (Prometheus text),
//! `GET /healthz`, and the page's files for everything else.
//!
//! **Invariant:** the only IO reachable from here is what the loop lends in [`App`]: the page's
//! files (read from `--www` in that mode) and the process figures for `/metrics`.

use crate::conn::{Ctx, Now};
use crate::http::{Method, Request, Status};
use crate::metrics::ProcessStats;
use crate::response::{Head, Reply, Then};
use crate::static_files::{self, StaticFiles};
use crate::stream::Source;

/// What the application owns, shared by every loop.
pub struct App {
    pub files: StaticFiles,
    /// Reads the process figures for `/metrics` (the loop's window onto the OS).
    pub process_stats: fn() -> ProcessStats,
}

impl App {
    /// The application over these files, with the process figures read from `/proc`.
    pub fn new(files: StaticFiles) -> Self {
        App {
            files,
            process_stats: crate::sys::process_stats,
        }
    }
}

/// The answer to one request (its body, if any, in `body`).
pub fn route(app: &App, req: &Request<'_>, _body: &[u8], now: Now, ctx: &mut Ctx<'_>) -> Reply {
    if req.method == Method::Post {
        return Reply::error(Status::MethodNotAllowed);
    }
    match req.path {
        "/sse" => clock_stream(req, now, ctx),
        "/metrics" => {
            let mut text = String::with_capacity(4096);
            ctx.metrics.render(&mut text, &(app.process_stats)());
            let ct = "text/plain; version=0.0.4; charset=utf-8";
            let body = crate::response::Body::Shared(text.into_bytes().into());
            Reply::with_body(Status::Ok, ct, body, &[("Cache-Control", "no-store")])
        }
        "/healthz" => Reply::text(Status::Ok, "ok\n", &[("Cache-Control", "no-store")]),
        path => file(app, req, path),
    }
}

/// `GET /sse`: the seed's clock, or a jittered `retry:` when no stream may be opened.
fn clock_stream(req: &Request<'_>, now: Now, ctx: &mut Ctx<'_>) -> Reply {
    if req.method == Method::Head {
        return Reply {
            status: Status::Ok,
            head: Head::new(Status::Ok).event_stream(false),
            body: None,
            then: Then::KeepAlive,
        };
    }
    if ctx.draining || !ctx.metrics.admission().try_open() {
        if !ctx.draining {
            ctx.shard.streams_rejected.inc();
        }
        return Reply::stream_refused(ctx.rng.jitter(ctx.cfg.reconnect_ms));
    }
    Reply {
        status: Status::Ok,
        head: Head::new(Status::Ok).event_stream(false),
        body: None,
        then: Then::Stream(Source::clock(now, ctx.cfg.interval_ms, req.last_event_id)),
    }
}

/// A file of the page, `304` when the client's copy is current, or `404`.
fn file(app: &App, req: &Request<'_>, path: &str) -> Reply {
    let Some(file) = app.files.lookup(path) else {
        return Reply::text(Status::NotFound, "404 Not Found\n", &[]);
    };
    let extra = [
        ("ETag", &*file.etag),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    ];
    if req
        .if_none_match
        .is_some_and(|v| static_files::none_match(v, &file.etag))
    {
        let mut head = Head::new(Status::NotModified);
        for (name, value) in extra {
            head = head.field(name, value);
        }
        return Reply {
            status: Status::NotModified,
            head,
            body: None,
            then: Then::KeepAlive,
        };
    }
    Reply::with_body(Status::Ok, file.content_type, file.body, &extra)
}
