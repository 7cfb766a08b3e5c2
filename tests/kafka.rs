//! End-to-end tests of the Kafka runtime against a real Kafka-protocol broker process (tansu,
//! installed by `tests/broker.sh`), with the engine run as its own process.
//!
//! Every test compares what the engine wrote to Kafka with what `simulate`'s processors
//! derive from the same input records (with the same offsets): per output topic partition,
//! the same records in the same order, byte for byte after decoding. A lost output, a
//! duplicate or a reordering fails the comparison.
//!
//! The tansu tests run the `deduplicated` guarantee: tansu 0.6.0 has no transactions. The
//! `exactly_once` path runs against librdkafka's mock cluster, which accepts the transaction
//! calls but does not enforce their isolation (docs/guarantees.md says what that proves).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::registry::Wire;
use switchboard::runtime::decode_input;
use switchboard_processors::partition::{partition_of, tenant_of_key};
use switchboard_processors::simulation::{self, SourceRecord};
use switchboard_processors::Settings;
use switchboard_schemas::{Codec, Input, Output, Topic};

const PARTITIONS: i32 = 4;

/// The broker a test runs against: tansu as its own process, or librdkafka's mock cluster
/// in this test's process (which the engine process reaches over loopback like any broker).
struct Broker {
    child: Option<Child>,
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    addr: String,
    /// The TLS terminator in front of tansu, when the broker is reached over TLS.
    tls: Option<Child>,
    /// librdkafka properties every client of this broker needs (TLS settings).
    client_properties: Vec<(String, String)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        for c in [self.child.as_mut(), self.tls.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `switchboard <args> --config <config>`, run to its end.
fn switchboard(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("switchboard {args:?}: {e}"))
}

/// [`switchboard`], which must succeed: its standard output.
fn switchboard_ok(args: &[&str], config: &Path) -> String {
    let out = switchboard(args, config);
    assert!(
        out.status.success(),
        "switchboard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_port(port: u16, what: &str) {
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, with the `openssl` command.
fn make_certificates(dir: &Path) {
    let run = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=e2e-ca -keyout ca.key -out ca.pem");
    run("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr");
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write san.ext");
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile san.ext -out server.pem",
    );
    // A second CA that signed nothing here: trusting it must fail.
    run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem");
    // A client certificate signed by the CA, for brokers that ask for one.
    run("req -newkey rsa:2048 -nodes -subj /CN=switchboard -keyout client.key -out client.csr");
    run(
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -out client.pem",
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn tansu_binary() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broker.sh");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/broker.sh");
    assert!(
        out.status.success(),
        "tests/broker.sh could not provide tansu 0.6.0"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Broker {
    fn start() -> Broker {
        let port = free_port();
        Broker::tansu(port, port)
    }

    /// tansu listening on `port`, telling clients to come to `advertised`.
    fn tansu(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_for_port(port, "tansu");
        Broker {
            child: Some(child),
            mock: None,
            addr: format!("127.0.0.1:{advertised}"),
            tls: None,
            client_properties: Vec::new(),
        }
    }

    /// tansu behind a TLS terminator (socat's `openssl-listen`, from Debian's packages) with a
    /// certificate for 127.0.0.1 signed by a CA made in `dir`; tansu advertises the TLS port,
    /// so every connection a client makes is TLS. Clients trust the CA.
    fn start_tls(dir: &Path) -> Broker {
        Broker::behind_tls(dir, false)
    }

    /// Like [`Broker::start_tls`], and the terminator asks every client for a certificate
    /// signed by the CA (mutual TLS); clients present `client.pem`.
    fn start_mtls(dir: &Path) -> Broker {
        let mut broker = Broker::behind_tls(dir, true);
        broker.client_properties.extend([
            (
                "ssl.certificate.location".into(),
                dir.join("client.pem").display().to_string(),
            ),
            (
                "ssl.key.location".into(),
                dir.join("client.key").display().to_string(),
            ),
        ]);
        broker
    }

    fn behind_tls(dir: &Path, client_certificates: bool) -> Broker {
        make_certificates(dir);
        let (plain, tls) = (free_port(), free_port());
        let mut broker = Broker::tansu(plain, tls);
        let verify = if client_certificates {
            format!("verify=1,cafile={}", dir.join("ca.pem").display())
        } else {
            "verify=0".to_string()
        };
        let proxy = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert={},key={},{verify}",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat (apt-get install socat)");
        broker.tls = Some(proxy);
        wait_for_port(tls, "socat");
        broker.client_properties = vec![
            ("security.protocol".into(), "ssl".into()),
            (
                "ssl.ca.location".into(),
                dir.join("ca.pem").display().to_string(),
            ),
        ];
        broker
    }

    fn mock() -> Broker {
        let mock = MockCluster::new(1).expect("mock cluster");
        Broker {
            addr: mock.bootstrap_servers(),
            child: None,
            mock: Some(mock),
            tls: None,
            client_properties: Vec::new(),
        }
    }

    /// Transactions: only the mock cluster takes them (tansu 0.6.0 has no EndTxn).
    fn transactional(&self) -> bool {
        self.mock.is_some()
    }
}

/// The engine as a child process, with its own config file and state directory.
struct Engine {
    child: Option<Child>,
}

impl Engine {
    fn start(config: &Path, log: &Path) -> Engine {
        Engine::command(&["run"], config, log)
    }

    /// `switchboard <args> --config <config>`, logging to `log`.
    fn command(args: &[&str], config: &Path, log: &Path) -> Engine {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("engine log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the engine");
        Engine { child: Some(child) }
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "engine exited with {status}");
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("engine did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Setup {
    broker: Broker,
    dir: tempfile::TempDir,
    codec: Codec,
    wire: Wire,
}

impl Setup {
    fn new() -> Setup {
        Setup::on(Broker::start())
    }

    fn on(broker: Broker) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        Setup {
            broker,
            dir,
            codec: Codec::new().expect("codec"),
            wire: Wire::builtin().expect("wire"),
        }
    }

    fn config(&self, name: &str, application_id: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\napplication_id = \"{application_id}\"\nguarantee = \"{}\"\ninstance_id = \"{name}\"\n\n[topics]\ncreate = {}\npartitions = {PARTITIONS}\n\n[state]\ndir = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n[ticker]\nenabled = false\n\n[engine]\nmax_idle_ms = 2000\nthreads = 4\n\n[kafka.properties]\n\"batch.num.messages\" = \"1\"\n\"session.timeout.ms\" = \"6000\"\n\"max.poll.interval.ms\" = \"30000\"\n{}{extra}",
            self.broker.addr,
            if self.broker.transactional() { "exactly_once" } else { "deduplicated" },
            // The mock cluster's admin API does not answer: it creates topics itself.
            self.broker.mock.is_none(),
            self.dir.path().join(format!("state-{name}")).display(),
            free_port(),
            self.broker
                .client_properties
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}\n"))
                .collect::<String>(),
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // tansu 0.6.0 reports a partition's high watermark as the last batch's base offset
        // + 1, which is only right for one-record batches (docs/guarantees.md).
        c.set("bootstrap.servers", &self.broker.addr)
            .set("batch.num.messages", "1");
        for (k, v) in &self.broker.client_properties {
            c.set(k, v);
        }
        c
    }

    fn create_topics(&self, config: &Path) {
        if let Some(mock) = &self.broker.mock {
            let config = switchboard::config::Config::load(config.to_str()).expect("config");
            for (name, _) in switchboard::kafka::topic_plan(&config, "") {
                mock.create_topic(&name, PARTITIONS, 1)
                    .expect("create topic");
            }
            return;
        }
        switchboard_ok(&["topics", "create"], config);
    }

    /// Produce `records` (topic, key, ts, value or raw bytes, partition), returning them as
    /// the source records `simulate` would see, with their real offsets.
    fn produce(&self, records: &[Rec]) -> Vec<SourceRecord> {
        let producer: BaseProducer = self
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .expect("producer");
        let mut next: BTreeMap<(Topic, i32), i64> = BTreeMap::new();
        let consumer = self.reader();
        let mut out = Vec::new();
        for r in records {
            let p = r.partition.unwrap_or_else(|| {
                let tenant = tenant_of_key(r.key.as_deref().unwrap_or(""));
                partition_of(tenant, PARTITIONS as u32) as i32
            });
            let bytes = match &r.value {
                Value::Json(v) => {
                    let input = Input::from_json(r.topic, v.clone()).expect("scenario record");
                    input.encode(&self.codec).expect("encode")
                }
                Value::Raw(b) => b.clone(),
            };
            let offset = *next.entry((r.topic, p)).or_insert_with(|| {
                consumer
                    .fetch_watermarks(r.topic.name(), p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            });
            next.insert((r.topic, p), offset + 1);
            let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(r.topic.name())
                .partition(p)
                .payload(bytes.as_slice())
                .timestamp(r.ts);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_str());
            }
            producer.send(rec).map_err(|(e, _)| e).expect("send");
            producer.poll(Duration::ZERO);
            let decoded = decode_input(
                &self.wire,
                r.topic,
                Some(r.ts),
                r.key.as_deref(),
                Some(&bytes),
            )
            .map_err(|e| e.to_string());
            out.push(SourceRecord {
                topic: r.topic,
                key: r.key.clone(),
                ts: r.ts,
                partition: Some(p as u32),
                line: None,
                offset: Some(offset),
                raw: bytes,
                decoded,
            });
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        out
    }

    fn reader(&self) -> BaseConsumer {
        self.client()
            .set("group.id", "e2e-reader")
            // An empty fetch returns at once: reading a topic partition by partition waits
            // 500 ms (the default) per partition otherwise.
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("reader")
    }

    /// Every record of the output topics (with `suffix`), per (topic, partition), decoded.
    fn outputs(&self, suffix: &str) -> Outputs {
        self.output_rows(suffix)
            .into_iter()
            .map(|(tp, rows)| (tp, rows.into_iter().map(|(_, row)| row).collect()))
            .collect()
    }

    /// Like [`Setup::outputs`], each record with its dedup key (source and seq headers).
    fn output_rows(&self, suffix: &str) -> KeyedOutputs {
        let consumer = self.reader();
        let mut out: KeyedOutputs = BTreeMap::new();
        for t in Topic::ALL.iter().filter(|t| !t.is_input()) {
            let name = format!("{}{suffix}", t.name());
            for p in 0..PARTITIONS {
                let (low, high) = consumer
                    .fetch_watermarks(&name, p, Duration::from_secs(10))
                    .expect("watermarks");
                if high <= low {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&name, p, Offset::Offset(low))
                    .expect("tpl");
                consumer.assign(&tpl).expect("assign");
                let rows = out.entry((t.name().to_string(), p)).or_default();
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut pos = low;
                while pos < high {
                    assert!(Instant::now() < deadline, "reading {name}/{p} stalled");
                    let Some(m) = consumer.poll(Duration::from_millis(50)) else {
                        // Transaction markers take offsets but are never delivered.
                        if let Ok(position) = consumer.position() {
                            if let Some(Offset::Offset(o)) =
                                position.find_partition(&name, p).map(|e| e.offset())
                            {
                                pos = pos.max(o);
                            }
                        }
                        continue;
                    };
                    let m = m.expect("consume");
                    pos = m.offset() + 1;
                    let json = self
                        .wire
                        .decode_json_blocking(*t, m.payload().expect("payload"))
                        .expect("decode output");
                    let output = Output::from_json(*t, json).expect("output record");
                    let header = |k: &str| {
                        m.headers().and_then(|h| {
                            h.iter()
                                .find(|x| x.key == k)
                                .and_then(|x| x.value)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                    };
                    let dedup = header(switchboard::kafka::SOURCE_HEADER)
                        .zip(header(switchboard::kafka::SEQ_HEADER).and_then(|v| v.parse().ok()));
                    rows.push((
                        dedup,
                        (
                            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            m.timestamp().to_millis().unwrap_or(-1),
                            output.to_json().to_string(),
                        ),
                    ));
                }
            }
        }
        out
    }

    /// The output records as a consumer using the dedup key sees them: per (source, seq)
    /// only the last record, in the order of first appearance.
    fn outputs_by_dedup_key(&self, suffix: &str) -> Outputs {
        let mut out: Outputs = BTreeMap::new();
        for (tp, rows) in self.output_rows(suffix) {
            let mut order = Vec::new();
            let mut last = BTreeMap::new();
            for (key, row) in rows {
                let key = key.expect("every output carries the dedup key headers");
                if !last.contains_key(&key) {
                    order.push(key.clone());
                }
                last.insert(key, row);
            }
            out.insert(
                tp,
                order.into_iter().filter_map(|k| last.remove(&k)).collect(),
            );
        }
        out
    }

    fn count(&self, suffix: &str) -> i64 {
        if self.broker.transactional() {
            // Watermarks also count transaction markers: count the records themselves.
            return total(&self.outputs(suffix));
        }
        let consumer = self.reader();
        let mut n = 0;
        for t in Topic::ALL.iter().filter(|t| !t.is_input()) {
            for p in 0..PARTITIONS {
                if let Ok((low, high)) = consumer.fetch_watermarks(
                    &format!("{}{suffix}", t.name()),
                    p,
                    Duration::from_secs(10),
                ) {
                    n += high - low;
                }
            }
        }
        n
    }

    /// Wait until the output topics hold `want` records (and no more arrive), or time out.
    fn wait_for(&self, suffix: &str, want: i64, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.count(suffix);
            if n >= want || Instant::now() > deadline {
                // A moment more: anything beyond `want` would be a duplicate to catch.
                std::thread::sleep(Duration::from_millis(500));
                return self.count(suffix);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An output record as compared: key, timestamp, value (as the JSON mirror).
type Row = (Option<String>, i64, String);
type Outputs = BTreeMap<(String, i32), Vec<Row>>;
/// `switchboard.source` and `switchboard.seq`.
type DedupKey = (String, u64);
type KeyedOutputs = BTreeMap<(String, i32), Vec<(Option<DedupKey>, Row)>>;

enum Value {
    Json(serde_json::Value),
    Raw(Vec<u8>),
}

struct Rec {
    topic: Topic,
    key: Option<String>,
    ts: i64,
    partition: Option<i32>,
    value: Value,
}

fn expected(records: Vec<SourceRecord>) -> Outputs {
    let emitted =
        simulation::run(records, PARTITIONS as u32, &Settings::default()).expect("simulate");
    let mut out: Outputs = BTreeMap::new();
    for e in emitted {
        out.entry((e.output.topic().name().to_string(), e.partition as i32))
            .or_default()
            .push((
                e.output.key().map(str::to_string),
                e.ts,
                e.output.to_json().to_string(),
            ));
    }
    out
}

fn dump(logs: &[PathBuf]) {
    for l in logs {
        eprintln!(
            "--- {}\n{}",
            l.display(),
            std::fs::read_to_string(l).unwrap_or_default()
        );
    }
}

fn assert_count(got: i64, want: i64, what: &str, logs: &[PathBuf]) {
    if got != want {
        dump(logs);
        panic!("{what}: {got} output records, expected {want}");
    }
}

fn total(o: &Outputs) -> i64 {
    o.values().map(|v| v.len() as i64).sum()
}

fn assert_same(actual: &Outputs, expected: &Outputs, what: &str, logs: &[PathBuf]) {
    for (k, want) in expected {
        let got = actual.get(k).cloned().unwrap_or_default();
        if &got != want {
            dump(logs);
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{what}: {}/{} has {} records, expected {}; first difference at {:?}: got {:?}, want {:?}",
                k.0,
                k.1,
                got.len(),
                want.len(),
                first,
                first.map(|i| &got[i]),
                first.map(|i| &want[i]),
            );
        }
    }
    let extra: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k) && !actual[*k].is_empty())
        .collect();
    assert!(extra.is_empty(), "{what}: unexpected outputs in {extra:?}");
}

/// The commented example scenario, as records (its unparseable line left out: Kafka records
/// are Avro; undecodable bytes are added separately where a test needs them).
fn quickstart() -> Vec<Rec> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.jsonl"),
    )
    .expect("read quickstart");
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(topic) = v["topic"].as_str().and_then(Topic::from_name) else {
            continue;
        };
        // Records whose value does not fit the schema become undecodable bytes on Kafka.
        let value = match Input::from_json(topic, v["value"].clone()) {
            Ok(_) => Value::Json(v["value"].clone()),
            Err(_) => Value::Raw(v["value"].to_string().into_bytes()),
        };
        let key = v["key"].as_str().map(str::to_string);
        let ts = v["ts"].as_i64().expect("ts");
        match (topic, v["partition"].as_i64()) {
            (Topic::Ticks, None) => {
                for p in 0..PARTITIONS {
                    out.push(Rec {
                        topic,
                        key: None,
                        ts,
                        partition: Some(p),
                        value: Value::Json(v["value"].clone()),
                    });
                }
            }
            (_, p) => out.push(Rec {
                topic,
                key,
                ts,
                partition: p.map(|p| p as i32),
                value,
            }),
        }
    }
    out
}

/// The generated contact center of `switchboard::workload`, with an undecodable record
/// now and then.
fn load(tenants: usize, messages: usize) -> Vec<Rec> {
    let mut out = Vec::new();
    for (i, r) in switchboard::workload::contact_center(tenants, messages)
        .into_iter()
        .enumerate()
    {
        if i % 397 == 200 {
            out.push(Rec {
                topic: Topic::Inbound,
                key: r.key.clone().filter(|_| r.topic != Topic::Config),
                ts: r.ts,
                partition: None,
                value: Value::Raw(b"\x00 not avro".to_vec()),
            });
        }
        out.push(Rec {
            topic: r.topic,
            key: r.key,
            ts: r.ts,
            partition: r.partition,
            value: Value::Json(r.value),
        });
    }
    out
}

/// R-RUN-1, R-TIME-3, R-TOPIC: the quickstart scenario through Kafka gives exactly
/// `simulate`'s outputs, per output partition and in order; undecodable records (and records
/// the processors reject) land in cc.dlq with their source offset, original bytes and reason,
/// and the partition keeps flowing.
#[test]
fn r_run_1_kafka_outputs_equal_simulate_and_bad_records_go_to_the_dlq() {
    let s = Setup::new();
    let config = s.config("one", "e2e", "\n[metrics]\nlive_interval_ms = 200\n");
    s.create_topics(&config);
    let mut records = quickstart();
    // Undecodable bytes in the middle of a partition, then more valid records after them.
    let garbage_at = records.len() / 2;
    records.insert(
        garbage_at,
        Rec {
            topic: Topic::Inbound,
            key: Some("acme".into()),
            ts: 1_772_442_000_500,
            partition: None,
            value: Value::Raw(b"\xde\xad\xbe\xef".to_vec()),
        },
    );
    let sources = s.produce(&records);
    let want = expected(sources.clone());
    let dlq = &want[&(
        "cc.dlq".to_string(),
        partition_of("acme", PARTITIONS as u32) as i32,
    )];
    assert!(
        dlq.iter()
            .any(|(_, _, v)| v.contains("cannot decode") && v.contains("\"source_offset\"")),
        "the reference itself must carry the undecodable record: {dlq:?}"
    );
    let mut engine = Engine::start(&config, &s.log("one"));
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    assert_live_figures_match_simulate(&config, sources.clone());
    assert_queries_match_simulate(&config, sources, &[s.log("one")]);
    engine.terminate();
    assert_same(&s.outputs(""), &want, "kafka vs simulate", &[s.log("one")]);
    assert_count(n, total(&want), "kafka vs simulate", &[s.log("one")]);
}

/// R-RUN-4: the live gauges on /metrics (open conversations, each queue's waiting count,
/// agents by status group) equal what `simulate`'s engines hold at the end.
fn assert_live_figures_match_simulate(config: &Path, sources: Vec<SourceRecord>) {
    let (_, engines) = simulation::run_engines(sources, PARTITIONS as u32, &Settings::default())
        .expect("simulate");
    let mut want = Vec::new();
    let (mut open, mut agents) = (0, [0u64; 4]);
    let mut queues: BTreeMap<String, u64> = BTreeMap::new();
    for e in &engines {
        for f in e.live_figures().into_values() {
            open += f.open_conversations;
            for (i, n) in f.agents.iter().enumerate() {
                agents[i] += n;
            }
            for (q, (waiting, _)) in f.queues {
                *queues.entry(q).or_default() += waiting;
            }
        }
    }
    want.push(format!(
        "switchboard_open_conversations{{tenant=\"all\"}} {open}"
    ));
    for (q, n) in &queues {
        want.push(format!(
            "switchboard_queue_waiting{{queue=\"{q}\",tenant=\"all\"}} {n}"
        ));
    }
    for ((_, group), n) in switchboard_processors::query::GROUPS.iter().zip(agents) {
        want.push(format!(
            "switchboard_agents{{group=\"{group}\",tenant=\"all\"}} {n}"
        ));
    }
    assert!(
        !queues.is_empty() && open > 0,
        "the scenario leaves open work"
    );
    let addr = http_addr(config);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = http_get(&addr, "/metrics");
        let missing: Vec<&String> = want.iter().filter(|w| !text.contains(w.as_str())).collect();
        // Per partition: the state store's size, and nothing left to restore.
        let acme = partition_of("acme", PARTITIONS as u32);
        let state_bytes = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("switchboard_state_bytes{{partition=\"{acme}\"}} "))
            })
            .and_then(|v| v.trim().parse::<u64>().ok());
        let restored = text.contains(&format!(
            "switchboard_restore_remaining_records{{partition=\"{acme}\"}} 0"
        ));
        if missing.is_empty() && state_bytes.is_some_and(|b| b > 0) && restored {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "live gauges differ from simulate: missing {missing:?} (state bytes {state_bytes:?}, restored {restored}) in\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` on the engine's HTTP endpoint: the status and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_full(addr, path);
    (status, body)
}

/// `GET path` on the engine's HTTP endpoint: the status, the head and the body.
fn http_get_full(addr: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let Ok(mut sock) = std::net::TcpStream::connect(addr) else {
        return (0, String::new(), String::new());
    };
    let _ = sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut text = String::new();
    let _ = sock.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// The `[http] listen` address written into a test config.
fn http_addr(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("read config");
    text.lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("listen address")
        .to_string()
}

/// R-RUN-5: the engine's interactive queries over HTTP answer exactly what the same queries
/// answer over `simulate`'s final state for the same input: a conversation (by short id) with
/// its assignee, SLA clocks, mood and survey; a queue's waiting list; each agent's load; and
/// 404 with a reason for a conversation that does not exist.
fn assert_queries_match_simulate(config: &Path, sources: Vec<SourceRecord>, logs: &[PathBuf]) {
    use switchboard_processors::query::{Answer, Query};
    let (_, engines) = simulation::run_engines(sources, PARTITIONS as u32, &Settings::default())
        .expect("simulate");
    let tenant = "acme".to_string();
    let state = engines[partition_of(&tenant, PARTITIONS as u32) as usize].state();
    let asked = [
        (
            "/tenants/acme/conversations/%231",
            Query::Conversation {
                tenant: tenant.clone(),
                reference: "#1".into(),
            },
        ),
        (
            "/tenants/acme/conversations/%232",
            Query::Conversation {
                tenant: tenant.clone(),
                reference: "#2".into(),
            },
        ),
        (
            "/tenants/acme/queues/billing",
            Query::Queue {
                tenant: tenant.clone(),
                queue: "billing".into(),
            },
        ),
        (
            "/tenants/acme/agents/ana",
            Query::Agent {
                tenant: tenant.clone(),
                agent: "ana".into(),
            },
        ),
        (
            "/tenants/acme/agents/bo",
            Query::Agent {
                tenant: tenant.clone(),
                agent: "bo".into(),
            },
        ),
    ];
    let addr = http_addr(config);
    for (path, query) in asked {
        let Answer::Found(want) = query.answer(state) else {
            panic!("simulate's state has no answer to {query:?}");
        };
        assert!(
            want["conversation"].is_object()
                || want["queue"].is_object()
                || want["agent"].is_object()
        );
        // Records that emit nothing may still be in flight when the last output shows up.
        let deadline = Instant::now() + Duration::from_secs(30);
        let got = loop {
            let (status, body) = http_get(&addr, path);
            let got: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if (status == 200 && got == want) || Instant::now() > deadline {
                break (status, got);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if got != (200, want.clone()) {
            dump(logs);
            panic!("{path}: the engine answered {got:?}, simulate's state answers {want}");
        }
    }
    let (status, body) = http_get(&addr, "/tenants/acme/conversations/%23999");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("#999"), "{body}");
}

/// R-RUN-1 (exactly_once): the engine's transactional path (init, begin, produce, send
/// offsets, commit per round) against librdkafka's mock cluster gives `simulate`'s outputs,
/// dead letters included. The mock does not hide aborted records from `read_committed`
/// readers, so this proves the call sequence and the outputs of committed rounds, not the
/// isolation of aborted ones.
#[test]
fn r_run_1_exactly_once_path_on_the_mock_cluster_equals_simulate() {
    let s = Setup::on(Broker::mock());
    let config = s.config("eos", "e2e-eos", "");
    s.create_topics(&config);
    let mut records = quickstart();
    records.push(Rec {
        topic: Topic::Commands,
        key: Some("acme".into()),
        ts: 1_772_442_000_700,
        partition: None,
        value: Value::Raw(b"not avro at all".to_vec()),
    });
    let sources = s.produce(&records);
    let want = expected(sources);
    let mut engine = Engine::start(&config, &s.log("eos"));
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_same(
        &s.outputs(""),
        &want,
        "exactly_once on the mock",
        &[s.log("eos")],
    );
    assert_count(n, total(&want), "exactly_once on the mock", &[s.log("eos")]);
}

/// R-RUN-1, R-RUN-7 (exactly_once): a round whose outputs cannot be written is aborted,
/// and the engine exits with one readable line (crash-only); a restart redoes the round
/// from the last committed state. The mock cluster leaks the aborted round's records to
/// `read_committed` readers, so this reads them as a consumer would with the documented
/// dedup key (`switchboard.source`, `switchboard.seq`), keeping the last record of each
/// key: the redone round's outputs replace the aborted ones exactly.
#[test]
fn r_run_1_exactly_once_aborts_a_failed_round_and_a_restart_redoes_it() {
    let s = Setup::on(Broker::mock());
    let config = s.config("abort", "e2e-abort", "");
    s.create_topics(&config);
    let sources = s.produce(&quickstart());
    let want = expected(sources);
    let mock = s.broker.mock.as_ref().expect("mock cluster");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 3],
    );
    let failed = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .expect("run the engine");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success(),
        "the engine ignored a failed round"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("switchboard: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    let mut engine = Engine::start(&config, &s.log("abort"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let deduped = loop {
        let deduped = s.outputs_by_dedup_key("");
        if total(&deduped) >= total(&want) || Instant::now() > deadline {
            break deduped;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    engine.terminate();
    assert_same(&deduped, &want, "after an aborted round", &[s.log("abort")]);
}

/// R-RUN-1, R-RUN-2 (deduplicated guarantee): SIGKILL at several points under load, restart
/// each time; every expected output appears exactly once, in order.
#[test]
fn r_run_2_sigkill_under_load_loses_and_duplicates_nothing() {
    let s = Setup::new();
    let config = s.config("crash", "e2e-crash", "");
    s.create_topics(&config);
    let sources = s.produce(&load(6, 2_500));
    let want = expected(sources);
    let all = total(&want);
    let log = s.log("crash");
    for fraction in [0.1, 0.3, 0.55, 0.8] {
        let mut engine = Engine::start(&config, &log);
        let target = (all as f64 * fraction) as i64;
        let deadline = Instant::now() + Duration::from_secs(90);
        while s.count("") < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        engine.kill();
    }
    let mut engine = Engine::start(&config, &log);
    let n = s.wait_for("", all, Duration::from_secs(120));
    engine.terminate();
    let replayed = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("replaying an unfinished batch")
        .count();
    eprintln!("crash test: {replayed} unfinished batches replayed over 4 kills");
    assert_count(n, all, "after 4 crashes", std::slice::from_ref(&log));
    // The kills land while outputs are being written, so recovery must have replayed
    // unfinished batches (skipping what they had written), not just restarted cleanly.
    assert!(
        replayed >= 1,
        "no kill interrupted a batch: the test proved nothing"
    );
    assert_same(&s.outputs(""), &want, "after crashes", &[log]);
}

/// R-RUN-2, R-RUN-3: a second instance joins mid-stream, then the first leaves; partitions
/// and their state move through the changelog and nothing is lost or repeated.
#[test]
fn r_run_3_second_instance_joins_and_first_leaves() {
    let s = Setup::new();
    let a = s.config("a", "e2e-two", "");
    let b = s.config("b", "e2e-two", "");
    s.create_topics(&a);
    let sources = s.produce(&load(8, 2_000));
    let want = expected(sources);
    let all = total(&want);
    let mut first = Engine::start(&a, &s.log("a"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while s.count("") < all / 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = Engine::start(&b, &s.log("b"));
    std::thread::sleep(Duration::from_secs(4));
    first.terminate();
    let n = s.wait_for("", all, Duration::from_secs(120));
    second.terminate();
    assert_count(n, all, "two instances", &[s.log("a"), s.log("b")]);
    assert_same(
        &s.outputs(""),
        &want,
        "two instances",
        &[s.log("a"), s.log("b")],
    );
}

/// Issue 16 item 3, R-RUN-5: with two instances in the group, either one answers for any
/// tenant: a query for a tenant whose partition the other instance holds is forwarded there
/// (the answer names who answered), and `/tenants` lists every instance's tenants.
#[test]
fn r_run_5_any_instance_answers_for_any_tenant() {
    let s = Setup::new();
    let a = s.config("a", "e2e-scale", "");
    let b = s.config("b", "e2e-scale", "");
    s.create_topics(&a);
    let sources = s.produce(&load(8, 400));
    let all = total(&expected(sources));
    let logs = [s.log("a"), s.log("b")];
    let mut first = Engine::start(&a, &logs[0]);
    let mut second = Engine::start(&b, &logs[1]);
    let n = s.wait_for("", all, Duration::from_secs(120));
    assert_count(n, all, "two instances", &logs);
    let (addr_a, addr_b) = (http_addr(&a), http_addr(&b));
    let tenants: Vec<String> = (0..8).map(|t| format!("t{t}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Every tenant answered by both instances; some by forwarding from each side.
        let mut forwarded = [0, 0];
        let mut failures = Vec::new();
        for t in &tenants {
            for (i, addr) in [&addr_a, &addr_b].into_iter().enumerate() {
                let (status, head, body) = http_get_full(addr, &format!("/tenants/{t}/queues"));
                if status != 200 || !body.contains("\"waiting_count\"") {
                    failures.push(format!("{addr} {t}: {status} {body}"));
                }
                if head
                    .to_ascii_lowercase()
                    .contains("x-switchboard-answered-by: http://")
                {
                    forwarded[i] += 1;
                }
            }
        }
        let (_, listed) = http_get(&addr_a, "/tenants");
        let listed_all = tenants.iter().all(|t| listed.contains(&format!("\"{t}\"")));
        if failures.is_empty() && forwarded[0] > 0 && forwarded[1] > 0 && listed_all {
            break;
        }
        if Instant::now() > deadline {
            dump(&logs);
            panic!("not every tenant answered everywhere: {failures:?}, forwarded {forwarded:?}, /tenants: {listed}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    first.terminate();
    second.terminate();
}

/// Issue 16 item 6: `switchboard load` (the compose stack's load generator) writes the demo's
/// simulated contact center to a real broker, and an engine there fills with it: the
/// wallboard's tenants, queues and agents appear.
#[test]
fn load_generator_feeds_an_engine_on_a_real_broker() {
    let s = Setup::new();
    let config = s.config("load", "e2e-load", "");
    s.create_topics(&config);
    let out = switchboard_ok(
        &["load", "--duration", "3s", "--rate", "40", "--tenants", "2"],
        &config,
    );
    assert!(out.contains("records sent"), "{out}");
    let log = s.log("load");
    let mut engine = Engine::start(&config, &log);
    let addr = http_addr(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(&addr, "/tenants/tenant-1/wallboard");
        let board: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let agents: u64 = ["available", "busy", "away", "unavailable"]
            .iter()
            .filter_map(|g| board["agents"][g].as_u64())
            .sum();
        if status == 200 && agents == 30 && board["open_conversations"].as_u64() > Some(0) {
            break;
        }
        if Instant::now() > deadline {
            dump(&[log]);
            panic!("the engine never showed the load: {status} {body}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    engine.terminate();
}

/// R-RUN-2: with the local state directory deleted, the state is restored from the changelog
/// topic: records written afterwards continue the same conversations; and R-RUN-6: a replay
/// into fresh state under a new application id writes the same records to its own topics.
#[test]
fn r_run_2_restore_after_state_loss_and_r_run_6_replay_equals_original() {
    let s = Setup::new();
    let config = s.config("r", "e2e-restore", "");
    s.create_topics(&config);
    let records = load(4, 600);
    let (head, tail) = records.split_at(records.len() / 2);
    let mut sources = s.produce(head);
    let first_half = expected(sources.clone());
    let mut engine = Engine::start(&config, &s.log("r"));
    let n = s.wait_for("", total(&first_half), Duration::from_secs(90));
    engine.terminate();
    assert_count(n, total(&first_half), "first half", &[s.log("r")]);
    std::fs::remove_dir_all(s.dir.path().join("state-r")).expect("delete the state directory");
    sources.extend(s.produce(tail));
    let want = expected(sources.clone());
    let mut engine = Engine::start(&config, &s.log("r"));
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_count(n, total(&want), "after restore", &[s.log("r")]);
    let original = s.outputs("");
    assert_same(&original, &want, "after restore", &[s.log("r")]);

    // Replay from the beginning into fresh state and separate output topics.
    let replay_cfg = s.config("replay", "unused", "");
    switchboard_ok(
        &["topics", "create", "--output-suffix", ".replay"],
        &replay_cfg,
    );
    let mut replay = Engine::command(
        &[
            "replay",
            "--from-beginning",
            "--application-id",
            "e2e-replay",
            "--output-suffix",
            ".replay",
        ],
        &replay_cfg,
        &s.log("replay"),
    );
    let n = s.wait_for(".replay", total(&want), Duration::from_secs(90));
    replay.terminate();
    assert_count(n, total(&want), "replay", &[s.log("replay")]);
    assert_same(
        &s.outputs(".replay"),
        &original,
        "replay vs original",
        &[s.log("replay")],
    );

    // Replay from a timestamp: the records at or after it, into fresh state (every input
    // partition here is in timestamp order, so "at or after" is a suffix of each).
    let from = sources[sources.len() * 3 / 4].ts;
    let later: Vec<SourceRecord> = sources.into_iter().filter(|r| r.ts >= from).collect();
    let want_later = expected(later);
    let ts_cfg = s.config("replay-ts", "unused-ts", "");
    let mut replay = Engine::command(
        &[
            "replay",
            "--from-timestamp",
            &from.to_string(),
            "--application-id",
            "e2e-replay-ts",
            "--output-suffix",
            ".ts",
        ],
        &ts_cfg,
        &s.log("replay-ts"),
    );
    let n = s.wait_for(".ts", total(&want_later), Duration::from_secs(90));
    replay.terminate();
    assert_count(
        n,
        total(&want_later),
        "replay from a timestamp",
        &[s.log("replay-ts")],
    );
    assert_same(
        &s.outputs(".ts"),
        &want_later,
        "replay from a timestamp",
        &[s.log("replay-ts")],
    );
}

/// R-TIME-5: the ticker writes a Tick to every partition of cc.ticks, about once per
/// `ticker.interval_ms`, with the wall clock as event time; SIGTERM stops it cleanly.
#[test]
fn r_time_5_ticker_writes_a_tick_to_every_partition() {
    let s = Setup::new();
    let config = s.config("ticker", "e2e-ticker", "");
    s.create_topics(&config);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut ticker = Engine::command(&["ticker"], &config, &s.log("ticker"));
    std::thread::sleep(Duration::from_millis(3_500));
    ticker.terminate();
    let consumer = s.reader();
    for p in 0..PARTITIONS {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("cc.ticks", p, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut ticks = Vec::new();
        while let Some(m) = consumer.poll(Duration::from_millis(1_000)) {
            let m = m.expect("consume");
            let input = decode_input(
                &s.wire,
                Topic::Ticks,
                m.timestamp().to_millis(),
                None,
                m.payload(),
            )
            .expect("a tick decodes");
            assert!(matches!(input, Input::Tick(_)));
            ticks.push(m.timestamp().to_millis().expect("timestamp"));
        }
        assert!(
            (2..=6).contains(&ticks.len()),
            "partition {p}: {} ticks in 3.5 s at 1 s intervals",
            ticks.len()
        );
        assert!(ticks.iter().all(|&t| t >= started - 1_000), "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] - w[0] >= 500), "{ticks:?}");
    }
}

/// Issue 14, findings 1, 2 and 7 through Kafka (and issue 13's wrong-partition dead letter):
/// a config record whose condition nests 5,000
/// deep (35 KB of Avro that would overflow the decoder's stack), and an undecodable record
/// with a late timestamp ahead of valid records on its topic, are each one dead letter; the
/// valid records behind them are processed as `simulate` processes them (the command on the
/// new conversation is applied, not dead-lettered as `unknown conversation`); 300 idle HTTP
/// connections leave /healthz answering; and a restart over the same topics comes up.
#[test]
fn hostile_records_never_stop_a_partition() {
    let s = Setup::new();
    let config = s.config("hostile", "e2e-hostile", "");
    s.create_topics(&config);
    let mut records = quickstart();
    // Encoded on a thread with room for the recursion of building it.
    let deep = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(|| {
            let mut condition = serde_json::json!({"attribute": "channel", "operator": "is", "value": "sms"});
            for _ in 0..5_000 {
                condition = serde_json::json!({ "not": condition });
            }
            let record = serde_json::json!({"id": "cfg-deep", "tenant": "acme", "version": 1, "change": {"UpsertRoute": {"route": {
                "id": "deep", "order": 1, "condition": condition, "queue_id": "billing"}}}});
            Codec::new()
                .expect("codec")
                .schema(Topic::Config)
                .encode(&record)
                .expect("encode")
        })
        .expect("spawn")
        .join()
        .expect("encode the deep record");
    records.insert(
        5,
        Rec {
            topic: Topic::Config,
            key: Some("acme/route/deep".into()),
            ts: 1_772_431_200_009,
            partition: None,
            value: Value::Raw(deep),
        },
    );
    let t = 1_772_442_000_000;
    let message = serde_json::json!({"id": "h-1", "tenant": "hostile", "channel": "sms", "from": "+1", "to": "+2", "content": "hello"});
    let note = serde_json::json!({"id": "h-2", "tenant": "hostile", "conversation_id": "#1", "by": "ana", "command": {"AddNote": {"text": "seen"}}});
    records.extend([
        Rec {
            topic: Topic::Inbound,
            key: Some("hostile".into()),
            ts: t + 1_000_000,
            partition: None,
            value: Value::Raw(b"\x00 late garbage".to_vec()),
        },
        Rec {
            topic: Topic::Inbound,
            key: Some("hostile".into()),
            ts: t + 10,
            partition: None,
            value: Value::Json(message),
        },
        Rec {
            topic: Topic::Commands,
            key: Some("hostile".into()),
            ts: t + 20,
            partition: None,
            value: Value::Json(note),
        },
        // Written by a producer whose partitioner disagrees: never applied.
        Rec {
            topic: Topic::Inbound,
            key: Some("hostile".into()),
            ts: t + 30,
            partition: Some((partition_of("hostile", PARTITIONS as u32) as i32 + 1) % PARTITIONS),
            value: Value::Json(serde_json::json!({"id": "h-3", "tenant": "hostile", "channel": "sms", "from": "+9", "to": "+2", "content": "misplaced"})),
        },
    ]);
    let sources = s.produce(&records);
    let want = expected(sources);
    let reasons: Vec<String> = want
        .iter()
        .filter(|((topic, _), _)| topic == "cc.dlq")
        .flat_map(|(_, rows)| rows.iter().map(|(_, _, v)| v.clone()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("nested deeper than the limit")),
        "the deep record is a dead letter"
    );
    let hostile: Vec<&String> = reasons
        .iter()
        .filter(|r| r.contains("\"key\":\"hostile\""))
        .collect();
    assert_eq!(
        hostile.len(),
        2,
        "the garbage and the misplaced record: {hostile:?}"
    );
    assert!(
        hostile.iter().any(|r| r.contains("cannot decode")),
        "{hostile:?}"
    );
    let right = partition_of("hostile", PARTITIONS as u32);
    assert!(
        hostile
            .iter()
            .any(|r| r.contains(&format!("it belongs on partition {right}"))),
        "{hostile:?}"
    );
    let log = s.log("hostile");
    let mut engine = Engine::start(&config, &log);
    let addr = http_addr(&config);
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert_eq!(idle.len(), 300);
    let (status, _) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "/healthz with 300 idle connections open");
    drop(idle);
    engine.terminate();
    assert_same(
        &s.outputs(""),
        &want,
        "hostile records",
        std::slice::from_ref(&log),
    );
    assert_count(
        n,
        total(&want),
        "hostile records",
        std::slice::from_ref(&log),
    );
    // A restart over the same topics (the poison record included) comes up and is ready.
    // (Ready: /readyz answers 200 and every partition has logged its restore.)
    let restored = |engine_log: &Path| {
        std::fs::read_to_string(engine_log)
            .unwrap_or_default()
            .matches("state restored")
            .count()
    };
    let ready = |engine_log: &Path| {
        let before = restored(engine_log);
        let mut engine = Engine::start(&config, engine_log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while (http_get(&addr, "/readyz").0 != 200
            || restored(engine_log) < before + PARTITIONS as usize)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(http_get(&addr, "/readyz").0, 200, "ready after a restart");
        assert_eq!(restored(engine_log), before + PARTITIONS as usize);
        engine.terminate();
    };
    ready(&log);
    assert_count(
        s.count(""),
        total(&want),
        "nothing new after the restart",
        std::slice::from_ref(&log),
    );

    // `switchboard state delete` removes a row locally and in the changelog: after the state
    // directory is lost, the restore from the changelog does not bring it back.
    let partition = partition_of("acme", PARTITIONS as u32).to_string();
    let state = |args: &[&str]| {
        let args: Vec<&str> = ["state"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["--partition", partition.as_str()])
            .collect();
        switchboard_ok(&args, &config)
    };
    let keys = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter_map(|l| l.strip_prefix("ok"))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    };
    let before = keys(&state(&["list"]));
    let victim = before
        .iter()
        .find(|k| k.starts_with('c'))
        .expect("a conversation row")
        .clone();
    let deleted = state(&["delete", "--key", &victim]);
    assert!(
        deleted.contains("and in e2e-hostile-state-changelog"),
        "{deleted}"
    );
    let store = std::fs::read_to_string(&config)
        .expect("config")
        .lines()
        .find_map(|l| {
            l.strip_prefix("dir = \"")
                .and_then(|d| d.strip_suffix('"'))
                .map(str::to_string)
        })
        .expect("state dir");
    std::fs::remove_dir_all(
        Path::new(&store)
            .join("e2e-hostile")
            .join(format!("partition-{partition}")),
    )
    .expect("lose the state directory");
    ready(&log);
    let after = keys(&state(&["list"]));
    assert!(
        !after.contains(&victim),
        "{victim} came back from the changelog"
    );
    assert_eq!(after.len(), before.len() - 1, "every other row restored");
}

/// Issue 13: the engine reaches a broker over TLS (tansu behind socat's TLS terminator, a
/// CA made by the test): its outputs equal `simulate`'s. With a CA that did not sign the
/// broker's certificate it says so within 10 s, in a log line naming the broker, and
/// answers /readyz with 503 (no partition assigned) while /healthz answers 200.
#[test]
fn over_tls_outputs_equal_simulate_and_a_wrong_ca_is_named() {
    let certs = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(Broker::start_tls(certs.path()));
    let config = s.config("tls", "e2e-tls", "");
    s.create_topics(&config);
    let sources = s.produce(&quickstart());
    let want = expected(sources);
    let log = s.log("tls");
    let mut engine = Engine::start(&config, &log);
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_same(
        &s.outputs(""),
        &want,
        "over TLS",
        std::slice::from_ref(&log),
    );
    assert_count(n, total(&want), "over TLS", std::slice::from_ref(&log));

    let wrong = s.config("wrong-ca", "e2e-wrong-ca", "");
    let text = std::fs::read_to_string(&wrong).expect("config");
    std::fs::write(&wrong, text.replace("ca.pem", "other.pem")).expect("config");
    let wrong_log = s.log("wrong-ca");
    let mut engine = Engine::start(&wrong, &wrong_log);
    let started = Instant::now();
    let named = |text: &str| {
        text.lines()
            .find(|l| l.contains(&s.broker.addr) && l.contains("certificate verify failed"))
            .map(str::to_string)
    };
    let mut line = None;
    while line.is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        line = named(&std::fs::read_to_string(&wrong_log).unwrap_or_default());
    }
    // Up, but not ready: no partition is assigned (the brokers cannot even be reached).
    let addr = http_addr(&wrong);
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    engine.kill();
    assert!(
        line.is_some(),
        "no line naming {} and the certificate within 10 s:\n{}",
        s.broker.addr,
        std::fs::read_to_string(&wrong_log).unwrap_or_default()
    );
}

/// Issue 13 item 1: with a broker that asks for client certificates (mutual TLS), the engine
/// presents its own (`ssl.certificate.location`, `ssl.key.location`) and its outputs equal
/// `simulate`'s; without one it cannot join, and /readyz stays 503.
#[test]
fn mutual_tls_outputs_equal_simulate_and_no_certificate_is_refused() {
    let certs = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(Broker::start_mtls(certs.path()));
    let config = s.config("mtls", "e2e-mtls", "");
    s.create_topics(&config);
    let sources = s.produce(&quickstart());
    let want = expected(sources);
    let log = s.log("mtls");
    let mut engine = Engine::start(&config, &log);
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_same(
        &s.outputs(""),
        &want,
        "over mutual TLS",
        std::slice::from_ref(&log),
    );
    assert_count(
        n,
        total(&want),
        "over mutual TLS",
        std::slice::from_ref(&log),
    );

    let anonymous = s.config("no-cert", "e2e-no-cert", "");
    let text = std::fs::read_to_string(&anonymous).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.contains("ssl.certificate.location") && !l.contains("ssl.key.location"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&anonymous, text).expect("config");
    let anonymous_log = s.log("no-cert");
    let mut engine = Engine::start(&anonymous, &anonymous_log);
    std::thread::sleep(Duration::from_secs(8));
    let addr = http_addr(&anonymous);
    assert_eq!(
        http_get(&addr, "/readyz").0,
        503,
        "no partitions without a certificate"
    );
    engine.kill();
    let logged = std::fs::read_to_string(&anonymous_log).unwrap_or_default();
    assert!(
        logged
            .lines()
            .any(|l| l.contains(&s.broker.addr) && (l.contains("SSL") || l.contains("ssl"))),
        "no line naming {} and the TLS failure:\n{logged}",
        s.broker.addr
    );
}

/// Issue 13: `switchboard produce` writes records as the engine expects them (Avro, each on
/// its tenant's partition, keyed, timestamped, ticks on every partition): the quickstart
/// written by it gives the engine's outputs `simulate` gives for the file (dead letters
/// aside, whose ids name offsets on Kafka and lines in a file); its lines that are not
/// records are reported and not written.
#[test]
fn switchboard_produce_writes_what_the_engine_expects() {
    let s = Setup::new();
    let config = s.config("produce", "e2e-produce", "");
    s.create_topics(&config);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.jsonl");
    let out = switchboard(
        &["produce", "--input", example.to_str().expect("path")],
        &config,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "the broken line is reported: {stdout}"
    );
    // Two lines of the quickstart are not records on purpose: one is not JSON, one names a
    // channel that does not exist.
    assert_eq!(
        stderr.trim(),
        "switchboard: 2 line(s) not written (listed above)"
    );
    assert!(
        stdout.contains("cc.inbound: ") && stdout.contains("not written: line "),
        "{stdout}"
    );

    let text = std::fs::read(&example).expect("read the example");
    let (records, _broken) = simulation::parse_jsonl(&text);
    let records: Vec<SourceRecord> = records.into_iter().filter(|r| r.decoded.is_ok()).collect();
    let without_dlq =
        |o: Outputs| -> Outputs { o.into_iter().filter(|((t, _), _)| t != "cc.dlq").collect() };
    let all = expected(records);
    let log = s.log("produce");
    let mut engine = Engine::start(&config, &log);
    let n = s.wait_for("", total(&all), Duration::from_secs(90));
    engine.terminate();
    assert_count(
        n,
        total(&all),
        "produced quickstart",
        std::slice::from_ref(&log),
    );
    assert_same(
        &without_dlq(s.outputs("")),
        &without_dlq(all),
        "produced quickstart",
        &[log],
    );
}

/// Issue 13: `replay --until-end` runs beside the engine (its own HTTP port), stops by itself
/// once caught up with the end offsets it saw at start, prints a summary and exits 0, with
/// the outputs `simulate` gives; `--from-beginning` under an application id that already has
/// committed offsets is refused with one line instead of silently resuming.
#[test]
fn replay_until_end_finishes_and_from_beginning_never_resumes() {
    let s = Setup::new();
    let config = s.config("live", "e2e-live", "");
    s.create_topics(&config);
    let sources = s.produce(&quickstart());
    let want = expected(sources);
    switchboard_ok(
        &["topics", "create", "--output-suffix", ".backfill"],
        &config,
    );
    // The engine runs on the configured HTTP port; the replay beside it must not clash.
    let mut engine = Engine::start(&config, &s.log("live"));
    let replay = |log: &str| {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "replay",
                "--from-beginning",
                "--until-end",
                "--application-id",
                "e2e-backfill",
                "--output-suffix",
                ".backfill",
                "--config",
            ])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(s.log(log)).expect("log"))
            .spawn()
            .expect("replay");
        let out = child.wait_with_output().expect("replay exits");
        (out, started.elapsed())
    };
    let (out, took) = replay("backfill");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay --until-end failed after {took:?}: {stdout}\n{}",
        std::fs::read_to_string(s.log("backfill")).unwrap_or_default()
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert!(stdout.starts_with("replay caught up: "), "{stdout}");
    assert_same(
        &s.outputs(".backfill"),
        &want,
        "replay --until-end",
        &[s.log("backfill")],
    );
    let (again, _) = replay("backfill-again");
    assert!(!again.status.success());
    let said = std::fs::read_to_string(s.log("backfill-again")).unwrap_or_default();
    let last = said.lines().last().unwrap_or("");
    assert!(
        last.starts_with("switchboard: --from-beginning: application id \"e2e-backfill\" already has committed offsets"),
        "{said}"
    );
    engine.terminate();
}

/// R-FLOW-4: the action executor (`switchboard actions`) against a real broker and a real
/// HTTP server: SIGKILLed twice while it works, it loses no request (every request reaches the
/// server and gets a succeeded outcome on cc.action-outcomes), every repeat of a call carries
/// the same idempotency key, and a request the server keeps refusing ends in cc.dlq.
#[test]
fn r_flow_4_action_executor_loses_no_request_across_sigkills() {
    use switchboard_schemas::{ActionKind, ActionRequest, CallApi};
    let s = Setup::new();
    // The server: 40 ms per call (so kills land mid-batch); the first call of every 9th
    // request answers 503 (a retry); the "refuse" request always gets 400.
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", server.server_addr());
    let calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let calls2 = std::sync::Arc::clone(&calls);
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let key = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Idempotency-Key"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let path = request.url().to_string();
            let first = {
                let mut c = calls2.lock().expect("calls");
                let first = !c.iter().any(|(k, _)| *k == key);
                c.push((key, path.clone()));
                first
            };
            let n: usize = path.trim_start_matches("/r/").parse().unwrap_or(0);
            let status = if path == "/refuse" {
                400
            } else if first && n % 9 == 0 {
                503
            } else {
                200
            };
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(40));
                let _ = request.respond(tiny_http::Response::empty(status));
            });
        }
    });
    let config = s.config(
        "actions",
        "e2e-actions",
        &format!(
            "\n[actions]\nhttp_listen = \"127.0.0.1:{}\"\nbatch_size = 40\nbackoff_initial_ms = 10\nbackoff_max_ms = 50\nmax_attempts = 3\n",
            free_port()
        ),
    );
    s.create_topics(&config);
    let total = 400;
    let producer: BaseProducer = s
        .client()
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut want = std::collections::BTreeSet::new();
    for i in 0..=total {
        let tenant = format!("t{}", i % 5);
        let (id, path) = if i == total {
            ("refuse".to_string(), "/refuse".to_string())
        } else {
            (format!("req-{i}"), format!("/r/{i}"))
        };
        let request = ActionRequest {
            id: id.clone(),
            tenant: tenant.clone(),
            conversation_id: "cv-1".into(),
            workflow_id: "wf".into(),
            idempotency_key: format!("sb-{id}"),
            action: ActionKind::CallApi(CallApi {
                method: "POST".into(),
                url: format!("{url}{path}"),
                content_type: "application/json".into(),
                headers: Default::default(),
                body: "{}".into(),
            }),
        };
        let bytes = Output::Action(request).encode(&s.codec).expect("encode");
        let p = partition_of(&tenant, PARTITIONS as u32) as i32;
        let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(Topic::Actions.name())
            .partition(p)
            .key(tenant.as_str())
            .payload(bytes.as_slice());
        producer.send(rec).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
        if i < total {
            want.insert(format!("sb-{id}"));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let log = s.log("actions");
    let distinct = || {
        let c = calls.lock().expect("calls");
        c.iter()
            .map(|(k, _)| k.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    for reached in [100, 250] {
        let mut executor = Engine::command(&["actions"], &config, &log);
        let deadline = Instant::now() + Duration::from_secs(90);
        while distinct() < reached && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        executor.kill();
    }
    let mut executor = Engine::command(&["actions"], &config, &log);
    // Done when every request has an outcome.
    let outcome_ids = || -> std::collections::BTreeMap<String, String> {
        s.outputs("")
            .into_iter()
            .filter(|((topic, _), _)| topic == Topic::ActionOutcomes.name())
            .flat_map(|(_, rows)| rows)
            .map(|(_, _, json)| {
                let v: serde_json::Value = serde_json::from_str(&json).expect("json");
                (
                    v["id"].as_str().unwrap_or("").to_string(),
                    v["outcome"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while outcome_ids().len() < total + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    executor.terminate();
    let outcomes = outcome_ids();
    assert_eq!(outcomes.len(), total + 1, "requests without an outcome");
    assert!(
        outcomes.iter().all(|(id, o)| o
            == if id == "refuse" {
                "failed"
            } else {
                "succeeded"
            }),
        "{outcomes:?}"
    );
    // Every request reached the server; every call carried its request's key.
    let calls = calls.lock().expect("calls").clone();
    for (key, path) in &calls {
        let expected = match path.as_str() {
            "/refuse" => "sb-refuse".to_string(),
            p => format!("sb-req-{}", p.trim_start_matches("/r/")),
        };
        assert_eq!(key, &expected, "a call to {path} carried another key");
    }
    let keys: std::collections::BTreeSet<String> = calls.iter().map(|(k, _)| k.clone()).collect();
    assert!(
        want.is_subset(&keys),
        "requests that never reached the server"
    );
    let repeats = calls.len() - keys.len();
    eprintln!(
        "executor crash test: {} calls for {} requests",
        calls.len(),
        keys.len()
    );
    assert!(
        repeats > 0,
        "no call was repeated: the kills proved nothing"
    );
    // The refused request is a dead letter with its reason.
    let dead: Vec<String> = s
        .outputs("")
        .into_iter()
        .filter(|((topic, _), _)| topic == Topic::Dlq.name())
        .flat_map(|(_, rows)| rows)
        .map(|(_, _, json)| json)
        .collect();
    assert!(
        dead.iter().any(|d| d.contains("\"refuse\"")
            && d.contains("Call API failed after 1 attempt(s): HTTP 400")),
        "{dead:?}"
    );
}

/// The test schema registry (`tests/python/schema_registry.py`: the REST subset Confluent's
/// clients use), with basic auth, its state in a file so it can be stopped and started again.
struct SchemaRegistry {
    child: Option<Child>,
    port: u16,
    state: PathBuf,
    /// Serving HTTPS with the certificates of [`make_certificates`] in this folder.
    tls: Option<PathBuf>,
}

const REGISTRY_USER: &str = "switchboard";
const REGISTRY_PASSWORD: &str = "s3cret-registry-password";

impl SchemaRegistry {
    fn start(dir: &Path) -> SchemaRegistry {
        let mut r = SchemaRegistry {
            child: None,
            port: free_port(),
            state: dir.join("registry.json"),
            tls: None,
        };
        r.resume();
        r
    }

    /// Over HTTPS, with a certificate for 127.0.0.1 signed by a CA made in `dir`.
    fn start_tls(dir: &Path) -> SchemaRegistry {
        make_certificates(dir);
        let mut r = SchemaRegistry {
            child: None,
            port: free_port(),
            state: dir.join("registry.json"),
            tls: Some(dir.to_path_buf()),
        };
        r.resume();
        r
    }

    fn resume(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/schema_registry.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &self.port.to_string(), "--state"])
            .arg(&self.state)
            .args(["--user", REGISTRY_USER, "--password", REGISTRY_PASSWORD])
            .args(self.tls.iter().flat_map(|dir| {
                [
                    "--cert".into(),
                    dir.join("server.pem").into_os_string(),
                    "--key".into(),
                    dir.join("server.key").into_os_string(),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test schema registry");
        self.child = Some(child);
        wait_for_port(self.port, "schema registry");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that verifies the registry, when it serves HTTPS.
    fn ca(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|dir| dir.join("ca.pem").display().to_string())
    }

    /// The `[schema_registry]` section of an engine config using this registry.
    fn config(&self, framing: &str) -> String {
        let ca = self
            .ca()
            .map(|ca| format!("ca_location = \"{ca}\"\n"))
            .unwrap_or_default();
        format!(
            "\n[schema_registry]\nurl = \"{}\"\nusername = \"{REGISTRY_USER}\"\npassword = \"{REGISTRY_PASSWORD}\"\noutput_framing = \"{framing}\"\n{ca}",
            self.url()
        )
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/python/confluent_clients.py <args>` (Confluent's Python client, installed by
/// `tests/python/deps.sh`), which must succeed: its standard output.
fn confluent_clients(s: &Setup, registry: &SchemaRegistry, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deps = Command::new("bash")
        .arg(root.join("tests/python/deps.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/python/deps.sh");
    assert!(
        deps.status.success(),
        "tests/python/deps.sh could not install confluent-kafka"
    );
    let out = Command::new("python3")
        .arg(root.join("tests/python/confluent_clients.py"))
        .args(args)
        .args(["--bootstrap", &s.broker.addr, "--registry", &registry.url()])
        .args(["--user", REGISTRY_USER, "--password", REGISTRY_PASSWORD])
        .args(
            registry
                .ca()
                .iter()
                .flat_map(|ca| ["--ca".to_string(), ca.clone()]),
        )
        .env("PYTHONPATH", String::from_utf8_lossy(&deps.stdout).trim())
        .output()
        .expect("run confluent_clients.py");
    assert!(
        out.status.success(),
        "confluent_clients.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Setup {
    /// Write `records` with Confluent's Python producer, each with the writer schema and
    /// framing `choose` gives it: (writer, framing, the value to write).
    fn produce_with_confluent_client(
        &self,
        registry: &SchemaRegistry,
        records: &[Rec],
        choose: impl Fn(
            usize,
            &Rec,
            &serde_json::Value,
        ) -> (&'static str, &'static str, serde_json::Value),
    ) {
        let mut lines = String::new();
        for (i, r) in records.iter().enumerate() {
            let Value::Json(v) = &r.value else { continue };
            let p = r.partition.unwrap_or_else(|| {
                partition_of(
                    tenant_of_key(r.key.as_deref().unwrap_or("")),
                    PARTITIONS as u32,
                ) as i32
            });
            let (writer, framing, value) = choose(i, r, v);
            let line = serde_json::json!({
                "topic": r.topic.name(), "partition": p, "key": r.key, "ts": r.ts,
                "value": value, "writer": writer, "framing": framing,
            });
            lines.push_str(&format!("{line}\n"));
        }
        let file = self.dir.path().join("confluent-records.jsonl");
        std::fs::write(&file, lines).expect("write the records");
        confluent_clients(
            self,
            registry,
            &["produce", "--input", file.to_str().expect("path")],
        );
    }

    /// Every record of the input topics, read back and decoded as the engine decodes them
    /// (with `self.wire`), in offset order per topic and partition.
    fn read_inputs(&self) -> Vec<SourceRecord> {
        let consumer = self.reader();
        let mut out = Vec::new();
        for t in Topic::INPUTS {
            for p in 0..PARTITIONS {
                let (low, high) = consumer
                    .fetch_watermarks(t.name(), p, Duration::from_secs(10))
                    .expect("watermarks");
                if high <= low {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(t.name(), p, Offset::Offset(low))
                    .expect("tpl");
                consumer.assign(&tpl).expect("assign");
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut pos = low;
                while pos < high {
                    assert!(Instant::now() < deadline, "reading {t}/{p} stalled");
                    let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let m = m.expect("consume");
                    pos = m.offset() + 1;
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let ts = m.timestamp().to_millis().expect("timestamp");
                    let bytes = m.payload().unwrap_or_default().to_vec();
                    let decoded =
                        decode_input(&self.wire, t, Some(ts), key.as_deref(), Some(&bytes))
                            .map_err(|e| e.to_string());
                    out.push(SourceRecord {
                        topic: t,
                        key,
                        ts,
                        partition: Some(p as u32),
                        line: None,
                        offset: Some(m.offset()),
                        raw: bytes,
                        decoded,
                    });
                }
            }
        }
        out
    }
}

/// The quickstart's records that are records (its undecodable bytes left out).
fn quickstart_records() -> Vec<Rec> {
    quickstart()
        .into_iter()
        .filter(|r| matches!(r.value, Value::Json(_)))
        .collect()
}

/// Issue 13 items 4 and 5, R-TOPIC (SPEC §11, encoding): with a schema registry configured,
/// the engine reads what Confluent's own Python producer (confluent-kafka's AvroSerializer)
/// writes, in the Confluent wire format and in single-object framing, with the topic's
/// current schema, its previous one and the next one (a field added with a default, an enum
/// symbol added): no record is dead-lettered for its schema, each decodes to the record that
/// was written, and the outputs equal `simulate`'s. The outputs are written in the Confluent
/// wire format with their schemas registered under `<topic>-value`, and Confluent's
/// AvroDeserializer reads every one of them as the record the engine wrote.
#[test]
fn confluent_clients_and_the_engine_interoperate_through_a_schema_registry() {
    let mut s = Setup::new();
    let registry = SchemaRegistry::start(s.dir.path());
    let config = s.config("registry", "e2e-registry", &registry.config("confluent"));
    s.create_topics(&config);
    s.wire = Wire::for_thread(&switchboard::config::Config::load(config.to_str()).expect("config"))
        .expect("wire");
    let records = quickstart_records();
    let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
    s.produce_with_confluent_client(&registry, &records, |i, r, v| {
        // The previous schema where the topic has one and the record fits it.
        let previous = r.topic.previous_schema_texts().first().and_then(|text| {
            let old = switchboard_schemas::TopicSchema::parse(text).expect("old schema");
            let known: serde_json::Value = serde_json::from_str(text).expect("json");
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| {
                    known["fields"]
                        .as_array()
                        .expect("fields")
                        .iter()
                        .any(|f| f["name"] == *k)
                });
            }
            old.encode(&v).ok().map(|_| v)
        });
        let chosen = match (i % 6, previous) {
            (0, _) => ("current", "confluent", v.clone()),
            (1, _) => ("next", "confluent", v.clone()),
            (2, _) => ("next", "single_object", v.clone()),
            (3, Some(old)) => ("previous", "confluent", old),
            (4, Some(old)) => ("previous", "single_object", old),
            _ => ("current", "single_object", v.clone()),
        };
        used.borrow_mut().insert((chosen.0, chosen.1));
        chosen
    });
    assert_eq!(
        used.borrow().len(),
        6,
        "every writer version in both framings: {used:?}"
    );
    let sources = s.read_inputs();
    assert_eq!(sources.len(), records.len(), "every record was written");
    // Each record decodes, whatever its writer schema and framing, to what was written
    // (fields the previous schema lacked take their defaults, which the samples hold).
    for src in &sources {
        let decoded = src.decoded.as_ref().unwrap_or_else(|e| {
            panic!(
                "{} record at offset {:?} not decoded: {e}",
                src.topic, src.offset
            )
        });
        let framing = src.raw[0];
        assert!(framing == 0 || framing == 0xC3, "{framing}");
        let written = records
            .iter()
            .filter(|r| r.topic == src.topic && r.ts == src.ts && r.key == src.key)
            .any(|r| matches!(&r.value, Value::Json(v) if Input::from_json(r.topic, v.clone()).ok().as_ref() == Some(decoded)));
        assert!(
            written,
            "{} record at offset {:?} decoded to something not written: {decoded:?}",
            src.topic, src.offset
        );
    }
    let confluent = sources.iter().filter(|r| r.raw[0] == 0).count();
    assert!(
        confluent > 5 && confluent < sources.len(),
        "both framings: {confluent} of {}",
        sources.len()
    );

    let want = expected(sources);
    let log = s.log("registry");
    let mut engine = Engine::start(&config, &log);
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_count(
        n,
        total(&want),
        "through the registry",
        std::slice::from_ref(&log),
    );
    let got = s.outputs("");
    assert_same(
        &got,
        &want,
        "through the registry",
        std::slice::from_ref(&log),
    );

    // Confluent's deserializer reads every output.
    let topics: Vec<&str> = Topic::ALL
        .iter()
        .filter(|t| !t.is_input() && **t != Topic::ActionOutcomes)
        .map(|t| t.name())
        .collect();
    let printed = confluent_clients(
        &s,
        &registry,
        &[
            "consume",
            "--topics",
            &topics.join(","),
            "--partitions",
            &PARTITIONS.to_string(),
        ],
    );
    let mut read: Outputs = BTreeMap::new();
    for line in printed.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let topic = Topic::from_name(r["topic"].as_str().expect("topic")).expect("a topic");
        let output = Output::from_json(topic, r["value"].clone())
            .unwrap_or_else(|e| panic!("{topic}: {e}: {}", r["value"]));
        read.entry((
            topic.name().to_string(),
            r["partition"].as_i64().expect("p") as i32,
        ))
        .or_default()
        .push((
            r["key"].as_str().map(str::to_string),
            r["ts"].as_i64().expect("ts"),
            output.to_json().to_string(),
        ));
    }
    assert_same(&read, &want, "read by Confluent's AvroDeserializer", &[log]);
}

/// Issue 13 item 4: a schema registry that cannot be reached holds the records that need it
/// (a WARN names the registry; nothing is dead-lettered, nothing is written for them), and
/// once it answers again they are processed as `simulate` processes them. The registry
/// serves HTTPS with a certificate the engine verifies with `schema_registry.ca_location`.
#[test]
fn a_schema_registry_outage_holds_records_and_dead_letters_none() {
    let mut s = Setup::new();
    let certs = tempfile::tempdir().expect("temp dir");
    let mut registry = SchemaRegistry::start_tls(certs.path());
    // Outputs in single-object framing: the engine needs the registry only for its inputs.
    let config = s.config("outage", "e2e-outage", &registry.config("single_object"));
    s.create_topics(&config);
    let records = quickstart_records();
    // Every record with a writer schema the engine has never seen (ids it must fetch).
    s.produce_with_confluent_client(&registry, &records, |_, _, v| {
        ("next", "confluent", v.clone())
    });
    registry.stop();

    let log = s.log("outage");
    let mut engine = Engine::start(&config, &log);
    let started = Instant::now();
    let warned = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains("WARN")
                    && l.contains("schema registry unavailable")
                    && l.contains(&registry.url())
            })
    };
    while !warned() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        warned(),
        "no WARN naming the registry:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.count(""),
        0,
        "nothing is written (no dead letter) while the registry is away"
    );

    registry.resume();
    s.wire = Wire::for_thread(&switchboard::config::Config::load(config.to_str()).expect("config"))
        .expect("wire");
    let want = expected(s.read_inputs());
    let n = s.wait_for("", total(&want), Duration::from_secs(90));
    engine.terminate();
    assert_count(
        n,
        total(&want),
        "after the outage",
        std::slice::from_ref(&log),
    );
    assert_same(&s.outputs(""), &want, "after the outage", &[log]);
}
