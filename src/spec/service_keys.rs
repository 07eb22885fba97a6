//! The larger compound service keys: `deploy`, `healthcheck`, `logging`, `ulimits`,
//! service-level `networks`.

use super::ext;
use super::service::{int, parse_cpus};
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

pub(super) fn parse_deploy(
    v: &Yaml,
    loc: &str,
    s: &mut ServiceSpec,
    replicas: &mut Option<u32>,
) -> Result<(), SpecError> {
    for (k, val) in as_hash(v, loc)? {
        let key = key_str(k, loc)?;
        let kloc = format!("{loc}.{key}");
        match key.as_str() {
            "replicas" => *replicas = Some(int(val, &kloc, 0, ext::MAX_REPLICAS as i64)? as u32),
            "mode" => match scalar(val, &kloc)?.as_str() {
                "replicated" => {}
                "global" => s.global = true,
                other => {
                    return Err(invalid(
                        &kloc,
                        format!("{other:?}: use replicated or global"),
                    ));
                }
            },
            "resources" => {
                for (rk, rv) in as_hash(val, &kloc)? {
                    let rkey = key_str(rk, &kloc)?;
                    let rloc = format!("{kloc}.{rkey}");
                    match rkey.as_str() {
                        "limits" => {
                            for (lk, lv) in as_hash(rv, &rloc)? {
                                let lkey = key_str(lk, &rloc)?;
                                let lloc = format!("{rloc}.{lkey}");
                                match lkey.as_str() {
                                    "cpus" => s.nano_cpus = Some(parse_cpus(lv, &lloc)?),
                                    "memory" => s.mem_limit = Some(size_bytes(lv, &lloc)?),
                                    "pids" => {}
                                    _ => {
                                        return Err(SpecError::UnknownKey {
                                            location: rloc,
                                            key: lkey,
                                        });
                                    }
                                }
                            }
                        }
                        // Reservations guide placement (later); accepted and validated.
                        "reservations" => {
                            as_hash(rv, &rloc)?;
                        }
                        _ => {
                            return Err(SpecError::UnknownKey {
                                location: kloc,
                                key: rkey,
                            });
                        }
                    }
                }
            }
            "restart_policy" => {
                let h = as_hash(val, &kloc)?;
                let cond = match h.get(&Yaml::String("condition".into())) {
                    Some(c) => scalar(c, &kloc)?,
                    None => "any".into(),
                };
                let max = match h.get(&Yaml::String("max_attempts".into())) {
                    Some(m) => Some(int(m, &kloc, 0, 1_000_000)? as u32),
                    None => None,
                };
                for (rk, _) in h {
                    let rkey = key_str(rk, &kloc)?;
                    if !matches!(
                        rkey.as_str(),
                        "condition" | "max_attempts" | "delay" | "window"
                    ) {
                        return Err(SpecError::UnknownKey {
                            location: kloc,
                            key: rkey,
                        });
                    }
                }
                s.restart = match cond.as_str() {
                    "none" => RestartPolicy::No,
                    "on-failure" => RestartPolicy::OnFailure { max_retries: max },
                    "any" => RestartPolicy::UnlessStopped,
                    other => {
                        return Err(invalid(
                            &kloc,
                            format!("condition {other:?}: use none, on-failure or any"),
                        ));
                    }
                };
            }
            "placement" => {
                for (pk, pv) in as_hash(val, &kloc)? {
                    let pkey = key_str(pk, &kloc)?;
                    match pkey.as_str() {
                        "constraints" => {
                            for c in string_list(pv, &kloc)? {
                                s.placement.push(ext::parse_swarm_constraint(&c, &kloc)?);
                            }
                        }
                        "preferences" | "max_replicas_per_node" => {}
                        _ => {
                            return Err(SpecError::UnknownKey {
                                location: kloc,
                                key: pkey,
                            });
                        }
                    }
                }
            }
            "update_config" | "rollback_config" => {
                let mut uc = UpdateConfig {
                    parallelism: 1,
                    delay_ms: None,
                    failure_action: None,
                    order: None,
                };
                for (uk, uv) in as_hash(val, &kloc)? {
                    let ukey = key_str(uk, &kloc)?;
                    let uloc = format!("{kloc}.{ukey}");
                    match ukey.as_str() {
                        "parallelism" => uc.parallelism = int(uv, &uloc, 0, 1000)? as u32,
                        "delay" => uc.delay_ms = Some(duration_ms(uv, &uloc)?),
                        "failure_action" => {
                            let a = scalar(uv, &uloc)?;
                            if !matches!(a.as_str(), "continue" | "rollback" | "pause") {
                                return Err(invalid(
                                    &uloc,
                                    format!("{a:?}: use continue, rollback or pause"),
                                ));
                            }
                            uc.failure_action = Some(a);
                        }
                        "order" => {
                            let o = scalar(uv, &uloc)?;
                            if !matches!(o.as_str(), "stop-first" | "start-first") {
                                return Err(invalid(
                                    &uloc,
                                    format!("{o:?}: use stop-first or start-first"),
                                ));
                            }
                            uc.order = Some(o);
                        }
                        "monitor" | "max_failure_ratio" => {}
                        _ => {
                            return Err(SpecError::UnknownKey {
                                location: kloc,
                                key: ukey,
                            });
                        }
                    }
                }
                if key == "update_config" {
                    s.update_config = Some(uc);
                }
            }
            "labels" | "endpoint_mode" => {}
            _ => {
                return Err(SpecError::UnknownKey {
                    location: loc.to_string(),
                    key,
                });
            }
        }
    }
    Ok(())
}
