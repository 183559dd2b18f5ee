//! Media that moves through a job: uploads are checked by magic bytes, size and the pixel count
//! in their header before anything decodes them (terms §6.2: used only for the generation, never
//! logged, gone when the job ends), and results carry their type for delivery.

pub mod links;

use std::fmt;

use serde::Deserialize;

/// Photos one request may carry. Telegram's albums hold at most ten items (Bot API,
/// `sendMediaGroup`: "2-10 items"), and no operation uses more than two; a request with more
/// comes from something other than a person's client, and is refused whole.
pub const MAX_PHOTOS: usize = 10;

/// Limits on uploads; the `[media]` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaLimits {
    /// Largest upload in bytes (Telegram bots can download up to 20 MB).
    pub max_upload_bytes: usize,
    /// Most pixels an upload may declare in its header (decompression bombs).
    pub max_pixels: u64,
    /// Longest side an upload may declare.
    pub max_side: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            max_upload_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 12_000,
        }
    }
}

/// An upload that passed the checks. Its bytes are never logged: `Debug` shows the size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    bytes: Vec<u8>,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl Upload {
    /// Checks raw bytes from a platform.
    ///
    /// # Errors
    ///
    /// A [`MediaError`] a person can act on; nothing was decoded.
    pub fn check(bytes: Vec<u8>, limits: &MediaLimits) -> Result<Upload, MediaError> {
        if bytes.is_empty() {
            return Err(MediaError::Empty);
        }
        if bytes.len() > limits.max_upload_bytes {
            return Err(MediaError::TooLarge {
                bytes: bytes.len(),
                limit: limits.max_upload_bytes,
            });
        }
        let format = match infer::get(&bytes).map(|kind| kind.mime_type()) {
            Some("image/jpeg") => ImageFormat::Jpeg,
            Some("image/png") => ImageFormat::Png,
            Some("image/webp") => ImageFormat::Webp,
            _ => return Err(MediaError::NotAnImage),
        };
        let size = imagesize::blob_size(&bytes).map_err(|_| MediaError::Corrupt)?;
        let (width, height) = (
            u32::try_from(size.width).unwrap_or(u32::MAX),
            u32::try_from(size.height).unwrap_or(u32::MAX),
        );
        if width == 0 || height == 0 {
            return Err(MediaError::Corrupt);
        }
        if width > limits.max_side
            || height > limits.max_side
            || u64::from(width) * u64::from(height) > limits.max_pixels
        {
            return Err(MediaError::TooManyPixels {
                width,
                height,
                max_pixels: limits.max_pixels,
            });
        }
        Ok(Upload {
            bytes,
            format,
            width,
            height,
        })
    }

    /// Decodes the image, refusing anything that lies about its size in the header.
    ///
    /// # Errors
    ///
    /// [`MediaError::Corrupt`] when the data does not decode.
    pub fn decode(&self, limits: &MediaLimits) -> Result<image::DynamicImage, MediaError> {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(&self.bytes));
        reader.set_format(match self.format {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Webp => image::ImageFormat::WebP,
        });
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_image_width = Some(limits.max_side);
        decoder_limits.max_image_height = Some(limits.max_side);
        decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
        reader.limits(decoder_limits);
        reader.decode().map_err(|_| MediaError::Corrupt)
    }

    /// The bytes, for a provider that takes the file as it is.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Image formats we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// The MIME type and file extension.
    pub fn mime(self) -> (&'static str, &'static str) {
        match self {
            ImageFormat::Jpeg => ("image/jpeg", "jpg"),
            ImageFormat::Png => ("image/png", "png"),
            ImageFormat::Webp => ("image/webp", "webp"),
        }
    }
}

/// Why an upload was refused, in words a person reads. No credits are held for a bad upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("The file is empty.")]
    Empty,
    #[error("The file is {} MB; the limit is {} MB.", bytes.div_ceil(1024 * 1024), limit / (1024 * 1024))]
    TooLarge { bytes: usize, limit: usize },
    #[error("That is not a JPEG, PNG or WebP image.")]
    NotAnImage,
    #[error("The image is damaged and cannot be read.")]
    Corrupt,
    #[error("The image is {width}×{height}, more than the {} megapixels allowed.", max_pixels / 1_000_000)]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

/// What kind of result a job produced, for the platform to send it the right way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    /// A short looping animation (GIF).
    Animation,
    Video,
    Audio,
}

/// A result, ready to deliver. `Debug` shows its size, not its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: MediaKind,
    pub mime: &'static str,
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// Pixel size for images and animations.
    pub dimensions: Option<(u32, u32)>,
}

impl Output {
    /// Names a provider's result by what its bytes are, not by what the provider says they are.
    ///
    /// # Errors
    ///
    /// When the bytes are none of the image, animation, video or audio types the chat platforms
    /// accept.
    pub fn sniff(bytes: Vec<u8>, stem: &str) -> Result<Output, String> {
        let (kind, mime, extension) = match infer::get(&bytes).map(|t| t.mime_type()) {
            Some("image/png") => (MediaKind::Image, "image/png", "png"),
            Some("image/jpeg") => (MediaKind::Image, "image/jpeg", "jpg"),
            Some("image/webp") => (MediaKind::Image, "image/webp", "webp"),
            Some("image/gif") => (MediaKind::Animation, "image/gif", "gif"),
            Some("video/mp4") => (MediaKind::Video, "video/mp4", "mp4"),
            Some("video/webm") => (MediaKind::Video, "video/webm", "webm"),
            Some("audio/x-wav") => (MediaKind::Audio, "audio/wav", "wav"),
            Some("audio/mpeg") => (MediaKind::Audio, "audio/mpeg", "mp3"),
            Some("audio/ogg") => (MediaKind::Audio, "audio/ogg", "ogg"),
            Some("audio/x-flac") => (MediaKind::Audio, "audio/flac", "flac"),
            Some(other) => return Err(format!("an unexpected file type ({other})")),
            None => return Err("a file of unknown type".into()),
        };
        let dimensions = match kind {
            MediaKind::Image | MediaKind::Animation => {
                imagesize::blob_size(&bytes).ok().and_then(|size| {
                    Some((
                        u32::try_from(size.width).ok()?,
                        u32::try_from(size.height).ok()?,
                    ))
                })
            }
            MediaKind::Video | MediaKind::Audio => None,
        };
        Ok(Output {
            kind,
            mime,
            file_name: format!("{stem}.{extension}"),
            bytes,
            dimensions,
        })
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("kind", &self.kind)
            .field("mime", &self.mime)
            .field("file_name", &self.file_name)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// Re-encodes an image as JPEG, lowering quality and then size until it fits in `limit` bytes;
/// `None` when it cannot be read or cannot be made small enough. CPU work: call it off the async
/// threads.
pub fn fit_image(bytes: &[u8], limit: u64) -> Option<Vec<u8>> {
    let mut image = image::load_from_memory(bytes).ok()?.into_rgb8();
    for _ in 0..6 {
        for quality in [90, 80, 65] {
            let mut out = Vec::new();
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            image.write_with_encoder(encoder).ok()?;
            if out.len() as u64 <= limit {
                return Some(out);
            }
        }
        let (width, height) = image.dimensions();
        if width < 64 || height < 64 {
            return None;
        }
        image = image::imageops::resize(
            &image,
            width * 3 / 4,
            height * 3 / 4,
            image::imageops::FilterType::Triangle,
        );
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn big_images_are_fitted_within_a_limit() {
        // Noise compresses badly: a 1200×1200 PNG of it is several megabytes.
        let mut seed = 7_u32;
        let image = image::RgbImage::from_fn(1200, 1200, |_, _| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let [a, b, c, _] = seed.to_le_bytes();
            image::Rgb([a, b, c])
        });
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes");
        let limit = 300_000;
        assert!(png.len() > limit);
        let small = fit_image(&png, limit as u64).expect("fits");
        assert!(small.len() <= limit);
        assert!(image::load_from_memory(&small).is_ok());
    }

    /// A real PNG of the given size, for tests.
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, 128])
        });
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(image)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .expect("encode");
        bytes
    }

    #[test]
    fn a_real_png_passes_with_its_size_read_from_the_header() {
        let upload = Upload::check(png(64, 32), &MediaLimits::default()).expect("valid");
        assert_eq!(
            (upload.format, upload.width, upload.height),
            (ImageFormat::Png, 64, 32)
        );
        assert_eq!(
            upload
                .decode(&MediaLimits::default())
                .expect("decodes")
                .width(),
            64
        );
    }

    #[test]
    fn empty_oversized_and_non_image_files_are_refused_before_decoding() {
        let limits = MediaLimits {
            max_upload_bytes: 1_000,
            ..MediaLimits::default()
        };
        assert_eq!(Upload::check(Vec::new(), &limits), Err(MediaError::Empty));
        assert!(matches!(
            Upload::check(vec![0u8; 1_001], &limits),
            Err(MediaError::TooLarge { .. })
        ));
        assert_eq!(
            Upload::check(b"%PDF-1.7 not an image".to_vec(), &limits),
            Err(MediaError::NotAnImage)
        );
        let text = MediaError::TooLarge {
            bytes: 25 * 1024 * 1024,
            limit: 20 * 1024 * 1024,
        }
        .to_string();
        assert_eq!(text, "The file is 25 MB; the limit is 20 MB.");
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // A PNG header declaring 100000 × 100000 pixels, followed by nothing.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(
            Upload::check(bomb, &MediaLimits::default()),
            Err(MediaError::TooManyPixels { width: 100_000, .. })
        ));
    }

    #[test]
    fn a_truncated_image_is_refused_as_damaged() {
        let mut broken = png(40, 40);
        broken.truncate(60);
        let upload = Upload::check(broken, &MediaLimits::default());
        match upload {
            Err(MediaError::Corrupt) => {}
            Ok(upload) => assert_eq!(
                upload.decode(&MediaLimits::default()),
                Err(MediaError::Corrupt)
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn debug_output_never_shows_the_bytes() {
        let upload = Upload::check(png(8, 8), &MediaLimits::default()).expect("valid");
        let shown = format!("{upload:?}");
        assert!(shown.contains("bytes>"), "{shown}");
        assert!(!shown.contains("137, 80, 78"), "{shown}");
    }
}
