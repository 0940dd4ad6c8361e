//! A WHATWG-conformant event-stream parser for clients and tests (to be written).
