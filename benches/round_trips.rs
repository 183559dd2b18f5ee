//! What a round trip to sqlx's SQLite connection thread costs, against the statement it carries:
//! `k` one-row `UPDATE`s sent as one query, for `k` = 1, 2, 4 … 32, wall time and process CPU
//! per statement. The writer's plans (`bot-core/src/store/plan.rs`) are sent together because
//! of what this shows.
//!
//! `cargo bench --bench round_trips [-- --statements N]` (default 20,000 per row).

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;
#[path = "support/cpu.rs"]
mod cpu;

use std::time::Instant;

use sqlx::{AnyConnection, Connection as _, Executor as _};

fn main() {
    let statements = args::option("--statements", 20_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("trips.db").display()
        );
        let mut conn = AnyConnection::connect(&url).await.expect("SQLite");
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER); INSERT INTO t VALUES (1, 0);",
        )
        .await
        .expect("schema");
        println!("round trips to SQLite's thread: one-row UPDATEs, k per query");
        println!("{:>4} {:>16} {:>16}", "k", "wall µs/stmt", "CPU µs/stmt");
        for k in [1_usize, 2, 4, 8, 16, 32] {
            let sql = "UPDATE t SET x = x + ? WHERE id = 1;".repeat(k);
            let queries = statements / k;
            conn.execute("BEGIN").await.expect("begin");
            let (at, cpu) = (Instant::now(), cpu::process_seconds());
            for _ in 0..queries {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for _ in 0..k {
                    query = query.bind(1_i64);
                }
                query.execute(&mut conn).await.expect("update");
            }
            let (wall, cpu) = (at.elapsed().as_secs_f64(), cpu::process_seconds() - cpu);
            conn.execute("COMMIT").await.expect("commit");
            let sent = (queries * k) as f64;
            println!(
                "{k:>4} {:>16.2} {:>16.2}",
                wall * 1e6 / sent,
                cpu * 1e6 / sent
            );
        }
    });
}
