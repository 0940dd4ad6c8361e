//! The application: which request gets which answer. The connection core ([`crate::core::conn`])
//! hands each complete request here (through the loop) and queues the [`Reply`]; adding an
//! endpoint means adding a match arm here, never touching the state machine.
//!
//! Endpoints: `GET /sse` (the seed's clock stream; with `?topic=` a hub subscription, resumed
//! from `Last-Event-ID`), `POST /publish` (and `GET /publish`: which token publishing needs),
//! `GET /metrics` (Prometheus text), `GET /metrics/stream` (the figures as an event stream),
//! `GET /dashboard`, `GET /healthz`, `OPTIONS` preflights for CORS, and the page's files for
//! everything else.
//!
//! **Invariant:** the only IO reachable from here is what the loop lends in [`App`]: the page's
//! files (read from `--www` in that mode) and the process figures for `/metrics`.

use crate::app::static_files::{self, StaticFiles};
use crate::core::ctx::{Ctx, Now};
use crate::core::metrics::Rejected;
use crate::core::reply::{Later, Reply, Then, Timing};
use crate::core::stream::{Source, Subscription};
use crate::hub::history::{IdRefused, Start, EARLIEST};
use crate::hub::jwt;
use crate::hub::parse::{self, Dialect, Refusal};
use crate::hub::presence;
use crate::util::sys::ProcessStats;
use crate::wire::head::{Connection, Head};
use crate::wire::http::{Method, Request, Status};

/// What the application owns, shared by every loop.
pub struct App {
    pub files: StaticFiles,
    /// Reads the process figures for `/metrics` (the loop's window onto the OS).
    pub process_stats: fn() -> ProcessStats,
    /// The bearer token publishers must present; `None`: loopback peers only.
    pub publish_token: Option<String>,
    /// With `--redis`: the bridge to the Redis event store (read for deep resumes).
    pub bridge: Option<std::sync::Arc<crate::redis::bridge::Bridge>>,
    /// With `--redis` or `--data-dir`: where publishes are stored, answered once they are.
    pub store: Option<std::sync::Arc<dyn crate::hub::backend::Backend>>,
    /// With `--jwt-key`: subscriber and publisher tokens (HS256, Mercure claims).
    pub jwt: Option<jwt::Verifier>,
    /// `--private-topics`: events on these topics are private whatever the publisher says.
    pub private_topics: jwt::Selectors,
    /// `--cors-origin`: the origins allowed to read streams (default any) and to publish from
    /// a browser besides the server's own (default none).
    pub cors_origins: Vec<String>,
    /// Debug builds with `SSE_TEST_PANIC=1` only: `GET /__panic` panics in the loop, so a test
    /// can check that a loop's panic ends the whole process loudly.
    pub test_panic: bool,
}

impl App {
    /// The application over these files, with the process figures read from `/proc`.
    pub fn new(files: StaticFiles) -> Self {
        App {
            files,
            process_stats: crate::util::sys::process_stats,
            publish_token: None,
            bridge: None,
            store: None,
            jwt: None,
            private_topics: jwt::Selectors::default(),
            cors_origins: Vec::new(),
            test_panic: cfg!(debug_assertions) && std::env::var_os("SSE_TEST_PANIC").is_some(),
        }
    }
}

/// Who sent a request, as far as the application cares, and how to answer it later.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// The connection comes from 127.0.0.0/8 or ::1 (a request it carries may still have been
    /// forwarded by a proxy from anywhere: see [`Request::proxied`]).
    pub loopback: bool,
    /// The connection's slab key in its loop (for answers given later).
    pub key: usize,
    /// Where this connection's answers given later go: its loop's queue and waker. Lent here,
    /// not in the connection's [`Ctx`], which names no reply.
    pub later: &'a Later,
}

/// One request as the application sees it: the application, the parsed head, who sent it
/// (and how to answer later), and the time its loop read.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub app: &'a App,
    pub req: &'a Request<'a>,
    pub peer: Peer<'a>,
    pub now: Now,
}

/// The answer to one request (its body, if any, in `body`).
pub fn route(call: Call<'_>, body: &[u8], ctx: &mut Ctx<'_>) -> Reply {
    let Call {
        app,
        req,
        peer,
        now,
    } = call;
    if let Method::Other(_) = req.method {
        return not_allowed(req.path);
    }
    if req.method == Method::Options {
        return preflight(app, req);
    }
    if app.test_panic && req.path == "/__panic" {
        panic!("GET /__panic (SSE_TEST_PANIC=1)");
    }
    if body.len() as u64 != req.content_length {
        return before_body(call, ctx);
    }
    if req.method == Method::Post {
        return match req.path {
            "/publish" => cors(app, req, publish(call, body, ctx, Dialect::Publish)),
            HUB_PATH => cors(app, req, publish(call, body, ctx, Dialect::Mercure)),
            path => not_allowed(path),
        };
    }
    match req.path {
        "/sse" => match parse::subscription(req.query) {
            Ok(None) => clock_stream(app, req, now, ctx),
            Ok(Some(sub)) => topic_stream(call, sub, ctx),
            Err(Refusal::Invalid(why) | Refusal::TooLong(why)) => {
                Reply::text_owned(Status::BadRequest, why + "\n", &[])
            }
            Err(Refusal::MediaType) => Reply::error(Status::BadRequest),
        },
        // GET and HEAD: a Mercure subscription (POST publishes, above).
        HUB_PATH => match parse::mercure_subscription(req.query) {
            Ok(sub) => topic_stream(call, sub, ctx),
            Err(Refusal::Invalid(why) | Refusal::TooLong(why)) => invalid_request(&why),
            Err(Refusal::MediaType) => Reply::error(Status::BadRequest),
        },
        // GET and HEAD here (POST and OPTIONS are answered above).
        "/publish" => publish_policy(app, req, peer),
        "/metrics" => {
            let mut text = String::with_capacity(4096);
            ctx.metrics.render(&mut text, &(app.process_stats)());
            let ct = "text/plain; version=0.0.4; charset=utf-8";
            let body = crate::core::body::Body::Shared(text.into_bytes().into());
            Reply::with_body(Status::Ok, ct, body, &[("Cache-Control", "no-store")])
        }
        "/metrics/stream" => figures_stream(app, req, now, ctx),
        "/dashboard" => file(app, req, "/dashboard.html"),
        path if presence::is_presence_topic(path) && ctx.hub.hub.presence().is_some() => {
            cors(app, req, subscriptions_api(call, ctx))
        }
        "/healthz" => match ctx.hub.hub.store_state() {
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

/// The Mercure hub's URL path (RFC 8615 well-known): `GET` subscribes, `POST` publishes, by
/// Mercure's rules (see [`parse::mercure_subscription`], [`Dialect::Mercure`]).
pub const HUB_PATH: &str = "/.well-known/mercure";

/// What the hub's URL allows, for `Allow` and preflights.
const HUB_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// The methods `path` answers (its `Allow`): the hub's URL and `/publish` take all four
/// (`GET /publish` is the publish policy), the streams a preflight too, every other path
/// `GET` and `HEAD` only. One list, so that a `405` never names a method the path refuses or
/// leaves out one it serves.
fn allowed(path: &str) -> &'static str {
    match path {
        HUB_PATH | "/publish" => HUB_METHODS,
        "/sse" | "/metrics/stream" => "GET, HEAD, OPTIONS",
        _ => "GET, HEAD",
    }
}

/// `405` for a method `path` does not serve, with the path's true `Allow`; closes, as every
/// refusal of a method always has.
fn not_allowed(path: &str) -> Reply {
    let allow = allowed(path);
    Reply::text(
        Status::MethodNotAllowed,
        "405 Method Not Allowed\n",
        &[("Allow", allow)],
    )
    .closing()
}

/// The discovery link (Mercure, RFC 8288) on the page's answers: a path-absolute reference,
/// so it names this server on whatever origin the client reached it by (a proxy's included)
/// without trusting `Host`.
pub const HUB_LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

/// A `400` of the hub's URL: the line saying why, and RFC 6750's `invalid_request`, as
/// Mercure's error responses want.
fn invalid_request(why: &str) -> Reply {
    Reply::text_owned(
        Status::BadRequest,
        format!("400 Bad Request: {why}\n"),
        &[("WWW-Authenticate", "Bearer error=\"invalid_request\"")],
    )
}

/// Whether `presented` (an `Authorization` value) carries `token`, compared in constant time.
fn bearer_matches(presented: Option<&[u8]>, token: &str) -> bool {
    let Some(got) = presented.and_then(crate::hub::jwt::bearer_token) else {
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

/// Whether this request may publish without any token: from a loopback client when neither
/// `--publish-token` nor `--jwt-key` is set. A loopback connection is trusted only for itself:
/// a proxy on this machine (nginx) is a loopback peer too, and what it forwards comes from
/// anywhere.
fn tokenless(app: &App, req: &Request<'_>, peer: Peer<'_>) -> bool {
    app.publish_token.is_none() && app.jwt.is_none() && peer.loopback && !req.proxied
}

/// `GET /publish`: what publishing needs here, as JSON, so a page can say it instead of
/// guessing: `{"token":"none"|"publish-token"|"jwt"|"publish-token or jwt","loopback":bool,
/// "tokenless":bool}`. `token` is what a publisher may present, `loopback` whether loopback
/// clients may publish without one, `tokenless` whether the client asking may. No secret is
/// in it: only which kinds of token are accepted.
fn publish_policy(app: &App, req: &Request<'_>, peer: Peer<'_>) -> Reply {
    let token = match (app.publish_token.is_some(), app.jwt.is_some()) {
        (false, false) => "none",
        (true, false) => "publish-token",
        (false, true) => "jwt",
        (true, true) => "publish-token or jwt",
    };
    let loopback = app.publish_token.is_none() && app.jwt.is_none();
    let body = format!(
        "{{\"token\":\"{token}\",\"loopback\":{loopback},\"tokenless\":{}}}\n",
        tokenless(app, req, peer)
    );
    Reply::with_body(
        Status::Ok,
        "application/json",
        crate::core::body::Body::Shared(body.into_bytes().into()),
        &[("Cache-Control", "no-store")],
    )
}

/// A request whose client waits for `100 Continue` before it sends its body (`Expect:
/// 100-continue`): the final answer now when the head alone decides it (the route, who may
/// publish, the media type, the shared store being down), else [`Reply::proceed`].
fn before_body(call: Call<'_>, ctx: &mut Ctx<'_>) -> Reply {
    let Call { app, req, .. } = call;
    match (req.method, req.path) {
        (Method::Post, "/publish" | HUB_PATH) => {
            if let Err(refused) = publisher(call, ctx) {
                return cors(app, req, refused);
            }
            let media = parse::media(req.content_type);
            if media.is_err() || (req.path == HUB_PATH && media != Ok(parse::Media::Form)) {
                ctx.shard.rejected(Rejected::MediaType);
                return cors(app, req, unsupported_media_type());
            }
            if let Some(store) = &app.store {
                if let Err(why) = ctx.hub.hub.store_state() {
                    ctx.shard.rejected(Rejected::Unavailable);
                    return cors(app, req, store_down(store.name(), &why));
                }
            }
            Reply::proceed()
        }
        (Method::Post, path) => not_allowed(path),
        _ => Reply::proceed(),
    }
}

/// Who may publish, from the head alone: `Ok` with the publisher token's claims (`None` for
/// the static token or an open loopback server), or the `401` answer.
fn publisher(call: Call<'_>, ctx: &mut Ctx<'_>) -> Result<Option<jwt::Claims>, Reply> {
    let Call {
        app,
        req,
        peer,
        now,
    } = call;
    if let Some(refused) = foreign_origin(app, req) {
        ctx.shard.rejected(Rejected::Forbidden);
        return Err(refused);
    }
    // On the hub's URL a browser may publish with its token cookie (Mercure), which it sends
    // on its own: such a publish must say which page sent it (CSRF, the spec's security
    // considerations). `/publish` reads the header only, as it always has (the page keeps a
    // subscriber token in that cookie and publishes there with its own publish token).
    let header = req.authorization.and_then(jwt::bearer_token);
    let cookie = match (&app.jwt, header) {
        (Some(_), None) if req.path == HUB_PATH => cookie_token(req),
        _ => None,
    };
    if cookie.is_some() && !page_allowed(app, req) {
        ctx.shard.rejected(Rejected::Forbidden);
        return Err(Reply::text(
            Status::Forbidden,
            "403 Forbidden: a publish authorized by cookie needs an Origin or Referer of this server's origin or a --cors-origin one\n",
            &[("Vary", "Origin")],
        ));
    }
    let presented = header.or(cookie);
    let by_static = app
        .publish_token
        .as_deref()
        .is_some_and(|t| bearer_matches(req.authorization, t));
    let open = tokenless(app, req, peer);
    // A token that is not the static one must be a publisher JWT (checked once the topics are
    // known); with neither configured, loopback clients may publish without one.
    match (&app.jwt, presented) {
        _ if by_static || open => Ok(None),
        (Some(verifier), Some(token)) => match verifier.verify(token, now.unix_ms) {
            Ok(c) => Ok(Some(c)),
            Err(_) => {
                ctx.shard.rejected(Rejected::Unauthorized);
                Err(invalid_token())
            }
        },
        _ => {
            ctx.shard.rejected(Rejected::Unauthorized);
            let why = if peer.loopback && app.publish_token.is_none() && app.jwt.is_some() {
                "401 Unauthorized: with --jwt-key a publisher token is needed, from loopback too\n"
            } else if app.publish_token.is_some() || app.jwt.is_some() {
                "401 Unauthorized: a valid Authorization: Bearer token is needed to publish\n"
            } else if peer.loopback {
                "401 Unauthorized: a request forwarded by a proxy (Forwarded, X-Forwarded-*, X-Real-IP) is no loopback client; without --publish-token or --jwt-key only loopback clients may publish\n"
            } else {
                "401 Unauthorized: without --publish-token only loopback clients may publish\n"
            };
            Err(Reply::text(
                Status::Unauthorized,
                why,
                &[("WWW-Authenticate", "Bearer")],
            ))
        }
    }
}

/// The `415` for a publish that is neither form nor JSON.
fn unsupported_media_type() -> Reply {
    Reply::text(
        Status::UnsupportedMediaType,
        "415 Unsupported Media Type: send application/x-www-form-urlencoded or application/json\n",
        &[],
    )
}

/// The `415` for a Mercure publish that is not a form.
fn form_only() -> Reply {
    Reply::text(
        Status::UnsupportedMediaType,
        "415 Unsupported Media Type: a Mercure publish is application/x-www-form-urlencoded\n",
        &[("Accept-Post", "application/x-www-form-urlencoded")],
    )
}

/// Whether `topic`, resolved against the hub's URL, addresses the hub's own namespace
/// (`/.well-known/mercure` and below, whatever the scheme and host): Mercure keeps it for what
/// the hub publishes itself (subscription events), so no publisher may forge those.
pub fn reserved_topic(topic: &str) -> bool {
    static BASE: std::sync::OnceLock<url::Url> = std::sync::OnceLock::new();
    let base = BASE
        .get_or_init(|| url::Url::parse("https://hub.invalid/.well-known/mercure").expect("a URL"));
    let Ok(u) = base.join(topic) else {
        return false;
    };
    let path = u.path();
    path == HUB_PATH || path.starts_with("/.well-known/mercure/")
}

/// `POST /publish` and `POST /.well-known/mercure` (by `dialect`'s rules): store an event,
/// answer its id once it is stored.
fn publish(call: Call<'_>, body: &[u8], ctx: &mut Ctx<'_>, dialect: Dialect) -> Reply {
    let Call {
        app,
        req,
        peer,
        now,
    } = call;
    let mercure = dialect == Dialect::Mercure;
    let claims = match publisher(call, ctx) {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    let mut p = match parse::publish_as(dialect, req.content_type, body) {
        Ok(p) => p,
        // Mercure's URL: a field over its length limit is 413 (draft-08); /publish keeps 400.
        Err(Refusal::TooLong(why)) if mercure => {
            ctx.shard.rejected(Rejected::TooLarge);
            return Reply::text_owned(
                Status::PayloadTooLarge,
                format!("413 Content Too Large: {why}\n"),
                &[],
            );
        }
        Err(Refusal::Invalid(why) | Refusal::TooLong(why)) => {
            ctx.shard.rejected(Rejected::Invalid);
            if mercure {
                return invalid_request(&why);
            }
            return Reply::text_owned(Status::BadRequest, format!("400 Bad Request: {why}\n"), &[]);
        }
        Err(Refusal::MediaType) => {
            ctx.shard.rejected(Rejected::MediaType);
            return if mercure {
                form_only()
            } else {
                unsupported_media_type()
            };
        }
    };
    let insufficient = [("WWW-Authenticate", "Bearer error=\"insufficient_scope\"")];
    if let Some(t) = p.topics.iter().find(|t| reserved_topic(t)) {
        ctx.shard.rejected(Rejected::Forbidden);
        let t: String = t.chars().take(256).collect();
        return Reply::text_owned(
            Status::Forbidden,
            format!(
                "403 Forbidden: topic {t:?} is in the hub's own namespace ({HUB_PATH}/), which no publisher may use\n"
            ),
            &insufficient,
        );
    }
    if let Some(c) = claims {
        if let Some(t) = p.topics.iter().find(|t| !c.publish.matches(t)) {
            ctx.shard.rejected(Rejected::Forbidden);
            let t: String = t.chars().take(256).collect();
            return Reply::text_owned(
                Status::Forbidden,
                format!("403 Forbidden: this token may not publish to topic {t:?}\n"),
                &insufficient,
            );
        }
    }
    // The presence namespace is the hub's own: a publisher there could forge subscription
    // events (whatever its token, and with `--subscriptions` off too, so turning it on later
    // never finds forged ones in the history).
    if let Some(t) = p.topics.iter().find(|t| presence::is_presence_topic(t)) {
        ctx.shard.rejected(Rejected::Forbidden);
        let t: String = t.chars().take(256).collect();
        return Reply::text_owned(
            Status::Forbidden,
            format!("403 Forbidden: topic {t:?} is the hub's own (subscription events)\n"),
            &[],
        );
    }
    p.private |= app
        .private_topics
        .matches_any(p.topics.iter().map(String::as_str));
    let hub = &ctx.hub.hub;
    if let Some(why) = p.id.as_deref().and_then(|id| hub.own_form(id)) {
        ctx.shard.rejected(Rejected::Invalid);
        return Reply::text_owned(Status::BadRequest, format!("400 Bad Request: {why}\n"), &[]);
    }
    if let Some(store) = &app.store {
        let name = store.name();
        if let Err(why) = hub.store_state() {
            ctx.shard.rejected(Rejected::Unavailable);
            return store_down(name, &why);
        }
        // A publisher id is taken here for the data dir's store (its writer stores in order,
        // and the history indexes the id when the event arrives there); the shared store
        // decides in Redis, atomically for every instance (the bridge's script).
        let reserved = match &p.id {
            Some(id) if !hub.is_redis() => {
                if !hub.reserve_id(id) {
                    ctx.shard.rejected(Rejected::Conflict);
                    return id_taken(id);
                }
                Some((hub.clone(), id.clone()))
            }
            _ => None,
        };
        let own_id = p.id.clone();
        // Answered once the store holds it (or could not): never a 200 for an event that
        // is not stored.
        let later = peer.later.clone();
        let (key, ticket) = (peer.key, ctx.hub.ticket());
        store.submit(
            p,
            Box::new(move |stored| {
                let reply = match stored {
                    Ok(id) => published(own_id.unwrap_or(id), dialect),
                    Err(why) => {
                        if let Some((hub, id)) = &reserved {
                            hub.release_id(id);
                        }
                        match &own_id {
                            Some(id) if crate::hub::backend::is_id_taken(&why) => id_taken(id),
                            _ => store_down(name, &why),
                        }
                    }
                };
                later.send(key, ticket, reply);
            }),
        );
        ctx.shard.publishes.inc();
        return Reply::pending(ticket).timed_publish();
    }
    match hub.try_publish(&p, now.us) {
        Ok(seq) => {
            ctx.shard.publishes.inc();
            published(p.id.unwrap_or_else(|| hub.id(seq)), dialect).timed_publish()
        }
        Err(IdRefused::Taken) => {
            ctx.shard.rejected(Rejected::Conflict);
            id_taken(p.id.as_deref().unwrap_or_default())
        }
        Err(IdRefused::OwnForm(why)) => {
            ctx.shard.rejected(Rejected::Invalid);
            Reply::text_owned(Status::BadRequest, format!("400 Bad Request: {why}\n"), &[])
        }
    }
}

/// `409`: a retained event already has the id a publisher gave (ids name one event within
/// the history; once that event is dropped, the id may be given again).
fn id_taken(id: &str) -> Reply {
    let id: String = id.chars().take(256).collect();
    Reply::text_owned(
        Status::Conflict,
        format!("409 Conflict: an event with id {id:?} is in the history\n"),
        &[],
    )
}

/// `200` with the stored event's id: on `/publish` with a newline (after `curl -d … /publish`
/// the id stands on its own line rather than running into the shell prompt); on the hub's
/// URL the id alone, as Mercure's spec says ("the response body MUST be the id").
fn published(id: String, dialect: Dialect) -> Reply {
    let mut body = id.into_bytes();
    if dialect == Dialect::Publish {
        body.push(b'\n');
    }
    Reply::with_body(
        Status::Ok,
        crate::core::reply::TEXT_PLAIN,
        crate::core::body::Body::Shared(body.into()),
        &[("Cache-Control", "no-store")],
    )
}

/// CSRF: a publish from a web page (a request with `Origin`, or that the browser marks
/// `Sec-Fetch-Site: cross-site`/`same-site`) is accepted only from the server's own origin or
/// a `--cors-origin` one, else the `403` naming the origin. Requests without `Origin` (curl,
/// backends) are not a browser's and pass. A form on any site can POST here, and in the default
/// open mode, or with a cookie, the browser's position (loopback, a token cookie) would
/// otherwise lend that site the right to publish.
fn foreign_origin(app: &App, req: &Request<'_>) -> Option<Reply> {
    let site = req.sec_fetch_site.map(<[u8]>::trim_ascii);
    // The browser's own word that the page is this origin (forbidden for scripts to set, so
    // no page can forge it); it holds even behind a proxy that rewrites Host.
    if site == Some(b"same-origin") {
        return None;
    }
    let refuse = |why: String| {
        Some(Reply::text_owned(
            Status::Forbidden,
            format!("403 Forbidden: {why}\n"),
            &[("Vary", "Origin")],
        ))
    };
    let Some(origin) = req.origin.map(<[u8]>::trim_ascii) else {
        let cross = site.is_some_and(|s| s == b"cross-site" || s == b"same-site");
        return cross
            .then(|| "a cross-site browser request without Origin may not publish".to_string())
            .and_then(refuse);
    };
    let scheme = match req.forwarded_proto.map(first_token) {
        Some(p) if p.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    };
    if origin != b"null"
        && (req.host.is_some_and(|h| same_origin(origin, h, scheme))
            || app
                .cors_origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin)))
    {
        return None;
    }
    let shown: String = String::from_utf8_lossy(origin).chars().take(256).collect();
    refuse(format!(
        "origin {shown:?} may not publish: only this server's own origin{}",
        if app.cors_origins.is_empty() {
            " (allow another with --cors-origin)".to_string()
        } else {
            format!(" and {}", app.cors_origins.join(", "))
        }
    ))
}

/// Whether the page that sent a request is known and allowed (for a publish authorized by
/// cookie): the browser says it is this origin (`Sec-Fetch-Site: same-origin`), or its
/// `Origin`, else the origin of its `Referer`, is this server's own or a `--cors-origin` one.
/// A request naming no page is refused: the cookie alone proves nothing about who sent it.
fn page_allowed(app: &App, req: &Request<'_>) -> bool {
    if req.sec_fetch_site.map(<[u8]>::trim_ascii) == Some(b"same-origin") {
        return true;
    }
    let origin = match (req.origin.map(<[u8]>::trim_ascii), req.referer) {
        (Some(o), _) => o,
        (None, Some(r)) => referer_origin(r.trim_ascii()),
        (None, None) => return false,
    };
    let scheme = match req.forwarded_proto.map(first_token) {
        Some(p) if p.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    };
    origin != b"null"
        && !origin.is_empty()
        && (req.host.is_some_and(|h| same_origin(origin, h, scheme))
            || app
                .cors_origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin)))
}

/// The origin part of a `Referer` URL (`scheme://authority`, before any path, query or
/// fragment); empty when it has none.
fn referer_origin(r: &[u8]) -> &[u8] {
    let Some(sep) = r.windows(3).position(|w| w == b"://") else {
        return b"";
    };
    let rest = &r[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    &r[..sep + 3 + end]
}

/// The first element of a comma-separated field value (a proxy chain's first hop), trimmed.
fn first_token(v: &[u8]) -> &[u8] {
    v.split(|&b| b == b',').next().unwrap_or(v).trim_ascii()
}

/// The default port of `scheme`.
fn default_port(scheme: &[u8]) -> Option<u16> {
    if scheme.eq_ignore_ascii_case(b"http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case(b"https") {
        Some(443)
    } else {
        None
    }
}

/// `host[:port]` (a `[v6]` literal included) as its host and port, the port defaulted; `None`
/// when the port is not a number.
fn authority(v: &[u8], default: u16) -> Option<(&[u8], u16)> {
    let host_end = match v.first() {
        Some(b'[') => v.iter().position(|&b| b == b']')? + 1,
        _ => v.iter().position(|&b| b == b':').unwrap_or(v.len()),
    };
    let (host, rest) = v.split_at(host_end);
    let port = match rest {
        [] | [b':'] => default,
        [b':', digits @ ..] => u16::try_from(crate::util::number::parse_u64(digits)?).ok()?,
        _ => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Whether `origin` (`scheme://host[:port]`) is the origin a request with this `Host` reached
/// on `scheme`: same scheme, host (ASCII case-insensitive) and port (defaults filled in).
fn same_origin(origin: &[u8], host: &[u8], scheme: &str) -> bool {
    let Some(sep) = origin.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let (o_scheme, o_auth) = (&origin[..sep], &origin[sep + 3..]);
    if !o_scheme.eq_ignore_ascii_case(scheme.as_bytes()) {
        return false;
    }
    let Some(default) = default_port(o_scheme) else {
        return false;
    };
    match (authority(o_auth, default), authority(host, default)) {
        (Some((oh, op)), Some((hh, hp))) => oh.eq_ignore_ascii_case(hh) && op == hp,
        _ => false,
    }
}

/// The origin a CORS answer names: `*` without `--cors-origin`; else the request's `Origin`
/// when it is one of them (so several can be allowed), or the first.
fn allowed_origin<'a>(app: &'a App, req: &Request<'_>) -> &'a str {
    let Some(first) = app.cors_origins.first() else {
        return "*";
    };
    let sent = req.origin.map(<[u8]>::trim_ascii).unwrap_or_default();
    app.cors_origins
        .iter()
        .find(|o| o.as_bytes().eq_ignore_ascii_case(sent))
        .unwrap_or(first)
}

/// Lets the allowed origin's script read a publish answer.
fn cors(app: &App, req: &Request<'_>, mut reply: Reply) -> Reply {
    if !app.cors_origins.is_empty() {
        let o = allowed_origin(app, req);
        reply.head = reply
            .head
            .field("Access-Control-Allow-Origin", o)
            .field("Access-Control-Allow-Credentials", "true")
            .field("Vary", "Origin");
    }
    reply
}

/// `503` for a publish the event store (`name`: Redis, the data dir) could not store.
fn store_down(name: &str, why: &str) -> Reply {
    let why = why.replace(['\r', '\n'], " ");
    Reply::text_owned(
        Status::ServiceUnavailable,
        format!("503 Service Unavailable: the event log ({name}) did not store it: {why}\n"),
        &[("Retry-After", "1")],
    )
}

/// The `401` for a token that does not verify: the same answer whatever the reason, so it
/// tells a forger nothing (the reason is counted, not sent).
fn invalid_token() -> Reply {
    Reply::text(
        Status::Unauthorized,
        "401 Unauthorized: invalid token\n",
        &[("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
    )
}

/// A subscriber's token, by Mercure's precedence (both drafts): `Authorization: Bearer`, else
/// the query's (`authorization=`, `access_token=`), else the cookie (`mercureAuthorization`,
/// draft-07's name, or `mercureAccessToken`, draft-08's).
/// `query` is the token the query carried; every reader of a subscriber token (a stream, the
/// subscriptions API) goes through here, so they all take the same one.
fn subscriber_token<'r>(req: &'r Request<'_>, query: Option<&'r [u8]>) -> Option<&'r [u8]> {
    req.authorization
        .and_then(jwt::bearer_token)
        .or(query)
        .or_else(|| cookie_token(req))
}

/// The token of a Mercure cookie, if the request carries one.
fn cookie_token<'r>(req: &'r Request<'_>) -> Option<&'r [u8]> {
    let cookie = req.cookie?;
    jwt::cookie_token(cookie, jwt::COOKIE_NAME)
        .or_else(|| jwt::cookie_token(cookie, jwt::ACCESS_COOKIE_NAME))
}

/// `GET /sse?topic=...`: a hub subscription, replaying what followed the resume id first.
fn topic_stream(call: Call<'_>, sub: parse::Subscription, ctx: &mut Ctx<'_>) -> Reply {
    let Call { app, req, now, .. } = call;
    // The token is checked, not kept: what the stream keeps is which of its topics' private
    // events it may read, and when it ends.
    let claims = match (
        &app.jwt,
        subscriber_token(req, sub.authorization.as_deref().map(str::as_bytes)),
    ) {
        (Some(verifier), Some(token)) => match verifier.verify(token, now.unix_ms) {
            Ok(c) => Some(c),
            Err(_) => return invalid_token(),
        },
        _ => None,
    };
    let head = match admit(app, req, ctx) {
        Ok(head) => head,
        Err(answer) => return answer,
    };
    // Its subscription events (`--subscriptions`), published by the loop once the stream is
    // registered.
    let joining = ctx.hub.hub.presence().is_some().then(|| {
        let payload = |t: &str| {
            claims
                .as_ref()
                .and_then(|c| c.payload_for(t))
                .map(|v| v.to_string())
        };
        let selectors = sub
            .selectors
            .iter()
            .map(|(_, t)| (t.clone(), payload(t)))
            .collect();
        Box::new(crate::hub::history::Joining { selectors })
    });
    let hub = &mut *ctx.hub;
    // The header wins over the query (Mercure: "the HTTP header MUST take precedence").
    let last = req
        .last_event_id
        .or(sub.last_event_id.as_deref().map(str::as_bytes));
    let selectors: Vec<_> = sub
        .selectors
        .iter()
        .map(|(kind, text)| (*kind, text.as_str()))
        .collect();
    let reads = claims.as_ref().map(|c| &c.subscribe);
    // The hub decides the subscription (selectors compiled, what it may read, where it
    // starts); the loop registers it in the same step, whatever the start (a replay included).
    let subscribed = match hub.subscribe_selectors(&selectors, reads, last) {
        Ok(subscribed) => subscribed,
        Err(why) => {
            // Nothing was admitted to the hub; the stream's slot goes back.
            ctx.metrics.admission().close();
            return invalid_request(&format!("topic selector refused: {why}"));
        }
    };
    // Mercure: a resumed subscription's answer says where it resumed from. From the shared
    // store, only its first page can tell: the stream holds its head until then.
    let from_store = last != Some(EARLIEST.as_bytes())
        && matches!(
            subscribed.start,
            Start::Store { .. } | Start::StoreId { .. }
        );
    let head = match last {
        Some(_) if from_store => head,
        Some(raw) => head.field(
            "Last-Event-ID",
            &hub.resume_anchor(&subscribed.start, raw, reads),
        ),
        None => head,
    };
    let expires = claims.as_ref().and_then(|c| c.exp_unix_ms).map(|exp| {
        let left = exp.saturating_sub(now.unix_ms).max(1) as u64;
        now.ms.saturating_add(left)
    });
    let heartbeat = hub.hub.config().heartbeat_ms;
    let mark = sub.mark_private;
    let live = |cursor| {
        Source::topics(
            now,
            Subscription {
                cursor,
                filter: subscribed.filter,
                private: subscribed.private,
                heartbeat_ms: heartbeat,
                expires_ms: expires,
                mark_private: mark,
            },
        )
    };
    let (source, body) = match subscribed.start {
        Start::From(cursor) => (live(cursor), None),
        // Older than this instance's history but maybe not the shared store's: the stream
        // starts now and replays the store's part page by page (read on the bridge's thread,
        // encoded here on the loop), then goes live.
        Start::Store { after: 0, until } if last == Some(EARLIEST.as_bytes()) => {
            (Source::replay_all(live(until), until), None)
        }
        Start::Store { after, until } => (
            Source::replay(live(until), after, until).naming_anchor(reads),
            None,
        ),
        // A publisher id the shared store may hold: the first page finds it.
        Start::StoreId { id, until } => (
            Source::replay_after_id(live(until), id, until).naming_anchor(reads),
            None,
        ),
        Start::Reset {
            frame,
            cursor,
            reason,
        } => {
            ctx.shard.resets[reason as usize].inc();
            (
                live(cursor),
                Some(crate::core::body::Body::Shared(frame.into())),
            )
        }
    };
    Reply {
        status: Status::Ok,
        head,
        body,
        timing: Timing::Untimed,
        then: Then::Stream(source, joining),
    }
}

/// `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]` (`--subscriptions`): the
/// active subscriptions as Mercure's JSON-LD, with `lastEventID` from the same snapshot. Read
/// with a token whose subscribe selectors match the path asked for (`401` without a valid one,
/// `403` otherwise, as Mercure's hub); a collection lists only the subscriptions whose own
/// topic the token may read too (stricter than Mercure: a subscription event's topic and its
/// entry here are one thing, read under one rule). `404` for an unknown subscription.
fn subscriptions_api(call: Call<'_>, ctx: &mut Ctx<'_>) -> Reply {
    let Call { app, req, now, .. } = call;
    let rest = &req.path[presence::PREFIX.len()..];
    let segments: Vec<&str> = match rest {
        "" => Vec::new(),
        _ => rest[1..].split('/').collect(),
    };
    if segments.len() > 2 || segments.iter().any(|s| s.is_empty()) {
        return Reply::text(Status::NotFound, "404 Not Found\n", &[]);
    }
    let decoded: Option<Vec<String>> = segments
        .iter()
        .map(|s| String::from_utf8(parse::percent_decode(s.as_bytes(), parse::Plus::Literal)?).ok())
        .collect();
    let Some(decoded) = decoded else {
        return Reply::text(
            Status::BadRequest,
            "400 Bad Request: a bad percent-encoding in the path\n",
            &[],
        );
    };
    let query = parse::pairs(req.query.as_bytes()).unwrap_or_default();
    let from_query = query
        .iter()
        .find(|(k, _)| k == "authorization" || k == "access_token")
        .map(|(_, v)| v.as_bytes());
    let token = subscriber_token(req, from_query);
    let claims = match (&app.jwt, token) {
        (Some(verifier), Some(token)) => match verifier.verify(token, now.unix_ms) {
            Ok(c) => c,
            Err(_) => {
                ctx.shard.rejected(Rejected::Unauthorized);
                return invalid_token();
            }
        },
        _ => {
            ctx.shard.rejected(Rejected::Unauthorized);
            return Reply::text(
                Status::Unauthorized,
                "401 Unauthorized: the subscriptions API needs a subscriber token\n",
                &[("WWW-Authenticate", "Bearer")],
            );
        }
    };
    if !claims.subscribe.matches(req.path) {
        ctx.shard.rejected(Rejected::Forbidden);
        return Reply::text(
            Status::Forbidden,
            "403 Forbidden: this token's subscribe claims do not select this path\n",
            &[],
        );
    }
    let may_read = |id: &str| claims.subscribe.matches(id);
    let answer = ctx.hub.hub.with_presence(|registry, last| {
        let body = match &decoded[..] {
            [topic, subscriber] => {
                let id = presence::subscription_id(topic, subscriber);
                if !may_read(&id) {
                    return None;
                }
                registry.one(topic, subscriber, last)?
            }
            _ => {
                let mut out = String::with_capacity(256 + 256 * registry.len().min(4096));
                let topic = decoded.first().map(String::as_str);
                registry.collection_into(
                    &mut out,
                    presence::Collection {
                        id: req.path,
                        topic,
                        last_event_id: last,
                    },
                    may_read,
                );
                out
            }
        };
        Some((body, format!("\"{last}\"")))
    });
    let Some(Some((body, etag))) = answer else {
        return Reply::text(Status::NotFound, "404 Not Found\n", &[]);
    };
    let extra = [
        ("ETag", etag.as_str()),
        ("Cache-Control", "must-revalidate"),
    ];
    if req
        .if_none_match
        .is_some_and(|v| static_files::none_match(v, &etag))
    {
        return not_modified(&extra);
    }
    Reply::with_body(
        Status::Ok,
        "application/ld+json",
        crate::core::body::Body::Shared(body.into_bytes().into()),
        &extra,
    )
}

/// `GET /metrics/stream`: the server's figures, one `figures` event a second, the last five
/// minutes first. Counts as a stream (it holds a connection like one).
fn figures_stream(app: &App, req: &Request<'_>, now: Now, ctx: &mut Ctx<'_>) -> Reply {
    match admit(app, req, ctx) {
        Ok(head) => Reply {
            status: Status::Ok,
            head,
            body: None,
            timing: Timing::Untimed,
            then: Then::Stream(Source::figures(now), None),
        },
        Err(answer) => answer,
    }
}

/// `GET /sse`: the seed's clock, or a jittered `retry:` when no stream may be opened.
fn clock_stream(app: &App, req: &Request<'_>, now: Now, ctx: &mut Ctx<'_>) -> Reply {
    match admit(app, req, ctx) {
        Ok(head) => Reply {
            status: Status::Ok,
            head,
            body: None,
            timing: Timing::Untimed,
            then: Then::Stream(
                Source::clock(now, ctx.cfg.interval_ms, req.last_event_id),
                None,
            ),
        },
        Err(answer) => answer,
    }
}

/// Whether a stream may start: its head if so (an admission slot is then held, see
/// [`Then::Stream`]); else the answer instead: the head alone for `HEAD`, a jittered `retry:`
/// when `--max-streams` is reached (counted) or the server is stopping.
fn admit(app: &App, req: &Request<'_>, ctx: &mut Ctx<'_>) -> Result<Head, Reply> {
    let head = stream_head(app, req);
    if req.method == Method::Head {
        return Err(Reply {
            status: Status::Ok,
            head,
            body: None,
            timing: Timing::Untimed,
            then: Then::KeepAlive,
        });
    }
    if ctx.draining || !ctx.metrics.admission().try_open() {
        if !ctx.draining {
            ctx.shard.streams_rejected.inc();
        }
        return Err(Reply::stream_refused(ctx.rng.jitter(ctx.cfg.reconnect_ms)));
    }
    Ok(head)
}

/// An event stream's head: `Connection: close` when the client asked for it (the stream then
/// ends with the connection), the allowed origin.
fn stream_head(app: &App, req: &Request<'_>) -> Head {
    let origin = allowed_origin(app, req);
    let connection = if req.keep_alive {
        Connection::KeepAlive
    } else {
        Connection::Close
    };
    Head::new(Status::Ok).event_stream_for(connection, origin)
}

/// `OPTIONS`: a CORS preflight. Streams may be read from the allowed origin (any by default)
/// with the headers a fetch-based EventSource adds; publishing from a browser needs
/// `--cors-origin`.
fn preflight(app: &App, req: &Request<'_>) -> Reply {
    let (origin, methods, headers) = match req.path {
        // Subscribing from anywhere, as /sse; a browser's publish is then held to the
        // origin check of the POST itself (`foreign_origin`).
        HUB_PATH => (
            allowed_origin(app, req),
            HUB_METHODS,
            "Last-Event-ID, Authorization, Cache-Control, Accept, Content-Type",
        ),
        "/sse" | "/metrics/stream" => (
            allowed_origin(app, req),
            allowed(req.path),
            "Last-Event-ID, Authorization, Cache-Control, Accept",
        ),
        "/publish" => match app.cors_origins.is_empty() {
            false => (
                allowed_origin(app, req),
                "POST, OPTIONS",
                "Authorization, Content-Type",
            ),
            true => {
                return Reply::text(
                    Status::Forbidden,
                    "403 Forbidden: publishing from a browser needs --cors-origin\n",
                    &[("Allow", allowed("/publish"))],
                )
            }
        },
        path => return not_allowed(path),
    };
    let mut head = Head::new(Status::NoContent)
        .field("Access-Control-Allow-Origin", origin)
        .field("Access-Control-Allow-Methods", methods)
        .field("Access-Control-Allow-Headers", headers)
        .field("Access-Control-Max-Age", "86400");
    if origin != "*" {
        head = head
            .field("Access-Control-Allow-Credentials", "true")
            .field("Vary", "Origin");
    }
    Reply {
        status: Status::NoContent,
        head,
        body: None,
        timing: Timing::Untimed,
        then: Then::KeepAlive,
    }
}

/// `304 Not Modified` with the validators a `200` would carry (the page's files and the
/// subscriptions API).
fn not_modified(extra: &[(&str, &str)]) -> Reply {
    let mut head = Head::new(Status::NotModified);
    for (name, value) in extra {
        head = head.field(name, value);
    }
    Reply {
        status: Status::NotModified,
        head,
        body: None,
        timing: Timing::Untimed,
        then: Then::KeepAlive,
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
        ("Link", HUB_LINK),
    ];
    if req
        .if_none_match
        .is_some_and(|v| static_files::none_match(v, &file.etag))
    {
        return not_modified(&extra);
    }
    Reply::with_body(Status::Ok, file.content_type, file.body, &extra)
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn an_origin_is_the_host_on_the_scheme_with_default_ports() {
        let yes = [
            ("http://example.com", "example.com", "http"),
            ("http://example.com", "example.com:80", "http"),
            ("http://example.com:80", "example.com", "http"),
            ("https://example.com", "example.com:443", "https"),
            ("http://EXAMPLE.com:3000", "example.COM:3000", "http"),
            ("http://127.0.0.1:3000", "127.0.0.1:3000", "http"),
            ("http://[::1]:3000", "[::1]:3000", "http"),
            ("http://example.com", "example.com:", "http"),
        ];
        for (origin, host, scheme) in yes {
            assert!(
                same_origin(origin.as_bytes(), host.as_bytes(), scheme),
                "{origin} {host} {scheme}"
            );
        }
        let no = [
            ("https://example.com", "example.com", "http"),
            ("http://example.com", "example.com", "https"),
            ("http://example.com:3001", "example.com:3000", "http"),
            ("http://example.com", "example.com:3000", "http"),
            ("http://evil.example", "example.com", "http"),
            ("http://example.com.evil.example", "example.com", "http"),
            ("null", "example.com", "http"),
            ("example.com", "example.com", "http"),
            ("ftp://example.com", "example.com", "ftp"),
            ("http://example.com:99999", "example.com:99999", "http"),
            ("http://example.com:8x", "example.com:8x", "http"),
            ("http://", "", "http"),
            ("http://[::1]:3000", "[::2]:3000", "http"),
            ("http://example.com/", "example.com", "http"),
        ];
        for (origin, host, scheme) in no {
            assert!(
                !same_origin(origin.as_bytes(), host.as_bytes(), scheme),
                "{origin} {host} {scheme}"
            );
        }
    }
}
