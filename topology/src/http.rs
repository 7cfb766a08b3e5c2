//! The HTTP endpoints: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and the
//! interactive queries of R-RUN-5:
//!
//! - `GET /tenants/{tenant}/conversations/{id}`: a conversation (`{id}` may be `%23<short id>`);
//! - `GET /tenants/{tenant}/queues/{queue}`: a queue's waiting list and agents;
//! - `GET /tenants/{tenant}/agents/{agent}`: an agent's status and load.
//!
//! The state belongs to the runtime's thread, so a query travels to it over a channel and is
//! answered between two rounds: answers show committed state only. A tenant whose partition
//! is assigned to another instance gets 503 with the partition named; the runtime does not
//! know which instance holds it (documented in docs/operations.md).

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use switchboard_processors::query::Query;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// How long an HTTP query waits for the runtime (a round, or a restore, may be in flight).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections open at once that have not yet sent their request (docs/operations.md).
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client has to send its request head, and to take the response.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections still reading their request, oldest first, each with the signal that closes
/// it.
#[derive(Default)]
struct Reading {
    next_id: u64,
    open: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// An answer to a query: an HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn found(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    pub fn error(status: u16, reason: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "error": reason.into() }),
        }
    }
}

/// A query waiting for the runtime, with where its answer goes.
pub struct Request {
    pub query: Query,
    reply: oneshot::Sender<Reply>,
}

impl Request {
    pub fn answer(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }
}

/// The HTTP side of the query channel.
#[derive(Clone)]
pub struct Queries(mpsc::Sender<Request>);

/// The runtime's side of the query channel.
pub struct QueryInbox(mpsc::Receiver<Request>);

impl QueryInbox {
    /// The queries that have arrived, without waiting.
    pub fn pending(&self) -> impl Iterator<Item = Request> + '_ {
        self.0.try_iter()
    }
}

pub fn query_channel() -> (Queries, QueryInbox) {
    let (tx, rx) = mpsc::channel();
    (Queries(tx), QueryInbox(rx))
}

impl Queries {
    async fn ask(&self, query: Query) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Request { query, reply: tx }).is_err() {
            return Reply::error(503, "the engine is not running");
        }
        match tokio::time::timeout(QUERY_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Reply::error(503, "the engine stopped before answering"),
            Err(_) => Reply::error(
                503,
                "the engine did not answer within 5 s (joining the group or restoring state)",
            ),
        }
    }
}

/// Serve the endpoints on `listen` from a background thread; queries need `queries`.
/// Returns the bound address (port 0 picks a free port).
pub fn serve(
    listen: &str,
    metrics: Metrics,
    queries: Option<Queries>,
) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("http.listen: cannot listen on {listen}: {e}"))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| format!("http.listen: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("http.listen: {e}"))?;
    crate::spawn_async("http", async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
            return;
        };
        let reading = Arc::new(Mutex::new(Reading::default()));
        loop {
            let mut sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %e, "http: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // At the cap, the connection that has waited longest without sending its request
            // is closed to make room: idle or slow clients can never lock out /healthz.
            let close = Arc::new(tokio::sync::Notify::new());
            let id = {
                let mut r = reading.lock().unwrap_or_else(|p| p.into_inner());
                if r.open.len() >= MAX_CONNECTIONS {
                    if let Some((_, oldest)) = r.open.pop_front() {
                        oldest.notify_one();
                    }
                }
                r.next_id += 1;
                let id = r.next_id;
                r.open.push_back((id, close.clone()));
                id
            };
            let metrics = metrics.clone();
            let queries = queries.clone();
            let reading = reading.clone();
            tokio::spawn(async move {
                // Read the request head (the request line is all that is used), within
                // HEAD_TIMEOUT and unless evicted.
                let mut buf = Vec::with_capacity(1024);
                let head = async {
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    true
                };
                let complete = tokio::select! {
                    complete = tokio::time::timeout(HEAD_TIMEOUT, head) => complete.unwrap_or(false),
                    _ = close.notified() => false,
                };
                reading
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .open
                    .retain(|(other, _)| *other != id);
                if !complete {
                    return;
                }
                let request = String::from_utf8_lossy(&buf);
                let target = request.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or(target);
                let (status, ctype, body) = match parse_query(path) {
                    None => respond(path, &metrics),
                    Some(parsed) => {
                        let reply = match (parsed, &queries) {
                            (Err(reply), _) => reply,
                            (Ok(_), None) => Reply::error(404, "no queries on this endpoint"),
                            (Ok(query), Some(q)) => q.ask(query).await,
                        };
                        let mut body = serde_json::to_string_pretty(&reply.body)
                            .unwrap_or_else(|_| "{}".into());
                        body.push('\n');
                        (status_line(reply.status), "application/json", body)
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let write = async {
                    sock.write_all(head.as_bytes()).await?;
                    sock.write_all(body.as_bytes()).await?;
                    sock.shutdown().await
                };
                let _ = tokio::time::timeout(HEAD_TIMEOUT, write).await;
            });
        }
    })?;
    Ok(addr)
}

fn status_line(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        400 => "400 Bad Request",
        404 => "404 Not Found",
        _ => "503 Service Unavailable",
    }
}

fn respond(path: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => ("200 OK", TEXT, "ready\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            TEXT,
            "not ready: joining the group or restoring state\n".into(),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

/// A query path (`/tenants/...`): the query, or the reply that rejects it; `None` for every
/// other path.
pub fn parse_query(path: &str) -> Option<Result<Query, Reply>> {
    let rest = path.strip_prefix("/tenants/")?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let decoded: Option<Vec<String>> = segments.iter().map(|s| percent_decode(s)).collect();
    let Some(parts) = decoded else {
        return Some(Err(Reply::error(
            400,
            "a path segment is not valid UTF-8 percent-encoding",
        )));
    };
    let usage = "use /tenants/{tenant}/conversations/{id}, /tenants/{tenant}/queues/{queue} or /tenants/{tenant}/agents/{agent}";
    Some(match parts.as_slice() {
        [tenant, kind, name] if !tenant.is_empty() && !name.is_empty() => {
            let (tenant, name) = (tenant.clone(), name.clone());
            match kind.as_str() {
                "conversations" => Ok(Query::Conversation {
                    tenant,
                    reference: name,
                }),
                "queues" => Ok(Query::Queue {
                    tenant,
                    queue: name,
                }),
                "agents" => Ok(Query::Agent {
                    tenant,
                    agent: name,
                }),
                _ => Err(Reply::error(404, usage)),
            }
        }
        _ => Err(Reply::error(404, usage)),
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        let mut out = String::new();
        sock.read_to_string(&mut out).expect("read");
        out
    }

    /// R-RUN-4: the endpoints answer over HTTP: /healthz always, /readyz only once ready,
    /// /metrics in the Prometheus text format.
    #[test]
    fn r_run_4_http_endpoints() {
        let m = Metrics::new();
        m.records_in.with_label_values(&["cc.inbound"]).inc_by(3);
        let addr = serve("127.0.0.1:0", m.clone(), None).expect("serve");
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 503"));
        m.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("switchboard_records_in_total{topic=\"cc.inbound\"} 3"),
            "{metrics}"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    /// Hostile input (issue 14, finding 7): idle clients holding more connections than the
    /// cap never keep /healthz from answering; the oldest idle connection is closed instead.
    #[test]
    fn idle_connections_beyond_the_cap_do_not_block_healthz() {
        use std::io::Read;
        let addr = serve("127.0.0.1:0", Metrics::new(), None).expect("serve");
        let mut idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS + 40)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let started = std::time::Instant::now();
        let answer = get(addr, "/healthz");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            started.elapsed() < HEAD_TIMEOUT,
            "/healthz waited {:?}",
            started.elapsed()
        );
        // The first idle connection was evicted: the server closed it without a response.
        let first = &mut idle[0];
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = Vec::new();
        let read = first.read_to_end(&mut buf);
        assert!(
            matches!(read, Ok(0)),
            "the oldest idle connection stayed open: {read:?}"
        );
        assert!(buf.is_empty());
    }

    /// R-RUN-5: query paths name the tenant and the thing asked for, percent-decoded (`%23`
    /// for the `#` of a short id); anything else under /tenants is rejected with the usage.
    #[test]
    fn r_run_5_query_paths() {
        let conv = parse_query("/tenants/acme%20eu/conversations/%2312");
        assert_eq!(
            conv,
            Some(Ok(Query::Conversation {
                tenant: "acme eu".into(),
                reference: "#12".into()
            }))
        );
        assert_eq!(
            parse_query("/tenants/acme/queues/billing/"),
            Some(Ok(Query::Queue {
                tenant: "acme".into(),
                queue: "billing".into()
            }))
        );
        assert_eq!(
            parse_query("/tenants/acme/agents/ana"),
            Some(Ok(Query::Agent {
                tenant: "acme".into(),
                agent: "ana".into()
            }))
        );
        assert_eq!(parse_query("/metrics"), None);
        for bad in [
            "/tenants/acme",
            "/tenants/acme/robots/r2",
            "/tenants//agents/ana",
        ] {
            match parse_query(bad) {
                Some(Err(r)) => assert_eq!(r.status, 404, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        match parse_query("/tenants/acme/agents/%ff") {
            Some(Err(r)) => assert_eq!(r.status, 400),
            other => panic!("{other:?}"),
        }
    }

    /// R-RUN-5: a query goes to whoever holds the inbox and its reply comes back as JSON with
    /// the reply's status; with nobody answering, the client gets 503 with a reason, not a hang.
    #[test]
    fn r_run_5_queries_travel_to_the_runtime_and_back() {
        let (queries, inbox) = query_channel();
        let addr = serve("127.0.0.1:0", Metrics::new(), Some(queries)).expect("serve");
        let answering = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut answered = 0;
            while answered < 2 && std::time::Instant::now() < deadline {
                for r in inbox.pending() {
                    let reply = match &r.query {
                        Query::Agent { agent, .. } if agent == "ana" => {
                            Reply::found(json!({"agent": {"id": "ana"}}))
                        }
                        _ => Reply::error(404, "no agent \"zed\""),
                    };
                    r.answer(reply);
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            inbox
        });
        let ok = get(addr, "/tenants/acme/agents/ana");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains("application/json") && ok.contains("\"id\": \"ana\""),
            "{ok}"
        );
        let missing = get(addr, "/tenants/acme/agents/zed");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(missing.contains("no agent"), "{missing}");
        let inbox = answering.join().expect("answering thread");
        drop(inbox);
        let gone = get(addr, "/tenants/acme/agents/ana");
        assert!(gone.starts_with("HTTP/1.1 503"), "{gone}");
        assert!(gone.contains("not running"), "{gone}");
    }
}
