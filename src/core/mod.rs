//! One connection, sans-IO: its HTTP/1.1 lifecycle, what it answers with, what feeds it once it
//! streams, the stream gauge and the counters it bumps.
//!
//! Inside, the arrows run one way: `conn` -> `reply` -> `stream` -> `body`, `ctx`; nothing
//! below `conn` imports it.
//!
//! - [`ctx`]: what a connection is driven with ([`ctx::Now`], [`ctx::ConnConfig`], the slim
//!   [`ctx::Ctx`] its loop lends it), a leaf that names no reply and no source;
//! - [`conn`]: the connection state machine (bytes and `now` in, bytes and a deadline out);
//! - [`reply`]: what the application answers ([`reply::Reply`]: a head, a body and what the
//!   connection becomes) and how an answer given later reaches its loop ([`reply::Later`]);
//! - [`body`]: the bytes after a head, shared or held against a budget;
//! - [`stream`]: the sources of an event stream (the clock, a hub subscription, a replay, the
//!   server's figures);
//! - [`admission`]: the `--max-streams` gauge;
//! - [`metrics`]: the per-loop counters and the `/metrics` text;
//! - [`h2`]: one HTTP/2 connection's protocol engine (frames, HPACK, flow control, the
//!   limits against floods), sans-IO;
//! - [`tls`]: a connection's TLS session (rustls, unbuffered) between the socket and [`conn`].
//!
//! Imports [`crate::util`], [`crate::wire`] and [`crate::hub`]. Never imports the application,
//! the server loops or a backend; does no IO and reads no clock (`now` is an argument).

pub mod admission;
pub mod body;
pub mod conn;
pub mod ctx;
pub mod h2;
pub mod h2map;
pub mod metrics;
pub mod reply;
pub mod stream;
pub mod tls;
