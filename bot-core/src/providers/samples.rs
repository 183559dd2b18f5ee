//! The requests a contract check renders for each operation: one per value people can choose
//! that reaches the template (every configured aspect ratio, video length and music length at
//! its extremes), with real photos where the operation needs them. `imagegpt providers check`
//! and the contract suite both use these, so what is checked is what people can send.

use super::GenerationRequest;
use crate::{
    command::{AspectRatio, CommandLimits, Quality},
    media::{MediaLimits, Upload},
    pricing::Operation,
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
