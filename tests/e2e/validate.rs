//! `rosterd validate`: exit codes, and every problem with file, pointer and reason.

use serde_json::json;

use crate::TestDir;

fn good_manifest() -> serde_json::Value {
    json!({
        "execute": [{"url": "https://hr.example/{{COMPANY_ID}}/people"}],
        "headers": {"Authorization": "Basic {{KEY}}:x"},
        "action": "create",
        "data_from": "employees",
        "data_structure": {"email": "workEmail", "first_name": "firstName", "last_name": "lastName"},
        "initial_data_form": [{"id": "KEY", "name": "key"}, {"id": "COMPANY_ID", "name": "company", "secret": false}]
    })
}

const SECRETS: &str = "[secrets.hr]\nKEY = \"k\"\nCOMPANY_ID = \"acme\"\n";

#[test]
fn the_shipped_examples_are_valid_with_the_example_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = TestDir::new();
    // As shipped, the example config's secrets are placeholders: refused, each by name.
    let out = dir.rosterd(&["--config", &format!("{root}/config.example.toml"), "validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    for manifest in ["bamboohr-create", "bamboohr-sync", "bamboohr-update", "learnifier-push", "irongate-push"] {
        assert!(
            out.stdout().contains(&format!("integrations/{manifest}.json: /initial_data_form/")),
            "{manifest}: {}",
            out.all()
        );
    }
    assert!(out.stdout().contains("the value of \"KEY\" is a placeholder"), "{}", out.all());
    assert!(!out.all().contains("replace-with"), "the placeholder is not echoed: {}", out.all());
    // With real values (here from the environment) they validate.
    let mut cmd = dir.command(&["--config", &format!("{root}/config.example.toml"), "validate"]);
    let text = std::fs::read_to_string(format!("{root}/config.example.toml")).unwrap();
    let mut section = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("[secrets.").and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
        } else if line.starts_with('[') {
            section = None;
        } else if let (Some(name), Some((id, _))) = (&section, line.split_once(" = ")) {
            cmd.env(
                format!("ROSTERD_SECRET_{}_{}", name.to_uppercase().replace('-', "_"), id.trim()),
                "real-value-7f3a9c21",
            );
        }
    }
    let out = crate::Out(cmd.output().unwrap());
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("bamboohr-create create, on demand"), "{}", out.all());
    assert!(out.stdout().contains("bamboohr-update update, schedule \"0 * * * *\""), "{}", out.all());
    assert!(out.stdout().contains("next: "), "{}", out.all());
}

#[test]
fn works_with_no_config_from_a_folder_holding_integrations() {
    let dir = TestDir::new();
    let mut m = good_manifest();
    m["initial_data_form"] = json!([]);
    m["execute"][0]["url"] = json!("https://hr.example/people");
    m["headers"] = json!({});
    dir.manifest("plain", &m);
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("plain create"), "{}", out.all());
}

#[test]
fn every_problem_is_printed_with_file_pointer_and_reason() {
    let dir = TestDir::new();
    dir.config(SECRETS);
    let mut m = good_manifest();
    m["shedule"] = json!("0 * * * *");
    m["execute"][0]["metod"] = json!("GET");
    m["action"] = json!("remove");
    dir.manifest("hr", &m);
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    let text = out.stdout();
    let f = "integrations/hr.json";
    assert!(text.contains(&format!("{f}: /shedule: unknown key \"shedule\"; did you mean \"schedule\"?")), "{text}");
    assert!(text.contains(&format!("{f}: /execute/0/metod: unknown key")), "{text}");
    assert!(text.contains(&format!("{f}: /action: unknown action \"remove\"")), "{text}");
    assert!(out.stderr().contains("3 problem(s)"), "{}", out.all());
}

#[test]
fn missing_secrets_are_reported_with_where_to_put_them() {
    let dir = TestDir::new();
    dir.manifest("hr", &good_manifest());
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stdout().contains("/initial_data_form/0/id: no value for \"KEY\""), "{}", out.all());
    assert!(out.stdout().contains("ROSTERD_SECRET_HR_KEY"), "{}", out.all());
}

#[test]
fn secrets_from_the_environment_and_credentials_count() {
    let mut dir = TestDir::new();
    dir.manifest("hr", &good_manifest());
    dir.write("creds/hr.COMPANY_ID", "acme\n");
    dir.env.push(("ROSTERD_SECRET_HR_KEY".into(), "k".into()));
    dir.env.push(("CREDENTIALS_DIRECTORY".into(), dir.path().join("creds").display().to_string()));
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 0, "{}", out.all());
}

#[test]
fn malformed_json_names_line_and_column() {
    let dir = TestDir::new();
    dir.write("integrations/broken.json", "{\n  \"execute\": [\n    {\"url\": \"x\",}\n  ]\n}\n");
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(
        out.stdout().contains("integrations/broken.json: invalid JSON at line 3, column 17: trailing comma"),
        "{}",
        out.all()
    );
}

#[test]
fn named_files_are_checked_alone() {
    let dir = TestDir::new();
    dir.config(SECRETS);
    dir.write("integrations/bad.json", "[]");
    let good = dir.write("elsewhere/hr.json", &good_manifest().to_string());
    let out = dir.rosterd(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let out = dir.rosterd(&["validate", "integrations/bad.json"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stdout().contains("a manifest is a JSON object"), "{}", out.all());
    // A name, as `run` takes it.
    let out = dir.rosterd(&["validate", "bad"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stdout().contains("a manifest is a JSON object"), "{}", out.all());
    let out = dir.rosterd(&["validate", "nosuch"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("no integration \"nosuch\""), "{}", out.all());
}

#[test]
fn an_unknown_config_key_names_key_and_file() {
    let dir = TestDir::new();
    dir.config("databse = \"x.db\"\n[http]\nretriez = 2\n");
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("rosterd.toml: line 1, column 1: unknown field `databse`"), "{}", out.all());
    // Every unknown key is named, not only the first.
    assert!(out.stderr().contains("line 3, column 1: unknown field `retriez` in [http]"), "{}", out.all());
    assert!(out.stderr().contains("2 problem(s) found"), "{}", out.all());
}

#[test]
fn rosterd_config_env_is_used() {
    let mut dir = TestDir::new();
    let cfg = dir.write("conf/custom.toml", "integrations_dir = \"../mine\"\n");
    dir.write("mine/x.json", "{}");
    dir.env.push(("ROSTERD_CONFIG".into(), cfg.display().to_string()));
    let mut cmd = dir.command(&["validate"]);
    cmd.env("ROSTERD_CONFIG", &cfg);
    let out = crate::Out(cmd.output().unwrap());
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stdout().contains("mine/x.json"), "{}", out.all());
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let dir = TestDir::new();
    let out = dir.rosterd(&["--config", "nope.toml", "validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("nope.toml: cannot read the config file: no such file"), "{}", out.all());
}

#[test]
fn webhook_manifests_are_refused_by_name() {
    let dir = TestDir::new();
    // An empty `form` is the builder's "not set" (a sync-users manifest); a filled one is a webhook's.
    dir.manifest("hook", &json!({"form": [{"id": "x", "type": "input"}], "execute": [{"url": "https://x.example"}]}));
    let out = dir.rosterd(&["validate"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stdout().contains("/form: not a sync-users manifest"), "{}", out.all());
}
