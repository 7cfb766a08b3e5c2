//! The supervisor wallboard in a real browser (issue 16 item 4, R-RUN-4): the demo serves
//! it at `/`; headless Chromium (Debian's `chromium`, installed by `.ci/run`) opens it, runs
//! its script against the live event stream, and the test reads the resulting page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The browser: `$CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> String {
    if let Ok(c) = std::env::var("CHROMIUM") {
        return c;
    }
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!("no Chromium: install Debian's `chromium` package (.ci/run does) or set CHROMIUM");
}

/// The number in the element with `id`'s `data-n` attribute.
fn counter(dom: &str, id: &str) -> u64 {
    let at = dom
        .find(&format!("id=\"{id}\" data-n=\""))
        .unwrap_or_else(|| panic!("no #{id} counter in the page"));
    dom[at..]
        .split('"')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("#{id} holds no number"))
}

/// The text of the element with `id` (no nested markup).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest.find('<').unwrap_or(rest.len());
    &rest[start..end.max(start)]
}

/// R-RUN-4: the wallboard shows live figures: the queue table has rows, the open count and
/// the agents by group are numbers, and while the browser watches, the figures arrive more
/// than once and change.
#[test]
fn r_run_4_wallboard_shows_live_figures_in_a_browser() {
    let browser = chromium();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "demo",
            "--duration",
            "240s",
            "--rate",
            "60",
            "--tenants",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard demo");
    let stderr = demo.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut url = None;
    let mut seen = Vec::new();
    // The wallboard URL, then the engine holding its partitions.
    loop {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        seen.push(line.clone());
        if let Some(u) = line.split_whitespace().find(|w| w.contains("/?tenant=")) {
            url = Some(u.to_string());
        }
        if url.is_some() && line.contains("records sent") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "demo did not start: {seen:?}"
        );
    }
    std::thread::spawn(move || for _ in lines {});
    let url = url.expect("wallboard URL");
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
            "--dump-dom",
            // Five updates, then the page stops following (else the open event stream keeps
            // the browser waiting).
            &format!("{url}&events=5"),
        ])
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = demo.kill();
    let _ = demo.wait();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {dom}");
    assert!(
        dom.contains("data-queue=\"support\""),
        "no queue rows:\n{dom}"
    );
    let open: u64 = text_of(&dom, "open")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("open conversations is not a number:\n{dom}"));
    assert!(open > 0, "{dom}");
    let agents: u64 = ["g-available", "g-busy", "g-away", "g-unavailable"]
        .iter()
        .map(|g| {
            text_of(&dom, g)
                .trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("#{g} is not a number:\n{dom}"))
        })
        .sum();
    assert_eq!(
        agents, 30,
        "the demo's 30 agents per tenant, by status group"
    );
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "the page took too long"
    );
    assert!(
        counter(&dom, "updates") >= 2,
        "figures arrived once or never:\n{dom}"
    );
    assert!(
        counter(&dom, "changed") >= 1,
        "figures never changed:\n{dom}"
    );
}
