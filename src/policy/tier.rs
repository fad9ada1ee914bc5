//! Tiers: named bundles of what an identity may do, how often and when.
//!
//! A tier (`[tier.NAME]` in the gateway config) and a client's registry
//! entry share one set of fields, [`PolicyFields`]: allowed methods, tools
//! (names or globs), resources (URI globs), a rate limit with an optional
//! per-tool cost, concurrent calls, open connections and allowed hours in an
//! IANA time zone. A client names its tier and may override any field; what
//! neither says takes the gateway default. The result is resolved once per
//! registry load ([`crate::identity::Registry`]) into the compiled types
//! here, so the request path only matches.
//!
//! This module decides nothing about a request on its own and never reads a
//! clock: callers pass the time.

use std::collections::{BTreeMap, HashMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use governor::Quota;
use serde::Deserialize;

/// A per-identity rate limit (GCRA): a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Sustained rate, in requests per second; at least 1.
    pub per_second: u32,
    /// Most requests accepted back to back after a quiet spell; at least 1.
    pub burst: u32,
}

/// Builds a GCRA quota, refusing zero rates.
pub fn quota(rate: RateLimitFile) -> Result<Quota, String> {
    let per_second =
        std::num::NonZeroU32::new(rate.per_second).ok_or("per_second must be at least 1")?;
    let burst = std::num::NonZeroU32::new(rate.burst).ok_or("burst must be at least 1")?;
    Ok(Quota::per_second(per_second).allow_burst(burst))
}

/// The fields a tier and a registry entry share; every one is optional so
/// that an entry overrides only what it names.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFields {
    /// MCP methods it may call.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Tools it may call and see in `tools/list`: exposed names or globs
    /// (`get_*`); `["*"]` allows every tool, `[]` none.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Resource URIs it may read, as globs (`ep://meps/*`); absent or `[]`:
    /// none.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Sustained rate and burst of its GCRA limiter.
    #[serde(default)]
    pub rate_limit: Option<RateLimitFile>,
    /// What one call of a tool costs against the rate limit (default 1),
    /// so an expensive search can cost more than a lookup.
    #[serde(default)]
    pub tool_cost: Option<BTreeMap<String, u32>>,
    /// Calls in flight at once, at most.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    /// Open connections at once, at most.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// When it may call; outside these hours the off-hours detector acts.
    #[serde(default)]
    pub allowed_hours: Option<AllowedHoursSpec>,
}

impl PolicyFields {
    /// Checks every field that is set the way a registry load would, so a
    /// bad tier stops the gateway at start; `ctx` (e.g. `tier.standard`)
    /// prefixes every error.
    pub fn validate(&self, ctx: &str) -> Result<(), String> {
        for m in self.methods.iter().flatten() {
            if crate::jsonrpc::Method::parse(m).is_none() {
                return Err(format!("field {ctx}.methods: unknown method {m:?}"));
            }
        }
        if let Some(t) = &self.tools {
            Patterns::compile(t, &format!("field {ctx}.tools"))?;
        }
        if let Some(r) = &self.resources {
            Patterns::compile(r, &format!("field {ctx}.resources"))?;
        }
        if let Some(rate) = self.rate_limit {
            quota(rate).map_err(|m| format!("field {ctx}.rate_limit: {m}"))?;
        }
        ToolCost::compile(self.tool_cost.as_ref()).map_err(|e| format!("field {ctx}.{e}"))?;
        if self.max_concurrent_calls == Some(0) {
            return Err(format!(
                "field {ctx}.max_concurrent_calls: must be at least 1"
            ));
        }
        if self.max_connections == Some(0) {
            return Err(format!("field {ctx}.max_connections: must be at least 1"));
        }
        if let Some(h) = &self.allowed_hours {
            AllowedHours::compile(h).map_err(|e| format!("field {ctx}.{e}"))?;
        }
        Ok(())
    }

    /// This entry's fields where it names them, else `base`'s.
    pub fn over(&self, base: &PolicyFields) -> PolicyFields {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        PolicyFields {
            methods: pick(&self.methods, &base.methods),
            tools: pick(&self.tools, &base.tools),
            resources: pick(&self.resources, &base.resources),
            rate_limit: pick(&self.rate_limit, &base.rate_limit),
            tool_cost: pick(&self.tool_cost, &base.tool_cost),
            max_concurrent_calls: pick(&self.max_concurrent_calls, &base.max_concurrent_calls),
            max_connections: pick(&self.max_connections, &base.max_connections),
            allowed_hours: pick(&self.allowed_hours, &base.allowed_hours),
        }
    }
}

/// Allowed hours as written in the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedHoursSpec {
    /// An IANA time zone name, e.g. `Europe/Brussels`.
    pub time_zone: String,
    /// Days of the week (`mon` … `sun`); default every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Start, `HH:MM` local time (inclusive).
    pub from: String,
    /// End, `HH:MM` local time (exclusive); earlier than `from` wraps past
    /// midnight (the window then belongs to the day it starts on).
    pub to: String,
}

/// Allowed hours, compiled: a time zone, weekdays, and a local window.
#[derive(Debug, Clone)]
pub struct AllowedHours {
    tz: jiff::tz::TimeZone,
    /// The zone's name, for messages and audit records.
    pub time_zone: String,
    /// Monday = 0 … Sunday = 6.
    days: [bool; 7],
    from_min: u16,
    to_min: u16,
}

impl AllowedHours {
    /// Compiles `spec`; the error names the field that is wrong.
    pub fn compile(spec: &AllowedHoursSpec) -> Result<AllowedHours, String> {
        let tz = jiff::tz::TimeZone::get(&spec.time_zone).map_err(|_| {
            format!(
                "allowed_hours.time_zone: {:?} is not an IANA time zone",
                spec.time_zone
            )
        })?;
        let minutes = |field: &str, v: &str| -> Result<u16, String> {
            let bad = || format!("allowed_hours.{field}: {v:?} is not HH:MM (00:00 to 24:00)");
            let (h, m) = v.split_once(':').ok_or_else(bad)?;
            if h.len() != 2 || m.len() != 2 {
                return Err(bad());
            }
            let h: u16 = h.parse().map_err(|_| bad())?;
            let m: u16 = m.parse().map_err(|_| bad())?;
            if m >= 60 || h > 24 || (h == 24 && m != 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let from_min = minutes("from", &spec.from)?;
        let to_min = minutes("to", &spec.to)?;
        if from_min == to_min {
            return Err("allowed_hours: from and to are equal, which allows no time".into());
        }
        if from_min == 24 * 60 {
            return Err("allowed_hours.from: 24:00 starts no window; use 00:00".into());
        }
        if spec.days.as_ref().is_some_and(Vec::is_empty) {
            return Err("allowed_hours.days: an empty list allows no day".into());
        }
        let mut days = [spec.days.is_none(); 7];
        for d in spec.days.iter().flatten() {
            let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|n| d.eq_ignore_ascii_case(n))
                .ok_or_else(|| format!("allowed_hours.days: {d:?} is not one of mon … sun"))?;
            days[i] = true;
        }
        Ok(AllowedHours {
            tz,
            time_zone: spec.time_zone.clone(),
            days,
            from_min,
            to_min,
        })
    }

    /// Whether the instant `now_ms` (Unix milliseconds) lies in the window.
    pub fn contains(&self, now_ms: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms) else {
            return false;
        };
        let local = self.tz.to_datetime(ts);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        // Monday = 0.
        let day = usize::from(local.weekday().to_monday_zero_offset().unsigned_abs());
        if self.from_min < self.to_min {
            self.days[day] && (self.from_min..self.to_min).contains(&minute)
        } else {
            // Wraps past midnight: the late part belongs to today, the early
            // part to yesterday's window.
            let yesterday = (day + 6) % 7;
            (self.days[day] && minute >= self.from_min)
                || (self.days[yesterday] && minute < self.to_min)
        }
    }
}

/// Names and globs, compiled once: which tools (or resources) are allowed.
#[derive(Debug, Clone)]
pub struct Patterns {
    exact: HashSet<String>,
    globs: GlobSet,
    any: bool,
}

impl Patterns {
    /// Compiles `patterns`; a string with `*`, `?` or `[` is a glob, any
    /// other an exact name. `field` names the config field in errors.
    pub fn compile(patterns: &[String], field: &str) -> Result<Patterns, String> {
        let mut exact = HashSet::new();
        let mut globs = GlobSetBuilder::new();
        let mut any = false;
        for p in patterns {
            if p == "*" {
                any = true;
            } else if p.contains(['*', '?', '[']) {
                // `*` stops at `/`, so `ep://meps/*` never reaches
                // `ep://meps/../votes`; `**` crosses segments on purpose.
                let glob = GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("{field}: {p:?}: {e}"))?;
                globs.add(glob);
            } else {
                exact.insert(p.clone());
            }
        }
        let globs = globs.build().map_err(|e| format!("{field}: {e}"))?;
        Ok(Patterns { exact, globs, any })
    }

    /// Nothing allowed.
    pub fn none() -> Patterns {
        Patterns {
            exact: HashSet::new(),
            globs: GlobSet::empty(),
            any: false,
        }
    }

    /// Whether `name` is allowed.
    pub fn allows(&self, name: &str) -> bool {
        self.any || self.exact.contains(name) || self.globs.is_match(name)
    }
}

/// Per-tool costs against the rate limit.
#[derive(Debug, Clone, Default)]
pub struct ToolCost(HashMap<String, u32>);

impl ToolCost {
    /// Compiles the `tool_cost` table; a cost must be 1 or more.
    pub fn compile(table: Option<&BTreeMap<String, u32>>) -> Result<ToolCost, String> {
        let mut out = HashMap::new();
        for (tool, cost) in table.into_iter().flatten() {
            if *cost == 0 {
                return Err(format!("tool_cost.{tool}: must be at least 1"));
            }
            out.insert(tool.clone(), *cost);
        }
        Ok(ToolCost(out))
    }

    /// The tool with the highest configured cost, if any.
    pub fn dearest(&self) -> Option<(&str, u32)> {
        self.0
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(t, c)| (t.as_str(), *c))
    }

    /// What one call of `tool` costs (1 unless configured).
    pub fn of(&self, tool: Option<&str>) -> u32 {
        tool.and_then(|t| self.0.get(t)).copied().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tz: &str, days: Option<&[&str]>, from: &str, to: &str) -> AllowedHoursSpec {
        AllowedHoursSpec {
            time_zone: tz.into(),
            days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
            from: from.into(),
            to: to.into(),
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        crate::identity::parse_rfc3339_ms(rfc3339).expect("timestamp")
    }

    #[test]
    fn office_hours_in_brussels_follow_its_offset_and_weekdays() {
        let h = AllowedHours::compile(&spec(
            "Europe/Brussels",
            Some(&["mon", "tue", "wed", "thu", "fri"]),
            "08:00",
            "18:00",
        ))
        .expect("valid");
        // 2026-11-27 is a Friday; Brussels is UTC+1 in November.
        assert!(h.contains(ms("2026-11-27T07:00:00Z")), "08:00 local");
        assert!(!h.contains(ms("2026-11-27T06:59:59Z")), "07:59:59 local");
        assert!(h.contains(ms("2026-11-27T16:59:59Z")), "17:59:59 local");
        assert!(!h.contains(ms("2026-11-27T17:00:00Z")), "18:00 local");
        assert!(!h.contains(ms("2026-11-28T10:00:00Z")), "Saturday");
        // Summer time: UTC+2.
        assert!(
            h.contains(ms("2026-07-01T06:00:00Z")),
            "08:00 local in July"
        );
        assert!(!h.contains(ms("2026-07-01T05:59:00Z")));
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let h =
            AllowedHours::compile(&spec("UTC", Some(&["fri"]), "22:00", "02:00")).expect("valid");
        assert!(h.contains(ms("2026-11-27T23:00:00Z")), "Friday night");
        assert!(h.contains(ms("2026-11-28T01:59:00Z")), "early Saturday");
        assert!(!h.contains(ms("2026-11-28T02:00:00Z")));
        assert!(!h.contains(ms("2026-11-28T23:00:00Z")), "Saturday night");
        assert!(!h.contains(ms("2026-11-27T01:00:00Z")), "early Friday");
    }

    #[test]
    fn bad_allowed_hours_name_the_field() {
        let err = |s: AllowedHoursSpec| AllowedHours::compile(&s).expect_err("invalid");
        assert!(err(spec("Mars/Olympus", None, "08:00", "18:00")).contains("time_zone"));
        assert!(err(spec("UTC", None, "8:00", "18:00")).contains("allowed_hours.from"));
        assert!(err(spec("UTC", None, "08:00", "24:30")).contains("allowed_hours.to"));
        assert!(err(spec("UTC", Some(&["someday"]), "08:00", "18:00")).contains("days"));
        assert!(err(spec("UTC", None, "08:00", "08:00")).contains("equal"));
        assert!(err(spec("UTC", Some(&[]), "08:00", "18:00")).contains("no day"));
        assert!(err(spec("UTC", None, "24:00", "00:00")).contains("allowed_hours.from"));
    }

    #[test]
    fn patterns_match_names_and_globs() {
        let p = Patterns::compile(
            &["get_meps".into(), "search_*".into(), "ep.get_?".into()],
            "tools",
        )
        .expect("valid");
        assert!(p.allows("get_meps"));
        assert!(p.allows("search_documents"));
        assert!(p.allows("ep.get_x"));
        assert!(!p.allows("get_voting_records"));
        assert!(!p.allows("ep.get_xy"));
        assert!(Patterns::compile(&["*".into()], "tools")
            .expect("valid")
            .allows("anything"));
        assert!(!Patterns::none().allows("get_meps"));
        let r = Patterns::compile(&["ep://meps/*".into()], "resources").expect("valid");
        assert!(r.allows("ep://meps/124810"));
        assert!(!r.allows("file:///etc/passwd"));
        assert!(!r.allows("ep://meps/../votes/1"), "* stops at /");
        let deep = Patterns::compile(&["ep://meps/**".into()], "resources").expect("valid");
        assert!(deep.allows("ep://meps/1/speeches"));
        let class = Patterns::compile(&["get_[mc]*".into()], "tools").expect("valid");
        assert!(class.allows("get_meps") && class.allows("get_committee_info"));
        assert!(!class.allows("get_plenary_sessions"));
        assert!(Patterns::compile(&["get_[".into()], "tools")
            .expect_err("unclosed class")
            .starts_with("tools: "));
    }

    #[test]
    fn an_entry_overrides_only_what_it_names() {
        let tier = PolicyFields {
            tools: Some(vec!["get_*".into()]),
            max_concurrent_calls: Some(4),
            ..Default::default()
        };
        let entry = PolicyFields {
            max_concurrent_calls: Some(1),
            ..Default::default()
        };
        let merged = entry.over(&tier);
        assert_eq!(merged.tools, Some(vec!["get_*".to_string()]));
        assert_eq!(merged.max_concurrent_calls, Some(1));
        assert_eq!(merged.max_connections, None);
        let cost = ToolCost::compile(Some(&BTreeMap::from([("search_documents".into(), 5)])))
            .expect("valid");
        assert_eq!(cost.of(Some("search_documents")), 5);
        assert_eq!(cost.of(Some("get_meps")), 1);
        assert_eq!(cost.of(None), 1);
        assert!(ToolCost::compile(Some(&BTreeMap::from([("x".into(), 0)]))).is_err());
    }
}
