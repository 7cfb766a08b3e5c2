//! The HTTP endpoints, on hyper and axum (docs/operations.md "HTTP"):
//!
//! - `/metrics` (Prometheus text), `/healthz`, `/readyz`;
//! - `/`: the supervisor wallboard, a page shipped in the binary; it follows
//!   `/tenants/{tenant}/wallboard/events` (server-sent events);
//! - the interactive queries of R-RUN-5 under `/tenants` ([`routes`]).
//!
//! The state belongs to the runtime's thread, so a query travels to it over a channel and is
//! answered between two rounds: answers show committed state only. A tenant whose partition
//! another instance holds is forwarded there ([`crate::directory`]).
//!
//! Only GET and HEAD are served (anything else is 405 with `Allow`). A client has
//! [`HEAD_TIMEOUT`] to send each request head, including between requests on a kept-alive
//! connection, and [`WRITE_TIMEOUT`] to take each part of a response; heads are at most
//! 16 KiB and bodies are not read. At most [`MAX_CONNECTIONS`] connections are open: the
//! oldest idle one is closed to make room, so idle or slow clients never lock out `/healthz`.
//! The engine is never blocked by a client: it answers a query and moves on.

use axum::extract::{Path, Query as Params, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use futures_util::stream::Stream;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_processors::query::{Page, Query, MAX_PAGE};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::directory::Directory;
use crate::metrics::Metrics;

/// How long an HTTP query waits for the runtime (a round, or a restore, may be in flight).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections open at once (docs/operations.md).
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client has to send a request head (and, kept alive, to send the next one).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may leave a response part untaken before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How often the wallboard's event stream sends the figures.
pub const WALLBOARD_EVERY: Duration = Duration::from_secs(1);
/// The header a forwarded query carries: the instance that forwarded it (never forwarded
/// again).
pub const FORWARDED_BY: &str = "x-switchboard-forwarded-by";
/// The header naming the instance that answered a query.
pub const ANSWERED_BY: &str = "x-switchboard-answered-by";

const WALLBOARD_HTML: &str = include_str!("wallboard.html");

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

    /// The partition named by a "held by another instance" reply.
    fn elsewhere(&self) -> Option<i32> {
        (self.status == 503)
            .then(|| self.body.get("partition").and_then(Value::as_i64))
            .flatten()
            .map(|p| p as i32)
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

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    queries: Option<Queries>,
    directory: Option<Directory>,
    client: reqwest::Client,
}

/// Serve the endpoints on `listen` from a background thread; queries need `queries`, and
/// forwarding across instances a `directory`. Returns the bound address (port 0 picks a
/// free port).
pub fn serve(
    listen: &str,
    metrics: Metrics,
    queries: Option<Queries>,
    directory: Option<Directory>,
) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("http.listen: cannot listen on {listen}: {e}"))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| format!("http.listen: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("http.listen: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(QUERY_TIMEOUT + Duration::from_secs(1))
        .build()
        .map_err(|e| format!("http: cannot build the forwarding client: {e}"))?;
    let app = routes(Shared {
        metrics,
        queries,
        directory,
        client,
    });
    crate::spawn_async("http", async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
            return;
        };
        accept_loop(listener, app).await;
    })?;
    Ok(addr)
}

fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/", get(wallboard_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/tenants", get(tenants))
        .route(
            "/tenants/{tenant}/queues",
            tenant_query(|tenant| Query::Queues { tenant }),
        )
        .route(
            "/tenants/{tenant}/queues/{queue}",
            item_query(|tenant, queue| Query::Queue { tenant, queue }),
        )
        .route(
            "/tenants/{tenant}/agents",
            tenant_query(|tenant| Query::Agents { tenant }),
        )
        .route(
            "/tenants/{tenant}/agents/{agent}",
            item_query(|tenant, agent| Query::Agent { tenant, agent }),
        )
        .route(
            "/tenants/{tenant}/conversations/{id}",
            item_query(|tenant, reference| Query::Conversation { tenant, reference }),
        )
        .route("/tenants/{tenant}/waiting", get(waiting))
        .route(
            "/tenants/{tenant}/wallboard",
            tenant_query(|tenant| Query::Wallboard { tenant }),
        )
        .route("/tenants/{tenant}/wallboard/events", get(wallboard_events))
        .fallback(|| async {
            json_reply(Reply::error(
                404,
                "not found: see /tenants, /tenants/{tenant}/queues, /tenants/{tenant}/agents, \
                 /tenants/{tenant}/waiting, /tenants/{tenant}/conversations/{id}, /metrics",
            ))
        })
        .with_state(shared)
}

/// One open connection: whether a request is in flight, and the signal that closes it.
struct Open {
    id: u64,
    busy: Arc<AtomicBool>,
    close: Arc<tokio::sync::Notify>,
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router) {
    let open: Arc<Mutex<VecDeque<Open>>> = Arc::default();
    let mut next_id = 0u64;
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                tracing::warn!(error = %e, "http: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let busy = Arc::new(AtomicBool::new(false));
        let close = Arc::new(tokio::sync::Notify::new());
        {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            if open.len() >= MAX_CONNECTIONS {
                // The oldest idle connection makes room (else the oldest of all).
                let victim = open
                    .iter()
                    .position(|o| !o.busy.load(Ordering::Relaxed))
                    .unwrap_or(0);
                if let Some(o) = open.remove(victim) {
                    o.close.notify_one();
                }
            }
            open.push_back(Open {
                id,
                busy: busy.clone(),
                close: close.clone(),
            });
        }
        let app = app.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let busy = busy.clone();
                async move {
                    busy.store(true, Ordering::Relaxed);
                    let response = tower::ServiceExt::oneshot(app, req).await;
                    busy.store(false, Ordering::Relaxed);
                    response
                }
            });
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true);
            let io = TokioIo::new(Deadlined::new(sock));
            let conn = http1.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = close.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|o| o.id != id);
        });
    }
}

/// A socket whose writes fail when the peer takes nothing for [`WRITE_TIMEOUT`]: a client
/// that stops reading cannot hold a connection (and its task) forever.
struct Deadlined {
    sock: tokio::net::TcpStream,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadlined {
    fn new(sock: tokio::net::TcpStream) -> Deadlined {
        Deadlined {
            sock,
            stalled: None,
        }
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing for 10 s",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Deadlined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.sock).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.sock).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json_reply(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = serde_json::to_string_pretty(&reply.body).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<Shared>) -> Response {
    if s.metrics.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: joining the group or restoring state\n",
        )
    }
}

async fn wallboard_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        WALLBOARD_HTML,
    )
        .into_response()
}

impl Shared {
    /// Ask this instance's runtime; when another instance holds the tenant's partition and
    /// the query was not forwarded already, ask that instance (`path` is the request's path
    /// and query string). Returns the reply and, when forwarded, who answered.
    async fn ask(&self, query: Query, path: &str, headers: &HeaderMap) -> (Reply, Option<String>) {
        let Some(queries) = &self.queries else {
            return (Reply::error(404, "no queries on this endpoint"), None);
        };
        let reply = queries.ask(query).await;
        let (Some(partition), Some(directory)) = (reply.elsewhere(), &self.directory) else {
            return (reply, None);
        };
        if headers.contains_key(FORWARDED_BY) {
            return (reply, None);
        }
        match directory.owner(partition) {
            Some(owner) if owner != directory.url() => {
                match self.forward(&owner, path, &directory.url()).await {
                    Ok(reply) => (reply, Some(owner)),
                    Err(e) => (
                        Reply::error(
                            502,
                            format!(
                            "partition {partition} is held by {owner}, which did not answer: {e}"
                        ),
                        ),
                        None,
                    ),
                }
            }
            _ => (reply, None),
        }
    }

    async fn forward(&self, owner: &str, path: &str, me: &str) -> Result<Reply, String> {
        let response = self
            .client
            .get(format!("{owner}{path}"))
            .header(FORWARDED_BY, me)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Reply { status, body })
    }

    async fn respond(&self, query: Query, uri: &Uri, headers: &HeaderMap) -> Response {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let (reply, answered_by) = self.ask(query, path, headers).await;
        let mut response = json_reply(reply);
        if let Some(Ok(v)) = answered_by.map(|a| HeaderValue::from_str(&a)) {
            response.headers_mut().insert(ANSWERED_BY, v);
        }
        response
    }
}

async fn tenants(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let Some(queries) = &s.queries else {
        return json_reply(Reply::error(404, "no queries on this endpoint"));
    };
    let mut reply = queries.ask(Query::Tenants).await;
    // Every instance's tenants, unless this is another instance asking for ours.
    if let (200, Some(directory), false) = (
        reply.status,
        &s.directory,
        headers.contains_key(FORWARDED_BY),
    ) {
        let mut all: Vec<Value> = reply.body["tenants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut unreachable = Vec::new();
        for url in directory.others() {
            match s.forward(&url, "/tenants", &directory.url()).await {
                Ok(r) if r.status == 200 => {
                    all.extend(r.body["tenants"].as_array().cloned().unwrap_or_default())
                }
                _ => unreachable.push(url),
            }
        }
        all.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        all.dedup();
        reply.body = json!({ "tenants": all, "unreachable_instances": unreachable });
    }
    json_reply(reply)
}

/// GET of a query about one tenant: `make` builds it from the path's tenant.
fn tenant_query(make: fn(String) -> Query) -> MethodRouter<Shared> {
    get(
        move |State(s): State<Shared>, Path(tenant): Path<String>, uri: Uri, h: HeaderMap| async move {
            s.respond(make(tenant), &uri, &h).await
        },
    )
}

/// GET of a query about one thing of a tenant: `make` builds it from the path's tenant and
/// the thing's id (a queue, an agent, a conversation).
fn item_query(make: fn(String, String) -> Query) -> MethodRouter<Shared> {
    get(
        move |State(s): State<Shared>,
              Path((tenant, id)): Path<(String, String)>,
              uri: Uri,
              h: HeaderMap| async move { s.respond(make(tenant, id), &uri, &h).await },
    )
}

/// The paging parameters of `/tenants/{tenant}/waiting`.
#[derive(Deserialize)]
struct WaitingParams {
    queue: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn waiting(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    params: Result<Params<WaitingParams>, axum::extract::rejection::QueryRejection>,
    uri: Uri,
    h: HeaderMap,
) -> Response {
    let Ok(Params(p)) = params else {
        return json_reply(Reply::error(
            400,
            format!("use ?queue=<id>&offset=<n>&limit=<1..{MAX_PAGE}>"),
        ));
    };
    if p.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return json_reply(Reply::error(
            400,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let page = Page {
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(Page::default().limit),
    };
    let query = Query::Waiting {
        tenant,
        queue: p.queue,
        page,
    };
    s.respond(query, &uri, &h).await
}

/// The wallboard's figures every [`WALLBOARD_EVERY`] as server-sent events (`wallboard`
/// with the figures, `problem` with the reason when there are none), from committed state.
async fn wallboard_events(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    h: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let path = format!("/tenants/{}/wallboard", percent_encode(&tenant));
    let stream = futures_util::stream::unfold(
        (s, tenant, path, h, true),
        |(s, tenant, path, h, first)| async move {
            if !first {
                tokio::time::sleep(WALLBOARD_EVERY).await;
            }
            let (reply, _) = s
                .ask(
                    Query::Wallboard {
                        tenant: tenant.clone(),
                    },
                    &path,
                    &h,
                )
                .await;
            let data = serde_json::to_string(&reply.body).unwrap_or_else(|_| "{}".into());
            let event = match reply.status {
                200 => Event::default().event("wallboard").data(data),
                _ => Event::default().event("problem").data(data),
            };
            Some((Ok(event), (s, tenant, path, h, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Percent-encode a path segment.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .expect("write");
        let mut out = String::new();
        sock.read_to_string(&mut out).expect("read");
        out
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        request(addr, "GET", path)
    }

    /// R-RUN-4: the endpoints answer over HTTP: /healthz always, /readyz only once ready,
    /// /metrics in the Prometheus text format, the wallboard page at /.
    #[test]
    fn r_run_4_http_endpoints() {
        let m = Metrics::new();
        m.records_in.with_label_values(&["cc.inbound"]).inc_by(3);
        let addr = serve("127.0.0.1:0", m.clone(), None, None).expect("serve");
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
        let page = get(addr, "/");
        assert!(
            page.starts_with("HTTP/1.1 200") && page.contains("text/html"),
            "{page}"
        );
        assert!(
            page.contains("EventSource"),
            "the page follows the event stream"
        );
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    /// R-RUN-5: only GET and HEAD are served; a POST, PUT or DELETE gets 405 naming the
    /// allowed methods, on the probes and the queries alike.
    #[test]
    fn r_run_5_methods_other_than_get_are_405() {
        let addr = serve("127.0.0.1:0", Metrics::new(), None, None).expect("serve");
        for (method, path) in [
            ("POST", "/healthz"),
            ("DELETE", "/tenants/acme/agents/ana"),
            ("PUT", "/metrics"),
        ] {
            let answer = request(addr, method, path);
            assert!(
                answer.starts_with("HTTP/1.1 405"),
                "{method} {path}: {answer}"
            );
            assert!(
                answer.to_ascii_lowercase().contains("allow: get,head"),
                "{answer}"
            );
        }
        assert!(request(addr, "HEAD", "/healthz").starts_with("HTTP/1.1 200"));
    }

    /// Hostile input (issue 14, finding 7; issue 16 item 3): idle clients holding more
    /// connections than the cap never keep /healthz from answering; the oldest idle
    /// connection is closed instead.
    #[test]
    fn idle_connections_beyond_the_cap_do_not_block_healthz() {
        let addr = serve("127.0.0.1:0", Metrics::new(), None, None).expect("serve");
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
    }

    /// Issue 16 item 3: a kept-alive connection serves several requests; a client that sends
    /// half a request head, or goes quiet after a response, is cut off after HEAD_TIMEOUT.
    #[test]
    fn r_run_5_keep_alive_and_timeouts_for_slow_and_idle_clients() {
        let addr = serve("127.0.0.1:0", Metrics::new(), None, None).expect("serve");
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(HEAD_TIMEOUT * 3))
            .expect("timeout");
        for _ in 0..2 {
            sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut buf = [0u8; 512];
            let n = sock.read(&mut buf).expect("read");
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        // Now idle: the server closes the connection after the head timeout.
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = sock.read_to_end(&mut rest);
        assert!(read.is_ok(), "closed, not timed out on our side: {read:?}");
        let waited = started.elapsed();
        assert!(
            waited >= HEAD_TIMEOUT - Duration::from_millis(500) && waited < HEAD_TIMEOUT * 2,
            "{waited:?}"
        );
        // A slow client: half a head, then nothing.
        let mut slow = std::net::TcpStream::connect(addr).expect("connect");
        slow.set_read_timeout(Some(HEAD_TIMEOUT * 3))
            .expect("timeout");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
            .expect("write");
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer);
        assert!(
            started.elapsed() < HEAD_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    /// Issue 16 item 3: a request head over MAX_HEAD_BYTES is refused (431), never answered.
    #[test]
    fn r_run_5_oversized_request_heads_are_refused() {
        let addr = serve("127.0.0.1:0", Metrics::new(), None, None).expect("serve");
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let huge = "a".repeat(MAX_HEAD_BYTES * 2);
        let _ = sock.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
        );
        let mut out = Vec::new();
        let _ = sock.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }

    /// R-RUN-5: query paths name the tenant and the thing asked for, percent-decoded (`%23`
    /// for the `#` of a short id); a query goes to whoever holds the inbox and its reply
    /// comes back as JSON with the reply's status; with nobody answering, the client gets 503
    /// with a reason, not a hang.
    #[test]
    fn r_run_5_queries_travel_to_the_runtime_and_back() {
        let (queries, inbox) = query_channel();
        let addr = serve("127.0.0.1:0", Metrics::new(), Some(queries), None).expect("serve");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let answering = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut answered = 0;
            while answered < 4 && std::time::Instant::now() < deadline {
                for r in inbox.pending() {
                    seen.lock().expect("lock").push(r.query.clone());
                    let reply = match &r.query {
                        Query::Agent { agent, .. } if agent == "ana" => {
                            Reply::found(json!({"agent": {"id": "ana"}}))
                        }
                        Query::Waiting { .. } | Query::Conversation { .. } => {
                            Reply::found(json!({}))
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
        assert!(get(addr, "/tenants/acme%20eu/conversations/%2312").starts_with("HTTP/1.1 200"));
        assert!(get(
            addr,
            "/tenants/acme/waiting?queue=billing&offset=50&limit=10"
        )
        .starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/tenants/acme/waiting?limit=0").starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/tenants/acme/waiting?offset=x").starts_with("HTTP/1.1 400"));
        assert!(get(addr, "/tenants/acme/robots/r2").starts_with("HTTP/1.1 404"));
        let inbox = answering.join().expect("answering thread");
        assert_eq!(
            asked.lock().expect("lock")[2..],
            [
                Query::Conversation {
                    tenant: "acme eu".into(),
                    reference: "#12".into()
                },
                Query::Waiting {
                    tenant: "acme".into(),
                    queue: Some("billing".into()),
                    page: Page {
                        offset: 50,
                        limit: 10
                    }
                },
            ]
        );
        drop(inbox);
        let gone = get(addr, "/tenants/acme/agents/ana");
        assert!(gone.starts_with("HTTP/1.1 503"), "{gone}");
        assert!(gone.contains("not running"), "{gone}");
    }
}
