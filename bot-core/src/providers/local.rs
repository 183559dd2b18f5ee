//! The offline preview provider: no network, no keys, deterministic results. It is not an AI
//! model, and every output says so (file names and captions carry "local preview"). Enhance is a
//! real 2× Lanczos upscale with sharpening; background removal is a real segmentation grown
//! from the image border; the rest draw deterministic media of the right type from the prompt.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    io::Cursor,
};

use image::{DynamicImage, GenericImageView, ImageFormat, Rgba, RgbaImage, imageops};

use super::{GenerationRequest, Provider, ProviderError, ProviderFuture, Run};
use crate::{
    command::Quality,
    media::{MediaKind, MediaLimits, Output},
    pricing::Operation,
};

/// The embedded default provider.
#[derive(Debug, Clone, Default)]
pub struct LocalProvider {
    limits: MediaLimits,
}

/// Said in captions and `/help` wherever a local result is shown.
pub const DISCLOSURE: &str =
    "Made by the offline local preview provider: a stand-in drawing, not an AI model.";

/// The long side of a text-to-image result per tier.
pub fn long_side(quality: Quality) -> u32 {
    match quality {
        Quality::Standard => 1024,
        Quality::Hd => 2048,
        Quality::FourK => 4096,
    }
}

/// Outputs larger than this on their long side are not made by enhance.
const MAX_ENHANCED_SIDE: u32 = 8192;

impl LocalProvider {
    /// A provider that decodes uploads within `limits`.
    pub fn new(limits: MediaLimits) -> LocalProvider {
        LocalProvider { limits }
    }

    fn run(&self, request: &GenerationRequest) -> Result<Output, ProviderError> {
        let seed = seed_of(request);
        match request.operation {
            Operation::Image(quality) => {
                let side = long_side(quality);
                let (w, h) = fit(request.aspect.width(), request.aspect.height(), side);
                png_output(DynamicImage::ImageRgba8(draw(w, h, seed)), "image")
            }
            Operation::Enhance => {
                let input = self.input(request, 0)?;
                let (w, h) = input.dimensions();
                let scale = (MAX_ENHANCED_SIDE as f32 / w.max(h) as f32).min(2.0);
                let (nw, nh) = ((w as f32 * scale) as u32, (h as f32 * scale) as u32);
                let upscaled =
                    input.resize_exact(nw.max(1), nh.max(1), imageops::FilterType::Lanczos3);
                png_output(upscaled.unsharpen(1.2, 2), "enhanced")
            }
            Operation::RemoveBackground => {
                let input = self.input(request, 0)?;
                png_output(
                    DynamicImage::ImageRgba8(remove_background(&input.to_rgba8())),
                    "no-background",
                )
            }
            Operation::FaceSwap => {
                let face = self.input(request, 0)?;
                let target = self.input(request, 1)?;
                png_output(
                    DynamicImage::ImageRgba8(paste_face(&face, &target)),
                    "face-swap",
                )
            }
            Operation::Portrait => {
                let input = self.input(request, 0)?;
                png_output(
                    DynamicImage::ImageRgba8(stylise(&input.to_rgba8(), seed)),
                    "portrait",
                )
            }
            Operation::Video { seconds } => animation(seconds, seed),
            Operation::Music { seconds } => music(seconds, seed),
        }
    }

    fn input(
        &self,
        request: &GenerationRequest,
        index: usize,
    ) -> Result<DynamicImage, ProviderError> {
        let upload = request
            .inputs
            .get(index)
            .ok_or_else(|| ProviderError::Refused("This needs a photo.".into()))?;
        upload
            .decode(&self.limits)
            .map_err(|error| ProviderError::Refused(error.to_string()))
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn supports(&self, _operation: Operation) -> bool {
        true
    }

    fn is_preview(&self) -> bool {
        true
    }

    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        let request = run.request.clone();
        let provider = self.clone();
        Box::pin(async move {
            // Image work is CPU-bound: keep it off the async workers.
            tokio::task::spawn_blocking(move || provider.run(&request))
                .await
                .map_err(|error| {
                    ProviderError::Transient(format!("local provider stopped: {error}"))
                })?
        })
    }
}

fn seed_of(request: &GenerationRequest) -> u64 {
    let mut hasher = DefaultHasher::new();
    request.prompt.hash(&mut hasher);
    request.negative.hash(&mut hasher);
    request.seed.hash(&mut hasher);
    request.style.hash(&mut hasher);
    hasher.finish()
}

/// The largest `w:h` box whose long side is `side`.
fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    if w >= h {
        (side, (side * h / w).max(1))
    } else {
        ((side * w / h).max(1), side)
    }
}

/// A tiny deterministic generator, so the same prompt always draws the same picture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}

/// A gradient with soft discs, and a striped band along the bottom marking a local preview.
fn draw(w: u32, h: u32, seed: u64) -> RgbaImage {
    let mut rng = Rng(seed | 1);
    let (top, bottom) = (
        [rng.byte(), rng.byte(), rng.byte()],
        [rng.byte(), rng.byte(), rng.byte()],
    );
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..6)
        .map(|_| {
            let x = (rng.next() % u64::from(w)) as f32;
            let y = (rng.next() % u64::from(h)) as f32;
            let r = (w.min(h) as f32) * (0.05 + (rng.byte() as f32 / 255.0) * 0.2);
            (x, y, r, [rng.byte(), rng.byte(), rng.byte()])
        })
        .collect();
    let band = (h / 24).max(4);
    RgbaImage::from_fn(w, h, |x, y| {
        if y >= h - band {
            let stripe = ((x + y) / band).is_multiple_of(2);
            return if stripe {
                Rgba([255, 200, 0, 255])
            } else {
                Rgba([20, 20, 20, 255])
            };
        }
        let t = y as f32 / h as f32;
        let mut pixel = [0f32; 3];
        for c in 0..3 {
            pixel[c] = top[c] as f32 * (1.0 - t) + bottom[c] as f32 * t;
        }
        for (cx, cy, r, colour) in &discs {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            if d < *r {
                let a = 1.0 - d / r;
                for c in 0..3 {
                    pixel[c] = pixel[c] * (1.0 - a) + colour[c] as f32 * a;
                }
            }
        }
        Rgba([pixel[0] as u8, pixel[1] as u8, pixel[2] as u8, 255])
    })
}

/// Segments the subject from the background: the background colour is learnt from the border,
/// and the region of similar colour connected to the border becomes transparent, with a
/// one-pixel soft edge.
fn remove_background(image: &RgbaImage) -> RgbaImage {
    let (w, h) = image.dimensions();
    let border: Vec<[u8; 4]> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .map(|(x, y)| image.get_pixel(x, y).0)
        .collect();
    let mean =
        |c: usize| border.iter().map(|p| u32::from(p[c])).sum::<u32>() / border.len().max(1) as u32;
    let background = [mean(0), mean(1), mean(2)];
    let distance = |p: &[u8; 4]| {
        (0..3)
            .map(|c| (i64::from(p[c]) - i64::from(background[c])).pow(2))
            .sum::<i64>()
    };
    // Threshold from the border's own spread, so noisy backgrounds still come away.
    let spread = border.iter().map(distance).max().unwrap_or(0);
    let threshold = (spread + 900).min(40 * 40 * 3);
    let mut is_background = vec![false; (w * h) as usize];
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for x in 0..w {
        stack.push((x, 0));
        stack.push((x, h - 1));
    }
    for y in 0..h {
        stack.push((0, y));
        stack.push((w - 1, y));
    }
    while let Some((x, y)) = stack.pop() {
        let index = (y * w + x) as usize;
        if is_background[index] || distance(&image.get_pixel(x, y).0) > threshold {
            continue;
        }
        is_background[index] = true;
        if x > 0 {
            stack.push((x - 1, y));
        }
        if x + 1 < w {
            stack.push((x + 1, y));
        }
        if y > 0 {
            stack.push((x, y - 1));
        }
        if y + 1 < h {
            stack.push((x, y + 1));
        }
    }
    let mut out = image.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let at = |x: u32, y: u32| is_background[(y * w + x) as usize];
        if at(x, y) {
            pixel.0[3] = 0;
        } else {
            let edge = [
                (x.wrapping_sub(1), y),
                (x + 1, y),
                (x, y.wrapping_sub(1)),
                (x, y + 1),
            ]
            .into_iter()
            .any(|(nx, ny)| nx < w && ny < h && at(nx, ny));
            if edge {
                pixel.0[3] = 160;
            }
        }
    }
    out
}

/// Places the middle of the face photo, in a soft circle, over the middle of the target.
fn paste_face(face: &DynamicImage, target: &DynamicImage) -> RgbaImage {
    let mut out = target.to_rgba8();
    let (w, h) = out.dimensions();
    let size = (w.min(h) / 3).max(1);
    let (fw, fh) = face.dimensions();
    let crop = fw.min(fh);
    let face = face
        .crop_imm((fw - crop) / 2, (fh - crop) / 2, crop, crop)
        .resize_exact(size, size, imageops::FilterType::Lanczos3)
        .to_rgba8();
    let (ox, oy) = ((w - size) / 2, (h - size) / 3);
    let r = size as f32 / 2.0;
    for (x, y, pixel) in face.enumerate_pixels() {
        let d = ((x as f32 - r).powi(2) + (y as f32 - r).powi(2)).sqrt();
        if d < r {
            let a = ((r - d) / (r * 0.15)).min(1.0);
            let under = out.get_pixel_mut(ox + x, oy + y);
            for c in 0..3 {
                under.0[c] = (f32::from(under.0[c]) * (1.0 - a) + f32::from(pixel.0[c]) * a) as u8;
            }
        }
    }
    out
}

/// Posterises and tints the photo in a colour chosen by the style.
fn stylise(image: &RgbaImage, seed: u64) -> RgbaImage {
    let mut rng = Rng(seed | 1);
    let tint = [rng.byte(), rng.byte(), rng.byte()];
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        for (channel, tint) in pixel.0.iter_mut().zip(tint) {
            let level = (*channel / 64) * 85;
            *channel = ((u16::from(level) * 3 + u16::from(tint)) / 4) as u8;
        }
    }
    out
}

fn png_output(image: DynamicImage, what: &str) -> Result<Output, ProviderError> {
    let dimensions = image.dimensions();
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|error| ProviderError::Transient(format!("encoding PNG: {error}")))?;
    Ok(Output {
        kind: MediaKind::Image,
        mime: "image/png",
        file_name: format!("local-preview-{what}.png"),
        bytes,
        dimensions: Some(dimensions),
    })
}

/// An animated GIF, 5 frames a second, of drifting colour.
fn animation(seconds: u32, seed: u64) -> Result<Output, ProviderError> {
    const SIDE: u32 = 320;
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut bytes, 30);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .map_err(|e| ProviderError::Transient(e.to_string()))?;
        let base = draw(SIDE, SIDE, seed);
        for n in 0..seconds.max(1) * 5 {
            let shift = n * SIDE / (seconds.max(1) * 5);
            let frame =
                RgbaImage::from_fn(SIDE, SIDE, |x, y| *base.get_pixel((x + shift) % SIDE, y));
            let frame =
                image::Frame::from_parts(frame, 0, 0, image::Delay::from_numer_denom_ms(200, 1));
            encoder
                .encode_frame(frame)
                .map_err(|e| ProviderError::Transient(format!("encoding GIF: {e}")))?;
        }
    }
    Ok(Output {
        kind: MediaKind::Animation,
        mime: "image/gif",
        file_name: "local-preview-video.gif".into(),
        bytes,
        dimensions: Some((SIDE, SIDE)),
    })
}

/// A WAV arpeggio in a key chosen by the prompt.
fn music(seconds: u32, seed: u64) -> Result<Output, ProviderError> {
    const RATE: u32 = 22_050;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let root = 220.0 * 2f32.powf((seed % 12) as f32 / 12.0);
    let steps = [1.0, 1.25, 1.5, 2.0];
    let mut bytes = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut bytes, spec)
            .map_err(|e| ProviderError::Transient(format!("encoding WAV: {e}")))?;
        for n in 0..RATE * seconds.max(1) {
            let t = n as f32 / RATE as f32;
            let note = steps[(t * 4.0) as usize % steps.len()];
            let envelope = 1.0 - (t * 4.0).fract();
            let sample = (2.0 * std::f32::consts::PI * root * note * t).sin() * envelope * 0.3;
            writer
                .write_sample((sample * f32::from(i16::MAX)) as i16)
                .map_err(|e| ProviderError::Transient(format!("encoding WAV: {e}")))?;
        }
        writer
            .finalize()
            .map_err(|e| ProviderError::Transient(format!("encoding WAV: {e}")))?;
    }
    Ok(Output {
        kind: MediaKind::Audio,
        mime: "audio/wav",
        file_name: "local-preview-music.wav".into(),
        bytes: bytes.into_inner(),
        dimensions: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        command::AspectRatio,
        media::{MediaLimits, Upload, tests::png},
    };

    fn request(operation: Operation, inputs: Vec<Upload>) -> GenerationRequest {
        GenerationRequest {
            operation,
            prompt: Some("a lighthouse".into()),
            negative: None,
            seed: Some(7),
            aspect: AspectRatio::SQUARE,
            style: None,
            inputs,
        }
    }

    fn upload(bytes: Vec<u8>) -> Upload {
        Upload::check(bytes, &MediaLimits::default()).expect("valid upload")
    }

    async fn run(request: GenerationRequest) -> Output {
        LocalProvider::default()
            .generate(Run::new(&request))
            .await
            .expect("generates")
    }

    #[tokio::test]
    async fn text_to_image_draws_the_tier_resolution_and_is_deterministic() {
        let standard = run(request(Operation::Image(Quality::Standard), vec![])).await;
        assert_eq!(standard.dimensions, Some((1024, 1024)));
        assert!(standard.file_name.starts_with("local-preview"));
        let again = run(request(Operation::Image(Quality::Standard), vec![])).await;
        assert_eq!(
            standard.bytes, again.bytes,
            "same prompt and seed, same picture"
        );
        let mut wide = request(Operation::Image(Quality::Hd), vec![]);
        wide.aspect = AspectRatio::parse("16:9").expect("ratio");
        let wide = run(wide).await;
        assert_eq!(wide.dimensions, Some((2048, 1152)));
        let decoded = image::load_from_memory(&wide.bytes).expect("a real PNG");
        assert_eq!(decoded.dimensions(), (2048, 1152));
    }

    #[tokio::test]
    async fn enhance_doubles_the_size_with_lanczos() {
        let output = run(request(Operation::Enhance, vec![upload(png(120, 80))])).await;
        assert_eq!(output.dimensions, Some((240, 160)));
        assert_eq!(
            image::load_from_memory(&output.bytes)
                .expect("png")
                .dimensions(),
            (240, 160)
        );
    }

    #[tokio::test]
    async fn background_removal_makes_the_border_region_transparent_and_keeps_the_subject() {
        // A white background with a dark square in the middle.
        let picture = image::RgbImage::from_fn(60, 60, |x, y| {
            if (20..40).contains(&x) && (20..40).contains(&y) {
                image::Rgb([30, 40, 200])
            } else {
                image::Rgb([250, 250, 250])
            }
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(picture)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .expect("encode");
        let output = run(request(Operation::RemoveBackground, vec![upload(bytes)])).await;
        assert_eq!(output.mime, "image/png");
        let result = image::load_from_memory(&output.bytes)
            .expect("png")
            .to_rgba8();
        assert_eq!(result.get_pixel(2, 2).0[3], 0, "background is transparent");
        assert_eq!(result.get_pixel(30, 30).0[3], 255, "subject is opaque");
    }

    #[tokio::test]
    async fn photo_operations_without_a_photo_are_refused_not_retried() {
        let error = LocalProvider::default()
            .generate(Run::new(&request(Operation::Enhance, vec![])))
            .await
            .expect_err("needs a photo");
        assert!(matches!(error, ProviderError::Refused(_)));
    }

    #[tokio::test]
    async fn face_swap_and_portrait_return_images_of_the_target_size() {
        let swapped = run(request(
            Operation::FaceSwap,
            vec![upload(png(50, 50)), upload(png(90, 60))],
        ))
        .await;
        assert_eq!(swapped.dimensions, Some((90, 60)));
        let portrait = run(request(Operation::Portrait, vec![upload(png(40, 40))])).await;
        assert_eq!(portrait.dimensions, Some((40, 40)));
    }

    #[tokio::test]
    async fn video_is_an_animated_gif_and_music_a_wav_of_the_asked_length() {
        let video = run(request(Operation::Video { seconds: 1 }, vec![])).await;
        assert_eq!(
            (video.kind, video.mime),
            (MediaKind::Animation, "image/gif")
        );
        assert!(video.bytes.starts_with(b"GIF89a"));
        let music = run(request(Operation::Music { seconds: 2 }, vec![])).await;
        let reader = hound::WavReader::new(Cursor::new(music.bytes)).expect("a real WAV");
        assert_eq!(reader.duration(), 2 * 22_050);
    }
}
