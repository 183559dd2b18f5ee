//! The façade adapters call: [`Service::handle`] turns a platform-neutral [`Request`] into a
//! [`Reply`], enforcing terms, policy, prices and caps; generations are held and queued in one
//! step, and their status messages are sent and later edited through the adapter's
//! [`Messenger`]. Adapters translate, this decides.

use crate::UserError;
mod admin;
mod generation;
mod messenger;
mod payments;
pub mod throttle;
pub mod words;
pub mod worker;

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use serde::{Deserialize, Serialize};

pub use crate::chat::{
    Action, Attachment, Button, ChatKind, ChatRef, Input, MessageRef, Press, Reply, Request,
    Visibility,
};
pub use messenger::{DeliveryError, Messenger, MessengerFuture};
pub use payments::PaymentSettings;
pub(crate) use words::{capitalise, final_status, shorten, status_text};

use crate::{
    Credits, Error, Identity, JobId, Platform, PurchaseId, Result, Store,
    command::{self, Command, CommandLimits, ParseError},
    jobs::{JobLimits, JobState, NewJob},
    media::MediaLimits,
    operation::Operation,
    payments::{PaymentRail, Rail},
    people::User,
    policy::ContentPolicy,
    pricing::PricingConfig,
};

/// What a queued job needs to run and to be delivered; stored as the job's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub operation: Operation,
    pub prompt: Option<String>,
    pub negative: Option<String>,
    pub seed: Option<u32>,
    pub aspect: String,
    pub style: Option<String>,
    pub attachments: Vec<Attachment>,
    pub chat: ChatRef,
    pub reply_to: Option<String>,
    /// The requester's name, for results posted in groups.
    pub requester: String,
    pub identity: String,
}

/// Everything the service needs, from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pricing: PricingConfig,
    pub commands: CommandLimits,
    pub policy: ContentPolicy,
    pub jobs: JobLimits,
    pub media: MediaLimits,
    pub welcome_credits: Credits,
    pub terms_version: String,
    pub payments: PaymentSettings,
    /// Said in /help and captions while the local provider serves requests.
    pub local_preview: bool,
    /// Identities that may use `/admin` (`ADMIN_IDS`).
    pub admins: Vec<Identity>,
    /// How fast one person may send requests.
    pub limits: throttle::RateLimits,
}

impl Default for Settings {
    /// Every default of configuration: §4.1 prices, no welcome credits, the local preview.
    fn default() -> Self {
        Settings {
            pricing: PricingConfig::default(),
            commands: CommandLimits::default(),
            policy: ContentPolicy::default(),
            jobs: JobLimits::default(),
            media: MediaLimits::default(),
            welcome_credits: Credits::ZERO,
            terms_version: crate::policy::TERMS_VERSION.into(),
            payments: PaymentSettings::default(),
            local_preview: true,
            admins: Vec::new(),
            limits: throttle::RateLimits::default(),
        }
    }
}

/// The service façade.
#[derive(Debug)]
pub struct Service {
    store: Store,
    settings: Settings,
    /// The command grammar for `settings.commands`, its specs built once.
    grammar: command::Grammar,
    messengers: HashMap<Platform, Arc<dyn Messenger>>,
    rails: HashMap<Rail, Arc<dyn PaymentRail>>,
    throttle: throttle::Throttle,
}

impl Service {
    /// A service over `store`, answering through `messengers`.
    pub fn new(store: Store, settings: Settings, messengers: Vec<Arc<dyn Messenger>>) -> Service {
        let messengers = messengers.into_iter().map(|m| (m.platform(), m)).collect();
        Service {
            store,
            throttle: throttle::Throttle::new(settings.limits),
            grammar: command::Grammar::new(settings.commands.clone()),
            settings,
            messengers,
            rails: HashMap::new(),
        }
    }

    /// Takes payments on `rail` (Stripe from `payments`, Stars from `telegram`).
    #[must_use]
    pub fn with_rail(mut self, rail: Arc<dyn PaymentRail>) -> Service {
        self.rails.insert(rail.rail(), rail);
        self
    }

    /// The store this service uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings this service runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The command grammar of these settings (its specs drive the platforms' menus).
    pub fn grammar(&self) -> &command::Grammar {
        &self.grammar
    }

    pub(crate) fn messenger(&self, platform: Platform) -> Result<&Arc<dyn Messenger>> {
        self.messengers
            .get(&platform)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no messenger for {platform:?}")))
    }

    /// Handles one request. `Ok(None)`: nothing to answer (a group message not for us, or a job
    /// whose status message was already sent through the messenger).
    ///
    /// # Errors
    ///
    /// Errors a person should read ([`Service::reply_for_error`] words them) and internal ones.
    pub async fn handle(&self, request: Request) -> Result<Option<Reply>> {
        use tracing::Instrument as _;
        let platform = request.identity.platform();
        // The update's key follows the request into its job's log lines ("queued" names both).
        let span =
            tracing::info_span!("request", platform = platform.as_str(), update = %request.key);
        let result = self.respond(request).instrument(span).await;
        let outcome = match &result {
            Ok(Some(_)) => "answered",
            Ok(None) => "silent",
            Err(Error::Internal(_)) => "error",
            Err(_) => "refused",
        };
        crate::metrics::metrics().request(platform.as_str(), outcome);
        result
    }

    async fn respond(&self, request: Request) -> Result<Option<Reply>> {
        let contact = self
            .store
            .contact_accepting(
                &request.identity,
                self.settings.welcome_credits,
                Some(&self.settings.terms_version),
            )
            .await?;
        let user = contact.user;
        // Using the bot is acceptance of the terms in force (§2.4, §9.2); someone who accepted an
        // older version is told once, on this interaction.
        let terms_notice = match &user.terms {
            Some(accepted) if accepted.version == self.settings.terms_version => None,
            previous => {
                self.store
                    .accept_terms(user.id, &self.settings.terms_version)
                    .await?;
                previous.as_ref().map(|_| {
                    format!(
                        "Our terms of service changed (version {}). Continuing to use the bot \
                         accepts them; read them with /terms.\n\n",
                        self.settings.terms_version
                    )
                })
            }
        };
        if user.banned_at.is_some() {
            return Ok(Some(Reply::private(
                "Your access to the bot is suspended. If you think this is a mistake, contact \
                 support.",
            )));
        }
        let (reply, visibility) = match &request.input {
            Input::Text(text) => match self.grammar.parse(text) {
                Ok(None) if request.chat.kind == ChatKind::Group => (None, Visibility::Chat),
                Ok(None) => (
                    Some(Reply::text(
                        "Send a command, for example /imagine a fox in the snow. /help lists them all.",
                    )),
                    Visibility::Requester,
                ),
                Ok(Some(parsed)) => self.run(&request, &user, parsed.command).await?,
                Err(error) => (self.refusal(&request, error), Visibility::Requester),
            },
            Input::Command { name, args } => match self.grammar.build(name, args) {
                Ok(command) => self.run(&request, &user, command).await?,
                Err(error) => (self.refusal(&request, error), Visibility::Requester),
            },
            Input::Action(action) => (
                self.action(&request, &user, *action).await?,
                action.visibility(),
            ),
        };
        let reply = reply.map(|reply| reply.visible_to(visibility));
        Ok(match (terms_notice, reply) {
            (Some(notice), Some(mut reply)) => {
                reply.text.insert_str(0, &notice);
                Some(reply)
            }
            (Some(notice), None) => Some(Reply::private(notice.trim_end())),
            (None, reply) => reply,
        })
    }

    /// Runs a parsed command; its answer is at least as private as the command's default.
    async fn run(
        &self,
        request: &Request,
        user: &User,
        command: Command,
    ) -> Result<(Option<Reply>, Visibility)> {
        let visibility = command.visibility();
        // Admin commands exist only for admins: anyone else gets the grammar's "unknown
        // command", as for any word we do not know.
        if let Command::Admin(admin) = &command {
            if !self.settings.admins.contains(&request.identity) {
                let unknown = ParseError::Unknown {
                    name: "admin".into(),
                };
                return Ok((self.refusal(request, unknown), visibility));
            }
            let actor = request.identity.to_string();
            let text = match crate::admin::AdminCommand::parse(&admin.words) {
                Ok(command) => self.admin(&actor, command, &request.key).await?.text,
                Err(usage) => usage,
            };
            return Ok((Some(Reply::text(text)), visibility));
        }
        Ok((self.command(request, user, command).await?, visibility))
    }

    /// A command we cannot read: said privately, and not at all for an unknown command in a
    /// group (it may be another bot's).
    fn refusal(&self, request: &Request, error: ParseError) -> Option<Reply> {
        match error {
            ParseError::Unknown { .. } if request.chat.kind == ChatKind::Group => None,
            error => Some(Reply::private(error.to_string())),
        }
    }

    /// Handles one request and always has an answer: errors a person should read are worded
    /// for them; an internal fault is logged once, with its chain and a reference, and the person
    /// gets a plain apology naming that reference. `None`: nothing to say (see [`Service::handle`]).
    pub async fn answer(&self, request: Request) -> Option<Reply> {
        // Before anything touches the database: a flood costs its sender, not everyone.
        // Operators are not limited.
        let verdict = if self.settings.admins.contains(&request.identity) {
            throttle::Verdict::Allow
        } else {
            self.throttle.check(&request.identity)
        };
        match verdict {
            throttle::Verdict::Allow => {}
            throttle::Verdict::Refuse => {
                crate::metrics::metrics().throttled();
                return Some(Reply::private(words::TOO_FAST));
            }
            throttle::Verdict::Ignore => {
                crate::metrics::metrics().throttled();
                return None;
            }
        }
        let key = request.key.clone();
        match self.handle(request).await {
            Ok(reply) => reply,
            Err(Error::Internal(error)) => {
                let reference = format!("{:08x}", rand::random::<u32>());
                tracing::error!(
                    update = %key,
                    %reference,
                    error = format!("{error:#}"),
                    "handling a request failed"
                );
                Some(Reply::private(words::internal_error(&reference)))
            }
            Err(Error::User(error)) => Some(self.reply_for_error(&error)),
        }
    }

    /// Words an error for the person who caused it.
    pub fn reply_for_error(&self, error: &UserError) -> Reply {
        match error {
            UserError::InsufficientCredits { needed, available } => Reply::private(format!(
                "This costs {needed}, and your balance is {available}. Buy credits to continue."
            ))
            .with("Buy credits", Action::Buy),
            other => Reply::private(format!("{}.", capitalise(&other.to_string()))),
        }
    }

    async fn command(
        &self,
        request: &Request,
        user: &User,
        command: Command,
    ) -> Result<Option<Reply>> {
        let reply = match command {
            Command::Start(_) => Reply::text(format!(
                "Welcome to ImageGPT! You have {}. Try /imagine a red fox in the snow, or send /help.\n\
                 By using the bot you accept our terms of service (version {}): /terms.{}",
                self.balance(user).await?,
                self.settings.terms_version,
                self.disclosure()
            )),
            Command::Help(_) => Reply::text(self.help()),
            Command::Balance(_) => {
                let balance = self.store.account_balance(user.wallet).await?;
                let mut text = format!("Your balance: {}.", balance.available());
                if !balance.debits_pending.is_zero() {
                    let _ = write!(
                        text,
                        " {} on hold for running jobs.",
                        balance.debits_pending
                    );
                }
                Reply::text(text).with("Buy credits", Action::Buy)
            }
            Command::History(_) => Reply::text(self.history(user).await?),
            Command::Terms(_) => Reply::text(format!(
                "Terms of service, version {}: https://imagegpt.org/terms. Credits never expire \
                 (§4.3); unused credits are refundable within 14 days (§4.4); credits used for \
                 generations are not (§4.5).",
                self.settings.terms_version
            )),
            Command::Buy(command::Buy { pack: None }) => self.buy(request.chat.platform),
            Command::Buy(command::Buy { pack: Some(pack) }) => {
                let place = self
                    .settings
                    .pricing
                    .packs
                    .iter()
                    .position(|p| p.id.eq_ignore_ascii_case(&pack))
                    .and_then(|i| u8::try_from(i + 1).ok());
                match place {
                    Some(place) => return self.pack_chosen(request, user, place, None).await,
                    None => Reply::text(format!(
                        "There is no {pack:?} pack. Send /buy to see the packs."
                    )),
                }
            }
            Command::Refund(command::Refund { purchase }) => {
                let purchase = purchase
                    .and_then(|id| i64::try_from(id).ok())
                    .map(PurchaseId::from_db);
                self.refund_command(user, purchase).await?
            }
            Command::Link(command::Link { code: None }) => {
                let code = self.store.create_link_code(user.id).await?;
                let linked: Vec<String> = self
                    .store
                    .identities(user.id)
                    .await?
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Reply::text(format!(
                    "Your link code: {} (works once, for 10 minutes). Send /link {} from your \
                     other account (Telegram or Discord) to share one wallet; its credits and \
                     history join this account.\nLinked now: {}.",
                    code.code,
                    code.code,
                    linked.join(", ")
                ))
            }
            Command::Link(command::Link { code: Some(code) }) => {
                let linked = self.store.link(user.id, user.wallet, &code).await?;
                let balance = self.store.user(linked.user).await?;
                let balance = self
                    .store
                    .account_balance(balance.wallet)
                    .await?
                    .available();
                Reply::text(format!(
                    "Linked: this account now shares one wallet with the account that made the \
                     code ({} moved over). Balance: {balance}.",
                    linked.moved
                ))
            }
            Command::Unlink(command::Unlink { identity }) => match identity.parse::<Identity>() {
                Ok(identity) if self.store.unlink(user.id, &identity).await? => Reply::text(
                    format!("{identity} is unlinked; it starts again with its own empty wallet."),
                ),
                _ => Reply::text(
                    "That identity is not one of yours, or it is your only one. Send /link to see \
                     your linked identities.",
                ),
            },
            Command::Privacy(command::Privacy { reuse }) => {
                if let Some(reuse) = reuse {
                    self.store.set_privacy_opt_out(user.id, !reuse).await?;
                }
                let opted_out = match reuse {
                    Some(reuse) => !reuse,
                    None => self
                        .store
                        .user(user.id)
                        .await?
                        .privacy_opt_out
                        .unwrap_or(false),
                };
                Reply::text(if opted_out {
                    "Your outputs are not reused (terms §5.4). Send /privacy on to allow anonymised reuse."
                } else {
                    "Your outputs may be reused in anonymised form (terms §5.4). Send /privacy off to opt out."
                })
            }
            Command::Forget(_) => Reply::text(
                "This deletes the prompts and requests of all your past generations and your \
                 delivered notices; results already sent stay in your chats. Payments and the \
                 credit ledger are kept, as the law requires, without your prompts. Jobs still \
                 running must end first. It cannot be undone.",
            )
            .with("Forget my data", Action::Forget),
            Command::Cancel(command::Cancel { job }) => {
                self.cancel(user, job.map(|id| JobId::from_db(id as i64)))
                    .await?
            }
            generation @ (Command::Imagine(_)
            | Command::Enhance(_)
            | Command::RemoveBackground(_)
            | Command::FaceSwap(_)
            | Command::Portrait(_)
            | Command::Video(_)
            | Command::Music(_)) => return self.generation(request, user, generation).await,
            // Answered in `run`, for admins only.
            Command::Admin(_) => return Ok(None),
        };
        Ok(Some(reply))
    }

    async fn action(
        &self,
        request: &Request,
        user: &User,
        action: Action,
    ) -> Result<Option<Reply>> {
        match action {
            Action::Buy => Ok(Some(self.buy(request.chat.platform))),
            Action::Pack(place) => self.pack_chosen(request, user, place, None).await,
            Action::PayCard(place) => {
                self.pack_chosen(request, user, place, Some(Rail::Stripe))
                    .await
            }
            Action::PayStars(place) => {
                self.pack_chosen(request, user, place, Some(Rail::Stars))
                    .await
            }
            Action::RefundAsk(purchase) => {
                self.refund_command(user, Some(purchase)).await.map(Some)
            }
            Action::RefundConfirm(purchase) => {
                self.refund_confirmed(user, purchase).await.map(Some)
            }
            Action::Forget => {
                if self.store.open_jobs(user.id).await? > 0 {
                    return Ok(Some(Reply::text(
                        "You have jobs queued or running: wait for them (or /cancel them), then \
                         /forget again.",
                    )));
                }
                let forgotten = self.store.forget(user.id).await?;
                Ok(Some(Reply::text(format!(
                    "Done: the prompts and requests of {forgotten} past generation(s) are \
                     deleted. Your balance and payments are unchanged."
                ))))
            }
            Action::Cancel(job) => self.cancel(user, Some(job)).await.map(Some),
            Action::Confirm(quote) | Action::Dismiss(quote) => {
                let confirm = matches!(action, Action::Confirm(_));
                let payload = self.store.take_quote(user.id, quote).await?;
                let Some(payload) = payload else {
                    return Ok(Some(Reply::notice(
                        "That offer was already used or is not yours.",
                    )));
                };
                if !confirm {
                    return Ok(Some(Reply::text("Cancelled. No credits were taken.")));
                }
                let mut spec: JobSpec =
                    serde_json::from_str(&payload).map_err(anyhow::Error::from)?;
                spec.chat = request.chat.clone();
                self.enqueue(user, &format!("quote:{quote}"), spec).await
            }
            Action::Regenerate(job) | Action::Upscale(job, _) => {
                let previous = self.store.job(job).await?;
                if previous.user != user.id {
                    return Ok(Some(Reply::notice(
                        "Only the person who asked for this can use its buttons.",
                    )));
                }
                if previous.payload == crate::people::FORGOTTEN {
                    return Ok(Some(Reply::notice(
                        "This request was forgotten at its owner's request; it cannot be repeated.",
                    )));
                }
                let mut spec: JobSpec =
                    serde_json::from_str(&previous.payload).map_err(anyhow::Error::from)?;
                if let Action::Upscale(_, quality) = action {
                    let Operation::Image(_) = spec.operation else {
                        return Ok(Some(Reply::private("Only images can be upscaled.")));
                    };
                    spec.operation = Operation::Image(quality);
                }
                spec.chat = request.chat.clone();
                spec.reply_to = request.message_id.clone().or(spec.reply_to);
                let cost = self.settings.pricing.cost(spec.operation);
                if self.settings.pricing.needs_confirmation(spec.operation) {
                    return self.quote(user, &spec, cost).await.map(Some);
                }
                self.enqueue(user, &request.key, spec).await
            }
        }
    }

    async fn cancel(&self, user: &User, job: Option<JobId>) -> Result<Reply> {
        let job = match job {
            Some(job) => job,
            None => match self.store.newest_open_job(user.id).await? {
                Some(id) => id,
                None => return Ok(Reply::text("You have no job waiting or running.")),
            },
        };
        let cancelled = self.store.cancel(user.id, job).await?;
        if cancelled.state == JobState::Cancelled {
            if let Some(message) = self.status_message(job).await? {
                let spec: Option<JobSpec> = serde_json::from_str(&cancelled.payload).ok();
                if let (Some(spec), Ok(messenger)) = (spec, self.messenger(message.chat.platform)) {
                    let _ = messenger
                        .edit_text(&message, &final_status(&cancelled, &spec), &[])
                        .await;
                }
            }
            Ok(Reply::text(format!(
                "Job #{job} cancelled. Its credits are back in your balance."
            )))
        } else {
            Ok(Reply::text(format!(
                "Job #{job} is running; it will stop, and its credits come back."
            )))
        }
    }

    async fn balance(&self, user: &User) -> Result<Credits> {
        Ok(self.store.account_balance(user.wallet).await?.available())
    }
}

#[cfg(test)]
mod tests;
