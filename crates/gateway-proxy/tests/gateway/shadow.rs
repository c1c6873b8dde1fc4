//! Dark launch as a pipeline stage: clients only ever get the primary's
//! answer, at the primary's speed, while the candidate's differences show
//! up in the launch report.

use std::time::{Duration, Instant};

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway};

/// A config with one route, `/{route}` to `primary`, mirrored in full to
/// `candidate` by the launch `{route}-next`.
fn mirrored(primary: &Origin, candidate: &Origin, route: &str) -> String {
    base(&format!(
        r#"
[clusters.{route}]
targets = ["{primary}"]

[clusters.{route}-next]
targets = ["{candidate}"]

[[routes]]
name = "{route}"
path_prefix = "/{route}"
cluster = "{route}"

[[dark_launches]]
name = "{route}-next"
routes = ["{route}"]
candidate = "{route}-next"
sample_percent = 100.0
"#,
        primary = primary.authority(),
        candidate = candidate.authority(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_traffic_is_compared_without_touching_the_primary() {
    let primary = Origin::start(Handler::fixed(
        200,
        &[("content-type", "application/json")],
        r#"{"rate":"1.1122","base":"EUR"}"#,
    ))
    .await;
    // The candidate rounds differently, and is slow.
    let candidate = Origin::start(
        Handler::fixed(
            200,
            &[("content-type", "application/json")],
            r#"{"rate":"1.112","base":"EUR"}"#,
        )
        .delay(Duration::from_secs(2)),
    )
    .await;
    let gw = TestGateway::start(&mirrored(&primary, &candidate, "fx")).await;
    let http = client();
    let started = Instant::now();
    for i in 0..10 {
        let res = http
            .get(gw.url(&format!("/fx/rates/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.text().await.unwrap(),
            r#"{"rate":"1.1122","base":"EUR"}"#,
            "primary's answer"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ten primary requests finished while one candidate call takes 2 s: {:?}",
        started.elapsed()
    );

    let compared = eventually(Duration::from_secs(15), || async {
        let report = gw.admin_json("/v1/shadow/fx-next").await;
        report["top_fields"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["field"].as_str().unwrap_or("").contains("rate"))
        })
    })
    .await;
    let report = gw.admin_json("/v1/shadow/fx-next").await;
    assert!(compared, "the rate difference is reported: {report}");
    assert!(
        !report["top_fields"].to_string().contains("base"),
        "equal fields are not diffs: {report}"
    );
    assert_eq!(
        candidate.requests(),
        10,
        "every sampled request reached the candidate"
    );
    let marker = candidate.recorded()[0].headers["x-gatehouse-shadow"].clone();
    assert_eq!(marker, "1", "shadow copies are marked");
}

/// The comparison sees every byte of a large primary body, even where
/// plain routes move such bodies kernel-side: two identical 200 KiB
/// answers compare equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_primary_body_is_compared_whole() {
    let big: bytes::Bytes = (0..200 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let primary = Origin::start(Handler::fixed(200, &[], big.clone())).await;
    let candidate = Origin::start(Handler::fixed(200, &[], big.clone())).await;
    let gw = TestGateway::start(&mirrored(&primary, &candidate, "files")).await;
    let http = client();
    for i in 0..5 {
        let res = http
            .get(gw.url(&format!("/files/{i}")))
            .send()
            .await
            .unwrap();
        assert!(
            res.bytes().await.unwrap() == big,
            "the client gets it whole"
        );
    }
    let compared = eventually(Duration::from_secs(15), || async {
        gw.admin_json("/v1/shadow/files-next").await["assessment"]["endpoints"][0]["compared"] == 5
    })
    .await;
    let report = gw.admin_json("/v1/shadow/files-next").await;
    let endpoint = &report["assessment"]["endpoints"][0];
    assert!(compared, "{endpoint}");
    assert_eq!(endpoint["matches"], 5, "{}", report["categories"]);
    assert_eq!(report["categories"], serde_json::json!({}));
}
