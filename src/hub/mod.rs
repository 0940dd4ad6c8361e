//! Publish and subscribe, sans-IO: the bounded history of events shared by the loops, each
//! loop's mirror and topic index, topic selectors, tokens, and the one interface through
//! which an event-store backend stores publishes.
//!
//! - [`history`]: [`history::Hub`] (the shared history, ids, eviction) and
//!   [`history::LocalHub`] (one loop's mirror, its subscribers by topic, who may see what);
//! - [`publish`]: [`publish::Publish`], what a publisher sends, shared by the history,
//!   presence and the backends (a leaf, so presence and the history do not import each other);
//! - [`parse`]: what publishers and subscribers send, read and checked (form and JSON publish
//!   bodies, subscription queries) and the one rule for an event's fields, which the event-store
//!   backends apply to what they read back too;
//! - [`selector`]: topic selectors of both Mercure drafts (URI Templates, URL Patterns) and a
//!   bounded cache of their results;
//! - [`presence`]: subscription events and the registry the subscriptions API reads
//!   (`--subscriptions`);
//! - [`jwt`]: subscriber and publisher tokens (HS256 JWTs with Mercure claims);
//! - [`backend`]: the [`backend::Backend`] trait that the event-store backends implement (the
//!   Redis bridge, [`crate::redis`], and the data directory, [`crate::durable`]), and
//!   [`backend::with_wakes_held`], within which a backend's batch wakes each loop once.
//!
//! Imports only [`crate::util`]: the hub knows events, not HTTP. Never imports the wire, the
//! connection core, the application, the server loops or a backend's code; does no IO and
//! reads no clock.

pub mod backend;
pub mod history;
pub mod jwt;
pub mod parse;
pub mod presence;
pub mod publish;
pub mod selector;
