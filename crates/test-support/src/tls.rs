//! Throwaway TLS material for tests: a CA and a server certificate for
//! `localhost` and `127.0.0.1`, generated with `rcgen` and written as PEM
//! files to a temp dir (removed when [`TestCerts`] is dropped), so code under
//! test can be pointed at real `ca_file`/`cert_file`/`key_file` paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A generated CA plus a server certificate signed by it.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
    /// PEM of the CA certificate (trust anchor for clients).
    pub ca_pem: String,
    /// PEM of the server certificate (leaf only).
    pub cert_pem: String,
    /// PEM of the server's PKCS#8 private key.
    pub key_pem: String,
}

impl TestCerts {
    /// Generates a fresh CA and a server certificate valid for `localhost`
    /// and `127.0.0.1`, and writes `ca.pem`, `cert.pem`, `key.pem`.
    ///
    /// # Panics
    /// If generation or writing the temp files fails (a broken test machine).
    pub fn generate() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gatehouse Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");

        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf cert");

        let dir = tempfile::tempdir().expect("temp dir");
        let certs = Self {
            dir,
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        };
        std::fs::write(certs.ca_file(), &certs.ca_pem).expect("write ca.pem");
        std::fs::write(certs.cert_file(), &certs.cert_pem).expect("write cert.pem");
        std::fs::write(certs.key_file(), &certs.key_pem).expect("write key.pem");
        certs
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of `ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Path of `cert.pem` (the server certificate).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Path of `key.pem` (the server key).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A rustls server config using the server certificate, offering ALPN
    /// `h2` and `http/1.1`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("parse cert.pem");
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .expect("parse key.pem")
            .expect("key.pem holds a key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A rustls client config trusting only the test CA, offering ALPN
    /// `h2` and `http/1.1`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.expect("parse ca.pem")).expect("add ca");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
