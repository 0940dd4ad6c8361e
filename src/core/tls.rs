//! One connection's TLS session, sans-IO: TLS records in, the plaintext a [`Conn`] reads out;
//! what a [`Conn`] writes in, TLS records out. It sits between the loop's socket and the
//! connection, and holds rustls's *unbuffered* server connection, so the buffers are ours:
//!
//! - records received but not yet complete (`inb`), plaintext the connection has not taken
//!   yet (`plain`) and records not yet taken by the socket (`out`) are each freed once empty,
//!   so an idle stream holds no buffer at all, only rustls's state (its keys);
//! - a stream's frame is encrypted into the loop's scratch and written from there (one
//!   `write(2)`); only the records the socket refused are copied into `out`, as the plain path
//!   copies only an unwritten tail.
//!
//! The negotiated ALPN protocol picks the codec behind the session ([`Proto`]); today only
//! HTTP/1.1 is offered.
//!
//! **Invariant:** nothing here touches a socket or reads a clock.
//! **Invariant:** every buffer is bounded: `inb` by [`MAX_TLS_INPUT`] (the loop reads no more
//! than [`Tls::room`]), `plain` by what `inb` decrypted to, `out` by one output of the
//! connection (what it has in flight is bounded already) plus the handshake's flight.
//!
//! [`Conn`]: crate::core::conn::Conn

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncryptError, UnbufferedStatus, WriteTraffic};
use rustls::ServerConfig;
use std::sync::Arc;

/// Bytes of received records held at most: a handshake message may be up to 64 KiB (rustls's
/// own limit), an application record up to 16 KiB of plaintext plus its overhead.
pub const MAX_TLS_INPUT: usize = 64 * 1024 + 2 * 1024;

/// Plaintext encrypted per call when a connection's output is a response being written (a
/// large file is encrypted a record at a time, not whole).
pub const MAX_ENCRYPT: usize = 16 * 1024;

/// The application protocol the handshake chose, which picks the connection's codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1: `http/1.1` by ALPN, or no ALPN at all.
    Http1,
    /// HTTP/2: `h2` by ALPN.
    H2,
}

impl Proto {
    /// What the server offers by ALPN, most preferred first: `h2` (many streams over one
    /// connection), then `http/1.1`.
    pub const OFFERED: &'static [&'static [u8]] = &[b"h2", b"http/1.1"];

    /// The protocol of a completed handshake (rustls refuses a client whose ALPN offer shares
    /// nothing with [`Proto::OFFERED`], so nothing else reaches here).
    pub fn from_alpn(alpn: Option<&[u8]>) -> Proto {
        match alpn {
            Some(b"h2") => Proto::H2,
            Some(_) | None => Proto::Http1,
        }
    }
}

/// Why a session ended in error.
#[derive(Debug)]
pub enum TlsError {
    /// The peer sent something that is not TLS, or broke the protocol (rustls's reason).
    Protocol(rustls::Error),
    /// More received records than [`MAX_TLS_INPUT`] are waiting.
    TooMuchInput,
    /// The session cannot encrypt (closed, or its keys are exhausted).
    CannotEncrypt,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "{e}"),
            TlsError::TooMuchInput => f.write_str("too much TLS input buffered"),
            TlsError::CannotEncrypt => f.write_str("the session cannot encrypt"),
        }
    }
}

/// One connection's TLS session. See the module docs.
pub struct Tls {
    conn: UnbufferedServerConnection,
    /// Received bytes not processed yet (a partial record, a partial handshake flight).
    inb: Vec<u8>,
    /// Decrypted bytes the connection has not taken yet, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// Records for the socket, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// Bytes at the front of the connection's next output that are already encrypted (in
    /// `out`): reported to the connection once `out` has gone (see [`Tls::held`]).
    held: usize,
    /// The peer sent its `close_notify`.
    peer_closed: bool,
    /// The handshake completed (counted once).
    established: bool,
    /// Shut the write side once `out` is written (a `close_notify` is in it).
    shutdown_after_flush: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("inb", &self.inb.len())
            .field("plain", &(self.plain.len() - self.plain_at))
            .field("out", &(self.out.len() - self.out_at))
            .field("held", &self.held)
            .field("established", &self.established)
            .finish()
    }
}

impl Tls {
    /// A session for a freshly accepted connection, waiting for its ClientHello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Box<Tls>, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::Protocol)?;
        Ok(Box::new(Tls {
            conn,
            inb: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            held: 0,
            peer_closed: false,
            established: false,
            shutdown_after_flush: false,
        }))
    }

    /// Whether the handshake is still running (no application data either way yet).
    pub fn is_handshaking(&self) -> bool {
        !self.established
    }

    /// The application protocol, once the handshake is done.
    pub fn proto(&self) -> Option<Proto> {
        self.established
            .then(|| Proto::from_alpn(self.conn.alpn_protocol()))
    }

    /// How many more received bytes the session takes now: none while decrypted input waits
    /// for the connection (back-pressure on the socket), else up to [`MAX_TLS_INPUT`].
    pub fn room(&self) -> usize {
        if self.plain_at < self.plain.len() || self.peer_closed {
            return 0;
        }
        MAX_TLS_INPUT.saturating_sub(self.inb.len())
    }

    /// Bytes read from the socket (at most [`room`](Self::room)): runs the handshake (its
    /// answer goes to [`pending`](Self::pending)) and decrypts application data (into
    /// [`plaintext`](Self::plaintext)). Returns whether the handshake completed in this call.
    pub fn handle_tls(&mut self, data: &[u8]) -> Result<bool, TlsError> {
        if self.inb.len() + data.len() > MAX_TLS_INPUT {
            return Err(TlsError::TooMuchInput);
        }
        let was = self.established;
        self.inb.extend_from_slice(data);
        let r = self.process();
        if self.inb.is_empty() {
            self.inb = Vec::new();
        }
        r.map(|()| self.established && !was)
    }

    /// Decrypted bytes waiting for the connection.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain[self.plain_at..]
    }

    /// The connection took `n` bytes of [`plaintext`](Self::plaintext).
    pub fn consume(&mut self, n: usize) {
        self.plain_at = (self.plain_at + n).min(self.plain.len());
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
    }

    /// The peer closed the session with `close_notify`: its end of the stream, like a FIN.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed && self.plain_at == self.plain.len()
    }

    /// Records to write before anything else.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_at..]
    }

    /// `n` bytes of [`pending`](Self::pending) were written. Returns whether the write side
    /// must now be shut (the `close_notify` is out).
    pub fn on_written(&mut self, n: usize) -> bool {
        self.out_at = (self.out_at + n).min(self.out.len());
        if self.out_at < self.out.len() {
            return false;
        }
        self.out = Vec::new();
        self.out_at = 0;
        std::mem::take(&mut self.shutdown_after_flush)
    }

    /// Bytes at the front of the connection's next output that are already encrypted and
    /// written (valid once [`pending`](Self::pending) is empty): report them to the connection
    /// as sent, then [`clear_held`](Self::clear_held).
    pub fn held(&self) -> usize {
        self.held
    }

    /// The held bytes were reported to the connection.
    pub fn clear_held(&mut self) {
        self.held = 0;
    }

    /// Encrypts `parts` (the plaintext in that order) into `scratch` (cleared first), for the
    /// loop to write from there. Only called with nothing [`pending`](Self::pending).
    pub fn encrypt(&mut self, parts: [&[u8]; 2], scratch: &mut Vec<u8>) -> Result<(), TlsError> {
        scratch.clear();
        let mut empty: [u8; 0] = [];
        loop {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut empty);
            match state.map_err(TlsError::Protocol)? {
                ConnectionState::WriteTraffic(mut w) => {
                    for p in parts {
                        if !p.is_empty() {
                            encrypt_into(&mut w, p, scratch)?;
                        }
                    }
                    return Ok(());
                }
                ConnectionState::EncodeTlsData(mut e) => encode_into(&mut e, scratch)?,
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(TlsError::Protocol)?;
                        self.plain.extend_from_slice(rec.payload);
                    }
                }
                _ => return Err(TlsError::CannotEncrypt),
            }
        }
    }

    /// Keeps the records the socket did not take (`tail`) and notes that the first `held`
    /// bytes of the connection's next output are already in them.
    pub fn keep_unwritten(&mut self, tail: &[u8], held: usize) {
        self.out.extend_from_slice(tail);
        self.held = held;
    }

    /// Queues `close_notify` behind whatever is pending; the write side is to be shut once it
    /// is written ([`on_written`](Self::on_written) says when). Returns whether it can be shut
    /// at once (nothing could be queued: the session is not established or already closed).
    pub fn close(&mut self) -> bool {
        if !self.established {
            return true;
        }
        let mut alert = Vec::new();
        let mut empty: [u8; 0] = [];
        loop {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut empty);
            match state {
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = w.queue_close_notify(&mut buf) {
                        alert.extend_from_slice(&buf[..n]);
                    }
                    break;
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode_into(&mut e, &mut alert).is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
        if alert.is_empty() {
            return self.pending().is_empty();
        }
        self.out.extend_from_slice(&alert);
        self.shutdown_after_flush = true;
        false
    }

    /// Runs rustls over `inb` until it needs more input.
    fn process(&mut self) -> Result<(), TlsError> {
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut self.inb);
            let mut again = true;
            let result = match state {
                Err(e) => Err(TlsError::Protocol(e)),
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    let mut result = Ok(());
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => self.plain.extend_from_slice(rec.payload),
                            Err(e) => {
                                result = Err(TlsError::Protocol(e));
                                break;
                            }
                        }
                    }
                    result
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode_into(&mut e, &mut self.out),
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The flight is in `out`; the loop writes it.
                    t.done();
                    Ok(())
                }
                Ok(ConnectionState::WriteTraffic(_)) => {
                    self.established = true;
                    again = false;
                    Ok(())
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    again = false;
                    Ok(())
                }
                // BlockedHandshake (more input needed); early data is never accepted.
                Ok(_) => {
                    again = false;
                    Ok(())
                }
            };
            self.inb.drain(..discard.min(self.inb.len()));
            result?;
            if !again {
                return Ok(());
            }
        }
    }
}

/// Appends a handshake or alert record rustls has ready.
fn encode_into(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let start = out.len();
    let mut size = 512;
    loop {
        out.resize(start + size, 0);
        match e.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(rustls::unbuffered::EncodeError::InsufficientSize(s)) => {
                size = s.required_size;
            }
            Err(_) => {
                out.truncate(start);
                return Err(TlsError::CannotEncrypt);
            }
        }
    }
}

/// Appends the records of `plain`.
fn encrypt_into(
    w: &mut WriteTraffic<'_, rustls::server::ServerConnectionData>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let start = out.len();
    // Per record of up to 16 KiB: a 5-byte header, at most 8 bytes of explicit nonce (TLS
    // 1.2), the content type (TLS 1.3) and a 16-byte tag.
    let mut size = plain.len() + (plain.len() / (16 * 1024) + 1) * 32;
    loop {
        out.resize(start + size, 0);
        match w.encrypt(plain, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > size => {
                size = s.required_size;
            }
            Err(_) => {
                out.truncate(start);
                return Err(TlsError::CannotEncrypt);
            }
        }
    }
}
