//! The binary as an operator runs it: `migrate`, `audit`, and start-up refusing bad
//! configuration with one line naming the variable.

use bot_core::{
    Backend, Identity,
    ledger::{SystemAccount, TransferKind, TransferRequest},
    money::Credits,
    store::testing::TestDb,
};

use crate::helpers::{imagegpt, text};

#[test]
fn migrate_then_audit_on_a_new_sqlite_file_under_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let migrated = imagegpt(dir.path(), &["migrate"], &[]);
    let (stdout, stderr) = text(&migrated);
    assert!(migrated.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("migrations applied (sqlite)"), "{stdout}");
    assert!(
        dir.path().join("data/imagegpt.db").is_file(),
        "the default database is a file under ./data"
    );

    let audited = imagegpt(dir.path(), &["audit"], &[]);
    let (stdout, stderr) = text(&audited);
    assert!(audited.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(
        stdout.starts_with("audit ok: 0 wallets, 5 system accounts, 0 transfers"),
        "{stdout}"
    );
}

#[test]
fn audit_refuses_a_database_that_was_never_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = imagegpt(dir.path(), &["audit"], &[]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("run `imagegpt migrate`"), "{stderr}");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("DATABASE_URL", "mysql://db/app")], "DATABASE_URL"),
        (
            &[("STRIPE_WEBHOOK_SECRET", "whsec_do_not_print")],
            "STRIPE_WEBHOOK_SECRET",
        ),
        (&[("HTTP_ADDR", "everywhere")], "HTTP_ADDR"),
    ];
    for (env, variable) in cases {
        for command in [&["serve"][..], &[][..], &["audit"][..]] {
            let output = imagegpt(dir.path(), command, env);
            let (stdout, stderr) = text(&output);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command:?} {env:?}: {stderr}"
            );
            assert!(stdout.is_empty());
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(variable), "{stderr}");
            assert!(
                !stderr.contains("whsec_do_not_print"),
                "a secret was printed: {stderr}"
            );
        }
    }
    assert!(!dir.path().join("data").exists(), "nothing was written");
}

async fn audit_reports_a_broken_ledger_and_exits_non_zero(backend: Backend, test: &str) {
    let Some(db) = TestDb::new(backend, test).await else {
        return;
    };
    let store = db.store();
    let alice: Identity = "telegram:42".parse().expect("identity");
    let alice = store.contact(&alice).await.expect("contact").user;
    store
        .transfer(&TransferRequest {
            key: "grant:alice".into(),
            debit: store.account(SystemAccount::Grants),
            credit: alice.wallet,
            amount: Credits::new(30),
            kind: TransferKind::Grant,
            memo: Some("welcome".into()),
        })
        .await
        .expect("grant");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("DATABASE_URL", db.url())];

    let clean = imagegpt(dir.path(), &["audit"], &env);
    let (stdout, stderr) = text(&clean);
    assert!(clean.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("audit ok: 1 wallets, 5 system accounts, 1 transfers, 1 lots"),
        "{stdout}"
    );

    // Someone edits a balance behind the ledger's back.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(db.url())
        .await
        .expect("connect");
    sqlx::query("UPDATE accounts SET credits_posted = credits_posted + 100 WHERE id = $1")
        .bind(alice.wallet.get())
        .execute(&mut conn)
        .await
        .expect("tamper");
    let broken = imagegpt(dir.path(), &["audit"], &env);
    let (stdout, _) = text(&broken);
    assert_eq!(broken.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("audit FAILED"), "{stdout}");
    assert!(
        stdout.contains("posted balances sum to 100, not zero"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cached balance differs from the sum of its transfers"),
        "{stdout}"
    );
    assert!(
        stdout.contains("130 credits available but 30 unused in its lots"),
        "{stdout}"
    );
}

#[tokio::test]
async fn audit_reports_a_broken_ledger_on_sqlite() {
    sqlx::any::install_default_drivers();
    audit_reports_a_broken_ledger_and_exits_non_zero(
        Backend::Sqlite,
        "audit_reports_a_broken_ledger_on_sqlite",
    )
    .await;
}

#[tokio::test]
async fn audit_reports_a_broken_ledger_on_postgres() {
    sqlx::any::install_default_drivers();
    audit_reports_a_broken_ledger_and_exits_non_zero(
        Backend::Postgres,
        "audit_reports_a_broken_ledger_on_postgres",
    )
    .await;
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres, "migrate_is_idempotent_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let output = imagegpt(dir.path(), &["migrate"], &[("DATABASE_URL", db.url())]);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("migrations applied (postgres)"), "{stdout}");
    }
}

#[test]
fn providers_check_passes_the_defaults_and_fails_a_wrong_template_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = imagegpt(dir.path(), &["providers", "check"], &[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 13, "{stdout}");
    assert!(
        lines[..12].iter().all(|l| l.contains(" — ok (")),
        "{stdout}"
    );
    assert!(lines[0].starts_with("image     replicate black-forest-labs/flux-schnell"));
    assert!(stdout.contains("21:9 sent as 16:9"), "{stdout}");
    assert!(
        stdout.contains("cost $0.18 · price 10 credits = $0.24 · margin 25%"),
        "{stdout}"
    );

    std::fs::write(
        dir.path().join("imagegpt.toml"),
        "[providers.replicate.models.music]\n\
         model = \"meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb\"\n\
         input = { prompt = \"{prompt}\", seconds = \"{seconds}\", model_version = \"stereo\" }\n",
    )
    .expect("write configuration");
    let output = imagegpt(dir.path(), &["providers", "check"], &[]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let music = stdout
        .lines()
        .find(|l| l.starts_with("music "))
        .expect("a music line");
    assert!(
        music.contains("FAIL input.model_version: input.model_version must be one of"),
        "{music}"
    );
    assert!(
        music.contains("input.seconds: Additional property seconds is not allowed"),
        "{music}"
    );
    assert!(
        stdout.ends_with("1 failed: fix the configuration before going live\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn providers_check_live_asks_each_provider_whether_its_models_exist() {
    let replicate = fakes::replicate::FakeReplicate::start("r8_live").await;
    let openai = fakes::openai::FakeOpenAi::start("sk-live").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (replicate_url, openai_url) = (replicate.url(), openai.base_url());
    let run = |model: &'static str| {
        let (dir, replicate_url, openai_url) = (
            dir.path().to_path_buf(),
            replicate_url.clone(),
            openai_url.clone(),
        );
        tokio::task::spawn_blocking(move || {
            imagegpt(
                &dir,
                &["providers", "check", "--live"],
                &[
                    ("REPLICATE_API_TOKEN", "r8_live"),
                    ("REPLICATE_API_URL", &replicate_url),
                    ("OPENAI_API_KEY", "sk-live"),
                    ("OPENAI_BASE_URL", &openai_url),
                    ("OPENAI_IMAGE_MODEL", model),
                ],
            )
        })
    };
    let output = run("gpt-image-2").await.expect("ran");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches("live: exists").count(), 12, "{stdout}");
    assert!(!stdout.contains("r8_live") && !stdout.contains("sk-live"));
    // A model OpenAI shut down: the schema check and the live check both say so.
    let output = run("gpt-image-1").await.expect("ran");
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let openai_lines: Vec<&str> = stdout.lines().filter(|l| l.contains(" openai ")).collect();
    assert_eq!(openai_lines.len(), 3, "{stdout}");
    assert!(
        openai_lines.iter().all(|l| l
            .contains("FAIL gpt-image-1 is not an image model OpenAI serves")
            && l.contains("live: NOT FOUND")),
        "{stdout}"
    );
}
