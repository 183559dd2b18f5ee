//! `imagegpt chat`: the same service in the terminal, as the person `console:NAME`. A thin
//! adapter like the others: lines become requests, replies and media come back through its
//! [`Messenger`]. Media is written under `./data/out/` and each path printed. Buttons are
//! numbered; type `!N` to press one. Attach a photo with ` < PATH` after the command
//! (`/enhance < photo.jpg`; face swap takes two).

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use bot_core::{
    Credits, Identity, Platform, Store,
    ledger::{SystemAccount, TransferKind, TransferRequest},
    media::Output,
    service::{
        Action, Attachment, Button, ChatKind, ChatRef, DeliveryError, Input, MessageRef, Messenger,
        MessengerFuture, Press, Request, Service,
    },
    store::Migrations,
};
use tokio::io::AsyncBufReadExt as _;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, startup};

/// The console's side of the conversation: prints what the service says, saves media, and
/// remembers the buttons it showed so that `!N` can press them.
#[derive(Debug, Clone)]
struct Console {
    out: Arc<Mutex<std::io::Stdout>>,
    media_dir: PathBuf,
    buttons: Arc<Mutex<Vec<Action>>>,
}

impl Console {
    fn print(&self, text: &str, buttons: &[Button]) {
        let mut shown = Vec::new();
        if let Ok(mut actions) = self.buttons.lock() {
            for button in buttons {
                match &button.press {
                    Press::Action(action) => {
                        actions.push(*action);
                        shown.push(format!("[!{}] {}", actions.len(), button.label));
                    }
                    Press::Link(url) => shown.push(format!("[{}: {url}]", button.label)),
                }
            }
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{text}");
            if !shown.is_empty() {
                let _ = writeln!(out, "  {}", shown.join("  "));
            }
            let _ = out.flush();
        }
    }

    fn button(&self, number: usize) -> Option<Action> {
        self.buttons
            .lock()
            .ok()?
            .get(number.checked_sub(1)?)
            .copied()
    }
}

impl Messenger for Console {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        _reply_to: Option<&'a str>,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef> {
        self.print(text, buttons);
        Box::pin(async move {
            Ok(MessageRef {
                chat: chat.clone(),
                id: String::new(),
            })
        })
    }

    fn edit_text<'a>(
        &'a self,
        _message: &'a MessageRef,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, ()> {
        // A terminal cannot edit what it printed: the new status is printed below.
        self.print(text, buttons);
        Box::pin(async { Ok(()) })
    }

    fn send_media<'a>(
        &'a self,
        chat: &'a ChatRef,
        _reply_to: Option<&'a str>,
        media: &'a Output,
        caption: &'a str,
        buttons: &'a [Button],
        _abandon: &'a CancellationToken,
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            tokio::fs::create_dir_all(&self.media_dir)
                .await
                .map_err(|e| {
                    DeliveryError::Permanent(format!("creating {}: {e}", self.media_dir.display()))
                })?;
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let path = self.media_dir.join(format!("{stamp}-{}", media.file_name));
            tokio::fs::write(&path, &media.bytes)
                .await
                .map_err(|e| DeliveryError::Retry(format!("writing {}: {e}", path.display())))?;
            self.print(&format!("saved: {}\n{caption}", path.display()), buttons);
            Ok(MessageRef {
                chat: chat.clone(),
                id: path.display().to_string(),
            })
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a Attachment,
        limit: usize,
    ) -> MessengerFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let path = PathBuf::from(&attachment.id);
            let size = tokio::fs::metadata(&path)
                .await
                .map_err(|e| {
                    DeliveryError::Permanent(format!("cannot read {}: {e}", path.display()))
                })?
                .len();
            if size > limit as u64 {
                return Err(DeliveryError::TooLarge(format!(
                    "{} is {} MB; the limit is {} MB",
                    path.display(),
                    size.div_ceil(1024 * 1024),
                    limit / (1024 * 1024)
                )));
            }
            tokio::fs::read(&path).await.map_err(|e| {
                DeliveryError::Permanent(format!("cannot read {}: {e}", path.display()))
            })
        })
    }
}

/// Runs the chat until standard input ends, then waits for the person's jobs to finish.
///
/// # Errors
///
/// When the database cannot be opened or the name is not a valid console identity.
pub async fn run(config: Config, name: &str, credits: Option<u64>) -> anyhow::Result<()> {
    let identity: Identity = format!("console:{name}")
        .parse()
        .with_context(|| format!("--name {name:?}"))?;
    let store = Store::connect(&config.database, Migrations::Apply).await?;
    let console = Console {
        out: Arc::new(Mutex::new(std::io::stdout())),
        media_dir: PathBuf::from("data/out"),
        buttons: Arc::new(Mutex::new(Vec::new())),
    };
    let routes = config.providers.build(config.media);
    let service = Arc::new(startup::with_rails(
        Service::new(
            store.clone(),
            startup::service_settings(&config, &routes)?,
            vec![Arc::new(console.clone())],
        ),
        &config,
        None,
    )?);
    let user = store.contact(&identity).await?.user;
    if let Some(credits) = credits.filter(|c| *c > 0) {
        // Keyed by name and amount: running the same command again grants nothing more.
        store
            .transfer(&TransferRequest {
                key: format!("console:{name}:credits:{credits}"),
                debit: store.account(SystemAccount::Grants),
                credit: user.wallet,
                amount: Credits::new(credits),
                kind: TransferKind::Grant,
                memo: Some("imagegpt chat --credits".into()),
            })
            .await?;
    }
    let shutdown = CancellationToken::new();
    let mut workers = startup::spawn_workers(
        &config,
        &routes,
        service.clone(),
        "console",
        &shutdown,
        &Arc::new(()),
    );
    // Payment notices addressed to this console ("credits added").
    workers.push(tokio::spawn(service.clone().run_payments(
        Duration::from_millis(config.workers.poll_ms.max(50)),
        shutdown.clone(),
    )));
    console.print(
        &format!("imagegpt chat as {identity}. Type /help; Ctrl-D to quit."),
        &[],
    );

    let chat = ChatRef {
        platform: Platform::Console,
        id: name.to_string(),
        kind: ChatKind::Private,
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0u64;
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        n += 1;
        let (input, attachments) = match line.strip_prefix('!').and_then(|n| n.parse().ok()) {
            Some(number) => match console.button(number) {
                Some(action) => (Input::Action(action), Vec::new()),
                None => {
                    console.print(&format!("There is no button !{number}."), &[]);
                    continue;
                }
            },
            None => {
                let mut parts = line.split(" < ");
                let text = parts.next().unwrap_or_default().to_string();
                let attachments = parts
                    .map(|path| Attachment {
                        id: path.trim().to_string(),
                        size: None,
                    })
                    .collect();
                (Input::Text(text), attachments)
            }
        };
        let request = Request {
            identity: identity.clone(),
            name: name.to_string(),
            chat: chat.clone(),
            message_id: None,
            key: format!("console:{name}:{}:{n}", std::process::id()),
            input,
            attachments,
        };
        if let Some(reply) = service.answer(request).await {
            console.print(&reply.text, &reply.buttons);
        }
    }
    // Input ended: let this person's jobs finish before leaving.
    for _ in 0..600 {
        let open: i64 = store.open_jobs(user.id).await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    store.close().await;
    Ok(())
}
