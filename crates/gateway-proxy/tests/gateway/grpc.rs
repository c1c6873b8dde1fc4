//! gRPC through the gateway: the four call kinds over h2c and over TLS
//! with trailers intact, `grpc-timeout` as the route's deadline, the
//! gateway's own refusals as gRPC statuses, and `grpc.health.v1` checks
//! taking targets out of rotation and back.
//!
//! The upstream is a tonic server whose messages are declared with prost's
//! derive and served through tonic's generic codec, so no `protoc` runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, Stream};
use futures_util::future::BoxFuture;
use http::uri::PathAndQuery;
use test_support::origin::{Handler, Origin};
use test_support::tls::TestCerts;
use tonic::codec::Streaming;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;
use tower::service_fn;

use crate::harness::{base, client, eventually, TestGateway};

/// The one message of the test service.
#[derive(Clone, PartialEq, prost::Message)]
struct Echo {
    #[prost(string, tag = "1")]
    text: String,
}

fn echo(text: &str) -> Echo {
    Echo { text: text.into() }
}

type Codec = ProstCodec<Echo, Echo>;
type EchoStream = Pin<Box<dyn Stream<Item = Result<Echo, Status>> + Send>>;

/// `test.Echo`: `Unary` answers `name:text`; `Split` streams the words of
/// its text and, when the last is `fail`, ends with FAILED_PRECONDITION
/// and a custom trailer; `Join` joins the words it is sent; `Chat`
/// answers each message upper-cased as it comes.
#[derive(Clone)]
struct EchoService {
    name: &'static str,
}

impl NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let name = self.name;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Codec::default());
            let res = match req.uri().path() {
                "/test.Echo/Unary" => {
                    let unary = service_fn(move |r: Request<Echo>| async move {
                        Ok::<_, Status>(Response::new(echo(&format!(
                            "{name}:{}",
                            r.into_inner().text
                        ))))
                    });
                    grpc.unary(unary, req).await
                }
                "/test.Echo/Split" => {
                    let split = service_fn(|r: Request<Echo>| async move {
                        let text = r.into_inner().text;
                        let mut items: Vec<Result<Echo, Status>> =
                            text.split(' ').map(|w| Ok(echo(w))).collect();
                        if text.ends_with("fail") {
                            items.pop();
                            let mut trailers = MetadataMap::new();
                            trailers.insert("x-trailer", MetadataValue::from_static("kept"));
                            items.push(Err(Status::with_metadata(
                                Code::FailedPrecondition,
                                "stopped at fail",
                                trailers,
                            )));
                        }
                        let stream: EchoStream = Box::pin(futures::stream::iter(items));
                        Ok::<_, Status>(Response::new(stream))
                    });
                    grpc.server_streaming(split, req).await
                }
                "/test.Echo/Join" => {
                    let join = service_fn(|r: Request<Streaming<Echo>>| async move {
                        let mut inbound = r.into_inner();
                        let mut words = Vec::new();
                        while let Some(m) = inbound.message().await? {
                            words.push(m.text);
                        }
                        Ok::<_, Status>(Response::new(echo(&words.join(" "))))
                    });
                    grpc.client_streaming(join, req).await
                }
                "/test.Echo/Chat" => {
                    let chat = service_fn(|r: Request<Streaming<Echo>>| async move {
                        let replies =
                            futures::stream::unfold(r.into_inner(), |mut inbound| async move {
                                match inbound.message().await {
                                    Ok(Some(m)) => {
                                        Some((Ok(echo(&m.text.to_uppercase())), inbound))
                                    }
                                    Ok(None) => None,
                                    Err(e) => Some((Err(e), inbound)),
                                }
                            });
                        let stream: EchoStream = Box::pin(replies);
                        Ok::<_, Status>(Response::new(stream))
                    });
                    grpc.streaming(chat, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(res)
        })
    }
}

/// A tonic server with `test.Echo` and `grpc.health.v1` (both SERVING),
/// over TLS when given certificates.
async fn start_upstream(
    name: &'static str,
    tls: Option<&TestCerts>,
) -> (SocketAddr, HealthReporter) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoService>().await;
    let mut server = Server::builder();
    if let Some(certs) = tls {
        use_ring_by_default();
        server = server
            .tls_config(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(&certs.cert_pem, &certs.key_pem)),
            )
            .unwrap();
    }
    let router = server.add_service(EchoService { name }).add_service(health);
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, reporter)
}

async fn h2c_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// tonic's TLS builds its rustls configs with the process's default
/// crypto provider, which rustls cannot pick on its own when the build
/// enables both of its providers (the gateway itself names its provider).
fn use_ring_by_default() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn tls_channel(addr: SocketAddr, certs: &TestCerts) -> Channel {
    use_ring_by_default();
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&certs.ca_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn path(method: &str) -> PathAndQuery {
    method.parse().unwrap()
}

async fn unary(
    channel: &Channel,
    method: &str,
    req: Request<Echo>,
) -> Result<Response<Echo>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(req, path(method), Codec::default()).await
}

/// Every call kind through `channel`, checking messages, statuses and
/// trailers as the client sees them.
async fn exercise_call_kinds(channel: &Channel) {
    let answer = unary(channel, "/test.Echo/Unary", Request::new(echo("hello")))
        .await
        .unwrap();
    assert_eq!(answer.get_ref().text, "up:hello");

    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut words = grpc
        .server_streaming(
            Request::new(echo("one two three")),
            path("/test.Echo/Split"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = words.message().await.unwrap() {
        got.push(m.text);
    }
    assert_eq!(got, ["one", "two", "three"]);
    let trailers = words.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // A stream that fails after two messages: the status, its message and
    // the custom trailer come after the data.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut words = grpc
        .server_streaming(
            Request::new(echo("one two fail")),
            path("/test.Echo/Split"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(words.message().await.unwrap().unwrap().text, "one");
    assert_eq!(words.message().await.unwrap().unwrap().text, "two");
    let status = words.message().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "stopped at fail");
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "kept");

    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let sent = futures::stream::iter(["a", "b", "c"].map(echo));
    let joined = grpc
        .client_streaming(
            Request::new(sent),
            path("/test.Echo/Join"),
            Codec::default(),
        )
        .await
        .unwrap();
    assert_eq!(joined.get_ref().text, "a b c");

    // Each answer arrives before the next message is sent: nothing waits
    // for either side's stream to end.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Echo>(1);
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    tx.send(echo("ping")).await.unwrap();
    let mut replies = grpc
        .streaming(Request::new(rx), path("/test.Echo/Chat"), Codec::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "PING");
    tx.send(echo("pong")).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "PONG");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    let trailers = replies.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn the_four_call_kinds_pass_over_h2c_with_their_trailers() {
    let (upstream, _health) = start_upstream("up", None).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.grpc]
targets = ["{upstream}"]
protocol = "h2c"

[[routes]]
name = "grpc"
cluster = "grpc"
"#
    )))
    .await;
    exercise_call_kinds(&h2c_channel(gw.addr).await).await;
}

#[tokio::test]
async fn the_four_call_kinds_and_health_checks_pass_over_tls_with_alpn_h2() {
    let certs = TestCerts::generate();
    let (upstream, health) = start_upstream("up", Some(&certs)).await;
    let gw = TestGateway::start(&format!(
        r#"
[gateway]
watch_config = false

[[listeners]]
bind = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}" }}

[admin]
bind = "127.0.0.1:0"

[telemetry]
access_log = "off"

[clusters.grpc]
targets = ["https://127.0.0.1:{port}"]
tls = {{ ca_file = "{ca}", server_name = "localhost" }}
panic_threshold = 0
health_check = {{ kind = "grpc", interval = "100ms", timeout = "100ms", healthy_threshold = 1, unhealthy_threshold = 2 }}

[[routes]]
name = "grpc"
cluster = "grpc"
"#,
        cert = certs.cert_file().display(),
        key = certs.key_file().display(),
        ca = certs.ca_file().display(),
        port = upstream.port(),
    ))
    .await;
    let channel = tls_channel(gw.addr, &certs).await;
    exercise_call_kinds(&channel).await;

    // The check goes over TLS too: the server going NOT_SERVING takes
    // the only target out, and the gateway answers for it.
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let out = eventually(Duration::from_secs(10), || async {
        let status = gw.admin_json("/v1/upstreams").await;
        status["grpc"]["targets"][0]["state"] == "unhealthy"
    })
    .await;
    assert!(out, "a NOT_SERVING target is taken out of rotation");
    let (code, error, _) =
        refused(unary(&channel, "/test.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::Unavailable, "no_healthy_upstream")
    );
}

/// The gateway's own answer: its status, and the error code it names.
fn refused(result: Result<Response<Echo>, Status>) -> (Code, String, String) {
    let status = result.expect_err("the gateway refuses the call");
    let code = status
        .metadata()
        .get("gatehouse-error")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("not answered by the gateway: {status:?}"));
    (status.code(), code, status.message().to_string())
}

#[tokio::test]
async fn grpc_timeout_is_the_deadline_when_shorter_than_the_routes() {
    // An upstream that takes ten seconds to answer anything.
    let slow = Origin::start(
        Handler::fixed(200, &[("content-type", "application/grpc")], "")
            .delay(Duration::from_secs(10)),
    )
    .await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.slow]
targets = ["{slow}"]
protocol = "h2c"

[[routes]]
name = "patient"
path_prefix = "/test.Echo/"
cluster = "slow"
timeout = "60s"

[[routes]]
name = "hasty"
path_prefix = "/hasty.Echo/"
cluster = "slow"
timeout = "300ms"
"#,
        slow = slow.authority()
    )))
    .await;
    let channel = h2c_channel(gw.addr).await;

    // A plain HTTP/2 client: tonic's channel would time the call out on
    // its own at the same moment, racing the gateway's answer.
    let res = raw_call(&gw, "/test.Echo/Unary", &[("grpc-timeout", "300m")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert_eq!(res.headers()["gatehouse-error"], "upstream_timeout");
    let message = res.headers()["grpc-message"].to_str().unwrap().to_string();
    assert!(message.contains("slow"), "{message}");
    // The service gets the deadline too, for the rest of the call.
    let seen = slow.recorded();
    assert_eq!(seen[0].headers["grpc-timeout"], "300m");
    assert_eq!(seen[0].headers["te"], "trailers");

    // Without grpc-timeout, or with a longer one, the route's own timeout
    // is the deadline.
    let (code, error, _) =
        refused(unary(&channel, "/hasty.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::DeadlineExceeded, "upstream_timeout")
    );
    let res = raw_call(&gw, "/hasty.Echo/Unary", &[("grpc-timeout", "60S")]).await;
    assert_eq!(res.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");

    let mut req = Request::new(echo("hi"));
    req.metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("soon"));
    let (code, error, message) = refused(unary(&channel, "/test.Echo/Unary", req).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::InvalidArgument, "bad_grpc_timeout")
    );
    assert!(message.contains("`soon`"), "{message}");
}

/// A unary call with one empty message over plain HTTP/2, with extra headers.
async fn raw_call(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut req = h2
        .post(gw.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(vec![0u8, 0, 0, 0, 0]).send().await.unwrap()
}

async fn create_key(gw: &TestGateway, body: serde_json::Value) -> String {
    let v = gw.create_key(body).await;
    v["secret"].as_str().unwrap().to_string()
}

fn with_key(key: &str, text: &str) -> Request<Echo> {
    let mut req = Request::new(echo(text));
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {key}")).unwrap(),
    );
    req
}

#[tokio::test]
async fn the_gateways_refusals_are_grpc_statuses() {
    let (upstream, _health) = start_upstream("up", None).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = TestGateway::start(&base(&format!(
        r#"
[plans.small]
rate_per_second = 1.0
burst = 3

[clusters.grpc]
targets = ["{upstream}"]
protocol = "h2c"

[clusters.dead]
targets = ["{closed}"]
protocol = "h2c"
retry = {{ attempts = 1 }}
passive = {{ consecutive_failures = 0 }}

[clusters.down]
targets = ["{closed}"]
protocol = "h2c"
panic_threshold = 0
health_check = {{ kind = "grpc", interval = "50ms", timeout = "50ms", unhealthy_threshold = 1 }}

[[routes]]
name = "echo"
path_prefix = "/test.Echo/"
cluster = "grpc"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "other"
path_prefix = "/test.Other/"
cluster = "grpc"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "dead"
path_prefix = "/dead.Echo/"
cluster = "dead"

[[routes]]
name = "down"
path_prefix = "/down.Echo/"
cluster = "down"
"#
    )))
    .await;
    let channel = h2c_channel(gw.addr).await;

    let (code, error, _) =
        refused(unary(&channel, "/test.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::Unauthenticated, "missing_credentials")
    );
    let (code, error, _) =
        refused(unary(&channel, "/test.Echo/Unary", with_key("gh_nonsense", "hi")).await);
    assert_eq!(code, Code::Unauthenticated, "{error}");

    let key = create_key(
        &gw,
        serde_json::json!({"owner": "acme", "scopes": ["route:echo"]}),
    )
    .await;
    let answer = unary(&channel, "/test.Echo/Unary", with_key(&key, "hi"))
        .await
        .unwrap();
    assert_eq!(answer.get_ref().text, "up:hi");
    let (code, error, _) =
        refused(unary(&channel, "/test.Other/Unary", with_key(&key, "hi")).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::PermissionDenied, "key_scope_denied")
    );

    let limited = create_key(
        &gw,
        serde_json::json!({"owner": "limited", "plan": "small", "scopes": ["route:echo"]}),
    )
    .await;
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        match unary(&channel, "/test.Echo/Unary", with_key(&limited, "hi")).await {
            Ok(_) => outcomes.push(Code::Ok),
            Err(status) => {
                let (code, error, _) = refused(Err(status));
                assert_eq!(error, "rate_limited");
                outcomes.push(code);
                break;
            }
        }
    }
    assert_eq!(
        outcomes.last(),
        Some(&Code::ResourceExhausted),
        "{outcomes:?}"
    );

    let (code, error, message) =
        refused(unary(&channel, "/dead.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::Unavailable, "upstream_connect_failed")
    );
    assert!(message.contains(&closed.to_string()), "{message}");

    let unhealthy = eventually(Duration::from_secs(10), || async {
        let result = unary(&channel, "/down.Echo/Unary", Request::new(echo("hi"))).await;
        refused(result).1 == "no_healthy_upstream"
    })
    .await;
    assert!(
        unhealthy,
        "the failing target is taken out and the call refused"
    );
    let (code, _, _) = refused(unary(&channel, "/down.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(code, Code::Unavailable);

    let (code, error, _) =
        refused(unary(&channel, "/nowhere.Echo/Unary", Request::new(echo("hi"))).await);
    assert_eq!(
        (code, error.as_str()),
        (Code::Unimplemented, "route_not_found")
    );

    // On the wire: a trailers-only answer, HTTP 200 with the status in the
    // headers and no body, not problem+json.
    let res = raw_call(&gw, "/test.Echo/Unary", &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["gatehouse-error"], "missing_credentials");
    assert!(res.headers().contains_key("grpc-message"));
    assert!(res.bytes().await.unwrap().is_empty());

    // Other requests keep problem+json, and so does an HTTP/1.1 request
    // that only looks like gRPC.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = h2.get(gw.url("/test.Echo/Unary")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = client()
        .post(gw.url("/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// The state the admin API reports for the target at `addr`.
async fn target_state(gw: &TestGateway, addr: SocketAddr) -> String {
    let status = gw.admin_json("/v1/upstreams").await;
    let targets = status["pair"]["targets"].as_array().unwrap().clone();
    let target = targets
        .iter()
        .find(|t| t["address"] == format!("http://{addr}"))
        .unwrap_or_else(|| panic!("no target {addr} in {status}"));
    target["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn grpc_health_checks_take_a_not_serving_target_out_and_a_serving_one_back() {
    let (a, a_health) = start_upstream("a", None).await;
    let (b, _b_health) = start_upstream("b", None).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.pair]
targets = ["{a}", "{b}"]
protocol = "h2c"
panic_threshold = 0
health_check = {{ kind = "grpc", service = "test.Echo", interval = "100ms", timeout = "100ms", healthy_threshold = 1, unhealthy_threshold = 2 }}

[[routes]]
name = "pair"
cluster = "pair"
"#
    )))
    .await;
    let channel = h2c_channel(gw.addr).await;
    let answered_by = |text: String| text.split(':').next().unwrap().to_string();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let answer = unary(&channel, "/test.Echo/Unary", Request::new(echo("hi")))
            .await
            .unwrap();
        seen.push(answered_by(answer.into_inner().text));
    }
    assert!(
        seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
        "{seen:?}"
    );

    // Only the service the check names goes NOT_SERVING; the server as a
    // whole stays SERVING.
    a_health
        .set_service_status("test.Echo", ServingStatus::NotServing)
        .await;
    let out = eventually(Duration::from_secs(10), || async {
        target_state(&gw, a).await == "unhealthy"
    })
    .await;
    assert!(out, "a NOT_SERVING target is taken out of rotation");
    for _ in 0..6 {
        let answer = unary(&channel, "/test.Echo/Unary", Request::new(echo("hi")))
            .await
            .unwrap();
        assert_eq!(answered_by(answer.into_inner().text), "b");
    }

    a_health.set_serving::<EchoService>().await;
    let back = eventually(Duration::from_secs(10), || async {
        let answer = unary(&channel, "/test.Echo/Unary", Request::new(echo("hi")))
            .await
            .unwrap();
        answered_by(answer.into_inner().text) == "a"
    })
    .await;
    assert!(back, "a SERVING target is taken back");
    assert_eq!(target_state(&gw, a).await, "healthy");
}
