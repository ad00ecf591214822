//! Schedule expressions: cron (5 fields, or 6 with seconds) and `rate(N unit)`.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A parsed schedule expression.
#[derive(Debug, Clone)]
pub enum Expression {
    /// A cron pattern, evaluated in UTC.
    Cron(Box<croner::Cron>),
    /// Every so many milliseconds, counted from the schedule's creation.
    Rate(i64),
}

impl Expression {
    /// Parses `cron(…)`-less cron text or `rate(N minute[s]|hour[s]|day[s])`; the error
    /// carries the parser's message.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            return parse_rate(inner).map(Expression::Rate);
        }
        let pattern = text
            .strip_prefix("cron(")
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or(text);
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(Error::invalid(format!(
                "invalid schedule expression '{text}': a cron pattern has 5 fields (minute hour day month weekday) or 6 (with seconds first), this has {fields}"
            )));
        }
        croner::Cron::new(pattern)
            .with_seconds_optional()
            .parse()
            .map(|cron| Expression::Cron(Box::new(cron)))
            .map_err(|e| Error::invalid(format!("invalid schedule expression '{text}': {e}")))
    }

    /// The first fire strictly after `after_ms` (epoch ms); rates count from `anchor_ms`.
    /// `None` when there is none, or none before the end of representable time.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        match self {
            Expression::Rate(period) => {
                // Checked: a long period from a late anchor can pass i64's end.
                let elapsed = after_ms.checked_sub(anchor_ms)?.max(0);
                let periods = (elapsed / period).checked_add(1)?;
                anchor_ms.checked_add(periods.checked_mul(*period)?)
            }
            Expression::Cron(cron) => {
                let after = Utc.timestamp_millis_opt(after_ms).single()?;
                // Cron fires on whole seconds: look from the next whole second on.
                let from = after.checked_add_signed(chrono::Duration::milliseconds(
                    1000 - after_ms.rem_euclid(1000),
                ))?;
                cron.find_next_occurrence(&from, true)
                    .ok()
                    .map(|next| next.timestamp_millis())
            }
        }
    }
}

fn parse_rate(inner: &str) -> Result<i64> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "invalid schedule expression 'rate({inner})': {why}"
        ))
    };
    let mut parts = inner.split_whitespace();
    let (Some(count), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("write rate(N minutes), rate(N hours) or rate(N days)"));
    };
    let count: i64 = count
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad("N must be a whole number of at least 1"))?;
    let unit_ms = match unit {
        "minute" | "minutes" => 60_000,
        "hour" | "hours" => 3_600_000,
        "day" | "days" => 86_400_000,
        other => {
            return Err(bad(&format!(
                "unknown unit '{other}' (minutes, hours or days)"
            )))
        }
    };
    // Checked: `rate(18014398509481984 days)` wrapped to a period of 0 (a division by zero
    // at the first fire) and larger counts to negative periods.
    count
        .checked_mul(unit_ms)
        .ok_or_else(|| bad("N is too large: the period must fit in 64-bit milliseconds"))
}

impl FromStr for Expression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Expression::parse(s)
    }
}

/// A schedule: a function invoked asynchronously with a fixed payload at each fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The schedule's name.
    pub name: String,
    /// The function (`name` or `name:qualifier`).
    pub function: String,
    /// The expression, as given.
    pub expression: String,
    /// The event each fire sends.
    pub payload: serde_json::Value,
    /// Whether it fires.
    pub enabled: bool,
    /// When it was created, epoch ms (rates count from here).
    pub created_ms: i64,
    /// The next fire, epoch ms.
    pub next_fire_ms: Option<i64>,
    /// The last fire, epoch ms.
    pub last_fire_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_with_and_without_seconds() {
        let every_two = Expression::parse("*/2 * * * * *").expect("six fields");
        let t = 1_700_000_000_500; // 22:13:20.500 UTC
        let next = every_two.next_after(t, 0).expect("next");
        assert_eq!(next % 2000, 0);
        assert!(next > t && next - t <= 2000);
        let hourly = Expression::parse("0 * * * *").expect("five fields");
        let next = hourly.next_after(t, 0).expect("next");
        assert_eq!(next % 3_600_000, 0);
    }

    #[test]
    fn rates_count_from_the_anchor() {
        let rate = Expression::parse("rate(5 minutes)").expect("rate");
        assert_eq!(rate.next_after(1_000, 0), Some(300_000));
        assert_eq!(rate.next_after(300_000, 0), Some(600_000));
        Expression::parse("rate(1 day)").expect("singular");
    }

    #[test]
    fn a_rate_whose_period_overflows_is_refused_not_wrapped_to_zero() {
        // 2^54 days is 2^64 * 84375 ms: it wrapped to a period of 0, and the first
        // `next_after` divided by it.
        let err = Expression::parse("rate(18014398509481984 days)").expect_err("overflows");
        assert!(err.message.contains("too large"), "{err}");
        let longest = Expression::parse("rate(153722867280912 minutes)").expect("fits");
        let now = 1_700_000_000_000;
        assert_eq!(
            longest.next_after(now, now),
            None,
            "past the end of i64 milliseconds"
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        for bad in [
            "rate(0 minutes)",
            "rate(5 fortnights)",
            "* * *",
            "61 * * * *",
            "rate(x minutes)",
        ] {
            let err = Expression::parse(bad).expect_err(bad);
            assert!(
                err.message.contains("invalid schedule expression"),
                "{bad}: {err}"
            );
        }
    }
}

/// Property tests: the parser never panics, refuses what it cannot run, and what it accepts
/// fires when its expression says.
#[cfg(test)]
mod properties {
    use chrono::{Datelike, Timelike};
    use proptest::prelude::*;

    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 86_400_000;
    /// 2000-01-01 and 2100-01-01 UTC, epoch ms: the times schedules are asked about.
    const FROM: i64 = 946_684_800_000;
    const UNTIL: i64 = 4_102_444_800_000;

    fn utc(ms: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .expect("in chrono's range")
    }

    /// Text that looks like an expression often enough to reach the parsers' corners.
    fn expression_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "rate\\([ +-]?[0-9]{0,25} ?[a-zA-Z]{0,9}\\)",
            "rate\\([0-9]{1,25} (minute|minutes|hour|hours|day|days)\\)",
            "rate\\(.{0,30}\\)",
            "(cron\\()?[0-9*/,LW#?A-Za-z-]{1,8}( [0-9*/,LW#?A-Za-z-]{1,8}){0,7}\\)?",
            "[0-9*/, -]{0,40}",
        ]
    }

    /// One generated cron field: the pattern text and the values it matches.
    #[derive(Debug, Clone)]
    struct Field {
        text: String,
        values: Vec<u32>,
    }

    impl Field {
        fn matches(&self, value: u32) -> bool {
            self.values.contains(&value)
        }
    }

    /// A field over `lo..=hi`: `*`, a value, a range, a step or a list of values. `*` and
    /// steps cover the field's whole range, `lo..=top` (a day of month's `*/28` is 1 and 29).
    fn field(lo: u32, hi: u32, top: u32) -> impl Strategy<Value = Field> {
        let all = Just(Field {
            text: "*".into(),
            values: (lo..=top).collect(),
        });
        let one = (lo..=hi).prop_map(|v| Field {
            text: v.to_string(),
            values: vec![v],
        });
        let range = (lo..=hi, lo..=hi).prop_map(|(a, b)| {
            let (a, b) = (a.min(b), a.max(b));
            Field {
                text: format!("{a}-{b}"),
                values: (a..=b).collect(),
            }
        });
        let step = (1..=(hi - lo + 1)).prop_map(move |s| Field {
            text: format!("*/{s}"),
            values: (lo..=top).step_by(s as usize).collect(),
        });
        let list = proptest::collection::btree_set(lo..=hi, 1..4).prop_map(|set| Field {
            text: set.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
            values: set.into_iter().collect(),
        });
        prop_oneof![all, one, range, step, list]
    }

    /// Six fields (seconds first); at most one of day-of-month and weekday is restricted,
    /// since cron ORs them when both are, and days of month stop at 28 so every month has
    /// them.
    fn cron_fields() -> impl Strategy<Value = [Field; 6]> {
        let star = |lo: u32, hi: u32| Field {
            text: "*".into(),
            values: (lo..=hi).collect(),
        };
        let days = prop_oneof![
            field(1, 28, 31).prop_map(move |dom| (dom, star(0, 6))),
            field(0, 6, 6).prop_map(move |dow| (star(1, 31), dow)),
        ];
        (
            field(0, 59, 59),
            field(0, 59, 59),
            field(0, 23, 23),
            days,
            field(1, 12, 12),
        )
            .prop_map(|(s, m, h, (dom, dow), mon)| [s, m, h, dom, mon, dow])
    }

    /// A rate's unit and its length. Singular and plural are both accepted whatever N is
    /// (`rate(5 minute)`, `rate(1 minutes)`): EventBridge refuses the mismatch, Nimbus has
    /// always taken either, and these properties keep it so.
    fn unit() -> impl Strategy<Value = (&'static str, i64)> {
        prop_oneof![
            Just(("minute", MINUTE)),
            Just(("minutes", MINUTE)),
            Just(("hour", HOUR)),
            Just(("hours", HOUR)),
            Just(("day", DAY)),
            Just(("days", DAY)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_or_is_refused_with_a_reason_never_a_panic(
            text in expression_like(),
            after in any::<i64>(),
            anchor in any::<i64>(),
        ) {
            match Expression::parse(&text) {
                Ok(expression) => {
                    // Whatever it accepted, asking when it fires must not panic either.
                    let _ = expression.next_after(after, anchor);
                    let _ = expression.next_after(after.clamp(FROM, UNTIL), anchor.clamp(FROM, UNTIL));
                }
                Err(e) => {
                    prop_assert_eq!(e.kind, crate::ErrorKind::InvalidParameterValue);
                    prop_assert!(e.message.starts_with("invalid schedule expression"), "{}", e.message);
                }
            }
        }

        #[test]
        fn a_rate_fires_every_period_counted_from_its_anchor(
            n in 1i64..=10_000,
            (word, unit_ms) in unit(),
            anchor in FROM..UNTIL,
            after in FROM..UNTIL,
            padding in "[ ]{0,2}",
        ) {
            let expression = Expression::parse(&format!("{padding}rate({n} {word}){padding}"))
                .expect("a valid rate");
            let period = n * unit_ms;
            let next = expression.next_after(after, anchor).expect("a rate always fires");
            prop_assert!(next > after);
            prop_assert_eq!((next - anchor).rem_euclid(period), 0, "aligned to the anchor");
            prop_assert!(next > anchor, "the anchor itself is not a fire");
            // The first fire after `after`: one period earlier is not after it (or is the anchor).
            prop_assert!(next - period <= after.max(anchor));
            let following = expression.next_after(next, anchor).expect("fires again");
            prop_assert_eq!(following - next, period, "exactly N units apart");
            // Anywhere inside a period, the next fire is the period's end.
            let inside = next - 1 - (after.unsigned_abs() % period as u64) as i64 % period;
            prop_assert_eq!(expression.next_after(inside.max(anchor), anchor), Some(next));
        }

        #[test]
        fn a_rate_of_no_time_or_past_the_end_of_time_is_refused(
            // Zero, negative, or a period past i64 milliseconds (i64::MAX / 60_000 minutes).
            n in prop_oneof![Just(0i128), -(1i128 << 70)..0, 153_722_867_280_913i128..(1i128 << 70)],
            (word, _) in unit(),
        ) {
            let text = format!("rate({n} {word})");
            let err = Expression::parse(&text).expect_err(&text);
            prop_assert!(err.message.starts_with("invalid schedule expression"), "{}", err.message);
        }

        #[test]
        fn a_rate_in_an_unknown_unit_or_shape_is_refused(
            n in 1u32..1000,
            word in "[a-zA-Z]{0,9}".prop_filter("not a unit", |w| {
                !["minute", "minutes", "hour", "hours", "day", "days"].contains(&w.as_str())
            }),
            extra in prop_oneof![Just(String::new()), Just(" now".to_string()), Just(" 5".to_string())],
        ) {
            for text in [format!("rate({n} {word}{extra})"), format!("rate({n}{word})"), format!("rate({word})")] {
                let err = Expression::parse(&text).expect_err(&text);
                prop_assert!(err.message.starts_with("invalid schedule expression"), "{}", err.message);
            }
        }

        #[test]
        fn a_valid_expression_asked_about_any_time_never_panics(
            n in 1i64..=153_722_867_280_912,
            fields in cron_fields(),
            after in any::<i64>(),
            anchor in any::<i64>(),
        ) {
            let rate = Expression::parse(&format!("rate({n} minutes)")).expect("fits");
            if let Some(next) = rate.next_after(after, anchor) {
                prop_assert!(next > after);
            }
            let cron = fields.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join(" ");
            let cron = Expression::parse(&cron).expect("a valid cron");
            if let Some(next) = cron.next_after(after, anchor) {
                prop_assert!(next > after);
            }
        }

        #[test]
        fn a_daily_cron_fires_at_its_minute_and_hour_utc(
            minute in 0u32..60,
            hour in 0u32..24,
            after in FROM..UNTIL,
            wrapped in any::<bool>(),
        ) {
            let pattern = format!("{minute} {hour} * * *");
            let text = if wrapped { format!("cron({pattern})") } else { pattern };
            let expression = Expression::parse(&text).expect("a valid cron");
            let next = expression.next_after(after, 0).expect("fires daily");
            let at = utc(next);
            prop_assert_eq!((at.hour(), at.minute(), at.second()), (hour, minute, 0));
            prop_assert_eq!(next % 1000, 0, "whole seconds");
            prop_assert!(next > after && next - after <= DAY, "the first fire after, within a day");
            prop_assert_eq!(expression.next_after(next, 0), Some(next + DAY));
        }

        #[test]
        fn a_cron_fire_matches_every_field_and_comes_after_the_last(
            fields in cron_fields(),
            after in FROM..UNTIL,
            with_seconds in any::<bool>(),
        ) {
            let [seconds, rest @ ..] = &fields;
            let mut texts: Vec<&str> = rest.iter().map(|f| f.text.as_str()).collect();
            if with_seconds {
                texts.insert(0, &seconds.text);
            }
            let text = texts.join(" ");
            let expression = Expression::parse(&text).expect("a valid cron");
            let next = expression.next_after(after, 0).expect("a satisfiable pattern fires");
            prop_assert!(next > after);
            prop_assert_eq!(next % 1000, 0, "whole seconds");
            let at = utc(next);
            if with_seconds {
                prop_assert!(seconds.matches(at.second()), "second {} of {text}", at.second());
            } else {
                prop_assert_eq!(at.second(), 0);
            }
            prop_assert!(fields[1].matches(at.minute()), "minute {} of {text}", at.minute());
            prop_assert!(fields[2].matches(at.hour()), "hour {} of {text}", at.hour());
            prop_assert!(fields[3].matches(at.day()), "day {} of {text}", at.day());
            prop_assert!(fields[4].matches(at.month()), "month {} of {text}", at.month());
            let weekday = at.weekday().num_days_from_sunday();
            prop_assert!(fields[5].matches(weekday), "weekday {weekday} of {text}");
            let following = expression.next_after(next, 0).expect("fires again");
            prop_assert!(following > next, "monotone");
        }
    }
}
