//! One keep-alive HTTP/1.1 connection, hand-written over a `TcpStream`.
//!
//! Why not hyper: the generator shares two cores with the server it measures,
//! so every microsecond it spends is taken from the server. A hyper client
//! request builds a `Request` (a parsed `Uri`, a `HeaderMap`), hops through a
//! channel to the connection task and back, and hands the body over as frames
//! to collect. Here a request is one `write_all` of bytes assembled in a reused
//! buffer, and the answer is parsed in place by `httparse` from another reused
//! buffer: no allocation, no second task, no channel per request. The price is
//! that only what our servers speak is supported: `Content-Length` or chunked
//! bodies, no pipelining, no upgrades.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Largest response accepted (headers and body). A listing page of 1,000 items
/// is about 150 KB; anything far beyond is a broken server.
const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Headers parsed per response; our servers send fewer than ten.
const RESPONSE_HEADERS_MAX: usize = 32;
/// Initial capacity of the reused buffers, enough for every answer but listings.
const BUFFER_BYTES_INITIAL: usize = 4096;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The two methods the flashsale API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// An answer, borrowed from the connection's buffer until the next request.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// A lazily (re)connected keep-alive connection with its reused buffers.
pub struct Connection {
    target: Target,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    buffer: Vec<u8>,
    /// Decoded body of a chunked answer (unused for `Content-Length` answers).
    body_decoded: Vec<u8>,
    timeout: Duration,
    /// `\r\nAuthorization: Bearer TOKEN` for the next requests, or empty.
    authorization: Vec<u8>,
    /// How many TCP connections this `Connection` has opened, for the report.
    pub connects_count: u64,
}

/// Why an exchange failed: before any byte of the answer (retryable on a
/// reused connection), or later (timeouts included: never retried).
enum Failure {
    BeforeAnswer(anyhow::Error),
    Other(anyhow::Error),
}

/// Where the body of a parsed response lies in the buffer.
enum BodyFraming {
    Length { start: usize, length: usize },
    Chunked { start: usize },
}

impl Connection {
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            stream: None,
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(BUFFER_BYTES_INITIAL),
            body_decoded: Vec::new(),
            timeout,
            authorization: Vec::new(),
            connects_count: 0,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with the next requests (`None`:
    /// no such header).
    pub fn set_bearer(&mut self, token: Option<&str>) {
        self.authorization.clear();
        if let Some(token) = token {
            self.authorization
                .extend_from_slice(b"\r\nAuthorization: Bearer ");
            self.authorization.extend_from_slice(token.as_bytes());
        }
    }

    /// Sends one request and reads its answer, within the connection's
    /// timeout. On any error the connection is dropped, so the next request
    /// starts on a fresh one instead of reading a stale answer.
    ///
    /// A kept-alive connection the server closed while it was idle fails
    /// before a single byte of answer arrives; then the request is sent once
    /// more on a fresh connection. That is safe: the server never saw it, and
    /// checkout and purchase are idempotent by the SPEC anyway.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
    ) -> anyhow::Result<Response<'_>> {
        let reused = self.stream.is_some();
        let mut outcome = self.exchange_within_timeout(method, path_and_query).await;
        if let Err(Failure::BeforeAnswer(_)) = &outcome {
            if reused {
                outcome = self.exchange_within_timeout(method, path_and_query).await;
            }
        }
        let (status, range, keep_alive) = match outcome {
            Ok(parts) => parts,
            Err(Failure::BeforeAnswer(error) | Failure::Other(error)) => return Err(error),
        };
        if !keep_alive {
            self.stream = None;
        }
        let body = match range {
            Some((start, end)) => &self.buffer[start..end],
            None => &self.body_decoded[..],
        };
        Ok(Response { status, body })
    }

    async fn exchange_within_timeout(
        &mut self,
        method: Method,
        path_and_query: &str,
    ) -> Result<(u16, Option<(usize, usize)>, bool), Failure> {
        let outcome =
            tokio::time::timeout(self.timeout, self.exchange(method, path_and_query)).await;
        let failure = match outcome {
            Ok(Ok(parts)) => return Ok(parts),
            Ok(Err(error)) if self.buffer.is_empty() => Failure::BeforeAnswer(error),
            Ok(Err(error)) => Failure::Other(error),
            Err(_elapsed) => Failure::Other(anyhow::anyhow!(
                "timeout after {} ms",
                self.timeout.as_millis()
            )),
        };
        self.stream = None;
        Err(failure)
    }

    /// Writes the request and reads the answer. Returns the status, the body
    /// range in `buffer` (or `None` when the body was decoded into
    /// `body_decoded`), and whether the connection may be reused.
    async fn exchange(
        &mut self,
        method: Method,
        path_and_query: &str,
    ) -> anyhow::Result<(u16, Option<(usize, usize)>, bool)> {
        self.encode_request(method, path_and_query);
        self.buffer.clear();
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.target.address)
                .await
                .with_context(|| format!("connect to {}", self.target.address))?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            self.stream = Some(stream);
            self.connects_count += 1;
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no stream after connect");
        };
        stream
            .write_all(&self.request)
            .await
            .context("write request")?;
        self.buffer.clear();
        let (status, framing, keep_alive) = loop {
            read_some(stream, &mut self.buffer).await?;
            if let Some(parsed) = parse_head(&self.buffer)? {
                break parsed;
            }
        };
        let range = match framing {
            BodyFraming::Length { start, length } => {
                let end = start.checked_add(length).context("body length overflows")?;
                if end > RESPONSE_BYTES_MAX {
                    bail!("response of {end} bytes is over the {RESPONSE_BYTES_MAX} limit");
                }
                while self.buffer.len() < end {
                    read_some(stream, &mut self.buffer).await?;
                }
                if self.buffer.len() > end {
                    bail!("server sent bytes after the response: not HTTP/1.1 without pipelining");
                }
                Some((start, end))
            }
            BodyFraming::Chunked { start } => {
                loop {
                    if decode_chunked(&self.buffer[start..], &mut self.body_decoded)?.is_some() {
                        break;
                    }
                    read_some(stream, &mut self.buffer).await?;
                }
                None
            }
        };
        Ok((status, range, keep_alive))
    }

    fn encode_request(&mut self, method: Method, path_and_query: &str) {
        let request = &mut self.request;
        request.clear();
        request.extend_from_slice(match method {
            Method::Get => b"GET ",
            Method::Post => b"POST ",
        });
        request.extend_from_slice(path_and_query.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(self.target.host_header.as_bytes());
        request.extend_from_slice(&self.authorization);
        if method == Method::Post {
            request.extend_from_slice(b"\r\nContent-Length: 0");
        }
        request.extend_from_slice(b"\r\n\r\n");
    }
}

/// Reads more bytes into `buffer`, failing on end of stream or on the size limit.
async fn read_some(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
    if buffer.len() >= RESPONSE_BYTES_MAX {
        bail!("response is over the {RESPONSE_BYTES_MAX} byte limit");
    }
    buffer.reserve(READ_CHUNK_BYTES);
    let read_bytes = stream.read_buf(buffer).await.context("read response")?;
    if read_bytes == 0 {
        bail!("server closed the connection mid-response");
    }
    Ok(())
}

/// Parses the status line and headers, if complete: status, body framing and
/// whether the server lets the connection live on.
fn parse_head(data: &[u8]) -> anyhow::Result<Option<(u16, BodyFraming, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let start = match response.parse(data).context("malformed response head")? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(length) => length,
    };
    let status = response.code.context("response without status")?;
    let mut keep_alive = response.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).context("content-length not text")?;
            length = Some(text.trim().parse::<usize>().context("bad content-length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header.value.eq_ignore_ascii_case(b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let framing = match (chunked, length) {
        (true, _) => BodyFraming::Chunked { start },
        (false, Some(length)) => BodyFraming::Length { start, length },
        // 204 and 304 have no body; everything else must say how long it is.
        (false, None) if status == 204 || status == 304 => BodyFraming::Length { start, length: 0 },
        (false, None) => bail!("response {status} without Content-Length or chunked encoding"),
    };
    Ok(Some((status, framing, keep_alive)))
}

/// Decodes a chunked body into `out` if all of it has arrived; returns the
/// number of bytes consumed, or `None` if more are needed. Trailers are not
/// supported (our servers send none).
fn decode_chunked(data: &[u8], out: &mut Vec<u8>) -> anyhow::Result<Option<usize>> {
    out.clear();
    let mut position = 0;
    // Each pass consumes one chunk; a chunk is at least 5 bytes, so this bounds the loop.
    for _ in 0..=RESPONSE_BYTES_MAX / 5 {
        let rest = &data[position..];
        let Some(line_end) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).context("chunk size not text")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        if out.len() + size > RESPONSE_BYTES_MAX {
            bail!("chunked body over the {RESPONSE_BYTES_MAX} byte limit");
        }
        let chunk_start = line_end + 2;
        let chunk_end = chunk_start + size;
        if rest.len() < chunk_end + 2 {
            return Ok(None);
        }
        if &rest[chunk_end..chunk_end + 2] != b"\r\n" {
            bail!("chunk not followed by CRLF");
        }
        out.extend_from_slice(&rest[chunk_start..chunk_end]);
        position += chunk_end + 2;
        if size == 0 {
            return Ok(Some(position));
        }
    }
    bail!("too many chunks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_content_length_is_parsed() {
        let data = b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}";
        let (status, framing, keep_alive) = parse_head(data).expect("valid").expect("complete");
        assert_eq!(status, 409);
        assert!(keep_alive);
        assert!(matches!(
            framing,
            BodyFraming::Length {
                start: 44,
                length: 2
            }
        ));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
            .expect("valid")
            .is_none());
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let (_, _, keep_alive) = parse_head(close).expect("valid").expect("complete");
        assert!(!keep_alive);
    }

    #[test]
    fn chunked_body_is_decoded_only_when_complete() {
        let mut out = Vec::new();
        let data = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n";
        assert_eq!(
            decode_chunked(data, &mut out).expect("valid"),
            Some(data.len())
        );
        assert_eq!(out, b"Wikipedia");
        assert_eq!(
            decode_chunked(&data[..data.len() - 2], &mut out).expect("valid"),
            None
        );
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
    }

    /// A server that answers one request per connection and then closes it,
    /// like a server closing idle keep-alive connections.
    async fn one_answer_per_connection_server() -> anyhow::Result<Target> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
                let _ = stream.write_all(answer).await;
            }
        });
        Ok(Target {
            address,
            host_header: address.to_string(),
        })
    }

    #[tokio::test]
    async fn request_on_a_connection_the_server_closed_is_sent_again() -> anyhow::Result<()> {
        let target = one_answer_per_connection_server().await?;
        let mut connection = Connection::new(target, Duration::from_secs(5));
        for _ in 0..3 {
            let response = connection
                .send(Method::Post, "/checkout?user_id=u&id=1-1")
                .await?;
            assert_eq!(response.status, 200);
            assert_eq!(response.body, b"{\"a\":1}");
            // Let the server's close reach us, as an idle close would.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            connection.connects_count, 3,
            "one fresh connection per request"
        );
        Ok(())
    }
}
