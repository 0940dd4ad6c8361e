//! The application: which request gets which answer. The connection core ([`crate::conn`])
//! hands each complete request here (through the loop) and queues the [`Reply`]; adding an
//! endpoint means adding a match arm here, never touching the state machine.
//!
//! Endpoints: `GET /sse` (the seed's clock stream; with `?topic=` a hub subscription),
//! `POST /publish`, `GET /metrics` (Prometheus text), `GET /healthz`, and the page's files for
//! everything else.
//!
//! **Invariant:** the only IO reachable from here is what the loop lends in [`App`]: the page's
//! files (read from `--www` in that mode) and the process figures for `/metrics`.

use crate::conn::{Ctx, Now};
use crate::http::{Method, Request, Status};
use crate::hub::{Filter, Start};
use crate::metrics::{ProcessStats, Rejected};
use crate::publish::{self, Refusal};
use crate::response::{Head, Reply, Then};
use crate::static_files::{self, StaticFiles};
use crate::stream::Source;

/// What the application owns, shared by every loop.
pub struct App {
    pub files: StaticFiles,
    /// Reads the process figures for `/metrics` (the loop's window onto the OS).
    pub process_stats: fn() -> ProcessStats,
    /// The bearer token publishers must present; `None`: loopback peers only.
    pub publish_token: Option<String>,
    /// With `--redis`: publishes are stored by the shared log, and answered once it has.
    pub log: Option<std::sync::Arc<crate::redis_bridge::Bridge>>,
}

impl App {
    /// The application over these files, with the process figures read from `/proc`.
    pub fn new(files: StaticFiles) -> Self {
        App {
            files,
            process_stats: crate::sys::process_stats,
            publish_token: None,
            log: None,
        }
    }
}

/// Who sent a request, as far as the application cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The connection comes from 127.0.0.0/8 or ::1.
    pub loopback: bool,
    /// The connection's slab key and generation in its loop (for answers given later).
    pub conn: (usize, u32),
}

/// The answer to one request (its body, if any, in `body`).
pub fn route(
    app: &App,
    req: &Request<'_>,
    body: &[u8],
    peer: Peer,
    now: Now,
    ctx: &mut Ctx<'_>,
) -> Reply {
    if req.method == Method::Post {
        return match req.path {
            "/publish" => publish(app, req, body, peer, now, ctx),
            _ => Reply::error(Status::MethodNotAllowed),
        };
    }
    match req.path {
        "/sse" => match publish::subscription(req.query) {
            Ok(None) => clock_stream(req, now, ctx),
            Ok(Some(sub)) => topic_stream(req, sub, now, ctx),
            Err(Refusal::Invalid(why)) => Reply::text_owned(Status::BadRequest, why + "\n", &[]),
            Err(Refusal::MediaType) => Reply::error(Status::BadRequest),
        },
        "/publish" => Reply::text(
            Status::MethodNotAllowed,
            "405 Method Not Allowed: POST an event here\n",
            &[("Allow", "POST")],
        ),
        "/metrics" => {
            let mut text = String::with_capacity(4096);
            ctx.metrics.render(&mut text, &(app.process_stats)());
            let ct = "text/plain; version=0.0.4; charset=utf-8";
            let body = crate::response::Body::Shared(text.into_bytes().into());
            Reply::with_body(Status::Ok, ct, body, &[("Cache-Control", "no-store")])
        }
        "/metrics/stream" => figures_stream(req, now, ctx),
        "/dashboard" => file(app, req, "/dashboard.html"),
        "/healthz" => match ctx.hub.hub.log_state() {
            Ok(()) => Reply::text(Status::Ok, "ok\n", &[("Cache-Control", "no-store")]),
            Err(why) => Reply::text_owned(
                Status::ServiceUnavailable,
                format!("503 Service Unavailable: the event log (Redis) is down: {why}\n"),
                &[("Cache-Control", "no-store"), ("Retry-After", "1")],
            ),
        },
        path => file(app, req, path),
    }
}

/// Whether `presented` (an `Authorization` value) carries `token`, compared in constant time.
fn bearer_matches(presented: Option<&[u8]>, token: &str) -> bool {
    let Some(got) = presented.and_then(crate::jwt::bearer_token) else {
        return false;
    };
    let want = token.as_bytes();
    // Constant time in the token's content: every byte of it is compared whatever differs
    // (only the length can show, as in any comparison that must end).
    let mut diff = u8::from(got.len() != want.len());
    for (i, &w) in want.iter().enumerate() {
        diff |= w ^ got.get(i).copied().unwrap_or(!w);
    }
    diff == 0
}

/// `POST /publish`: store an event, answer its id once it is stored.
fn publish(
    app: &App,
    req: &Request<'_>,
    body: &[u8],
    peer: Peer,
    now: Now,
    ctx: &mut Ctx<'_>,
) -> Reply {
    let allowed = match &app.publish_token {
        Some(token) => bearer_matches(req.authorization, token),
        None => peer.loopback,
    };
    if !allowed {
        ctx.shard.rejected(Rejected::Unauthorized);
        let why = if app.publish_token.is_some() {
            "401 Unauthorized: a valid Authorization: Bearer token is needed to publish\n"
        } else {
            "401 Unauthorized: without --publish-token only loopback clients may publish\n"
        };
        return Reply::text(Status::Unauthorized, why, &[("WWW-Authenticate", "Bearer")]);
    }
    let p = match publish::publish(req.content_type, body) {
        Ok(p) => p,
        Err(Refusal::Invalid(why)) => {
            ctx.shard.rejected(Rejected::Invalid);
            return Reply::text_owned(Status::BadRequest, format!("400 Bad Request: {why}\n"), &[]);
        }
        Err(Refusal::MediaType) => {
            ctx.shard.rejected(Rejected::MediaType);
            return Reply::text(
                Status::UnsupportedMediaType,
                "415 Unsupported Media Type: send application/x-www-form-urlencoded or application/json\n",
                &[],
            );
        }
    };
    let hub = &ctx.hub.hub;
    if let Some(log) = &app.log {
        if let Err(why) = hub.log_state() {
            ctx.shard.rejected(Rejected::Unavailable);
            return log_down(&why);
        }
        // Answered once the log has stored it (or could not): never a 200 for an event that
        // is not stored.
        let later = ctx.later.clone();
        let (key, gen) = peer.conn;
        log.submit(
            p,
            Box::new(move |stored| {
                let reply = match stored {
                    Ok(id) => published(id),
                    Err(why) => log_down(&why),
                };
                later.send(key, gen, reply);
            }),
        );
        ctx.shard.publishes.inc();
        return Reply::pending();
    }
    let seq = hub.publish(&p, now.us);
    ctx.shard.publishes.inc();
    published(hub.id(seq))
}

/// `200` with the stored event's id.
fn published(id: String) -> Reply {
    Reply::with_body(
        Status::Ok,
        crate::response::TEXT_PLAIN,
        crate::response::Body::Shared(id.into_bytes().into()),
        &[("Cache-Control", "no-store")],
    )
}

/// `503` for a publish the shared log could not store.
fn log_down(why: &str) -> Reply {
    let why = why.replace(['\r', '\n'], " ");
    Reply::text_owned(
        Status::ServiceUnavailable,
        format!("503 Service Unavailable: the event log (Redis) did not store it: {why}\n"),
        &[("Retry-After", "1")],
    )
}

/// `GET /sse?topic=...`: a hub subscription, replaying what followed the resume id first.
fn topic_stream(
    req: &Request<'_>,
    sub: publish::Subscription,
    now: Now,
    ctx: &mut Ctx<'_>,
) -> Reply {
    let head = Head::new(Status::Ok).event_stream(false);
    if req.method == Method::Head {
        return Reply {
            status: Status::Ok,
            head,
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
    let hub = &mut *ctx.hub;
    let last = req
        .last_event_id
        .or(sub.last_event_id.as_deref().map(str::as_bytes));
    let (cursor, body) = match hub.start(last) {
        Start::From(cursor) => (cursor, None),
        Start::Reset {
            frame,
            cursor,
            reason,
        } => {
            ctx.shard.resets[reason as usize].inc();
            (cursor, Some(crate::response::Body::Shared(frame.into())))
        }
    };
    let mut ids: Vec<u32> = Vec::with_capacity(sub.topics.len());
    let mut all = false;
    for t in &sub.topics {
        match hub.intern(t) {
            Some(id) => ids.push(id),
            None => all = true,
        }
    }
    let filter = match (all, ids.len()) {
        (true, _) => Filter::All,
        (false, 1) => Filter::One(ids[0]),
        _ => Filter::Many(Box::new(ids)),
    };
    let heartbeat = hub.hub.config().heartbeat_ms;
    Reply {
        status: Status::Ok,
        head,
        body,
        then: Then::Stream(Source::topics(now, cursor, filter, heartbeat)),
    }
}

/// `GET /metrics/stream`: the server's figures, one `figures` event a second, the last five
/// minutes first. Counts as a stream (it holds a connection like one).
fn figures_stream(req: &Request<'_>, now: Now, ctx: &mut Ctx<'_>) -> Reply {
    let head = Head::new(Status::Ok).event_stream(false);
    if req.method == Method::Head {
        return Reply {
            status: Status::Ok,
            head,
            body: None,
            then: Then::KeepAlive,
        };
    }
    if ctx.draining || !ctx.metrics.admission().try_open() {
        return Reply::stream_refused(ctx.rng.jitter(ctx.cfg.reconnect_ms));
    }
    Reply {
        status: Status::Ok,
        head,
        body: None,
        then: Then::Stream(Source::figures(now)),
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
