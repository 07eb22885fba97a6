//! The larger compound service keys: `deploy`, `healthcheck`, `logging`, `ulimits`,
//! service-level `networks`.

use super::ext;
use super::service::{int, parse_cpus, values_list};
use super::values::{
    as_hash, boolean, duration_ms, key_str, scalar, size_bytes, string_list, string_map,
};
use super::{SpecError, invalid};
use crate::model::*;
use std::collections::BTreeMap;
use yaml_rust2::Yaml;

pub(super) fn parse_ulimits(v: &Yaml, loc: &str) -> Result<Vec<Ulimit>, SpecError> {
    let mut out = Vec::new();
    for (k, val) in as_hash(v, loc)? {
        let name = key_str(k, loc)?;
        let (soft, hard) = match val {
            Yaml::Hash(h) => {
                let get = |f: &str| -> Result<i64, SpecError> {
                    match h.get(&Yaml::String(f.into())) {
                        Some(x) => int(x, &format!("{loc}.{name}.{f}"), -1, i64::MAX),
                        None => Err(invalid(loc, format!("ulimit {name:?} needs soft and hard"))),
                    }
                };
                (get("soft")?, get("hard")?)
            }
            other => {
                let n = int(other, loc, -1, i64::MAX)?;
                (n, n)
            }
        };
        out.push(Ulimit { name, soft, hard });
    }
    Ok(out)
}

pub(super) fn parse_healthcheck(v: &Yaml, loc: &str) -> Result<Option<Healthcheck>, SpecError> {
    let h = as_hash(v, loc)?;
    let mut hc = Healthcheck {
        test: Vec::new(),
        interval_ms: None,
        timeout_ms: None,
        retries: None,
        start_period_ms: None,
    };
    let mut disable = false;
    for (k, val) in h {
        let key = key_str(k, loc)?;
        let kloc = format!("{loc}.{key}");
        match key.as_str() {
            "test" => {
                hc.test = match val {
                    Yaml::Array(_) => string_list(val, &kloc)?,
                    other => vec!["CMD-SHELL".into(), scalar(other, &kloc)?],
                }
            }
            "interval" => hc.interval_ms = Some(duration_ms(val, &kloc)?),
            "timeout" => hc.timeout_ms = Some(duration_ms(val, &kloc)?),
            "start_period" => hc.start_period_ms = Some(duration_ms(val, &kloc)?),
            "retries" => hc.retries = Some(int(val, &kloc, 0, 1000)? as u32),
            "disable" => disable = boolean(val, &kloc)?,
            _ => {
                return Err(SpecError::UnknownKey {
                    location: loc.to_string(),
                    key,
                });
            }
        }
    }
    if disable {
        return Ok(Some(Healthcheck {
            test: vec!["NONE".into()],
            interval_ms: None,
            timeout_ms: None,
            retries: None,
            start_period_ms: None,
        }));
    }
    match hc.test.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL" | "NONE") => Ok(Some(hc)),
        None => Err(invalid(loc, "`test` is missing")),
        Some(_) => {
            // A plain list is a CMD, as the engine reads it.
            hc.test.insert(0, "CMD".into());
            Ok(Some(hc))
        }
    }
}

pub(super) fn parse_logging(v: &Yaml, loc: &str) -> Result<Logging, SpecError> {
    let h = as_hash(v, loc)?;
    let mut l = Logging {
        driver: "json-file".into(),
        options: BTreeMap::new(),
    };
    for (k, val) in h {
        let key = key_str(k, loc)?;
        match key.as_str() {
            "driver" => l.driver = scalar(val, loc)?,
            "options" => l.options = string_map(val, loc, false)?,
            _ => {
                return Err(SpecError::UnknownKey {
                    location: loc.to_string(),
                    key,
                });
            }
        }
    }
    if !matches!(l.driver.as_str(), "json-file" | "local") {
        // berth collects logs through the engine's log API; drivers that do not keep logs
        // locally would leave `berth logs` empty.
        return Err(invalid(
            loc,
            format!(
                "logging driver {:?}: berth collects logs itself, use json-file or local (and berth's log export)",
                l.driver
            ),
        ));
    }
    Ok(l)
}

pub(super) fn parse_service_networks(v: &Yaml, loc: &str) -> Result<Vec<String>, SpecError> {
    let mut aliases = Vec::new();
    match v {
        Yaml::Array(_) => {
            string_list(v, loc)?;
        }
        Yaml::Hash(h) => {
            for (_, body) in h {
                if let Yaml::Hash(bh) = body {
                    for (k, val) in bh {
                        match key_str(k, loc)?.as_str() {
                            "aliases" => aliases.extend(string_list(val, loc)?),
                            "ipv4_address" | "ipv6_address" => {
                                return Err(SpecError::Unsupported {
                                    location: loc.to_string(),
                                    key: key_str(k, loc)?,
                                    hint: "berth starts a new version beside the old one and runs replicas, which cannot share one fixed address: reach the service by its name or an alias (`aliases:`), which every service resolves on the app network".into(),
                                });
                            }
                            // The order of a container's networks: berth joins one.
                            "priority" | "gw_priority" => {}
                            k @ ("link_local_ips" | "mac_address" | "interface_name"
                            | "driver_opts") => {
                                return Err(SpecError::Unsupported {
                                    location: loc.to_string(),
                                    key: k.to_string(),
                                    hint: "berth joins each instance to the app's network with the engine's defaults (versions run side by side and replicas, which cannot share fixed link settings): reach services by name".into(),
                                });
                            }
                            other => {
                                return Err(SpecError::UnknownKey {
                                    location: loc.to_string(),
                                    key: other.to_string(),
                                });
                            }
                        }
                    }
                }
            }
        }
        Yaml::Null => {}
        _ => return Err(invalid(loc, "expected a list of networks or a map")),
    }
    Ok(aliases)
}

/// What `deploy:` sets beside the service's own fields, for the caller to reconcile with the
/// service-level keys it overlaps (`scale`, `pids_limit`, `restart`).
#[derive(Default)]
pub(super) struct Deploy {
    pub replicas: Option<u32>,
    pub pids: Option<i64>,
    /// `mode: replicated-job` / `global-job`: each instance runs to completion.
    pub job: bool,
    /// `restart_policy` was given.
    pub restart: bool,
}

/// `deploy:`, every key of the compose specification's deploy section: each one applied,
/// or accepted with a warning that says what berth does instead, or refused with the reason.
pub(super) fn parse_deploy(
    v: &Yaml,
    loc: &str,
    s: &mut ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<Deploy, SpecError> {
    let mut d = Deploy::default();
    for (k, val) in as_hash(v, loc)? {
        let key = key_str(k, loc)?;
        let kloc = format!("{loc}.{key}");
        match key.as_str() {
            "replicas" => d.replicas = Some(int(val, &kloc, 0, ext::MAX_REPLICAS as i64)? as u32),
            "mode" => match scalar(val, &kloc)?.as_str() {
                "replicated" => {}
                "global" => s.global = true,
                "replicated-job" => d.job = true,
                "global-job" => {
                    s.global = true;
                    d.job = true;
                }
                other => {
                    return Err(invalid(
                        &kloc,
                        format!(
                            "{other:?}: use replicated, global, replicated-job or global-job"
                        ),
                    ));
                }
            },
            "resources" => parse_resources(val, &kloc, s, &mut d)?,
            "restart_policy" => {
                d.restart = true;
                s.restart = parse_restart_policy(val, &kloc, warnings)?;
            }
            "placement" => parse_placement(val, &kloc, s)?,
            "update_config" => s.update_config = Some(parse_update_config(val, &kloc, warnings)?),
            "rollback_config" => {
                parse_update_config(val, &kloc, &mut Vec::new())?;
                warnings.push(format!(
                    "{kloc}: not applied: `berth rollback` starts the earlier version beside the current one and moves the traffic to it once it is ready, not in batches"
                ));
            }
            "endpoint_mode" => match scalar(val, &kloc)?.as_str() {
                // What berth does: a service's name resolves to each instance's address.
                "dnsrr" => {}
                "vip" => warnings.push(format!(
                    "{kloc}: vip: berth has no virtual IP; the service's name resolves to the address of each of its instances (dnsrr), and the router balances published traffic"
                )),
                other => {
                    return Err(invalid(&kloc, format!("{other:?}: use vip or dnsrr")));
                }
            },
            "labels" => {
                string_map(val, &kloc, true)?;
                warnings.push(format!(
                    "{kloc}: not applied: they label a Swarm service, which berth does not have; put labels for the containers under the service's `labels:`"
                ));
            }
            _ => {
                return Err(SpecError::UnknownKey {
                    location: loc.to_string(),
                    key,
                });
            }
        }
    }
    Ok(d)
}

fn unknown(location: &str, key: String) -> SpecError {
    SpecError::UnknownKey {
        location: location.to_string(),
        key,
    }
}

fn parse_resources(
    v: &Yaml,
    loc: &str,
    s: &mut ServiceSpec,
    d: &mut Deploy,
) -> Result<(), SpecError> {
    for (rk, rv) in as_hash(v, loc)? {
        let rkey = key_str(rk, loc)?;
        let rloc = format!("{loc}.{rkey}");
        let limits = match rkey.as_str() {
            "limits" => true,
            "reservations" => false,
            _ => return Err(unknown(loc, rkey)),
        };
        for (lk, lv) in as_hash(rv, &rloc)? {
            let lkey = key_str(lk, &rloc)?;
            let lloc = format!("{rloc}.{lkey}");
            match (limits, lkey.as_str()) {
                (true, "cpus") => s.nano_cpus = Some(parse_cpus(lv, &lloc)?),
                (true, "memory") => s.mem_limit = Some(size_bytes(lv, &lloc)?),
                (true, "pids") => d.pids = Some(int(lv, &lloc, -1, i64::from(i32::MAX))?),
                // Room a host must have: placement across hosts weighs it (compose applies
                // the memory one as the engine's soft limit, and so does berth).
                (false, "cpus") => s.reserved_nano_cpus = Some(parse_cpus(lv, &lloc)?),
                (false, "memory") => s.engine.mem_reservation = Some(size_bytes(lv, &lloc)?),
                (false, "devices") => {
                    for item in values_list(lv, &lloc)? {
                        s.device_requests.push(parse_device_request(item, &lloc)?);
                    }
                }
                (false, "generic_resources") => {
                    return Err(SpecError::Unsupported {
                        location: rloc,
                        key: lkey,
                        hint: "named resources are advertised by Swarm nodes, which berth's hosts are not: request GPUs under `devices:` (capabilities: [gpu]) or with the `berth.gpu` label".into(),
                    });
                }
                _ => return Err(unknown(&rloc, lkey)),
            }
        }
    }
    Ok(())
}

/// A `devices:` entry: `capabilities` (required), `count` (a number or `all`) or
/// `device_ids`, `driver`, `options`, as compose passes them to the engine.
fn parse_device_request(v: &Yaml, loc: &str) -> Result<DeviceRequestSpec, SpecError> {
    let mut r = DeviceRequestSpec {
        driver: None,
        count: None,
        device_ids: Vec::new(),
        capabilities: Vec::new(),
        options: BTreeMap::new(),
    };
    let mut count_given = false;
    for (k, val) in as_hash(v, loc)? {
        let key = key_str(k, loc)?;
        let kloc = format!("{loc}.{key}");
        match key.as_str() {
            "capabilities" => r.capabilities = string_list(val, &kloc)?,
            "count" => {
                count_given = true;
                let c = scalar(val, &kloc)?;
                r.count = match c.as_str() {
                    "all" => None,
                    _ => Some(int(val, &kloc, 1, 1024)? as u32),
                };
            }
            "device_ids" => r.device_ids = string_list(val, &kloc)?,
            "driver" => r.driver = Some(scalar(val, &kloc)?),
            "options" => r.options = string_map(val, &kloc, false)?,
            _ => return Err(unknown(loc, key)),
        }
    }
    if r.capabilities.is_empty() {
        return Err(invalid(
            loc,
            "a device request needs `capabilities` (for a GPU: [gpu])",
        ));
    }
    if count_given && !r.device_ids.is_empty() {
        return Err(invalid(
            loc,
            "`count` and `device_ids` cannot both be set: keep one of them",
        ));
    }
    Ok(r)
}

fn parse_restart_policy(
    v: &Yaml,
    loc: &str,
    warnings: &mut Vec<String>,
) -> Result<RestartPolicy, SpecError> {
    let mut cond = "any".to_string();
    let mut max = None;
    for (rk, rv) in as_hash(v, loc)? {
        let rkey = key_str(rk, loc)?;
        let rloc = format!("{loc}.{rkey}");
        match rkey.as_str() {
            "condition" => cond = scalar(rv, &rloc)?,
            "max_attempts" => max = Some(int(rv, &rloc, 0, 1_000_000)? as u32),
            "delay" | "window" => {
                duration_ms(rv, &rloc)?;
                warnings.push(format!(
                    "{rloc}: not applied: the engine restarts a container with its own back-off (100 ms, doubling up to a minute)"
                ));
            }
            _ => return Err(unknown(loc, rkey)),
        }
    }
    Ok(match cond.as_str() {
        "none" => RestartPolicy::No,
        "on-failure" => RestartPolicy::OnFailure { max_retries: max },
        "any" => {
            if max.is_some() {
                warnings.push(format!(
                    "{loc}.max_attempts: applies only with condition on-failure; with any the container is always brought back"
                ));
            }
            RestartPolicy::UnlessStopped
        }
        other => {
            return Err(invalid(
                loc,
                format!("condition {other:?}: use none, on-failure or any"),
            ));
        }
    })
}

fn parse_placement(v: &Yaml, loc: &str, s: &mut ServiceSpec) -> Result<(), SpecError> {
    for (pk, pv) in as_hash(v, loc)? {
        let pkey = key_str(pk, loc)?;
        let ploc = format!("{loc}.{pkey}");
        match pkey.as_str() {
            "constraints" => {
                for c in string_list(pv, &ploc)? {
                    s.placement.push(ext::parse_swarm_constraint(&c, &ploc)?);
                }
            }
            // `- spread: node.labels.zone`: instances spread over the label's values.
            "preferences" => {
                for item in values_list(pv, &ploc)? {
                    for (ik, iv) in as_hash(item, &ploc)? {
                        let ikey = key_str(ik, &ploc)?;
                        if ikey != "spread" {
                            return Err(unknown(&ploc, ikey));
                        }
                        let what = scalar(iv, &ploc)?;
                        match what.strip_prefix("node.labels.") {
                            Some(label) if !label.is_empty() => s.spread.push(label.to_string()),
                            _ => {
                                return Err(invalid(
                                    &ploc,
                                    format!(
                                        "spread: {what:?}: spread over a node label, written node.labels.NAME"
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            "max_replicas_per_node" => {
                s.max_per_node = Some(int(pv, &ploc, 1, ext::MAX_REPLICAS as i64)? as u32);
            }
            _ => return Err(unknown(loc, pkey)),
        }
    }
    Ok(())
}

fn parse_update_config(
    v: &Yaml,
    loc: &str,
    warnings: &mut Vec<String>,
) -> Result<UpdateConfig, SpecError> {
    let mut uc = UpdateConfig {
        parallelism: 1,
        delay_ms: None,
        failure_action: None,
        order: None,
    };
    for (uk, uv) in as_hash(v, loc)? {
        let ukey = key_str(uk, loc)?;
        let uloc = format!("{loc}.{ukey}");
        match ukey.as_str() {
            "parallelism" => uc.parallelism = int(uv, &uloc, 0, 1000)? as u32,
            "delay" => {
                let ms = duration_ms(uv, &uloc)?;
                if ms > 0 {
                    warnings.push(format!(
                        "{uloc}: not applied: berth starts the next batch as soon as the previous one runs ready"
                    ));
                }
                uc.delay_ms = Some(ms);
            }
            "failure_action" => {
                let a = scalar(uv, &uloc)?;
                match a.as_str() {
                    "rollback" => {}
                    "pause" | "continue" => warnings.push(format!(
                        "{uloc}: {a}: berth rolls a failed update back (the traffic stays on the version that served it); `berth versions` shows why it failed"
                    )),
                    _ => {
                        return Err(invalid(
                            &uloc,
                            format!("{a:?}: use continue, rollback or pause"),
                        ));
                    }
                }
                uc.failure_action = Some(match a.as_str() {
                    "continue" => FailureAction::Continue,
                    "pause" => FailureAction::Pause,
                    _ => FailureAction::Rollback,
                });
            }
            "order" => {
                let o = scalar(uv, &uloc)?;
                uc.order = Some(match o.as_str() {
                    "stop-first" => UpdateOrder::StopFirst,
                    "start-first" => UpdateOrder::StartFirst,
                    _ => {
                        return Err(invalid(
                            &uloc,
                            format!("{o:?}: use stop-first or start-first"),
                        ));
                    }
                });
            }
            "monitor" => {
                duration_ms(uv, &uloc)?;
                warnings.push(format!(
                    "{uloc}: not applied: berth watches each batch until its instances run ready (health checks and probes), within the version deadline"
                ));
            }
            "max_failure_ratio" => {
                let r = scalar(uv, &uloc)?;
                match r.parse::<f64>() {
                    Ok(f) if (0.0..=1.0).contains(&f) => {
                        if f > 0.0 {
                            warnings.push(format!(
                                "{uloc}: not applied: berth fails an update at its first failed instance"
                            ));
                        }
                    }
                    _ => {
                        return Err(invalid(
                            &uloc,
                            format!("{r:?}: use a fraction between 0 and 1"),
                        ));
                    }
                }
            }
            _ => return Err(unknown(loc, ukey)),
        }
    }
    Ok(uc)
}
