//! The bytes on the wire, sans-IO: the HTTP/1.1 request-head parser and response-head writer,
//! the event encoder, and the client-side event-stream parser.
//!
//! - [`http`]: request heads (an `httparse` wrapper), status lines, percent and number helpers;
//! - [`head`]: the one response-head builder (fields in order, then `Date` and `Connection`);
//! - [`sse`]: the server side of the event-stream format (frames, `retry:`, the heartbeat);
//! - [`event_stream`]: the client side, an event-stream parser that follows the WHATWG standard
//!   (used by `sse-load` and by the tests).
//!
//! Imports only [`crate::util`]. Never imports the hub, the connection core, the application,
//! the server loops or a backend: what is on the wire does not know who sends it.

pub mod event_stream;
pub mod head;
pub mod http;
pub mod sse;
