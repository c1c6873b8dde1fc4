//! Dark launch as a pipeline stage: clients only ever get the primary's
//! answer, at the primary's speed, while the candidate's differences show
//! up in the launch report.

use std::time::{Duration, Instant};

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway};

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
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.fx]
targets = ["{primary}"]

[clusters.fx-next]
targets = ["{candidate}"]

[[routes]]
name = "fx"
path_prefix = "/fx"
cluster = "fx"

[[dark_launches]]
name = "fx-rounding"
routes = ["fx"]
candidate = "fx-next"
sample_percent = 100.0
"#,
        primary = primary.authority(),
        candidate = candidate.authority(),
    )))
    .await;
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
        let report = gw.admin_json("/v1/shadow/fx-rounding").await;
        report["top_fields"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["field"].as_str().unwrap_or("").contains("rate"))
        })
    })
    .await;
    let report = gw.admin_json("/v1/shadow/fx-rounding").await;
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
