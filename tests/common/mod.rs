//! Spawns the real `flashsale` binary on port 0 with its own data
//! directory and speaks HTTP to it, as a client would.
#![allow(dead_code)]

pub mod ledger;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a start may take (replay included) before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A clock offset that puts the server's "now" five minutes into the current
/// hour, so that a test never straddles an hour change by accident. Each
/// test computes it once and passes it to every server it starts.
pub fn mid_hour_clock_offset_seconds() -> i64 {
    let seconds_into_hour = chrono::Utc::now().timestamp().rem_euclid(3600);
    300 - seconds_into_hour
}

/// A repeatable stream of pseudo-random numbers (xorshift64): `next(n)` is
/// below `n`. Load loops in tests use it so that a failure can be rerun.
pub fn numbers_below(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed.wrapping_mul(6364136223846793005) | 1;
    move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub base_url: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

/// A server that did not start: its exit status and stderr.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flashsale")
}

impl Server {
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        match Server::try_start(data_dir, extra_args) {
            Ok(server) => server,
            Err(failure) => panic!("server did not start: {failure:?}"),
        }
    }

    pub fn try_start(data_dir: &Path, extra_args: &[&str]) -> Result<Server, StartFailure> {
        let mut child = Command::new(binary())
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--workers",
                "2",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flashsale");
        let stdout = child.stdout.take().expect("stdout");
        let (port_sender, port_receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = serving_port(&line) {
                    let _ = port_sender.send(port);
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(port) = port_receiver.recv_timeout(Duration::from_millis(50)) {
                let server = Server {
                    child,
                    port,
                    base_url: format!("http://127.0.0.1:{port}"),
                    data_dir: data_dir.to_path_buf(),
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("client"),
                };
                return Ok(server);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return Err(StartFailure {
                    status: Some(status),
                    stderr,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(StartFailure {
                    status: None,
                    stderr: "start timed out".into(),
                });
            }
        }
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    /// The `/metrics` text, as Prometheus would scrape it.
    pub async fn metrics_text(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await;
        response
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The active sale's id, as the server sees it.
    pub async fn active_sale_id(&self) -> String {
        let (status, body) = self.get("/sales/active").await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().expect("sale id").to_string()
    }

    /// kill -9: no chance to flush or clean anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serving_port(line: &str) -> Option<u16> {
    let value: Value = serde_json::from_str(line).ok()?;
    if value["message"] != "serving" {
        return None;
    }
    value["port"].as_u64().and_then(|p| u16::try_from(p).ok())
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: body is not JSON ({content_type}): {text:?}"));
    assert!(
        content_type.starts_with("application/json"),
        "{content_type} for {text}"
    );
    (status, body)
}
