//! Memory soak: steady load through one engine for a stretch of wall time, the live heap
//! sampled as it runs (SPEC R-TIME-1, issue 11's "memory flat under steady traffic with a
//! steady number of open conversations").
//!
//! The tenants, queues, SLA policies, waiting strategies and agents are the setup records of
//! `shared/bench/gen_workload.py` (100 tenants × 20 agents). The traffic is made here, without
//! end: each tenant has a fixed number of customers in conversation at once
//! (`SWITCHBOARD_SOAK_ACTIVE`, default 100), each going through the same life: a message, the
//! assigned agent's reply, a second message, a second reply, Solved, Closed. A customer whose
//! conversation closed is followed by a new customer (`SWITCHBOARD_SOAK_CUSTOMERS=new`, the
//! default: every conversation a customer never seen before) or by the same one again
//! (`returning`). One record every `SWITCHBOARD_SOAK_GAP_MS` of stream time (default 1,000),
//! so the 24-hour dedup window fills after 86,400 records; the store is flushed every 2,000
//! records and emptied, as the runtime's would be written to disk. The dedup window's ids are
//! held in memory, or with `SWITCHBOARD_SOAK_DEDUP=store` looked up in the store as the
//! runtime does (emptying the store then loses them; the soak repeats no id).
//!
//! Every `SWITCHBOARD_SOAK_EVERY` seconds (default 30) of the `SWITCHBOARD_SOAK_SECONDS`
//! (default 600) it prints the live heap (counted by the allocator: exact, not disturbed by
//! other load), the conversations held, the ids in the dedup window and the timers. At the
//! end: the heap's change over the second half of the run, per million records.
//!
//! Run: `cargo bench -p switchboard-processors --bench soak`.

mod common;
#[path = "common/counting.rs"]
mod counting;

use std::time::{Duration, Instant};

use switchboard_processors::simulation::{self, apply_record};
use switchboard_processors::threading::conversation_id;
use switchboard_processors::{Engine, MemStore, Settings};
use switchboard_schemas::*;

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where one customer is in the life of their conversation.
struct Customer {
    /// The customer's number: their address is derived from it.
    number: u64,
    /// The conversation's id, once the first message opened it.
    conversation: Option<String>,
    /// The next step, 0..6.
    step: u8,
    /// Turns to sit out before the first conversation.
    skip: u8,
}

/// The tenants of the setup: (tenant, our sender).
fn tenants(setup: &[simulation::SourceRecord]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in setup {
        if let Ok(Input::Config(c)) = &r.decoded {
            if let ConfigChangeKind::UpsertWaitingStrategy(w) = &c.change {
                out.push((c.tenant.clone(), w.strategy.sender.clone()));
            }
        }
    }
    out
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let start = counting::live();
    let seconds: u64 = env_or("SWITCHBOARD_SOAK_SECONDS", 600);
    let every: u64 = env_or("SWITCHBOARD_SOAK_EVERY", 30);
    let active: usize = env_or("SWITCHBOARD_SOAK_ACTIVE", 100);
    let gap: i64 = env_or("SWITCHBOARD_SOAK_GAP_MS", 1000);
    let returning = std::env::var("SWITCHBOARD_SOAK_CUSTOMERS").as_deref() == Ok("returning");
    let path = match common::workload(
        "SWITCHBOARD_SOAK_SETUP",
        "SWITCHBOARD_SOAK_SETUP_MESSAGES",
        "1000",
        &["--no-sentiment"],
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("setup: {e} (set SWITCHBOARD_SOAK_SETUP to a gen_workload.py file)");
            std::process::exit(1);
        }
    };
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let (records, _) = simulation::parse_jsonl(&text);
    drop(text);
    let setup: Vec<_> = records
        .into_iter()
        .take_while(|r| matches!(r.decoded, Ok(Input::Config(_)) | Ok(Input::Agent(_))))
        .collect();
    let tenants = tenants(&setup);
    let settings = Settings {
        dedup_in_store: std::env::var("SWITCHBOARD_SOAK_DEDUP").is_ok_and(|v| v == "store"),
        ..Settings::default()
    };
    let mut engine = match Engine::open(MemStore::default(), settings) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engine: {e}");
            std::process::exit(1);
        }
    };
    let mut now = setup.iter().map(|r| r.ts).max().unwrap_or(0);
    for r in &setup {
        apply_record(&mut engine, r, 0);
    }
    drop(setup);
    println!(
        "soak: {} tenants × {active} customers in conversation, one record every {gap} ms of stream time, {} customers, {seconds} s",
        tenants.len(),
        if returning { "returning" } else { "new" }
    );
    println!(
        "{:>6} {:>11} {:>10} {:>7} {:>7} {:>8} {:>7} {:>10}",
        "wall s", "records", "live MB", "open", "closed", "ids", "timers", "records/s"
    );
    // By slot, then tenant: each round visits every tenant's customer of a slot in turn.
    let mut customers: Vec<Vec<Customer>> = (0..active as u64)
        .map(|number| {
            // Staggered, so as many conversations are at each step at any time.
            (0..tenants.len())
                .map(|_| Customer {
                    number,
                    conversation: None,
                    step: 0,
                    skip: (number % 6) as u8,
                })
                .collect()
        })
        .collect();
    let mut next_number = active as u64;
    let began = Instant::now();
    let mut next_sample = Duration::from_secs(0);
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut records: u64 = 0;
    let mut last = (Instant::now(), 0u64);
    'run: loop {
        for slot in customers.iter_mut() {
            for ((tenant, sender), c) in tenants.iter().zip(slot.iter_mut()) {
                if c.skip > 0 {
                    c.skip -= 1;
                    continue;
                }
                now += gap;
                records += 1;
                let id = format!("s-{records}");
                let address = format!("+44{:010}", c.number);
                let assignee = c.conversation.as_deref().and_then(|conv| {
                    engine
                        .state()
                        .conversation(tenant, conv)
                        .and_then(|c| c.assignee.as_deref().map(str::to_string))
                });
                let command = |command| Command {
                    id: id.clone(),
                    tenant: tenant.clone(),
                    conversation_id: c.conversation.clone().unwrap_or_default(),
                    by: assignee.clone(),
                    command,
                };
                let input = match c.step {
                    0 | 2 => {
                        if c.step == 0 {
                            c.conversation = Some(conversation_id(tenant, &id));
                        }
                        Input::Inbound(InboundMessage::text(
                            &id,
                            tenant,
                            Channel::LiveChat,
                            &address,
                            sender,
                            "hello, my order has not arrived",
                        ))
                    }
                    1 | 3 => Input::Command(command(CommandKind::Reply(Reply {
                        content: "on it".into(),
                        automated: false,
                    }))),
                    4 => Input::Command(command(CommandKind::SetStatus(SetStatus {
                        status: Status::Solved,
                    }))),
                    _ => Input::Command(command(CommandKind::SetStatus(SetStatus {
                        status: Status::Closed,
                    }))),
                };
                std::hint::black_box(engine.process(now, &input));
                c.step += 1;
                if c.step == 6 {
                    c.step = 0;
                    c.conversation = None;
                    if !returning {
                        c.number = next_number;
                        next_number += 1;
                    }
                }
                if records % 2_000 == 0 {
                    let _ = engine.flush();
                    engine.store_mut().map.clear();
                    let wall = began.elapsed();
                    if wall >= next_sample {
                        let live = counting::live().saturating_sub(start);
                        let state = engine.state();
                        let (open, closed) =
                            state.conversations.iter().fold((0, 0), |(o, c), (_, v)| {
                                if v.status == Status::Closed {
                                    (o, c + 1)
                                } else {
                                    (o + 1, c)
                                }
                            });
                        let rate = (records - last.1) as f64 / last.0.elapsed().as_secs_f64();
                        last = (Instant::now(), records);
                        println!(
                            "{:>6.0} {records:>11} {:>10.1} {open:>7} {closed:>7} {:>8} {:>7} {rate:>10.0}",
                            wall.as_secs_f64(),
                            live as f64 / 1e6,
                            state.dedup.len(),
                            state.timers.len(),
                        );
                        samples.push((wall.as_secs_f64(), records, live));
                        next_sample += Duration::from_secs(every);
                    }
                    if wall >= Duration::from_secs(seconds) {
                        break 'run;
                    }
                }
            }
        }
    }
    // The heap's change over the second half of the run (the first half warms up: the dedup
    // window fills, the first conversations close and leave).
    let half = seconds as f64 / 2.0;
    if let (Some(first), Some(end)) = (samples.iter().find(|s| s.0 >= half), samples.last()) {
        let records = end.1.saturating_sub(first.1).max(1) as f64;
        let change = end.2 as f64 - first.2 as f64;
        println!(
            "second half: live heap {:.1} MB → {:.1} MB ({:+.2} MB per million records over {:.1} million records)",
            first.2 as f64 / 1e6,
            end.2 as f64 / 1e6,
            change / 1e6 / (records / 1e6),
            records / 1e6
        );
    }
}
