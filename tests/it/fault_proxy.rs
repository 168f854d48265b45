//! A fault-injecting HTTP proxy on 127.0.0.1 for the storage fault tests: it
//! sits in front of the S3 server (moto) as the job's endpoint, forwards each
//! request on its own upstream connection, and breaks the requests its rules
//! match: a 5xx answer, a reset connection, a lost response (the request is
//! carried out, the answer never arrives), a torn upload (half the body, then
//! the connection dies) or a slow answer. Each rule fires a set number of times.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status, without forwarding.
    Status(u16),
    /// Close the connection without forwarding or answering.
    Reset,
    /// Forward, then close the connection instead of relaying the answer.
    LoseResponse,
    /// Forward half the body, then close both connections.
    TornUpload,
    /// Forward after this delay.
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    /// A substring of the request target (path and query).
    pub target: &'static str,
    pub fault: Fault,
    /// Times left to fire.
    pub times: usize,
}

impl Rule {
    pub fn new(method: &'static str, target: &'static str, fault: Fault, times: usize) -> Rule {
        Rule { method, target, fault, times }
    }
}

/// One request seen: method, target, and the fault injected (if any).
pub type Seen = (String, String, Option<Fault>);

pub struct FaultProxy {
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The proxy's own runtime (the tests block theirs on the job's process).
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) with `rules`.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let rules = Arc::new(Mutex::new(rules));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (rules_, seen_) = (Arc::clone(&rules), Arc::clone(&seen));
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, rules, seen) = (upstream.clone(), Arc::clone(&rules_), Arc::clone(&seen_));
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &rules, &seen).await;
                });
            }
        });
        FaultProxy { endpoint, rules, seen, runtime: Some(runtime) }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests had a fault injected.
    pub fn injected(&self) -> usize {
        self.seen().iter().filter(|(_, _, fault)| fault.is_some()).count()
    }

    /// Rules that have not fired as often as they were set to.
    pub fn unfired(&self) -> Vec<Rule> {
        self.rules.lock().unwrap().iter().filter(|r| r.times > 0 && r.times < usize::MAX / 2).cloned().collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropped inside the test's runtime, which may not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Request {
    method: String,
    target: String,
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Reads one request (head and body) from `client`; `None` at the end of the connection.
async fn read_request(client: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 16384];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut words = head_text.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
    let header = |name: &str| {
        head_text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    };
    assert!(header("transfer-encoding").is_none(), "the proxy reads Content-Length bodies only: {head_text}");
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 65536];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    // Every upstream connection carries one request.
    let mut lines: Vec<&str> =
        head_text.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes();
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Ok(Some(Request { method, target, head, body }))
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut client, &mut buffer).await? {
        let fault = {
            let mut rules = rules.lock().unwrap();
            let rule = rules
                .iter_mut()
                .find(|r| r.times > 0 && r.method == request.method && request.target.contains(r.target));
            rule.map(|r| {
                r.times -= 1;
                r.fault
            })
        };
        seen.lock().unwrap().push((request.method.clone(), request.target.clone(), fault));
        match fault {
            Some(Fault::Status(code)) => {
                let answer =
                    format!("HTTP/1.1 {code} Injected Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                client.write_all(answer.as_bytes()).await?;
                return Ok(());
            }
            Some(Fault::Reset) => return Ok(()),
            Some(Fault::TornUpload) => {
                let mut up = TcpStream::connect(upstream).await?;
                up.write_all(&request.head).await?;
                up.write_all(&request.body[..request.body.len() / 2]).await?;
                return Ok(());
            }
            Some(Fault::LoseResponse) => {
                forward(upstream, &request).await?;
                return Ok(());
            }
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            None => {}
        }
        let answer = forward(upstream, &request).await?;
        client.write_all(&answer).await?;
    }
    Ok(())
}

/// Sends `request` upstream on a new connection; the whole answer.
async fn forward(upstream: &str, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&request.head).await?;
    up.write_all(&request.body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    Ok(answer)
}
