//! HTML that rosterd writes itself (the status page, the OAuth callback's
//! answer): text made safe to place in it, and the one-line page a browser
//! sees at the end of an authorization.

/// Text safe inside HTML elements and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push_str(&format!("&#{};", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A page that says `text` and nothing else (what a browser sees after an OAuth callback).
pub fn message_page(text: &str) -> String {
    format!("<!doctype html><title>rosterd</title><p>{}</p>\n", escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{7}\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;&#7;\n"
        );
        assert_eq!(message_page("<b>"), "<!doctype html><title>rosterd</title><p>&lt;b&gt;</p>\n");
    }
}
