//! `initial_data_form`: the values a manifest needs, each from the
//! environment, `$CREDENTIALS_DIRECTORY`, `[secrets.NAME]` or, not secret,
//! `[visible.NAME]`; a missing value or a placeholder is a problem naming
//! where to put the real one.

use serde_json::Value;

use super::*;

impl Checker<'_> {
    pub(super) fn form(&mut self, name: &str, v: Option<&Value>, config: &Config) -> Vec<FormValue> {
        let Some(v) = v else { return Vec::new() };
        let Value::Array(items) = v else {
            self.problem(
                "/initial_data_form",
                format!("expected a list of {{\"id\", \"name\"}} entries, found {}", kind(v)),
            );
            return Vec::new();
        };
        let mut out: Vec<FormValue> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("/initial_data_form/{i}");
            let Some(entry) = self.object(item, &at) else { continue };
            self.unknown_keys(entry, FORM_KEYS, &at);
            for key in ["name", "description"] {
                if let Some(v) = entry.get(key) {
                    self.string(v, &format!("{at}/{key}"));
                }
            }
            let secret = match entry.get("secret") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    self.problem(&format!("{at}/secret"), format!("expected true or false, found {other}"));
                    true
                }
            };
            let id = match entry.get("id") {
                Some(v) => match self.string(v, &format!("{at}/id")) {
                    Some(id) if !id.trim().is_empty() => id.to_string(),
                    Some(_) => {
                        self.problem(&format!("{at}/id"), "an id cannot be empty");
                        continue;
                    }
                    None => continue,
                },
                None => {
                    self.problem(&format!("{at}/id"), "required: the name templates use, e.g. \"KEY\"");
                    continue;
                }
            };
            if out.iter().any(|f| f.id == id) {
                self.problem(&format!("{at}/id"), format!("\"{id}\" is listed twice"));
                continue;
            }
            let generated = entry.get("name").and_then(Value::as_str) == Some("generate");
            // `[visible.NAME]` supplies a value that is no secret, whatever the manifest says.
            let visible = config.visible(name, &id).filter(|_| !generated).map(Secret::new);
            let secret = secret && visible.is_none();
            let value = if generated { None } else { visible.or_else(|| config.secret(name, &id)) };
            if let Some(v) = &value
                && crate::config::is_placeholder(name, &id, v.expose(), secret)
            {
                self.problem(
                    &format!("{at}/id"),
                    format!(
                        "the value of \"{id}\" is a placeholder, not a real value; put the real one under \
                         [secrets.{name}] in {} (or in {}), so that nothing is ever sent with it",
                        config.file.as_deref().map_or("rosterd.toml".into(), |p| p.display().to_string()),
                        secret_env_name(name, &id),
                    ),
                );
            }
            if !generated && value.is_none() {
                self.problem(
                    &format!("{at}/id"),
                    format!(
                        "no value for \"{id}\": add {id} = \"...\" under [secrets.{name}] in {}, set {}, \
                         or put it in $CREDENTIALS_DIRECTORY/{name}.{id}",
                        config.file.as_deref().map_or("rosterd.toml".into(), |p| p.display().to_string()),
                        secret_env_name(name, &id),
                    ),
                );
            }
            out.push(FormValue { id, secret, value });
        }
        out
    }
}
