//! The runtime's building blocks: RocksDB state stores (R-RUN-2) and the configuration
//! (R-RUN-7).

use switchboard::config::{Config, ConfigError, Guarantee};
use switchboard::state_store::{Checkpoint, RocksStore};
use switchboard_processors::{Engine, MemStore, Settings, Store};
use switchboard_schemas::*;

fn inbound(id: &str, from: &str, content: &str) -> Input {
    Input::Inbound(InboundMessage::text(
        id,
        "acme",
        Channel::Sms,
        from,
        "+100",
        content,
    ))
}

fn command(id: &str, conv: &str, status: Status) -> Input {
    Input::Command(Command {
        id: id.into(),
        tenant: "acme".into(),
        conversation_id: conv.into(),
        by: None,
        command: CommandKind::SetStatus(SetStatus { status }),
    })
}

fn stream() -> Vec<(i64, Input)> {
    let t = 1_772_445_600_000;
    let mut out = Vec::new();
    for i in 0..30i64 {
        out.push((
            t + i * 1000,
            inbound(&format!("m{i}"), &format!("+{}", i % 7), "hello"),
        ));
        if i % 5 == 4 {
            out.push((
                t + i * 1000 + 1,
                command(
                    &format!("c{i}"),
                    &format!("#{}", i % 4 + 1),
                    if i % 2 == 0 {
                        Status::Solved
                    } else {
                        Status::Closed
                    },
                ),
            ));
        }
    }
    out
}

fn run<S: Store>(engine: &mut Engine<S>, inputs: &[(i64, Input)]) -> Vec<(i64, Output)> {
    let mut out = Vec::new();
    for (ts, i) in inputs {
        out.extend(engine.process(*ts, i).outputs);
        engine.flush().expect("flush");
    }
    out
}

/// R-RUN-2: the engine over RocksDB produces what it produces over the in-memory store, and
/// reopening the RocksDB directory (a restart) continues exactly where it stopped.
#[test]
fn r_run_2_rocksdb_store_restores_state_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = stream();
    let mut reference = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let expected = run(&mut reference, &inputs);

    let (first, second) = inputs.split_at(inputs.len() / 2);
    let mut engine = Engine::open(
        RocksStore::open(dir.path()).expect("open"),
        Settings::default(),
    )
    .expect("engine");
    let mut got = run(&mut engine, first);
    drop(engine);
    let mut reopened = Engine::open(
        RocksStore::open(dir.path()).expect("reopen"),
        Settings::default(),
    )
    .expect("engine");
    got.extend(run(&mut reopened, second));
    assert_eq!(got, expected);
    let rows = reopened.store().entries().expect("entries");
    assert_eq!(
        rows,
        reference.store().entries().expect("entries"),
        "the same rows as the in-memory store"
    );
}

/// R-TIME-1: with the dedup window looked up in RocksDB (as the runtime keeps it, so memory
/// does not grow with traffic), the engine drops exactly the repeats it drops with the window
/// in memory: across a reopen, and across a restore from the changelogged rows alone (the
/// window's index rows, local to RocksDB, deleted, as on a new machine). After a flush no id
/// is held in memory.
#[test]
fn r_time_1_dedup_window_in_rocksdb_drops_the_same_repeats() {
    /// The tag of the window's index rows, which RocksDB alone holds.
    const INDEX: u8 = b'E';
    let dir = tempfile::tempdir().expect("temp dir");
    // Every record twice, the copy a producer's retry.
    let inputs: Vec<(i64, Input)> = stream().into_iter().flat_map(|r| [r.clone(), r]).collect();
    let mut reference = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let expected = run(&mut reference, &inputs);
    // Every copy is dropped, but those of a record that was rejected (and so not remembered).
    let dropped = reference.stats.duplicates;
    assert_eq!(
        dropped + reference.stats.rejected / 2,
        inputs.len() as u64 / 2
    );

    let settings = Settings {
        dedup_in_store: true,
        ..Settings::default()
    };
    // An odd split: a record and its copy fall on both sides of the restart.
    let (first, rest) = inputs.split_at(inputs.len() / 2 + 1);
    let (second, third) = rest.split_at(rest.len() / 2);
    let open = || RocksStore::open(dir.path()).expect("open");
    let mut engine = Engine::open(open(), settings.clone()).expect("engine");
    let mut got = run(&mut engine, first);
    assert_eq!(
        engine.state().dedup.in_memory(),
        0,
        "flushed ids are in RocksDB"
    );
    assert!(!engine.state().dedup.is_empty());
    let mut duplicates = engine.stats.duplicates;
    drop(engine);
    let mut reopened = Engine::open(open(), settings.clone()).expect("engine");
    got.extend(run(&mut reopened, second));
    duplicates += reopened.stats.duplicates;
    drop(reopened);

    let mut store = open();
    let index: Vec<_> = store
        .entries()
        .expect("entries")
        .into_iter()
        .filter(|(k, _)| k[0] == INDEX)
        .map(|(k, _)| (k, None))
        .collect();
    assert!(!index.is_empty(), "the window's ids are indexed in RocksDB");
    store.write(&index).expect("delete the index");
    let mut rebuilt = Engine::open(store, settings).expect("engine");
    got.extend(run(&mut rebuilt, third));
    assert_eq!(got, expected, "the same outputs");
    assert_eq!(
        duplicates + rebuilt.stats.duplicates,
        dropped,
        "the same repeats dropped"
    );

    let rows = rebuilt.store().entries().expect("entries");
    let (index, state): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(k, _)| k[0] == INDEX);
    assert_eq!(
        index.len(),
        rebuilt.state().dedup.len(),
        "one index row per id"
    );
    assert_eq!(
        state,
        reference.store().entries().expect("entries"),
        "the same changelogged rows as the in-memory store"
    );
}

/// R-RUN-2: the changelog checkpoint is kept apart from the state rows, is written in one
/// batch with them, survives a reopen, and can be cleared (after an unclean stop).
#[test]
fn r_run_2_checkpoint_is_kept_apart_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RocksStore::open(dir.path()).expect("open");
    assert_eq!(store.checkpoint().expect("read"), None);
    let checkpoint = Checkpoint {
        changelog_offset: 41,
        inputs: [("cc.inbound".to_string(), 7)].into_iter().collect(),
        seq: 12,
        outputs: Default::default(),
    };
    store
        .commit(&[(b"k".to_vec(), Some(b"v".to_vec()))], &checkpoint)
        .expect("commit");
    drop(store);
    let mut store = RocksStore::open(dir.path()).expect("reopen");
    assert_eq!(store.checkpoint().expect("read"), Some(checkpoint));
    assert_eq!(
        store.entries().expect("entries"),
        vec![(b"k".to_vec(), b"v".to_vec())]
    );
    store.clear_checkpoint().expect("clear");
    assert_eq!(store.checkpoint().expect("read"), None);
    store.write(&[(b"k".to_vec(), None)]).expect("delete");
    assert!(store.entries().expect("entries").is_empty());
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// R-RUN-7: a TOML file with environment overrides; the defaults fill the rest.
#[test]
fn r_run_7_config_file_with_environment_overrides() {
    let text = "[kafka]\nbootstrap_servers = \"broker:9092\"\nguarantee = \"deduplicated\"\n\n[topics]\npartitions = 8\n";
    let c = Config::parse(
        text,
        "switchboard.toml",
        &env(&[
            ("SWITCHBOARD__TOPICS__PARTITIONS", "12"),
            ("SWITCHBOARD__TICKER__ENABLED", "false"),
            // The former single-underscore form still works for a setting it names.
            ("SWITCHBOARD_STATE_DIR", "/var/lib/sb"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.kafka.bootstrap_servers, "broker:9092");
    assert_eq!(c.kafka.guarantee, Guarantee::Deduplicated);
    assert_eq!(
        c.topics.partitions, 12,
        "the environment wins over the file"
    );
    assert!(!c.ticker.enabled);
    assert_eq!(c.state.dir, "/var/lib/sb");
    assert_eq!(c.kafka.application_id, "switchboard", "a default");
    assert_eq!(
        Config::parse("", "none", &[]).expect("defaults"),
        Config::default()
    );
}

/// R-RUN-7: invalid configuration is rejected with the field named.
#[test]
fn r_run_7_invalid_config_names_the_field() {
    let field = |r: Result<Config, ConfigError>| match r {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    };
    assert_eq!(
        field(Config::parse("[topics]\npartitions = 0\n", "f", &[])),
        "topics.partitions"
    );
    assert_eq!(
        field(Config::parse(
            "[kafka]\napplication_id = \"a b\"\n",
            "f",
            &[]
        )),
        "kafka.application_id"
    );
    assert_eq!(
        field(Config::parse("[http]\nlisten = \"everywhere\"\n", "f", &[])),
        "http.listen"
    );
    assert_eq!(
        field(Config::parse(
            "",
            "f",
            &env(&[("SWITCHBOARD_TOPICS_PARTITIONS", "many")])
        )),
        "topics.partitions"
    );
    assert_eq!(
        field(Config::parse(
            "",
            "f",
            &env(&[("SWITCHBOARD__KAFKA__COLOUR", "red")])
        )),
        "kafka.colour"
    );
    match Config::parse("[kafka]\ncolour = \"red\"\n", "switchboard.toml", &[]) {
        Err(ConfigError::Syntax { path, reason }) => {
            assert_eq!(path, "switchboard.toml");
            assert!(reason.contains("unknown field `colour`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 14: a state row that cannot be read is a loud error naming its key, and
/// `switchboard state` finds it and deletes it without wiping the partition: the other
/// rows stay, and the engine opens the store again.
#[test]
fn an_unreadable_state_row_is_named_and_switchboard_state_deletes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(
        &config_path,
        format!(
            "[kafka]\napplication_id = \"repair\"\n\n[state]\ndir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let config = Config::load(config_path.to_str()).expect("load config");
    let store_dir = switchboard::state_cli::partition_dir(&config, 0);
    std::fs::create_dir_all(&store_dir).expect("store dir");
    let mut engine = Engine::open(
        RocksStore::open(&store_dir).expect("open"),
        Settings::default(),
    )
    .expect("engine");
    run(&mut engine, &stream());
    let rows_before = engine.store().entries().expect("entries").len();
    drop(engine);
    // A tenant row nested deeper than the JSON reader allows (what an older version could
    // store from a deep condition), with a checkpoint as the runtime keeps one.
    let poison = format!(
        "{{\"config\": {}1{}}}",
        "{\"not\": ".repeat(200),
        "}".repeat(200)
    );
    let checkpoint = Checkpoint {
        changelog_offset: 9,
        ..Checkpoint::default()
    };
    let mut store = RocksStore::open(&store_dir).expect("open");
    store
        .commit(
            &[(b"t\"evil\"".to_vec(), Some(poison.into_bytes()))],
            &checkpoint,
        )
        .expect("commit");
    drop(store);

    let err = Engine::open(
        RocksStore::open(&store_dir).expect("open"),
        Settings::default(),
    )
    .err()
    .expect("the poisoned row stops the load");
    assert!(err.to_string().contains("t\"evil\""), "{err}");

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["state"])
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .args(["--partition", "0"])
            .output()
            .expect("run switchboard state");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, stderr) = cli(&["list", "--unreadable"]);
    assert!(ok, "{stderr}");
    assert!(
        listed.contains("UNREADABLE") && listed.contains("t\"evil\""),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{} rows, 1 unreadable", rows_before + 1)),
        "{listed}"
    );
    let (_, all, _) = cli(&["list"]);
    let conversation = all
        .lines()
        .filter_map(|l| l.strip_prefix("ok"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .find(|k| k.starts_with('c'))
        .expect("a conversation row")
        .to_string();
    let (ok, shown, stderr) = cli(&["show", "--key", &conversation]);
    assert!(ok && shown.contains("\"value\""), "{shown}{stderr}");
    let (ok, _, stderr) = cli(&["show", "--key", "t\"nobody\""]);
    assert!(!ok && stderr.lines().count() == 1, "{stderr}");
    let (ok, deleted, stderr) = cli(&["delete", "--key", "t\"evil\"", "--local-only"]);
    assert!(ok, "{stderr}");
    assert!(deleted.contains("deleted locally"), "{deleted}");

    let store = RocksStore::open(&store_dir).expect("open");
    assert_eq!(store.checkpoint().expect("checkpoint"), Some(checkpoint));
    let engine = Engine::open(store, Settings::default()).expect("the store opens again");
    assert_eq!(
        engine.store().entries().expect("entries").len(),
        rows_before
    );
}

fn config_change(id: &str, version: i64, change: serde_json::Value) -> Input {
    Input::from_json(
        Topic::Config,
        serde_json::json!({"id": id, "tenant": "acme", "version": version, "change": change}),
    )
    .expect("a config record")
}

fn applied(outputs: &[(i64, Output)]) -> bool {
    outputs.iter().any(|(_, o)| {
        matches!(o, Output::Config(c) if matches!(c.event, ConfigEventKind::ConfigApplied(_)))
    })
}

/// Issue 14: whatever config accepts can be stored and restored. The largest config the
/// limits allow (a condition at the depth limit, then routes until the size limit rejects
/// one) is written as state rows that each fit one Kafka record (1 MB), restored exactly
/// from RocksDB and from the changelog's records (the same writes replayed into an empty
/// store), and routes a message the same way after either restore.
#[test]
fn the_largest_accepted_config_is_stored_and_restored() {
    use serde_json::json;
    let mut engine = Engine::open(MemStore::default(), Settings::default()).expect("engine");
    let t = 1_772_445_600_000;
    let depth = switchboard_processors::condition::MAX_CONDITION_DEPTH;
    let mut deep = json!({"attribute": "content", "operator": "contains", "value": "deep"});
    for _ in 1..depth {
        deep = json!({ "all": [deep] });
    }
    let queue = json!({"UpsertQueue": {"queue": {"id": "deep", "name": "Deep"}}});
    assert!(applied(
        &engine.process(t, &config_change("q", 1, queue)).outputs
    ));
    let route = json!({"UpsertRoute": {"route": {"id": "deep", "order": 0, "condition": deep, "queue_id": "deep"}}});
    assert!(applied(
        &engine
            .process(t, &config_change("r-deep", 1, route))
            .outputs
    ));
    let mut routes = 0;
    loop {
        let leaves: Vec<_> = (0..50)
            .map(|j| json!({"attribute": "content", "operator": "contains", "value": format!("{}-{routes}-{j}", "w".repeat(40))}))
            .collect();
        let change = json!({"UpsertRoute": {"route": {"id": format!("r{routes}"), "order": routes + 1, "condition": {"any": leaves}, "queue_id": "default"}}});
        let out = engine
            .process(t, &config_change(&format!("r{routes}"), 1, change))
            .outputs;
        if !applied(&out) {
            let rejected = format!("{out:?}");
            assert!(rejected.contains("limit of"), "{rejected}");
            break;
        }
        routes += 1;
    }
    assert!(routes > 50, "{routes} routes");
    let writes = engine.flush().expect("flush");
    for (k, v) in &writes {
        let len = v.as_ref().map_or(0, Vec::len);
        assert!(
            len + k.len() < 1_000_000,
            "row {:?}: {len} bytes",
            String::from_utf8_lossy(k)
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let mut rocks = RocksStore::open(dir.path()).expect("open");
    rocks.write(&writes).expect("write");
    drop(rocks);
    let mut from_rocks = Engine::open(
        RocksStore::open(dir.path()).expect("reopen"),
        Settings::default(),
    )
    .expect("restore from RocksDB");
    let mut replayed = MemStore::default();
    replayed
        .write(&writes)
        .expect("replay the changelog records");
    let mut from_changelog = Engine::open(replayed, Settings::default()).expect("restore");
    let config = |e: &Engine<_>| e.state().tenant("acme").map(|t| t.config.clone());
    let original = config(&engine);
    assert!(original.is_some());
    assert_eq!(config(&from_changelog), original);
    assert_eq!(
        from_rocks.state().tenant("acme").map(|t| t.config.clone()),
        original
    );
    let message = inbound("m-deep", "+1", "a deep question");
    let want = engine.process(t + 1, &message).outputs;
    assert!(
        format!("{want:?}").contains("\"deep\""),
        "routed by the deep condition"
    );
    assert_eq!(from_rocks.process(t + 1, &message).outputs, want);
    assert_eq!(from_changelog.process(t + 1, &message).outputs, want);
}

/// Issue 13: a librdkafka property that does not exist is rejected naming it (and never
/// echoing its value, which may be a secret under a misspelt name); secrets are redacted in
/// the printed configuration; real security properties pass.
#[test]
fn unknown_librdkafka_properties_are_rejected_and_secrets_redacted() {
    let err = Config::parse(
        "[kafka.properties]\n\"sasl.pasword\" = \"hunter2\"\n",
        "f",
        &[],
    )
    .expect_err("a typo");
    let text = err.to_string();
    assert!(text.contains("kafka.properties.sasl.pasword"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let config = Config::parse(
        "[kafka.properties]\n\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"sb\"\n\"sasl.password\" = \"hunter2\"\n\"ssl.key.password\" = \"s3cret\"\n\"compression.type\" = \"zstd\"\n",
        "f",
        &[],
    )
    .expect("valid security settings");
    let shown = config.to_toml();
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(
        shown.contains("[redacted]") && shown.contains("SCRAM-SHA-512"),
        "{shown}"
    );
}

/// Issue 13: overrides cannot collide with the variables Kubernetes sets for a Service named
/// switchboard (`SWITCHBOARD_SERVICE_HOST`, `SWITCHBOARD_PORT_9464_TCP`, ...): those are
/// ignored and listed; librdkafka properties come from `SWITCHBOARD__KAFKA__PROPERTIES__*`,
/// a secret from a file with `_FILE`.
#[test]
fn kubernetes_variables_are_ignored_and_properties_and_secret_files_apply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("password");
    std::fs::write(&secret, "hunter2\n").expect("secret file");
    let c = Config::parse(
        "",
        "f",
        &env(&[
            ("SWITCHBOARD_SERVICE_HOST", "10.0.0.7"),
            ("SWITCHBOARD_SERVICE_PORT", "9464"),
            ("SWITCHBOARD_PORT_9464_TCP", "tcp://10.0.0.7:9464"),
            ("SWITCHBOARD__KAFKA__BOOTSTRAP_SERVERS", "kafka-0:9093"),
            (
                "SWITCHBOARD__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                "sasl_ssl",
            ),
            (
                "SWITCHBOARD__KAFKA__PROPERTIES__SASL_MECHANISM",
                "SCRAM-SHA-256",
            ),
            (
                "SWITCHBOARD__KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
                secret.to_str().expect("path"),
            ),
        ]),
    )
    .expect("valid");
    assert_eq!(c.kafka.bootstrap_servers, "kafka-0:9093");
    assert_eq!(c.kafka.properties["security.protocol"], "sasl_ssl");
    assert_eq!(c.kafka.properties["sasl.mechanism"], "SCRAM-SHA-256");
    assert_eq!(c.kafka.properties["sasl.password"], "hunter2");
    assert_eq!(
        c.ignored_env,
        vec![
            "SWITCHBOARD_SERVICE_HOST".to_string(),
            "SWITCHBOARD_SERVICE_PORT".to_string(),
            "SWITCHBOARD_PORT_9464_TCP".to_string()
        ]
    );
    let err = Config::parse(
        "",
        "f",
        &env(&[("SWITCHBOARD__KAFKA__PROPERTIES__SASL_PASWORD", "x")]),
    )
    .expect_err("a misspelt property");
    assert!(
        err.to_string().contains("kafka.properties.sasl.pasword"),
        "{err}"
    );
}

/// Issue 13 item 4: the schema registry's settings. Its password comes from the environment or
/// a mounted file (`SWITCHBOARD__SCHEMA_REGISTRY__PASSWORD_FILE`) and is redacted in the
/// printed configuration, as is a password in the URL; bad settings are rejected with the
/// field named.
#[test]
fn schema_registry_settings_take_secrets_from_files_and_never_show_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("registry-password");
    std::fs::write(&secret, "hunter2\n").expect("secret file");
    let c = Config::parse(
        "[schema_registry]\nurl = \"https://registry.example.com:8081\"\n",
        "f",
        &env(&[
            ("SWITCHBOARD__SCHEMA_REGISTRY__USERNAME", "sb"),
            (
                "SWITCHBOARD__SCHEMA_REGISTRY__PASSWORD_FILE",
                secret.to_str().expect("path"),
            ),
            (
                "SWITCHBOARD__SCHEMA_REGISTRY__OUTPUT_FRAMING",
                "single_object",
            ),
        ]),
    )
    .expect("valid");
    assert_eq!(c.schema_registry.password, "hunter2");
    assert_eq!(
        c.schema_registry.output_framing,
        switchboard::config::Framing::SingleObject
    );
    let shown = c.to_toml();
    assert!(
        !shown.contains("hunter2") && shown.contains("[redacted]"),
        "{shown}"
    );

    let c = Config::parse(
        "[schema_registry]\nurl = \"https://sb:hunter2@registry.example.com/\"\n",
        "f",
        &[],
    )
    .expect("valid");
    let shown = c.to_toml();
    assert!(
        !shown.contains("hunter2") && shown.contains("sb:[redacted]@registry"),
        "{shown}"
    );

    for (text, field) in [
        ("url = \"registry:8081\"", "schema_registry.url"),
        ("username = \"sb\"", "schema_registry.password"),
        ("timeout_ms = 0", "schema_registry.timeout_ms"),
        (
            "ca_location = \"/nonexistent/ca.pem\"",
            "schema_registry.ca_location",
        ),
        ("output_framing = \"xml\"", "output_framing"),
    ] {
        let err = Config::parse(&format!("[schema_registry]\n{text}\n"), "f", &[]).expect_err(text);
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
}

/// Issue 12 item 5: the engine joins its group as a static member named after its
/// transactional id, so a restarted instance gets its partitions back without waiting for its
/// former session to expire; `kafka.static_membership = false` makes it a dynamic member.
#[test]
fn the_engine_is_a_static_group_member_unless_turned_off() {
    let c = Config::parse(
        "[kafka]\napplication_id = \"cc\"\ninstance_id = \"pod-0\"\n",
        "f",
        &[],
    )
    .expect("valid");
    let cc = switchboard::kafka::group_consumer_config(&c);
    assert_eq!(cc.get("group.id"), Some("cc"));
    assert_eq!(cc.get("group.instance.id"), Some("cc-pod-0"));
    let c = Config::parse(
        "[kafka]\napplication_id = \"cc\"\ninstance_id = \"pod-0\"\nstatic_membership = false\n",
        "f",
        &[],
    )
    .expect("valid");
    assert_eq!(
        switchboard::kafka::group_consumer_config(&c).get("group.instance.id"),
        None
    );
}

/// R-RUN-2: a round's commit writes its rows in key order (so the memtable inserts each next to
/// the one before), yet a key written more than once in the round keeps its last write, and
/// the local rows (the dedup window's index) land beside them, their deletions atomically
/// with the state rows.
#[test]
fn r_run_2_a_commit_keeps_each_keys_last_write_whatever_the_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RocksStore::open(dir.path()).expect("open");
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    let delete = |k: &str| (k.as_bytes().to_vec(), None);
    store
        .commit(
            &[put("Dold", "x"), put("Dgone", "x")],
            &Checkpoint::default(),
        )
        .expect("first commit");
    let batch = vec![
        put("c", "1"),
        put("a", "1"),
        delete("c"),
        put("b", "1"),
        delete("a"),
        put("a", "2"),
        put("b", "2"),
    ];
    let local = std::collections::HashMap::from([
        (b"Dnew".to_vec(), Some(b"y".to_vec())),
        (b"Dgone".to_vec(), None),
    ]);
    store
        .commit_with_local(&batch, &local, &Checkpoint::default())
        .expect("commit");
    let rows: Vec<(String, String)> = store
        .entries()
        .expect("entries")
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [("Dnew", "y"), ("Dold", "x"), ("a", "2"), ("b", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(rows, expected);
}
