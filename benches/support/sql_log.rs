//! `SQL_LOG=PATH`: every statement sqlx runs, with its time on the database's side, written to
//! `PATH` as JSON lines (target `sqlx::query`), for a profile of the store by statement.

/// Starts the log when `SQL_LOG` names a file.
pub fn start() {
    let Ok(path) = std::env::var("SQL_LOG") else {
        return;
    };
    let file = std::fs::File::create(&path).expect("SQL_LOG names a file that can be written");
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::sync::Mutex::new(file))
        .with_env_filter(tracing_subscriber::EnvFilter::new("sqlx::query=debug"))
        .init();
}
