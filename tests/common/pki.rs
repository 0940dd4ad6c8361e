//! The test PKI: the one recipe for every certificate the tests, the benches and the library's
//! unit tests serve. A test CA (P-256) and a server certificate for `localhost` and `127.0.0.1`
//! signed by it, with an RSA-2048, ECDSA P-256 or Ed25519 key, made by `openssl` in a
//! directory the caller owns.
//!
//! Std only, no import of the crate or of the other test helpers: `benches/e2e.rs` and the unit
//! tests (`src/util/mod.rs`, `test_pki`) include this very file by path.
#![allow(dead_code)] // each includer uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The server key's algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, 2048 bits.
    Rsa,
    /// ECDSA on P-256.
    Ecdsa,
    Ed25519,
}

/// The files [`Pki::make`] wrote.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM, `--tls-cert`).
    pub cert: PathBuf,
    /// The server's key (PEM, PKCS#8, `--tls-key`).
    pub key: PathBuf,
}

impl Pki {
    /// Makes, in `dir` (which must exist), `{name}-ca.pem` and `{name}-ca.key` (a CA, valid two
    /// days), then `{name}.pem` and `{name}.key`: a certificate for `localhost` and
    /// `127.0.0.1`, not a CA, signed by it, with a key of `kind`. Panics with openssl's error if
    /// a step fails.
    pub fn make(dir: &Path, name: &str, kind: KeyKind) -> Pki {
        let ca_key = format!("{name}-ca.key");
        let ca = format!("{name}-ca.pem");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
            ],
        );
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let mut args = vec![
            "req",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ];
        args.extend_from_slice(match kind {
            KeyKind::Rsa => &["-newkey", "rsa:2048"],
            KeyKind::Ecdsa => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::Ed25519 => &["-newkey", "ed25519"],
        });
        openssl(dir, &args);
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(&ext).display()));
        let cert = format!("{name}.pem");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        Pki {
            ca: dir.join(ca),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// `openssl args...` in `dir`; panics with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
