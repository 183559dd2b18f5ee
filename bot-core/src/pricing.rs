//! The one place prices live: what each operation costs and which credit packs are sold.
//! Defaults are the terms' §4.1; every figure can be changed in the `[pricing]` section.

use serde::Deserialize;

use crate::{Credits, command::Quality};

/// Something that costs credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub enum Operation {
    Image(Quality),
    Enhance,
    RemoveBackground,
    FaceSwap,
    Portrait,
    Video { seconds: u32 },
    Music { seconds: u32 },
}

impl Operation {
    /// Every operation's name in configuration and job records.
    pub const NAMES: [&'static str; 7] = [
        "image", "enhance", "removebg", "faceswap", "portrait", "video", "music",
    ];

    /// This operation's name in configuration and job records.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Image(_) => "image",
            Operation::Enhance => "enhance",
            Operation::RemoveBackground => "removebg",
            Operation::FaceSwap => "faceswap",
            Operation::Portrait => "portrait",
            Operation::Video { .. } => "video",
            Operation::Music { .. } => "music",
        }
    }

    /// How the operation is named to people.
    pub fn label(&self) -> String {
        match self {
            Operation::Image(quality) => format!("{} image", quality.label()),
            Operation::Enhance => "enhancement".into(),
            Operation::RemoveBackground => "background removal".into(),
            Operation::FaceSwap => "face swap".into(),
            Operation::Portrait => "AI portrait".into(),
            Operation::Video { seconds } => format!("{seconds}-second video"),
            Operation::Music { seconds } => format!("{seconds}-second track"),
        }
    }
}

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

/// The `[pricing]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    pub image_standard: u64,
    pub image_hd: u64,
    pub image_4k: u64,
    pub enhance: u64,
    pub remove_background: u64,
    pub face_swap: u64,
    pub portrait: u64,
    /// Credits per started 5 seconds of video.
    pub video_per_5_seconds: u64,
    /// Credits per started 30 seconds of music.
    pub music_per_30_seconds: u64,
    /// Operations costing at least this ask for confirmation first.
    pub confirm_from: u64,
    pub packs: Vec<Pack>,
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
            image_standard: 1,
            image_hd: 2,
            image_4k: 4,
            enhance: 1,
            remove_background: 1,
            face_swap: 2,
            portrait: 3,
            video_per_5_seconds: 10,
            music_per_30_seconds: 5,
            confirm_from: 5,
            packs: vec![
                pack("small", "Small", 150, 5, 250),
                pack("medium", "Medium", 350, 10, 500),
                pack("large", "Large", 1_250, 30, 1_500),
            ],
        }
    }
}

impl PricingConfig {
    /// What `operation` costs.
    pub fn cost(&self, operation: Operation) -> Credits {
        let per_started = |seconds: u32, block: u32, price: u64| {
            u64::from(seconds.div_ceil(block).max(1)) * price
        };
        Credits::new(match operation {
            Operation::Image(Quality::Standard) => self.image_standard,
            Operation::Image(Quality::Hd) => self.image_hd,
            Operation::Image(Quality::FourK) => self.image_4k,
            Operation::Enhance => self.enhance,
            Operation::RemoveBackground => self.remove_background,
            Operation::FaceSwap => self.face_swap,
            Operation::Portrait => self.portrait,
            Operation::Video { seconds } => per_started(seconds, 5, self.video_per_5_seconds),
            Operation::Music { seconds } => per_started(seconds, 30, self.music_per_30_seconds),
        })
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
        if let Some((key, _)) = prices.iter().find(|(_, price)| *price == 0) {
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
    fn packs_are_found_by_id_in_any_case() {
        let pricing = PricingConfig::default();
        assert_eq!(pricing.pack("MEDIUM").map(|p| p.credits), Some(350));
        assert_eq!(pricing.pack("huge"), None);
    }

    #[test]
    fn nonsense_prices_are_refused_naming_the_key() {
        let mut pricing = PricingConfig::default();
        assert_eq!(pricing.validate(), Ok(()));
        pricing.image_hd = 0;
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
}
