//! What the application answers: a [`Reply`] (a [`Head`], a [`Body`], and [`Then`], what the
//! connection does or becomes next: keep alive, close, wait for an answer given later, or
//! stream from a source), the stock answers (errors, the refused stream), and how an answer
//! given later reaches its loop ([`Later`], [`Completion`]).
//!
//! **Invariant:** no IO and no clock: the date is an argument.

use crate::core::body::Body;
use crate::wire::frames;
use crate::wire::head::Head;
use crate::wire::http::Status;

/// What a connection does once a reply's bytes are queued.
#[derive(Debug)]
pub enum Then {
    /// Serve the next request on the same connection (unless the request or the server says
    /// otherwise).
    KeepAlive,
    /// Close after this reply.
    Close,
    /// The answer comes later, through [`crate::core::conn::Conn::complete`] with this ticket (a
    /// publish waiting for the shared store to store it); this reply's head and body are not
    /// sent.
    Pending(u32),
    /// Only in answer to a head alone (`Expect: 100-continue`, the body not sent yet): the
    /// head is acceptable, so `100 Continue` is sent and the body read; the request is then
    /// routed again with it. This reply's status, head and body are not sent.
    Continue,
    /// Become an event stream fed by this source. The reply holds one admission slot (see
    /// [`crate::core::admission`]); the connection gives it back when the stream ends.
    Stream(crate::core::stream::Source),
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
        frames::encode_retry(&mut frame, retry_ms);
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

/// An answer given after the request's turn (see [`Then::Pending`]): which connection of the
/// loop it is for, and the reply.
#[derive(Debug)]
pub struct Completion {
    pub key: usize,
    pub ticket: u32,
    pub answer: Answer,
}

/// What an answer given later carries.
#[derive(Debug)]
pub enum Answer {
    /// The reply to a request answered `Pending`.
    Reply(Reply),
    /// A page of the shared store for a replaying stream (see [`crate::core::conn::Conn::page_request`]).
    Page(Result<crate::hub::history::StorePage, String>),
}

/// How an answer given later reaches its loop: the loop's queue, and its wake-up.
#[derive(Clone)]
pub struct Later {
    tx: std::sync::mpsc::Sender<Completion>,
    wake: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl Later {
    /// A queue feeding `tx`'s receiver, with `wake` to rouse its loop.
    pub fn new(
        tx: std::sync::mpsc::Sender<Completion>,
        wake: std::sync::Arc<dyn Fn() + Send + Sync>,
    ) -> Later {
        Later { tx, wake }
    }

    /// Delivers `reply` to the connection at `key` waiting under `ticket` (from any thread).
    pub fn send(&self, key: usize, ticket: u32, reply: Reply) {
        self.answer(key, ticket, Answer::Reply(reply));
    }

    /// Delivers a page of the shared store to the replaying stream at `key` (from any thread).
    pub fn send_page(
        &self,
        key: usize,
        ticket: u32,
        page: Result<crate::hub::history::StorePage, String>,
    ) {
        self.answer(key, ticket, Answer::Page(page));
    }

    fn answer(&self, key: usize, ticket: u32, answer: Answer) {
        if self
            .tx
            .send(Completion {
                key,
                ticket,
                answer,
            })
            .is_ok()
        {
            (self.wake)();
        }
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Later")
    }
}
