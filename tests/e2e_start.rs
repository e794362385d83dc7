//! What an operator sees at start and stop, from the real binary: clap's
//! own hints on a mistyped flag, a refused `~` data directory, the start
//! line (absolute data directory, listen address, identity and sync mode)
//! in flat JSON, the audit as fields, and no "durable" claim at a stop
//! without fsync.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The server this test started, killed by its handle if the test fails
/// before it stops it.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flashsale() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flashsale"))
}

#[test]
fn a_mistyped_flag_keeps_clap_hints_and_exits_2() {
    let cases = [
        (
            &["serve", "--lsten", "127.0.0.1:1"][..],
            "a similar argument exists: '--listen'",
        ),
        (
            &["serve", "--log-format", "xml"][..],
            "[possible values: text, json]",
        ),
    ];
    for (args, hint) in cases {
        let output = flashsale().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
}

#[test]
fn a_data_dir_with_an_unexpanded_tilde_is_refused_and_nothing_is_created() {
    let cwd = tempfile::tempdir().unwrap();
    for flag in ["--data-dir=~/x", "--data-dir=~"] {
        let output = flashsale()
            .args(["serve", "--listen", "127.0.0.1:0", flag])
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("did not expand"), "{stderr}");
    }
    assert!(!cwd.path().join("~").exists());
}

#[test]
fn the_start_says_where_and_how_it_runs_in_flat_json_and_an_unsynced_stop_claims_no_durability() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Started(
        flashsale()
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args([
                "--data-dir",
                "relative/data",
                "--unsafe-no-fsync",
                "--workers",
                "1",
            ])
            .env("RUST_LOG", "info")
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|line| line["message"] == "serving") {
        assert!(Instant::now() < deadline, "no serving line: {seen:?}");
        let line = lines.next().expect("stdout open").unwrap();
        seen.push(serde_json::from_str(&line).expect("one JSON object per line"));
    }
    let starting = seen
        .iter()
        .find(|line| line["message"] == "starting")
        .unwrap();
    let data_dir = cwd.path().canonicalize().unwrap().join("relative/data");
    assert_eq!(
        starting["data_dir"],
        data_dir.to_str().unwrap(),
        "{starting}"
    );
    assert_eq!(starting["listen"], "127.0.0.1:0");
    assert_eq!(
        (&starting["identity"], &starting["sync_mode"]),
        (&"off".into(), &"none".into())
    );
    assert!(
        starting.get("fields").is_none(),
        "flat, not nested: {starting}"
    );
    let audited = seen
        .iter()
        .find(|line| line.get("audit_sales").is_some())
        .expect("the start's audit line");
    assert_eq!(audited["audit_sales"], 0, "the audit as fields: {audited}");

    let sent = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.0.wait().unwrap().success());
    let stopped = rest
        .iter()
        .find(|line| line.contains("stopped;"))
        .expect("a stop line");
    assert!(stopped.contains("never fsynced"), "{stopped}");
    assert!(!stopped.contains("durable"), "{stopped}");
}
