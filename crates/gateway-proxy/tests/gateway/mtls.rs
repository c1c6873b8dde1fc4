//! Mutual TLS over real sockets: a listener that requires (or asks for)
//! client certificates, the verified subject forwarded to the upstream and
//! never forgeable, a route that requires a certificate, and a cluster that
//! presents its own client certificate to an origin requiring one.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use test_support::origin::{Handler, Origin};
use test_support::tls::{ClientCert, TestCerts};

use crate::harness::TestGateway;

/// A gateway with one TLS listener asking for client certificates signed
/// by `clients`, in `mode`, in front of the cluster `o` (`origin`), with
/// `rest` (plans, routes) after it.
fn tls_gateway(
    server: &TestCerts,
    clients: &TestCerts,
    mode: &str,
    origin: &Origin,
    rest: &str,
) -> String {
    format!(
        r#"
[gateway]
watch_config = false

[[listeners]]
bind = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}", client_auth = "{mode}" }}

[admin]
bind = "127.0.0.1:0"

[telemetry]
access_log = "off"

[clusters.o]
targets = ["{origin}"]
{rest}"#,
        cert = server.cert_file().display(),
        key = server.key_file().display(),
        ca = clients.ca_file().display(),
        origin = origin.authority(),
    )
}

/// [`tls_gateway`] with a route requiring a certificate and an open one.
fn config(server: &TestCerts, clients: &TestCerts, mode: &str, origin: &Origin) -> String {
    tls_gateway(
        server,
        clients,
        mode,
        origin,
        r#"

[[routes]]
name = "billing"
path_prefix = "/billing"
cluster = "o"
client_cert = { sans = ["URI:spiffe://acme/billing"] }

[[routes]]
name = "open"
path_prefix = "/"
cluster = "o"
"#,
    )
}

/// An HTTPS client trusting `server`'s CA, presenting `cert` if given.
fn https(server: &TestCerts, cert: Option<&ClientCert>) -> reqwest::Client {
    let tls = match cert {
        Some(c) => server.client_config_with(c),
        None => server.client_config(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(Arc::unwrap_or_clone(tls))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn url(gw: &TestGateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gw.addr.port())
}

async fn seen_headers(res: reqwest::Response) -> serde_json::Value {
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    body["headers"].clone()
}

#[tokio::test]
async fn a_required_client_cert_is_verified_and_its_subject_forwarded_unforgeably() {
    let server = TestCerts::generate();
    let clients = TestCerts::generate();
    let strangers = TestCerts::generate();
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&config(&server, &clients, "required", &origin)).await;

    // No certificate, or one from a CA the listener does not trust: the
    // handshake fails and the upstream sees nothing.
    let err = https(&server, None).get(url(&gw, "/x")).send().await;
    assert!(
        err.is_err(),
        "served a client without a certificate: {err:?}"
    );
    let forged = strangers.client_cert("billing", &["spiffe://acme/billing"]);
    let err = https(&server, Some(&forged))
        .get(url(&gw, "/x"))
        .send()
        .await;
    assert!(
        err.is_err(),
        "served a certificate from an untrusted CA: {err:?}"
    );
    assert_eq!(origin.requests(), 0);

    // A valid certificate: its subject, names and fingerprint go upstream,
    // and the client's own copies of those headers do not.
    let billing = clients.client_cert("billing", &["billing.internal", "spiffe://acme/billing"]);
    let client = https(&server, Some(&billing));
    let res = client
        .get(url(&gw, "/billing/invoices"))
        .header("x-client-cert-subject", "O=Acme,CN=admin")
        .header("x-client-cert-san", "URI:spiffe://acme/admin")
        .header("x-client-cert-sha256", "00")
        .send()
        .await
        .unwrap();
    let seen = seen_headers(res).await;
    // RFC 4514 writes the last RDN first: the certificate has CN, then O.
    assert_eq!(seen["x-client-cert-subject"], "O=Acme,CN=billing", "{seen}");
    assert_eq!(
        seen["x-client-cert-san"], "DNS:billing.internal, URI:spiffe://acme/billing",
        "{seen}"
    );
    let fingerprint: String = Sha256::digest(&billing.cert_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(seen["x-client-cert-sha256"], fingerprint.as_str(), "{seen}");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn optional_client_certs_let_routes_decide() {
    let server = TestCerts::generate();
    let clients = TestCerts::generate();
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&config(&server, &clients, "optional", &origin)).await;

    // Without a certificate: the open route serves, and a forged subject
    // header does not reach the upstream.
    let anonymous = https(&server, None);
    let res = anonymous
        .get(url(&gw, "/public"))
        .header("x-client-cert-subject", "O=Acme,CN=billing")
        .send()
        .await
        .unwrap();
    let seen = seen_headers(res).await;
    assert!(seen.get("x-client-cert-subject").is_none(), "{seen}");
    // The route that requires a certificate refuses.
    let res = anonymous.get(url(&gw, "/billing/x")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "client_cert_required");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("presented none"));

    // A certificate without the route's name is refused too; the right one passes.
    let reports = clients.client_cert("reports", &["spiffe://acme/reports"]);
    let res = https(&server, Some(&reports))
        .get(url(&gw, "/billing/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("O=Acme,CN=reports"),
        "{problem}"
    );
    assert_eq!(origin.requests(), 1);
    let billing = clients.client_cert("billing", &["spiffe://acme/billing"]);
    let res = https(&server, Some(&billing))
        .get(url(&gw, "/billing/x"))
        .send()
        .await
        .unwrap();
    let seen = seen_headers(res).await;
    assert_eq!(seen["x-client-cert-subject"], "O=Acme,CN=billing");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_cluster_presents_its_client_cert_to_an_origin_that_requires_one() {
    let origin_certs = Arc::new(TestCerts::generate());
    let gateway_identity = Arc::new(TestCerts::generate());
    let origin = Origin::builder(Handler::echo())
        .tls_with(origin_certs.clone())
        .require_client_cert(gateway_identity.clone())
        .start()
        .await;
    let cert = gateway_identity.client_cert("gatehouse-edge", &["spiffe://acme/edge"]);
    let gw = TestGateway::start(&crate::harness::base(&format!(
        r#"
[clusters.mtls]
targets = ["https://localhost:{port}"]
tls = {{ ca_file = "{ca}", client_cert_file = "{cert}", client_key_file = "{key}" }}

[clusters.plain]
targets = ["https://localhost:{port}"]
tls = {{ ca_file = "{ca}" }}

[[routes]]
name = "with-cert"
path_prefix = "/with"
cluster = "mtls"

[[routes]]
name = "without-cert"
path_prefix = "/without"
cluster = "plain"
"#,
        port = origin.addr().port(),
        ca = origin_certs.ca_file().display(),
        cert = cert.cert_file.display(),
        key = cert.key_file.display(),
    )))
    .await;
    let http = crate::harness::client();

    let res = http.get(gw.url("/with/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(origin.requests(), 1);

    // The same origin through a cluster without a client certificate: the
    // origin refuses the handshake, and the gateway says so.
    let res = http.get(gw.url("/without/x")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("CertificateRequired"),
        "{problem}"
    );
    assert_eq!(origin.requests(), 1);
}

/// A route that takes the certificate as a credential: the consumer its
/// `URI` name names is the caller, with that consumer's plan; a key still
/// works there; an unknown certificate is refused before the upstream.
#[tokio::test]
async fn a_client_cert_authenticates_as_the_consumer_it_names_with_that_consumers_plan() {
    let server = TestCerts::generate();
    let clients = TestCerts::generate();
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&tls_gateway(
        &server,
        &clients,
        "optional",
        &origin,
        r#"
[plans.two]
rate_per_second = 0.01
burst = 2

[[routes]]
name = "ledger"
path_prefix = "/ledger"
cluster = "o"
auth = { methods = ["client_cert", "api_key"], client_cert_consumer = "san:URI" }
"#,
    ))
    .await;
    let admin = crate::harness::client();
    let res = admin
        .post(gw.admin_url("/v1/consumers"))
        .bearer_auth(crate::harness::TOKEN)
        .json(&serde_json::json!({ "name": "spiffe://acme/billing", "plan": "two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let consumer: serde_json::Value = res.json().await.unwrap();
    let consumer_id = consumer["id"].as_str().unwrap().to_string();

    // The billing certificate: the consumer it names, whatever identity
    // headers the client sends itself.
    let billing = clients.client_cert("billing", &["billing.internal", "spiffe://acme/billing"]);
    let as_billing = https(&server, Some(&billing));
    let res = as_billing
        .get(url(&gw, "/ledger/entries"))
        .header("x-consumer-id", "con_forged")
        .header("x-consumer-name", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["ratelimit-limit"], "2");
    let seen = seen_headers(res).await;
    assert_eq!(seen["x-consumer-id"], consumer_id.as_str(), "{seen}");
    assert_eq!(seen["x-consumer-name"], "spiffe://acme/billing", "{seen}");
    assert!(seen.get("x-key-id").is_none(), "{seen}");

    // The consumer's plan is the certificate's: a burst of two, then 429.
    let res = as_billing.get(url(&gw, "/ledger/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = as_billing.get(url(&gw, "/ledger/x")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(origin.requests(), 2);

    // A certificate the CA signed but that names no consumer.
    let reports = clients.client_cert("reports", &["spiffe://acme/reports"]);
    let res = https(&server, Some(&reports))
        .get(url(&gw, "/ledger/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "unknown_client_cert", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("O=Acme,CN=reports"),
        "{problem}"
    );

    // No certificate and no key: told both ways in.
    let anonymous = https(&server, None);
    let res = anonymous.get(url(&gw, "/ledger/x")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "missing_credentials");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{problem}"
    );
    assert_eq!(origin.requests(), 2);

    // An API key on the same route, without a certificate, is its own
    // consumer's.
    let res = admin
        .post(gw.admin_url("/v1/keys"))
        .bearer_auth(crate::harness::TOKEN)
        .json(&serde_json::json!({ "owner": "reports-team" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let key: serde_json::Value = res.json().await.unwrap();
    let res = anonymous
        .get(url(&gw, "/ledger/x"))
        .bearer_auth(key["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let seen = seen_headers(res).await;
    assert_eq!(seen["x-consumer-name"], "reports-team", "{seen}");
    assert_eq!(seen["x-key-id"], key["key"]["id"], "{seen}");
}
