//! The HTTP/1.1 request-head parser (an `httparse` wrapper) and response-head writer.
//!
//! "Incomplete is not invalid": [`parse`] answers `Ok(None)` for a head that is not complete
//! yet, `Ok(Some(..))` for a complete, acceptable head and `Err(HttpError)` for a head that can
//! never become acceptable; each error names the status code it is answered with. The caller
//! owns the buffer and decides how much may accumulate (see [`Limits`]).
//!
//! **Invariant:** this module does no IO, reads no clock and never panics on any input.

use crate::util::number::parse_u64;
use std::fmt;

/// Caps on a request head; each violation has its own status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers plus the blank line, in bytes (431 past it).
    pub max_head: usize,
    /// The request target, in bytes (414 past it).
    pub max_target: usize,
    /// Number of header fields (431 past it).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8192,
            max_target: 2048,
            max_headers: 64,
        }
    }
}

/// The methods this server implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Carries a body (`Content-Length`); what it may be sent to is the router's business.
    Post,
    /// A CORS preflight.
    Options,
    /// A method that exists in HTTP but that no path here serves (PUT, DELETE, PATCH,
    /// TRACE): parsed so that the router answers `405` with the `Allow` of the path asked for.
    /// Its body, if any, is never read.
    Other(&'static str),
}

/// A complete, acceptable request head. Borrowed from the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The path part of the target (before any `?`), still percent-encoded.
    pub path: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The raw `Last-Event-ID` value, if sent.
    pub last_event_id: Option<&'a [u8]>,
    /// The raw `If-None-Match` value, if sent.
    pub if_none_match: Option<&'a [u8]>,
    /// The query part of the target (after `?`, before any `#`), still percent-encoded.
    pub query: &'a str,
    /// The body's length from `Content-Length` (0 without one).
    pub content_length: u64,
    /// The raw `Content-Type` value, if sent.
    pub content_type: Option<&'a [u8]>,
    /// The raw `Authorization` value, if sent.
    pub authorization: Option<&'a [u8]>,
    /// The raw `Cookie` value, if sent (the first one).
    pub cookie: Option<&'a [u8]>,
    /// `Expect: 100-continue` on HTTP/1.1 (RFC 9110 section 10.1.1): the client waits for
    /// `100 Continue` (or the final answer) before it sends the body. Ignored on HTTP/1.0, as
    /// the RFC says; other expectations are ignored too.
    pub expect_continue: bool,
    /// The `Host` value, trimmed, if sent.
    pub host: Option<&'a [u8]>,
    /// The raw `Origin` value, if sent (browsers send it on every `POST`).
    pub origin: Option<&'a [u8]>,
    /// The raw `Referer` value, if sent (where a browser request's page is, when it sends no
    /// `Origin`).
    pub referer: Option<&'a [u8]>,
    /// The raw `Sec-Fetch-Site` value, if sent (`same-origin`, `same-site`, `cross-site`,
    /// `none`).
    pub sec_fetch_site: Option<&'a [u8]>,
    /// The raw `X-Forwarded-Proto` value, if sent (the scheme a proxy in front was reached by).
    pub forwarded_proto: Option<&'a [u8]>,
    /// The request names a client behind a proxy: it carries `Forwarded`, `X-Real-IP` or any
    /// `X-Forwarded-*` field. Such a request is never trusted as coming from loopback, even
    /// when its connection does (a proxy on the same machine).
    pub proxied: bool,
    /// Length of the head in the buffer, blank line included.
    pub head_len: usize,
}

/// Why a head is refused. Every variant maps to one status code; after any of them the
/// connection is closed, because the framing of what follows can no longer be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed syntax: bad tokens, bare CR, control bytes, obs-fold, space before a colon,
    /// an unsupported version, a missing or repeated `Host`, a bad `Content-Length`. 400.
    BadRequest(&'static str),
    /// A request body on GET or HEAD (`Content-Length` above 0). 400.
    BodyNotAllowed,
    /// `Transfer-Encoding` is present: request bodies are not implemented. 501.
    TransferEncoding,
    /// A well-known method other than GET, HEAD, POST or OPTIONS (PUT, DELETE, ...). 405
    /// (with `Allow`).
    MethodNotAllowed,
    /// A method this server does not know. 501.
    UnknownMethod,
    /// The request target exceeds [`Limits::max_target`]. 414.
    TargetTooLong,
    /// The head exceeds [`Limits::max_head`] or has too many fields. 431.
    HeadTooLarge,
    /// A well-formed version of a major other than 1 (`HTTP/2.0`, RFC 9110 section 2.5). 505.
    VersionNotSupported,
}

impl HttpError {
    /// The status code this error is answered with.
    pub fn status(self) -> Status {
        match self {
            HttpError::BadRequest(_) | HttpError::BodyNotAllowed => Status::BadRequest,
            HttpError::TransferEncoding | HttpError::UnknownMethod => Status::NotImplemented,
            HttpError::MethodNotAllowed => Status::MethodNotAllowed,
            HttpError::TargetTooLong => Status::UriTooLong,
            HttpError::HeadTooLarge => Status::HeaderFieldsTooLarge,
            HttpError::VersionNotSupported => Status::VersionNotSupported,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::BodyNotAllowed => f.write_str("a body is not allowed on GET or HEAD"),
            HttpError::TransferEncoding => f.write_str("Transfer-Encoding is not implemented"),
            HttpError::MethodNotAllowed => f.write_str("method not allowed"),
            HttpError::UnknownMethod => f.write_str("unknown method"),
            HttpError::TargetTooLong => f.write_str("request target too long"),
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::VersionNotSupported => f.write_str("HTTP version not supported"),
        }
    }
}

/// Every status code this server sends. The discriminant order is the metrics index order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    NotModified,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    UriTooLong,
    HeaderFieldsTooLarge,
    NotImplemented,
    ServiceUnavailable,
    NoContent,
    Unauthorized,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    VersionNotSupported,
    Conflict,
}

impl Status {
    /// All statuses, in metrics index order.
    pub const ALL: [Status; 17] = [
        Status::Ok,
        Status::NotModified,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::UriTooLong,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::ServiceUnavailable,
        Status::NoContent,
        Status::Unauthorized,
        Status::Forbidden,
        Status::PayloadTooLarge,
        Status::UnsupportedMediaType,
        Status::VersionNotSupported,
        Status::Conflict,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::NoContent => 204,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::VersionNotSupported => 505,
            Status::Conflict => 409,
        }
    }

    /// The status line, `HTTP/1.1 <code> <reason>\r\n`.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "HTTP/1.1 200 OK\r\n",
            Status::NotModified => "HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => "HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => "HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => "HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => "HTTP/1.1 408 Request Timeout\r\n",
            Status::UriTooLong => "HTTP/1.1 414 URI Too Long\r\n",
            Status::HeaderFieldsTooLarge => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::NotImplemented => "HTTP/1.1 501 Not Implemented\r\n",
            Status::ServiceUnavailable => "HTTP/1.1 503 Service Unavailable\r\n",
            Status::NoContent => "HTTP/1.1 204 No Content\r\n",
            Status::Unauthorized => "HTTP/1.1 401 Unauthorized\r\n",
            Status::Forbidden => "HTTP/1.1 403 Forbidden\r\n",
            Status::PayloadTooLarge => "HTTP/1.1 413 Content Too Large\r\n",
            Status::UnsupportedMediaType => "HTTP/1.1 415 Unsupported Media Type\r\n",
            Status::VersionNotSupported => "HTTP/1.1 505 HTTP Version Not Supported\r\n",
            Status::Conflict => "HTTP/1.1 409 Conflict\r\n",
        }
    }

    /// Index into per-status metric arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Methods that exist in HTTP but that this server does not allow (405 rather than 501).
const KNOWN_METHODS: [&str; 5] = ["PUT", "DELETE", "PATCH", "TRACE", "CONNECT"];

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: not complete yet and still within the limits; read more. `Ok(Some(req))`: a
/// complete head of `req.head_len` bytes. `Err(e)`: refuse with `e.status()` and close.
///
/// The request line is parsed here (httparse refuses any version but 1.0 and 1.1, where RFC
/// 9110 section 2.5 asks for `HTTP/1.2` to be read as 1.1 and `HTTP/2.0` to get 505), the
/// header fields by `httparse::parse_headers`.
pub fn parse<'b>(buf: &'b [u8], limits: &Limits) -> Result<Option<Request<'b>>, HttpError> {
    // RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before the
    // request-line. Tolerate a few (a client's stray CRLF after a previous request).
    let skip = leading_empty_lines(buf);
    let buf_all = buf;
    let buf = &buf[skip..];
    let partial = || {
        if buf_all.len() >= limits.max_head {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        }
    };

    check_target_length(buf, limits)?;
    let Some(line) = request_line(buf)? else {
        return partial();
    };
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let cap = limits.max_headers.min(headers.len());
    let (fields_len, fields) = match httparse::parse_headers(&buf[line.len..], &mut headers[..cap])
    {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => return partial(),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::BadRequest(parse_error_text(e))),
    };
    let len = line.len + fields_len;
    if skip + len > limits.max_head {
        return Err(HttpError::HeadTooLarge);
    }
    let minor = line.minor;
    let method = match line.method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        m => match KNOWN_METHODS.iter().find(|k| **k == m) {
            Some(k) => Method::Other(k),
            None => return Err(HttpError::UnknownMethod),
        },
    };
    if line.target.len() > limits.max_target {
        return Err(HttpError::TargetTooLong);
    }
    let (path, query) = match origin_path(line.target) {
        Ok(pq) => pq,
        // CONNECT's authority-form target names no path: no route to ask, the default Allow.
        Err(_) if matches!(method, Method::Other(_)) => return Err(HttpError::MethodNotAllowed),
        Err(e) => return Err(e),
    };

    let mut host = 0;
    let mut keep_alive = minor == 1;
    let mut last_event_id = None;
    let mut if_none_match = None;
    let mut content_type = None;
    let mut authorization = None;
    let mut cookie = None;
    let mut expect_continue = false;
    let mut host_value = None;
    let mut origin = None;
    let mut referer = None;
    let mut sec_fetch_site = None;
    let mut forwarded_proto = None;
    let mut proxied = false;
    let mut content_length: Option<&[u8]> = None;
    for h in fields.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host += 1;
            host_value = Some(h.value.trim_ascii());
            if !valid_host(h.value.trim_ascii()) {
                return Err(HttpError::BadRequest("invalid Host"));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some_and(|v| v != h.value) {
                return Err(HttpError::BadRequest("conflicting Content-Length"));
            }
            content_length = Some(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("last-event-id") {
            last_event_id = Some(h.value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(h.value);
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(h.value);
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(h.value);
        } else if name.eq_ignore_ascii_case("cookie") {
            cookie = cookie.or(Some(h.value));
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |=
                minor == 1 && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        } else if name.eq_ignore_ascii_case("referer") {
            referer = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-fetch-site") {
            sec_fetch_site = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            forwarded_proto = Some(h.value);
            proxied = true;
        } else if name.eq_ignore_ascii_case("forwarded")
            || name.eq_ignore_ascii_case("x-real-ip")
            || name
                .get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-forwarded-"))
        {
            proxied = true;
        }
    }
    if h_has_ctl(fields) {
        return Err(HttpError::BadRequest("control byte in a header value"));
    }
    match (minor, host) {
        (1, 1) | (0, 0) | (0, 1) => {}
        (1, 0) => return Err(HttpError::BadRequest("missing Host")),
        _ => return Err(HttpError::BadRequest("repeated Host")),
    }
    let mut body_len = 0;
    if let Some(v) = content_length {
        body_len = parse_u64(v).ok_or(HttpError::BadRequest("invalid Content-Length"))?;
        if body_len > 0 && !matches!(method, Method::Post | Method::Other(_)) {
            return Err(HttpError::BodyNotAllowed);
        }
    }
    Ok(Some(Request {
        method,
        path,
        minor_version: minor,
        keep_alive,
        last_event_id,
        if_none_match,
        query,
        content_length: body_len,
        content_type,
        authorization,
        cookie,
        expect_continue,
        host: host_value,
        origin,
        referer,
        sec_fetch_site,
        forwarded_proto,
        proxied,
        head_len: skip + len,
    }))
}

/// A complete request line.
struct RequestLine<'b> {
    method: &'b str,
    target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 and any later 1.x.
    minor: u8,
    /// Bytes, line ending included.
    len: usize,
}

/// Parses `method SP target SP HTTP/d.d` and its line ending (CRLF or LF), or `Ok(None)` while
/// what is there can still become one. Each byte is checked as it arrives, so garbage (a TLS
/// hello, NULs) is refused at once rather than after a head's worth of it.
fn request_line(buf: &[u8]) -> Result<Option<RequestLine<'_>>, HttpError> {
    let bad = |why| Err(HttpError::BadRequest(why));
    let method_len = buf.iter().take_while(|&&b| is_tchar(b)).count();
    match buf.get(method_len) {
        None => return Ok(None),
        Some(b' ') if method_len > 0 => {}
        _ => return bad("invalid token"),
    }
    let t0 = method_len + 1;
    let target_len = buf[t0..]
        .iter()
        .take_while(|&&b| (0x21..=0x7e).contains(&b))
        .count();
    match buf.get(t0 + target_len) {
        None => return Ok(None),
        Some(b' ') if target_len > 0 => {}
        _ => return bad("invalid request target"),
    }
    let v0 = t0 + target_len + 1;
    let version = &buf[v0..buf.len().min(v0 + 8)];
    const SHAPE: &[u8; 8] = b"HTTP/1.1";
    for (i, &b) in version.iter().enumerate() {
        let ok = match i {
            5 | 7 => b.is_ascii_digit(),
            _ => b == SHAPE[i],
        };
        if !ok {
            return bad("invalid HTTP version");
        }
    }
    if version.len() < 8 {
        return Ok(None);
    }
    let len = match (buf.get(v0 + 8), buf.get(v0 + 9)) {
        (None, _) | (Some(b'\r'), None) => return Ok(None),
        (Some(b'\n'), _) => v0 + 9,
        (Some(b'\r'), Some(b'\n')) => v0 + 10,
        _ => return bad("invalid line ending"),
    };
    let minor = match (version[5] - b'0', version[7] - b'0') {
        (1, minor) => minor.min(1),
        (0, _) => return bad("unsupported HTTP version"),
        _ => return Err(HttpError::VersionNotSupported),
    };
    // Both are ASCII by construction.
    let text = |r: std::ops::Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or_default();
    Ok(Some(RequestLine {
        method: text(0..method_len),
        target: text(t0..t0 + target_len),
        minor,
        len,
    }))
}

/// RFC 9110 section 5.6.2: the characters of a token (a method).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9112 section 3.2 and RFC 3986 section 3.2.2: `uri-host [ ":" port ]`, where the host
/// is an IP literal in brackets (IPv6 or IPvFuture characters) or a reg-name (unreserved, percent-encoded and sub-delims
/// characters, which covers IPv4 and DNS names). Empty is allowed (a target without an
/// authority). Anything else (`a b`, `a/b@c`) is a 400.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b":-._~".contains(&b) || is_sub_delim(b));
        if !literal_ok {
            return false;
        }
        (&b""[..], &rest[close + 1..])
    } else {
        let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        (&v[..end], &v[end..])
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = |j: usize| host.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~".contains(&b) || is_sub_delim(b)) {
            return false;
        }
        i += 1;
    }
    port_ok
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// The number of bytes of empty lines (CRLF or LF) before the request line, at most four.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    for _ in 0..4 {
        match buf.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\n', ..]) => i += 1,
            _ => break,
        }
    }
    i
}

/// Refuses an over-long target as soon as enough of the request line is in, complete or not,
/// so a client cannot make the server buffer a whole head's worth of target first.
fn check_target_length(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    let Some(sp) = buf.iter().take(32).position(|&b| b == b' ') else {
        return Ok(());
    };
    let target = &buf[sp + 1..];
    let end = target
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n');
    let len = end.unwrap_or(target.len());
    if len > limits.max_target {
        return Err(HttpError::TargetTooLong);
    }
    Ok(())
}

/// The path and query of an origin-form (`/p?q`) or absolute-form (`http://h/p?q`) target.
fn origin_path(target: &str) -> Result<(&str, &str), HttpError> {
    let rest = if target.starts_with('/') {
        target
    } else if let Some(after) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        match after.find('/') {
            Some(i) => &after[i..],
            None => "/",
        }
    } else {
        return Err(HttpError::BadRequest("request target is not a path"));
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    Ok(rest.split_once('?').unwrap_or((rest, "")))
}

/// httparse lets obs-text through in values; control bytes other than HTAB must not pass.
fn h_has_ctl(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.value
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    })
}

fn parse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], want: Result<Option<(&str, Method)>, HttpError>) {
        let got = parse(input, &Limits::default()).map(|o| o.map(|r| (r.path, r.method)));
        assert_eq!(got, want, "input: {:?}", String::from_utf8_lossy(input));
    }

    fn bad(input: &[u8]) {
        let got = parse(input, &Limits::default());
        assert!(
            matches!(got, Err(HttpError::BadRequest(_))),
            "{:?} -> {got:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn complete_and_partial() {
        check(
            b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n",
            Ok(Some(("/sse", Method::Get))),
        );
        check(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            Ok(Some(("/", Method::Head))),
        );
        check(
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
            Ok(Some(("/a", Method::Get))),
        );
        check(
            b"GET http://h:3000/sse?x HTTP/1.1\r\nHost: h\r\n\r\n",
            Ok(Some(("/sse", Method::Get))),
        );
        check(b"GET / HTTP/1.0\r\n\r\n", Ok(Some(("/", Method::Get))));
        check(
            b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Ok(Some(("/", Method::Get))),
        );
        check(b"GET /sse HTTP/1.1\r\nHost: x\r\n", Ok(None));
        check(b"GET /sse HT", Ok(None));
        check(b"", Ok(None));
    }

    #[test]
    fn every_prefix_of_a_good_head_is_partial() {
        let head = b"GET /sse HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: 41\r\nAccept: text/event-stream\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(
                parse(&head[..cut], &Limits::default()),
                Ok(None),
                "cut at {cut}"
            );
        }
        let req = parse(head, &Limits::default()).unwrap().unwrap();
        assert_eq!(req.head_len, head.len());
        assert_eq!(req.last_event_id, Some(&b"41"[..]));
        assert!(req.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |h: &[u8]| parse(h, &Limits::default()).unwrap().unwrap().keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn malformed_heads_are_400() {
        bad(b"GET / HTTP/1.1\r\n\r\n"); // no Host
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n"); // bare CR
        bad(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"); // NUL
        bad(b"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"); // obs-fold
        bad(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"); // space before colon
        bad(b"GET / HTTP/0.9\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
        bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n");
        bad(b"G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / FOO/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET nopath HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        bad(b"\0\0\0\0");
    }

    #[test]
    fn versions_after_rfc_9110() {
        let l = Limits::default();
        let minor = |h: &[u8]| parse(h, &l).map(|r| r.map(|r| r.minor_version));
        assert_eq!(minor(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), Ok(Some(1)));
        assert_eq!(minor(b"GET / HTTP/1.9\r\nHost: a\r\n\r\n"), Ok(Some(1)));
        assert_eq!(minor(b"GET / HTTP/1.0\n\n"), Ok(Some(0)));
        for v in ["2.0", "3.0", "9.9"] {
            let head = format!("GET / HTTP/{v}\r\nHost: a\r\n\r\n");
            assert_eq!(
                parse(head.as_bytes(), &l),
                Err(HttpError::VersionNotSupported)
            );
        }
        // The HTTP/2 connection preface is answered as soon as its request line is in.
        assert_eq!(
            parse(b"PRI * HTTP/2.0\r\n", &l),
            Err(HttpError::VersionNotSupported)
        );
        assert_eq!(HttpError::VersionNotSupported.status().code(), 505);
    }

    #[test]
    fn host_must_be_a_host() {
        let l = Limits::default();
        let host = |v: &str| {
            let head = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
            parse(head.as_bytes(), &l).map(|r| r.is_some())
        };
        for ok in [
            "localhost",
            "localhost:3000",
            "127.0.0.1:80",
            "[::1]:3000",
            "[v1.x]",
            "xn--bcher-kva.example",
            "a_b~c",
            "",
            "h:",
        ] {
            assert_eq!(host(ok), Ok(true), "{ok:?}");
        }
        for no in [
            "a b", "a/b@c", "a@b", "a/b", "a?b", "a#b", "[::1", "[::1]x", "[]", "h:x", "h:1:2",
            "a\\b", "%zz", "a%2",
        ] {
            assert_eq!(
                host(no),
                Err(HttpError::BadRequest("invalid Host")),
                "{no:?}"
            );
        }
    }

    #[test]
    fn bodies_methods_and_sizes() {
        let l = Limits::default();
        assert_eq!(
            parse(
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                &l
            ),
            Err(HttpError::BodyNotAllowed)
        );
        assert!(parse(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            &l
        )
        .unwrap()
        .is_some());
        assert_eq!(
            parse(
                b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                &l
            ),
            Err(HttpError::TransferEncoding)
        );
        // Methods no path serves reach the router (for the path's own `Allow`), body and all;
        // CONNECT's authority form has no path to ask about.
        let put = parse(
            b"PUT /sse HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            &l,
        )
        .unwrap()
        .unwrap();
        assert_eq!((put.method, put.path), (Method::Other("PUT"), "/sse"));
        assert_eq!(
            parse(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", &l),
            Err(HttpError::MethodNotAllowed)
        );
        let post = parse(
            b"POST /publish?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n",
            &l,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (post.method, post.path, post.query, post.content_length),
            (Method::Post, "/publish", "x=1", 12)
        );
        assert_eq!(post.content_type, Some(&b"application/json"[..]));
        assert_eq!(
            parse(b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", &l),
            Err(HttpError::UnknownMethod)
        );
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(3000));
        assert_eq!(
            parse(long_target.as_bytes(), &l),
            Err(HttpError::TargetTooLong)
        );
        assert_eq!(
            parse(&long_target.as_bytes()[..2100], &l),
            Err(HttpError::TargetTooLong)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-A: b\r\n".repeat(100)
        );
        assert_eq!(parse(many.as_bytes(), &l), Err(HttpError::HeadTooLarge));
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}", "b".repeat(9000));
        assert_eq!(parse(big.as_bytes(), &l), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(HttpError::BadRequest("x").status().code(), 400);
        assert_eq!(HttpError::TransferEncoding.status().code(), 501);
        assert_eq!(HttpError::MethodNotAllowed.status().code(), 405);
        assert_eq!(HttpError::TargetTooLong.status().code(), 414);
        assert_eq!(HttpError::HeadTooLarge.status().code(), 431);
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert!(s.line().starts_with(&format!("HTTP/1.1 {} ", s.code())));
        }
    }
}
