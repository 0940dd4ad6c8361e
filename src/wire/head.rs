//! The one response-head builder: the status line, fields in the order given, then `Date` and
//! `Connection`. Every answer the server sends (streams, files, errors, the out-of-descriptors
//! answer of the loop) has its head written here, so the field order is decided in one place.
//!
//! **Invariant:** no IO and no clock: the date is an argument.

use crate::util::number::push_decimal;
use crate::wire::frames;
use crate::wire::http::Status;

/// Whether the connection stays open after this answer (the `Connection` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    KeepAlive,
    Close,
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
    pub fn event_stream(self, connection: Connection) -> Head {
        self.event_stream_for(connection, "*")
    }

    /// [`event_stream`](Self::event_stream) for one allowed origin (`--cors-origin`).
    pub fn event_stream_for(self, connection: Connection, origin: &str) -> Head {
        let value = match connection {
            Connection::Close => "close",
            Connection::KeepAlive => "keep-alive",
        };
        let head = self
            .field("Content-Type", frames::CONTENT_TYPE)
            .field("Cache-Control", "no-cache")
            .field("Connection", value)
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

    /// The head's bytes: the fields, `Date`, `Connection: close` when the connection closes
    /// (unless a `Connection: close` field was given already), and the blank line.
    pub fn finish(mut self, date: &[u8], connection: Connection) -> Vec<u8> {
        self.buf.extend_from_slice(b"Date: ");
        self.buf.extend_from_slice(date);
        self.buf
            .extend_from_slice(if connection == Connection::Close && !self.says_close {
                b"\r\nConnection: close\r\n\r\n"
            } else {
                b"\r\n\r\n"
            });
        self.buf
    }
}

/// Adds `name: value` to a [`finish`](Head::finish)ed head, before its blank line (a field
/// known only after the head was built: a replay's `Last-Event-ID`, once the shared store
/// said which entry it resumes after).
pub fn insert_field(head: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(head.ends_with(b"\r\n\r\n"), "a finished head");
    let at = head.len().saturating_sub(2);
    let field = [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"].concat();
    head.splice(at..at, field);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn a_field_inserted_into_a_finished_head_goes_before_the_blank_line() {
        let mut h = Head::new(Status::Ok)
            .field("Content-Type", "text/event-stream")
            .finish(DATE, Connection::KeepAlive);
        insert_field(&mut h, "Last-Event-ID", "a-1");
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nLast-Event-ID: a-1\r\n\r\n"
        );
    }

    #[test]
    fn head_orders_fields_and_adds_date_and_close() {
        let h = Head::new(Status::NotFound)
            .field("Content-Type", "text/plain")
            .content_length(3)
            .finish(DATE, Connection::Close);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn event_stream_head_is_the_seeds() {
        let h = Head::new(Status::Ok)
            .event_stream(Connection::KeepAlive)
            .finish(DATE, Connection::KeepAlive);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\n\
             Cache-Control: no-cache\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\
             X-Accel-Buffering: no\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        let closing = Head::new(Status::Ok)
            .event_stream(Connection::Close)
            .finish(DATE, Connection::Close);
        let text = String::from_utf8(closing).unwrap();
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
    }
}
