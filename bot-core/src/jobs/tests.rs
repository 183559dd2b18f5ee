//! The queue's rules, each a story on both backends ending with a clean audit.

use super::*;
use std::time::Duration;

use crate::Store;
use crate::{Fault, Faulted as _, UserError};
use crate::{
    ledger::TransferState,
    on_every_backend,
    people::User,
    store::testing::{available, person},
};

const LEASE: Duration = Duration::from_secs(30);

/// Claims the next job; panics with `what` when there is none.
async fn claimed(
    store: &Store,
    worker: &str,
    lease: Duration,
    limits: &JobLimits,
    what: &str,
) -> Lease {
    store
        .claim(worker, lease, limits)
        .await
        .expect("claim")
        .unwrap_or_else(|| panic!("no job to claim: expected {what}"))
}

fn new_job(user: &User, key: &str, cost: u64) -> NewJob {
    NewJob {
        key: key.to_string(),
        user: user.id,
        wallet: user.wallet,
        operation: "image".into(),
        cost: Credits::new(cost),
        payload: r#"{"prompt":"a fox"}"#.into(),
    }
}

async fn spent(store: &Store, user: &User) -> u64 {
    store
        .account_balance(user.wallet)
        .await
        .expect("balance")
        .debits_posted
        .get()
}

on_every_backend!(
    enqueueing_holds_the_cost_and_queues_in_one_step,
    a_job_that_cannot_be_paid_for_is_not_queued,
    the_same_request_key_queues_once,
    the_queued_cap_refuses_more_and_holds_nothing,
    a_delivered_job_posts_its_hold_exactly_once,
    a_failed_job_voids_its_hold,
    transient_failures_retry_until_attempts_run_out,
    claims_take_turns_between_people,
    a_place_in_the_queue_is_exact_below_the_cap_and_the_cap_beyond_it,
    nobody_runs_more_than_their_cap,
    racing_claimers_never_pass_the_cap,
    an_expired_lease_is_taken_over_and_the_job_ends_once,
    the_provider_job_id_survives_a_takeover,
    cancelling_a_queued_job_voids_it_and_a_running_one_is_marked,
    a_released_job_is_claimable_at_once,
    the_database_settles_the_hold_whenever_a_job_ends,
);

async fn the_database_settles_the_hold_whenever_a_job_ends(store: Store) {
    let alice = person(&store, "alice", 10).await;
    let job = store
        .enqueue(&new_job(&alice, "u1", 4), &JobLimits::default())
        .await
        .expect("enqueue");
    // Even a job ended by hand (an operator's SQL) takes its hold with it.
    crate::store::execute_unchecked(
        &store,
        "UPDATE jobs SET state = 'failed', finished_at = 1 WHERE id = $1",
        job.id.get(),
    )
    .await
    .expect("end the job");
    let hold = store
        .transfer_by_key("job:u1")
        .await
        .expect("lookup")
        .expect("hold");
    assert_eq!(hold.state, TransferState::Voided);
    assert_eq!(available(&store, &alice).await, 10);
}

async fn enqueueing_holds_the_cost_and_queues_in_one_step(store: Store) {
    let alice = person(&store, "alice", 10).await;
    let job = store
        .enqueue(&new_job(&alice, "u1", 4), &JobLimits::default())
        .await
        .expect("enqueue");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(available(&store, &alice).await, 6);
    let hold = store
        .transfer_by_key("job:u1")
        .await
        .expect("lookup")
        .expect("a hold");
    assert_eq!((hold.id, hold.state), (job.hold, TransferState::Pending));
    assert_eq!(store.queue_position(job.id).await.expect("position"), 0);
}

async fn a_job_that_cannot_be_paid_for_is_not_queued(store: Store) {
    let alice = person(&store, "alice", 3).await;
    let refused = store
        .enqueue(&new_job(&alice, "u1", 4), &JobLimits::default())
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::User(UserError::InsufficientCredits { .. }))
        ),
        "{refused:?}"
    );
    assert!(
        store
            .claim("w", LEASE, &JobLimits::default())
            .await
            .expect("claim")
            .is_none()
    );
    assert_eq!(available(&store, &alice).await, 3);
}

async fn the_same_request_key_queues_once(store: Store) {
    let alice = person(&store, "alice", 10).await;
    let first = store
        .enqueue(&new_job(&alice, "update:7", 2), &JobLimits::default())
        .await
        .expect("first");
    let again = store
        .enqueue(&new_job(&alice, "update:7", 2), &JobLimits::default())
        .await
        .expect("again");
    assert_eq!(first.id, again.id);
    assert_eq!(available(&store, &alice).await, 8);
}

async fn the_queued_cap_refuses_more_and_holds_nothing(store: Store) {
    let alice = person(&store, "alice", 100).await;
    let limits = JobLimits {
        max_queued_per_person: 2,
        ..JobLimits::default()
    };
    store
        .enqueue(&new_job(&alice, "a", 1), &limits)
        .await
        .expect("first");
    store
        .enqueue(&new_job(&alice, "b", 1), &limits)
        .await
        .expect("second");
    let refused = store.enqueue(&new_job(&alice, "c", 1), &limits).await;
    assert!(
        matches!(
            refused,
            Err(Error::User(UserError::TooManyQueued { limit: 2 }))
        ),
        "{refused:?}"
    );
    assert_eq!(available(&store, &alice).await, 98);
    assert_eq!(store.transfer_by_key("job:c").await.expect("lookup"), None);
}

async fn a_delivered_job_posts_its_hold_exactly_once(store: Store) {
    let alice = person(&store, "alice", 10).await;
    store
        .enqueue(&new_job(&alice, "u1", 2), &JobLimits::default())
        .await
        .expect("enqueue");
    let lease = claimed(&store, "w1", LEASE, &JobLimits::default(), "a job").await;
    assert_eq!(lease.job.attempts, 1);
    let done = store.succeed(&lease).await.expect("succeed");
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(spent(&store, &alice).await, 2);
    assert!(matches!(
        store.succeed(&lease).await.faulted(),
        Err(Some(Fault::LeaseLost(_)))
    ));
    assert!(matches!(
        store.fail(&lease, "late").await.faulted(),
        Err(Some(Fault::LeaseLost(_)))
    ));
    assert_eq!(
        (spent(&store, &alice).await, available(&store, &alice).await),
        (2, 8)
    );
}

async fn a_failed_job_voids_its_hold(store: Store) {
    let alice = person(&store, "alice", 10).await;
    store
        .enqueue(&new_job(&alice, "u1", 4), &JobLimits::default())
        .await
        .expect("enqueue");
    let lease = claimed(&store, "w1", LEASE, &JobLimits::default(), "a job").await;
    let failed = store
        .fail(&lease, "No face found in the photo")
        .await
        .expect("fail");
    assert_eq!(
        failed.failure.as_deref(),
        Some("No face found in the photo")
    );
    assert_eq!(
        (spent(&store, &alice).await, available(&store, &alice).await),
        (0, 10)
    );
}

async fn transient_failures_retry_until_attempts_run_out(store: Store) {
    let alice = person(&store, "alice", 10).await;
    let limits = JobLimits {
        max_attempts: 2,
        ..JobLimits::default()
    };
    store
        .enqueue(&new_job(&alice, "u1", 1), &limits)
        .await
        .expect("enqueue");
    let first = claimed(&store, "w1", LEASE, &limits, "a job").await;
    let queued = store
        .retry_later(
            &first,
            "provider timed out",
            Duration::from_secs(60),
            &limits,
        )
        .await
        .expect("retry");
    assert_eq!(queued.state, JobState::Queued);
    assert!(
        store
            .claim("w1", LEASE, &limits)
            .await
            .expect("claim")
            .is_none(),
        "not before its backoff"
    );
    let retried = store
        .retry_later(&first, "again", Duration::ZERO, &limits)
        .await;
    assert!(
        matches!(retried.faulted(), Err(Some(Fault::LeaseLost(_)))),
        "the old lease is gone"
    );
    // Skip the backoff: make the job due now.
    let id = queued.id.get();
    crate::store::execute_unchecked(&store, "UPDATE jobs SET run_after = 0 WHERE id = $1", id)
        .await
        .expect("due");
    let second = claimed(&store, "w2", LEASE, &limits, "due again").await;
    assert_eq!(second.job.attempts, 2);
    let failed = store
        .retry_later(&second, "provider timed out", Duration::ZERO, &limits)
        .await
        .expect("gives up");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(available(&store, &alice).await, 10);
}

/// A place in the queue follows `claim`'s order (turn, then age) and is exact below
/// [`POSITION_CAP`], whether the jobs ahead have earlier turns or the same one; from the cap on it
/// is the cap. Both ways of reading it agree: the enqueue's own answer and `queue_position`.
async fn a_place_in_the_queue_is_exact_below_the_cap_and_the_cap_beyond_it(store: Store) {
    let limits = JobLimits::default();
    let cap = POSITION_CAP;
    let enqueue = async |who: &User, key: String| {
        store
            .enqueue_placed(&new_job(who, &key, 1), &limits)
            .await
            .expect("enqueue")
    };
    let busy = person(&store, "busy", 10).await;
    // busy's three jobs take turns 1, 2 and 3.
    let mut mine = Vec::new();
    for n in 0..3 {
        let placed = enqueue(&busy, format!("busy:{n}")).await;
        assert_eq!(placed.ahead, n, "busy's job {n} as enqueued");
        mine.push(placed.job);
    }
    // cap - 1 people with one job each: turn 1, after busy's first job and before the others.
    let mut others = Vec::new();
    for k in 1..cap {
        let someone = person(&store, &format!("p{k}"), 1).await;
        let placed = enqueue(&someone, format!("p:{k}")).await;
        assert_eq!(placed.ahead, k, "person {k} as enqueued");
        others.push(placed.job);
    }
    // Person k's job.
    let other = |k: u64| &others[k as usize - 1];
    let place = |job: &Job| store.queue_position(job.id);
    assert_eq!(place(other(1)).await.expect("position"), 1);
    assert_eq!(place(other(cap - 2)).await.expect("position"), cap - 2);
    // busy's second job has exactly the cap ahead of it, the third one more.
    assert_eq!(place(&mine[1]).await.expect("position"), cap);
    assert_eq!(place(&mine[2]).await.expect("position"), cap);
    let first = claimed(&store, "w", LEASE, &limits, "busy's first job").await;
    assert_eq!(first.job.id, mine[0].id);
    assert_eq!(place(&mine[0]).await.expect("position"), 0, "running");
    assert_eq!(place(other(1)).await.expect("position"), 0);
    assert_eq!(place(other(cap - 1)).await.expect("position"), cap - 2);
    assert_eq!(
        place(&mine[1]).await.expect("position"),
        cap - 1,
        "every job ahead has an earlier turn"
    );
    assert_eq!(place(&mine[2]).await.expect("position"), cap);
    store.succeed(&first).await.expect("succeed");
}

async fn claims_take_turns_between_people(store: Store) {
    let limits = JobLimits {
        max_running_per_person: 20,
        ..JobLimits::default()
    };
    let busy = person(&store, "busy", 100).await;
    let other = person(&store, "other", 100).await;
    for n in 0..10 {
        store
            .enqueue(&new_job(&busy, &format!("busy:{n}"), 1), &limits)
            .await
            .expect("enqueue");
    }
    let late = store
        .enqueue(&new_job(&other, "other:0", 1), &limits)
        .await
        .expect("enqueue");
    assert_eq!(store.queue_position(late.id).await.expect("position"), 1);
    let first = claimed(&store, "w", LEASE, &limits, "job").await;
    assert_eq!(
        store.queue_position(late.id).await.expect("position"),
        0,
        "with one of busy's jobs running, the other person is next"
    );
    let second = claimed(&store, "w", LEASE, &limits, "job").await;
    assert_eq!(first.job.user, busy.id);
    assert_eq!(
        second.job.id, late.id,
        "one person's queue does not starve another's first job"
    );
    for lease in [first, second] {
        store.succeed(&lease).await.expect("succeed");
    }
}

async fn nobody_runs_more_than_their_cap(store: Store) {
    let limits = JobLimits {
        max_running_per_person: 2,
        ..JobLimits::default()
    };
    let alice = person(&store, "alice", 100).await;
    for n in 0..4 {
        store
            .enqueue(&new_job(&alice, &format!("a:{n}"), 1), &limits)
            .await
            .expect("enqueue");
    }
    let a = claimed(&store, "w", LEASE, &limits, "job").await;
    let b = claimed(&store, "w", LEASE, &limits, "job").await;
    assert!(
        store
            .claim("w", LEASE, &limits)
            .await
            .expect("claim")
            .is_none()
    );
    store.succeed(&a).await.expect("succeed");
    let c = claimed(&store, "w", LEASE, &limits, "a slot is free").await;
    for lease in [b, c] {
        store.succeed(&lease).await.expect("succeed");
    }
}

async fn racing_claimers_never_pass_the_cap(store: Store) {
    let limits = JobLimits {
        max_running_per_person: 2,
        ..JobLimits::default()
    };
    let alice = person(&store, "alice", 100).await;
    for n in 0..8 {
        store
            .enqueue(&new_job(&alice, &format!("a:{n}"), 1), &limits)
            .await
            .expect("enqueue");
    }
    // Sixteen workers (on PostgreSQL, separate connections, like separate instances) claim at
    // once; only two of them may start one of alice's jobs.
    let claims: Vec<_> = (0..16)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&format!("w{n}"), LEASE, &limits).await })
        })
        .collect();
    let mut leases = Vec::new();
    for claim in claims {
        if let Some(lease) = claim.await.expect("task").expect("claim") {
            leases.push(lease);
        }
    }
    assert_eq!(leases.len(), 2, "running jobs after the race");
    for lease in leases {
        store.succeed(&lease).await.expect("succeed");
    }
}

async fn an_expired_lease_is_taken_over_and_the_job_ends_once(store: Store) {
    let alice = person(&store, "alice", 10).await;
    store
        .enqueue(&new_job(&alice, "u1", 3), &JobLimits::default())
        .await
        .expect("enqueue");
    let dead = claimed(
        &store,
        "dead",
        Duration::from_millis(1),
        &JobLimits::default(),
        "job",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let alive = claimed(&store, "alive", LEASE, &JobLimits::default(), "taken over").await;
    assert_eq!(alive.job.id, dead.job.id);
    assert_eq!(alive.job.attempts, 2);
    assert!(
        !store.renew(&dead, LEASE).await.expect("renew"),
        "the dead worker lost its lease"
    );
    assert!(matches!(
        store.succeed(&dead).await.faulted(),
        Err(Some(Fault::LeaseLost(_)))
    ));
    store.succeed(&alive).await.expect("succeed");
    assert_eq!(spent(&store, &alice).await, 3, "posted once");
}

async fn the_provider_job_id_survives_a_takeover(store: Store) {
    let alice = person(&store, "alice", 10).await;
    store
        .enqueue(&new_job(&alice, "u1", 1), &JobLimits::default())
        .await
        .expect("enqueue");
    let first = claimed(
        &store,
        "w1",
        Duration::from_millis(1),
        &JobLimits::default(),
        "job",
    )
    .await;
    store
        .record_provider_job(&first, "replicate", "pred_abc")
        .await
        .expect("record");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = claimed(&store, "w2", LEASE, &JobLimits::default(), "taken over").await;
    assert_eq!(second.job.provider.as_deref(), Some("replicate"));
    assert_eq!(second.job.provider_job_id.as_deref(), Some("pred_abc"));
    assert!(matches!(
        store
            .record_provider_job(&first, "replicate", "pred_other")
            .await
            .faulted(),
        Err(Some(Fault::LeaseLost(_)))
    ));
    store.succeed(&second).await.expect("succeed");
}

async fn cancelling_a_queued_job_voids_it_and_a_running_one_is_marked(store: Store) {
    let alice = person(&store, "alice", 10).await;
    let bob = person(&store, "bob", 10).await;
    let running = store
        .enqueue(&new_job(&alice, "r", 2), &JobLimits::default())
        .await
        .expect("enqueue");
    let lease = claimed(&store, "w", LEASE, &JobLimits::default(), "job").await;
    assert_eq!(lease.job.id, running.id);
    let queued = store
        .enqueue(&new_job(&alice, "q", 3), &JobLimits::default())
        .await
        .expect("enqueue");
    assert!(
        matches!(
            store.cancel(bob.id, queued.id).await,
            Err(Error::User(UserError::UnknownJob(_)))
        ),
        "not bob's job"
    );
    let cancelled = store.cancel(alice.id, queued.id).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(available(&store, &alice).await, 8);
    assert!(matches!(
        store.cancel(alice.id, queued.id).await,
        Err(Error::User(UserError::JobAlreadyEnded { .. }))
    ));
    let marked = store
        .cancel(alice.id, running.id)
        .await
        .expect("cancel running");
    assert!(marked.cancel_requested);
    assert!(store.job(running.id).await.expect("job").cancel_requested);
    store
        .fail(&lease, "cancelled")
        .await
        .expect("worker ends it");
    assert_eq!(available(&store, &alice).await, 10);
}

async fn a_released_job_is_claimable_at_once(store: Store) {
    let alice = person(&store, "alice", 10).await;
    store
        .enqueue(&new_job(&alice, "u1", 1), &JobLimits::default())
        .await
        .expect("enqueue");
    let lease = claimed(&store, "stopping", LEASE, &JobLimits::default(), "job").await;
    store.release(&lease).await.expect("release");
    let again = claimed(&store, "other", LEASE, &JobLimits::default(), "at once").await;
    assert_eq!(again.job.id, lease.job.id);
    store.succeed(&again).await.expect("succeed");
}
