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
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        match self {
            Expression::Rate(period) => {
                let elapsed = (after_ms - anchor_ms).max(0);
                Some(anchor_ms + (elapsed / period + 1) * period)
            }
            Expression::Cron(cron) => {
                let after = Utc.timestamp_millis_opt(after_ms).single()?;
                // Cron fires on whole seconds: look from the next whole second on.
                let from = after + chrono::Duration::milliseconds(1000 - after_ms.rem_euclid(1000));
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
    Ok(count * unit_ms)
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
