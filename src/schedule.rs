//! Cron schedules with the Unix meaning: 5 fields (`0 * * * *`), 6 fields with
//! seconds first, or `@hourly`-style nicknames; day-of-week 0 and 7 are Sunday,
//! and a restricted day-of-month and day-of-week fire when either matches.
//! Fire times are computed in the configured time zone, daylight saving included.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// The longest schedule accepted; real ones are a few dozen characters.
const MAX_LEN: usize = 200;

#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    cron: Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "\"{expr}\" has {fields} field(s); write 5 fields (\"0 * * * *\" = every hour), \
                 6 with seconds first (\"0 0 * * * *\"), or a nickname such as \"@hourly\""
            ));
        }
        // Bounds before the cron parser sees it: an empty list item (",,,,")
        // or a huge field once cost seconds of CPU to reject.
        if trimmed.len() > MAX_LEN {
            return Err(format!("the schedule is {} characters long; at most {MAX_LEN}", trimmed.len()));
        }
        if let Some((i, _)) = trimmed.split_whitespace().enumerate().find(|(_, f)| f.split(',').any(str::is_empty)) {
            return Err(format!(
                "\"{expr}\": field {} has an empty item (two commas, or a comma at an end); \
                 write a list as \"1,15,30\"",
                i + 1
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).dom_and_dow(false).build();
        let cron = parser.parse(trimmed).map_err(|e| {
            format!("\"{expr}\" is not a valid cron expression ({e}); for example \"0 * * * *\" runs every hour")
        })?;
        // Probe once so a pattern that never fires (`0 0 30 2 *`) is caught when validating.
        if cron.find_next_occurrence(&Utc::now(), false).is_err() {
            return Err(format!("\"{expr}\" never fires"));
        }
        Ok(Self { expr: trimmed.to_string(), cron })
    }

    /// The first fire time strictly after `after`, in `tz`.
    pub fn next_after(&self, after: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Tz>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// For a 6-field schedule, how ChiefOnboarding (croniter: seconds last)
    /// reads the same text, as a schedule of rosterd's (seconds first).
    pub fn chief_onboarding_reading(&self) -> Option<Schedule> {
        let fields: Vec<&str> = self.expr.split_whitespace().collect();
        let [m, h, dom, mon, dow, s] = fields.as_slice() else { return None };
        Schedule::parse(&format!("{s} {m} {h} {dom} {mon} {dow}")).ok()
    }

    /// A note for schedules whose meaning differs from ChiefOnboarding's.
    pub fn note(&self) -> Option<&'static str> {
        (self.expr.split_whitespace().count() == 6)
            .then_some("6 fields: the first is seconds (ChiefOnboarding reads the last one as seconds)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn next3(expr: &str, tz: Tz, from: (i32, u32, u32, u32, u32)) -> Vec<String> {
        let s = Schedule::parse(expr).unwrap();
        let start = tz.with_ymd_and_hms(from.0, from.1, from.2, from.3, from.4, 0).unwrap();
        s.upcoming(start, 3).iter().map(|t| t.to_rfc3339()).collect()
    }

    #[test]
    fn five_fields_mean_minutes_first() {
        assert_eq!(
            next3("0 * * * *", Tz::UTC, (2026, 1, 1, 10, 30)),
            ["2026-01-01T11:00:00+00:00", "2026-01-01T12:00:00+00:00", "2026-01-01T13:00:00+00:00"]
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(next3("30 0 * * * *", Tz::UTC, (2026, 1, 1, 10, 30))[0], "2026-01-01T11:00:30+00:00");
    }

    #[test]
    fn a_six_field_schedule_has_a_chief_onboarding_reading() {
        let s = Schedule::parse("30 9 * * * *").unwrap();
        // rosterd: second 30 of minute 9 of every hour. ChiefOnboarding: minute 30 of hour 9, and the
        // last field, "*", as its seconds: every second from 09:30:00 to 09:30:59.
        assert_eq!(s.chief_onboarding_reading().unwrap().expr, "* 30 9 * * *");
        assert!(Schedule::parse("0 * * * *").unwrap().chief_onboarding_reading().is_none());
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        // 2026-01-04 is a Sunday.
        assert_eq!(next3("0 9 * * 0", Tz::UTC, (2026, 1, 1, 0, 0))[0], "2026-01-04T09:00:00+00:00");
        assert_eq!(next3("0 9 * * 7", Tz::UTC, (2026, 1, 1, 0, 0))[0], "2026-01-04T09:00:00+00:00");
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_vixie_cron() {
        // The 1st of February 2026 is a Sunday; Monday the 2nd also fires.
        assert_eq!(
            next3("0 9 1 * 1", Tz::UTC, (2026, 1, 31, 12, 0))[..2],
            ["2026-02-01T09:00:00+00:00", "2026-02-02T09:00:00+00:00"]
        );
    }

    #[test]
    fn daylight_saving_keeps_local_time() {
        // Stockholm leaves summer time on 2026-10-25.
        let times = next3("0 9 * * *", Tz::Europe__Stockholm, (2026, 10, 24, 12, 0));
        assert_eq!(times[0], "2026-10-25T09:00:00+01:00");
        assert_eq!(times[1], "2026-10-26T09:00:00+01:00");
        let before = next3("0 9 * * *", Tz::Europe__Stockholm, (2026, 10, 23, 12, 0));
        assert_eq!(before[0], "2026-10-24T09:00:00+02:00");
    }

    #[test]
    fn nicknames_and_bad_input() {
        assert!(Schedule::parse("@hourly").is_ok());
        assert!(Schedule::parse("0 * * *").unwrap_err().contains("4 field(s)"));
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("0 0 30 2 *").is_err());
    }

    #[test]
    fn empty_list_items_are_refused_at_once() {
        for bad in [",,,, * * * *", "0,,5 * * * *", "0, * * * *", ",0 * * * *"] {
            assert!(Schedule::parse(bad).unwrap_err().contains("empty item"), "{bad}");
        }
        assert!(Schedule::parse(&format!("{} * * * *", "1,".repeat(200))).unwrap_err().contains("at most"));
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::testing::cases;

        fn field() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select("0123456789*/,-LW#?".chars().collect::<Vec<_>>()), 0..8)
                .prop_map(|c| c.into_iter().collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(256)))]

            /// Any cron-shaped text is accepted or refused with a reason; never a panic.
            #[test]
            fn schedules_never_panic(fields in proptest::collection::vec(field(), 0..8), nick in "@?[a-z]{0,8}") {
                let expr = fields.join(" ");
                if let Ok(s) = Schedule::parse(&expr) {
                    let now = chrono::Utc::now().with_timezone(&Tz::UTC);
                    let _ = s.upcoming(now, 2);
                }
                let _ = Schedule::parse(&nick);
            }
        }
    }
}
