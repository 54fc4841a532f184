//! Bounded text for messages. Whoever writes an RBAC object chooses its names and lists (and
//! anyone who can reach the webhook chooses the whole review), so every message, warning and log
//! line is built from shortened parts: a response stays small whatever the input.

use std::borrow::Cow;
use std::fmt::Write as _;

/// List items shown before "... and N more".
pub const SHOWN_ITEMS: usize = 8;
/// Characters of one name or list item shown (Kubernetes names are at most 253).
pub const SHOWN_CHARS: usize = 253;

/// `s` cut to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} more bytes)", &s[..end], s.len() - end))
}

/// `["a","b", ... and 9,992 more]`: a JSON-style list, as kubectl users read rules.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().take(SHOWN_ITEMS).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let shown = clip(item.as_ref(), SHOWN_CHARS);
        out.push_str(&serde_json::to_string(shown.as_ref()).unwrap_or_default());
    }
    if items.len() > SHOWN_ITEMS {
        let _ = write!(out, ", ... and {} more", items.len() - SHOWN_ITEMS);
    }
    out.push(']');
    out
}

/// `"a", "b", "c" and 5 more`: names for prose.
pub fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for name in names {
        if shown.len() < SHOWN_ITEMS {
            shown.push(format!("\"{}\"", clip(name, SHOWN_CHARS)));
        } else {
            more += 1;
        }
    }
    let mut out = shown.join(", ");
    if more > 0 {
        let _ = write!(out, " and {more} more");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_inputs_are_shortened_and_say_so() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é... (4 more bytes)");
        let many: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
        let list = json_list(&many);
        assert!(list.starts_with(r#"["s0","s1","#), "{list}");
        assert!(list.ends_with(", ... and 9992 more]"), "{list}");
        assert!(list.len() < 100);
        let huge = "x".repeat(1 << 20);
        assert!(json_list(std::slice::from_ref(&huge)).len() < 300);
        let q = quoted_list(many.iter().map(String::as_str));
        assert!(q.ends_with("\"s7\" and 9992 more"), "{q}");
        assert_eq!(quoted_list(["a", "b"]), r#""a", "b""#);
    }
}
