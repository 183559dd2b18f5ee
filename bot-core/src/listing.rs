//! Lists in configuration: a TOML list in the file, or one comma-separated string in the
//! environment (`ADMIN_IDS=telegram:1,discord:2`). Shared by every crate's config section.

use serde::Deserialize;

/// Reads a list of strings from a list or from comma-separated text, dropping empty items.
///
/// # Errors
///
/// When the value is neither a list of strings nor a string.
pub fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(list) => list,
        ListOrText::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}
