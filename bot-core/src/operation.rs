//! Every operation in one table: its name in configuration and job records, how people call it,
//! the photos it needs and uses, its default price rule (terms §4.1) and its default provider
//! time limit. The `[operations.<name>]` section overrides price, timeout and routes; the older
//! scattered keys (`[pricing]` per operation, `[workers.timeouts]`, `[providers.routes]`) still
//! work for one release as deprecated aliases.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::command::Quality;

/// Something that costs credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    Image(Quality),
    Enhance,
    RemoveBackground,
    FaceSwap,
    Portrait,
    Video { seconds: u32 },
    Music { seconds: u32 },
}

/// One operation's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationInfo {
    /// The name in configuration, routes and job records.
    pub name: &'static str,
    /// How it is named to people (an image's tier and a length are added to it).
    pub label: &'static str,
    /// Photos it cannot run without.
    pub photos_needed: usize,
    /// Photos it uses at most; more are ignored.
    pub photos_used: usize,
    /// The price unless configured.
    pub price: Price,
    /// How long one provider call may take unless configured, in seconds.
    pub timeout_seconds: u64,
}

/// Every operation, in the order `/help` lists them.
pub const OPERATIONS: [OperationInfo; 7] = [
    OperationInfo {
        name: "image",
        label: "image",
        photos_needed: 0,
        photos_used: 0,
        price: Price::Tiers {
            standard: 1,
            hd: 2,
            four_k: 4,
        },
        timeout_seconds: 120,
    },
    OperationInfo {
        name: "enhance",
        label: "enhancement",
        photos_needed: 1,
        photos_used: 1,
        price: Price::Flat(1),
        timeout_seconds: 120,
    },
    OperationInfo {
        name: "removebg",
        label: "background removal",
        photos_needed: 1,
        photos_used: 1,
        price: Price::Flat(1),
        timeout_seconds: 120,
    },
    OperationInfo {
        name: "faceswap",
        label: "face swap",
        photos_needed: 2,
        photos_used: 2,
        price: Price::Flat(2),
        timeout_seconds: 180,
    },
    OperationInfo {
        name: "portrait",
        label: "AI portrait",
        photos_needed: 1,
        photos_used: 1,
        price: Price::Flat(3),
        timeout_seconds: 180,
    },
    OperationInfo {
        name: "video",
        label: "video",
        photos_needed: 0,
        photos_used: 1,
        price: Price::PerBlock {
            credits: 10,
            per_seconds: 5,
        },
        timeout_seconds: 900,
    },
    OperationInfo {
        name: "music",
        label: "track",
        photos_needed: 0,
        photos_used: 0,
        price: Price::PerBlock {
            credits: 5,
            per_seconds: 30,
        },
        timeout_seconds: 600,
    },
];

impl Operation {
    /// Every operation's name in configuration and job records.
    pub const NAMES: [&'static str; 7] = [
        OPERATIONS[0].name,
        OPERATIONS[1].name,
        OPERATIONS[2].name,
        OPERATIONS[3].name,
        OPERATIONS[4].name,
        OPERATIONS[5].name,
        OPERATIONS[6].name,
    ];

    /// This operation's place in [`OPERATIONS`].
    pub fn index(&self) -> usize {
        match self {
            Operation::Image(_) => 0,
            Operation::Enhance => 1,
            Operation::RemoveBackground => 2,
            Operation::FaceSwap => 3,
            Operation::Portrait => 4,
            Operation::Video { .. } => 5,
            Operation::Music { .. } => 6,
        }
    }

    /// Its facts.
    pub fn info(&self) -> &'static OperationInfo {
        &OPERATIONS[self.index()]
    }

    /// This operation's name in configuration and job records.
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// How the operation is named to people.
    pub fn label(&self) -> String {
        match self {
            Operation::Image(quality) => format!("{} image", quality.label()),
            Operation::Video { seconds } => format!("{seconds}-second video"),
            Operation::Music { seconds } => format!("{seconds}-second track"),
            other => other.info().label.to_string(),
        }
    }
}

/// How an operation is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Price {
    /// The same every time: `price = 3`.
    Flat(u64),
    /// By quality: `price = { standard = 1, hd = 2, 4k = 4 }`.
    Tiers {
        standard: u64,
        hd: u64,
        #[serde(rename = "4k")]
        four_k: u64,
    },
    /// Per started block of seconds: `price = { credits = 10, per_seconds = 5 }`.
    PerBlock { credits: u64, per_seconds: u32 },
}

impl Price {
    /// What `operation` costs under this rule, in credits.
    pub fn of(&self, operation: Operation) -> u64 {
        match (*self, operation) {
            (Price::Flat(credits), _) => credits,
            (
                Price::Tiers {
                    standard,
                    hd,
                    four_k,
                },
                operation,
            ) => match operation {
                Operation::Image(Quality::Hd) => hd,
                Operation::Image(Quality::FourK) => four_k,
                _ => standard,
            },
            (
                Price::PerBlock {
                    credits,
                    per_seconds,
                },
                Operation::Video { seconds } | Operation::Music { seconds },
            ) => u64::from(seconds.div_ceil(per_seconds.max(1)).max(1)) * credits,
            (Price::PerBlock { credits, .. }, _) => credits,
        }
    }

    /// Whether this rule can price the operation called `name`.
    fn fits(&self, name: &str) -> bool {
        match self {
            Price::Flat(_) => !matches!(name, "image" | "video" | "music"),
            Price::Tiers { .. } => name == "image",
            Price::PerBlock { .. } => matches!(name, "video" | "music"),
        }
    }

    fn is_free(&self) -> bool {
        match *self {
            Price::Flat(credits) | Price::PerBlock { credits, .. } => credits == 0,
            Price::Tiers {
                standard,
                hd,
                four_k,
            } => standard == 0 || hd == 0 || four_k == 0,
        }
    }
}

/// For `/help` and quotes: "1 / 2 / 4 credits (standard / HD / 4K)", "10 credits per 5 seconds".
impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credits = |n: u64| if n == 1 { "credit" } else { "credits" };
        match *self {
            Price::Flat(n) => write!(f, "{n} {}", credits(n)),
            Price::Tiers {
                standard,
                hd,
                four_k,
            } => write!(
                f,
                "{standard} / {hd} / {four_k} credits (standard / HD / 4K)"
            ),
            Price::PerBlock {
                credits: n,
                per_seconds,
            } => write!(f, "{n} {} per {per_seconds} seconds", credits(n)),
        }
    }
}

/// One `[operations.<name>]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationSettings {
    pub price: Option<Price>,
    pub timeout_seconds: Option<u64>,
    /// The providers to try in order (see `[providers]`).
    pub routes: Option<Vec<String>>,
}

/// The `[operations]` section, by operation name.
pub type OperationsConfig = BTreeMap<String, OperationSettings>;

/// Checks the names and that each price rule fits its operation.
///
/// # Errors
///
/// The key at fault and what is wrong.
pub fn validate(config: &OperationsConfig) -> Result<(), (String, String)> {
    for (name, settings) in config {
        let at = |key: &str| format!("operations.{name}{key}");
        if !Operation::NAMES.contains(&name.as_str()) {
            return Err((
                at(""),
                format!("unknown operation; expected one of {:?}", Operation::NAMES),
            ));
        }
        if let Some(price) = &settings.price {
            if !price.fits(name) {
                let expected = match name.as_str() {
                    "image" => "{ standard = N, hd = N, 4k = N }",
                    "video" | "music" => "{ credits = N, per_seconds = N }",
                    _ => "a number of credits",
                };
                return Err((at(".price"), format!("must be {expected}")));
            }
            if price.is_free() {
                return Err((at(".price"), "must be at least 1 credit".into()));
            }
        }
        if settings.timeout_seconds == Some(0) {
            return Err((at(".timeout_seconds"), "must be at least 1".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_terms_prices_and_each_operations_photos() {
        let cost = |operation: Operation| operation.info().price.of(operation);
        assert_eq!(cost(Operation::Image(Quality::Standard)), 1);
        assert_eq!(cost(Operation::Image(Quality::Hd)), 2);
        assert_eq!(cost(Operation::Image(Quality::FourK)), 4);
        assert_eq!(cost(Operation::Enhance), 1);
        assert_eq!(cost(Operation::RemoveBackground), 1);
        assert_eq!(cost(Operation::FaceSwap), 2);
        assert_eq!(cost(Operation::Portrait), 3);
        assert_eq!(cost(Operation::Video { seconds: 6 }), 20);
        assert_eq!(cost(Operation::Music { seconds: 30 }), 5);
        assert_eq!(Operation::FaceSwap.info().photos_needed, 2);
        assert_eq!(Operation::Video { seconds: 5 }.info().photos_used, 1);
        assert_eq!(Operation::RemoveBackground.name(), "removebg");
        assert_eq!(Operation::Video { seconds: 10 }.label(), "10-second video");
        for (i, info) in OPERATIONS.iter().enumerate() {
            assert_eq!(Operation::NAMES[i], info.name);
        }
    }

    #[test]
    fn prices_are_read_in_each_operations_shape_and_checked() {
        let read = |value: serde_json::Value| -> OperationsConfig {
            serde_json::from_value(value).expect("reads")
        };
        let config = read(serde_json::json!({
            "image": {"price": {"standard": 2, "hd": 3, "4k": 5}},
            "video": {"price": {"credits": 12, "per_seconds": 4}, "timeout_seconds": 60},
            "enhance": {"price": 2, "routes": ["replicate"]},
        }));
        assert_eq!(validate(&config), Ok(()));
        let price = |name: &str| config[name].price.expect("a price");
        assert_eq!(price("image").of(Operation::Image(Quality::Hd)), 3);
        assert_eq!(price("video").of(Operation::Video { seconds: 10 }), 36);
        assert_eq!(price("enhance").to_string(), "2 credits");
        let wrong =
            read(serde_json::json!({"enhance": {"price": {"credits": 1, "per_seconds": 5}}}));
        assert!(validate(&wrong).is_err_and(|(key, _)| key == "operations.enhance.price"));
        let unknown = read(serde_json::json!({"juggle": {"price": 1}}));
        assert!(validate(&unknown).is_err_and(|(key, _)| key == "operations.juggle"));
        let free = read(serde_json::json!({"portrait": {"price": 0}}));
        assert!(validate(&free).is_err_and(|(_, why)| why.contains("at least 1")));
    }
}
