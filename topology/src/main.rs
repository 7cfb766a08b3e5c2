use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Simulate {
            input,
            output,
            partitions,
        } => switchboard::simulate::simulate_file(&input, &output, partitions).map(
            |(records, outputs)| {
                eprintln!(
                    "switchboard: {records} input records -> {outputs} output records in {output}"
                );
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
