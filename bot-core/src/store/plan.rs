//! Writes as data: SQL with its arguments and a reader of its rows, so that SQLite's writer can
//! send many of them to its connection's thread in one round trip.
//!
//! A round trip to sqlx's SQLite thread costs far more than a short statement (`cargo bench
//! --bench round_trips`: ~43 µs of wall time and ~30 µs of CPU for one `UPDATE` sent alone,
//! ~1.3 µs each sent 32 at a time), and SQLite has one writer: a write that is a closure over the connection costs one
//! round trip per statement it sends. A [`Plan`] is the same write told as data; the writer puts
//! the plans of one [`Script`] waiting in a batch into one query ([`Script::chunk`]), each with
//! its parameters renumbered, and hands each plan its own rows.
//!
//! A plan's contract: it refuses only with an error raised by one of its statements (which the
//! writer undoes, with the plan's savepoint when it has several statements) or after writing
//! nothing. Once the next plan in the same query has run, a plan's writes can no longer be
//! undone alone.

use std::{
    ops::Range,
    sync::{Arc, OnceLock},
};

use sqlx::{
    AnyConnection, Either,
    any::{AnyArguments, AnyRow},
    query::Query,
};

use super::writer::{Erased, not_begun, rolled_back};
use crate::{Error, Result};

/// How many plans go in one query, largest first: a few fixed sizes, so that each script is
/// prepared (and kept in sqlx's statement cache) in at most this many forms.
///
/// A script's plans go in the largest chunk whose answers fit in [`SQLX_ROW_CHANNEL`]
/// ([`Script::fits`]); the largest size is as many enqueues as fit. An enqueue's plan answers
/// six times (its savepoint, its three statements and their release each end, and the job's row
/// comes back), so a chunk of 16 answered 96 times: sqlx's SQLite thread stopped mid-chunk on
/// the full channel until the writer's thread read it, and had to be woken again, whenever that
/// thread was not running (a busy two-core machine). A chunk of 8 answers 48 times, 49 with the
/// batch's `BEGIN`, and the thread runs it through. `cargo bench --bench telegram -- --only
/// imagine --updates 8000 --runs 1`, five interleaved pairs against 16: 5,322 to 6,414
/// updates/s against 4,476 to 6,320 (medians 5,927 and 5,123), with 2.0 context switches per
/// update against 3.2.
pub(crate) const CHUNKS: [usize; 3] = [8, 4, 1];

/// The answers (statement ends and rows) sqlx's SQLite thread holds for a query before it waits
/// for them to be read: sqlx-sqlite's default `row_buffer_size`, which a connection opened
/// through `Any` from a URL cannot change.
pub(crate) const SQLX_ROW_CHANNEL: usize = 50;

/// What opens a batch's write transaction on SQLite: the write lock at once, so that the
/// batch never fails to upgrade a read to a write.
pub(crate) const BEGIN: &str = "BEGIN IMMEDIATE";

/// The SQL of a kind of plan: statements numbering their parameters `$1…$N`.
#[derive(Debug)]
pub(crate) struct Script {
    sql: String,
    /// Statements in `sql`.
    statements: usize,
    /// The highest parameter number in `sql`.
    params: usize,
    /// `sql` repeated for each size in [`CHUNKS`], made when first used; then the same, each
    /// opening the batch's transaction first (see [`Script::chunk`]).
    chunks: [[OnceLock<Arc<str>>; CHUNKS.len()]; 2],
    /// `sql` followed by a read (see [`Script::followed_by`]), made when first used.
    followed: OnceLock<(&'static str, Arc<str>)>,
}

impl Script {
    /// A script of one or more statements separated by `;`, numbering parameters `$1…$N`.
    pub(crate) fn new(sql: impl Into<String>) -> Arc<Script> {
        let sql = sql.into();
        let sql = sql.trim().trim_end_matches(';').to_string();
        let (separators, params) = scan(&sql);
        Arc::new(Script {
            statements: separators + 1,
            params: params.iter().map(|(_, n)| *n).max().unwrap_or(0),
            sql,
            chunks: Default::default(),
            followed: OnceLock::new(),
        })
    }

    /// `sql` followed by the statement `then`, its parameters `$1…` numbered after the
    /// script's own: one query that writes and then reads. A script of several statements runs
    /// in a transaction of its own ([`Script::isolated`]), `then` read before its
    /// commit. Only one `then` is kept made; the store has one (the wallet log's read).
    fn followed_by(&self, then: &'static str) -> Arc<str> {
        let make = || {
            let read = renumber(then, self.params);
            Arc::from(if self.isolated() {
                format!("{BEGIN}; {}; {read}; COMMIT", self.sql)
            } else {
                format!("{}; {read}", self.sql)
            })
        };
        let (kept, sql) = self.followed.get_or_init(|| (then, make()));
        if *kept == then { sql.clone() } else { make() }
    }

    /// Whether each plan of this script is undone as a whole when refused (when it has several
    /// statements: a refusal must undo the ones before it): in a batch, inside a savepoint of
    /// its own; alone, in a transaction of its own, which rolling back undoes.
    fn isolated(&self) -> bool {
        self.statements > 1
    }

    /// Statements each plan takes in a chunk, its savepoint included.
    pub(crate) fn statements_per_plan(&self) -> usize {
        self.statements + if self.isolated() { 2 } else { 0 }
    }

    /// Whether `n` plans of this script, each answering at most one row, answer within
    /// [`SQLX_ROW_CHANNEL`] with the batch's `BEGIN` before them (see [`CHUNKS`]). One plan
    /// always goes, whatever it answers.
    pub(crate) fn fits(&self, n: usize) -> bool {
        // The batch's `BEGIN`, then each plan's statements' ends and its row.
        let answers = 1 + n * (self.statements_per_plan() + 1);
        n == 1 || answers <= SQLX_ROW_CHANNEL
    }

    /// The query for `n` plans of this script (`n` one of [`CHUNKS`]): each in its savepoint
    /// when isolated, plan `i`'s parameters renumbered past the plans before it; with `begin`,
    /// after [`BEGIN`], so that a batch of plans alone opens its transaction in the round trip
    /// of its first chunk rather than in one of its own.
    pub(crate) fn chunk(&self, n: usize, begin: bool) -> Arc<str> {
        let at = CHUNKS
            .iter()
            .position(|size| *size == n)
            .unwrap_or_else(|| {
                unreachable!("a chunk of {n} plans; chunks are {CHUNKS:?}");
            });
        self.chunks[usize::from(begin)][at]
            .get_or_init(|| {
                let mut sql = String::new();
                if begin {
                    sql.push_str(BEGIN);
                    sql.push_str("; ");
                }
                for i in 0..n {
                    if self.isolated() {
                        sql.push_str("SAVEPOINT operation; ");
                    }
                    sql.push_str(&renumber(&self.sql, i * self.params));
                    sql.push_str("; ");
                    if self.isolated() {
                        sql.push_str("RELEASE operation; ");
                    }
                }
                Arc::from(sql)
            })
            .clone()
    }
}

/// Reads `sql` past quoted strings and identifiers: how many `;` separate its statements, and
/// each parameter `$n` (where its number is written, and the number).
fn scan(sql: &str) -> (usize, Vec<(Range<usize>, usize)>) {
    let mut separators = 0;
    let mut params = Vec::new();
    let mut quote = None;
    for (at, c) in sql.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => separators += 1,
            (None, '$') => {
                let digits =
                    at + 1..at + 1 + sql[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(n) = sql[digits.clone()].parse() {
                    params.push((digits, n));
                }
            }
            _ => {}
        }
    }
    (separators, params)
}

/// `sql` with every parameter `$n` outside quotes written as `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    for (digits, n) in scan(sql).1 {
        out.push_str(&sql[copied..digits.start]);
        out.push_str(&(n + offset).to_string());
        copied = digits.end;
    }
    out.push_str(&sql[copied..]);
    out
}

/// A value bound to a plan's parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Arg {
        Arg::Int(value)
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Arg {
        Arg::OptInt(value)
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Arg {
        Arg::Text(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Arg {
        Arg::Text(value.to_string())
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Arg {
        Arg::OptText(value.map(str::to_string))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Arg {
        Arg::OptText(value)
    }
}

/// Binds `args` after what `query` has bound already.
pub(crate) fn bind_all<'q>(
    mut query: Query<'q, sqlx::Any, AnyArguments>,
    args: Vec<Arg>,
) -> Query<'q, sqlx::Any, AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::OptInt(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::OptText(value) => query.bind(value),
        };
    }
    query
}

/// What a plan makes of its rows, or of the error one of its statements raised.
pub(crate) type Finish<T> = Box<dyn FnOnce(Result<Vec<AnyRow>>) -> Result<T> + Send>;

/// One write as data: a [`Script`], the values of its parameters `$1…$N` in order, and what it
/// makes of its rows (see the module's contract).
pub(crate) struct Plan<T> {
    pub(crate) script: Arc<Script>,
    pub(crate) args: Vec<Arg>,
    pub(crate) finish: Finish<T>,
}

impl<T: Send + 'static> Plan<T> {
    /// A plan whose statements' errors are what it answers (a refusal or an internal error, as
    /// [`Error::from`] tells a database error).
    pub(crate) fn new(
        script: &Arc<Script>,
        args: Vec<Arg>,
        read: impl FnOnce(Vec<AnyRow>) -> Result<T> + Send + 'static,
    ) -> Plan<T> {
        Plan::refusing(script, args, read, |error| error)
    }

    /// As [`Plan::new`], with the statements' errors turned into what they mean first.
    pub(crate) fn refusing(
        script: &Arc<Script>,
        args: Vec<Arg>,
        read: impl FnOnce(Vec<AnyRow>) -> Result<T> + Send + 'static,
        refused: impl FnOnce(Error) -> Error + Send + 'static,
    ) -> Plan<T> {
        Plan {
            script: script.clone(),
            args,
            finish: Box::new(move |rows| match rows {
                Ok(rows) => read(rows),
                Err(error) => Err(refused(error)),
            }),
        }
    }

    /// The plan with its answer's type erased, for the writer's queue.
    pub(crate) fn erase(self) -> Plan<Erased> {
        let finish = self.finish;
        Plan {
            script: self.script,
            args: self.args,
            finish: Box::new(move |rows| finish(rows).map(|value| Box::new(value) as Erased)),
        }
    }

    /// Runs the plan alone on `conn` (PostgreSQL, or a plan that has no batch to join). A
    /// script of several statements runs on SQLite only.
    pub(crate) async fn run_alone(self, conn: &mut AnyConnection) -> Result<T> {
        let query = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(self.script.sql.clone())),
            self.args,
        );
        let (rows, _, failure) = fetch_split(conn, query, usize::MAX).await;
        (self.finish)(failure.map_or(Ok(rows), |(_, error)| Err(error)))
    }

    /// Runs the plan alone on `conn` with the statement `then` after it (its parameters
    /// `then_args`), in one round trip: the plan's answer, and the rows `then` read, or `None`
    /// when it did not run because the plan was refused. SQLite only. A plan of several
    /// statements runs in a transaction of its own, opened and committed in the same round
    /// trip, with `then` read just before the commit; whatever fails in it is rolled back.
    pub(crate) async fn run_alone_then(
        self,
        conn: &mut AnyConnection,
        then: &'static str,
        then_args: Vec<Arg>,
    ) -> (Result<T>, Option<Result<Vec<AnyRow>>>) {
        let mut args = self.args;
        args.extend(then_args);
        let query = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(self.script.followed_by(then))),
            args,
        );
        // Its own transaction's BEGIN comes first, counted with the plan's statements.
        let own_transaction = self.script.isolated();
        let statements = usize::from(own_transaction) + self.script.statements;
        let (mine, read, failure) = fetch_split(conn, query, statements).await;
        if own_transaction && failure.is_some() {
            // The statements after the failure did not run, the commit among them.
            let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
        }
        match failure {
            Some((0, error)) if own_transaction => (Err(not_begun(error)), None),
            Some((ended, error)) if ended < statements => ((self.finish)(Err(error)), None),
            Some((_, error)) if own_transaction => (Err(rolled_back(format!("{error:#}"))), None),
            Some((_, error)) => ((self.finish)(Ok(mine)), Some(Err(error))),
            None => ((self.finish)(Ok(mine)), Some(Ok(read))),
        }
    }
}

/// Runs `query` in one round trip: the rows of its first `first` statements, the rows of the
/// statements after them, and on an error, how many statements had ended before it and the
/// error (the statements after it did not run).
pub(crate) async fn fetch_split(
    conn: &mut AnyConnection,
    query: Query<'_, sqlx::Any, AnyArguments>,
    first: usize,
) -> (Vec<AnyRow>, Vec<AnyRow>, Option<(usize, Error)>) {
    use futures_util::StreamExt as _;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut ended = 0;
    let mut steps = sqlx::Executor::fetch_many(conn, query);
    while let Some(step) = steps.next().await {
        match step {
            Ok(Either::Left(_)) => ended += 1,
            Ok(Either::Right(row)) if ended < first => before.push(row),
            Ok(Either::Right(row)) => after.push(row),
            Err(error) => return (before, after, Some((ended, Error::from(error)))),
        }
    }
    (before, after, None)
}

impl<T> std::fmt::Debug for Plan<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The arguments may hold what people wrote; the script says what the plan is.
        f.debug_struct("Plan")
            .field("script", &self.script.sql)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_counts_its_statements_and_parameters_past_quotes() {
        let script = Script::new("SELECT $2, ';$9'; UPDATE t SET a = $1 WHERE b = \"$7;\";");
        assert_eq!((script.statements, script.params), (2, 2));
        assert_eq!(script.statements_per_plan(), 4);
    }

    #[test]
    fn a_chunk_renumbers_each_plans_parameters_and_leaves_quotes_alone() {
        let script = Script::new("UPDATE t SET a = $1, b = '$1' WHERE id = $2");
        assert_eq!(
            &*script.chunk(4, false),
            "UPDATE t SET a = $1, b = '$1' WHERE id = $2; \
             UPDATE t SET a = $3, b = '$1' WHERE id = $4; \
             UPDATE t SET a = $5, b = '$1' WHERE id = $6; \
             UPDATE t SET a = $7, b = '$1' WHERE id = $8; "
        );
        let several = Script::new("INSERT INTO t VALUES ($1); SELECT $1");
        assert_eq!(
            &*several.chunk(1, false),
            "SAVEPOINT operation; INSERT INTO t VALUES ($1); SELECT $1; RELEASE operation; "
        );
        assert_eq!(
            &*several.chunk(1, true),
            "BEGIN IMMEDIATE; SAVEPOINT operation; INSERT INTO t VALUES ($1); SELECT $1; \
             RELEASE operation; "
        );
    }

    #[test]
    fn a_read_after_a_plan_numbers_its_parameters_after_the_plans() {
        let script = Script::new("UPDATE t SET a = $1 WHERE id = $2;");
        const THEN: &str = "SELECT x FROM log WHERE seq > $1";
        let expected = "UPDATE t SET a = $1 WHERE id = $2; SELECT x FROM log WHERE seq > $3";
        assert_eq!(&*script.followed_by(THEN), expected);
        // Made once and kept.
        assert!(Arc::ptr_eq(
            &script.followed_by(THEN),
            &script.followed_by(THEN)
        ));
        assert_eq!(
            &*script.followed_by("SELECT $1"),
            "UPDATE t SET a = $1 WHERE id = $2; SELECT $3"
        );
        let several = Script::new("INSERT INTO t VALUES ($1); UPDATE t SET a = $2");
        assert_eq!(
            &*several.followed_by(THEN),
            "BEGIN IMMEDIATE; INSERT INTO t VALUES ($1); UPDATE t SET a = $2; \
             SELECT x FROM log WHERE seq > $3; COMMIT"
        );
    }

    /// [`SQLX_ROW_CHANNEL`] is what sqlx gives a SQLite connection opened from a URL, as the
    /// store's are.
    #[test]
    fn sqlx_holds_as_many_answers_as_the_chunks_assume() {
        let options: sqlx::sqlite::SqliteConnectOptions =
            "sqlite://imagegpt.db".parse().expect("a SQLite URL");
        let debug = format!("{options:?}");
        let size: Option<usize> = debug
            .split_once("row_channel_size: ")
            .and_then(|(_, rest)| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            });
        assert_eq!(size, Some(SQLX_ROW_CHANNEL), "{debug}");
    }

    #[test]
    fn a_chunk_fits_when_its_answers_fit_in_sqlx_channel() {
        // Two answers a plan (its statement's end, a row), 49 with the BEGIN: fits.
        let one = Script::new("UPDATE t SET a = $1 WHERE id = $2 RETURNING a");
        assert!(one.fits(24));
        assert!(!one.fits(25));
        // Six a plan (a savepoint, three statements, the release, a row): 8 fit, as 49.
        let three = Script::new("INSERT INTO t VALUES ($1); UPDATE t SET a = 1; SELECT a FROM t");
        assert!(three.fits(8));
        assert!(!three.fits(9));
        // Seven a plan: 8 would be 57.
        let four = Script::new(
            "INSERT INTO t VALUES ($1); UPDATE t SET a = 1; DELETE FROM u; SELECT a FROM t",
        );
        assert!(four.fits(7));
        assert!(!four.fits(8));
        assert!(four.fits(1));
    }

    #[test]
    fn renumbering_reads_whole_numbers() {
        assert_eq!(renumber("$1 + $10 + $2", 10), "$11 + $20 + $12");
        assert_eq!(renumber("a = $1", 0), "a = $1");
    }
}
