//! Buying packs, refunds and payment notices, as the service presents them: which rails a chat
//! offers, the Checkout link or Stars invoice, the refund list and its confirmation, and the
//! loop that delivers the notices outbox and retries refunds whose outcome was unknown.

use crate::UserError;
use std::{fmt::Write as _, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Action, Reply, Request, Service};
use crate::{
    Error, Identity, Platform, PurchaseId, RefundId, Result,
    payments::{
        Approval, Checkout, EventOutcome, NewPurchase, PaymentError, PaymentEvent, Purchase,
        PurchaseState, Rail, Refund, RefundState, format_price,
    },
    people::User,
    pricing::Pack,
    store::now_millis,
};

/// How payments behave, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSettings {
    /// The rails `/buy` offers in Telegram, in order (`TELEGRAM_PAYMENT_RAILS`).
    pub telegram_rails: Vec<Rail>,
    /// Who decides refunds people ask for (`refunds.approval`).
    pub approval: Approval,
    /// How long after paying a purchase may be refunded (§4.4: 14 days).
    pub refund_window_days: u32,
    /// The card fee assumed until Stripe tells the real one: basis points of the price…
    pub fee_basis_points: u64,
    /// …plus a fixed part, in the smallest unit.
    pub fee_fixed: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            telegram_rails: vec![Rail::Stars],
            approval: Approval::Auto,
            refund_window_days: 14,
            // Stripe's standard card price: 2.9 % + 30¢.
            fee_basis_points: 290,
            fee_fixed: 30,
        }
    }
}

/// How long a refund may stay "processing" before the payments loop asks again (same key).
const REFUND_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Service {
    /// The rails people can pay with in a chat on `platform`: those configured for it whose
    /// adapter is present.
    pub fn rails_for(&self, platform: Platform) -> Vec<Rail> {
        let wanted = match platform {
            Platform::Telegram => self.settings.payments.telegram_rails.clone(),
            Platform::Discord | Platform::Console => vec![Rail::Stripe],
        };
        wanted
            .into_iter()
            .filter(|rail| self.rails.contains_key(rail))
            .collect()
    }

    /// The packs, as buttons.
    pub(super) fn buy(&self, platform: Platform) -> Reply {
        let mut reply =
            Reply::text("Credit packs (prepaid credits that never expire; see /terms):");
        if self.rails_for(platform).is_empty() {
            reply
                .text
                .push_str("\nPayments are not configured on this bot yet.");
        }
        for (place, pack) in self.settings.pricing.packs.iter().enumerate().take(255) {
            let label = format!(
                "{}: {} credits for {}",
                pack.name,
                pack.credits,
                format_price(pack.price_cents, &pack.currency)
            );
            let place = u8::try_from(place + 1).unwrap_or(u8::MAX);
            reply = reply.with(&label, Action::Pack(place));
        }
        reply
    }

    /// `/buy small`, or a pack's button: pay on the one rail offered here, or choose one.
    pub(super) async fn pack_chosen(
        &self,
        request: &Request,
        user: &User,
        place: u8,
        rail: Option<Rail>,
    ) -> Result<Option<Reply>> {
        let Some(pack) = self
            .settings
            .pricing
            .packs
            .get(usize::from(place).wrapping_sub(1))
        else {
            return Ok(Some(Reply::text(
                "That pack is no longer offered. Send /buy to see the packs.",
            )));
        };
        if user.frozen_at.is_some() {
            return Err(Error::User(UserError::Frozen));
        }
        let offered = self.rails_for(request.chat.platform);
        let rail = match (rail, offered.as_slice()) {
            (_, []) => {
                return Ok(Some(Reply::text(format!(
                    "{} ({} credits for {}): payments are not configured on this bot yet, so \
                     nothing can be bought here. No money was taken.",
                    pack.name,
                    pack.credits,
                    format_price(pack.price_cents, &pack.currency)
                ))));
            }
            (Some(rail), _) if offered.contains(&rail) => rail,
            (Some(_), _) => {
                return Ok(Some(Reply::text(
                    "That way of paying is not offered here. Send /buy to see the packs.",
                )));
            }
            (None, [only]) => *only,
            (None, several) => {
                let mut reply = Reply::text(format!(
                    "{}: {} credits. How would you like to pay?",
                    pack.name, pack.credits
                ));
                for rail in several {
                    match (rail, pack.stars) {
                        (Rail::Stars, Some(stars)) => {
                            reply =
                                reply.with(&format!("⭐ {stars} Stars"), Action::PayStars(place));
                        }
                        (Rail::Stars, None) => {}
                        (Rail::Stripe, _) => {
                            let price = format_price(pack.price_cents, &pack.currency);
                            reply =
                                reply.with(&format!("💳 {price} by card"), Action::PayCard(place));
                        }
                    }
                }
                return Ok(Some(reply));
            }
        };
        self.checkout(request, user, pack, rail).await
    }

    async fn checkout(
        &self,
        request: &Request,
        user: &User,
        pack: &Pack,
        rail: Rail,
    ) -> Result<Option<Reply>> {
        let Some(port) = self.rails.get(&rail) else {
            return Ok(Some(Reply::text("That way of paying is not available.")));
        };
        let (amount, currency, fee_estimate) = match (rail, pack.stars) {
            (Rail::Stripe, _) => (
                pack.price_cents,
                pack.currency.clone(),
                pack.price_cents * self.settings.payments.fee_basis_points / 10_000
                    + self.settings.payments.fee_fixed,
            ),
            (Rail::Stars, Some(stars)) => (stars, "xtr".to_string(), 0),
            (Rail::Stars, None) => {
                return Ok(Some(Reply::text(format!(
                    "The {} pack is not sold for Stars.",
                    pack.name
                ))));
            }
        };
        let purchase = self
            .store
            .create_purchase(&NewPurchase {
                user: user.id,
                payer: request.identity.to_string(),
                pack: pack.id.clone(),
                credits: crate::Credits::new(pack.credits),
                rail,
                amount,
                currency,
                chat: request.chat.clone(),
                fee_estimate,
            })
            .await?;
        let title = format!("{} pack", pack.name);
        match port.checkout(&purchase, &title).await {
            Ok(Checkout::Link { url, session }) => {
                self.store
                    .set_checkout_session(purchase.id, &session)
                    .await?;
                let price = format_price(purchase.amount, &purchase.currency);
                Ok(Some(
                    Reply::text(format!(
                        "{title}: {} for {price} (order #{}). Pay securely with Stripe; the \
                         credits arrive in this chat as soon as the payment goes through.\n{url}",
                        purchase.credits, purchase.id
                    ))
                    .link(&format!("Pay {price}"), &url),
                ))
            }
            Ok(Checkout::Sent) => Ok(None),
            Err(PaymentError::Refused(why)) => Ok(Some(Reply::text(format!(
                "The payment could not start: {why}. No money was taken."
            )))),
            Err(error @ PaymentError::Unavailable(_)) => {
                tracing::warn!(purchase = %purchase.id, %error, "checkout failed");
                Ok(Some(Reply::text(
                    "Payments are unavailable right now; no money was taken. Please try again \
                     in a minute.",
                )))
            }
        }
    }

    /// `/refund` (the list) or `/refund N` (the offer for order N).
    pub(super) async fn refund_command(
        &self,
        user: &User,
        purchase: Option<PurchaseId>,
    ) -> Result<Reply> {
        if user.frozen_at.is_some() {
            return Err(Error::User(UserError::Frozen));
        }
        let since = self.refund_window_start();
        let mut items = self.store.refundable(user.id, since).await?;
        // The payments loop reads real fees in the background; one it has not reached yet is
        // read (and kept) here, so the amount offered is the amount confirmed.
        for item in &mut items {
            if let Some(fee) = self.real_fee(&item.purchase).await {
                self.store.set_fee(item.purchase.id, fee).await?;
                item.purchase.fee = fee;
                item.purchase.fee_estimated = false;
                item.amount = crate::payments::refund_amount(&item.purchase, item.unused);
            }
        }
        if let Some(id) = purchase {
            let Some(item) = items.into_iter().find(|item| item.purchase.id == id) else {
                return Ok(Reply::text(format!(
                    "Order #{id} cannot be refunded: only your purchases from the last {} days \
                     with unused credits can (terms §4.4, §4.5). Send /refund to see them.",
                    self.settings.payments.refund_window_days
                )));
            };
            let money = format_price(item.amount, &item.purchase.currency);
            return Ok(Reply::text(format!(
                "Refund order #{}: {} unused of {} leave your balance and {money} goes back to \
                 you{}. Credits you used are not refundable (terms §4.5).",
                item.purchase.id,
                item.unused,
                item.purchase.credits,
                match item.purchase.rail {
                    Rail::Stripe =>
                        " (the unused share of the price, less that share of the card fee)",
                    Rail::Stars => " as Stars",
                }
            ))
            .with("Confirm refund", Action::RefundConfirm(item.purchase.id)));
        }
        if items.is_empty() {
            return Ok(Reply::text(format!(
                "You have no purchases from the last {} days with unused credits. Credits used \
                 for generations are not refundable (terms §4.5).",
                self.settings.payments.refund_window_days
            )));
        }
        let mut reply = Reply::text(String::from(
            "Refundable purchases (spending uses your oldest credits first):",
        ));
        for item in items {
            let money = format_price(item.amount, &item.purchase.currency);
            let _ = write!(
                reply.text,
                "\n#{}: {} unused of {} → {money}",
                item.purchase.id, item.unused, item.purchase.credits
            );
            reply = reply.with(
                &format!("Refund #{} ({money})", item.purchase.id),
                Action::RefundAsk(item.purchase.id),
            );
        }
        Ok(reply)
    }

    /// The person confirmed the offer `refund_command` made (with the fee it read): the
    /// credits go on hold and the refund is sent (or waits for an
    /// admin). The outcome reaches them as a notice.
    pub(super) async fn refund_confirmed(&self, user: &User, id: PurchaseId) -> Result<Reply> {
        let (refund, purchase) = self
            .store
            .begin_refund(
                user.id,
                user.wallet,
                id,
                self.refund_window_start(),
                self.settings.payments.approval,
            )
            .await?;
        let money = format_price(refund.amount, &purchase.currency);
        if refund.state == RefundState::AwaitingApproval {
            return Ok(Reply::text(format!(
                "Refund #{} of order #{} ({money}) requested. Its {} are set aside until an \
                 admin approves it; you will hear back here.",
                refund.id, purchase.id, refund.credits
            )));
        }
        self.send_refund(&refund, &purchase).await?;
        Ok(Reply::text(format!(
            "Refund #{} of order #{} ({money}) is being processed; {} left your balance.",
            refund.id, purchase.id, refund.credits
        )))
    }

    /// Asks the purchase's rail for the money back, once per refund (the refund id is the
    /// idempotency key): success takes the held credits for good, a refusal gives them back,
    /// an unknown outcome leaves the refund to be asked again.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn send_refund(&self, refund: &Refund, purchase: &Purchase) -> Result<()> {
        if refund.amount == 0 {
            self.store
                .finish_refund(refund.id, "nothing to pay back")
                .await?;
            return Ok(());
        }
        let Some(port) = self.rails.get(&purchase.rail) else {
            tracing::warn!(refund = %refund.id, rail = %purchase.rail, "no adapter for this rail; the refund waits");
            return Ok(());
        };
        let key = format!("imagegpt-refund-{}", refund.id);
        match port.refund(purchase, refund.amount, &key).await {
            Ok(provider_refund) => {
                self.store
                    .finish_refund(refund.id, &provider_refund)
                    .await?;
            }
            Err(PaymentError::Refused(why)) => {
                tracing::info!(refund = %refund.id, %why, "the payment service refused a refund");
                self.store
                    .fail_refund(refund.id, RefundState::Failed, &why)
                    .await?;
            }
            Err(error @ PaymentError::Unavailable(_)) => {
                tracing::warn!(refund = %refund.id, %error, "refund outcome unknown; will ask again");
            }
        }
        Ok(())
    }

    /// An admin's decision on a refund waiting for approval. `Ok(false)` when it was not waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn decide_refund(&self, id: RefundId, approve: bool, reason: &str) -> Result<bool> {
        if approve {
            let Some((refund, purchase)) = self.store.approve_refund(id).await? else {
                return Ok(false);
            };
            self.send_refund(&refund, &purchase).await?;
            Ok(true)
        } else {
            self.store
                .fail_refund(id, RefundState::Rejected, reason)
                .await
        }
    }

    /// Applies a verified payment event (the Stripe webhook calls this).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails; the event was not recorded.
    pub async fn payment_event(
        &self,
        event_id: &str,
        kind: &str,
        event: Option<PaymentEvent>,
    ) -> Result<EventOutcome> {
        self.store.apply_stripe_event(event_id, kind, event).await
    }

    /// Telegram's pre-checkout question for a Stars invoice: `Err` with the reason to show
    /// when the order cannot be paid now.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn stars_pre_checkout(
        &self,
        payer: &Identity,
        payload: &str,
        currency: &str,
        total: u64,
    ) -> Result<std::result::Result<(), String>> {
        let Some(purchase) = self.stars_order(payload).await? else {
            return Ok(Err(
                "This order is unknown. Send /buy to start again.".into()
            ));
        };
        if purchase.payer != payer.to_string() {
            return Ok(Err("This invoice belongs to someone else.".into()));
        }
        if purchase.state != PurchaseState::Open || purchase.telegram_charge_id.is_some() {
            return Ok(Err("This order was already paid or closed.".into()));
        }
        if !currency.eq_ignore_ascii_case("XTR") || total != purchase.amount {
            return Ok(Err("The price changed. Send /buy to start again.".into()));
        }
        if self.store.user(purchase.user).await?.frozen_at.is_some() {
            return Ok(Err(Error::User(UserError::Frozen).to_string()));
        }
        Ok(Ok(()))
    }

    /// A Stars payment arrived (`successful_payment`): credits the order once per Telegram
    /// charge id; the "credits added" notice follows from the outbox.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn stars_paid(
        &self,
        payload: &str,
        charge: &str,
        total: u64,
    ) -> Result<EventOutcome> {
        let Some(purchase) = self.stars_order(payload).await? else {
            tracing::error!(%payload, "a Stars payment for an unknown order");
            return Ok(EventOutcome::Ignored("no such purchase"));
        };
        self.store.credit_stars(purchase.id, charge, total).await
    }

    async fn stars_order(&self, payload: &str) -> Result<Option<Purchase>> {
        let Some(id) = payload.parse::<i64>().ok().filter(|id| *id > 0) else {
            return Ok(None);
        };
        Ok(self
            .store
            .purchase(PurchaseId::from_db(id))
            .await?
            .filter(|p| p.rail == Rail::Stars))
    }

    /// Delivers due notices through the platforms' messengers; returns how many went out.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn deliver_notices(&self) -> Result<usize> {
        let mut sent = 0;
        // Only what this process can reach; another instance (or a later start) with that
        // platform sends the rest.
        let platforms: Vec<Platform> = self.messengers.keys().copied().collect();
        for notice in self.store.due_notices(&platforms, 32).await? {
            let Ok(messenger) = self.messenger(notice.chat.platform) else {
                continue;
            };
            match messenger
                .send_notice(
                    &notice.chat,
                    notice.recipient.as_ref(),
                    &super::words::notice_text(&notice.notice),
                )
                .await
            {
                Ok(_) => {
                    self.store.notice_done(notice.id).await?;
                    sent += 1;
                }
                Err(super::DeliveryError::Permanent(why)) => {
                    tracing::warn!(notice = notice.id, %why, "a notice cannot be delivered; dropped");
                    self.store.notice_done(notice.id).await?;
                }
                Err(error) => {
                    tracing::info!(notice = notice.id, attempts = notice.attempts, %error, "a notice will be retried");
                }
            }
        }
        Ok(sent)
    }

    /// Asks again about refunds whose outcome stayed unknown (a crash or an outage between
    /// taking the credits and hearing from the payment service).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn retry_refunds(&self) -> Result<()> {
        let stale = now_millis() - i64::try_from(REFUND_RETRY_AFTER.as_millis()).unwrap_or(0);
        for (refund, purchase) in self
            .store
            .refunds_in(RefundState::Processing, Some(stale))
            .await?
        {
            self.send_refund(&refund, &purchase).await?;
        }
        Ok(())
    }

    /// Replaces estimated fees with the real ones Stripe reports for paid purchases (their
    /// charge's balance transaction); returns how many were updated. A purchase Stripe cannot
    /// tell about yet keeps its estimate and is asked again later.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn refresh_fees(&self) -> Result<usize> {
        let mut updated = 0;
        for purchase in self.store.purchases_awaiting_fee(16).await? {
            if let Some(fee) = self.real_fee(&purchase).await {
                self.store.set_fee(purchase.id, fee).await?;
                updated += 1;
            }
        }
        Ok(updated)
    }

    /// Delivers notices and retries refunds every `tick` until `shutdown`, then flushes the
    /// notices once more.
    pub async fn run_payments(self: Arc<Self>, tick: Duration, shutdown: CancellationToken) {
        let mut rounds: u64 = 0;
        loop {
            if let Err(error) = self.deliver_notices().await {
                tracing::error!(error = format!("{error:#}"), "delivering notices failed");
            }
            if rounds.is_multiple_of(20) {
                if let Err(error) = self.retry_refunds().await {
                    tracing::error!(error = format!("{error:#}"), "retrying refunds failed");
                }
                if let Err(error) = self.refresh_fees().await {
                    tracing::error!(error = format!("{error:#}"), "reading fees failed");
                }
            }
            rounds += 1;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
            }
        }
        if let Err(error) = self.deliver_notices().await {
            tracing::error!(error = format!("{error:#}"), "flushing notices failed");
        }
    }

    fn refund_window_start(&self) -> i64 {
        now_millis() - i64::from(self.settings.payments.refund_window_days) * 86_400_000
    }

    /// The real fee of a card purchase, when Stripe can tell it and we only had an estimate.
    async fn real_fee(&self, purchase: &Purchase) -> Option<u64> {
        if !purchase.fee_estimated || purchase.state != PurchaseState::Paid {
            return None;
        }
        let port = self.rails.get(&purchase.rail)?;
        match port.fee(purchase).await {
            Ok(fee) => fee,
            Err(error) => {
                tracing::info!(purchase = %purchase.id, %error, "the real fee is unknown; using the estimate");
                None
            }
        }
    }
}
