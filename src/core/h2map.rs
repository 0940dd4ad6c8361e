//! The seam between an HTTP/2 stream and the HTTP/1.1 [`Conn`](crate::core::conn::Conn) that
//! serves it, sans-IO: an [`H2Request`] becomes the HTTP/1.1 bytes a `Conn` reads
//! ([`request_bytes`]), and the response head a `Conn` writes becomes the status and fields of
//! an h2 HEADERS frame ([`ResponseHead::parse`]). Everything between (the route, the limits,
//! the stream's frames) is the `Conn`'s, unchanged: an h2 stream keeps every rule of an
//! HTTP/1.1 connection because it *is* one, fed through this seam.
//!
//! **Invariant:** what reaches the `Conn` is a request it could have read from a socket: the
//! pseudo-fields are checked here byte by byte (no space, no control byte: nothing can smuggle
//! a second line into the request head), field values were checked by the engine (no CR, LF
//! or NUL), and the body's length is the `Content-Length` (the client's own is dropped).

use crate::core::h2::H2Request;

/// Fields of an HTTP/1.1 response that mean nothing in h2 (RFC 9113 section 8.2.2).
const HOP_BY_HOP: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// Why a request cannot be handed to a `Conn` (the stream is reset `PROTOCOL_ERROR`).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The HTTP/1.1 bytes of `req` (head and body), appended to `out`.
///
/// `:authority` becomes `Host` (a `host` field the client also sent is dropped: RFC 9113
/// section 8.3.1 makes `:authority` win); `cookie` fields split by the client are joined with
/// `; ` (section 8.2.3); `expect` is dropped (the body is complete: no `100 Continue`);
/// `content-length` is the body's. A `content-length` the client sent must say the body's
/// length (section 8.1.1: otherwise the request is malformed).
pub fn request_bytes(req: &H2Request, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let visible = |b: &[u8]| !b.is_empty() && b.iter().all(|&c| (0x21..0x7f).contains(&c));
    if !visible(&req.method) || !visible(&req.path) {
        return Err(Malformed);
    }
    if req.authority.as_deref().is_some_and(|a| !visible(a)) {
        return Err(Malformed);
    }
    let says_body = |v: &[u8]| {
        !v.is_empty()
            && v.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                == Some(req.body.len() as u64)
    };
    if req
        .fields
        .iter()
        .any(|(n, v)| n == b"content-length" && !says_body(v))
    {
        return Err(Malformed);
    }
    let body_len = req.body.len().to_string();
    out.extend_from_slice(&req.method);
    out.push(b' ');
    out.extend_from_slice(&req.path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host_field = req.fields.iter().find(|(n, _)| n == b"host");
    match (&req.authority, host_field) {
        (Some(a), _) => put_field(out, b"host", a),
        (None, Some((_, h))) => put_field(out, b"host", h),
        (None, None) => {}
    }
    let mut cookie = false;
    for (n, v) in &req.fields {
        match &n[..] {
            b"host" | b"content-length" | b"expect" => {}
            b"cookie" => cookie = true,
            _ => put_field(out, n, v),
        }
    }
    if cookie {
        out.extend_from_slice(b"cookie: ");
        let mut first = true;
        for (_, v) in req.fields.iter().filter(|(n, _)| n == b"cookie") {
            if !first {
                out.extend_from_slice(b"; ");
            }
            first = false;
            out.extend_from_slice(v);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !req.body.is_empty() || !matches!(&req.method[..], b"GET" | b"HEAD" | b"OPTIONS") {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body_len.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    Ok(())
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A `Conn`'s response head as h2 sends it.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Names lowercase, hop-by-hop fields dropped.
    pub fields: Vec<(String, Vec<u8>)>,
    /// The head's length in the bytes it was parsed from.
    pub len: usize,
    /// The body's length when the head says it (`Content-Length`); `None`: the body runs until
    /// the `Conn` ends it (an event stream).
    pub content_length: Option<u64>,
}

impl ResponseHead {
    /// Parses a complete HTTP/1.1 response head at the start of `bytes`; `None` when it is not
    /// complete (or not a head: a `Conn` writes nothing else first).
    pub fn parse(bytes: &[u8]) -> Option<ResponseHead> {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut fields);
        let len = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return None,
        };
        let status = resp.code?;
        let mut out = Vec::with_capacity(resp.headers.len());
        let mut content_length = None;
        for h in resp.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&name.as_bytes()) {
                continue;
            }
            if name == "content-length" {
                content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
            out.push((name, h.value.to_vec()));
        }
        Some(ResponseHead {
            status,
            fields: out,
            len,
            content_length,
        })
    }

    /// Whether a body follows (not for `204`, `304` or an answer to `HEAD`).
    pub fn body_len(&self, head_only: bool) -> Option<u64> {
        if head_only || self.status == 204 || self.status == 304 || self.status < 200 {
            return Some(0);
        }
        self.content_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, fields: &[(&str, &str)], body: &str) -> H2Request {
        H2Request {
            stream: 1,
            method: method.into(),
            path: path.into(),
            authority: Some(b"example.test".to_vec()),
            fields: fields
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            body: body.into(),
            refused: None,
        }
    }

    fn bytes(r: &H2Request) -> Result<String, Malformed> {
        let mut out = Vec::new();
        request_bytes(r, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_request_becomes_the_http1_head_a_conn_reads() {
        let r = req(
            "POST",
            "/publish?x=1",
            &[
                ("host", "other"),
                ("cookie", "a=1"),
                ("content-length", "14"),
                ("expect", "100-continue"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", "b=2"),
            ],
            "topic=t&data=x",
        );
        assert_eq!(
            bytes(&r).unwrap(),
            "POST /publish?x=1 HTTP/1.1\r\nhost: example.test\r\n\
             content-type: application/x-www-form-urlencoded\r\ncookie: a=1; b=2\r\n\
             content-length: 14\r\n\r\ntopic=t&data=x"
        );
        assert_eq!(
            bytes(&req("GET", "/sse", &[], "")).unwrap(),
            "GET /sse HTTP/1.1\r\nhost: example.test\r\n\r\n"
        );
    }

    #[test]
    fn a_content_length_that_is_not_the_bodys_is_malformed() {
        for cl in ["13", "15", "", " 14", "x", "99999999999999999999999"] {
            let r = req(
                "POST",
                "/publish",
                &[("content-length", cl)],
                "topic=t&data=x",
            );
            assert_eq!(bytes(&r), Err(Malformed), "{cl:?}");
        }
        let r = req("GET", "/", &[("content-length", "0")], "");
        assert!(bytes(&r).is_ok());
        let r = req("POST", "/p", &[("content-length", "014")], "topic=t&data=x");
        assert!(bytes(&r).is_ok());
    }

    #[test]
    fn pseudo_fields_cannot_smuggle_a_second_line() {
        for (m, p) in [
            ("GET", "/ HTTP/1.1\r\nx: y"),
            ("GET", "/a b"),
            ("GE T", "/"),
            ("GET", ""),
            ("GET", "/\u{7f}"),
        ] {
            assert_eq!(bytes(&req(m, p, &[], "")), Err(Malformed), "{m:?} {p:?}");
        }
        let mut r = req("GET", "/", &[], "");
        r.authority = Some(b"a\r\nb".to_vec());
        assert_eq!(bytes(&r), Err(Malformed));
    }

    #[test]
    fn a_response_head_loses_its_hop_by_hop_fields() {
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\n\
              Transfer-Encoding: chunked\r\nDate: x\r\n\r\n";
        let h = ResponseHead::parse(&[&head[..], b"id: 1\n"].concat()).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.content_length, None);
        let names: Vec<&str> = h.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "date"]);
        assert_eq!(h.len, head.len());
        let h =
            ResponseHead::parse(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n").unwrap();
        assert_eq!(
            (h.status, h.body_len(false), h.body_len(true)),
            (404, Some(10), Some(0))
        );
        assert_eq!(ResponseHead::parse(b"HTTP/1.1 200 OK\r\nContent-"), None);
    }
}
