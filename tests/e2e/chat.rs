//! `imagegpt chat` as a newcomer runs it: the real binary, on the embedded defaults (SQLite
//! under ./data, the offline local provider), fed through standard input.

use std::{io::Write as _, process::Stdio};

use crate::helpers::{imagegpt, text};

fn chat(dir: &std::path::Path, args: &[&str], input: &str) -> (bool, String, String) {
    chat_with(dir, args, input, &[])
}

fn chat_with(
    dir: &std::path::Path,
    args: &[&str],
    input: &str,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imagegpt"))
        .arg("chat")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("the chat ends");
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

fn png(dir: &std::path::Path, name: &str) {
    let image = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    image.save(dir.join(name)).expect("write png");
}

#[test]
fn a_session_from_start_to_delivered_media_charges_exactly_and_audits_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    png(dir.path(), "photo.png");
    let (ok, stdout, stderr) = chat(
        dir.path(),
        &["--name", "alice", "--credits", "20"],
        "/start\n/imagine a red fox <b>&amp;</b> --hd\n/enhance < photo.png\n/removebg < photo.png\n/balance\n",
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("You have 20 credits"), "{stdout}");
    assert!(stdout.contains("local preview provider"), "{stdout}");
    let saved: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("saved: "))
        .collect();
    assert_eq!(saved.len(), 3, "{stdout}");
    for line in &saved {
        let path = dir.path().join(line.trim_start_matches("saved: "));
        let picture = image::open(&path).expect("a real image was written");
        assert!(picture.width() > 0);
    }
    assert!(
        stdout.contains("“a red fox <b>&amp;</b>”"),
        "prompts come back as typed: {stdout}"
    );
    let hd = saved
        .iter()
        .find(|l| l.contains("image.png"))
        .expect("the HD image");
    let hd = image::open(dir.path().join(hd.trim_start_matches("saved: "))).expect("png");
    assert_eq!((hd.width(), hd.height()), (2048, 2048));

    // 20 − 2 (HD) − 1 (enhance) − 1 (removebg) = 16, whatever order the jobs ran in.
    let (ok, stdout, _) = chat(
        dir.path(),
        &["--name", "alice", "--credits", "20"],
        "/balance\n",
    );
    assert!(ok);
    assert!(
        stdout.contains("Your balance: 16 credits."),
        "the grant is not repeated: {stdout}"
    );
    let audit = imagegpt(dir.path(), &["audit"], &[]);
    let (stdout, _) = text(&audit);
    assert!(audit.status.success(), "{stdout}");
    assert!(stdout.starts_with("audit ok: 1 wallets"), "{stdout}");
}

#[test]
fn bad_uploads_and_unaffordable_requests_cost_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
    let (ok, stdout, stderr) = chat(
        dir.path(),
        &["--name", "bob", "--credits", "3"],
        "/imagine a castle --4k\n/video waves\n/enhance < notes.txt\n/enhance < missing.png\n",
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("This costs 4 credits, and your balance is 3 credits."),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "A 5-second video costs 10 credits (10 credits per 5 seconds, started blocks), and your balance is 3 credits."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed, no credits taken: That is not a JPEG, PNG or WebP image."),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed, no credits taken: delivery impossible: cannot read missing.png"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("data/out").exists(),
        "nothing was delivered"
    );
    let (_, stdout, _) = chat(dir.path(), &["--name", "bob"], "/balance\n");
    assert!(stdout.contains("Your balance: 3 credits."), "{stdout}");
    let audit = imagegpt(dir.path(), &["audit"], &[]);
    assert!(audit.status.success(), "{}", text(&audit).0);
}

#[test]
fn with_a_replicate_token_results_come_from_replicate_and_are_not_called_a_preview() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(fakes::replicate::FakeReplicate::start("r8_e2e"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("imagegpt.toml"),
        "[providers.replicate]\npoll_ms = 20\n",
    )
    .expect("config");
    let url = fake.url();
    let (ok, stdout, stderr) = chat_with(
        dir.path(),
        &["--name", "cyd", "--credits", "5"],
        "/imagine a lighthouse --seed 7\n/balance\n",
        &[
            ("REPLICATE_API_TOKEN", "r8_e2e"),
            ("REPLICATE_API_URL", &url),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("saved: "), "{stdout}");
    assert!(!stdout.contains("local preview"), "{stdout}");
    assert!(stdout.contains("Your balance: 4 credits"), "{stdout}");
    let created = fake.created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].0, "black-forest-labs/flux-schnell");
    assert_eq!(created[0].1["seed"], 7);
    assert!(
        !stderr.contains("r8_e2e"),
        "the token is never logged: {stderr}"
    );
    let audit = imagegpt(dir.path(), &["audit"], &[]);
    assert!(audit.status.success(), "{}", text(&audit).0);
}
