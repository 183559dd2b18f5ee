//! SQLite's one writer task and its group commit, and where writes run on PostgreSQL.

use super::*;

/// Where writes run.
#[derive(Debug)]
pub(crate) enum Writer {
    Sqlite(WriterHandle),
    Postgres(AnyPool),
}

impl Writer {
    pub(super) async fn run<T, F>(&self, atomic: Atomic, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Writer::Sqlite(handle) => handle.run(atomic, erase(move |conn, _| op(conn))).await,
            Writer::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                match atomic {
                    Atomic::Statement => op(&mut conn).await,
                    Atomic::Transaction | Atomic::Script => {
                        let mut tx = conn.begin().await?;
                        let value = op(&mut tx).await?;
                        tx.commit().await?;
                        Ok(value)
                    }
                }
            }
        }
    }

    /// Runs a script: `op` sends its statements in one query that starts with the prelude it
    /// is given, so that on SQLite the savepoint around it costs no round trip of its own. The
    /// prelude is empty on PostgreSQL (where `op` runs in a transaction, and must not send
    /// several statements in one query, which PostgreSQL refuses with parameters).
    pub(super) async fn run_script<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection, &'static str) -> BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        match self {
            Writer::Sqlite(handle) => handle.run(Atomic::Script, erase(op)).await,
            Writer::Postgres(_) => self.run(Atomic::Transaction, |conn| op(conn, "")).await,
        }
    }

    pub(super) async fn close(&self) {
        match self {
            Writer::Sqlite(handle) => handle.close().await,
            Writer::Postgres(pool) => pool.close().await,
        }
    }
}

/// SQLite's one writer: a task that owns the write connection and commits whatever writes are
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
/// An operation and the savepoint statements it must send first (a script's prelude; empty
/// for other operations, whose prelude the writer sends itself).
pub(super) type ErasedOp = Box<
    dyn for<'c> FnOnce(&'c mut AnyConnection, &'static str) -> BoxFuture<'c, Result<Erased>> + Send,
>;

/// `op` with its answer's type erased, for the writer's queue.
fn erase<T, F>(op: F) -> ErasedOp
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut AnyConnection, &'static str) -> BoxFuture<'c, Result<T>>
        + Send
        + 'static,
{
    Box::new(move |conn, prelude| {
        Box::pin(async move {
            op(conn, prelude)
                .await
                .map(|value| Box::new(value) as Erased)
        })
    })
}

pub(super) struct WriteJob {
    atomic: Atomic,
    op: ErasedOp,
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
    pub(super) fn start(connection: AnyConnection, checkpointer: AnyConnection) -> WriterHandle {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(async move {
            let checkpoints = tokio::spawn(checkpoint(checkpointer));
            run_writer(connection, receiver).await;
            checkpoints.abort();
        });
        WriterHandle { sender }
    }

    pub(super) async fn run<T: 'static>(&self, atomic: Atomic, op: ErasedOp) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let closed = || Error::Internal(anyhow::anyhow!("the store is closed"));
        self.sender
            .send(WriterMessage::Job(WriteJob { atomic, op, reply }))
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
            run_batch(&mut conn, batch).await;
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

pub(super) async fn run_batch(conn: &mut AnyConnection, batch: Vec<WriteJob>) {
    if let [job] = &batch[..]
        && job.atomic == Atomic::Statement
    {
        let Some(job) = batch.into_iter().next() else {
            return;
        };
        let result = (job.op)(conn, "").await;
        let _ = job.reply.send(result);
        return;
    }
    if let Err(error) = conn.execute("BEGIN IMMEDIATE").await {
        let why = format!("could not begin a write transaction: {error}");
        for job in batch {
            let _ = job
                .reply
                .send(Err(Error::Internal(anyhow::anyhow!(why.clone()))));
        }
        return;
    }
    let mut done = Vec::with_capacity(batch.len());
    let mut aborted: Option<String> = None;
    // A savepoint whose operation succeeded is released together with the next statement sent
    // (the next savepoint, or the commit): every round trip to SQLite's thread counts.
    let mut unreleased = false;
    for job in batch {
        if aborted.is_some() {
            done.push((job.reply, None));
            continue;
        }
        // A multi-statement operation gets a savepoint even alone in its batch, so that its
        // refusal undoes its own earlier statements.
        let isolate = job.atomic != Atomic::Statement;
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
        // A script sends its prelude itself, in the same round trip as its statements.
        let prelude = match (job.atomic, prepare) {
            (Atomic::Script, Some(sql)) => sql,
            (_, Some(sql)) => {
                if let Err(error) = conn.execute(sql).await {
                    aborted = Some(error.to_string());
                    done.push((job.reply, None));
                    continue;
                }
                ""
            }
            (_, None) => "",
        };
        let result = (job.op)(conn, prelude).await;
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
        done.push((job.reply, Some(result)));
    }
    let commit = if unreleased {
        "RELEASE operation; COMMIT"
    } else {
        "COMMIT"
    };
    let outcome = match aborted {
        Some(why) => Err(why),
        None => conn
            .execute(commit)
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
            (Err(why), _) => Err(Error::Internal(anyhow::anyhow!(
                "the write was rolled back: {why}"
            ))),
            (Ok(()), None) => Err(Error::Internal(anyhow::anyhow!("the write did not run"))),
        };
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation inserting `values` into `t`, refused (as a recognised fault) when SQLite
    /// refuses one of them.
    fn inserts(
        atomic: Atomic,
        values: &'static [i64],
    ) -> (WriteJob, oneshot::Receiver<Result<Erased>>) {
        let (reply, answer) = oneshot::channel();
        let op = erase(move |conn, _prelude| {
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
        (WriteJob { atomic, op, reply }, answer)
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
        run_batch(&mut conn, jobs).await;
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
}
