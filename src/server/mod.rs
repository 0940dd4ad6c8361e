//! The process around the layers: the event loops, listening, start-up wiring and flags. The
//! only code with `mio` and sockets; the loops read the clock and hand `now` to the layers
//! below.
//!
//! - [`loops`]: [`loops::Server`], the event loops that drive connections, timers and fan-out;
//! - [`listen`]: the listener group (`SO_REUSEPORT`), the one-instance lock, peer addresses;
//! - [`setup`]: start-up wiring of the verifier and the event-store backends;
//! - [`config`]: every flag, parsed once into a [`config::Config`];
//! - [`tls`]: the certificate (read, checked, reloaded on SIGHUP) and the TLS configuration.
//!
//! The top floor: may import every other layer; nothing but the binaries imports it.

pub mod config;
pub mod h2side;
pub mod listen;
pub mod loops;
pub mod setup;
pub mod tls;
