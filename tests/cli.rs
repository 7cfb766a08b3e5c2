//! End-to-end tests of the `switchboard` binary's `simulate` command (SPEC §12.6, R-TOPIC).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn simulate(input: &str, output: &PathBuf) -> std::process::Output {
    bin()
        .args(["simulate", "--input", input, "--output"])
        .arg(output)
        .output()
        .expect("run switchboard")
}

/// `simulate` over `examples/<name>.jsonl`, twice: the runs must succeed and write the same
/// bytes (R-TIME-6), which are returned.
fn simulate_twice(name: &str) -> String {
    let example = format!("{}/examples/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    let (a, b) = (
        tmp(&format!("{name}-a.jsonl")),
        tmp(&format!("{name}-b.jsonl")),
    );
    for out in [&a, &b] {
        let run = simulate(&example, out);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let (a, b) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert_eq!(a, b, "two runs of {name} differ");
    String::from_utf8(a).expect("utf-8")
}

/// R-RUN-6, R-TIME-6: the example scenario runs, and two runs give byte-identical output.
#[test]
fn simulate_example_is_byte_identical_across_runs() {
    let text = simulate_twice("quickstart");
    for needle in [
        "\"Routed\"",
        "\"kind\":\"away\"",
        "\"reason\":\"reopened\"",
        "\"Merged\"",
        "\"ConfigRejected\"",
        "\"topic\":\"cc.dlq\"",
        "\"method\":\"single\"",
        "\"method\":\"working_hours_start\"",
        "\"SlaApplied\"",
        "\"SlaMet\"",
        "\"kind\":\"welcome\"",
        "\"kind\":\"announcement\"",
        "\"MessageSentiment\"",
        "\"ConversationSentiment\"",
        "\"SurveySent\"",
        "\"SurveyFeedback\"",
        "\"WorkflowRan\"",
        "\"trigger\":\"agent_did_not_reply_for\"",
        "\"topic\":\"cc.analytics\"",
    ] {
        assert!(text.contains(needle), "example output lacks {needle}");
    }
}

/// R-FLOW-3, R-FLOW-4, R-TIME-6: the workflow recipe (examples/reassign-if-no-answer.jsonl):
/// the first agent does not answer in time, so the workflow notes it and unassigns her, and
/// the conversation goes to another agent; two runs give byte-identical output.
#[test]
fn reassign_example_reassigns_and_is_byte_identical_across_runs() {
    let events: Vec<serde_json::Value> = simulate_twice("reassign-if-no-answer")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // What happened to conversation #1, in order.
    let story: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let v = &e["value"];
            let event = v["event"].as_object()?;
            let (kind, body) = event.iter().next()?;
            let first = v["short_id"] == 1 || v["conversation_id"] == events_conv_1(&events);
            match kind.as_str() {
                "WorkflowRan" if first => Some(format!("ran {}", body["workflow_id"])),
                "NoteAdded" if first => Some(format!("note {}", body["text"])),
                "Unassigned" if first => Some(format!("unassigned {}", body["agent_id"])),
                "Assigned" if first => Some(format!("assigned {}", body["agent_id"])),
                "ConfigRejected" => Some(format!("rejected {}", body["field"])),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        story,
        vec![
            "rejected \"workflow.actions[0]\"",
            "assigned \"ana\"",
            "ran \"reassign-if-no-answer\"",
            "note \"ana did not answer #1 within 2 minutes: reassigned\"",
            "unassigned \"ana\"",
            "assigned \"bo\"",
        ]
    );
}

/// The id of the conversation with short id 1 in a simulate output.
fn events_conv_1(events: &[serde_json::Value]) -> serde_json::Value {
    events
        .iter()
        .find(|e| e["value"]["short_id"] == 1)
        .map(|e| e["value"]["conversation_id"].clone())
        .unwrap_or_default()
}

/// R-TOPIC: a line that is not JSON, or not a valid record, becomes a cc.dlq line with its
/// line number, the original bytes and a readable reason; the lines after it are processed.
#[test]
fn bad_lines_go_to_the_dead_letter_topic_and_processing_continues() {
    let input = tmp("bad.jsonl");
    std::fs::write(
        &input,
        [
            r#"{"topic": "cc.inbound", "key": "acme", "ts": 1000, "value": {"id": "m1", "tenant": "acme", "channel": "sms", "from": "+1", "to": "+2", "content": "hi"}}"#,
            r#"{"topic": "cc.inbound", "key": "acme", "ts": 2000, "value": {"id": "m2", "tenant": "acme""#,
            r#"{"topic": "cc.inbound", "key": "acme", "ts": 3000, "value": {"id": "m3", "tenant": "acme", "channel": "sms", "from": "+1", "to": "+2", "colour": "red"}}"#,
            r#"{"topic": "cc.inbound", "key": "globex", "ts": 3500, "value": {"id": "m4", "tenant": "acme", "channel": "sms", "from": "+1", "to": "+2"}}"#,
            "",
            r#"{"topic": "cc.nowhere", "key": "acme", "ts": 4000, "value": {}}"#,
            r#"{"topic": "cc.inbound", "key": "acme", "ts": 5000, "value": {"id": "m5", "tenant": "acme", "channel": "sms", "from": "+3", "to": "+2", "content": "after the bad lines"}}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let output = tmp("bad-out.jsonl");
    let run = simulate(input.to_str().expect("path"), &output);
    assert!(run.status.success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let dlq: Vec<(i64, String)> = lines
        .iter()
        .filter(|l| l["topic"] == "cc.dlq")
        .map(|l| {
            (
                l["value"]["source_line"].as_i64().unwrap_or(0),
                l["value"]["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(dlq.len(), 4, "{dlq:?}");
    let by_line: std::collections::BTreeMap<i64, String> = dlq.into_iter().collect();
    assert!(
        by_line[&2].starts_with("line 2: not valid JSON"),
        "{by_line:?}"
    );
    assert!(
        by_line[&3].contains("unknown field `colour`"),
        "{by_line:?}"
    );
    assert!(
        by_line[&4].contains("does not belong to tenant"),
        "{by_line:?}"
    );
    assert!(by_line[&6].contains("not an input topic"), "{by_line:?}");
    let original = lines
        .iter()
        .find(|l| l["value"]["source_line"] == 3)
        .expect("line 3");
    assert!(
        original["value"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("\"colour\": \"red\""),
        "the original bytes are kept"
    );
    let received: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["value"]["event"]["MessageReceived"]["message_id"].as_str())
        .collect();
    assert_eq!(received, vec!["m1", "m5"]);
}

/// The CLI exits non-zero with one readable line on a missing file, never a panic.
#[test]
fn missing_input_file_is_one_readable_error_line() {
    let run = simulate("/nonexistent/input.jsonl", &tmp("never.jsonl"));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("switchboard: cannot read /nonexistent/input.jsonl"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

/// R-SENT-2: `sentiment score` prints `score<TAB>label` per stdin line.
#[test]
fn sentiment_score_reads_stdin() {
    use std::io::Write;
    let mut child = bin()
        .args(["sentiment", "score"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            "still waiting for my refund\nthank you so much!\nwhere is my order\nhola, mi pedido no ha llegado\n"
                .as_bytes(),
        )
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let labels: Vec<String> = stdout
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(labels, vec!["negative", "positive", "neutral", "neutral"]);
    // A message in another language: a third column names it (R-SENT-1).
    assert_eq!(stdout.lines().nth(3), Some("0.0000\tneutral\tes"));
    assert_eq!(
        stdout.lines().next().map(|l| l.split('\t').count()),
        Some(2)
    );
}

/// `sentiment eval` adds negative recall; `--complaints` reads a one-class file and prints
/// the share called negative (complaint recall, or false alarms on non-complaints).
#[test]
fn sentiment_eval_negative_recall_and_complaints_mode() {
    let file = tmp("complaints.tsv");
    std::fs::write(
        &file,
        "negative\tmy order never arrived and nobody answers the phone\nnegative\tstill no refund after 3 weeks\nnegative\tcan you tell me your opening hours\n",
    )
    .expect("write");
    let out = bin()
        .args(["sentiment", "eval"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("negative recall  0.667"), "{text}");
    let out = bin()
        .args(["sentiment", "eval", "--complaints"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("one class"), "{text}");
    assert!(text.contains("called negative  0.667  (2 of 3)"), "{text}");
    // The lexicon alone, for comparison, misses the complaint without emotional words.
    let out = bin()
        .args(["sentiment", "eval", "--complaints", "--lexicon"])
        .arg(&file)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("called negative  0.000  (0 of 3)"), "{text}");
}

/// `sentiment train` with missing corpora fails with one readable line naming the file.
#[test]
fn sentiment_train_names_a_missing_corpus() {
    let out = bin()
        .args([
            "sentiment",
            "train",
            "--data",
            "/nonexistent/corpora",
            "--out",
        ])
        .arg(tmp("never.bin"))
        .arg("--manifest")
        .arg(tmp("never.json"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/corpora/tse_tweets.tsv"),
        "{stderr}"
    );
    assert!(!tmp("never.bin").exists());
}

/// Issue 17: `sentiment train` reproduces the shipped weight file byte for byte, and its
/// manifest, from the corpora in `../shared/data` (or `SWITCHBOARD_SENTIMENT_DATA`). The
/// corpora are not in the repository (some may not be redistributed); without them this
/// test says so and checks nothing.
#[test]
fn sentiment_train_reproduces_the_shipped_model() {
    let root = env!("CARGO_MANIFEST_DIR");
    let data = std::env::var("SWITCHBOARD_SENTIMENT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(root).join("../shared/data"));
    if !data.join("sentiment-train").is_dir() {
        eprintln!(
            "skipped: no training corpora at {} (set SWITCHBOARD_SENTIMENT_DATA)",
            data.display()
        );
        return;
    }
    let (weights, manifest) = (tmp("model.bin"), tmp("model.json"));
    let out = bin()
        .current_dir(root)
        .args(["sentiment", "train", "--data"])
        .arg(data.join("sentiment-train"))
        .arg("--dev")
        .arg(data.join("sentiment-dev"))
        .arg("--out")
        .arg(&weights)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped = std::fs::read(format!("{root}/processors/data/sentiment/model.bin"))
        .expect("shipped model");
    assert!(
        std::fs::read(&weights).expect("trained") == shipped,
        "the trained weights differ from processors/data/sentiment/model.bin"
    );
    assert_eq!(
        std::fs::read_to_string(&manifest).expect("manifest"),
        std::fs::read_to_string(format!("{root}/processors/data/sentiment/model.json"))
            .expect("shipped manifest")
    );
}

/// `sentiment eval` prints the figures; a malformed file is one readable error line.
#[test]
fn sentiment_eval_prints_figures_and_rejects_bad_files() {
    let good = tmp("eval.tsv");
    std::fs::write(
        &good,
        "negative\tworst service ever\npositive\tthanks, great help!\nneutral\twhere is my order\n",
    )
    .expect("write");
    let out = bin()
        .args(["sentiment", "eval"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accuracy  1.000"), "{text}");
    assert!(text.contains("macro-F1  1.000"), "{text}");
    assert!(text.contains("confusion"), "{text}");
    let bad = tmp("bad.tsv");
    std::fs::write(&bad, "negative\tok\nmeh\tno label\n").expect("write");
    let out = bin()
        .args(["sentiment", "eval"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.tsv:2: expected `label<TAB>text`"),
        "{stderr}"
    );
}

/// R-RUN-7: `config check` prints the effective configuration, or one line naming the field.
#[test]
fn config_check_names_the_bad_field() {
    let ok = bin()
        .args(["config", "check"])
        .env("SWITCHBOARD_TOPICS_PARTITIONS", "6")
        .output()
        .expect("run");
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("partitions = 6"));
    let bad = bin()
        .args(["config", "check"])
        .env("SWITCHBOARD__TICKER__INTERVAL_MS", "5")
        .output()
        .expect("run");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        stderr.trim(),
        "switchboard: invalid configuration: ticker.interval_ms: 5 is not between 10 and 60000"
    );
    let threads = bin()
        .args(["config", "check"])
        .env("SWITCHBOARD__ENGINE__THREADS", "1000")
        .output()
        .expect("run");
    assert!(!threads.status.success());
    assert_eq!(
        String::from_utf8_lossy(&threads.stderr).trim(),
        "switchboard: invalid configuration: engine.threads: 1000 is not between 0 (one per core) and 256"
    );
}

/// The number after `label` on the summary line that starts with it.
fn figure(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} figure in:\n{summary}"))
}

/// R-RUN-7: Ctrl-C stops the demo cleanly: it prints its summary (saying it was
/// interrupted), exits 0, and removes its state directory.
#[test]
fn r_run_7_demo_stops_cleanly_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args([
            "demo",
            "--duration",
            "120s",
            "--rate",
            "40",
            "--tenants",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start switchboard demo");
    let state_dir = std::env::temp_dir().join(format!("switchboard-demo-{}", child.id()));
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Wait until traffic flows (the clock starts once the engine holds its partitions).
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        seen.push(line.clone());
        if line.contains("records sent") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress line: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|l| l.contains("simulated clock starts")),
        "{seen:?}"
    );
    assert!(
        state_dir.exists(),
        "the demo keeps its state in {state_dir:?}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    // Drain stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let out = child.wait_with_output().expect("demo exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {stdout}", out.status);
    assert!(stdout.contains("Switchboard demo summary"), "{stdout}");
    assert!(stdout.contains("(interrupted"), "{stdout}");
    assert!(!state_dir.exists(), "{state_dir:?} was left behind");
}

/// R-RUN-1, R-RUN-4: `demo` needs no Kafka and no config. It runs the engine (exactly-once
/// path) on an in-process cluster, serves /metrics, and ends with a summary whose figures
/// come from the engine's outputs: conversations, assignments, SLA, sentiment, workflows,
/// throughput.
#[test]
fn r_run_1_demo_runs_without_kafka_and_summarizes() {
    let run = bin()
        .args(["demo", "--duration", "6s", "--rate", "60", "--tenants", "2"])
        .output()
        .expect("run switchboard demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed:\n{stderr}");
    assert!(
        stderr.contains("/metrics"),
        "no metrics address in:\n{stderr}"
    );
    assert!(
        stderr.contains("/?tenant=tenant-0") && stderr.contains("/tenants/tenant-0/queues"),
        "no wallboard or query address in:\n{stderr}"
    );
    assert!(
        stderr.contains("records sent"),
        "no progress line in:\n{stderr}"
    );
    let sent = figure(&stdout, "input records");
    assert!(sent > 200, "{stdout}");
    assert!(figure(&stdout, "conversations") > 0, "{stdout}");
    assert!(figure(&stdout, "assignments") > 0, "{stdout}");
    assert!(figure(&stdout, "throughput") > 0, "{stdout}");
    // R-FLOW: the demo's workflows ran (refund requests are among its customers' messages).
    assert!(figure(&stdout, "workflows") > 0, "{stdout}");
    assert!(stdout.contains("ExactlyOnce"), "{stdout}");
    // Everything sent was processed before the summary.
    assert!(
        stdout.contains(&format!("{sent} sent, {sent} processed")),
        "{stdout}"
    );
}

/// R-RUN-7: bad command lines and configurations end with one readable line, no panic.
#[test]
fn r_run_7_runtime_commands_reject_bad_input_with_one_line() {
    for args in [
        vec!["demo", "--duration", "soon"],
        vec![
            "replay",
            "--from-beginning",
            "--application-id",
            "x",
            "--output-suffix",
            "",
        ],
        vec![
            "replay",
            "--from-timestamp",
            "yesterday",
            "--application-id",
            "x",
            "--output-suffix",
            ".r",
        ],
    ] {
        let run = bin().args(&args).output().expect("run switchboard");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let run = bin()
        .args(["run"])
        .env("SWITCHBOARD__KAFKA__GUARANTEE", "maybe")
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
}

/// Issue 13: a broker that cannot be reached is a WARN within 10 s naming its address, and
/// `log.format = "json"` writes one JSON object per line for log shippers.
#[test]
fn an_unreachable_broker_is_a_warn_naming_it_in_json_logs() {
    let state = tmp("unreachable-state");
    let mut child = bin()
        .args(["run"])
        .env("SWITCHBOARD__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")
        .env("SWITCHBOARD__LOG__FORMAT", "json")
        .env("SWITCHBOARD__HTTP__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD__STATE__DIR", &state)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run switchboard");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut warned = None;
    let mut lines = Vec::new();
    while warned.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if event["level"] == "WARN"
            && event["fields"]["bootstrap_servers"] == "127.0.0.1:9"
            && event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot reach the Kafka brokers"))
        {
            warned = Some(line.clone());
        }
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        warned.is_some(),
        "no WARN naming the broker within 10 s: {lines:#?}"
    );
}

/// `switchboard bench` runs end to end on the in-process cluster and reports every run with
/// its ratios, including the cost of cc.analytics (issue 16's benchmark); with `--repeat`,
/// each repetition and the median ratio of each run to the engine in process (issue 12's
/// runtime overhead, read over several runs on a noisy machine), as rates and as the CPU
/// time of the runtime's own threads per record (R-RUN-4's metrics, read back).
#[test]
fn bench_reports_every_run_on_the_mock_cluster() {
    let run = bin()
        .args([
            "bench",
            "--messages",
            "1000",
            "--tenants",
            "4",
            "--skip-exactly-once",
            "--repeat",
            "2",
        ])
        .output()
        .expect("run switchboard bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for line in [
        "passthrough",
        "in-process",
        "deduplicated",
        "no analytics",
        "with / without cc.analytics",
        "run 2 of 2",
        "deduplicated   median ratio to in-process",
        "no analytics   median ratio to in-process",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout
            .matches("the engine alone on the same records")
            .count(),
        2,
        "one in-process run per repetition:\n{stdout}"
    );
    // Issue 12 counts the runtime's overhead as its own threads' CPU per record too: each
    // run reports it measured (the runtime thread's, the workers' and the RocksDB writes',
    // each above zero), and its median ratio to the engine in process.
    let seconds = |line: &str, after: &str| -> f64 {
        let rest = &line[line.find(after).map_or(0, |i| i + after.len())..];
        let figure: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        figure.parse().unwrap_or(0.0)
    };
    let cpu_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("engine threads' CPU"))
        .collect();
    assert_eq!(
        cpu_lines.len(),
        6,
        "a CPU line per run (three runs, twice):\n{stdout}"
    );
    for line in cpu_lines {
        assert!(seconds(line, "engine threads' CPU ") > 0.0, "{line}");
        assert!(seconds(line, "runtime thread ") > 0.0, "{line}");
        assert!(seconds(line, "workers ") > 0.0, "{line}");
        assert!(seconds(line, "RocksDB writes ") > 0.0, "{line}");
    }
    assert!(
        stdout.contains("deduplicated   median CPU ratio to in-process"),
        "no median CPU ratio in:\n{stdout}"
    );
}
