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
    /// done: rustls's state and no buffer of ours. The figure ARCHITECTURE.md gives.
    #[test]
    fn an_idle_session_holds_rustls_state_only() {
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
            eprintln!(
                "{name}: an idle session holds {heap} bytes (Tls itself {})",
                std::mem::size_of::<Tls>()
            );
            assert!(server.pending().is_empty() && server.plaintext().is_empty());
            // 4.1 to 4.7 KB measured (2026-12-02): the session in its box (1.2 KB, most of it
            // rustls's connection inline), its keys and key schedule, its TLS 1.3 tickets in
            // the server's session cache (256 sessions at most, shared). No buffer of ours.
            assert!(heap < 6 * 1024, "{name}: {heap} bytes");
        }
    }
}
