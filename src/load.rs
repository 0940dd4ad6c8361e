//! The load generator behind `sse-load` (to be written).
