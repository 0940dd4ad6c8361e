//! One connection's TLS session, sans-IO: TLS records in, the plaintext a [`Conn`] reads out;
//! what a [`Conn`] writes in, TLS records out. It sits between the loop's socket and the
//! connection. The handshake is rustls's *unbuffered* server connection; once it is done, the
//! traffic keys are taken out of rustls (its secret extraction) and rustls's connection is
//! dropped: the records of the rest of the session are ours (`Records`: TLS 1.3 and TLS 1.2
//! AEAD records with `ring`'s AES-GCM and ChaCha20-Poly1305), so an idle stream holds its two
//! keys and nothing else of rustls's (no key schedule, no handshake leftovers, no deframer).
//!
//! - records received but not yet complete (`inb`), plaintext the connection has not taken
//!   yet (`plain`) and records not yet taken by the socket (`out`) are each freed once empty,
//!   so an idle stream holds no buffer at all;
//! - a stream's frame is encrypted in place into the loop's scratch and written from there
//!   (one `write(2)`, no allocation); only the records the socket refused are copied into
//!   `out`, as the plain path copies only an unwritten tail;
//! - the sending key is kept expanded (every frame uses it); the receiving key is kept as its
//!   bytes and expanded for each batch of received records (a stream's client rarely sends),
//!   which halves what an idle session holds.
//!
//! What the session cannot honour after the handshake ends it on purpose: a TLS 1.3
//! `KeyUpdate` or any other post-handshake handshake message (a TLS 1.2 renegotiation) gets our
//! `close_notify` and the connection closes (clients reconnect, an `EventSource` with
//! `Last-Event-ID`); a received alert other than `close_notify` closes it; a record that does
//! not decrypt gets `bad_record_mac`, one that is too long `record_overflow`, an unexpected type
//! `unexpected_message`, each then closes; the peer's `close_notify` is its end of stream. When
//! our sequence number nears the suite's confidentiality limit, the session sends
//! `close_notify` instead of another record ([`TlsError::KeysSpent`]).
//!
//! The negotiated ALPN protocol picks the codec behind the session ([`Proto`]).
//!
//! **Invariant:** nothing here touches a socket or reads a clock.
//! **Invariant:** every buffer is bounded: `inb` by [`MAX_TLS_INPUT`] (the loop reads no more
//! than [`Tls::room`]), `plain` by what `inb` decrypted to, `out` by one output of the
//! connection (what it has in flight is bounded already) plus the handshake's flight and one
//! alert.
//! **Invariant:** no nonce is used twice: each direction's sequence number only grows, every
//! record we send takes the next one (the handshake's records take theirs in rustls, whose
//! counts the extracted secrets carry), and none is sent past the confidentiality limit.
//!
//! [`Conn`]: crate::core::conn::Conn

use ring::aead;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConfig, SupportedCipherSuite};
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
    /// The peer sent something that is not TLS, or broke the protocol during the handshake
    /// (rustls's reason).
    Protocol(rustls::Error),
    /// More received records than [`MAX_TLS_INPUT`] are waiting.
    TooMuchInput,
    /// The session cannot encrypt (closed, or not established).
    CannotEncrypt,
    /// A received record broke the record layer; the alert (queued in
    /// [`Tls::pending`]) says how.
    Record(Alert),
    /// The peer sent this alert (not `close_notify`).
    PeerAlert(u8),
    /// The peer sent a post-handshake handshake message (a TLS 1.3 `KeyUpdate`, a TLS 1.2
    /// renegotiation) that the session does not honour: `close_notify` is queued.
    Unsupported,
    /// Our sequence number reached the suite's confidentiality limit: `close_notify` is queued
    /// (and the write side to be shut once it is written) instead of the records asked for.
    KeysSpent,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "{e}"),
            TlsError::TooMuchInput => f.write_str("too much TLS input buffered"),
            TlsError::CannotEncrypt => f.write_str("the session cannot encrypt"),
            TlsError::Record(a) => write!(f, "bad record: {a:?}"),
            TlsError::PeerAlert(d) => write!(f, "the peer sent alert {d}"),
            TlsError::Unsupported => f.write_str("a post-handshake handshake message"),
            TlsError::KeysSpent => f.write_str("the sending keys reached their limit"),
        }
    }
}

/// The fatal alerts the record layer sends (RFC 8446 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alert {
    /// A record of a type that has no place after the handshake.
    UnexpectedMessage = 10,
    /// A record that does not decrypt (or authenticate).
    BadRecordMac = 20,
    /// A record longer than the protocol allows.
    RecordOverflow = 22,
    /// A record whose content cannot be parsed (an alert that is not two bytes).
    DecodeError = 50,
}

/// Content types (RFC 8446 section 5.1; `change_cipher_spec`, 20, has no place after the
/// handshake).
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// Handshake message types a client may send after the handshake (RFC 8446 section 4, RFC
/// 5246 section 7.4).
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;
/// The most plaintext in one record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// The longest ciphertext a TLS 1.3 record may carry (RFC 8446 section 5.2).
const MAX_CIPHERTEXT_13: usize = MAX_FRAGMENT + 256;
/// The longest ciphertext a TLS 1.2 record may carry (RFC 5246 section 6.2.3).
const MAX_CIPHERTEXT_12: usize = MAX_FRAGMENT + 2048;
/// A record's header: type, version, length.
const HEADER: usize = 5;
/// The AEAD's tag.
const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce, sent in each record (RFC 5288).
const EXPLICIT_NONCE: usize = 8;
/// The most a record adds to its plaintext: the header, the explicit nonce or the content
/// type, the tag.
const MAX_OVERHEAD: usize = HEADER + EXPLICIT_NONCE + TAG;
/// No sequence number past this one is used, whatever the suite (as rustls: room for a
/// `close_notify` well before the counter could wrap).
const SEQ_SOFT_LIMIT: u64 = 0xffff_ffff_ffff_0000;

/// One connection's TLS session. See the module docs.
pub struct Tls {
    /// rustls's connection while the handshake runs (boxed, so that the session shrinks to
    /// its traffic keys once it is done); `None` after it, or once it failed.
    handshake: Option<Box<UnbufferedServerConnection>>,
    /// Our record layer once the handshake is done; `None` before, or once the session ended
    /// in error (nothing more is read or sent).
    records: Option<Records>,
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
    /// Our `close_notify` or a fatal alert is queued: no record follows it.
    sent_close: bool,
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
    /// A session for a freshly accepted connection, waiting for its ClientHello. The
    /// configuration must allow secret extraction (`server::tls::server_config` does).
    pub fn new(config: Arc<ServerConfig>) -> Result<Box<Tls>, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::Protocol)?;
        Ok(Box::new(Tls {
            handshake: Some(Box::new(conn)),
            records: None,
            inb: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            held: 0,
            peer_closed: false,
            established: false,
            sent_close: false,
            shutdown_after_flush: false,
        }))
    }

    /// Whether the handshake is still running (no application data either way yet).
    pub fn is_handshaking(&self) -> bool {
        !self.established
    }

    /// The application protocol, once the handshake is done.
    pub fn proto(&self) -> Option<Proto> {
        self.records.as_ref().map(|r| r.proto)
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
    /// On error, an alert for the peer may be [`pending`](Self::pending): write it if the
    /// socket takes it, then close.
    pub fn handle_tls(&mut self, data: &[u8]) -> Result<bool, TlsError> {
        if self.inb.len() + data.len() > MAX_TLS_INPUT {
            return Err(TlsError::TooMuchInput);
        }
        let was = self.established;
        let r = if self.handshake.is_some() {
            self.inb.extend_from_slice(data);
            self.run_handshake()
        } else if self.records.is_some() {
            self.read_records(data)
        } else {
            Err(TlsError::CannotEncrypt)
        };
        if self.inb.is_empty() {
            self.inb = Vec::new();
        }
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
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

    /// Encrypts `parts` (the plaintext in that order, one record per 16 KiB) in place into
    /// `scratch` (cleared first; it grows to the largest output once and is reused), for the
    /// loop to write from there. Only called with nothing [`pending`](Self::pending).
    /// [`TlsError::KeysSpent`]: nothing was encrypted, `close_notify` is pending instead; write
    /// it, then end the connection.
    pub fn encrypt(&mut self, parts: [&[u8]; 2], scratch: &mut Vec<u8>) -> Result<(), TlsError> {
        scratch.clear();
        let Some(rec) = &mut self.records else {
            return Err(TlsError::CannotEncrypt);
        };
        if self.sent_close {
            return Err(TlsError::CannotEncrypt);
        }
        let [a, b] = parts;
        let total = a.len() + b.len();
        let records = total.div_ceil(MAX_FRAGMENT) as u64;
        if !rec.tx.can_send(records) {
            self.queue_close_notify();
            return Err(TlsError::KeysSpent);
        }
        scratch.reserve(total + records as usize * MAX_OVERHEAD);
        let (mut a, mut b) = (a, b);
        while !a.is_empty() || !b.is_empty() {
            let in_a = a.len().min(MAX_FRAGMENT);
            let in_b = b.len().min(MAX_FRAGMENT - in_a);
            rec.seal(APPLICATION_DATA, &a[..in_a], &b[..in_b], scratch);
            a = &a[in_a..];
            b = &b[in_b..];
        }
        Ok(())
    }

    /// Keeps the records the socket did not take (`tail`) and notes that the first `held`
    /// bytes of the connection's next output are already in them.
    pub fn keep_unwritten(&mut self, tail: &[u8], held: usize) {
        self.out.extend_from_slice(tail);
        self.held = held;
    }

    /// Queues `close_notify` behind whatever is pending; the write side is to be shut once it
    /// is written ([`on_written`](Self::on_written) says when). Returns whether it can be shut
    /// at once (nothing could be queued: the session is not established or already closed,
    /// and nothing is pending).
    pub fn close(&mut self) -> bool {
        if !self.established {
            return true;
        }
        if !self.sent_close {
            self.queue_close_notify();
        }
        if self.pending().is_empty() {
            self.shutdown_after_flush = false;
            return true;
        }
        false
    }

    /// Test hook: the sending keys may seal only `records` more records (the confidentiality
    /// limit, brought near).
    #[cfg(test)]
    pub(crate) fn limit_tx_after(&mut self, records: u64) {
        if let Some(rec) = &mut self.records {
            rec.tx.limit = rec.tx.seq + records;
        }
    }

    /// Test hook: received bytes held (a partial record), and their buffer's capacity.
    #[cfg(test)]
    pub(crate) fn buffered_input(&self) -> (usize, usize) {
        (self.inb.len(), self.inb.capacity())
    }

    /// Queues our `close_notify` (when the keys allow one more record) and has the write side
    /// shut once it is written.
    fn queue_close_notify(&mut self) {
        self.queue_alert(1, 0);
    }

    /// Queues an alert of `level` and `description`, the last record of the session.
    fn queue_alert(&mut self, level: u8, description: u8) {
        if self.sent_close {
            return;
        }
        self.sent_close = true;
        if let Some(rec) = &mut self.records {
            if rec.tx.seq < rec.tx.limit {
                rec.seal(ALERT, &[level, description], &[], &mut self.out);
                self.shutdown_after_flush = true;
            }
        }
    }

    /// Runs rustls over `inb` until it needs more input; once the handshake is done, takes the
    /// keys out of rustls and decrypts what follows in `inb` with them.
    fn run_handshake(&mut self) -> Result<(), TlsError> {
        let Some(conn) = &mut self.handshake else {
            return Err(TlsError::CannotEncrypt);
        };
        loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut self.inb);
            let mut done = false;
            let mut wait = false;
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
                    done = true;
                    Ok(())
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    wait = true;
                    Ok(())
                }
                // BlockedHandshake (more input needed); early data is never accepted.
                Ok(_) => {
                    wait = true;
                    Ok(())
                }
            };
            self.inb.drain(..discard.min(self.inb.len()));
            if result.is_err() {
                // rustls queued its alert for the peer: it goes out before the close. One call,
                // with the same buffer (rustls's deframer keeps offsets into it): the alert is
                // handed out before any input is looked at.
                let UnbufferedStatus { state, .. } = conn.process_tls_records(&mut self.inb);
                if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
                    let _ = encode_into(&mut e, &mut self.out);
                }
                self.handshake = None;
                return result;
            }
            if wait {
                return Ok(());
            }
            if done {
                break;
            }
        }
        // The handshake's whole output (TLS 1.3 session tickets included) is encoded in `out`
        // with rustls's sequence numbers, which the extracted secrets carry on.
        let Some(conn) = self.handshake.take() else {
            return Err(TlsError::CannotEncrypt);
        };
        self.records = Some(Records::from_rustls(*conn)?);
        self.established = true;
        let rest = std::mem::take(&mut self.inb);
        self.read_records(&rest)
    }

    /// Decrypts the complete records of `inb` followed by `data` (into `plain`), keeps a
    /// trailing partial record in `inb`. A record that breaks the rules queues its alert and
    /// ends the session.
    fn read_records(&mut self, data: &[u8]) -> Result<(), TlsError> {
        let from_inb = !self.inb.is_empty();
        if from_inb {
            self.inb.extend_from_slice(data);
        }
        let Tls {
            records,
            inb,
            plain,
            ..
        } = self;
        let Some(rec) = records else {
            return Err(TlsError::CannotEncrypt);
        };
        let src: &[u8] = if from_inb { inb } else { data };
        let mut at = 0;
        let mut opener = None;
        let mut result = Ok(());
        let mut peer_closed = false;
        while src.len() - at >= HEADER && !peer_closed {
            let header: [u8; HEADER] = src[at..at + HEADER].try_into().expect("5 bytes");
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            let max = match rec.tls13 {
                true => MAX_CIPHERTEXT_13,
                false => MAX_CIPHERTEXT_12,
            };
            if header[1] != 3 {
                result = Err(Fail::Alert(Alert::DecodeError));
                break;
            }
            if len > max {
                result = Err(Fail::Alert(Alert::RecordOverflow));
                break;
            }
            if src.len() - at < HEADER + len {
                break;
            }
            let body = &src[at + HEADER..at + HEADER + len];
            at += HEADER + len;
            let opener = opener.get_or_insert_with(|| rec.rx.key());
            match rec.open(opener, header, body, plain) {
                Ok(Opened::Data) => {}
                Ok(Opened::CloseNotify) => peer_closed = true,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.peer_closed |= peer_closed;
        match result {
            Ok(()) => {
                if peer_closed {
                    // Nothing after `close_notify` counts.
                    self.inb.clear();
                } else if from_inb {
                    self.inb.drain(..at);
                } else {
                    self.inb.extend_from_slice(&data[at..]);
                }
                Ok(())
            }
            Err(Fail::Alert(alert)) => {
                self.queue_alert(2, alert as u8);
                self.records = None;
                Err(TlsError::Record(alert))
            }
            Err(Fail::PeerAlert(d)) => {
                self.records = None;
                Err(TlsError::PeerAlert(d))
            }
            Err(Fail::Unsupported) => {
                self.queue_close_notify();
                self.records = None;
                Err(TlsError::Unsupported)
            }
        }
    }
}

/// What a received record was, once decrypted.
enum Opened {
    /// Application data, appended to the plaintext.
    Data,
    /// The peer's `close_notify`.
    CloseNotify,
}

/// Why a received record ends the session.
enum Fail {
    /// It broke the record layer: this alert goes to the peer.
    Alert(Alert),
    /// It was an alert other than `close_notify`.
    PeerAlert(u8),
    /// It was a post-handshake handshake message: we say `close_notify`.
    Unsupported,
}

/// The AEADs of the suites rustls negotiates with `ring`.
#[derive(Clone, Copy, Debug)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    /// The cipher, key and IV of extracted secrets.
    fn of(secrets: &ConnectionTrafficSecrets) -> Option<(Cipher, &[u8], [u8; aead::NONCE_LEN])> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => return None,
        };
        Some((cipher, key.as_ref(), iv.as_ref().try_into().ok()?))
    }
}

/// The sending direction: its key expanded (every frame uses it), its IV, the next sequence
/// number and the first one not to be used.
struct Sealer {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    limit: u64,
}

impl Sealer {
    /// Whether `records` more records leave a sequence number for `close_notify`.
    fn can_send(&self, records: u64) -> bool {
        self.seq.saturating_add(records) < self.limit
    }
}

/// The receiving direction: its key's bytes (expanded per batch of records, see the module
/// docs), its IV, the next sequence number.
struct Opener {
    cipher: Cipher,
    key: [u8; 32],
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Opener {
    fn key(&self) -> aead::LessSafeKey {
        let len = self.cipher.algorithm().key_len();
        let key = aead::UnboundKey::new(self.cipher.algorithm(), &self.key[..len])
            .expect("the key's length is the algorithm's");
        aead::LessSafeKey::new(key)
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        for b in self.key.iter_mut().chain(self.iv.iter_mut()) {
            // SAFETY: a valid, aligned `&mut u8`; volatile so that the wipe is not elided.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The record layer of an established session: TLS 1.3 records (RFC 8446 section 5: the
/// nonce is the IV XOR the sequence number, the additional data the record's header, the true
/// content type inside the encryption) or TLS 1.2 AEAD records (RFC 5246 section 6.2.3.3: the
/// additional data is the sequence number, type, version and plaintext length; AES-GCM sends
/// an explicit nonce, RFC 5288, ChaCha20-Poly1305 uses the IV XOR the sequence number, RFC
/// 7905).
struct Records {
    tls13: bool,
    /// TLS 1.2 AES-GCM: each record carries its explicit nonce.
    explicit_nonce: bool,
    proto: Proto,
    tx: Sealer,
    rx: Opener,
}

impl Records {
    /// Takes the keys of a completed handshake out of rustls, and drops the rest of it.
    fn from_rustls(conn: UnbufferedServerConnection) -> Result<Records, TlsError> {
        let proto = Proto::from_alpn(conn.alpn_protocol());
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(TlsError::Protocol)?;
        let tls13 = kernel.protocol_version() == ProtocolVersion::TLSv1_3;
        let limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        };
        drop(kernel);
        let (tx_seq, tx) = &secrets.tx;
        let (rx_seq, rx) = &secrets.rx;
        let (Some((cipher, tx_key, tx_iv)), Some((rx_cipher, rx_key, rx_iv))) =
            (Cipher::of(tx), Cipher::of(rx))
        else {
            return Err(TlsError::CannotEncrypt);
        };
        let sealing = aead::UnboundKey::new(cipher.algorithm(), tx_key)
            .map_err(|_| TlsError::CannotEncrypt)?;
        let mut key = [0u8; 32];
        key.get_mut(..rx_key.len())
            .ok_or(TlsError::CannotEncrypt)?
            .copy_from_slice(rx_key);
        Ok(Records {
            tls13,
            explicit_nonce: !tls13 && !matches!(cipher, Cipher::Chacha20Poly1305),
            proto,
            tx: Sealer {
                key: aead::LessSafeKey::new(sealing),
                iv: tx_iv,
                seq: *tx_seq,
                limit: limit.min(SEQ_SOFT_LIMIT),
            },
            rx: Opener {
                cipher: rx_cipher,
                key,
                iv: rx_iv,
                seq: *rx_seq,
            },
        })
    }

    /// Appends one record of type `typ` holding `a` then `b` (at most [`MAX_FRAGMENT`]
    /// together), encrypted in place in `out`, with the next sequence number.
    fn seal(&mut self, typ: u8, a: &[u8], b: &[u8], out: &mut Vec<u8>) {
        let n = a.len() + b.len();
        debug_assert!(n <= MAX_FRAGMENT);
        let seq = self.tx.seq;
        self.tx.seq += 1;
        let nonce = nonce(&self.tx.iv, seq);
        let start = out.len();
        let (header, aad_12, body) = if self.tls13 {
            let len = n + 1 + TAG;
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            (header, None, start + HEADER)
        } else {
            let explicit = if self.explicit_nonce {
                EXPLICIT_NONCE
            } else {
                0
            };
            let len = explicit + n + TAG;
            let header = [typ, 3, 3, (len >> 8) as u8, len as u8];
            (
                header,
                Some(aad12(seq, typ, [3, 3], n)),
                start + HEADER + explicit,
            )
        };
        out.extend_from_slice(&header);
        if self.explicit_nonce {
            out.extend_from_slice(&nonce[4..]);
        }
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        if self.tls13 {
            out.push(typ);
        }
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        let sealed = match aad_12 {
            None => self.tx.key.seal_in_place_separate_tag(
                nonce,
                aead::Aad::from(header),
                &mut out[body..],
            ),
            Some(aad) => self.tx.key.seal_in_place_separate_tag(
                nonce,
                aead::Aad::from(aad),
                &mut out[body..],
            ),
        };
        // Sealing fails only for inputs far beyond a record's 16 KiB.
        let tag = sealed.expect("a record's plaintext is within the AEAD's limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Decrypts one record (`header`, `body`) onto the end of `plain`; keeps its plaintext
    /// there when it is application data.
    fn open(
        &mut self,
        key: &aead::LessSafeKey,
        header: [u8; HEADER],
        body: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<Opened, Fail> {
        let seq = self.rx.seq;
        if seq >= SEQ_SOFT_LIMIT {
            return Err(Fail::Unsupported);
        }
        let start = plain.len();
        let typ = if self.tls13 {
            // Every protected record is `application_data` outside (RFC 8446 section 5.2).
            if header[0] != APPLICATION_DATA {
                return Err(Fail::Alert(Alert::UnexpectedMessage));
            }
            plain.extend_from_slice(body);
            let nonce = aead::Nonce::assume_unique_for_key(nonce(&self.rx.iv, seq));
            let Ok(n) = key
                .open_in_place(nonce, aead::Aad::from(header), &mut plain[start..])
                .map(|p| p.len())
            else {
                plain.truncate(start);
                return Err(Fail::Alert(Alert::BadRecordMac));
            };
            // The content type is the last byte that is not padding.
            let Some(end) = plain[start..start + n].iter().rposition(|&b| b != 0) else {
                plain.truncate(start);
                return Err(Fail::Alert(Alert::UnexpectedMessage));
            };
            let typ = plain[start + end];
            plain.truncate(start + end);
            typ
        } else {
            let typ = header[0];
            if !matches!(typ, APPLICATION_DATA | ALERT | HANDSHAKE) {
                return Err(Fail::Alert(Alert::UnexpectedMessage));
            }
            let (nonce, sealed) = if self.explicit_nonce {
                if body.len() < EXPLICIT_NONCE + TAG {
                    return Err(Fail::Alert(Alert::BadRecordMac));
                }
                let mut nonce = [0u8; aead::NONCE_LEN];
                nonce[..4].copy_from_slice(&self.rx.iv[..4]);
                nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
                (nonce, &body[EXPLICIT_NONCE..])
            } else {
                if body.len() < TAG {
                    return Err(Fail::Alert(Alert::BadRecordMac));
                }
                (nonce(&self.rx.iv, seq), body)
            };
            let aad = aad12(seq, typ, [header[1], header[2]], sealed.len() - TAG);
            plain.extend_from_slice(sealed);
            let opened = key.open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut plain[start..],
            );
            let Ok(n) = opened.map(|p| p.len()) else {
                plain.truncate(start);
                return Err(Fail::Alert(Alert::BadRecordMac));
            };
            plain.truncate(start + n);
            typ
        };
        self.rx.seq = seq + 1;
        if plain.len() - start > MAX_FRAGMENT {
            plain.truncate(start);
            return Err(Fail::Alert(Alert::RecordOverflow));
        }
        match typ {
            APPLICATION_DATA => Ok(Opened::Data),
            ALERT => {
                let alert = plain.get(start..).unwrap_or_default().to_vec();
                plain.truncate(start);
                match alert[..] {
                    [_, 0] => Ok(Opened::CloseNotify),
                    [_, description] => Err(Fail::PeerAlert(description)),
                    _ => Err(Fail::Alert(Alert::DecodeError)),
                }
            }
            HANDSHAKE => {
                // What a client may send after the handshake: a TLS 1.3 `KeyUpdate`, a TLS 1.2
                // `ClientHello` (renegotiation). Not honoured; anything else is out of place.
                let kind = plain.get(start).copied();
                plain.truncate(start);
                match (kind, self.tls13) {
                    (Some(KEY_UPDATE), true) | (Some(CLIENT_HELLO), false) => {
                        Err(Fail::Unsupported)
                    }
                    _ => Err(Fail::Alert(Alert::UnexpectedMessage)),
                }
            }
            // change_cipher_spec after the handshake, or no type at all.
            _ => {
                plain.truncate(start);
                Err(Fail::Alert(Alert::UnexpectedMessage))
            }
        }
    }
}

/// A record's nonce: the IV XOR the sequence number (big-endian, in its last 8 bytes).
fn nonce(iv: &[u8; aead::NONCE_LEN], seq: u64) -> [u8; aead::NONCE_LEN] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn aad12(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
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
