//! `switchboard simulate`: the processors over a JSON-lines file, without Kafka.
//!
//! Input, one record per line: `{"topic": "cc.inbound", "key": "<tenant>", "ts": <ms>,
//! "value": {…}}` (`partition` may be given for ticks; a tick without one goes to every
//! partition, as the ticker does). Blank lines and lines starting with `#` are skipped.
//! Output: one line per output record in the same shape. A line that is not valid JSON, or not
//! a valid record, becomes a `cc.dlq` line with its line number and a readable reason, and
//! processing continues. The output is byte-identical from run to run.

use std::io::Write;
use switchboard_processors::simulation::{self, Emitted};
use switchboard_processors::Settings;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("state store: {0}")]
    Store(#[from] switchboard_processors::StoreError),
}

/// Run the processors over JSON-lines `input` on `threads` threads (partitions spread over
/// them; the output is the same for any number), writing each output line to `out` in order
/// as it is made: (input records, bad lines included; output lines).
pub fn simulate_into(
    input: &[u8],
    partitions: u32,
    threads: usize,
    settings: &Settings,
    out: &mut impl Write,
) -> Result<(usize, usize), SimulateError> {
    /// A record's output lines, encoded on its partition's thread.
    struct Lines {
        text: Vec<u8>,
        count: usize,
        error: Option<std::io::Error>,
    }
    let encode = |emitted: &[Emitted]| {
        let mut text = Vec::with_capacity(256 * emitted.len());
        let error = emitted
            .iter()
            .try_for_each(|e| simulation::write_jsonl(e, &mut text))
            .err();
        Lines {
            text,
            count: emitted.len(),
            error,
        }
    };
    let mut failed: Option<std::io::Error> = None;
    let mut lines = 0;
    // Records are decoded when it is their turn, not all up front: memory holds the state
    // and the input text, not every record decoded.
    let count = if threads <= 1 {
        // One thread: each output straight into `out`, not through a buffer of its own.
        simulation::run_jsonl_streaming(
            input,
            partitions,
            settings,
            &switchboard_processors::standard_processors,
            &mut |e: Emitted| {
                if failed.is_none() {
                    failed = simulation::write_jsonl(&e, out).err();
                    lines += 1;
                }
            },
        )?
    } else {
        simulation::run_jsonl_parallel(
            input,
            partitions,
            settings,
            &switchboard_processors::standard_processors,
            threads,
            &encode,
            &mut |encoded: Lines| {
                if failed.is_none() {
                    failed = encoded.error.or_else(|| out.write_all(&encoded.text).err());
                    lines += encoded.count;
                }
            },
        )?
    };
    match failed {
        Some(source) => Err(SimulateError::Output(source)),
        None => Ok((count, lines)),
    }
}

/// The threads `simulate` uses unless told: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`simulate_into`] over text, returning the output text.
pub fn simulate_text(
    input: &str,
    partitions: u32,
    settings: &Settings,
) -> Result<String, SimulateError> {
    let mut out = Vec::new();
    simulate_into(
        input.as_bytes(),
        partitions,
        default_threads(),
        settings,
        &mut out,
    )?;
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `switchboard simulate --input FILE --output FILE`: the output is written as it is made.
pub fn simulate_file(
    input: &str,
    output: &str,
    partitions: u32,
    threads: usize,
) -> Result<(usize, usize), SimulateError> {
    let bytes = std::fs::read(input).map_err(|source| SimulateError::Read {
        path: input.to_string(),
        source,
    })?;
    let write_error = |source| SimulateError::Write {
        path: output.to_string(),
        source,
    };
    let file = std::fs::File::create(output).map_err(write_error)?;
    let mut out = std::io::BufWriter::new(file);
    let counts = match simulate_into(&bytes, partitions, threads, &Settings::default(), &mut out) {
        Err(SimulateError::Output(source)) => return Err(write_error(source)),
        other => other?,
    };
    out.flush().map_err(write_error)?;
    Ok(counts)
}
