//! SQLite's one writer and its group commit, and where writes run on PostgreSQL.

use super::balance_cache::{Commit, WalletLog};
use super::plan::{BEGIN, CHUNKS, Plan, Script, bind_all};
use super::*;
use anyhow::Context as _;
use sqlx::{Either, any::AnyRow};

/// Where writes run.
#[derive(Debug)]
pub(crate) enum Writer {
    Sqlite(WriterHandle),
    Postgres {
        /// Where the store's other connections come from (reads, a leader's own).
        pool: AnyPool,
        /// The connections writes run on, held by the store rather than pooled (see
        /// [`IdleConnections`]).
        held: IdleConnections,
    },
}

impl Writer {
    pub(super) async fn run<T, F>(&self, atomic: Atomic, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Writer::Sqlite(handle) => handle.run(atomic, erase(op)).await,
            Writer::Postgres { held, .. } => {
                let mut conn = held.lend().await?;
                let result = match atomic {
                    Atomic::Statement => op(&mut conn).await,
                    Atomic::Transaction => in_transaction(&mut conn, op).await,
                };
                conn.keep_if_intact(&result);
                result
            }
        }
    }

    /// Runs a plan: on SQLite in the writer's next batch, beside the other plans of its script
    /// waiting there (see [`plan`](super::plan)); on PostgreSQL alone, as one statement.
    pub(super) async fn run_plan<T: Send + 'static>(&self, plan: Plan<T>) -> Result<T> {
        match self {
            Writer::Sqlite(handle) => handle.submit(Work::Plan(plan.erase())).await,
            Writer::Postgres { .. } => {
                self.run(Atomic::Statement, move |conn| {
                    Box::pin(plan.run_alone(conn))
                })
                .await
            }
        }
    }

    pub(super) async fn close(&self) {
        match self {
            Writer::Sqlite(handle) => handle.close().await,
            Writer::Postgres { pool, held } => {
                held.close().await;
                pool.close().await;
            }
        }
    }
}

/// Runs `op` in a transaction on `conn`: committed when it succeeds, rolled back at once when
/// it fails. (Left to sqlx, the rollback would wait to be sent with the connection's next use,
/// and a held connection may stand idle meanwhile with the transaction's locks.)
async fn in_transaction<T, F>(conn: &mut AnyConnection, op: F) -> Result<T>
where
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>>,
{
    let mut tx = conn.begin().await?;
    match op(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

/// SQLite's one writer: a thread that owns the write connection and commits whatever writes are
/// waiting in one transaction (group commit). A commit costs far more than a statement, and
/// SQLite allows one writer at a time anyway, so batching is what lets many people write at
/// once. Each operation in a batch stands alone: a refused statement undoes only itself, and
/// a multi-statement operation runs inside its own savepoint.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    sender: mpsc::Sender<WriterMessage>,
}

/// The most operations committed together.
pub(super) const MAX_BATCH: usize = 256;

pub(super) type Erased = Box<dyn std::any::Any + Send>;
/// An operation on the connection, its answer's type erased.
pub(super) type ErasedOp =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Erased>> + Send>;

/// `op` with its answer's type erased, for the writer's queue.
fn erase<T, F>(op: F) -> ErasedOp
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    Box::new(move |conn| {
        Box::pin(async move { op(conn).await.map(|value| Box::new(value) as Erased) })
    })
}

/// What a write is: an operation on the connection, or a plan the writer may send together
/// with others of its script.
pub(super) enum Work {
    Op(Atomic, ErasedOp),
    Plan(Plan<Erased>),
}

pub(super) struct WriteJob {
    work: Work,
    reply: oneshot::Sender<Result<Erased>>,
}

pub(super) enum WriterMessage {
    Job(WriteJob),
    Close(oneshot::Sender<()>),
}

impl WriterHandle {
    /// Starts the writer, with the write-ahead log checkpointed (copied into the database
    /// file, with a sync of each) beside it, on a connection of its own, every
    /// [`CHECKPOINT_EVERY`]. SQLite's own automatic checkpoint runs inside the commit that
    /// fills the log past 1,000 pages: under load that was a checkpoint every few dozen
    /// commits, with two syncs each, on the one path every write waits for (`/imagine` on
    /// SQLite in the service benchmark: 1,750/s, p99 19 ms with SQLite's checkpoints alone;
    /// 2,000/s, p99 11 ms with these).
    ///
    /// The writer reads the wallet log (`wallets`) in the round trip of each commit, or of a lone
    /// plan that needed none (after a lone closure, in a round trip of its own), so that what
    /// it wrote is forgotten from memory before anyone hears it was written (see
    /// [`balance_cache`](super::balance_cache)).
    ///
    /// The writer runs on a thread of its own, not on the runtime (see
    /// [`own_thread`](super::own_thread)); it ends when the store is closed or dropped.
    pub(super) fn start(
        connection: AnyConnection,
        checkpointer: AnyConnection,
        wallets: WalletLog,
    ) -> Result<WriterHandle> {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        // The checkpoints are started by the writer's thread, on this runtime, so that a thread
        // that could not start leaves none behind.
        let runtime = tokio::runtime::Handle::current();
        own_thread::spawn("sqlite-writer", async move {
            let checkpoints = runtime.spawn(checkpoint(checkpointer));
            run_writer(connection, receiver, wallets).await;
            checkpoints.abort();
        })
        .context("could not start SQLite's writer thread")?;
        Ok(WriterHandle { sender })
    }

    pub(super) async fn run<T: 'static>(&self, atomic: Atomic, op: ErasedOp) -> Result<T> {
        self.submit(Work::Op(atomic, op)).await
    }

    async fn submit<T: 'static>(&self, work: Work) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(WriterMessage::Job(WriteJob { work, reply }))
            .await
            .map_err(|_| closed())?;
        let value = answer.await.map_err(|_| closed())??;
        value.downcast::<T>().map(|value| *value).map_err(|_| {
            Error::Internal(anyhow::anyhow!("the writer answered with the wrong type"))
        })
    }

    pub(super) async fn close(&self) {
        let (ack, closed) = oneshot::channel();
        if self.sender.send(WriterMessage::Close(ack)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// How often the log is checkpointed beside the writer.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The log's length (pages) past which the writer checkpoints in its own commit: a bound for
/// when checkpoints beside it cannot keep up (a reader holding an old snapshot, say).
pub(super) const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// Checkpoints the log now and then, without ever waiting for the writer (`PASSIVE`: what
/// readers or the writer still need is left for the next time). Stops at an error: the
/// writer's own automatic checkpoint takes over.
async fn checkpoint(mut conn: AnyConnection) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if let Err(error) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::warn!(%error, "checkpointing SQLite's log failed; the writer checkpoints it");
            return;
        }
    }
}

pub(super) async fn run_writer(
    mut conn: AnyConnection,
    mut receiver: mpsc::Receiver<WriterMessage>,
    wallets: WalletLog,
) {
    while let Some(message) = receiver.recv().await {
        let mut batch = Vec::new();
        let mut close = None;
        match message {
            WriterMessage::Job(job) => batch.push(job),
            WriterMessage::Close(ack) => close = Some(ack),
        }
        while close.is_none() && batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(WriterMessage::Job(job)) => batch.push(job),
                Ok(WriterMessage::Close(ack)) => close = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&mut conn, batch, Some(&wallets)).await;
        }
        if let Some(ack) = close {
            let _ = conn.close().await;
            let _ = ack.send(());
            return;
        }
    }
}

/// True for errors that leave the batch's transaction intact: a refusal the operation
/// recognised (the refused statement undid itself), not a fault of the connection.
pub(super) fn leaves_batch_intact(error: &Error) -> bool {
    // A person's error or a typed fault (a ledger rule, a taken identity) is a refusal decided
    // by our own code: its savepoint is undone and the rest of the batch stands.
    !error.is_internal() || error.fault().is_some()
}

/// Runs a batch and answers each write in it; with `wallets`, only once the wallets it changed
/// are forgotten from memory.
pub(super) async fn run_batch(
    conn: &mut AnyConnection,
    batch: Vec<WriteJob>,
    wallets: Option<&WalletLog>,
) {
    let mut ops = Vec::new();
    let mut plans = Vec::new();
    for job in batch {
        match job.work {
            Work::Op(atomic, op) => ops.push((atomic, op, job.reply)),
            Work::Plan(plan) => plans.push((plan, job.reply)),
        }
    }
    // One statement alone needs no transaction of its own: the database applies it whole.
    let alone = ops.len() + plans.len() == 1;
    if alone
        && matches!(ops.first(), Some((Atomic::Statement, ..)))
        && let Some((_, op, reply)) = ops.pop()
    {
        let answer = op(conn).await;
        if let Some(wallets) = wallets {
            wallets.read(conn).await;
        }
        let _ = reply.send(answer);
        return;
    }
    // A plan alone runs in one round trip with the wallet log's read (and, when it has several
    // statements, its own transaction's opening and commit).
    if alone
        && plans
            .first()
            .is_some_and(|(plan, _)| plan.script.statements_per_plan() == 1 || wallets.is_some())
        && let Some((plan, reply)) = plans.pop()
    {
        let answer = match wallets {
            Some(wallets) => wallets.run_alone(conn, plan).await,
            None => plan.run_alone(conn).await,
        };
        let _ = reply.send(answer);
        return;
    }
    // Plans alone open the transaction in their first chunk's round trip (see `run_chunk`).
    let mut begin = ops.is_empty();
    if !begin && let Err(error) = conn.execute(BEGIN).await {
        let replies = ops.into_iter().map(|(_, _, reply)| reply);
        for reply in replies.chain(plans.into_iter().map(|(_, reply)| reply)) {
            let _ = reply.send(Err(not_begun(&error)));
        }
        return;
    }
    let mut done = Vec::with_capacity(ops.len() + plans.len());
    let mut aborted: Option<String> = None;
    // A savepoint whose operation succeeded is released together with the next statement sent
    // (the next savepoint, or the commit): every round trip to SQLite's thread counts.
    let mut unreleased = false;
    for (atomic, op, reply) in ops {
        if aborted.is_some() {
            done.push((reply, None));
            continue;
        }
        // A multi-statement operation gets a savepoint even alone in its batch, so that its
        // refusal undoes its own earlier statements.
        let isolate = atomic != Atomic::Statement;
        // A single statement needs no savepoint of its own: a refused statement undoes only
        // itself. So it runs inside the savepoint before it, left open (released with the next
        // savepoint or the commit), rather than cost a round trip to release it first.
        let prepare = match (unreleased, isolate) {
            (true, true) => Some("RELEASE operation; SAVEPOINT operation"),
            (false, true) => Some("SAVEPOINT operation"),
            (_, false) => None,
        };
        if isolate {
            unreleased = false;
        }
        if let Some(sql) = prepare
            && let Err(error) = conn.execute(sql).await
        {
            aborted = Some(error.to_string());
            done.push((reply, None));
            continue;
        }
        let result = op(conn).await;
        match &result {
            Ok(_) if isolate => unreleased = true,
            Err(error) if leaves_batch_intact(error) && isolate => {
                let undone = conn
                    .execute("ROLLBACK TO operation; RELEASE operation")
                    .await;
                if let Err(error) = undone {
                    aborted = Some(error.to_string());
                }
            }
            Err(error) if !leaves_batch_intact(error) => aborted = Some(format!("{error:#}")),
            _ => {}
        }
        done.push((reply, Some(result)));
    }
    if !plans.is_empty() && aborted.is_none() && unreleased {
        // Plans bring their own savepoints.
        unreleased = false;
        if let Err(error) = conn.execute("RELEASE operation").await {
            aborted = Some(error.to_string());
        }
    }
    if !plans.is_empty() {
        run_plans(conn, plans, &mut begin, &mut done, &mut aborted).await;
    }
    let commit = if unreleased {
        Commit::ReleasingSavepoint
    } else {
        Commit::Plain
    };
    let outcome = match (aborted, wallets) {
        (Some(why), _) => Err(why),
        // The wallet log is read in the commit's round trip.
        (None, Some(wallets)) => wallets
            .commit(conn, commit)
            .await
            .map_err(|e| format!("{e:#}")),
        (None, None) => conn
            .execute(commit.sql())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    if outcome.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    for (reply, result) in done {
        let answer = match (&outcome, result) {
            (Ok(()), Some(result)) => result,
            // A refusal stays true when the batch is undone: nothing was written either way.
            (Err(_), Some(Err(error))) if leaves_batch_intact(&error) => Err(error),
            (Err(why), _) => Err(rolled_back(why)),
            (Ok(()), None) => Err(Error::Internal(anyhow::anyhow!("the write did not run"))),
        };
        let _ = reply.send(answer);
    }
}

/// The answer to a write whose transaction could not be opened.
pub(super) fn not_begun(error: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!(
        "could not begin a write transaction: {error}"
    ))
}

/// The answer to a write undone with the rest of its transaction (`why`).
pub(super) fn rolled_back(why: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("the write was rolled back: {why}"))
}

type Reply = oneshot::Sender<Result<Erased>>;
type Answered = Vec<(Reply, Option<Result<Erased>>)>;
/// A script's plans not yet run, in the order they arrived.
type Waiting = std::collections::VecDeque<(Plan<Erased>, Reply)>;

/// Runs a batch's plans, those of one script together, in chunks of the sizes in [`CHUNKS`]
/// that fit sqlx's answer channel ([`Script::fits`]):
/// each chunk one round trip, the first opening the transaction when `begin` says it is not
/// open yet. A plan refused by one of its statements is undone alone and the plans after it in
/// its chunk are sent again; anything else aborts the batch.
async fn run_plans(
    conn: &mut AnyConnection,
    plans: Vec<(Plan<Erased>, Reply)>,
    begin: &mut bool,
    done: &mut Answered,
    aborted: &mut Option<String>,
) {
    let mut scripts: Vec<(Arc<Script>, Waiting)> = Vec::new();
    for (plan, reply) in plans {
        match scripts
            .iter_mut()
            .find(|(script, _)| Arc::ptr_eq(script, &plan.script))
        {
            Some((_, waiting)) => waiting.push_back((plan, reply)),
            None => scripts.push((plan.script.clone(), [(plan, reply)].into())),
        }
    }
    for (script, mut waiting) in scripts {
        while let Some(&n) = CHUNKS
            .iter()
            .find(|n| **n <= waiting.len() && script.fits(**n))
        {
            let chunk: Vec<_> = waiting.drain(..n).collect();
            if aborted.is_some() {
                done.extend(chunk.into_iter().map(|(_, reply)| (reply, None)));
                continue;
            }
            let opening = std::mem::take(begin);
            match run_chunk(conn, &script, chunk, opening, done).await {
                Ok(not_run) => {
                    for plan in not_run.into_iter().rev() {
                        waiting.push_front(plan);
                    }
                }
                Err(why) => *aborted = Some(why),
            }
        }
    }
}

/// Sends `chunk` (plans of `script`) in one query, after [`BEGIN`] with `begin`, and answers
/// each plan that ran. Returns the plans after one its statements refused, which did not run,
/// or why the batch must be undone.
async fn run_chunk(
    conn: &mut AnyConnection,
    script: &Script,
    chunk: Vec<(Plan<Erased>, Reply)>,
    begin: bool,
    done: &mut Answered,
) -> std::result::Result<Vec<(Plan<Erased>, Reply)>, String> {
    use futures_util::StreamExt as _;
    let n = chunk.len();
    let per = script.statements_per_plan();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(script.chunk(n, begin)));
    for (plan, _) in &chunk {
        // Kept: the plans after a refused one are sent again.
        query = bind_all(query, plan.args.clone());
    }
    let mut rows: Vec<Vec<AnyRow>> = (0..n).map(|_| Vec::new()).collect();
    // Statements of the plans that ended, and whether the transaction was opened.
    let mut finished = 0;
    let mut begun = !begin;
    let mut failure = None;
    {
        let mut steps = conn.fetch_many(query);
        while let Some(step) = steps.next().await {
            match step {
                Ok(Either::Left(_)) if !begun => begun = true,
                Ok(Either::Left(_)) => finished += 1,
                Ok(Either::Right(row)) => rows[(finished / per).min(n - 1)].push(row),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
    }
    if !begun {
        let why = match failure {
            Some(error) => not_begun(error).to_string(),
            None => "the transaction was not begun".to_string(),
        };
        done.extend(chunk.into_iter().map(|(_, reply)| (reply, None)));
        return Err(why);
    }
    let refused_at = match &failure {
        Some(_) => finished / per,
        None if finished == n * per => n,
        None => {
            done.extend(chunk.into_iter().map(|(_, reply)| (reply, None)));
            return Err(format!("{finished} of {} statements ran", n * per));
        }
    };
    let mut not_run = Vec::new();
    let mut abort = None;
    for (at, ((plan, reply), rows)) in chunk.into_iter().zip(rows).enumerate() {
        if at > refused_at {
            not_run.push((plan, reply));
            continue;
        }
        let result = if at < refused_at {
            (plan.finish)(Ok(rows))
        } else {
            let error = failure.take().map_or_else(
                || Error::Internal(anyhow::anyhow!("a statement failed")),
                Error::from,
            );
            // The plan's savepoint, when it has one, is open unless the savepoint itself failed.
            let opened = script.statements_per_plan() > 1 && finished % per > 0;
            if opened
                && let Err(undo) = conn
                    .execute("ROLLBACK TO operation; RELEASE operation")
                    .await
            {
                abort = Some(undo.to_string());
            }
            (plan.finish)(Err(error))
        };
        if let Err(error) = &result
            && !leaves_batch_intact(error)
        {
            abort.get_or_insert_with(|| format!("{error:#}"));
        }
        done.push((reply, Some(result)));
    }
    match abort {
        Some(why) => {
            done.extend(not_run.into_iter().map(|(_, reply)| (reply, None)));
            Err(why)
        }
        None => Ok(not_run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::plan::Arg;

    /// An operation inserting `values` into `t`, refused (as a recognised fault) when SQLite
    /// refuses one of them.
    fn inserts(
        atomic: Atomic,
        values: &'static [i64],
    ) -> (WriteJob, oneshot::Receiver<Result<Erased>>) {
        let (reply, answer) = oneshot::channel();
        let op = erase(move |conn| {
            Box::pin(async move {
                for value in values {
                    sqlx::query("INSERT INTO t (v) VALUES ($1)")
                        .bind(*value)
                        .execute(&mut *conn)
                        .await
                        .map_err(|_| Error::from(Fault::ZeroAmount))?;
                }
                Ok(())
            })
        });
        (
            WriteJob {
                work: Work::Op(atomic, op),
                reply,
            },
            answer,
        )
    }

    /// Each operation in a batch stands alone, whatever runs before and after it: a refused
    /// statement undoes only itself, a refused transaction only its own statements, and a
    /// statement run inside the savepoint left open before it survives the next refusal.
    #[tokio::test]
    async fn a_refusal_in_a_batch_undoes_only_its_own_operation() -> Result<()> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().map_err(anyhow::Error::from)?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("batch.db").display()
        );
        let mut conn = AnyConnection::connect(&url).await?;
        conn.execute("CREATE TABLE t (v INTEGER NOT NULL CHECK (v > 0))")
            .await?;
        let (jobs, answers): (Vec<_>, Vec<_>) = [
            inserts(Atomic::Transaction, &[1, 2]),
            inserts(Atomic::Statement, &[-1]),
            inserts(Atomic::Statement, &[3]),
            inserts(Atomic::Transaction, &[4, -4]),
            inserts(Atomic::Statement, &[5]),
        ]
        .into_iter()
        .unzip();
        run_batch(&mut conn, jobs, None).await;
        let mut refused = Vec::new();
        for answer in answers {
            let answer = answer.await.map_err(anyhow::Error::from)?;
            refused.push(answer.is_err());
        }
        assert_eq!(refused, [false, true, false, true, false]);
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut conn)
            .await?;
        assert_eq!(kept, [1, 2, 3, 5]);
        Ok(())
    }

    /// The read run after a lone plan in these tests (`$1`: the values above it).
    const LATER: &str = "SELECT v FROM t WHERE v > $1 ORDER BY v";

    /// The first column of each row, as the tests' plans and [`LATER`] return it.
    fn values(rows: Vec<AnyRow>) -> Result<Vec<i64>> {
        use sqlx::Row as _;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn scratch() -> Result<(tempfile::TempDir, AnyConnection)> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().map_err(anyhow::Error::from)?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("plans.db").display()
        );
        let mut conn = AnyConnection::connect(&url).await?;
        conn.execute("CREATE TABLE t (v INTEGER NOT NULL CHECK (v > 0))")
            .await?;
        Ok((dir, conn))
    }

    /// `plan` as a job of the writer's queue, and where its answer comes.
    fn queued<T: Send + 'static>(plan: Plan<T>) -> (WriteJob, oneshot::Receiver<Result<Erased>>) {
        let (reply, answer) = oneshot::channel();
        let work = Work::Plan(plan.erase());
        (WriteJob { work, reply }, answer)
    }

    /// Plans of one script waiting together run in chunks of one query each (23 plans: 16, 4,
    /// 1, 1, 1), and each gets its own rows back, whatever its place in its chunk.
    #[tokio::test]
    async fn plans_waiting_together_each_get_their_own_rows() -> Result<()> {
        use sqlx::Row as _;
        let (_dir, mut conn) = scratch().await?;
        let script = Script::new("INSERT INTO t (v) VALUES ($1) RETURNING v, $2 AS name");
        let (jobs, answers): (Vec<_>, Vec<_>) = (1..=23_i64)
            .map(|v| {
                let args = vec![Arg::from(v), Arg::from(format!("plan {v}"))];
                queued(Plan::new(&script, args, |rows| {
                    let row = rows.first().ok_or_else(|| anyhow::anyhow!("no row"))?;
                    Ok((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?))
                }))
            })
            .unzip();
        run_batch(&mut conn, jobs, None).await;
        for (answer, v) in answers.into_iter().zip(1_i64..) {
            let answer = answer.await.map_err(anyhow::Error::from)??;
            let answer = answer
                .downcast::<(i64, String)>()
                .map_err(|_| anyhow::anyhow!("not the plan's answer"))?;
            assert_eq!(*answer, (v, format!("plan {v}")));
        }
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await?;
        assert_eq!(kept, 23);
        Ok(())
    }

    /// A plan run alone with a read after it in one query: the plan gets its rows, the read its
    /// own (its parameter bound after the plan's), and a refused plan stops the read.
    #[tokio::test]
    async fn a_lone_plan_and_the_read_after_it_each_get_their_own_rows() -> Result<()> {
        let (_dir, mut conn) = scratch().await?;
        let script = Script::new("INSERT INTO t (v) VALUES ($1) RETURNING v");
        for v in [2, 7] {
            let plan = Plan::new(&script, vec![Arg::from(v)], values);
            let (answer, read) = plan
                .run_alone_then(&mut conn, LATER, vec![Arg::from(1)])
                .await;
            assert_eq!(answer?, [v]);
            let read = read.ok_or_else(|| anyhow::anyhow!("the read did not run"))??;
            assert_eq!(values(read)?, if v == 2 { vec![2] } else { vec![2, 7] });
        }
        let refused = Plan::new(&script, vec![Arg::from(-1)], values);
        let (answer, read) = refused
            .run_alone_then(&mut conn, LATER, vec![Arg::from(1)])
            .await;
        assert!(answer.is_err(), "{answer:?}");
        assert!(read.is_none());
        Ok(())
    }

    /// A plan of several statements run alone opens and commits a transaction of its own in
    /// its one round trip: refused in its second statement, its first is taken back too and
    /// the read does not run; otherwise both stand, seen by the read and by other connections.
    #[tokio::test]
    async fn a_lone_plan_of_several_statements_stands_or_falls_whole() -> Result<()> {
        let (dir, mut conn) = scratch().await?;
        let script =
            Script::new("INSERT INTO t (v) VALUES ($1); INSERT INTO t (v) VALUES ($2) RETURNING v");
        let plan = |a: i64, b: i64| Plan::new(&script, vec![Arg::from(a), Arg::from(b)], values);
        let (answer, read) = plan(1, 2)
            .run_alone_then(&mut conn, LATER, vec![Arg::from(0)])
            .await;
        assert_eq!(answer?, [2]);
        let read = read.ok_or_else(|| anyhow::anyhow!("the read did not run"))??;
        assert_eq!(values(read)?, [1, 2]);
        let (answer, read) = plan(3, -3)
            .run_alone_then(&mut conn, LATER, vec![Arg::from(0)])
            .await;
        assert!(answer.is_err(), "{answer:?}");
        assert!(read.is_none());
        let (answer, _) = plan(4, 5)
            .run_alone_then(&mut conn, LATER, vec![Arg::from(0)])
            .await;
        assert_eq!(answer?, [5]);
        let url = format!("sqlite://{}", dir.path().join("plans.db").display());
        let mut other = AnyConnection::connect(&url).await?;
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut other)
            .await?;
        assert_eq!(kept, [1, 2, 4, 5], "committed, and 3 taken back with -3");
        Ok(())
    }

    /// A plan refused by one of its statements is undone alone (its savepoint takes back the
    /// statements before the refused one), the plans after it in the same query run again, and
    /// operations in the same batch stand as before.
    #[tokio::test]
    async fn a_refused_plan_is_undone_alone_and_the_plans_after_it_still_run() -> Result<()> {
        let (_dir, mut conn) = scratch().await?;
        let script = Script::new("INSERT INTO t (v) VALUES ($1); INSERT INTO t (v) VALUES ($2)");
        let pairs = [(1, 2), (3, -3), (5, 6), (-7, 8), (9, 10), (11, 12)];
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        let (job, op_answer) = inserts(Atomic::Statement, &[20]);
        jobs.push(job);
        for (a, b) in pairs {
            let (job, answer) = queued(Plan::refusing(
                &script,
                vec![Arg::from(a), Arg::from(b)],
                |_| Ok(()),
                |_| Error::from(Fault::ZeroAmount),
            ));
            jobs.push(job);
            answers.push(answer);
        }
        run_batch(&mut conn, jobs, None).await;
        let mut refused = Vec::new();
        for answer in answers {
            refused.push(answer.await.map_err(anyhow::Error::from)?.is_err());
        }
        assert_eq!(refused, [false, true, false, true, false, false]);
        assert!(op_answer.await.map_err(anyhow::Error::from)?.is_ok());
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut conn)
            .await?;
        assert_eq!(kept, [1, 2, 5, 6, 9, 10, 11, 12, 20]);
        Ok(())
    }

    /// A batch of plans alone (whose first chunk's query opens the transaction: see the
    /// chunk's text in `plan`'s tests) commits as one, and when the transaction cannot be
    /// opened, each plan hears so and none ran.
    #[tokio::test]
    async fn plans_alone_open_their_transaction_with_their_first_chunk() -> Result<()> {
        let (_dir, mut conn) = scratch().await?;
        let script = Script::new("INSERT INTO t (v) VALUES ($1)");
        let batch = |values: &[i64]| -> (Vec<_>, Vec<_>) {
            values
                .iter()
                .map(|v| queued(Plan::new(&script, vec![Arg::from(*v)], |_| Ok(()))))
                .unzip()
        };
        let (jobs, answers) = batch(&[1, 2, 3, 4, 5]);
        run_batch(&mut conn, jobs, None).await;
        for answer in answers {
            answer.await.map_err(anyhow::Error::from)??;
        }
        // A transaction already open: BEGIN fails, and so does each plan, unrun.
        conn.execute("BEGIN").await?;
        let (jobs, answers) = batch(&[6, 7]);
        run_batch(&mut conn, jobs, None).await;
        for answer in answers {
            let answer = answer.await.map_err(anyhow::Error::from)?;
            let error = answer.err().ok_or_else(|| anyhow::anyhow!("a plan ran"))?;
            assert!(
                format!("{error:#}").contains("could not begin"),
                "{error:#}"
            );
        }
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut conn)
            .await?;
        assert_eq!(kept, [1, 2, 3, 4, 5]);
        Ok(())
    }

    /// An internal error in a plan's statements undoes the whole batch, as for operations.
    #[tokio::test]
    async fn a_plan_failing_inside_the_database_undoes_the_batch() -> Result<()> {
        let (_dir, mut conn) = scratch().await?;
        let good = Script::new("INSERT INTO t (v) VALUES ($1)");
        let broken = Script::new("INSERT INTO missing (v) VALUES ($1)");
        let (first, first_answer) = queued(Plan::new(&good, vec![Arg::from(1)], |_| Ok(())));
        let (second, second_answer) = queued(Plan::new(&broken, vec![Arg::from(2)], |_| Ok(())));
        run_batch(&mut conn, vec![first, second], None).await;
        assert!(first_answer.await.map_err(anyhow::Error::from)?.is_err());
        assert!(second_answer.await.map_err(anyhow::Error::from)?.is_err());
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await?;
        assert_eq!(kept, 0, "nothing of the batch was kept");
        Ok(())
    }
}
