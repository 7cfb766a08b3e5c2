//! Prometheus metrics (SPEC §12.4): the pipeline figures the runtime records and the domain
//! figures read off the outputs. `crate::http` serves them.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use switchboard_schemas::Topic;

/// Every figure the runtime exports. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub duplicates: IntCounter,
    pub dlq: IntCounter,
    pub processing_seconds: Histogram,
    pub commit_seconds: HistogramVec,
    pub lag: IntGaugeVec,
    pub restore_records: IntCounter,
    pub restoring_partitions: IntGauge,
    pub assigned_partitions: IntGauge,
    pub pending_timers: IntGaugeVec,
    pub conversations: IntCounterVec,
    pub assignments: IntCounterVec,
    pub sla: IntCounterVec,
    pub sentiment: IntCounterVec,
    pub csat: IntCounterVec,
    pub agent_status: IntCounterVec,
    /// Workflow runs by workflow and trigger, and the actions they ran by type.
    pub workflow_runs: IntCounterVec,
    pub workflow_actions: IntCounterVec,
    /// Records rejected because their workflow cascade passed the bound, by the workflow named.
    pub workflow_rejections: IntCounterVec,
    /// The action executor (`switchboard actions`): requests by outcome, attempts by result,
    /// retries, dead letters and the time from first attempt to outcome.
    pub action_requests: IntCounterVec,
    pub action_attempts: IntCounterVec,
    pub action_retries: IntCounter,
    pub action_dlq: IntCounter,
    pub action_seconds: Histogram,
    /// Set once the consumer has joined and every assigned partition is restored.
    pub ready: Arc<AtomicBool>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let processing_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_processing_seconds",
                "Time to process one batch of input records through the processors",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable!("metric: {e}"));
        let _ = r.register(Box::new(processing_seconds.clone()));
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_commit_seconds",
                "Time to make a batch durable (outputs, changelog, offsets), by guarantee",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["guarantee"],
        )
        .unwrap_or_else(|e| unreachable!("metric: {e}"));
        let _ = r.register(Box::new(commit_seconds.clone()));
        let action_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_action_seconds",
                "Time from a Call API request's first attempt to its outcome, retries included",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ]),
        )
        .unwrap_or_else(|e| unreachable!("metric: {e}"));
        let _ = r.register(Box::new(action_seconds.clone()));
        Metrics {
            records_in: counter_vec(
                &r,
                "switchboard_records_in_total",
                "Input records processed, by topic",
                &["topic"],
            ),
            records_out: counter_vec(
                &r,
                "switchboard_records_out_total",
                "Output records written, by topic",
                &["topic"],
            ),
            duplicates: counter(
                &r,
                "switchboard_duplicate_records_total",
                "Input records dropped because their id was already processed (R-TIME-1)",
            ),
            dlq: counter(
                &r,
                "switchboard_dlq_records_total",
                "Records sent to the dead-letter topic",
            ),
            processing_seconds,
            commit_seconds,
            lag: gauge_vec(
                &r,
                "switchboard_consumer_lag",
                "Records not yet processed, by input topic and partition",
                &["topic", "partition"],
            ),
            restore_records: counter(
                &r,
                "switchboard_restore_records_total",
                "Changelog records applied while restoring state",
            ),
            restoring_partitions: gauge(
                &r,
                "switchboard_restoring_partitions",
                "Partitions whose state is being restored",
            ),
            assigned_partitions: gauge(
                &r,
                "switchboard_assigned_partitions",
                "Partitions this instance processes",
            ),
            pending_timers: gauge_vec(
                &r,
                "switchboard_pending_timers",
                "Timers scheduled and not yet fired, by partition",
                &["partition"],
            ),
            conversations: counter_vec(
                &r,
                "switchboard_conversation_events_total",
                "Conversation events, by kind",
                &["kind"],
            ),
            assignments: counter_vec(
                &r,
                "switchboard_assignment_events_total",
                "Assignment events, by kind and method",
                &["kind", "method"],
            ),
            sla: counter_vec(
                &r,
                "switchboard_sla_events_total",
                "SLA events, by kind and metric",
                &["kind", "metric"],
            ),
            sentiment: counter_vec(
                &r,
                "switchboard_sentiment_messages_total",
                "Scored customer messages, by label",
                &["label"],
            ),
            csat: counter_vec(
                &r,
                "switchboard_csat_events_total",
                "CSAT survey events, by kind and answer (happy, not_happy)",
                &["kind", "score"],
            ),
            agent_status: counter_vec(
                &r,
                "switchboard_agent_state_events_total",
                "Agent state events, by kind and status group",
                &["kind", "group"],
            ),
            workflow_runs: counter_vec(
                &r,
                "switchboard_workflow_runs_total",
                "Workflow runs (trigger fired, condition held), by workflow and trigger",
                &["workflow", "trigger"],
            ),
            workflow_actions: counter_vec(
                &r,
                "switchboard_workflow_actions_total",
                "Actions of the workflows that ran, by action",
                &["action"],
            ),
            workflow_rejections: counter_vec(
                &r,
                "switchboard_workflow_rejections_total",
                "Records dead-lettered because their workflow cascade passed the bound, by the workflow named",
                &["workflow"],
            ),
            action_requests: counter_vec(
                &r,
                "switchboard_action_requests_total",
                "Call API requests the executor finished, by outcome (succeeded, failed, undecodable)",
                &["outcome"],
            ),
            action_attempts: counter_vec(
                &r,
                "switchboard_action_attempts_total",
                "HTTP attempts by result (2xx, 3xx, 4xx, 429, 5xx, timeout, connect, other)",
                &["result"],
            ),
            action_retries: counter(
                &r,
                "switchboard_action_retries_total",
                "Attempts after the first (timeouts, connection errors, 429 and 5xx)",
            ),
            action_dlq: counter(
                &r,
                "switchboard_action_dlq_total",
                "Requests dead-lettered after their last attempt, or undecodable",
            ),
            action_seconds,
            ready: Arc::new(AtomicBool::new(false)),
            registry: r,
        }
    }

    /// Count one output record of `topic`, given as its JSON mirror (the form it is encoded
    /// from): per topic, and the domain figures it carries.
    pub fn observe_output(&self, topic: Topic, json: &serde_json::Value) {
        self.records_out.with_label_values(&[topic.name()]).inc();
        let (kind, body) = variant(json.get("event").or_else(|| json.get("kind")));
        let field = |name: &str| -> String {
            body.and_then(|b| b.get(name))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        match topic {
            Topic::ConversationEvents if kind != "WorkflowRan" => {
                self.conversations.with_label_values(&[&kind]).inc()
            }
            Topic::Assignments => self
                .assignments
                .with_label_values(&[&kind, &field("method")])
                .inc(),
            Topic::SlaEvents => self.sla.with_label_values(&[&kind, &field("metric")]).inc(),
            // Each customer message once (not the conversation's running mood).
            Topic::Sentiment if kind == "MessageSentiment" => {
                self.sentiment.with_label_values(&[&field("label")]).inc()
            }
            Topic::ConversationEvents if kind == "WorkflowRan" => {
                self.conversations.with_label_values(&[&kind]).inc();
                self.workflow_runs
                    .with_label_values(&[&field("workflow_id"), &field("trigger")])
                    .inc();
                let actions = body
                    .and_then(|b| b.get("actions"))
                    .and_then(|a| a.as_array());
                for action in actions.into_iter().flatten().filter_map(|a| a.as_str()) {
                    self.workflow_actions.with_label_values(&[action]).inc();
                }
            }
            Topic::Csat => self.csat.with_label_values(&[&kind, &field("score")]).inc(),
            Topic::AgentState => self
                .agent_status
                .with_label_values(&[&kind, &field("group")])
                .inc(),
            Topic::Dlq => {
                self.dlq.inc();
                let reason = json.get("reason").and_then(|r| r.as_str()).unwrap_or("");
                if let Some(workflow) = cascade_workflow(reason) {
                    self.workflow_rejections
                        .with_label_values(&[workflow])
                        .inc();
                }
            }
            _ => {}
        }
    }

    /// The sum of a counter vector over the series whose labels include every
    /// `(name, value)` pair of `want`.
    pub fn total(vec: &IntCounterVec, want: &[(&str, &str)]) -> u64 {
        use prometheus::core::Collector;
        vec.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                want.iter().all(|(name, value)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *name && l.value() == *value)
                })
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The name of every metric registered, whether or not it has a value yet.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: Vec<&dyn Collector> = vec![
            &self.records_in,
            &self.records_out,
            &self.duplicates,
            &self.dlq,
            &self.processing_seconds,
            &self.commit_seconds,
            &self.lag,
            &self.restore_records,
            &self.restoring_partitions,
            &self.assigned_partitions,
            &self.pending_timers,
            &self.conversations,
            &self.assignments,
            &self.sla,
            &self.sentiment,
            &self.csat,
            &self.agent_status,
            &self.workflow_runs,
            &self.workflow_actions,
            &self.workflow_rejections,
            &self.action_requests,
            &self.action_attempts,
            &self.action_retries,
            &self.action_dlq,
            &self.action_seconds,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The workflow a cascade rejection names (`... (workflow "w" was next) ...`).
fn cascade_workflow(reason: &str) -> Option<&str> {
    if !reason.starts_with("workflows ran more than") {
        return None;
    }
    let rest = &reason[reason.find("(workflow \"")? + 11..];
    rest.get(..rest.find('"')?)
}

/// A union value in the JSON mirror is `{"VariantName": {fields}}`.
fn variant(v: Option<&serde_json::Value>) -> (String, Option<&serde_json::Value>) {
    match v.and_then(|v| v.as_object()).and_then(|o| o.iter().next()) {
        Some((name, body)) => (name.clone(), Some(body)),
        None => (String::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_schemas::Output;

    /// R-RUN-4: every metric the Grafana dashboards query is one the engine exports.
    #[test]
    fn r_run_4_dashboards_query_only_exported_metrics() {
        let names = Metrics::new().names();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("dashboards folder") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
            for panel in json["panels"].as_array().expect("panels") {
                for target in panel["targets"].as_array().expect("targets") {
                    let expr = target["expr"].as_str().expect("expr");
                    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        if !word.starts_with("switchboard_") {
                            continue;
                        }
                        let base = word
                            .trim_end_matches("_bucket")
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count");
                        assert!(
                            names.iter().any(|n| n == base),
                            "{}: {word} is not exported",
                            path.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} metric references found");
    }

    /// R-RUN-4, R-FLOW: workflow runs are counted by workflow and trigger, their actions by
    /// type, and a cascade rejection by the workflow it names.
    #[test]
    fn r_run_4_workflow_runs_actions_and_rejections_are_counted() {
        let m = Metrics::new();
        let ran = serde_json::json!({"id": "x#0", "tenant": "acme", "conversation_id": "c1",
            "short_id": 1, "event": {"WorkflowRan": {"workflow_id": "nudge",
            "trigger": "agent_did_not_reply_for", "actions": ["add_note", "unassign_agent"]}}});
        m.observe_output(Topic::ConversationEvents, &ran);
        let dead = serde_json::json!({"id": "d", "source_topic": "cc.commands", "value": "",
            "reason": "workflows ran more than 1000 times for one record (workflow \"w07\" was next): too wide"});
        m.observe_output(Topic::Dlq, &dead);
        let text = m.render();
        for want in [
            "switchboard_workflow_runs_total{trigger=\"agent_did_not_reply_for\",workflow=\"nudge\"} 1",
            "switchboard_workflow_actions_total{action=\"unassign_agent\"} 1",
            "switchboard_conversation_events_total{kind=\"WorkflowRan\"} 1",
            "switchboard_workflow_rejections_total{workflow=\"w07\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
    }

    /// R-RUN-4: outputs are counted per topic and by their domain figures.
    #[test]
    fn r_run_4_outputs_feed_the_domain_figures() {
        let m = Metrics::new();
        let json = serde_json::json!({"id": "x#0", "tenant": "acme", "conversation_id": "c1",
            "event": {"Assigned": {"agent_id": "ana", "method": "single", "score": null}}});
        let output = Output::from_json(Topic::Assignments, json).expect("assignment");
        m.observe_output(output.topic(), &output.to_json());
        let text = m.render();
        assert!(
            text.contains("switchboard_records_out_total{topic=\"cc.assignments\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchboard_assignment_events_total{kind=\"Assigned\",method=\"single\"} 1"
            ),
            "{text}"
        );
    }
}
