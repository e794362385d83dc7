//! Slow, oversized and numerous clients against the real binary, over raw
//! TCP on 127.0.0.1: what each one must not be able to do to the server.
//! The server's slow-client timeouts are shortened for the tests with the
//! test-only `FLASHSALE_TEST_SLOW_CLIENT_TIMEOUT_MS`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_flashsale");

/// A server started through `sh` (to lower its open-file limit), with its
/// stdout lines kept for the log assertions.
struct Server {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(timeout_ms: u64, open_files: Option<u32>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ulimit = open_files.map_or(String::new(), |n| format!("ulimit -n {n}; "));
        let script = format!(
            "{ulimit}exec \"$0\" serve --listen 127.0.0.1:0 --log-format json --workers 2 --data-dir \"$1\""
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, BINARY])
            .arg(dir.path())
            .env(
                "FLASHSALE_TEST_SLOW_CLIENT_TIMEOUT_MS",
                timeout_ms.to_string(),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flashsale");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if value["message"] == "serving" {
                    let _ = port_tx.send(value["port"].as_u64().unwrap() as u16);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not start");
        Server {
            child,
            port,
            lines,
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// One request on a new connection; the whole answer until EOF.
    fn exchange(&self, request: &[u8]) -> Answer {
        let mut stream = self.connect();
        let _ = stream.write_all(request);
        read_answer(&mut stream)
    }

    fn get(&self, path: &str) -> Answer {
        self.exchange(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    head: String,
    body: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the read timeout.
    closed: bool,
    elapsed: Duration,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON: {} {:?}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    Answer {
        head: String::from_utf8_lossy(&bytes[..split]).to_string(),
        body: bytes[split..].to_vec(),
        closed,
        elapsed: started.elapsed(),
    }
}

const CHECKOUT_HEAD: &[u8] =
    b"POST /checkout?user_id=a&id=x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn a_chunked_body_over_the_limit_cannot_get_a_200_or_keep_the_connection() {
    let server = Server::start(1000, None);
    let mut request = CHECKOUT_HEAD.to_vec();
    for _ in 0..64 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b'a'; 0x400]);
        request.extend_from_slice(b"\r\n");
    }
    // No last chunk: the client would go on sending.
    let answer = server.exchange(&request);
    assert_eq!(answer.status(), 413, "{}", answer.head);
    assert_eq!(answer.json()["error"], "payload_too_large");
    assert!(answer.closed, "the connection stayed open after 413");
}

#[test]
fn a_trickled_chunked_body_cannot_hold_the_connection_past_the_timeout() {
    let server = Server::start(1000, None);
    let mut stream = server.connect();
    stream.write_all(CHECKOUT_HEAD).unwrap();
    let started = Instant::now();
    // One byte every 200 ms, for longer than the 1 s timeout.
    for _ in 0..10 {
        if stream.write_all(b"1\r\na\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status(), 408, "{}", answer.head);
    assert_eq!(answer.json()["error"], "request_timeout");
    assert!(answer.closed);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_reader_that_stops_reading_cannot_hold_the_connection() {
    let server = Server::start(1000, None);
    let sale = server.get("/sales/active").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream = server.connect();
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let request = format!("GET /sales/{sale}/items?limit=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    // Pipelined requests whose answers (about 100 KB each) are never read,
    // until the server stops reading them too.
    for _ in 0..400 {
        if stream.write_all(request.as_bytes()).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.closed, "the stuck connection was not closed");
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        !metrics.contains("flashsale_http_response_write_stalls_total 0"),
        "{metrics}"
    );
}

#[test]
fn idle_connections_beyond_the_open_file_limit_cannot_lock_out_a_new_client() {
    let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = own.maximum.unwrap_or(4096).min(4096);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(wanted),
            maximum: own.maximum,
        },
    );
    // Long head timeout: only the eviction near the cap can make room.
    let server = Server::start(60_000, Some(1024));
    let mut idle = Vec::new();
    for i in 0..1100 {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", server.port)) else {
            break;
        };
        if i % 2 == 0 {
            // A keep-alive connection left idle after one answer.
            let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        idle.push(stream);
    }
    assert!(idle.len() >= 1100, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(1500));
    let answer = server.get("/health");
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert!(
        answer.elapsed < Duration::from_secs(5),
        "{:?}",
        answer.elapsed
    );
    let connections = &answer.json()["connections"];
    assert_eq!(connections["max"], 768, "{connections}");
    assert!(
        connections["evicted_total"].as_u64().unwrap() > 0,
        "{connections}"
    );
}

#[test]
fn malformed_requests_cannot_flood_the_log_with_errors() {
    let server = Server::start(1000, None);
    let bad: [&[u8]; 3] = [
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /he\x01alth HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01garbage\r\n\r\n",
    ];
    for round in 0..100 {
        let answer = server.exchange(bad[round % bad.len()]);
        // actix answers these before any service runs: 400, empty body.
        assert_eq!(answer.status(), 400, "{}", answer.head);
        assert!(answer.closed);
    }
    let mut headers = String::from("GET /health HTTP/1.1\r\nHost: t\r\n");
    for i in 0..120 {
        headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    // More than 96 headers: 431 from actix, with an empty body too.
    let answer = server.exchange(format!("{headers}\r\n").as_bytes());
    assert_eq!(answer.status(), 431);
    std::thread::sleep(Duration::from_millis(300));
    let lines = server.log_lines();
    assert!(
        lines.iter().all(|l| !l.contains("\"ERROR\"")),
        "ERROR lines in the log"
    );
    let client_lines = lines.iter().filter(|l| l.contains("client_errors")).count();
    assert!(
        client_lines <= 25,
        "{client_lines} lines for 101 bad requests"
    );
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        !metrics.contains("flashsale_http_client_errors_total 0"),
        "{metrics}"
    );
}

#[test]
fn a_huge_unknown_path_cannot_be_echoed_back_in_full() {
    let server = Server::start(1000, None);
    let path = format!("/{}", "x".repeat(60_000));
    let answer = server.get(&path);
    assert_eq!(answer.status(), 404, "{}", answer.head);
    let body = answer.json();
    assert_eq!(body["error"], "not_found");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.matches('x').count() <= 100,
        "{} chars",
        message.len()
    );
    // A long query gets the contract's JSON too, not an empty answer.
    let answer = server.get(&format!("/sales/active?q={}", "y".repeat(5000)));
    assert_eq!(answer.json()["error"], "invalid_request");
}

#[test]
fn a_wrong_method_cannot_go_without_allow_and_head_cannot_get_405() {
    let server = Server::start(1000, None);
    let sale = server.get("/sales/active").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in ["/checkout", "/purchase"] {
        let answer = server.get(path);
        assert_eq!(answer.status(), 405, "{path}");
        assert_eq!(answer.header("allow").as_deref(), Some("POST"), "{path}");
        assert_eq!(answer.json()["error"], "method_not_allowed");
    }
    let gets = [
        "/sales/active".to_string(),
        format!("/sales/{sale}"),
        format!("/sales/{sale}/items"),
        "/health".to_string(),
        "/metrics".to_string(),
    ];
    for path in &gets {
        let post = server.exchange(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(post.status(), 405, "{path}");
        assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"), "{path}");
        let head = server.exchange(
            format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(head.status(), 200, "HEAD {path}: {}", head.head);
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        assert!(head.header("content-type").is_some(), "HEAD {path}");
    }
}
