//! What the benchmarks share: the workload of `shared/bench/gen_workload.py`.

use std::path::{Path, PathBuf};

/// The JSON-lines workload named by the environment variable `var`, or else the one the
/// generator at `SWITCHBOARD_WORKLOAD_GEN` (default `../shared/bench/gen_workload.py` from the
/// workspace) writes with `--messages` from `messages_var` (else `default_messages`),
/// `--customers 500` and `extra`, generated once into the target folder.
pub fn workload(
    var: &str,
    messages_var: &str,
    default_messages: &str,
    extra: &[&str],
) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var(var) {
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let gen = std::env::var("SWITCHBOARD_WORKLOAD_GEN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("../shared/bench/gen_workload.py"));
    let messages = std::env::var(messages_var).unwrap_or(default_messages.into());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let dir = target.join("bench-workloads");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("workload-{messages}{}.jsonl", extra.join("")));
    if !out.exists() {
        let status = std::process::Command::new("python3")
            .arg(&gen)
            .args(["--messages", &messages, "--customers", "500", "--out"])
            .arg(&out)
            .args(extra)
            .status()
            .map_err(|e| format!("python3 {}: {e}", gen.display()))?;
        if !status.success() {
            return Err(format!("{} failed: {status}", gen.display()));
        }
    }
    Ok(out)
}
