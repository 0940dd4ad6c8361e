//! What the application answers: a [`Reply`] (a [`Head`], a [`Body`], and [`Then`], what the
//! connection does or becomes next: keep alive, close, wait for an answer given later, or
//! stream from a source), the stock answers (errors, the refused stream), and how an answer
//! given later reaches its loop ([`Later`], [`Completion`]).
//!
//! **Invariant:** no IO and no clock: the date is an argument.

use crate::core::body::Body;
use crate::wire::frames;
use crate::wire::head::{Connection, Head};
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
    /// Become an event stream fed by this source, joining with this presence
    /// (`--subscriptions`; `None` without). The reply holds one admission slot (see
    /// [`crate::core::admission`]); the connection gives it back when the stream ends. The
    /// loop registers the new stream from what [`crate::core::conn::Conn::serve`] returns.
    Stream(
        crate::core::stream::Source,
        Option<Box<crate::hub::history::Joining>>,
    ),
}

/// An answer from the application: a head, an optional body, and what happens next.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub head: Head,
    pub body: Option<Body>,
    pub then: Then,
    /// Whether the connection measures the time to this answer (see [`Timing`]).
    pub timing: Timing,
}

/// Whether a reply's answer time is measured: from the request complete (the loop's time when
/// it was routed) to the answer's last byte given to the socket, into the loop's histogram of
/// publish answers (`sse_publish_answer_seconds`). For a reply answered later ([`Then::Pending`]),
/// the pending reply says so and the time runs until the answer given later is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Timing {
    #[default]
    Untimed,
    /// The answer to a publish the history or a backend took.
    Publish,
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
            timing: Timing::Untimed,
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
            timing: Timing::Untimed,
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
            timing: Timing::Untimed,
            then: Then::Continue,
        }
    }

    /// The same reply, its answer time measured as a publish's (see [`Timing`]).
    pub fn timed_publish(mut self) -> Reply {
        self.timing = Timing::Publish;
        self
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
            head: Head::new(Status::Ok).event_stream(Connection::Close),
            body: Some(Body::Shared(frame.into())),
            timing: Timing::Untimed,
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
///
/// Wake-ups are coalesced: a sender wakes the loop only if no other answer has woken it since
/// the loop last called [`Later::rearm`], so a batch of answers given together (a group
/// commit's) costs the loop one wake-up, not one per answer. A backend that answers a batch
/// inside [`crate::hub::backend::with_wakes_held`] makes that wake-up after the whole batch.
///
/// **Invariant:** an answer sent is never left in the queue unseen: the loop calls `rearm`
/// before it drains the queue, and a sender pushes before it looks at the flag, so either the
/// drain sees the answer or the sender finds the flag down and wakes the loop again.
#[derive(Clone)]
pub struct Later {
    tx: std::sync::mpsc::Sender<Completion>,
    wake: crate::hub::backend::Wake,
    /// Raised by the sender that wakes the loop, lowered by the loop before it drains.
    woken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Later {
    /// A queue feeding `tx`'s receiver, with `wake` to rouse its loop.
    pub fn new(tx: std::sync::mpsc::Sender<Completion>, wake: crate::hub::backend::Wake) -> Later {
        Later {
            tx,
            wake,
            woken: Default::default(),
        }
    }

    /// How this queue wakes its loop: the hub wakes the loop through the same `Wake`, so
    /// that a backend's batch, held by [`crate::hub::backend::with_wakes_held`], wakes it once.
    pub fn wake(&self) -> &crate::hub::backend::Wake {
        &self.wake
    }

    /// Called by the loop just before it drains the queue: the next answer sent wakes it
    /// again.
    pub fn rearm(&self) {
        // A swap, not a store: read-modify-writes of one flag are totally ordered, so the
        // sender whose raise this lowers made its answer visible to the drain that follows.
        self.woken.swap(false, std::sync::atomic::Ordering::AcqRel);
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

    /// Where the page asked under `ticket` for the replaying stream at `key` goes, as a
    /// callback for the thread that reads it.
    pub fn page_done(
        &self,
        key: usize,
        ticket: u32,
    ) -> Box<dyn FnOnce(Result<crate::hub::history::StorePage, String>) + Send> {
        let later = self.clone();
        Box::new(move |page| later.send_page(key, ticket, page))
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
            && !self.woken.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            crate::hub::backend::wake(&self.wake);
        }
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Later")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Condvar, Mutex};

    fn ok() -> Reply {
        Reply::text_owned(Status::Ok, String::new(), &[])
    }

    /// A group commit's answers wake the loop once, until the loop drains.
    #[test]
    fn answers_given_together_wake_the_loop_once() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let later = {
            let wakes = wakes.clone();
            Later::new(
                tx,
                Arc::new(move || {
                    wakes.fetch_add(1, Ordering::SeqCst);
                }),
            )
        };
        for k in 0..16 {
            later.send(k, 0, ok());
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        later.rearm();
        assert_eq!(rx.try_iter().count(), 16);
        later.send(0, 1, ok());
        later.send(1, 1, ok());
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    /// Senders on several threads against a loop that rearms and drains on each wake-up, in
    /// random interleavings: every answer is drained, none waits for a wake-up that never
    /// comes (the loop below blocks only on a wake-up, with a deadline that fails the test).
    #[test]
    fn no_answer_is_stranded_whatever_the_interleaving() {
        for round in 0..50 {
            let signal = Arc::new((Mutex::new(0u64), Condvar::new()));
            let (tx, rx) = mpsc::channel();
            let later = {
                let signal = signal.clone();
                Later::new(
                    tx,
                    Arc::new(move || {
                        *signal.0.lock().unwrap() += 1;
                        signal.1.notify_one();
                    }),
                )
            };
            let (senders, each) = (4, 500);
            let threads: Vec<_> = (0..senders)
                .map(|t| {
                    let later = later.clone();
                    std::thread::spawn(move || {
                        let mut x = (round * 31 + t * 7 + 1) as u64;
                        for i in 0..each {
                            later.send(t * each + i, 0, ok());
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            if x % 4 == 0 {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let mut got = 0;
            let mut seen = 0;
            while got < senders * each {
                let guard = signal.0.lock().unwrap();
                let (guard, timeout) = signal
                    .1
                    .wait_timeout_while(guard, std::time::Duration::from_secs(10), |w| *w == seen)
                    .unwrap();
                assert!(
                    !timeout.timed_out(),
                    "round {round}: {got} answers, then no wake-up"
                );
                seen = *guard;
                drop(guard);
                later.rearm();
                got += rx.try_iter().count();
            }
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(got, senders * each);
        }
    }
}
