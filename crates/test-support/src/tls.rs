//! Throwaway TLS material for tests: a CA and a server certificate for
//! `localhost` and `127.0.0.1`, generated with `rcgen` and written as PEM
//! files to a temp dir (removed when [`TestCerts`] is dropped), so code under
//! test can be pointed at real `ca_file`/`cert_file`/`key_file` paths. The
//! same CA signs client certificates ([`TestCerts::client_cert`]) for
//! mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A generated CA plus a server certificate signed by it.
pub struct TestCerts {
    dir: tempfile::TempDir,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
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
            ca_cert,
            ca_key,
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

    /// A client certificate signed by this CA for `common_name` (and
    /// organisation `Acme`), with the given subject alternative names
    /// (`spiffe://...` and other URIs become URI names, the rest DNS
    /// names), usable for TLS client authentication. Its PEM files are
    /// written next to the CA's as `NAME.pem` and `NAME.key`.
    ///
    /// # Panics
    /// If generation or writing fails (a broken test machine).
    pub fn client_cert(&self, common_name: &str, sans: &[&str]) -> ClientCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        for san in sans {
            let name = if san.contains("://") {
                SanType::URI(san.to_string().try_into().expect("URI SAN"))
            } else {
                SanType::DnsName(san.to_string().try_into().expect("DNS SAN"))
            };
            params.subject_alt_names.push(name);
        }
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("client cert");
        let file = common_name.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let client = ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            cert_file: self.dir.path().join(format!("{file}.pem")),
            key_file: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&client.cert_file, &client.cert_pem).expect("write client cert");
        std::fs::write(&client.key_file, &client.key_pem).expect("write client key");
        client
    }

    /// A rustls client config trusting the test CA and presenting
    /// `client` when the server asks for a certificate.
    pub fn client_config_with(&self, client: &ClientCert) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.expect("parse ca.pem")).expect("add ca");
        }
        let chain = rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("parse client cert");
        let key = rustls_pemfile::private_key(&mut client.key_pem.as_bytes())
            .expect("parse client key")
            .expect("client key present");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Like [`TestCerts::server_config`], but the handshake fails unless
    /// the client presents a certificate signed by `client_ca` (TLS 1.2
    /// only, see below).
    pub fn server_config_requiring_clients(
        &self,
        client_ca: &TestCerts,
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut client_ca.ca_pem.as_bytes()) {
            roots.add(cert.expect("parse ca.pem")).expect("add ca");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("parse cert.pem");
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .expect("parse key.pem")
            .expect("key.pem holds a key");
        // TLS 1.2: a client without an acceptable certificate learns it
        // inside the handshake. Under TLS 1.3 the refusal arrives after the
        // client's handshake is done, racing its first write, so a client
        // may see a reset instead of the server's alert.
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCerts")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// A client certificate signed by a [`TestCerts`] CA, with its files.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM of its PKCS#8 private key.
    pub key_pem: String,
    /// DER of the certificate (for fingerprints).
    pub cert_der: Vec<u8>,
    /// Path of the certificate's PEM file.
    pub cert_file: PathBuf,
    /// Path of the key's PEM file.
    pub key_file: PathBuf,
}
