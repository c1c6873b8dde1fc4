//! The CLI against a real admin API served on 127.0.0.1:0.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use gateway_keys::admin::router;
use gateway_keys::cli::{run_to, KeysArgs, KeysCommand};
use gateway_keys::config::KeysConfig;

mod common;
use common::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    keys: KeysArgs,
}

async fn require_token(req: Request, next: Next) -> Response {
    match req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some("Bearer s3cret-admin") => next.run(req).await,
        _ => (http::StatusCode::UNAUTHORIZED, "admin token required").into_response(),
    }
}

async fn cli(url: &str, token: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["keys"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    run_to(parsed.keys.command, url, token, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn cli_drives_the_admin_api() {
    let (svc, _clock, _store) = service(KeysConfig::default(), BTreeMap::new()).await;
    let app = router(svc.clone()).layer(axum::middleware::from_fn(require_token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tok = Some("s3cret-admin");

    let out = cli(
        &url,
        tok,
        &[
            "create",
            "--owner",
            "acme",
            "--scopes",
            "route:orders,method:GET",
            "--expires",
            "90d",
        ],
    )
    .await
    .unwrap();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(svc.verify(&secret.parse().unwrap()).is_ok());
    assert!(out.contains("route:orders,method:GET"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();

    let out = cli(&url, tok, &["list"]).await.unwrap();
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains(&id) && out.contains("active"), "{out}");
    assert!(!out.contains(&secret[8..]), "list must not show the secret");

    let out = cli(&url, tok, &["rotate", &id, "--grace", "1h"])
        .await
        .unwrap();
    assert!(out.contains("keeps working until"), "{out}");
    let out = cli(&url, tok, &["show", &id, "--json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "retiring");

    let out = cli(&url, tok, &["revoke", &id, "--reason", "test"])
        .await
        .unwrap();
    assert_eq!(out.trim(), format!("revoked {id}"));
    let out = cli(&url, tok, &["audit", &id]).await.unwrap();
    assert!(
        out.contains("key.revoke") && out.contains("key.rotate"),
        "{out}"
    );
    let out = cli(&url, tok, &["consumers"]).await.unwrap();
    assert!(out.contains("acme"));

    // Errors are clear: the API's problem detail, a bad flag, no token.
    let err = cli(&url, tok, &["show", "key_000000000000"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404 key_not_found"), "{err}");
    let err = cli(&url, tok, &["rotate", &id, "--grace", "tomorrow"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--grace"), "{err}");
    let err = cli(&url, None, &["list"]).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    server.abort();
}

#[test]
fn keys_command_parses_the_documented_forms() {
    for argv in [
        vec!["keys", "create", "--owner", "acme", "--plan", "gold"],
        vec!["keys", "list", "--status", "active"],
        vec!["keys", "audit"],
        vec![
            "keys",
            "--admin",
            "http://10.0.0.1:9901",
            "revoke",
            "key_abcdefabcdef",
        ],
    ] {
        let c = Cli::try_parse_from(&argv).unwrap();
        if argv.contains(&"--admin") {
            assert_eq!(c.keys.admin, "http://10.0.0.1:9901");
            assert!(matches!(c.keys.command, KeysCommand::Revoke { .. }));
        }
    }
    assert!(
        Cli::try_parse_from(["keys", "create"]).is_err(),
        "--owner is required"
    );
}
