//! Command-line options shared by the bench binaries: `--name VALUE` pairs after `--`.

/// The number after `name` on the command line, or `default`.
pub fn option(name: &str, default: u64) -> u64 {
    std::env::args()
        .skip_while(|arg| arg != name)
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The word after `name` on the command line, if it is there.
#[allow(dead_code)] // Not every bench binary takes a word.
pub fn word(name: &str) -> Option<String> {
    std::env::args().skip_while(|arg| arg != name).nth(1)
}
