//! `sse-server`: a hand-rolled HTTP/1.1 Server-Sent Events server on a nonblocking `mio` event
//! loop, and `sse-load`, a load generator for any SSE server.
//!
//! The layers, from the wire inwards (see ARCHITECTURE.md):
//! - [`server`]: the event loops, the only code that touches sockets, `mio` and clocks;
//! - [`conn`]: one connection's HTTP/1.1 lifecycle, sans-IO (bytes and `now` in, bytes and
//!   deadlines out), fed by a [`stream`] source once it streams;
//! - [`routes`]: the application, request in, [`response`] out;
//! - [`http`], [`sse`], [`static_files`]: request parsing, the event-stream format, the page;
//! - [`admission`]: the `--max-streams` gauge;
//! - [`testing`]: a connection's surroundings without a loop, for tests and fuzzing;
//! - [`timer`]: the timing wheel that holds every connection's next deadline;
//! - [`jwt`]: subscriber and publisher tokens (HS256 JWTs, Mercure claims), sans-IO;
//! - [`selector`]: topic selectors of both Mercure drafts (URI Templates, URL Patterns), sans-IO;
//! - [`redis_bridge`]: the shared event log in a Redis Stream (writer and reader threads);
//! - [`durable`]: the embedded event log in segment files (`--data-dir`), on its own thread;
//! - [`backend`]: the one interface the route stores publishes through (Redis or the data dir);
//! - [`metrics`], [`config`], [`cli`], [`sys`]: counters, flags, and the few raw syscalls;
//! - [`slab`]: connections by reusable index, for both binaries' loops.

pub mod admission;
pub mod backend;
pub mod cli;
pub mod config;
pub mod conn;
pub mod durable;
pub mod event_stream;
pub mod http;
pub mod hub;
pub mod jwt;
pub mod listen;
pub mod load;
pub mod log;
pub mod metrics;
pub mod publish;
pub mod redis_bridge;
pub mod response;
pub mod routes;
pub mod selector;
pub mod server;
pub mod setup;
pub mod slab;
pub mod sse;
pub mod static_files;
pub mod stream;
pub mod sys;
pub mod testing;
pub mod timer;

#[cfg(test)]
mod test_alloc;
