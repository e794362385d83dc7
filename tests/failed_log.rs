//! A log that cannot make writes durable, or is slow to: the real server
//! (in this process, on port 0, spoken to over HTTP) refuses writes with
//! 503 when the log failed, says why on `/health`, never acknowledges what
//! may not be on disk, keeps answering reads; and with the log stalled it
//! turns writes beyond `--write-requests-in-flight-max` away with 429.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use flashsale::config::{Cli, Command};
use flashsale::server::Application;
use flashsale_wal::{FsStorage, ReadFile, Storage, WriteFile};

/// The real file system, except that syncs fail once `fail_syncs` is set
/// and wait while `hold_syncs` is set.
#[derive(Debug, Default)]
struct FailingStorage {
    fail_syncs: Arc<AtomicBool>,
    hold_syncs: Arc<AtomicBool>,
}

struct FailingFile {
    inner: Box<dyn WriteFile>,
    fail_syncs: Arc<AtomicBool>,
    hold_syncs: Arc<AtomicBool>,
}

/// Longest a held sync waits, so a failing test cannot hang.
const HOLD_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl WriteFile for FailingFile {
    fn write_all_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(offset_bytes, bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let held_since = std::time::Instant::now();
        while self.hold_syncs.load(Ordering::SeqCst) && held_since.elapsed() < HOLD_MAX {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fdatasync failure (EIO)"));
        }
        self.inner.sync_data()
    }
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
}

impl FailingStorage {
    fn wrap(&self, inner: Box<dyn WriteFile>) -> Box<dyn WriteFile> {
        Box::new(FailingFile {
            inner,
            fail_syncs: self.fail_syncs.clone(),
            hold_syncs: self.hold_syncs.clone(),
        })
    }
}

impl Storage for FailingStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list_dir(dir)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        FsStorage.open_read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(self.wrap(FsStorage.create(path)?))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(self.wrap(FsStorage.open_write(path)?))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
}

/// The real server in this process, its log on a `FailingStorage`.
struct TestServer {
    base: String,
    storage: Arc<FailingStorage>,
    client: reqwest::Client,
    sale: String,
}

impl TestServer {
    async fn start(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        let data_dir = data_dir.to_str().unwrap();
        let mut argv = vec![
            "flashsale",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
        ];
        argv.extend_from_slice(extra_args);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("serve")
        };
        let storage = Arc::new(FailingStorage::default());
        let app = Application::build_on_storage(*args, storage.clone())
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run(std::future::pending()));
        let client = reqwest::Client::new();
        let active: serde_json::Value = client
            .get(format!("{base}/sales/active"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sale = active["id"].as_str().unwrap().to_string();
        TestServer {
            base,
            storage,
            client,
            sale,
        }
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.client.post(url).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.client.get(url).send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_turns_writes_into_503_and_reads_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]).await;
    let fail_syncs = server.storage.fail_syncs.clone();
    let sale = &server.sale;
    let ok = server
        .post(&format!("/checkout?user_id=a&id={sale}-1"))
        .await;
    assert_eq!(ok.status().as_u16(), 200);
    let cart: serde_json::Value = ok.json().await.unwrap();
    let code = cart["code"].as_str().unwrap().to_string();

    fail_syncs.store(true, Ordering::SeqCst);
    for attempt in 0..3 {
        let response = server
            .post(&format!("/checkout?user_id=b&id={sale}-2"))
            .await;
        assert_eq!(response.status().as_u16(), 503, "attempt {attempt}");
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains("injected"),
            "system text leaked: {message}"
        );
    }
    // Not even a purchase of the acknowledged cart is acknowledged now.
    let response = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!(response.status().as_u16(), 503);
    let health = server.get("/health").await;
    assert_eq!(health.status().as_u16(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["log"]["state"], "failed");
    // A short kind for operators; the system's error text is in the
    // server log, never in an answer.
    assert_eq!(health["reason"], "log_failed", "{health}");
    let failure = health["log"]["failure"].as_str().unwrap();
    assert!(!failure.contains("injected"), "{health}");

    // Healing the disk does not help: fsync is never retried.
    fail_syncs.store(false, Ordering::SeqCst);
    let response = server
        .post(&format!("/checkout?user_id=c&id={sale}-3"))
        .await;
    assert_eq!(response.status().as_u16(), 503);

    // Reads keep working.
    let response = server.get(&format!("/sales/{sale}/items?limit=3")).await;
    assert_eq!(response.status().as_u16(), 200);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("flashsale_wal_failed 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_in_flight_limit_get_429_while_the_log_is_slow() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--write-requests-in-flight-max", "3"]).await;
    let hold_syncs = server.storage.hold_syncs.clone();
    let sale = &server.sale;

    hold_syncs.store(true, Ordering::SeqCst);
    let stalled: Vec<_> = (0..3)
        .map(|n| {
            tokio::spawn(
                server
                    .client
                    .post(format!(
                        "{}/checkout?user_id=s{n}&id={sale}-{n}",
                        server.base
                    ))
                    .send(),
            )
        })
        .collect();
    // Wait until the three are admitted and waiting for the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        if metrics.contains("flashsale_write_requests_in_flight 3") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes were not admitted: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused = server
        .post(&format!("/checkout?user_id=late&id={sale}-9"))
        .await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Reads are not limited.
    let response = server.get(&format!("/sales/{sale}")).await;
    assert_eq!(response.status().as_u16(), 200);

    hold_syncs.store(false, Ordering::SeqCst);
    for request in stalled {
        assert_eq!(request.await.unwrap().unwrap().status().as_u16(), 200);
    }
    let retried = server
        .post(&format!("/checkout?user_id=late&id={sale}-9"))
        .await;
    assert_eq!(retried.status().as_u16(), 200);
}
