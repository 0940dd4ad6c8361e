//! HTTP/2 on the wire (RFC 9113, RFC 7541), sans-IO: frames and HPACK. Hand-written (no
//! HTTP/2 or HPACK crate: see ARCHITECTURE.md, Decisions); what a connection does with the
//! frames is the connection core's.
//!
//! - [`frame`]: the frame header, each frame type's payload with its section's rules, and the
//!   encoders of what a server sends;
//! - [`hpack`]: the field-block decoder (bounded dynamic table and header list) and a stateless
//!   encoder for responses;
//! - [`huffman`]: HPACK's Huffman code, decoding only.

pub mod frame;
pub mod hpack;
pub mod huffman;
