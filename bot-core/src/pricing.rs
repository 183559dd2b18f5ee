//! The one place prices are read: what each operation costs (its rule from the operation table,
//! or `[operations.<name>].price`) and which credit packs are sold (`[pricing]`). Defaults are the
//! terms' §4.1.

use serde::Deserialize;

use crate::{Credits, Usd};

pub use crate::operation::Operation;
use crate::operation::{OPERATIONS, Price};

/// A credit pack for sale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// A short id used in commands and payment metadata: `small`, `medium`, `large`.
    pub id: String,
    /// What people see.
    pub name: String,
    pub credits: u64,
    /// The card price in the currency's smallest unit (cents).
    pub price_cents: u64,
    /// ISO 4217, lowercase as Stripe writes it.
    pub currency: String,
    /// The price in Telegram Stars (XTR), when sold for Stars.
    pub stars: Option<u64>,
    /// A Stripe Price id (`price_…`) to sell the pack with; without one, Checkout is given the
    /// price and currency above.
    pub stripe_price: Option<String>,
}

/// The `[pricing]` section. The per-operation keys are deprecated aliases of
/// `[operations.<name>].price`, kept for one release.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    pub image_standard: Option<u64>,
    pub image_hd: Option<u64>,
    pub image_4k: Option<u64>,
    pub enhance: Option<u64>,
    pub remove_background: Option<u64>,
    pub face_swap: Option<u64>,
    pub portrait: Option<u64>,
    /// Credits per started 5 seconds of video.
    pub video_per_5_seconds: Option<u64>,
    /// Credits per started 30 seconds of music.
    pub music_per_30_seconds: Option<u64>,
    /// Operations costing at least this ask for confirmation first.
    pub confirm_from: u64,
    pub packs: Vec<Pack>,
    /// Each operation's price rule, by [`Operation::index`]: the table's, or as configured.
    #[serde(skip)]
    pub prices: [Price; 7],
}

impl Default for PricingConfig {
    fn default() -> Self {
        let pack = |id: &str, name: &str, credits, dollars: u64, stars| Pack {
            id: id.into(),
            name: name.into(),
            credits,
            price_cents: dollars * 100,
            currency: "usd".into(),
            stars: Some(stars),
            stripe_price: None,
        };
        PricingConfig {
            image_standard: None,
            image_hd: None,
            image_4k: None,
            enhance: None,
            remove_background: None,
            face_swap: None,
            portrait: None,
            video_per_5_seconds: None,
            music_per_30_seconds: None,
            confirm_from: 5,
            packs: vec![
                pack("small", "Small", 150, 5, 250),
                pack("medium", "Medium", 350, 10, 500),
                pack("large", "Large", 1_250, 30, 1_500),
            ],
            prices: OPERATIONS.map(|info| info.price),
        }
    }
}

impl PricingConfig {
    /// What `operation` costs.
    pub fn cost(&self, operation: Operation) -> Credits {
        Credits::new(self.prices[operation.index()].of(operation))
    }

    /// The least a credit brings in: the dollar price per credit of the cheapest pack priced in
    /// US dollars (`None` when no pack is). Margins are judged at this rate, so an operation
    /// that pays at it pays at every pack.
    pub fn credit_floor(&self) -> Option<Usd> {
        self.packs
            .iter()
            .filter(|pack| pack.currency == "usd" && pack.credits > 0)
            .map(|pack| Usd::micros(pack.price_cents.saturating_mul(10_000) / pack.credits))
            .min()
    }

    /// The price rule of `operation`, for `/help` and quotes.
    pub fn rule(&self, operation: Operation) -> Price {
        self.prices[operation.index()]
    }

    /// Applies the deprecated per-operation keys, where set, over the table's rules; returns the
    /// keys that were used, for a start-up warning.
    pub fn apply_deprecated_keys(&mut self) -> Vec<&'static str> {
        let mut used = Vec::new();
        let mut flat = |key: &'static str, value: Option<u64>, at: usize| {
            if let Some(credits) = value {
                self.prices[at] = Price::Flat(credits);
                used.push(key);
            }
        };
        flat("pricing.enhance", self.enhance, 1);
        flat("pricing.remove_background", self.remove_background, 2);
        flat("pricing.face_swap", self.face_swap, 3);
        flat("pricing.portrait", self.portrait, 4);
        if self.image_standard.is_some() || self.image_hd.is_some() || self.image_4k.is_some() {
            let Price::Tiers {
                standard,
                hd,
                four_k,
            } = OPERATIONS[0].price
            else {
                unreachable!("images are priced by tier")
            };
            self.prices[0] = Price::Tiers {
                standard: self.image_standard.unwrap_or(standard),
                hd: self.image_hd.unwrap_or(hd),
                four_k: self.image_4k.unwrap_or(four_k),
            };
            used.push("pricing.image_*");
        }
        if let Some(credits) = self.video_per_5_seconds {
            self.prices[5] = Price::PerBlock {
                credits,
                per_seconds: 5,
            };
            used.push("pricing.video_per_5_seconds");
        }
        if let Some(credits) = self.music_per_30_seconds {
            self.prices[6] = Price::PerBlock {
                credits,
                per_seconds: 30,
            };
            used.push("pricing.music_per_30_seconds");
        }
        used
    }

    /// True when `operation` should be confirmed before credits are held.
    pub fn needs_confirmation(&self, operation: Operation) -> bool {
        self.cost(operation).get() >= self.confirm_from
    }

    /// The pack with this id.
    pub fn pack(&self, id: &str) -> Option<&Pack> {
        self.packs
            .iter()
            .find(|pack| pack.id.eq_ignore_ascii_case(id))
    }

    /// Checks the figures make sense; the message names the key.
    ///
    /// # Errors
    ///
    /// A description of the first bad figure.
    pub fn validate(&self) -> Result<(), String> {
        let prices = [
            ("pricing.image_standard", self.image_standard),
            ("pricing.image_hd", self.image_hd),
            ("pricing.image_4k", self.image_4k),
            ("pricing.enhance", self.enhance),
            ("pricing.remove_background", self.remove_background),
            ("pricing.face_swap", self.face_swap),
            ("pricing.portrait", self.portrait),
            ("pricing.video_per_5_seconds", self.video_per_5_seconds),
            ("pricing.music_per_30_seconds", self.music_per_30_seconds),
        ];
        if let Some((key, _)) = prices.iter().find(|(_, price)| *price == Some(0)) {
            return Err(format!("{key} must be at least 1 credit"));
        }
        for (i, pack) in self.packs.iter().enumerate() {
            if pack.id.is_empty() || pack.credits == 0 || pack.price_cents == 0 {
                return Err(format!(
                    "pricing.packs[{i}] needs an id, credits and a price"
                ));
            }
            if self.packs[..i]
                .iter()
                .any(|other| other.id.eq_ignore_ascii_case(&pack.id))
            {
                return Err(format!("pricing.packs: the id {:?} is used twice", pack.id));
            }
            if pack.currency.len() != 3 || !pack.currency.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(format!(
                    "pricing.packs[{i}].currency must be a lowercase ISO code such as usd"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Quality;

    #[test]
    fn default_prices_are_the_terms_section_4_1() {
        let pricing = PricingConfig::default();
        let cost = |op| pricing.cost(op).get();
        assert_eq!(cost(Operation::Image(Quality::Standard)), 1);
        assert_eq!(cost(Operation::Image(Quality::Hd)), 2);
        assert_eq!(cost(Operation::Image(Quality::FourK)), 4);
        assert_eq!(cost(Operation::Enhance), 1);
        assert_eq!(cost(Operation::RemoveBackground), 1);
        assert_eq!(cost(Operation::FaceSwap), 2);
        assert_eq!(cost(Operation::Portrait), 3);
        let packs: Vec<_> = pricing
            .packs
            .iter()
            .map(|p| (p.name.as_str(), p.credits, p.price_cents))
            .collect();
        assert_eq!(
            packs,
            vec![
                ("Small", 150, 500),
                ("Medium", 350, 1_000),
                ("Large", 1_250, 3_000)
            ]
        );
    }

    #[test]
    fn video_and_music_cost_per_started_block() {
        let pricing = PricingConfig::default();
        assert_eq!(pricing.cost(Operation::Video { seconds: 5 }).get(), 10);
        assert_eq!(pricing.cost(Operation::Video { seconds: 10 }).get(), 20);
        assert_eq!(pricing.cost(Operation::Video { seconds: 6 }).get(), 20);
        assert_eq!(pricing.cost(Operation::Music { seconds: 30 }).get(), 5);
        assert_eq!(pricing.cost(Operation::Music { seconds: 31 }).get(), 10);
        assert_eq!(pricing.cost(Operation::Music { seconds: 1 }).get(), 5);
    }

    #[test]
    fn costly_operations_ask_for_confirmation() {
        let pricing = PricingConfig::default();
        assert!(!pricing.needs_confirmation(Operation::Image(Quality::FourK)));
        assert!(pricing.needs_confirmation(Operation::Music { seconds: 30 }));
        assert!(pricing.needs_confirmation(Operation::Video { seconds: 5 }));
    }

    #[test]
    fn a_credit_is_worth_at_least_the_cheapest_packs_rate() {
        let mut pricing = PricingConfig::default();
        // 1,250 credits for $30: 2.4 cents each, below the small pack's 3.33.
        assert_eq!(pricing.credit_floor(), Some(Usd::micros(24_000)));
        for pack in &mut pricing.packs {
            pack.currency = "eur".into();
        }
        assert_eq!(pricing.credit_floor(), None);
    }

    #[test]
    fn packs_are_found_by_id_in_any_case() {
        let pricing = PricingConfig::default();
        assert_eq!(pricing.pack("MEDIUM").map(|p| p.credits), Some(350));
        assert_eq!(pricing.pack("huge"), None);
    }

    #[test]
    fn nonsense_prices_are_refused_naming_the_key() {
        let mut pricing = PricingConfig::default();
        assert_eq!(pricing.validate(), Ok(()));
        pricing.image_hd = Some(0);
        assert!(
            pricing
                .validate()
                .is_err_and(|e| e.contains("pricing.image_hd"))
        );
        let mut pricing = PricingConfig::default();
        pricing.packs[1].id = "SMALL".into();
        assert!(pricing.validate().is_err_and(|e| e.contains("used twice")));
        let mut pricing = PricingConfig::default();
        pricing.packs[0].currency = "US$".into();
        assert!(pricing.validate().is_err_and(|e| e.contains("currency")));
    }

    #[test]
    fn the_deprecated_keys_still_set_prices() {
        let mut pricing = PricingConfig {
            image_hd: Some(3),
            video_per_5_seconds: Some(12),
            remove_background: Some(2),
            ..PricingConfig::default()
        };
        let used = pricing.apply_deprecated_keys();
        assert_eq!(
            used,
            [
                "pricing.remove_background",
                "pricing.image_*",
                "pricing.video_per_5_seconds"
            ]
        );
        assert_eq!(pricing.cost(Operation::Image(Quality::Hd)).get(), 3);
        assert_eq!(pricing.cost(Operation::Image(Quality::FourK)).get(), 4);
        assert_eq!(pricing.cost(Operation::Video { seconds: 10 }).get(), 24);
        assert_eq!(pricing.cost(Operation::RemoveBackground).get(), 2);
        assert!(PricingConfig::default().apply_deprecated_keys().is_empty());
    }
}
