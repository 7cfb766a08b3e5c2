use clap::{Parser, Subcommand};
use std::process::ExitCode;
use switchboard::app;
use switchboard::config::Guarantee;
use switchboard::runtime::StartFrom;
use switchboard::sentiment_cli::{self, Split};
use switchboard_processors::sentiment::{Scorer, DEFAULT_ALPHA};

/// The engine allocates and frees many small values per record: mimalloc serves that faster
/// than the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchboard: a stream-processing engine for omnichannel contact centers.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the processors over a JSON-lines file of input records, without Kafka.
    Simulate {
        /// Input records, one `{"topic", "key", "ts", "value"}` object per line.
        #[arg(long)]
        input: String,
        /// Where to write the output records, in the same shape.
        #[arg(long)]
        output: String,
        /// Partitions to spread tenants over, as the input topics would be partitioned.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        partitions: u32,
        /// Threads to run the partitions on (the output is the same for any number); by
        /// default one per core.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        threads: Option<u32>,
    },
    /// Run the engine against Kafka until SIGINT/SIGTERM.
    Run {
        /// TOML configuration (every key overridable by SWITCHBOARD__<SECTION>__<KEY>); none:
        /// the defaults.
        #[arg(long)]
        config: Option<String>,
    },
    /// Reprocess the input topics into fresh state under a new application id, writing to
    /// separate output topics (R-RUN-6).
    Replay {
        #[arg(long)]
        config: Option<String>,
        /// Start from the beginning of every input topic.
        #[arg(
            long,
            conflicts_with = "from_timestamp",
            required_unless_present = "from_timestamp"
        )]
        from_beginning: bool,
        /// Start from the first records at or after this time (ms since the Unix epoch, or
        /// RFC 3339).
        #[arg(long)]
        from_timestamp: Option<String>,
        /// The replay's application id (its consumer group, state and changelog).
        #[arg(long)]
        application_id: String,
        /// Appended to every output topic name, e.g. `.replay` writes `cc.assignments.replay`.
        #[arg(long)]
        output_suffix: String,
        /// Stop, print a summary and exit 0 once caught up with the end offsets seen at start.
        #[arg(long)]
        until_end: bool,
        /// The replay's HTTP address (default: any free port on http.listen's host, so it
        /// runs beside the engine).
        #[arg(long)]
        http_listen: Option<String>,
    },
    /// Write input records to Kafka as the engine expects them: JSON lines in (the simulate
    /// format), Avro out, each on its tenant's partition.
    Produce {
        #[arg(long)]
        config: Option<String>,
        /// JSON lines: `{"topic", "key", "ts", "value"}` per record.
        #[arg(long)]
        input: String,
        /// Only the records of this input topic (default: every input topic in the file).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Topic administration.
    Topics {
        #[command(subcommand)]
        command: TopicsCmd,
    },
    /// Write a Tick to every partition of cc.ticks every ticker.interval_ms (when the engine's
    /// built-in ticker is off).
    Ticker {
        #[arg(long)]
        config: Option<String>,
    },
    /// Perform the Call API requests workflows write to cc.actions (docs/workflows.md): retries
    /// with backoff, one outcome per request on cc.action-outcomes, failures to cc.dlq.
    Actions {
        #[arg(long)]
        config: Option<String>,
    },
    /// A simulated contact center on an in-process Kafka cluster: no install, no config.
    Demo {
        /// How long to drive traffic, e.g. 30s, 2m.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Customer messages per second (wall clock).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
        /// Contact-center accounts to simulate.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        tenants: u32,
        /// Port for /metrics (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The delivery guarantee to run the engine with.
        #[arg(long, value_enum, default_value = "exactly-once")]
        guarantee: Guarantee,
    },
    /// The demo's simulated contact center, written to the Kafka of `--config` for the engines
    /// running there (the compose stack's load generator); runs until stopped by default.
    Load {
        #[arg(long)]
        config: Option<String>,
        /// How long to drive traffic, e.g. 30s, 2h; 0 runs until SIGINT or SIGTERM.
        #[arg(long, default_value = "0", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Customer messages per second (wall clock).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
        /// Contact-center accounts to simulate (tenant-0 ...).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        tenants: u32,
    },
    /// End-to-end throughput through Kafka: a no-op passthrough and the engine (exactly-once
    /// and deduplicated) over the same generated records, with their ratios.
    Bench {
        /// Customer messages to generate (config, agents, commands and ticks are added).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        messages: u32,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        tenants: u32,
        /// An external broker (default: librdkafka's in-process mock cluster).
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Skip the exactly-once run (for brokers without transactions, such as tansu).
        #[arg(long)]
        skip_exactly_once: bool,
        /// Extra librdkafka property for every client, KEY=VALUE (repeatable).
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// Instead: restart after SIGKILL with this many open conversations, timed from
        /// process start to the first output.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        restart_conversations: Option<u32>,
        /// The engine's processing threads (`engine.threads`; 0: one per core).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
        threads: u32,
        /// Run the in-process engine and each guarantee this many times, alternating, and
        /// report the median ratios (the machines are noisy).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        repeat: u32,
    },
    /// The sentiment scorer on its own.
    Sentiment {
        #[command(subcommand)]
        command: SentimentCmd,
    },
    /// The runtime configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Inspect one partition's local state store, and delete a row that cannot be read (stop
    /// the engine on this host first).
    State {
        #[command(subcommand)]
        command: StateCmd,
    },
}

/// Which partition's local store: the configuration that says where state lives, and the
/// partition.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long)]
    config: Option<String>,
    #[arg(long)]
    partition: i32,
}

#[derive(Subcommand)]
enum StateCmd {
    /// List the rows of a partition's store: readable or not, size in bytes, key.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only the rows that cannot be read.
        #[arg(long)]
        unreadable: bool,
    },
    /// Print one row, decoded, as JSON.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// The key as `list` prints it (`hex:…` for a key that is not text).
        #[arg(long)]
        key: String,
    },
    /// Delete one row, locally and in the changelog topic (a tombstone and a checkpoint), so
    /// no restore brings it back.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        key: String,
        /// Only in the local store (the changelog keeps the row).
        #[arg(long)]
        local_only: bool,
    },
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Create the input, output and changelog topics that are missing (co-partitioned,
    /// cc.config and the changelog compacted).
    Create {
        #[arg(long)]
        config: Option<String>,
        /// Create the output topics with this suffix (for a replay; default:
        /// topics.output_suffix).
        #[arg(long, default_value = "")]
        output_suffix: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 500ms"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{s:?} is not a duration like 30s, 2m or 500ms")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_timestamp(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("--from-timestamp: {s:?} is neither ms since the epoch nor RFC 3339"))
}

fn load_config(path: Option<&str>) -> Result<switchboard::config::Config, String> {
    switchboard::config::Config::load(path).map_err(|e| format!("invalid configuration: {e}"))
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a TOML configuration (with SWITCHBOARD_* environment overrides) and print the
    /// effective configuration.
    Check {
        /// The configuration file; none: the defaults.
        #[arg(long)]
        config: Option<String>,
    },
}

#[derive(Subcommand)]
enum SentimentCmd {
    /// Read text lines on stdin; print `score<TAB>label` for each.
    Score {
        #[command(flatten)]
        scorer: ScorerArgs,
    },
    /// Read `label<TAB>text` lines; print accuracy, macro-F1, negative recall, per-class
    /// precision and recall, and the confusion matrix.
    Eval {
        file: String,
        /// Rows to use: all, the tuning half (even lines) or the held-out half (odd lines).
        #[arg(long, value_enum, default_value = "all")]
        split: Split,
        /// A one-class file (complaints, or non-complaints): print the share called negative.
        #[arg(long)]
        complaints: bool,
        #[command(flatten)]
        scorer: ScorerArgs,
    },
    /// Train the model from the corpora and the support templates; write the weight file and
    /// its manifest (docs/sentiment.md). The same inputs give the same bytes.
    Train {
        /// The training corpora.
        #[arg(long, default_value = "../shared/data/sentiment-train")]
        data: std::path::PathBuf,
        /// The support templates.
        #[arg(long, default_value = "tools/sentiment/support_templates.txt")]
        templates: std::path::PathBuf,
        /// The development sets, for the manifest's figures (skipped when absent).
        #[arg(long, default_value = "../shared/data/sentiment-dev")]
        dev: std::path::PathBuf,
        /// The weight file to write.
        #[arg(long, default_value = "processors/data/sentiment/model.bin")]
        out: std::path::PathBuf,
        /// The manifest to write.
        #[arg(long, default_value = "processors/data/sentiment/model.json")]
        manifest: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
struct ScorerArgs {
    /// Score with the rule-based lexicon alone, not the learned model.
    #[arg(long)]
    lexicon: bool,
    /// The lexicon's squashing constant (default: the tuned value).
    #[arg(long)]
    alpha: Option<f64>,
}

fn scorer(args: &ScorerArgs) -> Scorer {
    Scorer {
        method: sentiment_cli::method(args.lexicon),
        alpha: args.alpha.unwrap_or(DEFAULT_ALPHA),
        ..Scorer::default()
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Simulate {
            input,
            output,
            partitions,
            threads,
        } => {
            let threads =
                threads.map_or_else(switchboard::simulate::default_threads, |n| n as usize);
            let (records, outputs) =
                switchboard::simulate::simulate_file(&input, &output, partitions, threads)
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "switchboard: {records} input records -> {outputs} output records in {output}"
            );
            Ok(())
        }
        Cmd::Run { config } => {
            let config = load_config(config.as_deref())?;
            app::run_engine(config, String::new(), StartFrom::Committed, false).map(|_| ())
        }
        Cmd::Replay {
            config,
            from_beginning,
            from_timestamp,
            application_id,
            output_suffix,
            until_end,
            http_listen,
        } => {
            let mut config = load_config(config.as_deref())?;
            config.kafka.application_id = application_id;
            // Beside the running engine: a port of its own (any free one unless given).
            config.http.listen = match http_listen {
                Some(listen) => listen,
                None => {
                    let host = config
                        .http
                        .listen
                        .rsplit_once(':')
                        .map_or("127.0.0.1", |(host, _)| host);
                    format!("{host}:0")
                }
            };
            config
                .validate()
                .map_err(|e| format!("invalid configuration: {e}"))?;
            if output_suffix.is_empty() {
                return Err(
                    "--output-suffix must not be empty: a replay writes to its own topics".into(),
                );
            }
            let start = match from_timestamp {
                Some(t) => StartFrom::Timestamp(parse_timestamp(&t)?),
                None => StartFrom::Committed,
            };
            if from_beginning && app::has_committed_offsets(&config)? {
                return Err(format!(
                    "--from-beginning: application id {:?} already has committed offsets, so \
                     the replay would resume where it stopped; use a new --application-id",
                    config.kafka.application_id
                ));
            }
            let metrics = app::run_engine(config, output_suffix, start, until_end)?;
            if until_end {
                use switchboard::metrics::Metrics;
                println!(
                    "replay caught up: {} input records, {} output records, {} dead letters",
                    Metrics::total(&metrics.records_in, &[]),
                    Metrics::total(&metrics.records_out, &[]),
                    metrics.dlq.get()
                );
            }
            Ok(())
        }
        Cmd::Produce {
            config,
            input,
            topic,
        } => {
            let config = load_config(config.as_deref())?;
            let only = match topic.as_deref() {
                None => None,
                Some(name) => Some(
                    switchboard_schemas::Topic::from_name(name)
                        .filter(|t| t.is_input())
                        .ok_or_else(|| format!("--topic: {name:?} is not an input topic"))?,
                ),
            };
            let produced = switchboard::produce::produce(&config, &input, only)?;
            print!("{}", produced.summary());
            match produced.rejected.len() {
                0 => Ok(()),
                n => Err(format!("{n} line(s) not written (listed above)")),
            }
        }
        Cmd::Topics {
            command:
                TopicsCmd::Create {
                    config,
                    output_suffix,
                },
        } => {
            let config = load_config(config.as_deref())?;
            let output_suffix = match output_suffix.is_empty() {
                true => config.topics.output_suffix.clone(),
                false => output_suffix,
            };
            let created = switchboard::kafka::create_topics(&config, &output_suffix)
                .map_err(|e| e.to_string())?;
            eprintln!("switchboard: {} topic(s) created", created.len());
            for t in created {
                println!("{t}");
            }
            Ok(())
        }
        Cmd::Ticker { config } => {
            let config = load_config(config.as_deref())?;
            app::init_logging_as(config.log.format);
            let stop = app::stop_on_signal()?;
            app::run_ticker(&config, stop)
        }
        Cmd::Actions { config } => {
            let config = load_config(config.as_deref())?;
            app::init_logging_as(config.log.format);
            let stop = app::stop_on_signal()?;
            switchboard::actions::run(&config, stop)
        }
        Cmd::Demo {
            duration,
            rate,
            tenants,
            port,
            guarantee,
        } => {
            let summary = switchboard::demo::run(&switchboard::demo::DemoOptions {
                duration,
                rate,
                tenants,
                port,
                guarantee,
            })?;
            print!("{summary}");
            Ok(())
        }
        Cmd::Load {
            config,
            duration,
            rate,
            tenants,
        } => {
            let config = load_config(config.as_deref())?;
            app::init_logging_as(config.log.format);
            let summary = switchboard::demo::load(
                &config,
                &switchboard::demo::DemoOptions {
                    duration: match duration.is_zero() {
                        true => std::time::Duration::MAX,
                        false => duration,
                    },
                    rate,
                    tenants,
                    port: 0,
                    guarantee: config.kafka.guarantee,
                },
            )?;
            print!("{summary}");
            Ok(())
        }
        Cmd::Bench {
            messages,
            tenants,
            bootstrap_servers,
            skip_exactly_once,
            properties,
            restart_conversations,
            threads,
            repeat,
        } => {
            let opts = switchboard::bench::BenchOptions {
                messages: messages as usize,
                tenants: tenants as usize,
                bootstrap_servers,
                skip_exactly_once,
                properties,
                threads: i64::from(threads),
                repeat: repeat as usize,
            };
            let report = match restart_conversations {
                Some(n) => switchboard::bench::restart(&opts, n as usize)?,
                None => switchboard::bench::run(&opts)?,
            };
            print!("{report}");
            Ok(())
        }
        Cmd::Sentiment {
            command: SentimentCmd::Score { scorer: args },
        } => sentiment_cli::score_lines(
            &scorer(&args),
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )
        .map_err(|e| e.to_string()),
        Cmd::Config {
            command: ConfigCmd::Check { config },
        } => {
            let config = load_config(config.as_deref())?;
            let (version, features) = switchboard::kafka::librdkafka_build();
            println!("# librdkafka {version}, built with: {features}");
            print!("{}", config.to_toml());
            Ok(())
        }
        Cmd::State { command } => {
            use switchboard::state_cli;
            let load = |store: &StoreArgs| load_config(store.config.as_deref());
            let text = match command {
                StateCmd::List { store, unreadable } => {
                    state_cli::list(&load(&store)?, store.partition, unreadable)?
                }
                StateCmd::Show { store, key } => state_cli::show(
                    &load(&store)?,
                    store.partition,
                    &state_cli::parse_key(&key)?,
                )?,
                StateCmd::Delete {
                    store,
                    key,
                    local_only,
                } => state_cli::delete(
                    &load(&store)?,
                    store.partition,
                    &state_cli::parse_key(&key)?,
                    local_only,
                )?,
            };
            print!("{text}");
            Ok(())
        }
        Cmd::Sentiment {
            command:
                SentimentCmd::Eval {
                    file,
                    split,
                    complaints,
                    scorer: args,
                },
        } => {
            let report = if complaints {
                sentiment_cli::complaints_file(&file, split, &scorer(&args))
            } else {
                sentiment_cli::eval_file(&file, split, &scorer(&args))
            }
            .map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }
        Cmd::Sentiment {
            command:
                SentimentCmd::Train {
                    data,
                    templates,
                    dev,
                    out,
                    manifest,
                },
        } => {
            let summary = sentiment_cli::train(&sentiment_cli::TrainOptions {
                data,
                templates,
                dev,
                out,
                manifest,
            })
            .map_err(|e| e.to_string())?;
            print!("{summary}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // A panic is a bug: one readable line (to the log when logging is on), never a
    // backtrace. The engine catches a panic in a processor, dead-letters the record and goes
    // on (docs/operations.md, "Poison records").
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = switchboard_processors::engine::panic_message(info.payload());
        if tracing::dispatcher::has_been_set() {
            tracing::error!(place = %place.trim(), "internal error: {message}");
        } else {
            eprintln!("switchboard: internal error{place}: {message}");
        }
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
