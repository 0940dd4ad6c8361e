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
