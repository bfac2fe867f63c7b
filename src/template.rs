//! Strict templates: `{{KEY}}`, `{{ responses.0.id }}`, `{{ NEXT_PAGE_TOKEN }}`.
//! A name that is not defined is an error, never an empty string, and nothing
//! is HTML-escaped. Templates are rendered one string at a time (a URL, a
//! header, a string leaf of a body), so a value holding `"` cannot break JSON.
//! No I/O here.

use handlebars::Handlebars;
use serde_json::Value;

/// Why a template could not be rendered.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template syntax: {0}")]
    Syntax(String),
    #[error("\"{0}\" is not defined")]
    Undefined(String),
}

/// Renders templates against one JSON context.
pub struct Renderer {
    engine: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        let mut engine = Handlebars::new();
        engine.set_strict_mode(true);
        engine.register_escape_fn(handlebars::no_escape);
        Self { engine }
    }
}

impl Renderer {
    pub fn render(&self, template: &str, context: &Value) -> Result<String, TemplateError> {
        if !template.contains("{{") {
            return Ok(template.to_string());
        }
        self.engine.render_template(template, context).map_err(|e| {
            let names = names(template).unwrap_or_default();
            match names.into_iter().find(|n| lookup(context, n).is_none()) {
                Some(name) => TemplateError::Undefined(name),
                None => TemplateError::Syntax(e.reason().to_string()),
            }
        })
    }

    /// Renders every string leaf of a JSON body; keys and other values are kept.
    pub fn render_value(&self, value: &Value, context: &Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => Value::String(self.render(s, context)?),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.render_value(v, context)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_value(v, context)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

impl Renderer {
    /// `render_value` for a push body: a string leaf that is exactly one
    /// `{{ name }}` takes the JSON value it names (null, a boolean, a
    /// number) instead of its text.
    pub fn render_typed(&self, value: &Value, context: &Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => match sole_name(s) {
                Some(name) => {
                    lookup(context, name).cloned().ok_or_else(|| TemplateError::Undefined(name.to_string()))?
                }
                None => Value::String(self.render(s, context)?),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.render_typed(v, context)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_typed(v, context)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The name in a template that is exactly one `{{ name }}` and nothing else.
fn sole_name(template: &str) -> Option<&str> {
    let inner = template.strip_prefix("{{")?.strip_suffix("}}")?;
    let name = inner.trim();
    (!name.is_empty() && !name.contains(['{', '}', '|']) && !name.contains(char::is_whitespace)).then_some(name)
}

fn lookup<'a>(context: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.').try_fold(context, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The names a template refers to, in order (`{{ a.b }}` → `a.b`). Only plain
/// names are allowed: helpers, blocks and partials are refused, since a
/// manifest only ever fills in values.
pub fn names(template: &str) -> Result<Vec<String>, String> {
    if let Some(start) = template.find("{%") {
        let tag = template[start + 2..].split_whitespace().next().unwrap_or("").trim_end_matches("%}");
        return Err(format!(
            "\"{{% {tag} %}}\" is a Django template tag (ChiefOnboarding's templates); rosterd's templates \
             have no filters or tags and fill in values only, such as {{{{KEY}}}}: compute the value into a \
             form value instead"
        ));
    }
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a \"{{\" is never closed with \"}}\"".into());
        };
        let inner = after[..end].trim_start_matches('{').trim_start_matches('~').trim_end_matches('~').trim();
        if inner.is_empty() {
            return Err("\"{{}}\" names nothing".into());
        }
        if let Some((name, filter)) = inner.split_once('|') {
            let (name, filter) = (name.trim(), filter.trim());
            let filter = filter.split(':').next().unwrap_or(filter);
            return Err(format!(
                "\"{{{{ {name}|{filter} }}}}\" uses the Django filter \"{filter}\" (ChiefOnboarding's templates); \
                 rosterd's templates have no filters or tags: write {{{{ {name} }}}} and give it the value as it must be sent"
            ));
        }
        if inner.contains(char::is_whitespace) || inner.starts_with(['#', '/', '>', '!', '^', '@', '*']) {
            return Err(format!(
                "\"{{{{{inner}}}}}\" is not a plain name; templates here only fill in values such as {{{{KEY}}}}"
            ));
        }
        out.push(inner.to_string());
        rest = &after[end + 2..];
        rest = rest.strip_prefix('}').unwrap_or(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_and_tags_are_named() {
        let e = super::names("https://x/{{ COMPANY_ID|lower }}/people").unwrap_err();
        assert!(e.contains("filter \"lower\"") && !e.contains("not defined"), "{e}");
        let e = super::names("{% if KEY %}a{% endif %}").unwrap_err();
        assert!(e.contains("\"{% if %}\" is a Django template tag"), "{e}");
        assert!(super::names("{{ a|default:\"x\" }}").unwrap_err().contains("filter \"default\""));
    }

    use super::*;
    use serde_json::json;

    fn check(template: &str, context: Value, expected: Result<&str, TemplateError>) {
        let got = Renderer::default().render(template, &context);
        assert_eq!(got, expected.map(String::from), "{template}");
    }

    #[test]
    fn renders_both_spacings_without_escaping() {
        check("a/{{KEY}}/{{ KEY }}", json!({"KEY": "x&'\"="}), Ok("a/x&'\"=/x&'\"="));
    }

    #[test]
    fn earlier_responses_are_reachable() {
        check("{{ responses.0.form.id }}", json!({"responses": [{"form": {"id": 7}}]}), Ok("7"));
    }

    #[test]
    fn undefined_names_are_errors() {
        check("x{{ MISSING }}", json!({"KEY": "v"}), Err(TemplateError::Undefined("MISSING".into())));
        check(
            "{{ responses.1.id }}",
            json!({"responses": [{"id": 1}]}),
            Err(TemplateError::Undefined("responses.1.id".into())),
        );
    }

    #[test]
    fn body_leaves_are_rendered_one_by_one() {
        let body = json!({"q": "{{KEY}}", "n": 1, "l": ["{{KEY}}"]});
        let out = Renderer::default().render_value(&body, &json!({"KEY": "a\"b"})).unwrap();
        assert_eq!(out, json!({"q": "a\"b", "n": 1, "l": ["a\"b"]}));
    }

    #[test]
    fn a_sole_name_keeps_its_json_type_and_null_renders_empty_in_text() {
        let ctx = json!({"user": {"active": false, "phone": null, "first_name": "Ann"}, "KEY": "k"});
        let body = json!({"a": "{{ user.active }}", "p": "{{user.phone}}", "t": "{{ user.first_name }} ({{ user.phone }})", "k": "{{KEY}}"});
        let out = Renderer::default().render_typed(&body, &ctx).unwrap();
        assert_eq!(out, json!({"a": false, "p": null, "t": "Ann ()", "k": "k"}));
        assert_eq!(
            Renderer::default().render_typed(&json!("{{ user.nope }}"), &ctx),
            Err(TemplateError::Undefined("user.nope".into()))
        );
    }

    #[test]
    fn names_lists_plain_names_and_refuses_helpers() {
        assert_eq!(names("{{A}}-{{ b.0.c }}").unwrap(), ["A", "b.0.c"]);
        assert!(names("{{#if A}}x{{/if}}").is_err());
        assert!(names("{{ A").is_err());
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::cases;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(512)))]

            /// Any text renders, or says why not; never a panic.
            #[test]
            fn templates_never_panic(text in "[{}#/ ~a-zA-Z0-9_.|%\"-]{0,40}") {
                let ctx = serde_json::json!({"KEY": "v", "responses": [{"id": 1}], "a": {"b": "c"}});
                let _ = Renderer::default().render(&text, &ctx);
                let _ = names(&text);
            }
        }
    }
}
