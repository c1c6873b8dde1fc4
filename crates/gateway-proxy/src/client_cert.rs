//! Mutual TLS on a listener: the client certificate a connection presented
//! (already verified by rustls against the listener's `client_ca`), what
//! is forwarded upstream about it, and a route's requirement for one.
//!
//! The headers below are the gateway's: a client's own copies are removed
//! from every request, on every listener, before the verified values are
//! set, so an upstream can trust them.

use std::sync::Arc;

use gateway_config::RouteClientCertConfig;
use gateway_keys::ClientCertNames;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// The verified certificate's subject, RFC 4514 (`CN=billing,O=Acme`).
pub const X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
/// Its subject alternative names, `TYPE:value` joined by `, `
/// (`DNS:billing.internal, URI:spiffe://acme/billing`).
pub const X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
/// The SHA-256 fingerprint of its DER, lower-case hex.
pub const X_CLIENT_CERT_SHA256: HeaderName = HeaderName::from_static("x-client-cert-sha256");

/// The certificate headers (a `static`: a `const` array is built and
/// dropped at every use).
static HEADERS: [HeaderName; 3] = [
    X_CLIENT_CERT_SUBJECT,
    X_CLIENT_CERT_SAN,
    X_CLIENT_CERT_SHA256,
];

/// What the gateway knows about a verified client certificate.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// RFC 4514 subject.
    pub subject: String,
    /// Subject alternative names as `DNS:...`, `URI:...`, `email:...`, `IP:...`.
    pub sans: Vec<String>,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// The three headers, made once per connection.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Its names for the authentication stage (routes that take the
    /// certificate as a credential), made once per connection.
    pub names: Arc<ClientCertNames>,
}

impl ClientCert {
    /// Reads the leaf certificate a client presented. rustls has verified
    /// it; a certificate whose subject or names cannot be read here still
    /// has its fingerprint.
    pub fn from_der(der: &[u8]) -> Self {
        let sha256 = hex(&Sha256::digest(der));
        let (subject, common_name, sans) = match x509_cert::Certificate::from_der(der) {
            Ok(cert) => {
                let tbs = &cert.tbs_certificate;
                (
                    tbs.subject.to_string(),
                    common_name(&tbs.subject),
                    subject_alt_names(tbs),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "client certificate could not be read beyond its fingerprint");
                (String::new(), None, Vec::new())
            }
        };
        let mut headers = Vec::new();
        for (name, value) in [
            (X_CLIENT_CERT_SUBJECT, subject.clone()),
            (X_CLIENT_CERT_SAN, sans.join(", ")),
            (X_CLIENT_CERT_SHA256, sha256.clone()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                if !v.is_empty() {
                    headers.push((name, v));
                }
            }
        }
        let names = Arc::new(ClientCertNames {
            subject: subject.clone(),
            common_name,
            sans: sans.clone(),
        });
        Self {
            subject,
            sans,
            sha256,
            headers,
            names,
        }
    }
}

/// The subject's common name: the most specific (last) `CN` when there
/// are several, as RFC 6125 6.4.4 reads a subject. `None` when it has
/// none or it is not a string type.
fn common_name(subject: &x509_cert::name::Name) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    use x509_cert::der::{Tag, Tagged};
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == CN)
        .filter_map(|atv| {
            let v = &atv.value;
            let s = match v.tag() {
                Tag::Utf8String => Utf8StringRef::try_from(v).ok()?.as_str(),
                Tag::PrintableString => PrintableStringRef::try_from(v).ok()?.as_str(),
                Tag::Ia5String => Ia5StringRef::try_from(v).ok()?.as_str(),
                _ => return None,
            };
            Some(s.to_string())
        })
        .next_back()
}

fn subject_alt_names(tbs: &x509_cert::TbsCertificate) -> Vec<String> {
    let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(s) => Some(format!("DNS:{s}")),
            GeneralName::UniformResourceIdentifier(s) => Some(format!("URI:{s}")),
            GeneralName::Rfc822Name(s) => Some(format!("email:{s}")),
            GeneralName::IpAddress(octets) => {
                let b = octets.as_bytes();
                let ip: Option<std::net::IpAddr> = match b.len() {
                    4 => Some(<[u8; 4]>::try_from(b).ok()?.into()),
                    16 => Some(<[u8; 16]>::try_from(b).ok()?.into()),
                    _ => None,
                };
                ip.map(|ip| format!("IP:{ip}"))
            }
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the client's copies of the certificate headers, then sets the
/// verified ones (when the connection presented a certificate).
pub fn forward(headers: &mut HeaderMap, cert: Option<&ClientCert>) {
    // Clients almost never send them: one pass over the names (mostly
    // standard ones, told apart at once) instead of a hash lookup for each
    // of the three.
    if headers.keys().any(|name| HEADERS.contains(name)) {
        for name in &HEADERS {
            headers.remove(name);
        }
    }
    if let Some(cert) = cert {
        for (name, value) in &cert.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Why a route refused a connection's certificate (or its absence).
pub fn check(rule: &RouteClientCertConfig, cert: Option<&ClientCert>) -> Result<(), String> {
    let Some(cert) = cert else {
        return Err(
            "this route requires a verified TLS client certificate, and the connection presented none"
                .into(),
        );
    };
    if rule.subjects.is_empty() && rule.sans.is_empty() {
        return Ok(());
    }
    let subject_ok = rule.subjects.iter().any(|s| s == &cert.subject);
    let san_ok = rule.sans.iter().any(|s| cert.sans.contains(s));
    if subject_ok || san_ok {
        Ok(())
    } else {
        Err(format!(
            "the client certificate `{}` is not one this route accepts",
            cert.subject
        ))
    }
}
