//! Mutual TLS as a way to authenticate: the names of the client
//! certificate a listener verified, which the proxy puts in the request's
//! extensions, and which of them names a consumer.
//!
//! The certificate itself is checked by TLS before any request exists;
//! this crate only maps its names to a consumer, so it needs nothing of
//! X.509.

use std::sync::Arc;

use crate::config::CertConsumerField;

/// The names of a verified client certificate. The proxy inserts an
/// `Arc<ClientCertNames>` into a request's extensions on routes that
/// accept `client_cert`; it is built once per connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCertNames {
    /// The subject, RFC 4514 (`O=Acme,CN=billing`).
    pub subject: String,
    /// The subject's common name, the most specific one when there are several.
    pub common_name: Option<String>,
    /// Subject alternative names as `TYPE:value` (`URI:spiffe://acme/billing`).
    pub sans: Vec<String>,
}

impl ClientCertNames {
    /// The values of `field`, in certificate order: those a consumer's
    /// name is matched against.
    pub fn values(&self, field: CertConsumerField) -> Vec<&str> {
        let san = |prefix: &str| -> Vec<&str> {
            self.sans
                .iter()
                .filter_map(|s| s.strip_prefix(prefix))
                .collect()
        };
        match field {
            CertConsumerField::CommonName => self.common_name.as_deref().into_iter().collect(),
            CertConsumerField::Subject => Some(self.subject.as_str())
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
            CertConsumerField::SanUri => san("URI:"),
            CertConsumerField::SanDns => san("DNS:"),
            CertConsumerField::SanEmail => san("email:"),
        }
    }
}

/// The certificate names a request carries, if the proxy put them there.
pub fn of_request(parts: &http::request::Parts) -> Option<Arc<ClientCertNames>> {
    parts.extensions.get::<Arc<ClientCertNames>>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_reads_its_own_names_only() {
        let names = ClientCertNames {
            subject: "O=Acme,CN=billing".into(),
            common_name: Some("billing".into()),
            sans: vec![
                "DNS:billing.internal".into(),
                "URI:spiffe://acme/billing".into(),
                "URI:spiffe://acme/legacy".into(),
                "email:ops@acme.test".into(),
            ],
        };
        assert_eq!(names.values(CertConsumerField::CommonName), ["billing"]);
        assert_eq!(
            names.values(CertConsumerField::Subject),
            ["O=Acme,CN=billing"]
        );
        assert_eq!(
            names.values(CertConsumerField::SanUri),
            ["spiffe://acme/billing", "spiffe://acme/legacy"]
        );
        assert_eq!(
            names.values(CertConsumerField::SanDns),
            ["billing.internal"]
        );
        assert_eq!(names.values(CertConsumerField::SanEmail), ["ops@acme.test"]);
        let bare = ClientCertNames::default();
        assert!(bare.values(CertConsumerField::CommonName).is_empty());
        assert!(bare.values(CertConsumerField::Subject).is_empty());
    }
}
