//! The `gatehouse fx` subcommands against a temporary SQLite database.

use clap::Parser;
use fx_service::cli::{run, FxCommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: FxCommand,
}

fn parse(args: &[&str]) -> FxCommand {
    Cli::try_parse_from(std::iter::once("fx").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

#[tokio::test]
async fn import_then_convert_from_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("data/fx.db").display());
    let file = dir.path().join("oxr.json");
    std::fs::write(&file, include_str!("data/oxr-latest.json")).unwrap();

    // First use creates the database, imports the bundled history, then the file.
    run(parse(&[
        "import",
        "--database",
        &db,
        file.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    run(parse(&[
        "convert",
        "--database",
        &db,
        "100",
        "USD",
        "JPY",
        "--date",
        "2020-03-02",
    ]))
    .await
    .unwrap();
    run(parse(&["convert", "--database", &db, "100", "usd", "aed"]))
        .await
        .unwrap();

    let store = fx::SqlStore::connect(&db, None).await.unwrap();
    use fx::RateStore;
    assert!(store.count_rows("ecb").await.unwrap() > 150_000);
    assert!(store.count_rows("oxr").await.unwrap() > 30);

    // Bad input is an error, not a panic; a corrupt file stores nothing.
    assert!(run(parse(&[
        "convert",
        "--database",
        &db,
        "1.234",
        "USD",
        "JPY"
    ]))
    .await
    .is_err());
    assert!(
        run(parse(&["convert", "--database", &db, "1", "USD", "XXX"]))
            .await
            .is_err()
    );
    std::fs::write(&file, "Date,USD,\n2026-10-30,1.1").unwrap();
    let before = store.count_rows("ecb").await.unwrap();
    let err = run(parse(&[
        "import",
        "--database",
        &db,
        file.to_str().unwrap(),
    ]))
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    assert_eq!(store.count_rows("ecb").await.unwrap(), before);
    assert!(Cli::try_parse_from(["fx", "import", "--format", "yaml", "x"]).is_err());
}
