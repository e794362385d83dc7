//! The OpenAPI document (`docs/openapi.json`, served at `/openapi.json`) is
//! kept equal to what the server does: schemathesis, pinned in the CI
//! virtualenv, runs every phase (examples, coverage, fuzzing, stateful)
//! and every check against the real binary, and must find nothing.
//!
//! schemathesis is found through `FLASHSALE_SCHEMATHESIS` (the `st`
//! executable) or in the virtualenv `.ci/run` creates; without it the test
//! fails, it does not skip.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

/// Test cases per operation and phase: enough to reach every parameter
/// and status, few enough that the run takes about 20 s on 2 cores.
const EXAMPLES_PER_OPERATION: &str = "30";
/// A fixed seed: a failure reproduces with the same command.
const SEED: &str = "1";

/// The `st` executable: `FLASHSALE_SCHEMATHESIS`, else the CI virtualenv.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("FLASHSALE_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    let venv = PathBuf::from(home).join(".cache/flashsale-ci-venv/bin/st");
    assert!(
        venv.exists(),
        "schemathesis not found: set FLASHSALE_SCHEMATHESIS to its `st`, or run .ci/run \
         once to create the virtualenv {}",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn the_served_document_is_the_checked_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let served = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let content_type = served.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body = served.text().await.unwrap();
    let checked_in = include_str!("../docs/openapi.json");
    assert_eq!(body, checked_in);
}

#[test]
fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    // The per-user rate off, so that writes reach the engine; 429 is in the
    // document all the same.
    let server = Server::start(&dir.path().join("data"), &["--user-writes-per-second", "0"]);
    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let output = Command::new(&st)
        .args(["run", document, "--url", &server.base_url])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--checks", "all"])
        .args(["--max-examples", EXAMPLES_PER_OPERATION, "--seed", SEED])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--request-timeout", "10"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", st.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found differences:\n{stdout}\n{stderr}"
    );
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            stdout.contains(&format!("✅ {phase}")),
            "phase {phase} did not pass:\n{stdout}"
        );
    }
    assert!(stdout.contains("No issues found"), "{stdout}");
}
