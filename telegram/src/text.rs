//! Text for Telegram's one parse mode, HTML: everything a person typed is escaped, so a prompt
//! containing `<b>`, `&` or `_*[` comes back exactly as typed; long replies are split at
//! Telegram's limits without cutting an escape in half.

/// Telegram's longest message text, in UTF-16 code units.
pub const MAX_TEXT: usize = 4_096;
/// Telegram's longest media caption, in UTF-16 code units.
pub const MAX_CAPTION: usize = 1_024;

/// `text` as HTML that shows exactly `text`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            other => out.push(other),
        }
    }
    out
}

fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Splits plain `text` into pieces of at most `limit` visible UTF-16 units, preferring line
/// breaks, then spaces; each piece is returned escaped.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while units(rest) > limit {
        // The longest prefix within the limit, on a char boundary.
        let mut end = 0;
        let mut count = 0;
        for (i, c) in rest.char_indices() {
            let width = c.len_utf16();
            if count + width > limit {
                break;
            }
            count += width;
            end = i + c.len_utf8();
        }
        let head = &rest[..end];
        let cut = head
            .rfind('\n')
            .or_else(|| head.rfind(' '))
            .filter(|&at| at > end / 2)
            .map_or(end, |at| at + 1);
        pieces.push(escape(rest[..cut].trim_end()));
        rest = &rest[cut..];
    }
    if !rest.trim().is_empty() || pieces.is_empty() {
        pieces.push(escape(rest));
    }
    pieces
}

/// Plain `text` cut to `limit` visible UTF-16 units, with an ellipsis when cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if units(text) <= limit {
        return text.to_string();
    }
    let mut count = 0;
    let mut out = String::new();
    for c in text.chars() {
        if count + c.len_utf16() + 1 > limit {
            break;
        }
        count += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// Plain `text` cut to `limit` visible units and escaped: for captions.
pub fn caption(text: &str, limit: usize) -> String {
    escape(&truncate(text, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_prompts_is_escaped() {
        assert_eq!(
            escape("<b>fox</b> & _*["),
            "&lt;b&gt;fox&lt;/b&gt; &amp; _*["
        );
    }

    #[test]
    fn long_text_splits_within_the_limit_on_line_breaks() {
        let text = format!("{}\n{}", "a".repeat(3_000), "b & c ".repeat(400));
        let pieces = split(&text, MAX_TEXT);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], "a".repeat(3_000));
        for piece in &pieces {
            let visible = piece.replace("&amp;", "&");
            assert!(units(&visible) <= MAX_TEXT);
        }
        // Nothing is lost.
        let joined: String = pieces
            .iter()
            .map(|p| p.replace("&amp;", "&"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            joined.replace(['\n', ' '], ""),
            text.replace(['\n', ' '], "")
        );
    }

    #[test]
    fn emoji_count_as_two_units_and_are_never_cut_in_half() {
        let text = "🦊".repeat(3_000);
        let pieces = split(&text, MAX_TEXT);
        assert_eq!(pieces.len(), 2);
        assert_eq!(units(&pieces[0]), 4_096);
        let short = caption(&"🦊".repeat(600), MAX_CAPTION);
        assert!(units(&short) <= MAX_CAPTION);
        assert!(short.ends_with('…'));
    }
}
