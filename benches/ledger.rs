//! Ledger throughput: hold+post pairs per second at 1, 8 and 64 concurrent tasks, on SQLite and
//! (with `TEST_POSTGRES_URL`) on PostgreSQL; in the same run, `pgbench`'s built-in tpcb-like
//! script at the same concurrency on the same server, for comparison.
//!
//! `cargo bench --bench ledger [-- --seconds N --runs N]`: each row is the median of `runs`
//! runs (default 3) of `seconds` each (default 5), with the lowest and highest beside it.
//! `SQL_LOG=PATH` writes every statement with its time (see `support/sql_log.rs`).

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;
#[path = "support/sql_log.rs"]
mod sql_log;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bot_core::{
    Backend,
    ledger::{SystemAccount, TransferKind, TransferRequest},
    money::Credits,
    store::testing::{TEST_POSTGRES_URL, TestDb, person},
};

const CONCURRENCY: [usize; 3] = [1, 8, 64];

fn main() {
    sql_log::start();
    let seconds = args::option("--seconds", 5);
    let runs = args::option("--runs", 3).max(1);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "ledger benchmark: hold+post pairs per second, one person per task, median of {runs} \
         runs of {seconds} s"
    );
    println!(
        "{:<10} {:>6} {:>10} {:>10} {:>10} {:>8}",
        "backend", "tasks", "median", "lowest", "highest", "audit"
    );
    let mut postgres_rates = Vec::new();
    'backends: for backend in [Backend::Sqlite, Backend::Postgres] {
        for tasks in CONCURRENCY {
            let mut rates = Vec::new();
            let mut clean = true;
            for _ in 0..runs {
                let Some((rate, audit_clean)) =
                    runtime.block_on(pairs_per_second(backend, tasks, duration))
                else {
                    continue 'backends;
                };
                rates.push(rate);
                clean &= audit_clean;
            }
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            println!(
                "{:<10} {tasks:>6} {median:>10.0} {:>10.0} {:>10.0} {:>8}",
                backend.name(),
                rates[0],
                rates[rates.len() - 1],
                if clean { "clean" } else { "FAILED" }
            );
            if backend == Backend::Postgres {
                postgres_rates.push((tasks, median));
            }
        }
    }
    let Some(url) = std::env::var(TEST_POSTGRES_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        println!("pgbench: skipped, {TEST_POSTGRES_URL} is not set");
        return;
    };
    println!();
    println!(
        "{:<10} {:>6} {:>14} {:>12}",
        "pgbench", "tasks", "tps", "ours/pgbench"
    );
    for (tasks, ours) in postgres_rates {
        match pgbench(&url, tasks, seconds) {
            Ok(tps) => println!(
                "{:<10} {tasks:>6} {tps:>14.0} {:>11.0}%",
                "tpcb-like",
                ours / tps * 100.0
            ),
            Err(error) => println!("pgbench at {tasks} tasks failed: {error}"),
        }
    }
}

/// One run: the rate, and whether the audit afterwards was clean.
async fn pairs_per_second(
    backend: Backend,
    tasks: usize,
    duration: Duration,
) -> Option<(f64, bool)> {
    let connections = u32::try_from(tasks).unwrap_or(64).max(2);
    let db = TestDb::with_connections(backend, "ledger benchmark", connections).await?;
    let store = db.store().clone();
    let mut wallets = Vec::new();
    for task in 0..tasks {
        let user = person(&store, &format!("bench{task}"), 1_000_000_000).await;
        wallets.push(user.wallet);
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = wallets
        .into_iter()
        .enumerate()
        .map(|(task, wallet)| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let revenue = store.account(SystemAccount::GenerationRevenue);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let held = store
                        .hold(&TransferRequest {
                            key: format!("job:{task}:{n}"),
                            debit: wallet,
                            credit: revenue,
                            amount: Credits::new(1 + n % 4),
                            kind: TransferKind::Generation,
                            memo: None,
                        })
                        .await
                        .expect("hold");
                    store.post(held.id).await.expect("post");
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
    let audit = store.audit().await.expect("audit");
    store.close().await;
    Some((rate, audit.is_clean()))
}

/// Runs pgbench's built-in tpcb-like script on a scratch database; returns its tps.
fn pgbench(url: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    let mut scratch = url::Url::parse(url).map_err(|e| e.to_string())?;
    scratch.set_path("imagegpt_pgbench");
    let admin = |sql: &str| {
        Command::new("psql")
            .args([url, "-qc", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))
    };
    admin("DROP DATABASE IF EXISTS imagegpt_pgbench WITH (FORCE)")?;
    admin("CREATE DATABASE imagegpt_pgbench")?;
    let scratch = scratch.to_string();
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", &scratch])
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    if !init.status.success() {
        return Err(String::from_utf8_lossy(&init.stderr).into_owned());
    }
    let threads = clients.min(2).to_string();
    let run = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &threads,
            "-T",
            &seconds.to_string(),
            &scratch,
        ])
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    admin("DROP DATABASE IF EXISTS imagegpt_pgbench WITH (FORCE)")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    stdout
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| {
            line.trim_start_matches("tps = ")
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| {
            format!(
                "no tps in pgbench output: {stdout}{}",
                String::from_utf8_lossy(&run.stderr)
            )
        })
}
