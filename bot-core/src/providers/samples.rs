//! The requests a contract check renders for each operation: one per value people can choose
//! that reaches the template (every configured aspect ratio, video length and music length at
//! its extremes), with real photos where the operation needs them. `imagegpt providers check`
//! and the contract suite both use these, so what is checked is what people can send. Also the
//! price-against-cost judgement that start-up and the check print.

use super::GenerationRequest;
use crate::{
    Credits, Usd,
    command::{AspectRatio, CommandLimits, Quality},
    media::{MediaLimits, Upload},
    pricing::{Operation, PricingConfig},
};

/// Every provider model key (see `replicate::MODEL_KEYS`) with the operation it serves.
pub const KEYED: [(&str, Operation); 9] = [
    ("image", Operation::Image(Quality::Standard)),
    ("image_hd", Operation::Image(Quality::Hd)),
    ("image_4k", Operation::Image(Quality::FourK)),
    ("enhance", Operation::Enhance),
    ("removebg", Operation::RemoveBackground),
    ("faceswap", Operation::FaceSwap),
    ("portrait", Operation::Portrait),
    ("video", Operation::Video { seconds: 5 }),
    ("music", Operation::Music { seconds: 30 }),
];

/// A small real photo, as an upload would arrive.
fn photo() -> Option<Upload> {
    let image = image::RgbImage::from_fn(48, 32, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, 96])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .ok()?;
    Upload::check(bytes, &MediaLimits::default()).ok()
}

/// The requests to render for `operation` (its length is replaced by each configured one).
pub fn requests(operation: Operation, limits: &CommandLimits) -> Vec<GenerationRequest> {
    let inputs: Vec<Upload> = (0..operation.info().photos_needed)
        .filter_map(|_| photo())
        .collect();
    let base = GenerationRequest {
        operation,
        prompt: Some("a lighthouse at dawn, 灯台 🌅".into()),
        negative: Some("people".into()),
        seed: Some(42),
        aspect: AspectRatio::SQUARE,
        style: limits.portrait_styles.first().cloned(),
        inputs,
    };
    match operation {
        Operation::Image(_) => limits
            .aspect_ratios
            .iter()
            .filter_map(|text| AspectRatio::parse(text))
            .map(|aspect| GenerationRequest {
                aspect,
                ..base.clone()
            })
            .collect(),
        Operation::Video { .. } => {
            let mut all: Vec<GenerationRequest> = limits
                .video_seconds
                .iter()
                .map(|&seconds| GenerationRequest {
                    operation: Operation::Video { seconds },
                    ..base.clone()
                })
                .collect();
            // A video may start from a photo: that form is checked too.
            if let Some(first) = all.first().cloned() {
                all.push(GenerationRequest {
                    inputs: photo().into_iter().collect(),
                    ..first
                });
            }
            all
        }
        Operation::Music { .. } => {
            let mut lengths = vec![limits.music_default_seconds, limits.music_max_seconds, 1];
            lengths.dedup();
            lengths
                .into_iter()
                .map(|seconds| GenerationRequest {
                    operation: Operation::Music { seconds },
                    ..base.clone()
                })
                .collect()
        }
        _ => vec![base],
    }
}

/// How a request differs from the others of its operation, for a report line.
pub fn describe(request: &GenerationRequest) -> String {
    match request.operation {
        Operation::Image(_) => request.aspect.to_string(),
        Operation::Video { seconds } if !request.inputs.is_empty() => {
            format!("{seconds}s from a photo")
        }
        Operation::Video { seconds } | Operation::Music { seconds } => format!("{seconds}s"),
        _ => String::new(),
    }
}

/// `operation` at the length its price is quoted for in `/help`: the shortest video, the
/// default track.
pub fn priced(operation: Operation, limits: &CommandLimits) -> Operation {
    match operation {
        Operation::Video { .. } => Operation::Video {
            seconds: limits.video_seconds.iter().copied().min().unwrap_or(5),
        },
        Operation::Music { .. } => Operation::Music {
            seconds: limits.music_default_seconds,
        },
        other => other,
    }
}

/// One operation's price against its provider cost, judged at the least a credit brings in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costing {
    pub credits: Credits,
    /// The credits at the cheapest pack's dollar rate; `None` when no pack is in dollars.
    pub revenue: Option<Usd>,
    /// `None` when no price is configured for the model.
    pub cost: Option<Usd>,
}

impl Costing {
    /// `operation` at `pricing`'s price and a provider `cost`.
    pub fn of(pricing: &PricingConfig, operation: Operation, cost: Option<Usd>) -> Costing {
        let credits = pricing.cost(operation);
        Costing {
            credits,
            revenue: pricing.credit_floor().map(|rate| rate.times(credits.get())),
            cost,
        }
    }

    /// True when the price in credits brings in less than the provider charges.
    pub fn below_cost(&self) -> bool {
        matches!((self.revenue, self.cost), (Some(revenue), Some(cost)) if revenue < cost)
    }

    /// `cost $0.04 · price 2 credits = $0.048 · margin 17%`, or what is unknown.
    pub fn describe(&self) -> String {
        let cost = self.cost.map_or_else(
            || "cost unknown (none configured)".to_string(),
            |c| format!("cost {c}"),
        );
        let Some(revenue) = self.revenue else {
            return format!("{cost} · price {}", self.credits);
        };
        let mut text = format!("{cost} · price {} = {revenue}", self.credits);
        if let Some(cost) = self.cost {
            if revenue < cost {
                text.push_str(&format!(
                    " · BELOW COST by {}",
                    Usd::micros(cost.get() - revenue.get())
                ));
            } else if revenue.get() > 0 {
                let margin = (revenue.get() - cost.get()) * 100 / revenue.get();
                text.push_str(&format!(" · margin {margin}%"));
            }
        }
        text
    }
}
