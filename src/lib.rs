//! `sse-server`: a hand-rolled HTTP/1.1 Server-Sent Events server on a nonblocking `mio` event
//! loop, and `sse-load`, a load generator for any SSE server.
//!
//! The folders are the layers (see ARCHITECTURE.md); every import points down this list, or
//! sideways within a floor, never up:
//! - [`server`]: the event loops, listening, start-up and flags: the only code with `mio` and
//!   the server's sockets, and where a connection's clock is read;
//! - [`app`]: the application, request in, reply out;
//! - [`core`]: one connection's HTTP/1.1 lifecycle and its stream sources, sans-IO (bytes and
//!   `now` in, bytes and deadlines out);
//! - [`redis`], [`durable`]: the two event-store backends (a Redis Stream; segment files in
//!   `--data-dir`), each on its own threads;
//! - [`hub`]: the history, what publishers and subscribers send, topic selectors, tokens, the
//!   event-store backend interface, sans-IO;
//! - [`wire`]: HTTP heads, the event encoder, the event-stream parser, sans-IO;
//! - [`util`]: the slab, the timing wheel, numbers and dates, flag helpers, the operator store,
//!   the few raw syscalls;
//! - [`load`]: `sse-load`, on [`util`] and [`wire`] only.

pub mod app;
pub mod core;
pub mod durable;
pub mod hub;
pub mod load;
pub mod redis;
pub mod server;
pub mod util;
pub mod wire;
