//! A generated contact center, for the benchmarks and the end-to-end tests: tenants with a
//! queue, a route, an SLA policy, sentiment on, three workflows and agents; customers writing over two
//! channels; agents replying to and solving conversations; ticks on every partition. The
//! same arguments always give the same records.

use switchboard_schemas::Topic;

/// Partitions the generated ticks are written to.
pub const PARTITIONS: i32 = 4;

/// One input record: its topic, key, event time, explicit partition (ticks) and JSON value.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: Topic,
    pub key: Option<String>,
    pub ts: i64,
    pub partition: Option<i32>,
    pub value: serde_json::Value,
}

/// [`contact_center`]'s records decoded, as the in-process engine takes them.
pub fn contact_center_sources(
    tenants: usize,
    messages: usize,
) -> Vec<switchboard_processors::simulation::SourceRecord> {
    contact_center(tenants, messages)
        .into_iter()
        .map(|r| switchboard_processors::simulation::SourceRecord {
            topic: r.topic,
            key: r.key,
            ts: r.ts,
            partition: r.partition.map(|p| p as u32),
            line: None,
            offset: None,
            raw: Vec::new(),
            decoded: switchboard_schemas::Input::from_json(r.topic, r.value),
        })
        .collect()
}

/// `messages` customer messages spread over `tenants` tenants, with the config and agents
/// before them, commands after every fifth message and ticks after every twentieth.
pub fn contact_center(tenants: usize, messages: usize) -> Vec<Record> {
    use serde_json::json;
    let t0 = 1_772_442_000_000i64;
    let mut out = Vec::new();
    let mut id = 0u64;
    let mut next_id = |p: &str| {
        id += 1;
        format!("{p}-{id}")
    };
    for t in 0..tenants {
        let tenant = format!("t{t}");
        let cfg = |id: String, kind: &str, name: &str, change: serde_json::Value| Record {
            topic: Topic::Config,
            key: Some(format!("{tenant}/{kind}/{name}")),
            ts: t0,
            partition: None,
            value: json!({"id": id, "tenant": tenant, "version": 1, "change": change}),
        };
        out.push(cfg(next_id("cfg"), "queue", "support", json!({"UpsertQueue": {"queue": {"id": "support", "auto_assign": true, "working_hours_id": "always"}}})));
        out.push(cfg(next_id("cfg"), "route", "all", json!({"UpsertRoute": {"route": {"id": "all", "order": 1, "condition": {"any": [{"attribute": "channel", "operator": "is", "value": "sms"}, {"attribute": "channel", "operator": "is", "value": "whatsapp"}]}, "queue_id": "support"}}})));
        out.push(cfg(next_id("cfg"), "sla_policy", "std", json!({"UpsertSlaPolicy": {"policy": {"id": "std", "name": "Std", "order": 1, "default_severity": "normal", "severities": [{"name": "normal", "first_response_minutes": 2, "next_reply_minutes": 5, "resolution_minutes": 30, "counting": "always"}]}}})));
        out.push(cfg(
            next_id("cfg"),
            "sentiment",
            "on",
            json!({"SetSentiment": {"enabled": true}}),
        ));
        // Workflows: tag refund requests; note a conversation nobody answered for 90 s; close
        // conversations solved for 10 minutes.
        out.push(cfg(next_id("cfg"), "workflow", "refunds", json!({"UpsertWorkflow": {"workflow": {"id": "refunds", "order": 1, "triggers": [{"InboundMessageReceived": {}}], "condition": {"attribute": "content", "operator": "contains", "value": "refund"}, "actions": [{"ApplyTags": {"tags": ["refund"]}}]}}})));
        out.push(cfg(next_id("cfg"), "workflow", "nudge", json!({"UpsertWorkflow": {"workflow": {"id": "nudge", "order": 2, "triggers": [{"AgentDidNotReplyFor": {"seconds": 90}}], "condition": {"attribute": "conversation.assignee", "operator": "exists"}, "actions": [{"AddNote": {"text": "{{conversation.assignee}} has not answered #{{conversation.short_id}}"}}]}}})));
        out.push(cfg(next_id("cfg"), "workflow", "close-solved", json!({"UpsertWorkflow": {"workflow": {"id": "close-solved", "order": 3, "triggers": [{"SolvedFor": {"seconds": 600}}], "actions": [{"CloseConversation": {}}]}}})));
        for a in 0..3 {
            for event in [
                json!({"AgentUpdated": {"queues": ["support"]}}),
                json!({"AgentStatusChanged": {"status": "Available"}}),
            ] {
                out.push(Record {
                    topic: Topic::AgentEvents,
                    key: Some(tenant.clone()),
                    ts: t0 + 1,
                    partition: None,
                    value: json!({"id": next_id("ag"), "tenant": tenant, "agent_id": format!("a{a}"), "event": event}),
                });
            }
        }
    }
    let texts = [
        "where is my order",
        "thanks, great help",
        "this is awful",
        "refund please",
        "ok",
    ];
    for i in 0..messages {
        let tenant = format!("t{}", i % tenants);
        let ts = t0 + 10_000 + i as i64 * 7_000;
        let channel = if i % 3 == 0 { "whatsapp" } else { "sms" };
        out.push(Record {
            topic: Topic::Inbound,
            key: Some(tenant.clone()),
            ts,
            partition: None,
            value: json!({"id": next_id("m"), "tenant": tenant, "channel": channel, "from": format!("+1555{:03}", (i / tenants) % 40), "to": "support", "content": texts[i % texts.len()]}),
        });
        if i % 5 == 4 {
            // An agent replies to, then solves, the conversation with the short id #n.
            let n = (i / tenants) % 8 + 1;
            for (k, command) in [
                json!({"Reply": {"content": "on it"}}),
                json!({"SetStatus": {"status": "solved"}}),
            ]
            .into_iter()
            .enumerate()
            {
                out.push(Record {
                    topic: Topic::Commands,
                    key: Some(tenant.clone()),
                    ts: ts + 1 + k as i64,
                    partition: None,
                    value: json!({"id": next_id("c"), "tenant": tenant, "conversation_id": format!("#{n}"), "by": "a0", "command": command}),
                });
            }
        }
        if i % 20 == 19 {
            for p in 0..PARTITIONS {
                out.push(Record {
                    topic: Topic::Ticks,
                    key: None,
                    ts: ts + 3,
                    partition: Some(p),
                    value: json!({"source": "ticker"}),
                });
            }
        }
    }
    out
}
