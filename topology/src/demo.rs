//! `switchboard demo`: the engine on an in-process Kafka-protocol cluster (librdkafka's mock
//! cluster), driven by a simulated contact center, with no install and no configuration.
//!
//! The simulated clock runs at 60× wall-clock speed, so a 30-second demo covers half an hour
//! of a contact center's day: agents go online and take breaks, customers write on several
//! channels, agents reply to what they are assigned and solve it, customers answer surveys.
//! The driver reads the engine's own output topics to act on its decisions (who was assigned,
//! which survey was sent), so the loop is closed through Kafka.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_processors::partition::{partition_of, tenant_of_key};
use switchboard_schemas::{Codec, ConversationEventKind, Input, Output, Status, Tick, Topic};

use crate::app;
use crate::config::{Config, Guarantee};
use crate::http;
use crate::kafka::{self, Producer_};
use crate::metrics::Metrics;
use crate::runtime::{send, RunOptions, Runtime, StartFrom};

pub struct DemoOptions {
    pub duration: Duration,
    /// Customer messages per wall-clock second.
    pub rate: u32,
    pub tenants: u32,
    pub port: u16,
    pub guarantee: Guarantee,
}

const PARTITIONS: i32 = 4;
const SPEED: i64 = 60;
const AGENTS: usize = 30;
const CHANNELS: &[(&str, &str)] = &[
    ("sms", "+1555"),
    ("whatsapp", "+4470"),
    ("telegram", "@user"),
    ("live_chat", "visitor-"),
    ("email", "customer"),
];
const TEXTS: &[&str] = &[
    "Hi, where is my order?",
    "My invoice is wrong, please fix it",
    "Thanks, that was really helpful!",
    "This is the third time I write, terrible service",
    "Can I change my delivery address?",
    "The app keeps crashing when I pay",
    "Great, love it",
    "I want a refund now. Awful.",
    "Is the store open on Sunday?",
    "ok",
];

/// A small deterministic generator (xorshift), so a demo run is repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Driver {
    producer: Producer_,
    codec: Codec,
    rng: Rng,
    start_wall: Instant,
    start_ts: i64,
    seq: u64,
    sent: u64,
    /// Commands and answers due at a simulated time: (due, topic, tenant, value).
    scheduled: BTreeMap<(i64, u64), (Topic, String, serde_json::Value)>,
    agent_busy: BTreeMap<(String, usize), bool>,
    /// (tenant, conversation) → the agent holding it, to work on it again when it reopens.
    holders: BTreeMap<(String, String), String>,
}

impl Driver {
    fn now(&self) -> i64 {
        self.start_ts + self.start_wall.elapsed().as_millis() as i64 * SPEED
    }

    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    fn write(&mut self, topic: Topic, key: &str, value: serde_json::Value) -> Result<(), String> {
        let bytes = Input::from_json(topic, value)
            .and_then(|input| input.encode(&self.codec).map_err(|e| e.to_string()))
            .map_err(|e| format!("demo record: {e}"))?;
        let p = partition_of(tenant_of_key(key), PARTITIONS as u32) as i32;
        let ts = self.now();
        send(
            &self.producer,
            topic.name(),
            p,
            Some(key.as_bytes()),
            Some(&bytes),
            Some(ts),
            None,
        )
        .map_err(|e| e.to_string())?;
        self.sent += 1;
        Ok(())
    }

    fn config(
        &mut self,
        tenant: &str,
        kind: &str,
        id: &str,
        change: serde_json::Value,
    ) -> Result<(), String> {
        let rid = self.id("cfg");
        let value =
            serde_json::json!({"id": rid, "tenant": tenant, "version": 1, "change": change});
        self.write(Topic::Config, &format!("{tenant}/{kind}/{id}"), value)
    }

    fn agent_event(
        &mut self,
        tenant: &str,
        agent: usize,
        event: serde_json::Value,
    ) -> Result<(), String> {
        let id = self.id("ag");
        let value = serde_json::json!({"id": id, "tenant": tenant, "agent_id": format!("agent-{agent}"), "event": event});
        self.write(Topic::AgentEvents, tenant, value)
    }

    fn setup_tenant(&mut self, tenant: &str) -> Result<(), String> {
        use serde_json::json;
        self.config(tenant, "queue", "support", json!({"UpsertQueue": {"queue": {"id": "support", "name": "Support", "auto_assign": true, "working_hours_id": "always"}}}))?;
        let channels: Vec<serde_json::Value> = CHANNELS
            .iter()
            .map(|(c, _)| json!({"attribute": "channel", "operator": "is", "value": c}))
            .collect();
        self.config(tenant, "route", "all", json!({"UpsertRoute": {"route": {"id": "all", "name": "Every channel", "order": 1, "condition": {"any": channels}, "queue_id": "support"}}}))?;
        self.config(tenant, "sla_policy", "standard", json!({"UpsertSlaPolicy": {"policy": {"id": "standard", "name": "Standard", "order": 1, "default_severity": "normal", "severities": [{"name": "normal", "first_response_minutes": 3, "next_reply_minutes": 5, "resolution_minutes": 20, "counting": "always"}]}}}))?;
        self.config(
            tenant,
            "sentiment",
            "on",
            json!({"SetSentiment": {"enabled": true}}),
        )?;
        // Solved conversations free the agent's capacity: agents here solve and move on.
        self.config(
            tenant,
            "counted_statuses",
            "default",
            json!({"SetCountedStatuses": {"waiting": true, "solved": false}}),
        )?;
        self.config(tenant, "surveys", "on", json!({"SetSurveySettings": {"enabled": true, "delay_seconds": 60, "question": "Were you happy with our help? Reply 1 (happy) or 2 (not happy)."}}))?;
        // Workflows (docs/workflows.md): tag refund requests and raise their priority; reassign
        // a conversation whose agent has not answered in 4 minutes, with a note; apologise to
        // an unhappy customer.
        self.config(tenant, "workflow", "tag-refunds", json!({"UpsertWorkflow": {"workflow": {
            "id": "tag-refunds", "name": "Tag refund requests", "order": 1,
            "triggers": [{"InboundMessageReceived": {}}],
            "condition": {"attribute": "content", "operator": "contains", "value": "refund"},
            "actions": [{"ApplyTags": {"tags": ["refund"]}}, {"SetConversationPriority": {"priority": "high"}}]}}}))?;
        self.config(tenant, "workflow", "reassign-if-no-answer", json!({"UpsertWorkflow": {"workflow": {
            "id": "reassign-if-no-answer", "name": "Reassign if the agent does not answer in 4 minutes", "order": 2,
            "triggers": [{"AgentDidNotReplyFor": {"seconds": 240}}],
            "condition": {"attribute": "conversation.assignee", "operator": "exists"},
            "actions": [
                {"AddNote": {"text": "{{conversation.assignee}} did not answer in 4 minutes: reassigned"}},
                {"UnassignAgent": {}}]}}}))?;
        self.config(tenant, "workflow", "sorry", json!({"UpsertWorkflow": {"workflow": {
            "id": "sorry", "name": "Apologise to unhappy customers", "order": 3,
            "triggers": [{"SurveyFeedbackReceived": {"scores": ["not_happy"]}}],
            "actions": [{"SendMessage": {"content": "We are sorry about #{{conversation.short_id}}. A supervisor will call you."}}]}}}))?;
        for a in 0..AGENTS {
            self.agent_event(tenant, a, json!({"AgentUpdated": {"queues": ["support"]}}))?;
            self.agent_event(
                tenant,
                a,
                json!({"AgentStatusChanged": {"status": "Available"}}),
            )?;
        }
        Ok(())
    }

    fn customer_message(&mut self, tenants: u32) -> Result<(), String> {
        let tenant = format!("tenant-{}", self.rng.below(tenants as usize));
        let (channel, prefix) = CHANNELS[self.rng.below(CHANNELS.len())];
        let from = format!("{prefix}{}", self.rng.below(60));
        let content = TEXTS[self.rng.below(TEXTS.len())];
        let id = self.id("msg");
        let value = serde_json::json!({"id": id, "tenant": tenant, "channel": channel, "from": from, "to": "support", "content": content});
        self.write(Topic::Inbound, &tenant.clone(), value)
    }

    fn schedule(&mut self, due: i64, topic: Topic, tenant: &str, value: serde_json::Value) {
        self.seq += 1;
        self.scheduled
            .insert((due, self.seq), (topic, tenant.to_string(), value));
    }

    /// React to the engine's decisions: reply to and solve assigned conversations, answer
    /// surveys.
    fn react(&mut self, output: &Output) {
        let now = self.now();
        match output {
            Output::Assignment(a) => {
                let json = output.to_json();
                let key = (a.tenant.clone(), a.conversation_id.clone());
                match json
                    .pointer("/event/Assigned/agent_id")
                    .and_then(|v| v.as_str())
                {
                    Some(agent) => {
                        self.holders.insert(key, agent.to_string());
                        self.work_on(&a.tenant, &a.conversation_id, agent);
                    }
                    None if json.pointer("/event/Unassigned").is_some() => {
                        self.holders.remove(&key);
                    }
                    None => {}
                }
            }
            // A customer writes again after the conversation was solved: it reopens with
            // the same agent, who answers and solves it again.
            Output::Conversation(e) => {
                if let ConversationEventKind::StatusChanged(c) = &e.event {
                    let key = (e.tenant.clone(), e.conversation_id.clone());
                    if c.from == Status::Solved && c.to == Status::Open {
                        if let Some(agent) = self.holders.get(&key).cloned() {
                            self.work_on(&e.tenant, &e.conversation_id, &agent);
                        }
                    }
                }
            }
            Output::Outbound(m) if m.content.contains("Reply 1") => {
                let answer = if self.rng.below(4) == 0 { "2" } else { "1" };
                let id = self.id("msg");
                let json = output.to_json();
                let value = serde_json::json!({"id": id, "tenant": m.tenant, "channel": json["channel"], "from": m.to, "to": m.from, "content": answer});
                let at = now + 10_000 + self.rng.below(60) as i64 * 1000;
                self.schedule(at, Topic::Inbound, &m.tenant, value);
            }
            _ => {}
        }
    }

    /// The agent replies 10–90 s from now and solves the conversation 20–80 s after that.
    fn work_on(&mut self, tenant: &str, conv: &str, agent: &str) {
        let now = self.now();
        let reply_at = now + 10_000 + self.rng.below(80) as i64 * 1000;
        let solve_at = reply_at + 20_000 + self.rng.below(60) as i64 * 1000;
        let id = self.id("cmd");
        let reply = serde_json::json!({"id": id, "tenant": tenant, "conversation_id": conv, "by": agent, "command": {"Reply": {"content": "Thanks for writing, let me check that for you."}}});
        self.schedule(reply_at, Topic::Commands, tenant, reply);
        let id = self.id("cmd");
        let solve = serde_json::json!({"id": id, "tenant": tenant, "conversation_id": conv, "by": agent, "command": {"SetStatus": {"status": "solved"}}});
        self.schedule(solve_at, Topic::Commands, tenant, solve);
    }

    fn due(&mut self) -> Result<(), String> {
        let now = self.now();
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (topic, tenant, value) = entry.remove();
            self.write(topic, &tenant, value)?;
        }
        Ok(())
    }

    fn agents_change(&mut self, tenants: u32) -> Result<(), String> {
        let tenant = format!("tenant-{}", self.rng.below(tenants as usize));
        let agent = self.rng.below(AGENTS);
        let busy = self
            .agent_busy
            .entry((tenant.clone(), agent))
            .or_insert(false);
        *busy = !*busy;
        let status = if *busy { "Busy" } else { "Available" };
        self.agent_event(
            &tenant,
            agent,
            serde_json::json!({"AgentStatusChanged": {"status": status}}),
        )
    }

    fn tick(&mut self) -> Result<(), String> {
        let tick = Tick {
            source: "demo".into(),
        };
        app::send_ticks(&self.producer, &self.codec, &tick, PARTITIONS, self.now())?;
        self.sent += PARTITIONS as u64;
        Ok(())
    }
}

/// Run the demo and return its summary.
pub fn run(opts: &DemoOptions) -> Result<String, String> {
    let mock = MockCluster::new(1)
        .map_err(|e| format!("cannot start the in-process Kafka cluster: {e}"))?;
    let mut config = Config::default();
    config.kafka.bootstrap_servers = mock.bootstrap_servers();
    config.kafka.application_id = "switchboard-demo".into();
    config.kafka.guarantee = opts.guarantee;
    config.kafka.instance_id = "demo".into();
    config.topics.create = false;
    config.topics.partitions = PARTITIONS;
    config.ticker.enabled = false;
    let state_dir = std::env::temp_dir().join(format!("switchboard-demo-{}", std::process::id()));
    config.state.dir = state_dir.display().to_string();
    for (name, _) in kafka::topic_plan(&config, "") {
        mock.create_topic(&name, PARTITIONS, 1)
            .map_err(|e| format!("cannot create topic {name}: {e}"))?;
    }
    let metrics = Metrics::new();
    let (queries, inbox) = http::query_channel();
    let addr = http::serve(
        &format!("127.0.0.1:{}", opts.port),
        metrics.clone(),
        Some(queries),
        None,
    )?;
    eprintln!(
        "switchboard demo: in-process Kafka at {}, {} tenants, {} messages/s for {}s",
        config.kafka.bootstrap_servers,
        opts.tenants,
        opts.rate,
        opts.duration.as_secs()
    );
    let base = format!("http://{addr}");
    eprintln!("  wallboard:     {base}/?tenant=tenant-0");
    eprintln!("  metrics:       {base}/metrics");
    eprintln!("  queues:        {base}/tenants/tenant-0/queues");
    eprintln!("  waiting:       {base}/tenants/tenant-0/waiting?limit=20");
    eprintln!("  agent:         {base}/tenants/tenant-0/agents/agent-0");
    eprintln!("  conversation:  {base}/tenants/tenant-0/conversations/%231");
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C (or SIGTERM) ends the traffic early: the summary is printed and the state
    // directory removed all the same.
    let interrupted = app::stop_on_signal()?;
    let engine = {
        let run_opts = RunOptions {
            output_suffix: String::new(),
            start: StartFrom::Committed,
            stop: stop.clone(),
            metrics: metrics.clone(),
            queries: Some(inbox),
            until_end: false,
            directory: None,
        };
        let config = config.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                Runtime::new(config, run_opts)
                    .and_then(Runtime::run)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())?
    };
    let result = drive(&config, opts, &metrics, &stop, &interrupted);
    stop.store(true, Ordering::Relaxed);
    let engine_result = engine
        .join()
        .map_err(|_| "the engine thread panicked".to_string())?;
    let _ = std::fs::remove_dir_all(&state_dir);
    let (sent, wall) = result?;
    engine_result?;
    let mut text = summary(&metrics, sent, wall, opts);
    if interrupted.load(Ordering::Relaxed) {
        text.push_str("  (interrupted before the end of --duration)\n");
    }
    Ok(text)
}

/// `switchboard load`: the demo's simulated contact center written to the Kafka of
/// `config`, for the engines that run there (no engine here). The simulated clock starts at
/// once and runs at the demo's speed; SIGINT or SIGTERM ends it.
pub fn load(config: &Config, opts: &DemoOptions) -> Result<String, String> {
    let interrupted = app::stop_on_signal()?;
    kafka::wait_for_brokers(config, &interrupted)?;
    if config.topics.create {
        kafka::create_topics(config, "").map_err(|e| e.to_string())?;
    }
    eprintln!(
        "switchboard load: {} tenants, {} messages/s to {}",
        opts.tenants, opts.rate, config.kafka.bootstrap_servers
    );
    let metrics = Metrics::new();
    // No engine here to wait for: the engines of the stack take the records when they can.
    metrics.ready.store(true, Ordering::Relaxed);
    let stop = AtomicBool::new(false);
    let (sent, wall) = drive(config, opts, &metrics, &stop, &interrupted)?;
    Ok(format!(
        "switchboard load: {sent} records sent in {:.0} s\n",
        wall.as_secs_f64()
    ))
}

fn drive(
    config: &Config,
    opts: &DemoOptions,
    metrics: &Metrics,
    stop: &AtomicBool,
    interrupted: &AtomicBool,
) -> Result<(u64, Duration), String> {
    let producer = kafka::idempotent_producer(config).map_err(|e| e.to_string())?;
    let codec = Codec::new().map_err(|e| e.to_string())?;
    let watcher: BaseConsumer = {
        let mut c = kafka::client_config(config);
        c.set("group.id", "switchboard-demo-driver")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true");
        c.create().map_err(|e| e.to_string())?
    };
    watcher
        .subscribe(&[
            Topic::Assignments.name(),
            Topic::Outbound.name(),
            Topic::ConversationEvents.name(),
        ])
        .map_err(|e| e.to_string())?;
    let start_ts = app::wall_clock_ms();
    let mut d = Driver {
        producer,
        codec: Codec::new().map_err(|e| e.to_string())?,
        rng: Rng(0x2545_f491_4f6c_dd1d),
        start_wall: Instant::now(),
        start_ts,
        seq: 0,
        sent: 0,
        scheduled: BTreeMap::new(),
        agent_busy: BTreeMap::new(),
        holders: BTreeMap::new(),
    };
    for t in 0..opts.tenants {
        d.setup_tenant(&format!("tenant-{t}"))?;
    }
    // The simulated clock starts when the engine holds its partitions: joining the group
    // takes a few seconds of wall clock, which at 60× would be minutes of customers waiting
    // on an engine that is not there yet (and SLA breaches that are artifacts).
    let setup_done = d.now();
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !metrics.ready.load(Ordering::Relaxed) {
        if interrupted.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() > ready_by {
            return Err("the engine did not get its partitions within 60 s".into());
        }
        producer_poll(&d.producer);
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("switchboard demo: the engine holds its partitions; the simulated clock starts");
    d.start_ts = setup_done;
    d.start_wall = Instant::now();
    let started = Instant::now();
    let step = Duration::from_millis(50);
    let mut owed = 0.0f64;
    let mut last_progress = Instant::now();
    let mut last_tick = Instant::now();
    while started.elapsed() < opts.duration
        && !stop.load(Ordering::Relaxed)
        && !interrupted.load(Ordering::Relaxed)
    {
        let round = Instant::now();
        owed += opts.rate as f64 * step.as_secs_f64();
        while owed >= 1.0 {
            d.customer_message(opts.tenants)?;
            owed -= 1.0;
        }
        if d.rng.below(4) == 0 {
            d.agents_change(opts.tenants)?;
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            d.tick()?;
            last_tick = Instant::now();
        }
        d.due()?;
        while let Some(Ok(m)) = watcher.poll(Duration::ZERO) {
            let Some(topic) = Topic::from_name(m.topic()) else {
                continue;
            };
            let Some(payload) = m.payload() else { continue };
            if let Ok(json) = codec.schema(topic).decode(payload) {
                if let Ok(output) = Output::from_json(topic, json) {
                    d.react(&output);
                }
            }
        }
        producer_poll(&d.producer);
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("{}", progress(metrics, d.sent, started.elapsed()));
            last_progress = Instant::now();
        }
        std::thread::sleep(step.saturating_sub(round.elapsed()));
    }
    kafka::flush(&d.producer, Duration::from_secs(30))?;
    let wall = started.elapsed();
    // Let the engine finish what was sent (bounded; briefly after Ctrl-C).
    let grace = match interrupted.load(Ordering::Relaxed) {
        true => Duration::from_secs(5),
        false => Duration::from_secs(20),
    };
    let deadline = Instant::now() + grace;
    let engine_here = processed(metrics) > 0;
    while engine_here && Instant::now() < deadline && processed(metrics) < d.sent {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((d.sent, wall))
}

fn producer_poll(p: &Producer_) {
    p.poll(Duration::ZERO);
}

fn processed(m: &Metrics) -> u64 {
    Metrics::total(&m.records_in, &[])
}

fn progress(m: &Metrics, sent: u64, elapsed: Duration) -> String {
    format!(
        "[{:>3}s] {sent} records sent, {} processed, {} outputs, {} assigned, {} SLA breaches",
        elapsed.as_secs(),
        processed(m),
        Metrics::total(&m.records_out, &[]),
        Metrics::total(&m.assignments, &[("kind", "Assigned")]),
        Metrics::total(&m.sla, &[("kind", "SlaBreached")]),
    )
}

fn summary(m: &Metrics, sent: u64, wall: Duration, opts: &DemoOptions) -> String {
    let secs = wall.as_secs_f64().max(0.001);
    let n = processed(m);
    let t = |v: &prometheus::IntCounterVec, want: &[(&str, &str)]| Metrics::total(v, want);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nSwitchboard demo summary: {:.0}s of wall clock = {} simulated minutes, {} tenants, {:?}",
        secs,
        (secs * SPEED as f64 / 60.0).round(),
        opts.tenants,
        opts.guarantee
    );
    let _ = writeln!(s, "  input records   {sent} sent, {n} processed");
    let _ = writeln!(
        s,
        "  throughput      {:.0} input records/s",
        n as f64 / secs
    );
    let _ = writeln!(s, "  output records  {}", t(&m.records_out, &[]));
    let _ = writeln!(
        s,
        "  conversations   {} opened, {} customer messages, {} status changes",
        t(&m.conversations, &[("kind", "Opened")]),
        t(&m.conversations, &[("kind", "MessageReceived")]),
        t(&m.conversations, &[("kind", "StatusChanged")]),
    );
    let _ = writeln!(
        s,
        "  assignments     {} ({} single, {} bulk, {} released)",
        t(&m.assignments, &[("kind", "Assigned")]),
        t(
            &m.assignments,
            &[("kind", "Assigned"), ("method", "single")]
        ),
        t(&m.assignments, &[("kind", "Assigned"), ("method", "bulk")]),
        t(&m.assignments, &[("kind", "Unassigned")]),
    );
    let _ = writeln!(
        s,
        "  SLA             {} targets met, {} breached",
        t(&m.sla, &[("kind", "SlaMet")]),
        t(&m.sla, &[("kind", "SlaBreached")]),
    );
    let _ = writeln!(
        s,
        "  sentiment       {} positive, {} neutral, {} negative",
        t(&m.sentiment, &[("label", "positive")]),
        t(&m.sentiment, &[("label", "neutral")]),
        t(&m.sentiment, &[("label", "negative")]),
    );
    let _ = writeln!(
        s,
        "  CSAT            {} surveys sent, {} happy, {} not happy",
        t(&m.csat, &[("kind", "SurveySent")]),
        t(&m.csat, &[("kind", "SurveyFeedback"), ("score", "happy")]),
        t(
            &m.csat,
            &[("kind", "SurveyFeedback"), ("score", "not_happy")]
        ),
    );
    let _ = writeln!(
        s,
        "  workflows       {} runs: {} refunds tagged, {} reassigned for no answer, {} apologies",
        t(&m.workflow_runs, &[]),
        t(&m.workflow_runs, &[("workflow", "tag-refunds")]),
        t(&m.workflow_runs, &[("workflow", "reassign-if-no-answer")]),
        t(&m.workflow_runs, &[("workflow", "sorry")]),
    );
    let _ = writeln!(s, "  dead letters    {}", m.dlq.get());
    s
}
