use super::*;

fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    parse_str(text, Path::new("/etc/rosterd/c.toml"))
}

#[test]
fn every_unknown_key_is_named_with_its_line() {
    let err = parse("databse = \"x.db\"\n[http]\nretries = 1\n  retriez = 2\n[api]\ntokenz = []\n").unwrap_err();
    let reasons: Vec<&str> = err.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("line 1, column 1: unknown field `databse`"), "{reasons:?}");
    assert!(reasons[1].starts_with("line 4, column 3: unknown field `retriez` in [http]"), "{reasons:?}");
    assert!(reasons[2].starts_with("line 6, column 1: unknown field `tokenz` in [api]"), "{reasons:?}");
}

#[test]
fn a_short_api_token_is_refused_without_being_shown() {
    let err = parse("[api]\ntokens = [\"0123456789abcdef\", \"abc123\"]\n").unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].pointer, "/api/tokens/1");
    assert!(err[0].reason.contains("6 character(s)") && !err[0].reason.contains("abc123"), "{}", err[0].reason);
}

#[test]
fn placeholders_are_told_from_real_values() {
    for v in ["changeme", "<your key>", "your-api-key", "xxxx", "replace-with-your-bamboohr-api-key", "TODO"] {
        assert!(is_placeholder("any", "KEY", v, false), "{v}");
    }
    // The example config's own values, for a secret of the same manifest and id only.
    assert!(is_placeholder("bamboohr-create", "REPORT_ID", "42", true));
    assert!(!is_placeholder("bamboohr-create", "REPORT_ID", "42", false));
    assert!(!is_placeholder("hr", "REPORT_ID", "42", true));
    for v in ["k-8f2c1a9b", "acme-prod", "x", "xylophone"] {
        assert!(!is_placeholder("any", "KEY", v, true), "{v}");
    }
}

#[test]
fn ignored_emails_are_emails_in_their_one_form() {
    let c = parse("ignored_emails = [\" IT@Acme.example \"]\n[push]\nmax_remove = 3\n").unwrap();
    assert!(c.is_ignored("it@acme.example"));
    assert_eq!(c.push.max_remove, Limit::Count(3));
    let err = parse("ignored_emails = [\"ok@acme.example\", \"not an email\"]\n").unwrap_err();
    let pointers: Vec<&str> = err.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(pointers, ["/ignored_emails/1"]);
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = parse("database = \"x.db\"\ndatabse = \"y\"\n").unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].reason.contains("databse"), "{}", err[0].reason);
    assert!(err[0].reason.contains("line 2"), "{}", err[0].reason);
}

#[test]
fn relative_paths_follow_the_config_file() {
    let c = parse("database = \"db/r.db\"\n").unwrap();
    assert_eq!(c.database, PathBuf::from("/etc/rosterd/db/r.db"));
    assert_eq!(c.integrations_dir, PathBuf::from("/etc/rosterd/integrations"));
}

#[test]
fn every_documented_key_parses() {
    let c = parse(include_str!("../../config.example.toml")).unwrap();
    assert_eq!(c.timezone, Tz::Europe__Stockholm);
    assert_eq!(c.max_deactivate, Limit::Percent(10.0));
    assert_eq!(c.http.retries, 3);
}

#[test]
fn bad_timezone_and_limit_are_both_reported() {
    let err = parse("timezone = \"Mars/Base\"\n[sync]\nmax_deactivate = \"ten\"\n").unwrap_err();
    let pointers: Vec<_> = err.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(pointers, ["/timezone", "/sync/max_deactivate"]);
}

#[test]
fn percent_limit_rounds_up() {
    assert_eq!(Limit::Percent(10.0).allowed(5), 1);
    assert_eq!(Limit::Percent(10.0).allowed(10), 1);
    assert_eq!(Limit::Percent(10.0).allowed(11), 2);
    assert_eq!(Limit::Percent(10.0).allowed(0), 0);
    assert_eq!(Limit::Count(3).allowed(100), 3);
}

#[test]
fn env_names_are_cleaned() {
    assert_eq!(secret_env_name("bamboo-hr", "api.key"), "ROSTERD_SECRET_BAMBOO_HR_API_KEY");
}
