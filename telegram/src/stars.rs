//! Telegram Stars as a payment rail: `sendInvoice` in XTR with the order id as payload, and
//! `refundStarPayment` (a charge Telegram says is already refunded counts as refunded). The
//! pre-checkout answer and the crediting on `successful_payment` are in the adapter; the rules
//! are the core's.

use bot_core::{
    Identity, Platform,
    payments::{Checkout, PaymentError, PaymentFuture, PaymentRail, Purchase, Rail},
};
use teloxide::{
    ApiError, Bot, RequestError,
    prelude::*,
    types::{LabeledPrice, TelegramTransactionId},
};

use std::{future::IntoFuture, sync::Arc};

use crate::messenger::describe;

/// Sells packs for Telegram Stars.
#[derive(Clone)]
pub struct Stars {
    bot: Bot,
    /// An invoice is a message: it waits its turn like any other.
    pace: Arc<crate::pace::Pace>,
}

impl std::fmt::Debug for Stars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bot holds the token; never print it.
        f.debug_struct("Stars").finish_non_exhaustive()
    }
}

impl Stars {
    pub(crate) fn new((bot, pace): (Bot, Arc<crate::pace::Pace>)) -> Stars {
        Stars { bot, pace }
    }

    async fn invoice(&self, purchase: &Purchase, title: &str) -> Result<Checkout, PaymentError> {
        let chat: i64 = purchase
            .chat
            .id
            .parse()
            .map_err(|_| PaymentError::Refused("not a Telegram chat".into()))?;
        let amount = u32::try_from(purchase.amount)
            .map_err(|_| PaymentError::Refused("the price is too large".into()))?;
        let invoice = self.bot.send_invoice(
            ChatId(chat),
            title,
            format!(
                "{} for imagegpt (order #{}).",
                purchase.credits, purchase.id
            ),
            purchase.id.to_string(),
            "XTR",
            [LabeledPrice::new(purchase.credits.to_string(), amount)],
        );
        self.pace
            .send(chat, || IntoFuture::into_future(invoice.clone()))
            .await
            .map_err(rail_error)?;
        Ok(Checkout::Sent)
    }

    async fn give_back(&self, purchase: &Purchase) -> Result<String, PaymentError> {
        let charge = purchase
            .telegram_charge_id
            .clone()
            .ok_or_else(|| PaymentError::Refused("the payment was never completed".into()))?;
        let payer: u64 = purchase
            .payer
            .parse::<Identity>()
            .ok()
            .filter(|payer| payer.platform() == Platform::Telegram)
            .and_then(|payer| payer.external_id().parse().ok())
            .ok_or_else(|| PaymentError::Refused("not paid from Telegram".into()))?;
        let refunded = self
            .bot
            .refund_star_payment(UserId(payer), TelegramTransactionId(charge.clone()))
            .await;
        match refunded {
            Ok(_) => Ok(charge),
            Err(RequestError::Api(ApiError::Unknown(text)))
                if text.contains("CHARGE_ALREADY_REFUNDED") =>
            {
                Ok(charge)
            }
            Err(error) => Err(rail_error(error)),
        }
    }
}

fn rail_error(error: RequestError) -> PaymentError {
    let why = describe(&error);
    match error {
        RequestError::Api(_) => PaymentError::Refused(why),
        _ => PaymentError::Unavailable(why),
    }
}

impl PaymentRail for Stars {
    fn rail(&self) -> Rail {
        Rail::Stars
    }

    fn checkout<'a>(
        &'a self,
        purchase: &'a Purchase,
        title: &'a str,
    ) -> PaymentFuture<'a, Checkout> {
        Box::pin(self.invoice(purchase, title))
    }

    fn refund<'a>(
        &'a self,
        purchase: &'a Purchase,
        _amount: u64,
        _key: &'a str,
    ) -> PaymentFuture<'a, String> {
        // Telegram refunds a Stars payment whole, once per charge id.
        Box::pin(self.give_back(purchase))
    }
}
