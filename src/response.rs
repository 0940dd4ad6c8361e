//! What an answer is made of, independent of who produces it: the one response-head builder
//! ([`Head`]), a body ([`Body`]), and a [`Reply`] saying what the connection does next.
//!
//! Every answer the server sends, streams, files, errors and the out-of-descriptors answer of
//! the loop included, has its head written by [`Head`], so the `Date` and `Connection` fields
//! and the field order are decided in one place.
//!
//! **Invariant:** no IO and no clock: the date is an argument.

use crate::http::{push_decimal, Status};
use crate::sse;
use std::sync::Arc;

/// Bytes to send after a head, shared rather than copied into each response.
#[derive(Clone, Debug)]
pub enum Body {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
    /// Bytes counted against a budget until they are written or dropped (a replay's page).
    Held(Arc<HeldBytes>),
}

/// Bytes and the budget hold that counts them (released when they are dropped).
#[derive(Debug)]
pub struct HeldBytes {
    pub bytes: Vec<u8>,
    pub hold: crate::hub::Hold,
}

impl Body {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Shared(b) => b,
            Body::Held(h) => &h.bytes,
        }
    }
}

/// A response head under construction: the status line, then fields in the order given.
/// [`finish`](Head::finish) adds `Date`, `Connection: close` when asked, and the blank line.
#[derive(Clone, Debug)]
pub struct Head {
    buf: Vec<u8>,
    /// A `Connection: close` field was given explicitly (the refused-stream head carries it in
    /// the seed's position), so [`finish`](Head::finish) does not repeat it.
    says_close: bool,
}

impl Head {
    /// A head starting with `status`'s line.
    pub fn new(status: Status) -> Head {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(status.line().as_bytes());
        Head {
            buf,
            says_close: false,
        }
    }

    /// Appends `name: value`.
    pub fn field(mut self, name: &str, value: &str) -> Head {
        if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            self.says_close = true;
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `Content-Length: n`.
    pub fn content_length(mut self, n: usize) -> Head {
        self.buf.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut self.buf, n as u64);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// The event-stream fields, in the seed's order, with the seed's `Connection` field
    /// (`keep-alive`, or `close` for an answer that ends after a `retry:` or a client that
    /// asked to close) and any origin allowed.
    pub fn event_stream(self, closing: bool) -> Head {
        self.event_stream_for(closing, "*")
    }

    /// [`event_stream`](Self::event_stream) for one allowed origin (`--cors-origin`).
    pub fn event_stream_for(self, closing: bool, origin: &str) -> Head {
        let head = self
            .field("Content-Type", sse::CONTENT_TYPE)
            .field("Cache-Control", "no-cache")
            .field("Connection", if closing { "close" } else { "keep-alive" })
            .field("Access-Control-Allow-Origin", origin);
        let head = if origin == "*" {
            head
        } else {
            // One named origin may send its cookies (the token cookie of private topics).
            head.field("Access-Control-Allow-Credentials", "true")
                .field("Vary", "Origin")
        };
        head.field("X-Accel-Buffering", "no")
    }

    /// The head's bytes: the fields, `Date`, `Connection: close` when `close` (unless a
    /// `Connection: close` field was given already), and the blank line.
    pub fn finish(mut self, date: &[u8], close: bool) -> Vec<u8> {
        self.buf.extend_from_slice(b"Date: ");
        self.buf.extend_from_slice(date);
        self.buf.extend_from_slice(if close && !self.says_close {
            b"\r\nConnection: close\r\n\r\n"
        } else {
            b"\r\n\r\n"
        });
        self.buf
    }
}

/// What a connection does once a reply's bytes are queued.
#[derive(Debug)]
pub enum Then {
    /// Serve the next request on the same connection (unless the request or the server says
    /// otherwise).
    KeepAlive,
    /// Close after this reply.
    Close,
    /// The answer comes later, through [`crate::conn::Conn::complete`] with this ticket (a
    /// publish waiting for the shared log to store it); this reply's head and body are not
    /// sent.
    Pending(u32),
    /// Only in answer to a head alone (`Expect: 100-continue`, the body not sent yet): the
    /// head is acceptable, so `100 Continue` is sent and the body read; the request is then
    /// routed again with it. This reply's status, head and body are not sent.
    Continue,
    /// Become an event stream fed by this source. The reply holds one admission slot (see
    /// [`crate::admission`]); the connection gives it back when the stream ends.
    Stream(crate::stream::Source),
}

/// An answer from the application: a head, an optional body, and what happens next.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub head: Head,
    pub body: Option<Body>,
    pub then: Then,
}

impl Reply {
    /// A reply with a `Content-Type` and `Content-Length` for `body`, then `extra` fields.
    pub fn with_body(
        status: Status,
        content_type: &str,
        body: Body,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut head = Head::new(status)
            .field("Content-Type", content_type)
            .content_length(body.bytes().len());
        for (name, value) in extra {
            head = head.field(name, value);
        }
        Reply {
            status,
            head,
            body: Some(body),
            then: Then::KeepAlive,
        }
    }

    /// A short `text/plain` reply.
    pub fn text(status: Status, text: &'static str, extra: &[(&str, &str)]) -> Reply {
        Reply::with_body(status, TEXT_PLAIN, Body::Static(text.as_bytes()), extra)
    }

    /// A `text/plain` reply with a body made at run time.
    pub fn text_owned(status: Status, text: String, extra: &[(&str, &str)]) -> Reply {
        let body = Body::Shared(text.into_bytes().into());
        Reply::with_body(status, TEXT_PLAIN, body, extra)
    }

    /// The error answer for `status`; always closes, since what follows bad bytes cannot be
    /// trusted.
    pub fn error(status: Status) -> Reply {
        let text = match status {
            Status::BadRequest => "400 Bad Request\n",
            Status::MethodNotAllowed => "405 Method Not Allowed\n",
            Status::RequestTimeout => "408 Request Timeout\n",
            Status::UriTooLong => "414 URI Too Long\n",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large\n",
            Status::NotImplemented => "501 Not Implemented\n",
            Status::PayloadTooLarge => {
                "413 Content Too Large: the body is over --max-publish-bytes\n"
            }
            Status::VersionNotSupported => "505 HTTP Version Not Supported: speak HTTP/1.1\n",
            _ => "error\n",
        };
        let extra: &[(&str, &str)] = if status == Status::MethodNotAllowed {
            &[("Allow", "GET, HEAD")]
        } else {
            &[]
        };
        Reply::text(status, text, extra).closing()
    }

    /// A reply given later under `ticket` (see [`Then::Pending`]).
    pub fn pending(ticket: u32) -> Reply {
        Reply {
            status: Status::Ok,
            head: Head::new(Status::Ok),
            body: None,
            then: Then::Pending(ticket),
        }
    }

    /// The answer to a head alone that the application would take the body of: `100
    /// Continue` (see [`Then::Continue`]).
    pub fn proceed() -> Reply {
        Reply {
            status: Status::Ok,
            head: Head::new(Status::Ok),
            body: None,
            then: Then::Continue,
        }
    }

    /// The same reply, closing the connection after it.
    pub fn closing(mut self) -> Reply {
        self.then = Then::Close;
        self
    }

    /// A stream refused (overload or shutdown): `200`, the event-stream head saying close, and
    /// a jittered `retry:`. Browsers give up for good on a non-200 or a 5xx; this makes an
    /// EventSource come back later, and the jitter spreads the returns.
    pub fn stream_refused(retry_ms: u64) -> Reply {
        let mut frame = Vec::with_capacity(16);
        sse::encode_retry(&mut frame, retry_ms);
        Reply {
            status: Status::Ok,
            head: Head::new(Status::Ok).event_stream(true),
            body: Some(Body::Shared(frame.into())),
            then: Then::Close,
        }
    }
}

/// The content type of every short text answer.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn head_orders_fields_and_adds_date_and_close() {
        let h = Head::new(Status::NotFound)
            .field("Content-Type", "text/plain")
            .content_length(3)
            .finish(DATE, true);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn event_stream_head_is_the_seeds() {
        let h = Head::new(Status::Ok)
            .event_stream(false)
            .finish(DATE, false);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\n\
             Cache-Control: no-cache\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\
             X-Accel-Buffering: no\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        let closing = Head::new(Status::Ok).event_stream(true).finish(DATE, true);
        let text = String::from_utf8(closing).unwrap();
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
    }
}
