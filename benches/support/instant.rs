//! A provider that answers at once with a tiny PNG, so a benchmark measures our own path.

use bot_core::{
    media::{MediaKind, Output},
    pricing::Operation,
    providers::{Provider, ProviderFuture, Run},
};

/// A provider that answers at once.
#[derive(Debug)]
pub struct InstantProvider;

impl Provider for InstantProvider {
    fn name(&self) -> &'static str {
        "instant"
    }
    fn supports(&self, _: Operation) -> bool {
        true
    }
    fn generate<'a>(&'a self, _: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async {
            Ok(Output {
                kind: MediaKind::Image,
                mime: "image/png",
                file_name: "x.png".into(),
                bytes: fakes::png(8, 8),
                dimensions: Some((8, 8)),
            })
        })
    }
}
