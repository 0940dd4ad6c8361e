//! The bytes a reply or a stream sends after its head: shared, never copied per response.
//!
//! **Invariant:** no IO; a held body releases its budget hold when it is dropped.

use std::sync::Arc;

/// Bytes to send after a head, shared rather than copied into each response.
#[derive(Clone, Debug)]
pub enum Body {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
    /// Bytes counted against a budget until they are written or dropped (a replay's page).
    Held(Arc<HeldBytes>),
}

/// Bytes and the budget hold that counts them (released when they are dropped).
#[derive(Debug)]
pub struct HeldBytes {
    pub bytes: Vec<u8>,
    pub hold: crate::hub::history::Hold,
}

impl Body {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Shared(b) => b,
            Body::Held(h) => &h.bytes,
        }
    }
}
