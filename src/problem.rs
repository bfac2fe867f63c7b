//! The bottom of the house: `Problem` (a file, a JSON pointer into it, and
//! what is wrong and what to do) and the small helpers every message uses to
//! name a place or a value. Imports nothing of the crate.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One thing wrong with the config or a manifest. `validate` prints them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// RFC 6901 pointer into the file, e.g. `/execute/0/headers/Authorization`;
    /// empty when the problem is the file as a whole.
    pub pointer: String,
    /// What is wrong and what to do about it.
    pub reason: String,
}

impl Problem {
    pub fn new(file: &Path, pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), pointer: pointer.into(), reason: reason.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.pointer, self.reason)
        }
    }
}

/// Escapes one reference token for a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What kind of JSON value this is, for messages: "a list", "an object", ...
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `text` safe for a terminal: control characters other than newline and tab
/// (ESC, BEL, backspace, carriage return, DEL, the C1 range) shown escaped as
/// `\x1b`, so text from a source or a file name cannot drive the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let n = u32::from(c);
            if n < 0x100 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("plain\ttext\nline"), "plain\ttext\nline");
        assert_eq!(printable("a\u{1b}[2Jb\u{7}c\u{8}\r\u{9b}"), "a\\x1b[2Jb\\x07c\\x08\\x0d\\x9b");
        assert_eq!(printable("Zoë"), "Zoë");
    }
}
