//! `sse-load`: a load generator for any Server-Sent Events server on this machine.
//!
//! It opens many concurrent `GET` streams over HTTP/1.1, one connection each, or with `--h2`
//! over HTTP/2, many streams per connection (connect rate and in-flight handshakes bounded), reads each response as an event stream exactly as a browser would
//! ([`crate::wire::event_stream`]), and measures: streams established, failed and dropped by reason,
//! connect time and time to headers, frames and bytes, the interval between frames, delivery
//! lateness (receive time minus the frame's `content` timestamp), and id gaps and duplicates.
//! In hub mode a publisher posts timestamped events while the streams listen, and the report
//! adds publish-to-deliver latency and deliveries expected, received, missing and duplicated.
//! A run that fails a check (failures, drops, thresholds, loss) exits 3.
//!
//! The layers, from the wire inwards:
//! - [`driver`]: the `mio` loops, sockets, threads and clocks; nothing else touches them;
//! - [`conn`]: one stream's state machine, sans-IO (bytes and `now` in, reasons and figures out);
//! - [`h2`]: `--h2`, one HTTP/2 connection carrying many of those streams, sans-IO;
//! - [`response`]: the response head and body framing (close-delimited, length, chunked);
//! - [`publish`]: the hub-mode publisher, sans-IO (its loop is in the driver too);
//! - [`hub`]: the published payload, and what each stream counts when one arrives;
//! - [`histogram`], [`stats`], [`report`], [`html`]: histograms and counters, the text, JSON
//!   and CSV reports, the checks, and the HTML report;
//! - [`args`]: the flags; [`target`]: the loopback-only target URL.
//!
//! Cost: an open stream is a few hundred bytes (its state and the parser's small buffers);
//! reads go into one buffer per loop; a frame costs O(1) work and no allocation.
//!
//! **Invariant:** load only ever goes to a loopback address (127.0.0.0/8 or ::1): the target
//! is checked once, when the URL is parsed, and no name is ever resolved.

pub mod args;
pub mod conn;
pub mod driver;
pub mod h2;
pub mod histogram;
pub mod html;
pub mod hub;
pub mod publish;
pub mod report;
pub mod response;
pub mod stats;
pub mod target;

pub use args::{parse_args, LoadCommand, LoadConfig};
pub use driver::{run, Progress};
pub use report::Report;
