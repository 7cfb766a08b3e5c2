//! The action executor's throughput (issue #15's target: at least 5,000 requests/s on this
//! machine) against a loopback HTTP server that answers at once, beside the baseline a
//! competent user would write: the same HTTP client posting the same requests with the same
//! concurrency, and nothing else (no retry policy, no per-host bound, no metrics, no outcome).
//!
//! Run: `cargo bench --bench actions` (`SWITCHBOARD_ACTIONS_BENCH_REQUESTS`, default 20,000).

use std::sync::Arc;
use std::time::Instant;
use switchboard::actions::Executor;
use switchboard::config::Actions;
use switchboard::metrics::Metrics;
use switchboard_schemas::*;

const RUNS: usize = 3;
const CONCURRENCY: usize = 32;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A loopback server answering 200 at once, on a few threads.
fn server() -> String {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
    let url = format!("http://{}/hook", server.server_addr());
    for _ in 0..4 {
        let server = Arc::clone(&server);
        std::thread::spawn(move || {
            while let Ok(request) = server.recv() {
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
    }
    url
}

fn requests(n: usize, url: &str) -> Vec<ActionRequest> {
    (0..n)
        .map(|i| ActionRequest {
            id: format!("r{i}"),
            tenant: "acme".into(),
            conversation_id: format!("cv-{i}"),
            workflow_id: "crm".into(),
            idempotency_key: format!("sb-{i:016x}"),
            action: ActionKind::CallApi(CallApi {
                method: "POST".into(),
                url: url.into(),
                content_type: "application/json".into(),
                headers: Default::default(),
                body: format!("{{\"short_id\": {i}}}"),
            }),
        })
        .collect()
}

/// Requests per second of `f` over `n` requests, the median of [`RUNS`] runs.
fn rate<F: Fn() -> usize>(n: usize, f: F) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let done = f();
        assert_eq!(done, n, "every request succeeded");
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("SWITCHBOARD_ACTIONS_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let url = server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let reqs = Arc::new(requests(n, &url));

    // Baseline: reqwest, CONCURRENCY workers posting with the key header, counting 2xx.
    let client = reqwest::Client::new();
    let baseline = rate(n, || {
        rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CONCURRENCY {
                let (client, reqs, next) = (client.clone(), Arc::clone(&reqs), Arc::clone(&next));
                tasks.spawn(async move {
                    let mut ok = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(r) = reqs.get(i) else { break ok };
                        let ActionKind::CallApi(call) = &r.action;
                        let sent = client
                            .post(&call.url)
                            .header("Idempotency-Key", &r.idempotency_key)
                            .header("Content-Type", &call.content_type)
                            .body(call.body.clone())
                            .send()
                            .await;
                        if let Ok(resp) = sent {
                            if resp.status().is_success() && resp.bytes().await.is_ok() {
                                ok += 1;
                            }
                        }
                    }
                });
            }
            let mut ok = 0;
            while let Some(n) = tasks.join_next().await {
                ok += n.unwrap_or(0);
            }
            ok
        })
    });

    // The executor: every request through `Executor::perform` (policy, per-host bound of
    // CONCURRENCY, metrics, outcome), as `switchboard actions` performs a batch.
    let settings = Actions {
        max_concurrent_per_host: CONCURRENCY as i64,
        timeout_ms: 10_000,
        ..Actions::default()
    };
    let executor = Arc::new(Executor::new(settings, Metrics::new()).expect("executor"));
    let executor_rate = rate(n, || {
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..reqs.len() {
                let (executor, reqs) = (Arc::clone(&executor), Arc::clone(&reqs));
                tasks.spawn(async move {
                    let o = executor.perform(&reqs[i]).await;
                    usize::from(o.outcome == ActionResult::Succeeded)
                });
            }
            let mut ok = 0;
            while let Some(n) = tasks.join_next().await {
                ok += n.unwrap_or(0);
            }
            ok
        })
    });
    println!("actions: {n} Call API requests to a loopback server that answers at once");
    println!("  baseline (reqwest, {CONCURRENCY} concurrent)   {baseline:>10.0} requests/s");
    println!(
        "  executor (per-host bound {CONCURRENCY})        {executor_rate:>10.0} requests/s   {:.2} of the baseline",
        executor_rate / baseline
    );
}
