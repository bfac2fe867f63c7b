//! Secrets and their redaction. A `Secret` never prints its value; a
//! `Redactor` replaces every known secret value (and every form a request
//! may carry it in: base64, percent-encoded as the URL parser writes each
//! part of a URL, JSON-escaped) with `***ID***` in any text that leaves a
//! run: errors, log lines, trace rows, plans and reports.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A value that must not be shown. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for building a request or comparing a token.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A JSON value shown by its shape alone: an object's keys, every other
/// value as `***` (a token response, whose values are secrets).
pub struct Masked<'a>(pub &'a serde_json::Value);

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            serde_json::Value::Object(m) => {
                f.debug_map().entries(m.keys().map(|k| (k, Secret(String::new())))).finish()
            }
            _ => f.write_str("***"),
        }
    }
}

/// Replaces secret values in text. Cheap to clone; clones share the list, so a
/// form learned while building a request (a Basic credential) is redacted everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest form first, so a value containing another is replaced whole.
    forms: Arc<RwLock<Vec<Form>>>,
}

/// One text to hide and what to show instead.
struct Form {
    text: String,
    label: String,
    /// Only where it stands as a whole token: a short secret (`REPORT_ID =
    /// "7"`) must not eat the digits of `127.0.0.1` or a count.
    whole: bool,
}

/// Secrets shorter than this (in characters) are masked only as whole tokens.
pub const SHORT_SECRET: usize = 6;

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(..)")
    }
}

impl Redactor {
    /// Registers a secret by its id: the raw value and every form a request
    /// or an error may carry it in (see `wire_forms`).
    pub fn add(&self, id: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let label = format!("***{id}***");
        let whole = value.chars().count() < SHORT_SECRET;
        for form in wire_forms(value) {
            self.insert(Form { text: form, label: label.clone(), whole });
        }
    }

    /// Registers one exact text (e.g. a base64 Basic credential) under a label.
    pub fn add_form(&self, form: String, label: &str) {
        self.insert(Form { text: form, label: label.to_string(), whole: false });
    }

    fn insert(&self, form: Form) {
        let mut list = self.forms.write().unwrap_or_else(|e| e.into_inner());
        if form.text.is_empty() || list.iter().any(|f| f.text == form.text) {
            return;
        }
        list.push(form);
        list.sort_by_key(|f| std::cmp::Reverse(f.text.len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let list = self.forms.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for form in list.iter() {
            if !out.contains(form.text.as_str()) {
                continue;
            }
            out = if form.whole {
                replace_whole(&out, &form.text, &form.label)
            } else {
                out.replace(&form.text, &form.label)
            };
        }
        out
    }
}

/// `text` with `form` replaced where neither side of it touches a letter or digit.
fn replace_whole(text: &str, form: &str, label: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(form) {
        if at < last {
            continue;
        }
        let before = text[..at].chars().next_back();
        let after = text[at + form.len()..].chars().next();
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(label);
        last = at + form.len();
    }
    out.push_str(&text[last..]);
    out
}

/// `value` as it may appear in text that left a run: as is, base64 (Basic),
/// percent-encoded (every non-alphanumeric byte, and with `+` for spaces),
/// as the URL parser itself writes it in a path, a query, a query pair and a
/// password (the bytes the HTTP client puts on the wire, which a client's
/// error may quote), and JSON-escaped (inside a body).
pub fn wire_forms(value: &str) -> Vec<String> {
    let encoded = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut forms = vec![value.to_string(), BASE64.encode(value), encoded.replace("%20", "+"), encoded];
    if let Ok(mut url) = reqwest::Url::parse("http://h/") {
        url.set_path(&format!("/{value}"));
        forms.push(url.path()[1..].to_string());
        url.set_query(Some(value));
        forms.extend(url.query().map(str::to_string));
        url.set_query(None);
        url.query_pairs_mut().append_pair("k", value);
        forms.extend(url.query().and_then(|q| q.strip_prefix("k=")).map(str::to_string));
        if url.set_password(Some(value)).is_ok() {
            forms.extend(url.password().map(str::to_string));
        }
    }
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    forms.sort();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_json_shows_keys_never_values() {
        let token = serde_json::json!({"access_token": "s3cr3t-value", "expires_in": 3600});
        let shown = format!("{:?}", Masked(&token));
        assert!(shown.contains("access_token") && shown.contains("expires_in"), "{shown}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("3600"), "{shown}");
    }

    #[test]
    fn every_form_of_a_secret_is_replaced() {
        let r = Redactor::default();
        r.add("KEY", "s3cr et&");
        assert_eq!(r.redact("key=s3cr et& ok"), "key=***KEY*** ok");
        assert_eq!(r.redact(&format!("b64 {}", BASE64.encode("s3cr et&"))), "b64 ***KEY***");
        assert_eq!(r.redact("q=s3cr%20et%26"), "q=***KEY***");
        assert_eq!(r.redact("q=s3cr+et%26"), "q=***KEY***");
    }

    #[test]
    fn the_forms_a_url_parser_writes_are_replaced() {
        let r = Redactor::default();
        r.add("PASS", "Pcred Secret&Gamma3");
        r.add("NAME", "Zoë \"Q\"");
        let url = reqwest::Url::parse("http://h/a/Pcred Secret&Gamma3?p=Pcred Secret&Gamma3&n=Zoë \"Q\"").unwrap();
        let shown = r.redact(url.as_str());
        assert!(!shown.contains("Pcred") && !shown.contains("Zo"), "{shown}");
        let body = serde_json::json!({"n": "Zoë \"Q\""}).to_string();
        assert_eq!(r.redact(&body), r#"{"n":"***NAME***"}"#);
    }

    #[test]
    fn a_short_secret_is_masked_only_as_a_whole_token() {
        let r = Redactor::default();
        r.add("REPORT_ID", "7");
        assert_eq!(
            r.redact("GET http://127.0.0.1:7/reports/7?x=7&y=17"),
            "GET http://127.0.0.1:***REPORT_ID***/reports/***REPORT_ID***?x=***REPORT_ID***&y=17"
        );
        assert_eq!(r.redact("updated 77, 7 skipped"), "updated 77, ***REPORT_ID*** skipped");
    }

    #[test]
    fn longer_values_win_over_their_parts() {
        let r = Redactor::default();
        r.add("A", "abc");
        r.add("B", "abcdef");
        assert_eq!(r.redact("abcdef abc"), "***B*** ***A***");
    }

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::cases;

        fn secret() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    proptest::char::range('a', 'z'),
                    proptest::char::range('A', 'Z'),
                    proptest::char::range('0', '9'),
                    proptest::sample::select(vec![
                        ' ', '&', '%', '+', '=', '?', '#', '/', '"', '\\', 'é', '€', '😀', ':'
                    ]),
                ],
                6..24,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        fn decoded(text: &str) -> String {
            percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(256)))]

            /// A secret rendered into a URL (path and query), a header (Basic) and a
            /// JSON body never survives redaction, however the text is decoded.
            #[test]
            fn a_secret_survives_redaction_in_no_encoding(value in secret()) {
                let r = Redactor::default();
                r.add("S", &value);
                let mut url = reqwest::Url::parse("http://h.example/p/").unwrap();
                url.set_path(&format!("/p/{value}"));
                url.query_pairs_mut().append_pair("q", &value);
                url.set_query(Some(&format!("{}&raw={value}", url.query().unwrap_or_default())));
                let shown = r.redact(url.as_str());
                prop_assert!(!shown.contains(&value), "{}", shown);
                prop_assert!(!decoded(&shown).contains(&value), "{}", shown);
                prop_assert!(!decoded(&shown.replace('+', " ")).contains(&value), "{}", shown);

                let body = serde_json::json!({"k": value, "n": [value.clone()]}).to_string();
                let shown = r.redact(&body);
                let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
                prop_assert!(!back.to_string().contains(&value) && !shown.contains(&value), "{}", shown);

                let header = format!("Basic {}", BASE64.encode(&value));
                let shown = r.redact(&header);
                prop_assert_eq!(shown, "Basic ***S***");
            }
        }
    }
}
