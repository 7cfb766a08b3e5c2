//! The action executor's HTTP behaviour (R-FLOW-4, docs/workflows.md) against a real HTTP
//! server on loopback, with failures injected: 500, 429 with Retry-After, a hang past the
//! timeout, connection refused, a 4xx that must not be retried, and the per-host bound.
//! (The Kafka side, a SIGKILL of the executor included, is in tests/kafka.rs.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::actions::Executor;
use switchboard::config::Actions;
use switchboard::metrics::Metrics;
use switchboard_schemas::*;

/// What the server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    url: String,
    key: Option<String>,
    content_type: Option<String>,
    custom: Option<String>,
    body: String,
    at: Instant,
}

/// A loopback HTTP server (tiny_http) answering each request with `respond(n)` (n counts
/// from 0), each on its own thread, recording what it saw and the most requests in flight.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    peak: Arc<AtomicUsize>,
}

/// How the server answers the n-th request: status, extra headers, delay before answering.
type Respond = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync;

impl Server {
    fn start(respond: Arc<Respond>) -> Server {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", server.server_addr());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (seen2, peak2) = (Arc::clone(&seen), Arc::clone(&peak));
        std::thread::spawn(move || {
            for (n, mut request) in server.incoming_requests().enumerate() {
                let header = |request: &tiny_http::Request, name: &'static str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let record = Seen {
                    method: request.method().to_string(),
                    url: request.url().to_string(),
                    key: header(&request, "Idempotency-Key"),
                    content_type: header(&request, "Content-Type"),
                    custom: header(&request, "X-Custom"),
                    body,
                    at: Instant::now(),
                };
                seen2.lock().expect("seen").push(record);
                let (status, headers, delay) = respond(n);
                let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak2));
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let mut response =
                        tiny_http::Response::from_string("ok").with_status_code(status);
                    for (name, value) in headers {
                        if let Ok(h) =
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                        {
                            response.add_header(h);
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let _ = request.respond(response);
                });
            }
        });
        Server { url, seen, peak }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

fn settings() -> Actions {
    Actions {
        timeout_ms: 1_000,
        max_attempts: 3,
        backoff_initial_ms: 20,
        backoff_max_ms: 100,
        retry_after_max_ms: 5_000,
        max_concurrent_per_host: 4,
        ..Actions::default()
    }
}

fn request(id: &str, url: &str) -> ActionRequest {
    let mut headers = Map::new();
    headers.insert("X-Custom".into(), "yes".into());
    ActionRequest {
        id: id.into(),
        tenant: "acme".into(),
        conversation_id: "cv-1".into(),
        workflow_id: "crm".into(),
        idempotency_key: format!("sb-key-{id}"),
        action: ActionKind::CallApi(CallApi {
            method: "POST".into(),
            url: url.into(),
            content_type: "application/json".into(),
            headers,
            body: "{\"short_id\": \"7\"}".into(),
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio")
}

fn answer(status: u16) -> Arc<Respond> {
    Arc::new(move |_| (status, vec![], Duration::ZERO))
}

/// R-FLOW-4: a call goes out as the request says, with the idempotency key as a header.
#[test]
fn r_flow_4_a_call_carries_its_request_and_idempotency_key() {
    let server = Server::start(answer(201));
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome =
        runtime().block_on(ex.perform(&request("a1", &format!("{}/hook?x=1", server.url))));
    assert_eq!(outcome.outcome, ActionResult::Succeeded);
    assert_eq!((outcome.status, outcome.attempts), (Some(201), 1));
    assert_eq!(outcome.idempotency_key, "sb-key-a1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.url.as_str()), ("POST", "/hook?x=1"));
    assert_eq!(s.key.as_deref(), Some("sb-key-a1"));
    assert_eq!(s.content_type.as_deref(), Some("application/json"));
    assert_eq!(s.custom.as_deref(), Some("yes"));
    assert_eq!(s.body, "{\"short_id\": \"7\"}");
}

/// R-FLOW-4: 500s are retried, every attempt with the same key, until one succeeds.
#[test]
fn r_flow_4_server_errors_are_retried_with_the_same_key() {
    let server = Server::start(Arc::new(|n| {
        (if n < 2 { 500 } else { 200 }, vec![], Duration::ZERO)
    }));
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome = runtime().block_on(ex.perform(&request("b1", &server.url)));
    assert_eq!(outcome.outcome, ActionResult::Succeeded);
    assert_eq!(outcome.attempts, 3);
    let keys: Vec<_> = server.seen().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, vec![Some("sb-key-b1".to_string()); 3]);
}

/// R-FLOW-4: after the last attempt the outcome is a failure naming the last error.
#[test]
fn r_flow_4_the_last_failure_is_reported() {
    let server = Server::start(answer(503));
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome = runtime().block_on(ex.perform(&request("c1", &server.url)));
    assert_eq!(outcome.outcome, ActionResult::Failed);
    assert_eq!((outcome.status, outcome.attempts), (Some(503), 3));
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{:?}",
        outcome.error
    );
}

/// R-FLOW-4: a 429's Retry-After is honoured before the next attempt.
#[test]
fn r_flow_4_retry_after_is_honoured() {
    let server = Server::start(Arc::new(|n| {
        if n == 0 {
            (429, vec![("Retry-After", "1".to_string())], Duration::ZERO)
        } else {
            (200, vec![], Duration::ZERO)
        }
    }));
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome = runtime().block_on(ex.perform(&request("d1", &server.url)));
    assert_eq!(
        (outcome.outcome, outcome.attempts),
        (ActionResult::Succeeded, 2)
    );
    let seen = server.seen();
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

/// R-FLOW-4: a server that hangs past the timeout is a timeout, retried, then a failure.
#[test]
fn r_flow_4_a_hang_past_the_timeout_is_retried_then_fails() {
    let server = Server::start(Arc::new(|_| (200, vec![], Duration::from_secs(3))));
    let ex = Executor::new(
        Actions {
            timeout_ms: 200,
            max_attempts: 2,
            ..settings()
        },
        Metrics::new(),
    )
    .expect("executor");
    let outcome = runtime().block_on(ex.perform(&request("e1", &server.url)));
    assert_eq!(
        (outcome.outcome, outcome.attempts),
        (ActionResult::Failed, 2)
    );
    assert_eq!(outcome.status, None);
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("timed out after 200 ms")),
        "{:?}",
        outcome.error
    );
    assert_eq!(server.seen().len(), 2);
}

/// R-FLOW-4: connection refused is retried, then reported.
#[test]
fn r_flow_4_connection_refused_is_retried_then_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome =
        runtime().block_on(ex.perform(&request("f1", &format!("http://127.0.0.1:{port}/x"))));
    assert_eq!(
        (outcome.outcome, outcome.attempts),
        (ActionResult::Failed, 3)
    );
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("connection failed")),
        "{:?}",
        outcome.error
    );
}

/// R-FLOW-4: another 4xx is not retried.
#[test]
fn r_flow_4_a_client_error_is_not_retried() {
    let server = Server::start(answer(404));
    let ex = Executor::new(settings(), Metrics::new()).expect("executor");
    let outcome = runtime().block_on(ex.perform(&request("g1", &server.url)));
    assert_eq!(
        (outcome.outcome, outcome.status, outcome.attempts),
        (ActionResult::Failed, Some(404), 1)
    );
    assert_eq!(server.seen().len(), 1);
}

/// R-FLOW-4: at most `max_concurrent_per_host` calls are in flight to one host.
#[test]
fn r_flow_4_concurrent_calls_per_host_are_bounded() {
    let server = Server::start(Arc::new(|_| (200, vec![], Duration::from_millis(100))));
    let ex = Arc::new(Executor::new(settings(), Metrics::new()).expect("executor"));
    let rt = runtime();
    let outcomes = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let ex = Arc::clone(&ex);
            let r = request(&format!("h{i}"), &server.url);
            tasks.spawn(async move { ex.perform(&r).await });
        }
        let mut out = Vec::new();
        while let Some(o) = tasks.join_next().await {
            out.push(o.expect("task"));
        }
        out
    });
    assert!(outcomes
        .iter()
        .all(|o| o.outcome == ActionResult::Succeeded));
    let peak = server.peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak in flight {peak}, bound 4");
}
