//! The operator kit in `deploy/` and the `Dockerfile`, checked with the real
//! tools: promtool (config, rules, rule unit tests), hadolint, and a real
//! Prometheus that scrapes a real server under a short load, so that every
//! dashboard panel returns data and every alert names metrics that exist:
//! no misspelt metric can ship.
//!
//! Tools: `promtool` and `prometheus` on PATH (Debian package
//! `prometheus`) or named by `FLASHSALE_PROMTOOL` / `FLASHSALE_PROMETHEUS`;
//! `hadolint` by `FLASHSALE_HADOLINT` or in the CI virtualenv. A missing
//! tool fails its test with a message; nothing is skipped.
//!
//! The compose file is checked in `deploy_compose.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool: `FLASHSALE_<NAME>` if set, else the CI virtualenv's copy (for
/// hadolint), else the name on PATH. Missing: the test fails here.
fn tool(name: &str) -> PathBuf {
    let variable = format!("FLASHSALE_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&variable) {
        return PathBuf::from(path);
    }
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let venv = home.join(".cache/flashsale-ci-venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "{name} not found: install it (.ci/run does: Debian package `prometheus` for \
             promtool and prometheus, the CI virtualenv for hadolint) or set {variable}"
        )
    })
}

/// Every alert of `deploy/alerts.yml`: (name, expression).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            alerts.push((name, rule["expr"].as_str().unwrap().to_string()));
        }
    }
    alerts
}

/// Every query of `deploy/grafana/dashboards/flashsale.json`: (panel, expr).
fn panel_queries() -> Vec<(String, String)> {
    let path = repo().join("deploy/grafana/dashboards/flashsale.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                title.to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    queries
}

/// The series names an expression reads: ours (`flashsale_*`), the
/// process collector's (`process_*`) and Prometheus' own `up`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names: Vec<String> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            word.starts_with("flashsale_") || word.starts_with("process_") || *word == "up"
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn run_ok(tool_name: &str, args: &[&str]) -> String {
    let program = tool(tool_name);
    let output = Command::new(&program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{tool_name} {args:?} failed:\n{text}"
    );
    text
}

#[test]
fn promtool_accepts_the_prometheus_config_and_its_rules() {
    let text = run_ok("promtool", &["check", "config", "deploy/prometheus.yml"]);
    assert!(text.contains("1 rule files found"), "{text}");
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    run_ok("promtool", &["check", "rules", "deploy/alerts.yml"]);
}

#[test]
fn every_alert_has_a_unit_test_and_the_unit_tests_pass() {
    let tests: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/alerts_test.yml")).unwrap(),
    )
    .unwrap();
    let tested: Vec<&str> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_sequence().unwrap())
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    for (alert, _) in alert_rules() {
        assert!(
            tested.contains(&alert.as_str()),
            "alert {alert} has no unit test"
        );
    }
    let text = run_ok("promtool", &["test", "rules", "deploy/alerts_test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_names_only_metrics_of_ours_or_prometheus() {
    for (alert, expr) in alert_rules() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{alert}: no metric in {expr}");
    }
}

#[test]
fn nats_server_accepts_the_replication_profile_config() {
    let text = run_ok("nats-server", &["-c", "deploy/nats.conf", "-t"]);
    assert!(text.contains("is valid"), "{text}");
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    run_ok("hadolint", &["Dockerfile"]);
}

#[test]
fn the_dashboard_is_provisioned_from_the_path_compose_mounts() {
    let provider = std::fs::read_to_string(
        repo().join("deploy/grafana/provisioning/dashboards/flashsale.yml"),
    )
    .unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    let compose = std::fs::read_to_string(repo().join("deploy/compose.yaml")).unwrap();
    assert!(compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards"));
    assert!(Path::new(&repo().join("deploy/grafana/dashboards/flashsale.json")).exists());
}

/// Kills the child (a process this test started) by its handle on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A Prometheus of its own: 127.0.0.1, a temporary storage, our rules,
/// scraping `target` every second.
fn start_prometheus(dir: &Path, target: &str) -> (KillOnDrop, String) {
    let alerts = repo().join("deploy/alerts.yml");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n  - job_name: flashsale\n    static_configs:\n      - targets: [\"{target}\"]\n",
        alerts.display()
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    (KillOnDrop(child), format!("http://127.0.0.1:{port}"))
}

async fn query(client: &reqwest::Client, prometheus: &str, expr: &str) -> Value {
    let response = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .expect("query prometheus");
    let body: Value = response.json().await.expect("prometheus json");
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"].clone()
}

/// A short mixed load: checkouts and purchases by 50 users, reads, and a
/// few client errors, for about `seconds`.
async fn load(server: &common::Server, sale: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut round = 0u32;
    while Instant::now() < deadline {
        let mut tasks = Vec::new();
        for user in 0..50u32 {
            let item = (round * 50 + user) % 300;
            let checkout = format!("/checkout?user_id=u{user}&id={sale}-{item}");
            let (client, base) = (server.client.clone(), server.base_url.clone());
            tasks.push(tokio::spawn(async move {
                let cart: Value = client
                    .post(format!("{base}{checkout}"))
                    .send()
                    .await?
                    .json()
                    .await?;
                if let Some(code) = cart["code"].as_str() {
                    client
                        .post(format!("{base}/purchase?code={code}"))
                        .send()
                        .await?;
                }
                client.get(format!("{base}/sales/active")).send().await?;
                client.get(format!("{base}/checkout")).send().await?;
                Ok::<(), reqwest::Error>(())
            }));
        }
        for task in tasks {
            task.await.unwrap().expect("load request");
        }
        round += 1;
    }
}

/// Waits until Prometheus has scraped the server `scrapes` times.
async fn wait_for_scrapes(client: &reqwest::Client, prometheus: &str, scrapes: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let expr = "count_over_time(up{job=\"flashsale\"}[1m])";
    loop {
        let ready = match client
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", expr)])
            .send()
            .await
        {
            Ok(response) => response.json::<Value>().await.ok(),
            Err(_) => None,
        };
        let count = ready
            .as_ref()
            .and_then(|body| body["data"]["result"][0]["value"][1].as_str())
            .and_then(|text| text.parse::<f64>().ok())
            .unwrap_or(0.0);
        if count >= scrapes as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus scraped {count} times in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_and_every_alert_names_scraped_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let database = common::postgres::TestDatabase::create().await;
    let args = [
        "--database-url",
        &database.url,
        "--export-interval",
        "1",
        "--items-per-sale",
        "300",
        "--user-writes-per-second",
        "0",
    ];
    let server = common::Server::start(&dir.path().join("data"), &args);
    let sale = server.active_sale_id().await;
    let (_prometheus, prometheus) =
        start_prometheus(dir.path(), &format!("127.0.0.1:{}", server.port));
    let client = reqwest::Client::new();
    wait_for_scrapes(&client, &prometheus, 2).await;
    load(&server, &sale, 6).await;
    wait_for_scrapes(&client, &prometheus, 10).await;
    // Two more scrapes after the load, so rates see its end.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let names = query(
        &client,
        &prometheus,
        "count by (__name__) ({__name__=~\".+\"})",
    )
    .await;
    let scraped: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|series| series["metric"]["__name__"].as_str())
        .collect();
    for (alert, expr) in alert_rules() {
        query(&client, &prometheus, &expr).await;
        for name in &metric_names(&expr) {
            assert!(
                scraped.contains(&name.as_str()),
                "alert {alert}: no series {name}"
            );
        }
    }
    for (panel, expr) in panel_queries() {
        let names = metric_names(&expr);
        for name in &names {
            assert!(
                scraped.contains(&name.as_str()),
                "panel {panel}: no series {name}"
            );
        }
        let result = query(&client, &prometheus, &expr).await;
        let series = result.as_array().map_or(0, Vec::len);
        assert!(series > 0, "panel {panel}: no data for {expr}");
    }
    assert!(server.terminate().success());
}
