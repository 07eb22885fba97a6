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

/// What happens to a service's versions: a user's command, or what the agent observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A deploy created this version; its `release` says how it is released (`Promote`,
    /// `Rolling`, `Standby`, `BlueGreen`).
    Deploy(Box<Version>),
    /// `berth traffic`: these weights (they add up to 100); the versions not named get 0%.
    Traffic(Vec<(u32, u32)>),
    /// `berth rollback [VERSION]`.
    Rollback(Option<u32>),
    /// `berth release confirm`.
    Confirm,
    /// `berth release abort`.
    Abort,
    /// Every instance the version should run is ready (the agent saw it).
    Ready(u32),
    /// It did not turn healthy: its deadline passed, or a rolling batch broke.
    Fail(u32, String),
}

impl Step {
    /// Why the versions change; every decision's event names it.
    pub fn cause(&self, service: &str) -> String {
        let name = |n: u32| crate::model::version_name(service, n);
        match self {
            Step::Deploy(v) => format!("deploy of {}", v.name()),
            Step::Traffic(ws) => format!(
                "berth traffic {}",
                ws.iter()
                    .map(|(n, w)| format!("{}={w}%", name(*n)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Step::Rollback(None) => "berth rollback".into(),
            Step::Rollback(Some(n)) => format!("berth rollback to {}", name(*n)),
            Step::Confirm => "berth release confirm".into(),
            Step::Abort => "berth release abort".into(),
            Step::Ready(n) => format!("every instance of {} is ready", name(*n)),
            Step::Fail(n, why) => format!("{} did not turn healthy: {why}", name(*n)),
        }
    }
}

/// A version's release-relevant fields at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: VersionState,
    pub weight: u32,
    pub release: Release,
}

impl Snapshot {
    fn of(v: &Version) -> Snapshot {
        Snapshot {
            state: v.state,
            weight: v.weight,
            release: v.release,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{} at {}%", self.state.as_str(), self.weight);
        if self.release != Release::None {
            s.push_str(&format!(" ({})", self.release.as_str()));
        }
        s
    }
}

/// One version's change and its cause, recorded as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub version: String,
    pub number: u32,
    /// `None` for the version a deploy adds.
    pub before: Option<Snapshot>,
    pub after: Snapshot,
    /// The version's reason after the change (why it failed or stopped), if any.
    pub reason: String,
    pub cause: String,
}

impl Decision {
    pub fn message(&self) -> String {
        let mut after = self.after.describe();
        if !self.reason.is_empty()
            && matches!(
                self.after.state,
                VersionState::Failed | VersionState::Stopped
            )
        {
            after.push_str(&format!(": {}", self.reason));
        }
        match &self.before {
            None => format!("{} added, {after} (cause: {})", self.version, self.cause),
            Some(b) => format!(
                "{}: {} -> {after} (cause: {})",
                self.version,
                b.describe(),
                self.cause
            ),
        }
    }
}

/// What a step did: the version it is about (the one a rollback, confirm or abort moved)
/// and every version's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub subject: Option<u32>,
    pub decisions: Vec<Decision>,
}

/// The state machine: applies `step` to one service's versions at time `now`. Either it
/// refuses with a message for the operator and leaves `vs` untouched, or it leaves them
/// consistent and says what changed and why.
pub fn apply(vs: &mut Vec<Version>, step: &Step, now: i64) -> Result<Applied, ReleaseError> {
    let service = vs
        .first()
        .map(|v| v.service.clone())
        .or_else(|| match step {
            Step::Deploy(v) => Some(v.service.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let cause = step.cause(&service);
    let mut work = vs.clone();
    let subject = match step {
        Step::Deploy(new) => deploy(&mut work, (**new).clone(), now).map(Some),
        Step::Traffic(ws) => {
            set_weights(&mut work, ws, now, &cause).map(|_| main_version(&work).map(|v| v.number))
        }
        Step::Rollback(target) => rollback(&mut work, *target, now, &cause).map(Some),
        Step::Confirm => confirm(&mut work, now, &cause).map(Some),
        Step::Abort => abort(&mut work, now, &cause).map(Some),
        Step::Ready(n) => ready(&mut work, *n, now).map(Some),
        Step::Fail(n, why) => fail(&mut work, *n, why, now).map(Some),
    }?;
    let decisions = work
        .iter()
        .filter_map(|v| {
            let before = vs.iter().find(|o| o.number == v.number);
            let changed =
                before.is_none_or(|b| Snapshot::of(b) != Snapshot::of(v) || b.reason != v.reason);
            changed.then(|| Decision {
                version: v.name(),
                number: v.number,
                before: before.map(Snapshot::of),
                after: Snapshot::of(v),
                reason: v.reason.clone(),
                cause: cause.clone(),
            })
        })
        .collect();
    *vs = work;
    Ok(Applied { subject, decisions })
}

/// A release step under way: a version on its way in (creating in any release step) or a
/// blue/green version awaiting confirmation. At most one per service.
pub fn in_progress(vs: &[Version]) -> Option<&Version> {
    vs.iter().find(|v| {
        v.release != Release::None
            && (v.state == VersionState::Creating
                || (v.release == Release::BlueGreen && v.state == VersionState::Awaiting))
    })
}

fn rolling(vs: &[Version]) -> Option<&Version> {
    vs.iter()
        .find(|v| v.release == Release::Rolling && v.state == VersionState::Creating)
}

fn target_of(v: &Version) -> String {
    format!("{}/{}", v.app, v.service)
}

fn rolling_refusal(r: &Version, what: &str) -> ReleaseError {
    ReleaseError::Conflict(format!(
        "a rolling update to {} is in progress: wait until `berth versions {t}` shows it normal, or stop it with `berth rollback {t}`, then {what}",
        r.name(),
        t = target_of(r)
    ))
}

/// How a deploy releases a changed service's new version: `--blue-green` (at 0% with all
/// its instances until confirmed), `--traffic none` (one standby instance at 0%), a rolling
/// update in batches (the service binds fixed host ports, which two versions cannot share,
/// or it asks for batches: `rolling_updates` or `update_config` other than start-first), else
/// promote (start-first: the new version takes the traffic once ready). Refused when the
/// release would need two versions side by side and the service pins host ports.
pub fn choose(
    name: &str,
    svc: &crate::model::ServiceSpec,
    versions: &[Version],
    blue_green: bool,
    traffic_none: bool,
) -> Result<Release, ReleaseError> {
    let serving = versions.iter().any(|v| v.weight > 0);
    let pinned = pins_host_ports(svc)
        || versions
            .iter()
            .filter(|v| v.live())
            .any(|v| pins_host_ports(&v.spec));
    if serving && pinned && (blue_green || traffic_none) {
        return Err(ReleaseError::Conflict(format!(
            "service {name:?} binds fixed host ports (a published host port or host networking), so two of its versions cannot run at once as --blue-green or --traffic none need: publish only the container port and route it (routing.port_N / lb.port_N)"
        )));
    }
    Ok(if blue_green {
        Release::BlueGreen
    } else if traffic_none {
        Release::Standby
    } else if pinned || rolls(svc) {
        Release::Rolling
    } else {
        Release::Promote
    })
}

/// Two versions of this service cannot run side by side on one host: it binds fixed host
/// ports (published, or host networking).
fn pins_host_ports(s: &crate::model::ServiceSpec) -> bool {
    s.network_mode == crate::model::NetworkMode::Host
        || s.ports.iter().any(|p| p.host_port.is_some())
}

/// Does a change of this service roll out in batches?
fn rolls(s: &crate::model::ServiceSpec) -> bool {
    s.ext.rolling_updates.is_some()
        || s.update_config
            .as_ref()
            .is_some_and(|u| u.order != Some(crate::model::UpdateOrder::StartFirst))
}

/// Can a deploy of a new version of this service go ahead? (The refusals of [`deploy`],
/// checked before a deploy pulls images or mounts volumes.)
pub fn admit(vs: &[Version]) -> Result<(), ReleaseError> {
    if let Some(bg) = vs.iter().find(|v| {
        v.release == Release::BlueGreen
            && matches!(v.state, VersionState::Awaiting | VersionState::Normal)
    }) {
        return Err(ReleaseError::Conflict(format!(
            "{} is a blue/green release awaiting confirmation: confirm it (`berth release confirm {t}`) or roll it back (`berth release abort {t}`) before the next release",
            bg.name(),
            t = target_of(bg)
        )));
    }
    if let Some(r) = rolling(vs) {
        return Err(rolling_refusal(r, "deploy again"));
    }
    Ok(())
}

/// Restores the invariants after weights or release steps changed: a version that stops
/// being live is `stopped` (`why` becomes its reason), one that becomes live again is
/// `creating` from `now`, and a version awaiting confirmation that is no longer a blue/green
/// release is plainly `normal`.
fn settle(vs: &mut [Version], now: i64, why: &str) {
    for v in vs.iter_mut() {
        match (v.live(), v.state) {
            (false, VersionState::Creating | VersionState::Normal | VersionState::Awaiting) => {
                v.state = VersionState::Stopped;
                v.reason = why.to_string();
            }
            (true, VersionState::Stopped) => {
                v.state = VersionState::Creating;
                v.reason.clear();
                v.since_ms = now;
            }
            (true, VersionState::Awaiting) if v.release != Release::BlueGreen => {
                v.state = VersionState::Normal;
            }
            _ => {}
        }
    }
}

/// A deploy's new version. The first takes all the traffic at once; a later one starts at
/// 0% in its release step beside the versions with traffic. Refused while a blue/green
/// release awaits confirmation or a rolling update is under way; a version still on its way
/// in (creating, at 0%) is superseded: `failed`, its instances go at once.
fn deploy(vs: &mut Vec<Version>, mut new: Version, now: i64) -> Result<u32, ReleaseError> {
    admit(vs)?;
    let name = new.name();
    let superseded = format!("superseded by {name}");
    for v in vs.iter_mut() {
        if v.release == Release::None {
            continue;
        }
        if v.state == VersionState::Creating && v.weight == 0 {
            v.state = VersionState::Failed;
            v.reason = superseded.clone();
        }
        v.release = Release::None;
    }
    if vs.iter().all(|v| v.weight == 0) {
        new.weight = 100;
        new.release = Release::None;
    } else {
        new.weight = 0;
    }
    new.state = VersionState::Creating;
    new.reason.clear();
    new.since_ms = now;
    let number = new.number;
    vs.push(new);
    settle(vs, now, &superseded);
    Ok(number)
}

/// Sets the weights; the versions not named get 0%. Release steps other than a blue/green
/// one (whose traffic may shift gradually before it is confirmed) end.
fn apply_weights(vs: &mut [Version], weights: &[(u32, u32)], now: i64, why: &str) {
    for v in vs.iter_mut() {
        v.weight = weights
            .iter()
            .find(|(n, _)| *n == v.number)
            .map(|(_, w)| *w)
            .unwrap_or(0);
        if v.release != Release::BlueGreen {
            v.release = Release::None;
        }
    }
    settle(vs, now, why);
}

fn failed_refusal(v: &Version) -> ReleaseError {
    ReleaseError::Conflict(format!(
        "{} failed ({}): it cannot take traffic; deploy a fix or choose another version",
        v.name(),
        v.reason
    ))
}

/// Only a version that runs healthy can be given traffic.
fn check_can_serve(v: &Version) -> Result<(), ReleaseError> {
    match v.state {
        VersionState::Normal | VersionState::Awaiting => Ok(()),
        VersionState::Failed => Err(failed_refusal(v)),
        VersionState::Creating => Err(ReleaseError::Conflict(format!(
            "{} is still creating: it can take traffic once `berth versions {}` shows it normal",
            v.name(),
            target_of(v)
        ))),
        VersionState::Stopped => Err(ReleaseError::Conflict(format!(
            "{} is stopped: `berth rollback {} {:03}` brings it back (it starts beside the current version and takes the traffic once healthy); split the traffic after that",
            v.name(),
            target_of(v),
            v.number
        ))),
    }
}

/// `berth traffic`: sets the weights of the named versions; the others get 0%.
fn set_weights(
    vs: &mut [Version],
    weights: &[(u32, u32)],
    now: i64,
    why: &str,
) -> Result<(), ReleaseError> {
    check_sum(weights)?;
    for (n, w) in weights {
        let v = &vs[find(vs, *n)?];
        if *w > 0 {
            check_can_serve(v)?;
        }
    }
    if let Some(r) = rolling(vs) {
        return Err(rolling_refusal(r, "set the traffic"));
    }
    apply_weights(vs, weights, now, why);
    Ok(())
}

/// The version with most of the traffic (the newest on a tie).
fn main_version(vs: &[Version]) -> Option<&Version> {
    vs.iter()
        .filter(|v| v.weight > 0)
        .max_by_key(|v| (v.weight, v.number))
}

/// Takes `i`'s traffic away (its weight becomes 0): to the other versions that have some,
/// in proportion. Refused, changing nothing, when no other version has traffic (there would
/// be nothing healthy to send it to).
fn hand_back(vs: &mut [Version], i: usize, what: &str) -> Result<(), ReleaseError> {
    let n = vs[i].number;
    if vs[i].weight == 0 {
        return Ok(());
    }
    let others: Vec<(u32, u32)> = vs
        .iter()
        .filter(|v| v.number != n && v.weight > 0)
        .map(|v| (v.number, v.weight))
        .collect();
    if others.is_empty() {
        return Err(ReleaseError::Conflict(format!(
            "{} has all the traffic, so it cannot be {what}: confirm it, or bring an earlier version back with `berth rollback {} NNN` first",
            vs[i].name(),
            target_of(&vs[i])
        )));
    }
    let scaled = rescale(&others);
    for v in vs.iter_mut() {
        v.weight = scaled
            .iter()
            .find(|(m, _)| *m == v.number)
            .map(|(_, w)| *w)
            .unwrap_or(0);
    }
    Ok(())
}

/// `berth rollback`. Without a target while a release step is under way, that release is
/// rolled back (its version stops; the traffic stays on, or returns to, the versions that
/// had it). Otherwise all the traffic goes to `target`, or to the newest version before the
/// one with most of the traffic that did not fail: at once when that version runs healthy,
/// else it starts beside the current one and takes the traffic once ready (start-first, so
/// the traffic always has somewhere to go). Returns the version now taking the traffic.
fn rollback(
    vs: &mut [Version],
    target: Option<u32>,
    now: i64,
    why: &str,
) -> Result<u32, ReleaseError> {
    if target.is_none()
        && let Some(p) = in_progress(vs)
    {
        let n = p.number;
        let i = find(vs, n)?;
        hand_back(vs, i, "rolled back")?;
        vs[i].release = Release::None;
        settle(vs, now, why);
        vs[i].reason = "rolled back".into();
        return main_version(vs)
            .map(|v| v.number)
            .ok_or_else(|| ReleaseError::Conflict("no version has traffic".into()));
    }
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
    let i = find(vs, to)?;
    let v = &vs[i];
    if v.state == VersionState::Failed {
        return Err(failed_refusal(v));
    }
    if v.weight == 100 && !vs.iter().any(|o| o.number != to && o.live()) {
        return Err(ReleaseError::Conflict(format!(
            "{} already has all the traffic",
            v.name()
        )));
    }
    let healthy = matches!(v.state, VersionState::Normal | VersionState::Awaiting) || v.weight > 0;
    if healthy {
        apply_weights(vs, &[(to, 100)], now, why);
        for v in vs.iter_mut() {
            v.release = Release::None;
        }
        settle(vs, now, why);
        return Ok(to);
    }
    // Start-first: the version comes back beside the ones with traffic and takes it once
    // ready; any other release step under way ends.
    for (j, v) in vs.iter_mut().enumerate() {
        v.release = if j == i {
            Release::Promote
        } else {
            Release::None
        };
    }
    settle(vs, now, why);
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
fn confirm(vs: &mut [Version], now: i64, why: &str) -> Result<u32, ReleaseError> {
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
    apply_weights(vs, &[(n, 100)], now, why);
    vs[i].release = Release::None;
    vs[i].state = VersionState::Normal;
    settle(vs, now, why);
    Ok(n)
}

/// `berth release abort`: the blue/green version stops; any traffic it was given goes back
/// to the versions that still have some (refused when it has all of it). Returns the
/// aborted version.
fn abort(vs: &mut [Version], now: i64, why: &str) -> Result<u32, ReleaseError> {
    let i = blue_green(vs)?;
    let n = vs[i].number;
    hand_back(vs, i, "aborted")?;
    vs[i].release = Release::None;
    settle(vs, now, why);
    vs[i].reason = "aborted".into();
    Ok(n)
}

/// Scales weights to add up to 100 (the largest takes the rounding).
fn rescale(ws: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let total: u32 = ws.iter().map(|(_, w)| *w).sum::<u32>().max(1);
    let mut out: Vec<(u32, u32)> = ws.iter().map(|(n, w)| (*n, w * 100 / total)).collect();
    let rest = 100u32.saturating_sub(out.iter().map(|(_, w)| *w).sum::<u32>());
    if let Some(top) = out.iter_mut().max_by_key(|(n, w)| (*w, *n)) {
        top.1 += rest;
    }
    out
}

fn creating(vs: &[Version], number: u32) -> Result<usize, ReleaseError> {
    let i = find(vs, number)?;
    if vs[i].state != VersionState::Creating {
        return Err(ReleaseError::Conflict(format!(
            "{} is {}, not creating",
            vs[i].name(),
            vs[i].state.as_str()
        )));
    }
    Ok(i)
}

/// Every instance of a creating version is ready: a start-first or rolling version takes
/// all the traffic (the others stop), a blue/green one awaits confirmation, any other is
/// normal.
fn ready(vs: &mut [Version], number: u32, now: i64) -> Result<u32, ReleaseError> {
    let i = creating(vs, number)?;
    match vs[i].release {
        Release::Promote | Release::Rolling => {
            let why = format!("superseded by {}", vs[i].name());
            apply_weights(vs, &[(number, 100)], now, &why);
            vs[i].release = Release::None;
            vs[i].state = VersionState::Normal;
            settle(vs, now, &why);
        }
        Release::BlueGreen => vs[i].state = VersionState::Awaiting,
        Release::Standby | Release::None => vs[i].state = VersionState::Normal,
    }
    Ok(number)
}

/// A creating version did not turn healthy: `failed`, its release step ends (so its
/// instances go) and the traffic stays where it is. Traffic it had goes back to the others
/// that have some; with none (a first deploy) it keeps it: there is nothing else to serve.
fn fail(vs: &mut [Version], number: u32, reason: &str, now: i64) -> Result<u32, ReleaseError> {
    let i = creating(vs, number)?;
    // Refused when it has all the traffic: then it keeps it.
    let _ = hand_back(vs, i, "failed");
    vs[i].state = VersionState::Failed;
    vs[i].reason = reason.to_string();
    vs[i].release = Release::None;
    settle(vs, now, reason);
    Ok(number)
}

/// The split the router applies now, per version: `ready(n)` is the number of ready
/// instances of version `n`. During a rolling update every live version's share is its part
/// of the ready instances (the update moves the split batch by batch); otherwise the stored
/// weights, over the versions that have a ready instance (a version with none gives its
/// share to the others). Shares add up to 100, or are all 0 when nothing with traffic is
/// ready. `berth versions` shows these figures and the router routes by them.
pub fn effective_weights(vs: &[&Version], ready: impl Fn(u32) -> u32) -> Vec<(u32, u32)> {
    let rolling = vs
        .iter()
        .any(|v| v.release == Release::Rolling && v.state == VersionState::Creating);
    let shares: Vec<(u32, u64)> = if rolling {
        vs.iter()
            .filter(|v| v.live())
            .map(|v| (v.number, u64::from(ready(v.number))))
            .collect()
    } else {
        vs.iter()
            .filter(|v| v.weight > 0 && ready(v.number) > 0)
            .map(|v| (v.number, u64::from(v.weight)))
            .collect()
    };
    let total: u64 = shares.iter().map(|(_, s)| *s).sum();
    let mut out: Vec<(u32, u32)> = vs.iter().map(|v| (v.number, 0)).collect();
    if total == 0 {
        return out;
    }
    // Largest remainder: floors first, then the points left to the largest remainders
    // (the newest version on a tie).
    let mut rems: Vec<(u64, u32)> = Vec::new();
    let mut given = 0u32;
    for (n, s) in &shares {
        let exact = s * 100;
        let floor = (exact / total) as u32;
        given += floor;
        rems.push((exact % total, *n));
        if let Some(o) = out.iter_mut().find(|(m, _)| m == n) {
            o.1 = floor;
        }
    }
    rems.sort_by(|a, b| b.cmp(a));
    for (_, n) in rems.into_iter().take(100u32.saturating_sub(given) as usize) {
        if let Some(o) = out.iter_mut().find(|(m, _)| *m == n) {
            o.1 += 1;
        }
    }
    out
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
            spec: Default::default(),
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

    fn refs(vs: &[Version]) -> Vec<&Version> {
        vs.iter().collect()
    }

    fn step(vs: &mut Vec<Version>, s: Step, now: i64) -> Result<Option<u32>, ReleaseError> {
        apply(vs, &s, now).map(|a| a.subject)
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
        step(
            &mut vs,
            Step::Deploy(Box::new(v(1, 0, S::Creating, R::Promote))),
            5,
        )
        .expect("deploy");
        assert_eq!(view(&vs), vec![(1, 100, S::Creating, R::None)]);
        step(&mut vs, Step::Ready(1), 6).expect("ready");
        step(
            &mut vs,
            Step::Deploy(Box::new(v(2, 0, S::Creating, R::Promote))),
            6,
        )
        .expect("deploy");
        assert_eq!(
            view(&vs),
            vec![
                (1, 100, S::Normal, R::None),
                (2, 0, S::Creating, R::Promote)
            ]
        );
        // A newer deploy supersedes a version still on its way in: failed, named.
        let a = apply(
            &mut vs,
            &Step::Deploy(Box::new(v(3, 0, S::Creating, R::BlueGreen))),
            7,
        )
        .expect("deploy");
        assert_eq!(
            view(&vs),
            vec![
                (1, 100, S::Normal, R::None),
                (2, 0, S::Failed, R::None),
                (3, 0, S::Creating, R::BlueGreen)
            ]
        );
        assert_eq!(vs[1].reason, "superseded by web-003");
        let msgs: Vec<String> = a.decisions.iter().map(Decision::message).collect();
        assert_eq!(
            msgs,
            [
                "web-002: creating at 0% (promote) -> failed at 0%: superseded by web-003 (cause: deploy of web-003)",
                "web-003 added, creating at 0% (blue-green) (cause: deploy of web-003)"
            ]
        );
        // Ready: awaiting confirmation; the next deploy is refused until confirm or abort,
        // and the refusal changes nothing.
        step(&mut vs, Step::Ready(3), 8).expect("ready");
        let before = vs.clone();
        let err = step(
            &mut vs,
            Step::Deploy(Box::new(v(4, 0, S::Creating, R::Promote))),
            9,
        );
        assert!(
            matches!(&err, Err(ReleaseError::Conflict(m)) if m.contains("release confirm shop/web") && m.contains("release abort shop/web")),
            "{err:?}"
        );
        assert_eq!(vs, before);
        assert_eq!(step(&mut vs, Step::Confirm, 9), Ok(Some(3)));
        assert_eq!(view(&vs)[0], (1, 0, S::Stopped, R::None));
        assert_eq!(vs[2].weight, 100);
    }

    #[test]
    fn a_rolling_update_under_way_refuses_other_releases_and_traffic() {
        let mut vs = vec![
            v(1, 100, S::Normal, R::None),
            v(2, 0, S::Creating, R::Rolling),
        ];
        let before = vs.clone();
        for s in [
            Step::Deploy(Box::new(v(3, 0, S::Creating, R::BlueGreen))),
            Step::Deploy(Box::new(v(3, 0, S::Creating, R::Rolling))),
            Step::Traffic(vec![(1, 100)]),
        ] {
            let err = step(&mut vs, s, 5);
            assert!(
                matches!(&err, Err(ReleaseError::Conflict(m)) if m.contains("rolling update to web-002 is in progress")),
                "{err:?}"
            );
            assert_eq!(vs, before);
        }
        // The split follows the ready instances batch by batch.
        let ready = |n: u32| if n == 1 { 3 } else { 1 };
        assert_eq!(effective_weights(&refs(&vs), ready), vec![(1, 75), (2, 25)]);
        // An explicit rollback stops it; the traffic stays on web-001.
        assert_eq!(step(&mut vs, Step::Rollback(None), 6), Ok(Some(1)));
        assert_eq!(
            view(&vs),
            vec![(1, 100, S::Normal, R::None), (2, 0, S::Stopped, R::None)]
        );
        assert_eq!(vs[1].reason, "rolled back");
    }

    #[test]
    fn traffic_split_rollback_and_failed_versions() {
        let mut vs = vec![
            v(1, 0, S::Stopped, R::None),
            v(2, 0, S::Failed, R::None),
            v(3, 100, S::Normal, R::None),
            v(4, 0, S::Normal, R::Standby),
        ];
        step(&mut vs, Step::Traffic(vec![(4, 90), (3, 10)]), 9).expect("weights");
        assert_eq!(
            view(&vs)[2..],
            [(3, 10, S::Normal, R::None), (4, 90, S::Normal, R::None)]
        );
        // Unknown, failed or stopped versions and bad sums change nothing.
        let before = vs.clone();
        assert!(matches!(
            step(&mut vs, Step::Traffic(vec![(7, 100)]), 9),
            Err(ReleaseError::NotFound(_))
        ));
        assert!(matches!(
            step(&mut vs, Step::Traffic(vec![(2, 100)]), 9),
            Err(ReleaseError::Conflict(_))
        ));
        assert!(matches!(
            step(&mut vs, Step::Traffic(vec![(1, 50), (3, 50)]), 9),
            Err(ReleaseError::Conflict(m)) if m.contains("berth rollback shop/web 001")
        ));
        assert!(step(&mut vs, Step::Traffic(vec![(3, 50)]), 9).is_err());
        assert_eq!(vs, before);
        // Rollback goes to the newest version below the main one that did not fail, at
        // once when it runs healthy.
        assert_eq!(step(&mut vs, Step::Rollback(None), 10), Ok(Some(3)));
        assert_eq!(
            view(&vs),
            vec![
                (1, 0, S::Stopped, R::None),
                (2, 0, S::Failed, R::None),
                (3, 100, S::Normal, R::None),
                (4, 0, S::Stopped, R::None)
            ]
        );
        // To a stopped version: it starts beside web-003 and takes the traffic once ready.
        assert_eq!(step(&mut vs, Step::Rollback(None), 11), Ok(Some(1)));
        assert_eq!(view(&vs)[0], (1, 0, S::Creating, R::Promote));
        assert_eq!(vs[0].since_ms, 11);
        assert_eq!(vs[2].weight, 100);
        step(&mut vs, Step::Ready(1), 12).expect("ready");
        assert_eq!(view(&vs)[0], (1, 100, S::Normal, R::None));
        assert_eq!(view(&vs)[2], (3, 0, S::Stopped, R::None));
        assert!(matches!(
            step(&mut vs, Step::Rollback(Some(1)), 12),
            Err(ReleaseError::Conflict(_))
        ));
        assert!(matches!(
            step(&mut vs, Step::Rollback(None), 12),
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
            step(&mut vs, Step::Confirm, 1),
            Err(ReleaseError::Conflict(_))
        ));
        step(&mut vs, Step::Ready(2), 1).expect("ready");
        assert_eq!(vs[1].state, S::Awaiting);
        // Weights may shift gradually while it waits; it keeps waiting.
        step(&mut vs, Step::Traffic(vec![(1, 70), (2, 30)]), 2).expect("weights");
        assert_eq!(view(&vs)[1], (2, 30, S::Awaiting, R::BlueGreen));
        let mut confirmed = vs.clone();
        assert_eq!(step(&mut confirmed, Step::Confirm, 3), Ok(Some(2)));
        assert_eq!(
            view(&confirmed),
            vec![(1, 0, S::Stopped, R::None), (2, 100, S::Normal, R::None)]
        );
        // All the traffic on it: abort is refused (nothing healthy to go back to).
        let mut all = vs.clone();
        step(&mut all, Step::Traffic(vec![(2, 100)]), 3).expect("weights");
        assert!(matches!(
            step(&mut all, Step::Abort, 3),
            Err(ReleaseError::Conflict(m)) if m.contains("has all the traffic")
        ));
        assert_eq!(step(&mut vs, Step::Abort, 3), Ok(Some(2)));
        assert_eq!(
            view(&vs),
            vec![(1, 100, S::Normal, R::None), (2, 0, S::Stopped, R::None)]
        );
        assert_eq!(vs[1].reason, "aborted");
        assert!(step(&mut vs, Step::Abort, 4).is_err());
    }

    #[test]
    fn a_failed_release_keeps_the_traffic_where_it_was() {
        let mut vs = vec![
            v(1, 100, S::Normal, R::None),
            v(2, 0, S::Creating, R::Rolling),
        ];
        step(&mut vs, Step::Fail(2, "probe failed".into()), 5).expect("fail");
        assert_eq!(
            view(&vs),
            vec![(1, 100, S::Normal, R::None), (2, 0, S::Failed, R::None)]
        );
        // A first deploy that fails keeps the traffic: there is nothing else.
        let mut first = Vec::new();
        step(
            &mut first,
            Step::Deploy(Box::new(v(1, 0, S::Creating, R::Promote))),
            1,
        )
        .expect("deploy");
        step(&mut first, Step::Fail(1, "exit 1".into()), 2).expect("fail");
        assert_eq!(view(&first), vec![(1, 100, S::Failed, R::None)]);
        assert_eq!(rescale(&[(1, 30), (3, 30)]), vec![(1, 50), (3, 50)]);
        assert_eq!(rescale(&[(1, 1), (3, 2)]), vec![(1, 33), (3, 67)]);
    }

    #[test]
    fn effective_weights_follow_ready_instances() {
        let vs = vec![
            v(1, 90, S::Normal, R::None),
            v(2, 10, S::Normal, R::None),
            v(3, 0, S::Awaiting, R::BlueGreen),
        ];
        assert_eq!(
            effective_weights(&refs(&vs), |_| 2),
            vec![(1, 90), (2, 10), (3, 0)]
        );
        // A version without a ready instance gives its share away.
        let no2 = |n: u32| if n == 2 { 0 } else { 1 };
        assert_eq!(
            effective_weights(&refs(&vs), no2),
            vec![(1, 100), (2, 0), (3, 0)]
        );
        assert_eq!(
            effective_weights(&refs(&vs), |_| 0),
            vec![(1, 0), (2, 0), (3, 0)]
        );
        let third = vec![
            v(1, 100, S::Normal, R::None),
            v(2, 0, S::Creating, R::Rolling),
        ];
        assert_eq!(
            effective_weights(&refs(&third), |n| if n == 1 { 2 } else { 1 }),
            vec![(1, 67), (2, 33)]
        );
    }

    /// The model-based test: random sequences of deploys (good or failing, each release
    /// kind), traffic, rollback, confirm, abort, observations, instance health changes and
    /// clock steps; the invariants are checked after every step.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            Deploy {
                good: bool,
                kind: u8,
            },
            Traffic(Vec<(u8, u8)>),
            Rollback(Option<u8>),
            Confirm,
            Abort,
            /// The agent looks at version `idx`: ready when good, failed at its deadline.
            Observe(u8),
            /// A step the agent would not send (any version): refused or applied cleanly.
            Stray {
                ready: bool,
                idx: u8,
            },
            /// Version `idx` now has `n` ready instances.
            Health(u8, u8),
            Clock(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (any::<bool>(), 0u8..4).prop_map(|(good, kind)| Op::Deploy { good, kind }),
                2 => proptest::collection::vec((0u8..12, 0u8..=100), 1..4).prop_map(Op::Traffic),
                1 => proptest::option::of(0u8..12).prop_map(Op::Rollback),
                1 => Just(Op::Confirm),
                1 => Just(Op::Abort),
                4 => (0u8..12).prop_map(Op::Observe),
                1 => (any::<bool>(), 0u8..12).prop_map(|(ready, idx)| Op::Stray { ready, idx }),
                2 => (0u8..12, 0u8..4).prop_map(|(i, n)| Op::Health(i, n)),
                1 => (0u16..5000).prop_map(Op::Clock),
            ]
        }

        struct World {
            vs: Vec<Version>,
            next: u32,
            good: BTreeMap<u32, bool>,
            ready: BTreeMap<u32, u32>,
            now: i64,
            /// Some version has had traffic while it ran healthy.
            served_healthy: bool,
        }

        impl World {
            fn number(&self, idx: u8) -> u32 {
                // Mostly existing versions, sometimes one that does not exist.
                if self.vs.is_empty() || idx as usize > self.vs.len() {
                    u32::from(idx) + 100
                } else {
                    self.vs[idx as usize % self.vs.len()].number
                }
            }

            fn step(&mut self, op: &Op) -> Option<Step> {
                Some(match op {
                    Op::Deploy { good, kind } => {
                        self.next += 1;
                        self.good.insert(self.next, *good);
                        let release =
                            [R::Promote, R::Rolling, R::Standby, R::BlueGreen][*kind as usize % 4];
                        Step::Deploy(Box::new(v(self.next, 0, S::Creating, release)))
                    }
                    Op::Traffic(ws) => {
                        let mut out: Vec<(u32, u32)> = Vec::new();
                        for (i, w) in ws {
                            let n = self.number(*i);
                            if !out.iter().any(|(m, _)| *m == n) {
                                out.push((n, u32::from(*w)));
                            }
                        }
                        // Mostly valid sums.
                        let sum: u32 = out.iter().map(|(_, w)| *w).sum();
                        if sum != 100
                            && ws.len() % 2 == 1
                            && let Some(last) = out.last_mut()
                        {
                            last.1 = 100u32.saturating_sub(sum - last.1);
                        }
                        Step::Traffic(out)
                    }
                    Op::Rollback(i) => Step::Rollback(i.map(|i| self.number(i))),
                    Op::Confirm => Step::Confirm,
                    Op::Abort => Step::Abort,
                    Op::Observe(i) => {
                        let n = self.number(*i);
                        let v = self.vs.iter().find(|v| v.number == n)?;
                        if v.state != S::Creating {
                            return None;
                        }
                        if self.good.get(&n).copied().unwrap_or(false) {
                            self.ready.insert(n, 2);
                            Step::Ready(n)
                        } else {
                            Step::Fail(n, "probe failed: connection refused".into())
                        }
                    }
                    Op::Stray { ready, idx } => {
                        let n = self.number(*idx);
                        if *ready {
                            Step::Ready(n)
                        } else {
                            Step::Fail(n, "deadline".into())
                        }
                    }
                    Op::Health(i, k) => {
                        let n = self.number(*i);
                        self.ready.insert(n, u32::from(*k));
                        return None;
                    }
                    Op::Clock(ms) => {
                        self.now += i64::from(*ms);
                        return None;
                    }
                })
            }

            /// Versions that run no instances have none ready.
            fn ready_of(&self, n: u32) -> u32 {
                let live = self.vs.iter().any(|v| v.number == n && v.live());
                if live {
                    self.ready.get(&n).copied().unwrap_or(0)
                } else {
                    0
                }
            }

            fn check(
                &mut self,
                step: &Step,
                before: &[Version],
                result: &Result<Applied, ReleaseError>,
            ) {
                let vs = &self.vs;
                let names = || format!("{:?}", view(vs));
                match result {
                    Err(_) => assert_eq!(vs.as_slice(), before, "a refused step changed something"),
                    Ok(a) => {
                        let cause = step.cause("web");
                        assert!(!cause.is_empty());
                        for d in &a.decisions {
                            assert_eq!(d.cause, cause);
                            assert!(d.message().contains(&cause), "{}", d.message());
                            assert!(d.message().contains(&d.version));
                        }
                        // Every change has its decision.
                        for v in vs {
                            let b = before.iter().find(|b| b.number == v.number);
                            let changed = b.is_none_or(|b| {
                                (b.state, b.weight, b.release, &b.reason)
                                    != (v.state, v.weight, v.release, &v.reason)
                            });
                            assert_eq!(
                                changed,
                                a.decisions.iter().any(|d| d.number == v.number),
                                "{}",
                                names()
                            );
                        }
                        // A deploy never moves traffic between existing versions.
                        if let Step::Deploy(_) = step {
                            for b in before {
                                let now =
                                    vs.iter().find(|v| v.number == b.number).map(|v| v.weight);
                                assert_eq!(
                                    now,
                                    Some(b.weight),
                                    "a deploy moved traffic: {}",
                                    names()
                                );
                            }
                            assert_eq!(admit(before), Ok(()));
                        }
                    }
                }
                if let (Step::Deploy(_), Err(_)) = (step, result) {
                    assert!(
                        admit(before).is_err(),
                        "a deploy refused for another reason"
                    );
                }
                // Weights: whole percents adding up to 100 once anything was deployed.
                let sum: u32 = vs.iter().map(|v| v.weight).sum();
                assert_eq!(sum, if vs.is_empty() { 0 } else { 100 }, "{}", names());
                // A version with traffic runs healthy, or nothing has yet (the last one).
                for v in vs.iter().filter(|v| v.weight > 0) {
                    if matches!(v.state, S::Normal | S::Awaiting) {
                        self.served_healthy = true;
                    }
                }
                for v in vs.iter().filter(|v| v.weight > 0) {
                    assert!(
                        matches!(v.state, S::Normal | S::Awaiting) || !self.served_healthy,
                        "{} has traffic but is {}: {}",
                        v.name(),
                        v.state.as_str(),
                        names()
                    );
                    if v.state == S::Failed {
                        assert_eq!(
                            v.weight,
                            100,
                            "a failed version shares traffic: {}",
                            names()
                        );
                    }
                }
                // At most one release step per service.
                let releases = vs.iter().filter(|v| v.release != R::None).count();
                assert!(releases <= 1, "{}", names());
                // States agree with liveness: nothing normal without instances.
                for v in vs {
                    match v.state {
                        S::Creating | S::Normal | S::Awaiting => {
                            assert!(
                                v.live(),
                                "{} is {} but runs nothing: {}",
                                v.name(),
                                v.state.as_str(),
                                names()
                            )
                        }
                        S::Stopped => assert!(!v.live(), "{}", names()),
                        S::Failed => assert_eq!(v.release, R::None),
                    }
                    if v.state == S::Awaiting {
                        assert_eq!(v.release, R::BlueGreen);
                    }
                }
                // The router's split: adds up to 100 when anything serving is ready, and
                // only versions with ready instances get a share.
                let eff = effective_weights(&refs(vs), |n| self.ready_of(n));
                let total: u32 = eff.iter().map(|(_, w)| *w).sum();
                assert!(total == 100 || total == 0, "{eff:?}");
                for (n, w) in &eff {
                    if *w > 0 {
                        assert!(self.ready_of(*n) > 0, "{n} routed without ready instances");
                        let v = vs.iter().find(|v| v.number == *n).expect("version");
                        assert!(v.live() && v.state != S::Stopped);
                    }
                }
                let serving_ready = vs
                    .iter()
                    .filter(|v| v.weight > 0 || v.release == R::Rolling)
                    .any(|v| self.ready_of(v.number) > 0);
                if rolling(vs).is_none() {
                    assert_eq!(total == 100, serving_ready, "{eff:?} {}", names());
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 3000,
                rng_seed: proptest::test_runner::RngSeed::Fixed(0xbe47),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]
            #[test]
            fn release_state_machine_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..60)) {
                let mut w = World {
                    vs: Vec::new(),
                    next: 0,
                    good: BTreeMap::new(),
                    ready: BTreeMap::new(),
                    now: 1,
                    served_healthy: false,
                };
                for op in &ops {
                    let Some(step) = w.step(op) else { continue };
                    let before = w.vs.clone();
                    let result = apply(&mut w.vs, &step, w.now);
                    w.check(&step, &before, &result);
                }
            }
        }
    }

    #[test]
    fn a_deploy_chooses_the_release_from_the_flags_and_the_service() {
        let plain = ServiceSpec::default();
        let serving = [v(1, 100, VersionState::Normal, Release::Promote)];
        let choose =
            |svc: &ServiceSpec, bg: bool, none: bool| choose("web", svc, &serving, bg, none);
        assert_eq!(choose(&plain, false, false), Ok(Release::Promote));
        assert_eq!(choose(&plain, true, false), Ok(Release::BlueGreen));
        assert_eq!(choose(&plain, false, true), Ok(Release::Standby));
        // Batches asked for: update_config other than start-first.
        let mut batched = plain.clone();
        batched.update_config = Some(crate::model::UpdateConfig {
            parallelism: 2,
            delay_ms: None,
            failure_action: None,
            order: None,
        });
        assert_eq!(choose(&batched, false, false), Ok(Release::Rolling));
        // A fixed host port: two versions cannot run at once, so it rolls, and refuses the
        // releases that need both.
        let mut pinned = plain.clone();
        pinned.ports.push(crate::model::PortSpec {
            container_port: 80,
            host_port: Some(8080),
            host_ip: None,
            protocol: crate::model::Protocol::Tcp,
        });
        assert_eq!(choose(&pinned, false, false), Ok(Release::Rolling));
        assert!(matches!(
            choose(&pinned, true, false),
            Err(ReleaseError::Conflict(m)) if m.contains("fixed host ports")
        ));
        // Nothing serving yet: a blue/green first release of a pinned service is allowed.
        assert_eq!(
            super::choose("web", &pinned, &[], true, false),
            Ok(Release::BlueGreen)
        );
    }
}
