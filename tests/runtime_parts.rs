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
            ("SWITCHBOARD_TOPICS_PARTITIONS", "12"),
            ("SWITCHBOARD_TICKER_ENABLED", "false"),
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
            &env(&[("SWITCHBOARD_KAFKA_COLOUR", "red")])
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
