//! The bytes on the wire, sans-IO: the HTTP/1.1 request-head parser and response-head writer,
//! the event encoder, and the client-side event-stream parser.
//!
//! - [`http`]: request heads (an `httparse` wrapper), status lines, percent and number helpers;
//! - [`head`]: the one response-head builder (fields in order, then `Date` and `Connection`);
//! - [`frames`]: the event-stream frames the server writes (the seed's frame, `retry:`, the
//!   heartbeat) and its media type;
//! - [`event_stream`]: the client side, an event-stream parser that follows the WHATWG standard
//!   (used by `sse-load` and by the tests).
//!
//! Imports only [`crate::util`]. Never imports the hub, the connection core, the application,
//! the server loops or a backend: what is on the wire does not know who sends it.

pub mod event_stream;
pub mod frames;
pub mod h2;
pub mod head;
pub mod http;
