//! Traffic weights and release steps of one service's versions: the pure rules behind
//! `deploy`, `berth traffic`, `berth rollback`, `berth release confirm|abort` and the agent's
//! promotion or failure of a version.
//!
//! Invariants: no I/O, no clock (`now` is passed in). Each function either fails with a
//! message for the operator and leaves the versions untouched, or leaves them consistent:
//! weights sum to 100 over the service (or are all 0 when nothing ever ran), a version runs
//! instances exactly when it is live (weight > 0 or a release step under way), a version that
//! stops being live is `stopped` (a failed one keeps `failed`), and one that becomes live again
//! is `creating` from `now`. The store applies the result in one transaction.

use crate::model::{Release, Version, VersionState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A version it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Valid, but not in the versions' present state.
    #[error("{0}")]
    Conflict(String),
}

fn names(vs: &[Version]) -> String {
    vs.iter().map(Version::name).collect::<Vec<_>>().join(", ")
}

fn find(vs: &[Version], number: u32) -> Result<usize, ReleaseError> {
    vs.iter().position(|v| v.number == number).ok_or_else(|| {
        let service = vs.first().map(|v| v.service.as_str()).unwrap_or("service");
        ReleaseError::NotFound(format!(
            "there is no version {}; the versions are: {}",
            crate::model::version_name(service, number),
            names(vs)
        ))
    })
}

/// A version as the operator names it: `3`, `003` or `web-003`.
pub fn parse_version(service: &str, v: &str) -> Result<u32, ReleaseError> {
    let v = v.trim();
    let digits = v
        .strip_prefix(service)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return Err(ReleaseError::Invalid(format!(
            "{v:?} is not a version: give its number (003) or name ({})",
            crate::model::version_name(service, 3)
        )));
    }
    digits
        .parse()
        .map_err(|_| ReleaseError::Invalid(format!("{v:?} is not a version number")))
}

/// Parses `berth traffic` arguments: `003=90 002=10` (or `web-003=90`). Weights are whole
/// percents that must add up to 100; a version may be named once.
pub fn parse_weights(service: &str, args: &[String]) -> Result<Vec<(u32, u32)>, ReleaseError> {
    if args.is_empty() {
        return Err(ReleaseError::Invalid(
            "no weights given: name versions with their percent, e.g. 003=90 002=10".into(),
        ));
    }
    let mut out: Vec<(u32, u32)> = Vec::new();
    for a in args {
        let bad = |why: &str| {
            ReleaseError::Invalid(format!(
                "{a:?}: {why}; write VERSION=PERCENT, e.g. 003=90 002=10"
            ))
        };
        let (v, w) = a.split_once('=').ok_or_else(|| bad("no '='"))?;
        let number = parse_version(service, v).map_err(|_| bad("the version is not a number"))?;
        let w = w.trim().trim_end_matches('%');
        if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) || w.len() > 3 {
            return Err(bad("the weight is not a whole percent from 0 to 100"));
        }
        let weight: u32 = w
            .parse()
            .map_err(|_| bad("the weight is not a whole percent from 0 to 100"))?;
        if weight > 100 {
            return Err(bad("the weight is not a whole percent from 0 to 100"));
        }
        if out.iter().any(|(n, _)| *n == number) {
            return Err(bad("this version is named twice"));
        }
        out.push((number, weight));
    }
    check_sum(&out)?;
    Ok(out)
}

fn check_sum(weights: &[(u32, u32)]) -> Result<(), ReleaseError> {
    let sum: u32 = weights.iter().map(|(_, w)| *w).sum();
    if sum != 100 {
        return Err(ReleaseError::Invalid(format!(
            "the weights add up to {sum}, not 100: give every version that should get traffic its percent"
        )));
    }
    Ok(())
}

/// Restores the invariants after weights or release steps changed.
fn settle(vs: &mut [Version], now: i64) {
    for v in vs.iter_mut() {
        match (v.live(), v.state) {
            (false, VersionState::Creating | VersionState::Normal | VersionState::Awaiting) => {
                v.state = VersionState::Stopped
            }
            (true, VersionState::Stopped) => {
                v.state = VersionState::Creating;
                v.reason.clear();
                v.since_ms = now;
            }
            _ => {}
        }
    }
}

/// Adds the version a deploy created. It starts at 0% in `release` (start-first, rolling,
/// standby or blue/green) beside the version with traffic; when no version has traffic (the
/// first deploy) it takes all of it at once. Release steps left over from an earlier deploy
/// are superseded.
pub fn add(vs: &mut Vec<Version>, mut new: Version, now: i64) {
    for v in vs.iter_mut() {
        v.release = Release::None;
    }
    if vs.iter().all(|v| v.weight == 0) {
        new.weight = 100;
        new.release = Release::None;
    } else {
        new.weight = 0;
    }
    new.state = VersionState::Creating;
    new.since_ms = now;
    vs.push(new);
    settle(vs, now);
}

fn apply_weights(vs: &mut [Version], weights: &[(u32, u32)], now: i64) {
    for v in vs.iter_mut() {
        v.weight = weights
            .iter()
            .find(|(n, _)| *n == v.number)
            .map(|(_, w)| *w)
            .unwrap_or(0);
        // The operator takes over; only a blue/green version keeps waiting for confirm/abort.
        if v.release != Release::BlueGreen {
            v.release = Release::None;
        }
    }
    settle(vs, now);
}

/// `berth traffic`: sets the weights of the named versions; the others get 0%.
pub fn set_weights(
    vs: &mut [Version],
    weights: &[(u32, u32)],
    now: i64,
) -> Result<(), ReleaseError> {
    check_sum(weights)?;
    for (n, w) in weights {
        let v = &vs[find(vs, *n)?];
        if *w > 0 && v.state == VersionState::Failed {
            return Err(ReleaseError::Conflict(format!(
                "{} failed ({}): it cannot take traffic; deploy a fix or choose another version",
                v.name(),
                v.reason
            )));
        }
    }
    apply_weights(vs, weights, now);
    Ok(())
}

/// The version with most of the traffic (the newest on a tie).
fn main_version(vs: &[Version]) -> Option<&Version> {
    vs.iter()
        .filter(|v| v.weight > 0)
        .max_by_key(|v| (v.weight, v.number))
}

/// `berth rollback`: all traffic to `target`, or to the newest version before the one with
/// most of the traffic that did not fail. Returns the version that now has the traffic.
pub fn rollback(vs: &mut [Version], target: Option<u32>, now: i64) -> Result<u32, ReleaseError> {
    let main = main_version(vs).map(|v| v.number);
    let to = match target {
        Some(n) => n,
        None => {
            let below = main.unwrap_or(u32::MAX);
            vs.iter()
                .filter(|v| v.number < below && v.state != VersionState::Failed)
                .map(|v| v.number)
                .max()
                .ok_or_else(|| {
                    ReleaseError::Conflict(format!(
                        "there is no earlier version that did not fail to roll back to; the versions are: {}",
                        names(vs)
                    ))
                })?
        }
    };
    let v = &vs[find(vs, to)?];
    if v.weight == 100 && !vs.iter().any(|o| o.number != to && o.live()) {
        return Err(ReleaseError::Conflict(format!(
            "{} already has all the traffic",
            v.name()
        )));
    }
    set_weights(vs, &[(to, 100)], now)?;
    for v in vs.iter_mut() {
        v.release = Release::None;
    }
    settle(vs, now);
    Ok(to)
}

fn blue_green(vs: &[Version]) -> Result<usize, ReleaseError> {
    vs.iter()
        .position(|v| v.release == Release::BlueGreen)
        .ok_or_else(|| {
            ReleaseError::Conflict(
                "no blue/green release is waiting: deploy with --blue-green first".into(),
            )
        })
}

/// `berth release confirm`: the blue/green version gets all the traffic; the others stop.
pub fn confirm(vs: &mut [Version], now: i64) -> Result<u32, ReleaseError> {
    let i = blue_green(vs)?;
    let v = &vs[i];
    match v.state {
        VersionState::Awaiting | VersionState::Normal => {}
        VersionState::Failed => {
            return Err(ReleaseError::Conflict(format!(
                "{} failed ({}): abort it with `berth release abort`",
                v.name(),
                v.reason
            )));
        }
        other => {
            return Err(ReleaseError::Conflict(format!(
                "{} is not ready yet (state {}): confirm once `berth versions` shows it awaiting confirmation",
                v.name(),
                other.as_str()
            )));
        }
    }
    let n = v.number;
    apply_weights(vs, &[(n, 100)], now);
    vs[i].release = Release::None;
    vs[i].state = VersionState::Normal;
    settle(vs, now);
    Ok(n)
}

/// `berth release abort`: the blue/green version stops; any traffic it was given goes back
/// to the versions that still have some, or else to the newest earlier version that did not
/// fail. Returns the aborted version.
pub fn abort(vs: &mut [Version], now: i64) -> Result<u32, ReleaseError> {
    let i = blue_green(vs)?;
    let n = vs[i].number;
    let others: Vec<(u32, u32)> = vs
        .iter()
        .filter(|v| v.number != n && v.weight > 0)
        .map(|v| (v.number, v.weight))
        .collect();
    let weights = if others.is_empty() {
        let back = vs
            .iter()
            .filter(|v| v.number != n && v.state != VersionState::Failed)
            .map(|v| v.number)
            .max()
            .ok_or_else(|| {
                ReleaseError::Conflict(format!(
                    "{} is the only version that can serve: there is nothing to go back to",
                    vs[i].name()
                ))
            })?;
        vec![(back, 100)]
    } else {
        rescale(&others)
    };
    apply_weights(vs, &weights, now);
    vs[i].release = Release::None;
    settle(vs, now);
    vs[i].reason = "aborted".into();
    Ok(n)
}

/// Scales weights to add up to 100 (the largest takes the rounding).
fn rescale(ws: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let total: u32 = ws.iter().map(|(_, w)| *w).sum::<u32>().max(1);
    let mut out: Vec<(u32, u32)> = ws.iter().map(|(n, w)| (*n, w * 100 / total)).collect();
    let rest = 100 - out.iter().map(|(_, w)| *w).sum::<u32>();
    if let Some(top) = out.iter_mut().max_by_key(|(n, w)| (*w, *n)) {
        top.1 += rest;
    }
    out
}

/// A start-first or rolling version turned normal: it takes all the traffic.
pub fn promote(vs: &mut [Version], number: u32, now: i64) -> Result<(), ReleaseError> {
    let i = find(vs, number)?;
    apply_weights(vs, &[(number, 100)], now);
    vs[i].release = Release::None;
    vs[i].state = VersionState::Normal;
    settle(vs, now);
    Ok(())
}

/// A version did not turn healthy: `failed`, its release step ends (so its instances go),
/// and the traffic stays where it is.
pub fn fail(vs: &mut [Version], number: u32, reason: &str, now: i64) -> Result<(), ReleaseError> {
    let i = find(vs, number)?;
    vs[i].state = VersionState::Failed;
    vs[i].reason = reason.to_string();
    vs[i].release = Release::None;
    settle(vs, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceSpec;

    fn v(number: u32, weight: u32, state: VersionState, release: Release) -> Version {
        Version {
            app: "shop".into(),
            service: "web".into(),
            number,
            spec: ServiceSpec::default(),
            message: String::new(),
            state,
            reason: String::new(),
            weight,
            created_ms: 0,
            release,
            since_ms: 0,
        }
    }

    fn view(vs: &[Version]) -> Vec<(u32, u32, VersionState, Release)> {
        vs.iter()
            .map(|v| (v.number, v.weight, v.state, v.release))
            .collect()
    }

    use Release as R;
    use VersionState as S;

    #[test]
    fn weights_parse_and_refuse_what_is_wrong() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_weights("web", &args(&["003=90", "web-002=10"])),
            Ok(vec![(3, 90), (2, 10)])
        );
        assert_eq!(parse_weights("web", &args(&["3=100%"])), Ok(vec![(3, 100)]));
        for bad in [
            &["003=90", "002=20"][..],
            &["003=90"],
            &["003"],
            &["x=100"],
            &["003=-5", "002=105"],
            &["003=50", "003=50"],
            &["003=1e2"],
            &["api-003=100"],
            &[],
        ] {
            assert!(
                matches!(
                    parse_weights("web", &args(bad)),
                    Err(ReleaseError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn first_deploy_takes_the_traffic_later_ones_start_beside_it() {
        let mut vs = Vec::new();
        add(&mut vs, v(1, 0, S::Creating, R::Promote), 5);
        assert_eq!(view(&vs), vec![(1, 100, S::Creating, R::None)]);
        vs[0].state = S::Normal;
        add(&mut vs, v(2, 0, S::Creating, R::Promote), 6);
        assert_eq!(
            view(&vs),
            vec![
                (1, 100, S::Normal, R::None),
                (2, 0, S::Creating, R::Promote)
            ]
        );
        // A newer deploy supersedes a release step still under way.
        add(&mut vs, v(3, 0, S::Creating, R::BlueGreen), 7);
        assert_eq!(
            view(&vs),
            vec![
                (1, 100, S::Normal, R::None),
                (2, 0, S::Stopped, R::None),
                (3, 0, S::Creating, R::BlueGreen)
            ]
        );
        promote(&mut vs, 3, 8).expect("promote");
        assert_eq!(vs[0].state, S::Stopped);
        assert_eq!(vs[2].weight, 100);
    }

    #[test]
    fn traffic_split_rollback_and_failed_versions() {
        let mut vs = vec![
            v(1, 0, S::Stopped, R::None),
            v(2, 0, S::Failed, R::None),
            v(3, 100, S::Normal, R::None),
            v(4, 0, S::Normal, R::Standby),
        ];
        set_weights(&mut vs, &[(4, 90), (3, 10)], 9).expect("weights");
        assert_eq!(
            view(&vs)[2..],
            [(3, 10, S::Normal, R::None), (4, 90, S::Normal, R::None)]
        );
        // Unknown or failed versions and bad sums change nothing.
        let before = vs.clone();
        assert!(matches!(
            set_weights(&mut vs, &[(7, 100)], 9),
            Err(ReleaseError::NotFound(_))
        ));
        assert!(matches!(
            set_weights(&mut vs, &[(2, 100)], 9),
            Err(ReleaseError::Conflict(_))
        ));
        assert!(set_weights(&mut vs, &[(3, 50)], 9).is_err());
        assert_eq!(vs, before);
        // Rollback goes to the newest version below the main one that did not fail.
        assert_eq!(rollback(&mut vs, None, 10), Ok(3));
        assert_eq!(
            view(&vs),
            vec![
                (1, 0, S::Stopped, R::None),
                (2, 0, S::Failed, R::None),
                (3, 100, S::Normal, R::None),
                (4, 0, S::Stopped, R::None)
            ]
        );
        assert_eq!(rollback(&mut vs, None, 11), Ok(1));
        assert_eq!(view(&vs)[0], (1, 100, S::Creating, R::None));
        assert_eq!(vs[0].since_ms, 11);
        assert!(matches!(
            rollback(&mut vs, Some(1), 12),
            Err(ReleaseError::Conflict(_))
        ));
        assert!(matches!(
            rollback(&mut vs, None, 12),
            Err(ReleaseError::Conflict(_))
        ));
    }

    #[test]
    fn blue_green_confirm_and_abort() {
        let mut vs = vec![
            v(1, 100, S::Normal, R::None),
            v(2, 0, S::Creating, R::BlueGreen),
        ];
        assert!(matches!(
            confirm(&mut vs, 1),
            Err(ReleaseError::Conflict(_))
        ));
        vs[1].state = S::Awaiting;
        // Weights may shift gradually while it waits; it keeps waiting.
        set_weights(&mut vs, &[(1, 70), (2, 30)], 2).expect("weights");
        assert_eq!(view(&vs)[1], (2, 30, S::Awaiting, R::BlueGreen));
        let mut confirmed = vs.clone();
        assert_eq!(confirm(&mut confirmed, 3), Ok(2));
        assert_eq!(
            view(&confirmed),
            vec![(1, 0, S::Stopped, R::None), (2, 100, S::Normal, R::None)]
        );
        assert_eq!(abort(&mut vs, 3), Ok(2));
        assert_eq!(
            view(&vs),
            vec![(1, 100, S::Normal, R::None), (2, 0, S::Stopped, R::None)]
        );
        assert_eq!(vs[1].reason, "aborted");
        assert!(abort(&mut vs, 4).is_err());
    }

    #[test]
    fn a_failed_release_keeps_the_traffic_where_it_was() {
        let mut vs = vec![
            v(1, 100, S::Normal, R::None),
            v(2, 0, S::Creating, R::Rolling),
        ];
        fail(&mut vs, 2, "probe failed", 5).expect("fail");
        assert_eq!(
            view(&vs),
            vec![(1, 100, S::Normal, R::None), (2, 0, S::Failed, R::None)]
        );
        assert_eq!(rescale(&[(1, 30), (3, 30)]), vec![(1, 50), (3, 50)]);
        assert_eq!(rescale(&[(1, 1), (3, 2)]), vec![(1, 33), (3, 67)]);
    }
}
