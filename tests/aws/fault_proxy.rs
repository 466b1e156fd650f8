//! A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, between the functions' SDK clients
//! and moto. It fails a configurable share of the calls of the services under test, the way
//! AWS and the network fail: throttling (HTTP 400 `ThrottlingException` in the JSON
//! protocols, 503 `SlowDown` for S3), 500, 503, responses slower than the client's attempt
//! timeout, and connections closed without a response. The choice is a seeded hash of the
//! request's sequence number, so a run's fault sequence is reproducible.
//!
//! A fault either happens before moto sees the request (the service never applied it) or,
//! for slow responses and dropped connections when `ambiguous` is set, after moto applied it
//! and only the response is lost — the case a client cannot tell from the first.
//!
//! Services are told apart by the `X-Amz-Target` header (CloudWatch Logs `Logs_20140328.*`,
//! SQS `AmazonSQS.*` (awsJson1_0), DynamoDB `DynamoDB_20120810.*`); requests without one are
//! S3 (REST-XML). Tests point only the functions' clients at the proxy; their own setup and
//! read-back use moto directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The AWS services the proxy recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    CloudWatchLogs,
    Sqs,
    DynamoDb,
    S3,
}

/// How a call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// 400 ThrottlingException (JSON protocols) / 503 SlowDown (S3).
    Throttle,
    /// 500 InternalFailure / InternalError.
    Internal,
    /// 503 ServiceUnavailable.
    Unavailable,
    /// No response until after the client's attempt timeout; then the connection is closed.
    Slow,
    /// The connection is closed without a response.
    Drop,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Throttle,
        Fault::Internal,
        Fault::Unavailable,
        Fault::Slow,
        Fault::Drop,
    ];
}

/// What to fail, how often, and how.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seed: u64,
    /// Share of calls of `services` that fail, 0.0–1.0.
    pub rate: f64,
    pub services: Vec<Service>,
    /// The kinds of failure, equally likely.
    pub kinds: Vec<Fault>,
    /// How long a slow response is held (longer than the client's attempt timeout).
    pub slow_for: Duration,
    /// `slow_for` for these services (their clients' attempt timeouts differ).
    pub slow_for_service: BTreeMap<Service, Duration>,
    /// Slow and dropped calls reach moto first (applied, response lost), for these services.
    pub ambiguous: Vec<Service>,
}

/// What the proxy saw, per service and operation.
#[derive(Debug, Default, Clone)]
pub struct OperationStats {
    /// Requests received (each SDK attempt is one).
    pub requests: u64,
    /// Requests answered by moto and passed back.
    pub forwarded: u64,
    pub faults: BTreeMap<Fault, u64>,
    /// Requests passed to moto, not faulted, whose client gave up before moto answered: moto
    /// may have applied them, and the client's retry applies them again — what a slow
    /// service does to a client whose attempt timeout is too short.
    pub unanswered: u64,
    /// The longest moto took to answer a request passed on.
    pub slowest: Duration,
}

impl OperationStats {
    pub fn faulted(&self) -> u64 {
        self.faults.values().sum()
    }
}

type Stats = BTreeMap<(Service, String), OperationStats>;

struct Shared {
    upstream: SocketAddr,
    plan: Mutex<FaultPlan>,
    sequence: AtomicU64,
    stats: Mutex<Stats>,
}

/// A running proxy; it stops when dropped (its accept loop is aborted).
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:<port>`) on a free loopback port.
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        let address = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/');
        let upstream: SocketAddr = address.parse().expect("upstream is ip:port");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::new(plan),
            sequence: AtomicU64::new(0),
            stats: Mutex::new(Stats::new()),
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { handle(&shared, request).await }
                    });
                    // A connection closed on purpose (a dropped-connection fault) ends here.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint,
            shared,
            task,
        }
    }

    pub fn stats(&self) -> BTreeMap<(Service, String), OperationStats> {
        self.shared.stats.lock().unwrap().clone()
    }
}

/// Why the proxy closes a connection without answering.
#[derive(Debug)]
struct Closed(&'static str);

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Closed {}

async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Closed> {
    let (service, operation) = classify(&request);
    let n = shared.sequence.fetch_add(1, Ordering::Relaxed);
    let plan = shared.plan.lock().unwrap().clone();
    let fault = choose(&plan, service, n);
    record(shared, service, &operation, |s| {
        s.requests += 1;
        if let Some(f) = fault {
            *s.faults.entry(f).or_default() += 1;
        }
    });
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Closed("client went away while sending")),
    };
    let lost_after_applying = plan.ambiguous.contains(&service);
    match fault {
        None => {}
        Some(Fault::Slow) => {
            if lost_after_applying {
                let _ = forward(shared.upstream, parts, body).await;
            }
            let slow_for = plan.slow_for_service.get(&service);
            tokio::time::sleep(*slow_for.unwrap_or(&plan.slow_for)).await;
            return Err(Closed("slow response"));
        }
        Some(Fault::Drop) => {
            if lost_after_applying {
                let _ = forward(shared.upstream, parts, body).await;
            }
            return Err(Closed("dropped connection"));
        }
        Some(kind) => return Ok(error_response(service, kind)),
    }
    // Dropped with this handler when the client closes the connection first.
    let mut waiting = Unanswered {
        shared,
        service,
        operation: &operation,
        answered: false,
    };
    let sent = std::time::Instant::now();
    let forwarded = forward(shared.upstream, parts, body).await;
    waiting.answered = true;
    let took = sent.elapsed();
    record(shared, service, &operation, |s| {
        s.slowest = s.slowest.max(took)
    });
    match forwarded {
        Ok(response) => {
            record(shared, service, &operation, |s| s.forwarded += 1);
            Ok(response)
        }
        Err(e) => Ok(plain(StatusCode::BAD_GATEWAY, format!("upstream: {e}"))),
    }
}

/// Counts a request passed to moto whose handler is dropped before moto answered (hyper drops
/// it when the client closes the connection).
struct Unanswered<'a> {
    shared: &'a Shared,
    service: Service,
    operation: &'a str,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            record(self.shared, self.service, self.operation, |s| {
                s.unanswered += 1;
            });
        }
    }
}

fn record(shared: &Shared, service: Service, operation: &str, f: impl FnOnce(&mut OperationStats)) {
    let mut stats = shared.stats.lock().unwrap();
    f(stats.entry((service, operation.to_owned())).or_default());
}

/// The service and operation of a request.
fn classify<B>(request: &Request<B>) -> (Service, String) {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    match target {
        Some(t) => {
            let (prefix, operation) = t.split_once('.').unwrap_or((t, t));
            let service = if prefix.starts_with("Logs_") {
                Service::CloudWatchLogs
            } else if prefix.starts_with("AmazonSQS") {
                Service::Sqs
            } else if prefix.starts_with("DynamoDB_") {
                Service::DynamoDb
            } else {
                Service::S3
            };
            (service, operation.to_owned())
        }
        None => {
            let path = request.uri().path().trim_start_matches('/');
            let has_key = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
            let operation = match (request.method().as_str(), has_key) {
                ("GET", true) => "GetObject".to_owned(),
                ("PUT", true) => "PutObject".to_owned(),
                (method, _) => format!("{method} bucket"),
            };
            (Service::S3, operation)
        }
    }
}

/// The fault for request `n`, if any: a seeded hash decides whether and which.
fn choose(plan: &FaultPlan, service: Service, n: u64) -> Option<Fault> {
    if plan.kinds.is_empty() || !plan.services.contains(&service) {
        return None;
    }
    let roll = mix(plan.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let unit = (roll >> 11) as f64 / (1u64 << 53) as f64;
    if unit >= plan.rate {
        return None;
    }
    let which = mix(roll) % plan.kinds.len() as u64;
    Some(plan.kinds[which as usize])
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The error each service returns for a fault, in its protocol.
fn error_response(service: Service, fault: Fault) -> Response<Full<Bytes>> {
    if service == Service::S3 {
        let (status, code, message) = match fault {
            Fault::Throttle => (503, "SlowDown", "Please reduce your request rate."),
            Fault::Internal => (500, "InternalError", "We encountered an internal error."),
            _ => (
                503,
                "ServiceUnavailable",
                "Service is unable to handle request.",
            ),
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
        );
        return respond(status, "application/xml", body);
    }
    let json_type = match service {
        Service::CloudWatchLogs => "application/x-amz-json-1.1",
        _ => "application/x-amz-json-1.0",
    };
    let (status, code, message) = match fault {
        Fault::Throttle => (400, "ThrottlingException", "Rate exceeded"),
        Fault::Internal => (500, "InternalFailure", "internal failure"),
        _ => (503, "ServiceUnavailable", "service unavailable"),
    };
    let body = serde_json::json!({"__type": code, "message": message}).to_string();
    let mut response = respond(status, json_type, body);
    if service == Service::Sqs {
        // SQS's JSON protocol also names the legacy query error code in this header.
        let query = format!(
            "{code};{}",
            if status < 500 { "Sender" } else { "Receiver" }
        );
        response
            .headers_mut()
            .insert("x-amzn-query-error", HeaderValue::from_str(&query).unwrap());
    }
    response
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("fault-injected"),
    );
    response
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

/// Sends the request to moto on a fresh connection and returns its whole response.
async fn forward(
    upstream: SocketAddr,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.remove(CONNECTION);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.remove(CONNECTION);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Response::from_parts(parts, Full::new(body)))
}
