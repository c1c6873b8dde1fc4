//! The commented example and the SRV example in `docs/upstreams.md` and
//! the cluster in `docs/grpc.md` parse and validate, so the docs cannot
//! drift from the structs.

use std::collections::BTreeMap;

use gateway_upstream::config::{
    HealthCheckKind, LoadBalancing, Scheme, TargetSpec, DEFAULT_MAX_CONCURRENT,
};
use gateway_upstream::ClusterConfig;

#[derive(serde::Deserialize)]
struct File {
    clusters: BTreeMap<String, ClusterConfig>,
}

#[test]
fn documented_example_parses_and_validates() {
    let doc = include_str!("../../../docs/upstreams.md");
    let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closing fence");
    let file: File = toml::from_str(&doc[start..end]).expect("example parses");
    let api = &file.clusters["api"];
    assert_eq!(api.validate(), Ok(()));
    assert_eq!(api.load_balancing, LoadBalancing::ConsistentHash);
    assert_eq!(api.targets[1].weight, 3);
    assert_eq!(api.circuit_breaker.max_concurrent, DEFAULT_MAX_CONCURRENT);
}

#[test]
fn grpc_example_parses_and_validates() {
    let doc = include_str!("../../../docs/grpc.md");
    let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closing fence");
    let file: File = toml::from_str(&doc[start..end]).expect("example parses");
    let orders = &file.clusters["orders"];
    assert_eq!(orders.validate(), Ok(()));
    let check = orders.health_check.as_ref().expect("a health check");
    assert_eq!(check.kind, HealthCheckKind::Grpc);
}

#[test]
fn srv_example_parses_and_validates() {
    let doc = include_str!("../../../docs/upstreams.md");
    let section = doc.find("#### SRV targets").expect("an SRV section");
    let start =
        section + doc[section..].find("```toml\n").expect("a toml example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closing fence");
    let file: File = toml::from_str(&doc[start..end]).expect("example parses");
    for (name, scheme) in [("fx", Scheme::Http), ("billing", Scheme::Https)] {
        let cluster = &file.clusters[name];
        assert_eq!(cluster.validate(), Ok(()), "{name}");
        match TargetSpec::parse(&cluster.targets[0].address) {
            Ok(TargetSpec::Srv(srv)) => assert_eq!(srv.scheme, scheme, "{name}"),
            other => panic!("{name}: not an SRV target: {other:?}"),
        }
    }
}
