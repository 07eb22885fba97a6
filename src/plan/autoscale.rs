//! Autoscaling decisions: from a service's recent figures, its instance count, its bounds
//! and the last decision's time, whether to scale and to what.
//!
//! Invariants: pure (the caller passes the clock and the samples). A decision only follows
//! `periods` complete periods measured after the last one, every one of them breaching, and
//! the cool-down; scale-out adds `step`, scale-in removes one (as the seed says) and never
//! goes below one instance: zero comes only from idleness ([`idle`]). A count outside the
//! bounds is brought inside them first.

use crate::model::AutoScaling;

/// One sample of a service: the averages over its serving instances at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    /// Percent of the instances' CPU limit (of one core without one).
    pub cpu: f64,
    /// Percent of the instances' memory limit (of the host's memory without one).
    pub memory: f64,
}

/// A member's figures of a service it runs instances of, as its node record carries them
/// (the app's owner decides on them with its own).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    pub app: String,
    pub service: String,
    pub cpu: f64,
    pub memory: f64,
    /// Instances averaged.
    pub instances: u32,
    pub at_ms: i64,
}

/// The service's sample over the whole cluster at `now_ms`: this host's (with the number of
/// instances it averages) and the members' loads no older than `fresh_ms`, weighted by
/// their instances. None when nothing measured it.
pub fn combine(
    app: &str,
    service: &str,
    local: Option<(Sample, u32)>,
    members: &[Load],
    now_ms: i64,
    fresh_ms: i64,
) -> Option<Sample> {
    let mut parts: Vec<(f64, f64, u32)> = local
        .map(|(s, n)| (s.cpu, s.memory, n))
        .into_iter()
        .collect();
    parts.extend(
        members
            .iter()
            .filter(|l| l.app == app && l.service == service && l.instances > 0)
            .filter(|l| now_ms - l.at_ms <= fresh_ms)
            .map(|l| (l.cpu, l.memory, l.instances)),
    );
    let n: u32 = parts.iter().map(|p| p.2).sum();
    (n > 0).then(|| Sample {
        at_ms: now_ms,
        cpu: parts.iter().map(|p| p.0 * f64::from(p.2)).sum::<f64>() / f64::from(n),
        memory: parts.iter().map(|p| p.1 * f64::from(p.2)).sum::<f64>() / f64::from(n),
    })
}

/// The average of one period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub start_ms: i64,
    pub cpu: f64,
    pub memory: f64,
    pub samples: u32,
}

/// The last `n` complete periods of `period_ms` ending at `now_ms`, oldest first, from the
/// samples taken after `since_ms` (the last decision: figures of the count before it do not
/// count). A period without a sample ends the list there (nothing older is used).
pub fn periods(
    samples: &[Sample],
    now_ms: i64,
    period_ms: i64,
    n: u32,
    since_ms: i64,
) -> Vec<Period> {
    let mut out = Vec::new();
    for k in 0..i64::from(n) {
        let end = now_ms - k * period_ms;
        let start = end - period_ms;
        if start < since_ms {
            break;
        }
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_ms > start && s.at_ms <= end)
            .collect();
        if inside.is_empty() {
            break;
        }
        let count = inside.len() as f64;
        out.push(Period {
            start_ms: start,
            cpu: inside.iter().map(|s| s.cpu).sum::<f64>() / count,
            memory: inside.iter().map(|s| s.memory).sum::<f64>() / count,
            samples: inside.len() as u32,
        });
    }
    out.reverse();
    out
}

/// A metric as a decision reads it: name, upper and lower thresholds, its figure.
type Metric = (&'static str, Option<f64>, Option<f64>, fn(&Period) -> f64);

/// What to do with a service's count.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing, and why (what `berth autoscale` shows).
    Hold(String),
    /// Scale to `to`: the event's text says why, with the figures.
    Scale { to: u32, why: String },
}

/// The decision for a service running `current` instances under `policy`, given the
/// periods measured since the last decision (oldest first, see [`periods`]).
pub fn decide(
    policy: &AutoScaling,
    current: u32,
    measured: &[Period],
    last_decision_ms: Option<i64>,
    now_ms: i64,
) -> Decision {
    let (lo, hi) = (policy.min_instances, policy.max_instances);
    if current > hi {
        return Decision::Scale {
            to: hi,
            why: format!("{current} instances is above the maximum {hi}"),
        };
    }
    if current == 0 {
        // At zero by idleness (min 0): the router's first request starts it.
        if lo == 0 {
            return Decision::Hold("at zero until a request comes".into());
        }
        return Decision::Scale {
            to: lo,
            why: format!("0 instances is below the minimum {lo}"),
        };
    }
    if current < lo {
        return Decision::Scale {
            to: lo,
            why: format!("{current} instances is below the minimum {lo}"),
        };
    }
    if let Some(last) = last_decision_ms {
        let ready = last + i64::from(policy.cooldown_seconds) * 1000;
        if now_ms < ready {
            return Decision::Hold(format!(
                "cooling down for {} s after the last decision",
                (ready - now_ms + 999) / 1000
            ));
        }
    }
    let need = policy.periods as usize;
    if measured.len() < need {
        return Decision::Hold(format!(
            "{} of {need} periods of {} s measured at this count",
            measured.len(),
            policy.period_seconds
        ));
    }
    let recent = &measured[measured.len() - need..];
    let figures = |f: fn(&Period) -> f64| {
        recent
            .iter()
            .map(|p| format!("{:.0}%", f(p)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let metrics: [Metric; 2] = [
        ("cpu", policy.max_cpu, policy.cpu_low(), |p| p.cpu),
        ("memory", policy.max_memory, policy.memory_low(), |p| {
            p.memory
        }),
    ];
    // Out when any metric breached its upper threshold in every period.
    for (name, upper, _, f) in metrics {
        if let Some(upper) = upper
            && recent.iter().all(|p| f(p) > upper)
        {
            if current >= hi {
                return Decision::Hold(format!(
                    "{name} above {upper}% ({}) but already at the maximum {hi}",
                    figures(f)
                ));
            }
            let to = (current + policy.step).min(hi);
            return Decision::Scale {
                to,
                why: format!(
                    "{name} above {upper}% for {need} periods of {} s ({}): {current} -> {to}",
                    policy.period_seconds,
                    figures(f)
                ),
            };
        }
    }
    // In when every metric with a threshold stayed under its lower one in every period.
    let lowers: Vec<_> = metrics
        .iter()
        .filter_map(|(name, upper, lower, f)| upper.and(*lower).map(|l| (*name, l, *f)))
        .collect();
    let all_low = !lowers.is_empty()
        && lowers
            .iter()
            .all(|(_, l, f)| recent.iter().all(|p| f(p) < *l));
    let floor = lo.max(1);
    if all_low && current > floor {
        let to = current - 1;
        let why = lowers
            .iter()
            .map(|(name, l, f)| format!("{name} below {l}% ({})", figures(*f)))
            .collect::<Vec<_>>()
            .join(" and ");
        return Decision::Scale {
            to,
            why: format!(
                "{why} for {need} periods of {} s: {current} -> {to}",
                policy.period_seconds
            ),
        };
    }
    let now = lowers
        .iter()
        .map(|(name, _, f)| format!("{name} {}", figures(*f)))
        .collect::<Vec<_>>();
    Decision::Hold(if now.is_empty() {
        "within the thresholds".into()
    } else {
        format!("within the thresholds ({})", now.join("; "))
    })
}

/// Whether a service with min 0 should go to zero: nothing came through the router for
/// `idle_seconds` (counted from its last request, or from when it last started serving).
pub fn idle(policy: &AutoScaling, current: u32, quiet_since_ms: i64, now_ms: i64) -> bool {
    policy.min_instances == 0
        && current > 0
        && now_ms - quiet_since_ms >= policy.idle_seconds as i64 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AutoScaling {
        AutoScaling {
            min_instances: 1,
            max_instances: 4,
            max_cpu: Some(70.0),
            min_cpu: Some(40.0),
            max_memory: None,
            min_memory: None,
            step: 2,
            idle_seconds: 3600,
            period_seconds: 10,
            periods: 3,
            cooldown_seconds: 15,
            cold_start_timeout: 30,
        }
    }

    fn flat(cpu: f64, from_ms: i64, to_ms: i64) -> Vec<Sample> {
        (from_ms / 1000..to_ms / 1000)
            .step_by(2)
            .map(|s| Sample {
                at_ms: s * 1000 + 500,
                cpu,
                memory: 10.0,
            })
            .collect()
    }

    #[test]
    fn periods_are_complete_windows_after_the_last_decision() {
        let s = flat(80.0, 0, 100_000);
        let p = periods(&s, 100_000, 10_000, 3, 0);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].start_ms, 70_000);
        assert!(p.iter().all(|p| p.cpu == 80.0 && p.samples == 5));
        // Windows that began before the decision at 75 s do not count.
        assert_eq!(periods(&s, 100_000, 10_000, 3, 75_000).len(), 2);
        // A gap in the samples ends the list there.
        let mut gap = flat(80.0, 0, 75_000);
        gap.extend(flat(80.0, 91_000, 100_000));
        assert_eq!(periods(&gap, 100_000, 10_000, 3, 0).len(), 1);
    }

    #[test]
    fn out_by_step_after_every_period_breached_never_past_max() {
        let p = policy();
        let hot = periods(&flat(90.0, 0, 100_000), 100_000, 10_000, 3, 0);
        match decide(&p, 1, &hot, None, 100_000) {
            Decision::Scale { to, why } => {
                assert_eq!(to, 3);
                assert!(
                    why.contains("cpu above 70%") && why.contains("90%"),
                    "{why}"
                );
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            decide(&p, 3, &hot, None, 100_000),
            Decision::Scale { to: 4, .. }
        ));
        assert!(
            matches!(decide(&p, 4, &hot, None, 100_000), Decision::Hold(w) if w.contains("maximum 4"))
        );
        // One period under the threshold: no decision.
        let mut s = flat(90.0, 0, 100_000);
        s.retain(|x| !(80_000..90_000).contains(&x.at_ms));
        s.extend(flat(50.0, 80_000, 90_000));
        let mixed = periods(&s, 100_000, 10_000, 3, 0);
        assert!(matches!(
            decide(&p, 1, &mixed, None, 100_000),
            Decision::Hold(_)
        ));
        // Fewer periods than asked: wait.
        assert!(
            matches!(decide(&p, 1, &hot[1..], None, 100_000), Decision::Hold(w) if w.contains("2 of 3"))
        );
    }

    #[test]
    fn cooldown_then_in_by_one_never_below_min_or_one() {
        let p = policy();
        let cold = periods(&flat(5.0, 0, 100_000), 100_000, 10_000, 3, 0);
        assert!(
            matches!(decide(&p, 4, &cold, Some(90_000), 100_000), Decision::Hold(w) if w.contains("cooling down for 5 s"))
        );
        assert!(matches!(
            decide(&p, 4, &cold, Some(60_000), 100_000),
            Decision::Scale { to: 3, .. }
        ));
        assert!(matches!(
            decide(&p, 1, &cold, None, 100_000),
            Decision::Hold(_)
        ));
        let zero_min = AutoScaling {
            min_instances: 0,
            ..p.clone()
        };
        assert!(matches!(
            decide(&zero_min, 1, &cold, None, 100_000),
            Decision::Hold(_)
        ));
        // Between the thresholds: hold.
        let mid = periods(&flat(55.0, 0, 100_000), 100_000, 10_000, 3, 0);
        assert!(
            matches!(decide(&p, 2, &mid, None, 100_000), Decision::Hold(w) if w.contains("within"))
        );
    }

    #[test]
    fn counts_outside_the_bounds_come_inside_at_once() {
        let p = policy();
        assert!(matches!(
            decide(&p, 7, &[], Some(99_999), 100_000),
            Decision::Scale { to: 4, .. }
        ));
        assert!(matches!(
            decide(&p, 0, &[], None, 100_000),
            Decision::Scale { to: 1, .. }
        ));
        let zero_min = AutoScaling {
            min_instances: 0,
            ..p
        };
        assert!(matches!(
            decide(&zero_min, 0, &[], None, 100_000),
            Decision::Hold(_)
        ));
    }

    #[test]
    fn memory_scales_out_alone_and_in_only_when_every_metric_is_low() {
        let p = AutoScaling {
            max_memory: Some(80.0),
            min_memory: Some(20.0),
            ..policy()
        };
        let s: Vec<Sample> = flat(5.0, 0, 100_000)
            .into_iter()
            .map(|x| Sample { memory: 90.0, ..x })
            .collect();
        let hot_mem = periods(&s, 100_000, 10_000, 3, 0);
        assert!(
            matches!(decide(&p, 1, &hot_mem, None, 100_000), Decision::Scale { to: 3, why } if why.contains("memory above 80%"))
        );
        // CPU low but memory between its thresholds: no scale-in.
        let s: Vec<Sample> = flat(5.0, 0, 100_000)
            .into_iter()
            .map(|x| Sample { memory: 50.0, ..x })
            .collect();
        let mid_mem = periods(&s, 100_000, 10_000, 3, 0);
        assert!(matches!(
            decide(&p, 3, &mid_mem, None, 100_000),
            Decision::Hold(_)
        ));
    }

    #[test]
    fn the_cluster_sample_weighs_each_member_by_its_instances_and_drops_stale_ones() {
        let load = |cpu: f64, n: u32, at_ms: i64| Load {
            app: "a".into(),
            service: "web".into(),
            cpu,
            memory: 10.0,
            instances: n,
            at_ms,
        };
        let here = Sample {
            at_ms: 100_000,
            cpu: 90.0,
            memory: 30.0,
        };
        // 1 here at 90%, 3 on a member at 10%: 30%.
        let s = combine(
            "a",
            "web",
            Some((here, 1)),
            &[load(10.0, 3, 95_000)],
            100_000,
            30_000,
        )
        .expect("sample");
        assert!(
            (s.cpu - 30.0).abs() < 1e-9 && (s.memory - 15.0).abs() < 1e-9,
            "{s:?}"
        );
        // Nothing here: the members' alone; a stale one and another service's left out.
        let other = Load {
            service: "db".into(),
            ..load(99.0, 5, 99_000)
        };
        let s = combine(
            "a",
            "web",
            None,
            &[load(80.0, 2, 99_000), load(0.0, 9, 50_000), other],
            100_000,
            30_000,
        )
        .expect("sample");
        assert_eq!(s.cpu, 80.0);
        assert_eq!(combine("a", "web", None, &[], 100_000, 30_000), None);
    }

    #[test]
    fn idle_only_with_min_zero_after_idle_seconds() {
        let p = AutoScaling {
            min_instances: 0,
            idle_seconds: 60,
            ..policy()
        };
        assert!(idle(&p, 2, 0, 60_000));
        assert!(!idle(&p, 2, 1, 60_000));
        assert!(!idle(&p, 0, 0, 60_000));
        assert!(!idle(&policy(), 2, 0, 3_600_000));
    }
}
