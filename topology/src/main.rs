use clap::{Parser, Subcommand};
use std::process::ExitCode;
use switchboard::sentiment_cli::{self, Split};
use switchboard_processors::sentiment::{Scorer, DEFAULT_ALPHA};

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
        /// The squashing constant (default: the tuned value).
        #[arg(long)]
        alpha: Option<f64>,
    },
    /// Read `label<TAB>text` lines; print accuracy, macro-F1, per-class precision and recall,
    /// and the confusion matrix.
    Eval {
        file: String,
        /// Rows to use: all, the tuning half (even lines) or the held-out half (odd lines).
        #[arg(long, value_enum, default_value = "all")]
        split: Split,
        /// The squashing constant (default: the tuned value).
        #[arg(long)]
        alpha: Option<f64>,
    },
}

fn scorer(alpha: Option<f64>) -> Scorer {
    Scorer {
        alpha: alpha.unwrap_or(DEFAULT_ALPHA),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Simulate {
            input,
            output,
            partitions,
        } => {
            let (records, outputs) =
                switchboard::simulate::simulate_file(&input, &output, partitions)
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "switchboard: {records} input records -> {outputs} output records in {output}"
            );
            Ok(())
        }
        Cmd::Sentiment {
            command: SentimentCmd::Score { alpha },
        } => sentiment_cli::score_lines(
            &scorer(alpha),
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )
        .map_err(|e| e.to_string()),
        Cmd::Config {
            command: ConfigCmd::Check { config },
        } => {
            let config = switchboard::config::Config::load(config.as_deref())
                .map_err(|e| format!("invalid configuration: {e}"))?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Cmd::Sentiment {
            command: SentimentCmd::Eval { file, split, alpha },
        } => {
            let report = sentiment_cli::eval_file(&file, split, &scorer(alpha))
                .map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
