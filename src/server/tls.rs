//! The server's certificate: read from `--tls-cert` and `--tls-key` (PEM) at start-up and on
//! SIGHUP, checked (the key must match the certificate), and handed to new handshakes through
//! [`Certs`], rustls's certificate resolver. A reload swaps the certificate for the handshakes
//! that follow; sessions already established keep their keys, so no stream is dropped, and a
//! bad new pair leaves the old one in place.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The certificate new handshakes get, and where it is read from.
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    /// Reads and checks the pair; the error is one line naming the file and what is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certs>, String> {
        let pair = read_pair(cert, key)?;
        Ok(Arc::new(Certs {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(pair),
        }))
    }

    /// Reads the files again; on success new handshakes use the new pair, on error the old
    /// one stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let pair = read_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(())
    }

    /// The certificate file's path (for log lines).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The crypto the server uses: rustls's `ring` provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS configuration every loop's sessions share: TLS 1.3 and 1.2, no client
/// certificates, ALPN `http/1.1`, no early data, the certificate from `certs`.
pub fn server_config(certs: Arc<Certs>) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = crate::core::tls::Proto::OFFERED
        .iter()
        .map(|p| p.to_vec())
        .collect();
    config.max_early_data_size = 0;
    // After the handshake the session takes its traffic keys out of rustls and runs the
    // records itself (`core::tls`).
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

fn read_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = read_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: {}",
            key.display(),
            pem_error(e, "no private key (PKCS#8, PKCS#1 or SEC1 PEM)")
        )
    })?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("--tls-key {}: unusable key: {e}", key.display()))?;
    let pair = CertifiedKey::new(certs, signing);
    match pair.keys_match() {
        Ok(()) => Ok(Arc::new(pair)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(pair))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "--tls-key {} does not match the certificate in --tls-cert {}",
            key.display(),
            cert.display()
        )),
        Err(e) => Err(format!("--tls-cert {}: {e}", cert.display())),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |e: rustls::pki_types::pem::Error| {
        format!(
            "--tls-cert {}: {}",
            path.display(),
            pem_error(e, "no certificate (PEM \"BEGIN CERTIFICATE\")")
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if certs.is_empty() {
        return Err(fail(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// A PEM reading error as the end of a one-line message.
fn pem_error(e: rustls::pki_types::pem::Error, none: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read: {e}"),
        Error::NoItemsFound => none.to_string(),
        other => format!("bad PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tls::Tls;
    use crate::util::test_alloc::live_bytes;
    use std::io::{Read, Write};

    /// A test CA and a server certificate for localhost with an ECDSA P-256 key (the tests'
    /// one recipe, `crate::util::test_pki`) in a fresh directory; returns (CA, certificate,
    /// key).
    fn pki(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        use crate::util::test_pki::{KeyKind, Pki};
        let dir = std::env::temp_dir().join(format!("sse-tls-unit-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::make(&dir, "s", KeyKind::Ecdsa);
        (pki.ca, pki.cert, pki.key)
    }

    /// Runs a client and a server session against each other in memory until both are quiet;
    /// adds to `server_heap` what the server's calls allocated and did not free.
    fn pump(client: &mut rustls::ClientConnection, server: &mut Tls, server_heap: &mut i64) {
        for _ in 0..20 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let at = live_bytes();
            if !to_server.is_empty() {
                server.handle_tls(&to_server).unwrap();
            }
            let out = server.pending().to_vec();
            *server_heap += live_bytes() - at;
            let at = live_bytes();
            server.on_written(out.len());
            *server_heap += live_bytes() - at;
            if out.is_empty() && to_server.is_empty() {
                return;
            }
            if !out.is_empty() {
                client.read_tls(&mut &out[..]).unwrap();
                client.process_new_packets().unwrap();
            }
        }
    }

    /// What an idle TLS stream keeps on the heap once its handshake, its request and a frame are
    /// done: its traffic keys, no buffer of ours and nothing of rustls's (its connection is
    /// dropped after the handshake). The figure ARCHITECTURE.md and docs/performance.md give.
    #[test]
    fn an_idle_session_holds_its_traffic_keys_only() {
        let (ca, cert, key) = pki("idle");
        let certs = Certs::load(&cert, &key).unwrap();
        let config = server_config(certs).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let mut scratch = Vec::with_capacity(4096);
        for (name, suite) in [
            (
                "TLS13_AES_128_GCM_SHA256",
                rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ),
            (
                "TLS13_AES_256_GCM_SHA384",
                rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            ),
            (
                "TLS13_CHACHA20_POLY1305_SHA256",
                rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256",
                rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384",
                rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256",
                rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ] {
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..rustls::crypto::ring::default_provider()
            };
            let client_config = Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
            );
            let mut client =
                rustls::ClientConnection::new(client_config, "localhost".try_into().unwrap())
                    .unwrap();
            client
                .writer()
                .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut heap = 0;
            let at = live_bytes();
            let mut server = Tls::new(config.clone()).unwrap();
            heap += live_bytes() - at;
            pump(&mut client, &mut server, &mut heap);
            assert!(!server.is_handshaking(), "{name}");
            let n = server.plaintext().len();
            assert!(n > 0, "{name}: the request arrived");
            let at = live_bytes();
            server.consume(n);
            server.encrypt([b"data: x\n\n", b""], &mut scratch).unwrap();
            heap += live_bytes() - at;
            client.read_tls(&mut &scratch[..]).unwrap();
            client.process_new_packets().unwrap();
            let mut got = [0u8; 64];
            let k = client.reader().read(&mut got).unwrap();
            assert_eq!(&got[..k], b"data: x\n\n");
            assert!(server.pending().is_empty() && server.plaintext().is_empty());
            // What the session itself holds is what dropping it frees; the rest of `heap` is
            // the server's session cache (TLS 1.2's session, TLS 1.3's two tickets), shared by
            // all sessions and 256 entries at most, so not per stream at scale.
            let at = live_bytes();
            drop(server);
            let own = at - live_bytes();
            eprintln!(
                "{name}: an idle session holds {heap} bytes, {own} of them its own (Tls {}), \
                 {} in the shared session cache",
                std::mem::size_of::<Tls>(),
                heap - own
            );
            // The session in its box (the sending key expanded, the receiving key's bytes):
            // no buffer of ours, nothing of rustls's. Even with the cache's share counted, at
            // most 2 KB.
            assert!(own <= 1024, "{name}: {own} bytes");
            assert!(heap <= 2048, "{name}: {heap} bytes");
        }
    }

    /// Every suite the server negotiates (ECDSA certificate): TLS 1.3's three, TLS 1.2's three.
    fn suites() -> [(&'static str, rustls::SupportedCipherSuite); 6] {
        use rustls::crypto::ring::cipher_suite as cs;
        [
            ("TLS13_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
            ("TLS13_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
            (
                "TLS13_CHACHA20_POLY1305_SHA256",
                cs::TLS13_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384",
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ]
    }

    /// A rustls client configuration that offers only `suite` and trusts `ca`.
    fn client_config(ca: &Path, suite: rustls::SupportedCipherSuite) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![suite],
            ..rustls::crypto::ring::default_provider()
        };
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A client and a server session with their handshake done (the session switched to its
    /// own records).
    fn established(
        server_config: &Arc<ServerConfig>,
        client_config: &Arc<rustls::ClientConfig>,
    ) -> (rustls::ClientConnection, Box<Tls>) {
        let mut client =
            rustls::ClientConnection::new(client_config.clone(), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = Tls::new(server_config.clone()).unwrap();
        pump(&mut client, &mut server, &mut 0);
        assert!(!server.is_handshaking() && !client.is_handshaking());
        assert_eq!(server.proto(), Some(crate::core::tls::Proto::Http1));
        (client, server)
    }

    /// The records the client has to send.
    fn client_records(client: &mut rustls::ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Gives the client `records` and returns the plaintext it then reads, and whether it saw
    /// the server's `close_notify`.
    /// The server's queued `close_notify` is written: the write side shuts, the client reads
    /// the end of stream, and nothing more can be encrypted.
    fn closed_by_close_notify(
        server: &mut Tls,
        client: &mut rustls::ClientConnection,
        scratch: &mut Vec<u8>,
        name: &str,
    ) {
        let out = server.pending().to_vec();
        assert!(
            server.on_written(out.len()),
            "{name}: shut after close_notify"
        );
        assert_eq!(client_reads(client, &out), (vec![], true), "{name}");
        assert!(server.encrypt([b"late", b""], scratch).is_err(), "{name}");
    }

    fn client_reads(client: &mut rustls::ClientConnection, records: &[u8]) -> (Vec<u8>, bool) {
        let mut rd = records;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
            loop {
                match client.reader().read(&mut buf) {
                    Ok(0) => return (got, true),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if rd.is_empty() {
                return (got, false);
            }
        }
    }

    /// What the server's session sends is read by rustls's own client, and what that client
    /// sends is read by the session, for each suite: a frame, a response larger than a record
    /// in two parts, several records in one read, `close_notify` both ways.
    #[test]
    fn records_round_trip_with_rustls_for_every_suite() {
        let (ca, cert, key) = pki("round");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        let mut scratch = Vec::new();
        for (name, suite) in suites() {
            let (mut client, mut server) = established(&config, &client_config(&ca, suite));
            assert_eq!(client.negotiated_cipher_suite(), Some(suite), "{name}");
            // A frame.
            server.encrypt([b"data: x\n\n", b""], &mut scratch).unwrap();
            assert_eq!(
                client_reads(&mut client, &scratch),
                (b"data: x\n\n".to_vec(), false)
            );
            // A head and a body longer than three records, one call.
            let head = vec![b'h'; 20_000];
            let body: Vec<u8> = (0..30_000u32).map(|i| i as u8).collect();
            server.encrypt([&head, &body], &mut scratch).unwrap();
            let (got, _) = client_reads(&mut client, &scratch);
            assert_eq!(got.len(), 50_000, "{name}");
            assert!(
                got[..20_000] == head[..] && got[20_000..] == body[..],
                "{name}"
            );
            // Several records in one read.
            for part in [&b"GET / HTTP/1.1\r\n"[..], b"Host: a\r\n", b"\r\n"] {
                client.writer().write_all(part).unwrap();
            }
            let records = client_records(&mut client);
            server.handle_tls(&records).unwrap();
            assert_eq!(
                server.plaintext(),
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "{name}"
            );
            server.consume(server.plaintext().len());
            assert_eq!(server.buffered_input(), (0, 0), "{name}: input freed");
            // The client's close_notify is the server's end of stream; the server's is the
            // client's.
            client.send_close_notify();
            let records = client_records(&mut client);
            server.handle_tls(&records).unwrap();
            assert!(server.peer_closed(), "{name}");
            assert!(!server.close(), "{name}: close_notify queued");
            closed_by_close_notify(&mut server, &mut client, &mut scratch, name);
        }
    }

    /// A record torn into single bytes is held until it is whole (bounded by the record), then
    /// decrypted; its buffer is freed once empty.
    #[test]
    fn a_torn_record_is_held_until_whole_then_freed() {
        let (ca, cert, key) = pki("torn");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        for (name, suite) in suites() {
            let (mut client, mut server) = established(&config, &client_config(&ca, suite));
            let msg: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
            client.writer().write_all(&msg).unwrap();
            // Two records' worth, the second split in the middle of its header.
            client.writer().write_all(b"second").unwrap();
            let records = client_records(&mut client);
            for (i, b) in records.iter().enumerate() {
                server.handle_tls(std::slice::from_ref(b)).unwrap();
                if i + 1 < 3000 {
                    assert!(server.plaintext().is_empty(), "{name}: at byte {i}");
                }
            }
            let mut want = msg.clone();
            want.extend_from_slice(b"second");
            assert_eq!(server.plaintext(), &want[..], "{name}");
            assert_eq!(server.buffered_input(), (0, 0), "{name}: input freed");
            // A partial record across two reads.
            client.writer().write_all(b"third").unwrap();
            let records = client_records(&mut client);
            server.consume(want.len());
            server.handle_tls(&records[..7]).unwrap();
            assert!(server.plaintext().is_empty());
            assert_eq!(server.buffered_input().0, 7);
            server.handle_tls(&records[7..]).unwrap();
            assert_eq!(server.plaintext(), b"third", "{name}");
            assert_eq!(server.buffered_input(), (0, 0), "{name}");
        }
    }

    /// A record that does not decrypt gets `bad_record_mac`, one too long `record_overflow`,
    /// a `change_cipher_spec` after the handshake `unexpected_message`: each an error, with the
    /// alert pending for the peer, which rustls's client reads as such.
    #[test]
    fn bad_records_get_their_alert() {
        let (ca, cert, key) = pki("bad");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        for (name, suite) in suites() {
            type Spoil = fn(&mut Vec<u8>);
            let cases: [(&str, Spoil, rustls::AlertDescription); 4] = [
                (
                    "a flipped byte",
                    |r| *r.last_mut().unwrap() ^= 1,
                    rustls::AlertDescription::BadRecordMac,
                ),
                (
                    "a short record",
                    |r| *r = vec![23, 3, 3, 0, 3, 1, 2, 3],
                    rustls::AlertDescription::BadRecordMac,
                ),
                (
                    "a record too long",
                    |r| *r = [&[23u8, 3, 3, 0x48, 0x01][..], &[0; 100]].concat(),
                    rustls::AlertDescription::RecordOverflow,
                ),
                (
                    "change_cipher_spec",
                    |r| *r = vec![20, 3, 3, 0, 1, 1],
                    rustls::AlertDescription::UnexpectedMessage,
                ),
            ];
            for (case, spoil, alert) in cases {
                let (mut client, mut server) = established(&config, &client_config(&ca, suite));
                client
                    .writer()
                    .write_all(b"GET / HTTP/1.1\r\n\r\n")
                    .unwrap();
                let mut records = client_records(&mut client);
                spoil(&mut records);
                let err = server.handle_tls(&records).unwrap_err();
                assert!(
                    matches!(err, crate::core::tls::TlsError::Record(_)),
                    "{name}, {case}: {err}"
                );
                assert!(server.plaintext().is_empty(), "{name}, {case}");
                let out = server.pending().to_vec();
                assert!(!out.is_empty(), "{name}, {case}: an alert");
                client.read_tls(&mut &out[..]).unwrap();
                let got = client.process_new_packets().unwrap_err();
                assert_eq!(got, rustls::Error::AlertReceived(alert), "{name}, {case}");
                // Nothing is read or sent after it.
                assert!(server.handle_tls(&records).is_err());
                assert!(server.encrypt([b"x", b""], &mut Vec::new()).is_err());
            }
        }
    }

    /// A TLS 1.3 `KeyUpdate` is not honoured: the session answers `close_notify` (a clean
    /// end the client reconnects after) and ends.
    #[test]
    fn a_key_update_ends_the_session_with_close_notify() {
        let (ca, cert, key) = pki("keyupdate");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        for (name, suite) in suites().into_iter().take(3) {
            let (mut client, mut server) = established(&config, &client_config(&ca, suite));
            client.refresh_traffic_keys().unwrap();
            client.writer().write_all(b"after").unwrap();
            let records = client_records(&mut client);
            let err = server.handle_tls(&records).unwrap_err();
            assert!(
                matches!(err, crate::core::tls::TlsError::Unsupported),
                "{name}: {err}"
            );
            assert!(
                server.plaintext().is_empty(),
                "{name}: nothing after the update"
            );
            let out = server.pending().to_vec();
            assert!(
                server.on_written(out.len()),
                "{name}: shut after close_notify"
            );
            assert_eq!(client_reads(&mut client, &out), (vec![], true), "{name}");
        }
    }

    /// Near the confidentiality limit the session sends `close_notify` instead of the next
    /// records, and encrypts nothing after.
    #[test]
    fn the_confidentiality_limit_ends_the_session_with_close_notify() {
        let (ca, cert, key) = pki("limit");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        let mut scratch = Vec::new();
        for (name, suite) in suites() {
            let (mut client, mut server) = established(&config, &client_config(&ca, suite));
            server.limit_tx_after(3);
            server.encrypt([b"one", b""], &mut scratch).unwrap();
            assert_eq!(
                client_reads(&mut client, &scratch),
                (b"one".to_vec(), false)
            );
            // Two records would leave none for close_notify.
            let big = vec![b'x'; 20_000];
            let err = server.encrypt([&big, b""], &mut scratch).unwrap_err();
            assert!(
                matches!(err, crate::core::tls::TlsError::KeysSpent),
                "{name}: {err}"
            );
            assert!(scratch.is_empty(), "{name}: nothing encrypted");
            closed_by_close_notify(&mut server, &mut client, &mut scratch, name);
            assert!(server.close(), "{name}: nothing more to send");
        }
    }

    /// A second connection of the same client resumes (TLS 1.3 tickets, TLS 1.2 session ids)
    /// and its records work as a full handshake's.
    #[test]
    fn a_resumed_session_runs_its_records() {
        let (ca, cert, key) = pki("resume");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        let mut scratch = Vec::new();
        for (name, suite) in suites() {
            let client_config = client_config(&ca, suite);
            let (mut first, mut server) = established(&config, &client_config);
            server.encrypt([b"data: 1\n\n", b""], &mut scratch).unwrap();
            // The client takes the TLS 1.3 tickets with the first frame.
            assert_eq!(
                client_reads(&mut first, &scratch).0,
                b"data: 1\n\n",
                "{name}"
            );
            let (mut client, mut server) = established(&config, &client_config);
            assert_eq!(
                client.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "{name}"
            );
            server.encrypt([b"data: 2\n\n", b""], &mut scratch).unwrap();
            assert_eq!(
                client_reads(&mut client, &scratch).0,
                b"data: 2\n\n",
                "{name}"
            );
            client.writer().write_all(b"ping").unwrap();
            let records = client_records(&mut client);
            server.handle_tls(&records).unwrap();
            assert_eq!(server.plaintext(), b"ping", "{name}");
        }
    }

    /// Bytes that are not TLS, or a handshake that breaks the protocol, end the session with an
    /// error (and rustls's alert pending when it has one), never a panic; the session then
    /// takes nothing more.
    #[test]
    fn bytes_that_are_not_tls_end_the_handshake_with_an_error() {
        let (_, cert, key) = pki("garbage");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        for garbage in [
            &b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
            &[0x16, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0][..],
            &[0xff; 300][..],
        ] {
            let mut server = Tls::new(config.clone()).unwrap();
            assert!(server.handle_tls(garbage).is_err(), "{garbage:?}");
            assert!(server.handle_tls(garbage).is_err(), "{garbage:?}");
            assert!(server.is_handshaking() && server.proto().is_none());
            assert!(server.close(), "nothing to send after a failed handshake");
        }
    }

    /// The client's side of a session, written independently of `core::tls` from the RFCs:
    /// its sending keys taken out of rustls's client, so that a test can send any record.
    struct RawClient {
        key: ring::aead::LessSafeKey,
        iv: [u8; 12],
        seq: u64,
        tls13: bool,
        gcm12: bool,
    }

    impl RawClient {
        fn new(client: rustls::ClientConnection) -> RawClient {
            let tls13 = client.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            let (seq, secrets) = client.dangerous_extract_secrets().unwrap().tx;
            let (alg, key, iv, gcm) = match secrets {
                rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                    (&ring::aead::AES_128_GCM, key, iv, true)
                }
                rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                    (&ring::aead::AES_256_GCM, key, iv, true)
                }
                rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                    (&ring::aead::CHACHA20_POLY1305, key, iv, false)
                }
                _ => unreachable!(),
            };
            RawClient {
                key: ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(alg, key.as_ref()).unwrap(),
                ),
                iv: iv.as_ref().try_into().unwrap(),
                seq,
                tls13,
                gcm12: gcm && !tls13,
            }
        }

        /// One record of content type `typ` holding `content` (and, in TLS 1.3, `padding`
        /// zeros after the type).
        fn record(&mut self, typ: u8, content: &[u8], padding: usize) -> Vec<u8> {
            let mut nonce = self.iv;
            for (b, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
                *b ^= s;
            }
            let mut body = content.to_vec();
            let (outer, aad): (u8, Vec<u8>) = if self.tls13 {
                body.push(typ);
                body.resize(body.len() + padding, 0);
                let len = (body.len() + 16) as u16;
                (23, [&[23u8, 3, 3][..], &len.to_be_bytes()].concat())
            } else {
                let mut aad = self.seq.to_be_bytes().to_vec();
                aad.extend_from_slice(&[typ, 3, 3]);
                aad.extend_from_slice(&(content.len() as u16).to_be_bytes());
                (typ, aad)
            };
            let tag = self
                .key
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::from(&aad[..]),
                    &mut body,
                )
                .unwrap();
            body.extend_from_slice(tag.as_ref());
            if self.gcm12 {
                body.splice(0..0, nonce[4..].iter().copied());
            }
            self.seq += 1;
            let mut rec = vec![outer, 3, 3];
            rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
            rec.extend_from_slice(&body);
            rec
        }
    }

    /// Records rustls's client would not send, each by its rule: padding (TLS 1.3) is
    /// stripped, a record of padding only is `unexpected_message`; an alert other than
    /// `close_notify` closes (no answer), an alert of three bytes is `decode_error`; a handshake
    /// message other than `KeyUpdate` (TLS 1.3) or a renegotiating `ClientHello` (TLS 1.2) is
    /// `unexpected_message`, the renegotiation gets `close_notify`; an empty application record
    /// is nothing.
    #[test]
    fn records_only_a_hand_made_client_sends_end_by_their_rule() {
        use crate::core::tls::{Alert, TlsError};
        let (ca, cert, key) = pki("raw");
        let config = server_config(Certs::load(&cert, &key).unwrap()).unwrap();
        for (name, suite) in suites() {
            let mut cc = (*client_config(&ca, suite)).clone();
            cc.enable_secret_extraction = true;
            let cc = Arc::new(cc);
            let open = || {
                let (client, server) = established(&config, &cc);
                (RawClient::new(client), server)
            };
            let (mut c, mut server) = open();
            let tls13 = c.tls13;
            let mut batch = c.record(23, b"GET / HTTP/1.1\r\n", 0);
            batch.extend(c.record(23, b"", 0));
            batch.extend(c.record(23, b"\r\n", if tls13 { 300 } else { 0 }));
            server.handle_tls(&batch).unwrap();
            assert_eq!(server.plaintext(), b"GET / HTTP/1.1\r\n\r\n", "{name}");
            type Case = (
                &'static str,
                u8,
                &'static [u8],
                usize,
                fn(&TlsError) -> bool,
                bool,
            );
            let cases: Vec<Case> = vec![
                (
                    "a fatal alert",
                    21,
                    &[2, 40],
                    0,
                    |e| matches!(e, TlsError::PeerAlert(40)),
                    false,
                ),
                (
                    "an alert of three bytes",
                    21,
                    &[1, 0, 0],
                    0,
                    |e| matches!(e, TlsError::Record(Alert::DecodeError)),
                    true,
                ),
                (
                    "a Finished after the handshake",
                    22,
                    &[20, 0, 0, 1, 0],
                    0,
                    |e| matches!(e, TlsError::Record(Alert::UnexpectedMessage)),
                    true,
                ),
                (
                    "an unknown content type",
                    if tls13 { 99 } else { 24 },
                    b"x",
                    0,
                    |e| matches!(e, TlsError::Record(Alert::UnexpectedMessage)),
                    true,
                ),
            ];
            let mut cases = cases;
            if tls13 {
                cases.push((
                    "padding only",
                    0,
                    b"",
                    40,
                    |e| matches!(e, TlsError::Record(Alert::UnexpectedMessage)),
                    true,
                ));
            } else {
                cases.push((
                    "a renegotiating ClientHello",
                    22,
                    &[1, 0, 0, 1, 3],
                    0,
                    |e| matches!(e, TlsError::Unsupported),
                    true,
                ));
            }
            for (case, typ, content, padding, is, answered) in cases {
                let (mut c, mut server) = open();
                let rec = c.record(typ, content, padding);
                let err = server.handle_tls(&rec).unwrap_err();
                assert!(is(&err), "{name}, {case}: {err}");
                assert_eq!(
                    !server.pending().is_empty(),
                    answered,
                    "{name}, {case}: an alert or close_notify for the peer"
                );
                assert!(server.plaintext().is_empty(), "{name}, {case}");
            }
            // The client's close_notify, with bytes after it that do not count.
            let (mut c, mut server) = open();
            let mut batch = c.record(21, &[1, 0], 0);
            batch.extend_from_slice(&[23, 3, 3, 0, 40, 1, 2]);
            server.handle_tls(&batch).unwrap();
            assert!(server.peer_closed(), "{name}");
            assert_eq!(server.buffered_input(), (0, 0), "{name}");
            assert_eq!(server.room(), 0, "{name}");
        }
    }
}
