//! The application: which request gets which answer. Routes, the page's files, and a
//! connection's surroundings for tests.
//!
//! - [`routes`]: request in, [`crate::core::reply::Reply`] out; every endpoint is a match
//!   arm here;
//! - [`static_files`]: the page, embedded or from `--www`;
//! - [`testing`]: a connection with its application and no loop, for tests and fuzzing.
//!
//! Imports the layers below (util, wire, hub, core) and, through [`crate::redis`], asks the
//! Redis bridge for replay pages. Never imports the server loops: it touches no socket and reads no clock.

pub mod routes;
pub mod static_files;
pub mod testing;
