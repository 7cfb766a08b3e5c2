//! The engine with 50 workflows per tenant against the same engine with none (issue #15's
//! target: at least 0.5 of the no-workflow rate), on the mixed workload of
//! `shared/bench/gen_workload.py` without sentiment, one partition on one core.
//!
//! The 50 workflows of each tenant mix every kind of trigger (status, tags, inbound and agent
//! messages, notes, survey feedback, and the time triggers) with conditions on the queue, tags,
//! status, priority, assignee, content and form fields, and actions that tag, note, message,
//! set the priority and call an API. Some match often (a note on every billing solve, a
//! nudge when support does not answer in five minutes), most rarely, as in a real tenant.
//!
//! Workload: `SWITCHBOARD_WORKLOAD_NO_SENTIMENT`, else generated as for the engine bench
//! (`--messages $SWITCHBOARD_BENCH_MESSAGES`, default 200,000).
//!
//! Run: `cargo bench -p switchboard-processors --bench workflows`.

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::json;
use switchboard_processors::simulation::{self, SourceRecord};
use switchboard_processors::Settings;
use switchboard_schemas::{ConversationEvent, ConversationEventKind, Output};

const RUNS: usize = 3;
const WORKFLOWS_PER_TENANT: usize = 50;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn leaf(attribute: &str, operator: &str, value: &str) -> serde_json::Value {
    json!({"attribute": attribute, "operator": operator, "value": value})
}

/// Workflow `i` of a tenant: kind `i % 10`, with its own thresholds and texts.
fn workflow(i: usize) -> serde_json::Value {
    let note = |text: String| json!({"AddNote": {"text": text}});
    let (trigger, condition, actions) = match i % 10 {
        0 => (
            json!({"InboundMessageReceived": {}}),
            leaf("content", "contains", &format!("urgent-{i}")),
            vec![json!({"ApplyTags": {"tags": ["urgent"]}})],
        ),
        1 => (
            json!({"StatusChangedTo": {"status": "solved"}}),
            leaf(
                "conversation.queue",
                "is",
                ["billing", "support", "sales"][i % 3],
            ),
            vec![note(format!(
                "solved in #{{{{conversation.short_id}}}} ({i})"
            ))],
        ),
        2 => (
            json!({"AgentMessageSent": {}}),
            leaf("conversation.tags", "is", &format!("vip-{i}")),
            vec![json!({"SetConversationPriority": {"priority": "high"}})],
        ),
        3 => (
            json!({"ConversationTagsChanged": {}}),
            leaf("conversation.tags", "is", "urgent"),
            vec![json!({"SetConversationPriority": {"priority": "urgent"}})],
        ),
        4 => (
            json!({"AgentDidNotReplyFor": {"seconds": 300 + i}}),
            json!({"all": [
                leaf("conversation.queue", "is", ["support", "billing", "sales"][i % 3]),
                {"attribute": "conversation.assignee", "operator": "exists"}
            ]}),
            vec![note(format!(
                "{{{{conversation.assignee}}}} has not answered ({i})"
            ))],
        ),
        5 => (
            json!({"CustomerDidNotReplyFor": {"seconds": 600 + i}}),
            leaf("conversation.status", "is", "open"),
            vec![json!({"SendMessage": {"content": format!("Are you still there? ({i})")}})],
        ),
        6 => (
            json!({"SolvedFor": {"seconds": 3600 + i}}),
            leaf("conversation.priority", "is", "urgent"),
            vec![note(format!("urgent and solved ({i})"))],
        ),
        7 => (
            json!({"WaitingFor": {"seconds": 1800 + i}}),
            leaf("conversation.channel", "is", "email"),
            vec![json!({"SendMessage": {"content": "Still waiting on you"}})],
        ),
        8 => (
            json!({"NoteCreated": {}}),
            leaf("form.tier", "is", "gold"),
            vec![json!({"ApplyTags": {"tags": ["gold-note"]}})],
        ),
        _ => (
            json!({"SurveyFeedbackReceived": {"scores": ["not_happy"]}}),
            leaf("conversation.queue", "is", "support"),
            vec![
                note(format!("unhappy ({i})")),
                json!({"CallApi": {
                    "method": "POST",
                    "url": "https://crm.example/unhappy/{{conversation.id}}",
                    "body": "{\"short_id\": \"{{conversation.short_id}}\"}"
                }}),
            ],
        ),
    };
    json!({
        "id": format!("wf-{i:02}"),
        "order": i,
        "triggers": [trigger],
        "condition": condition,
        "actions": actions,
    })
}

/// The workload with [`WORKFLOWS_PER_TENANT`] workflows configured for each tenant first.
fn with_workflows(bytes: &[u8], records: &[SourceRecord]) -> Vec<u8> {
    let tenants: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.decoded.as_ref().ok())
        .filter_map(|i| i.tenant_and_id().map(|(t, _)| t.to_string()))
        .collect();
    let first = records.iter().map(|r| r.ts).min().unwrap_or(0);
    let mut out = Vec::new();
    for tenant in &tenants {
        for i in 0..WORKFLOWS_PER_TENANT {
            let w = workflow(i);
            let line = json!({
                "topic": "cc.config",
                "key": format!("{tenant}/workflow/{}", w["id"].as_str().unwrap_or("")),
                "ts": first,
                "value": {
                    "id": format!("wf-cfg-{i}"),
                    "tenant": tenant,
                    "version": 1,
                    "change": {"UpsertWorkflow": {"workflow": w}},
                },
            });
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(bytes);
    out
}

/// Engine records per second over `records`, the median of [`RUNS`] runs, with the outputs
/// and workflow runs of the last run.
fn engine_rate(records: &[SourceRecord]) -> (f64, usize, usize) {
    let settings = Settings::default();
    let mut rates = Vec::new();
    let (mut outputs, mut runs) = (0, 0);
    for _ in 0..RUNS {
        let input = records.to_vec();
        let t = Instant::now();
        let out = simulation::run(input, 1, &settings).unwrap_or_default();
        rates.push(records.len() as f64 / t.elapsed().as_secs_f64());
        outputs = out.len();
        runs = out
            .iter()
            .filter(|e| {
                matches!(
                    &e.output,
                    Output::Conversation(ConversationEvent {
                        event: ConversationEventKind::WorkflowRan(_),
                        ..
                    })
                )
            })
            .count();
    }
    (median(rates), outputs, runs)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let path = match common::workload(
        "SWITCHBOARD_WORKLOAD_NO_SENTIMENT",
        "SWITCHBOARD_BENCH_MESSAGES",
        "200000",
        &["--no-sentiment"],
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("workload: {e}");
            std::process::exit(1);
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let (plain, _) = simulation::parse_jsonl(&bytes);
    let (flows, _) = simulation::parse_jsonl(&with_workflows(&bytes, &plain));
    // The same workload records are timed in both; the workflow configs are extra records.
    let (base, base_out, _) = engine_rate(&plain);
    let (with, with_out, runs) = engine_rate(&flows);
    // Rate per workload record: the workflow configs are extra records, timed but not counted.
    let with = with * plain.len() as f64 / flows.len() as f64;
    println!(
        "workflows: {} workload records ({})",
        plain.len(),
        path.display()
    );
    println!("  engine, no workflows          {base:>10.0} records/s   {base_out} outputs");
    println!(
        "  engine, {WORKFLOWS_PER_TENANT} workflows/tenant   {with:>10.0} records/s   {with_out} outputs, \
         {runs} workflow runs   {:.2} of the no-workflow rate",
        with / base
    );
}
