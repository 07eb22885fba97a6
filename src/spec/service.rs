//! One compose service -> [`ServiceSpec`]: every supported key, refused keys with a reason.

use super::ext::{self, AppLabels};
use super::files::Kind;
use super::service_keys::{
    parse_deploy, parse_healthcheck, parse_logging, parse_service_networks, parse_ulimits,
};
use super::values::{
    self, as_hash, boolean, duration_ms, key_str, scalar, size_bytes, string_list, string_map,
};
use super::{SpecError, invalid};
use crate::model::*;

/// The template's top-level secrets and configs, which services refer to.
#[derive(Debug, Default)]
pub(super) struct Defined {
    pub secrets: super::files::Defined,
    pub configs: super::files::Defined,
}
use std::collections::BTreeMap;
use yaml_rust2::Yaml;

/// Keys refused on purpose, with the reason shown to the user.
fn refused_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "build" | "dockerfile" => {
            "berth has no image builder on the host: build the image elsewhere and `berth image load` it (or push it to a registry the host reaches)"
        }
        "pid" | "ipc" | "cgroup_parent" | "userns_mode" | "uts" => {
            "berth runs services isolated; this host-namespace option is not available"
        }
        "cpu_count" | "cpu_percent" | "credential_spec" | "isolation" => {
            "it applies to Windows containers only; berth runs Linux containers (use `cpus` for a CPU limit)"
        }
        "mac_address" => {
            "berth starts a new version beside the old one and runs replicas, which cannot share one MAC address"
        }
        "use_api_socket" => {
            "it would hand the container the engine's socket, which is root on the host"
        }
        "extends" => {
            "berth does not merge services across files or entries yet: write the service out in full (`docker compose config` prints it merged)"
        }
        "label_file" => "berth does not read label files yet: write the labels under `labels:`",
        "blkio_config" => "berth sets no block-I/O weights or limits yet: remove it",
        "gpus" => {
            "berth does not pass GPU requests from this key yet: use the `berth.gpu` label (COMPOSE-LABELS.md)"
        }
        "post_start" | "pre_start" | "pre_stop" => {
            "berth runs no lifecycle hooks yet: run the step in the image's entrypoint or as a one-shot service"
        }
        "models" | "provider" => {
            "it is a docker compose feature (model runner, providers) that berth does not have"
        }
        "pull_refresh_after" => {
            "berth pulls at a deploy (pull_policy always, missing, never, or `berth deploy --pull`), not on a timer"
        }
        _ => return None,
    })
}

/// The most ports an external service names.
const MAX_EXTERNAL_PORTS: usize = 64;

/// A service written `external: {host, ports}` (the seed's outside address, e.g. a cloud
/// database): `None` for a service with a container. Only `external:` (and `labels:`,
/// which have nothing to act on and are ignored) may be given; the host is a DNS name or
/// an address, checked for shape only (whether it resolves is the deploy's warning).
pub(super) fn parse_external(
    name: &str,
    node: &Yaml,
) -> Result<Option<crate::model::ExternalService>, SpecError> {
    let Some(ext) = values::key_of(node, "external") else {
        return Ok(None);
    };
    let sloc = format!("service {name:?}");
    let loc = format!("{sloc}, key `external`");
    if let Yaml::Hash(h) = node {
        for (k, _) in h {
            let key = key_str(k, &sloc)?;
            if key == "image" {
                return Err(invalid(
                    format!("{sloc}, key `image`"),
                    "a service is either a container (`image:`) or an address outside (`external:`), not both: keep one",
                ));
            }
            if !matches!(key.as_str(), "external" | "labels") && !key.starts_with("x-") {
                return Err(invalid(
                    format!("{sloc}, key `{key}`"),
                    "an `external:` service is an address outside, not a container: it takes only `external:` (host, ports); remove this key",
                ));
            }
        }
    }
    let h = as_hash(ext, &loc)?;
    let mut out = crate::model::ExternalService::default();
    for (k, v) in h {
        let key = key_str(k, &loc)?;
        match key.as_str() {
            "host" => {
                let host = scalar(v, &format!("{loc}, `host`"))?;
                if !external_host(&host) {
                    return Err(invalid(
                        format!("{loc}, `host`"),
                        format!(
                            "{host:?} is not a host name or an address: write it as in the guide, like rds1234.mysql.rds.aliyuncs.com or 10.0.0.5"
                        ),
                    ));
                }
                out.host = host;
            }
            "ports" => {
                let Yaml::Array(list) = v else {
                    return Err(invalid(
                        format!("{loc}, `ports`"),
                        "a list of port numbers, like [3306]",
                    ));
                };
                for p in list {
                    let text = scalar(p, &format!("{loc}, `ports`"))?;
                    match text.parse::<u16>() {
                        Ok(n) if n > 0 => {
                            if !out.ports.contains(&n) {
                                out.ports.push(n);
                            }
                        }
                        _ => {
                            return Err(invalid(
                                format!("{loc}, `ports`"),
                                format!("{text:?} is not a port number (1..65535)"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(invalid(
                    format!("{loc}, `{other}`"),
                    "`external:` takes `host` and `ports`",
                ));
            }
        }
    }
    if out.host.is_empty() {
        return Err(invalid(
            &loc,
            "`external:` needs `host:` (the address the service stands for)",
        ));
    }
    if out.ports.is_empty() || out.ports.len() > MAX_EXTERNAL_PORTS {
        return Err(invalid(
            &loc,
            format!(
                "`external:` needs `ports:` (1 to {MAX_EXTERNAL_PORTS} port numbers the other services connect to)"
            ),
        ));
    }
    Ok(Some(out))
}

/// A DNS name (labels of letters, digits and `-`) or an IPv4/IPv6 address.
fn external_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn parse_service(
    name: &str,
    node: &Yaml,
    app: &AppLabels,
    inputs: &super::Inputs,
    defined: &Defined,
    warnings: &mut Vec<String>,
) -> Result<ServiceSpec, SpecError> {
    let sloc = format!("service {name:?}");
    let h = match node {
        Yaml::Hash(h) => h,
        _ => {
            return Err(invalid(
                &sloc,
                "a service must be a map with at least `image:`",
            ));
        }
    };
    let mut g = Gathered {
        s: ServiceSpec {
            replicas: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    for (k, v) in h {
        let key = key_str(k, &sloc)?;
        let loc = format!("{sloc}, key `{key}`");
        if engine_key(&key, v, &loc, &sloc, &mut g.s)? {
            continue;
        }
        let ctx = KeyContext {
            name,
            sloc: &sloc,
            loc: &loc,
            inputs,
            defined,
        };
        service_key(&ctx, key, v, &mut g, warnings)?;
    }
    finish_service(name, &sloc, g, app, warnings)
}

/// What the keys of one service say, gathered before the rules that join them run.
#[derive(Default)]
struct Gathered {
    s: ServiceSpec,
    label_map: BTreeMap<String, String>,
    deploy: super::service_keys::Deploy,
    scale: Option<u32>,
    has_restart: bool,
    network_aliases: Vec<String>,
    env_from_files: BTreeMap<String, String>,
}

/// Where a key is and what it may draw on.
struct KeyContext<'a> {
    name: &'a str,
    sloc: &'a str,
    loc: &'a str,
    inputs: &'a super::Inputs,
    defined: &'a Defined,
}

/// One service key that is not an engine setting (`engine_key`): its value read into `g`, or
/// the key refused (with a hint where berth knows what to use instead).
fn service_key(
    c: &KeyContext,
    key: String,
    v: &Yaml,
    g: &mut Gathered,
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    let (loc, s) = (c.loc, &mut g.s);
    match key.as_str() {
        "image" => s.image = scalar(v, loc)?,
        "container_name" => g
            .network_aliases
            .push(container_name_alias(c.name, v, loc, warnings)?),
        "command" => s.command = Some(values::command(v, loc)?),
        "entrypoint" => s.entrypoint = Some(values::command(v, loc)?),
        "environment" => parse_environment(v, loc, &c.inputs.vars, s)?,
        "env_file" => read_env_files(v, loc, c.inputs, &mut g.env_from_files)?,
        "ports" => {
            for item in values_list(v, loc)? {
                s.ports.extend(parse_port(item, loc)?);
            }
        }
        "expose" => s.expose = parse_expose(v, loc)?,
        "volumes" => {
            for item in values_list(v, loc)? {
                s.volumes.push(parse_mount(item, loc, c.inputs)?);
            }
        }
        "restart" => {
            g.has_restart = true;
            s.restart = parse_restart(&scalar(v, loc)?, loc)?;
        }
        "labels" => g.label_map = string_map(v, loc, true)?,
        "depends_on" => match v {
            Yaml::Hash(dh) => {
                for (dk, _) in dh {
                    s.depends_on.push(key_str(dk, loc)?);
                }
            }
            other => s.depends_on.extend(string_list(other, loc)?),
        },
        "links" => s.links = parse_links(v, loc)?,
        // `.local` names, and the seed's `proxy:DOMAIN` (its acs/proxy's hostname, which
        // berth's router stands for): resolved to the router's internal side.
        "external_links" => {
            let (local, others): (Vec<Link>, Vec<Link>) = parse_links(v, loc)?
                .into_iter()
                .partition(|l| l.target.ends_with(".local") || l.target == "proxy");
            s.external_links = others;
            s.local_routes = local;
        }
        // `Hostname`: the seed guide's spelling (its "Server Load Balancer between services").
        "hostname" | "Hostname" => s.hostname = Some(scalar(v, loc)?),
        "working_dir" => s.working_dir = Some(scalar(v, loc)?),
        "user" => s.user = Some(scalar(v, loc)?),
        // What `docker compose up` streams or watches; berth collects every service's
        // logs and deploys images, so these change nothing.
        "attach" | "develop" => {
            warnings.push(format!(
                "{loc}: ignored: berth always collects the service's logs (`attach`) and deploys images, not a watched checkout (`develop`)"
            ));
        }
        "network_mode" => s.network_mode = parse_network_mode(&scalar(v, loc)?, loc)?,
        "networks" => g.network_aliases.extend(parse_service_networks(v, loc)?),
        "deploy" => g.deploy = parse_deploy(v, loc, s, warnings)?,
        // Read by the caller (which profiles are active decides whether it is deployed).
        "profiles" => {}
        // Resolved by the caller once every service's mounts are known.
        "volumes_from" => {}
        "secrets" => {
            s.secrets =
                super::files::parse_refs(v, Kind::Secret, &c.defined.secrets, loc, warnings)?
        }
        "configs" => {
            s.configs =
                super::files::parse_refs(v, Kind::Config, &c.defined.configs, loc, warnings)?
        }
        "platform" => s.platform = Some(parse_platform(&scalar(v, loc)?, loc, warnings)?),
        "pull_policy" => s.pull_policy = parse_pull_policy(v, loc)?,
        // compose v2's service-level replica count.
        "scale" => g.scale = Some(int(v, loc, 0, ext::MAX_REPLICAS as i64)? as u32),
        k if k.starts_with("x-") => {}
        k => {
            return Err(match refused_hint(k) {
                Some(hint) => SpecError::Unsupported {
                    location: c.sloc.to_string(),
                    key,
                    hint: hint.into(),
                },
                None => SpecError::UnknownKey {
                    location: c.sloc.to_string(),
                    key,
                },
            });
        }
    }
    Ok(())
}

/// `env_file`: each file (sent by the client beside the template) read as compose reads it;
/// the first file that sets a key wins among files, `environment` over all of them.
fn read_env_files(
    v: &Yaml,
    loc: &str,
    inputs: &super::Inputs,
    into: &mut BTreeMap<String, String>,
) -> Result<(), SpecError> {
    for f in string_list(v, loc)? {
        let text = inputs.files.get(&f).ok_or_else(|| {
            invalid(
                loc,
                format!("env file {f:?} was not found next to the template: create it or remove the entry"),
            )
        })?;
        // Keys alone and `${VAR}` inside take the deploy's variables, as compose
        // takes the project's environment.
        let lookup = |k: &str| inputs.vars.get(k).cloned();
        for (k, val) in super::dotenv::parse(text, &f, &lookup)? {
            into.entry(k).or_insert(val);
        }
    }
    Ok(())
}

/// `expose`: container ports (`80`, `80/tcp`).
fn parse_expose(v: &Yaml, loc: &str) -> Result<Vec<u16>, SpecError> {
    string_list(v, loc)?
        .iter()
        .map(|item| {
            let base = item.split('/').next().unwrap_or("");
            values::port_number(base).ok_or_else(|| {
                invalid(
                    loc,
                    format!("invalid port {item:?}: ports are numbers 1-65535"),
                )
            })
        })
        .collect()
}

fn parse_network_mode(mode: &str, loc: &str) -> Result<NetworkMode, SpecError> {
    match mode {
        "bridge" | "default" => Ok(NetworkMode::Bridge),
        "host" => Ok(NetworkMode::Host),
        "none" => Ok(NetworkMode::None),
        other => Err(invalid(
            loc,
            format!("network_mode {other:?} is not supported: use bridge, host or none"),
        )),
    }
}

/// The rules that join a service's keys: the image must be there, `env_file` under
/// `environment`, `deploy` against `scale`/`restart`, the extension labels, a job's restart,
/// network aliases as links, and the start order.
fn finish_service(
    name: &str,
    sloc: &str,
    g: Gathered,
    app: &AppLabels,
    warnings: &mut Vec<String>,
) -> Result<ServiceSpec, SpecError> {
    let mut s = g.s;
    if s.image.trim().is_empty() {
        return Err(invalid(
            sloc,
            "`image` is missing: every service runs an image (berth does not build)",
        ));
    }
    if s.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            format!("{sloc}, key `image`"),
            format!("{:?} is not an image reference", s.image),
        ));
    }
    // `environment` wins over `env_file`, as in compose.
    for (k, v) in g.env_from_files {
        s.environment.entry(k).or_insert(v);
    }
    reconcile_deploy(
        name,
        sloc,
        &mut s,
        &g.deploy,
        g.scale,
        g.has_restart,
        warnings,
    )?;
    // Extension labels: app-level ones first, then the service's own override them.
    let normalised = ext::normalise_label_keys(&g.label_map);
    let (user_labels, berth_labels): (BTreeMap<_, _>, BTreeMap<_, _>) = normalised
        .into_iter()
        .partition(|(k, _)| !k.starts_with("berth."));
    ext::swarm_reschedule_label(name, &user_labels, &mut s)?;
    s.labels = user_labels;
    ext::apply_service_labels(name, &berth_labels, app, &mut s, warnings)?;
    if g.has_restart && s.ext.job.is_some() && s.restart != RestartPolicy::No {
        warnings.push(format!(
            "service {name:?} is a job: `restart` forced to `no`"
        ));
    }
    if s.ext.job.is_some() {
        s.restart = RestartPolicy::No;
    }
    // Network aliases from `networks:` behave like links targeting this service.
    for a in g.network_aliases {
        if a != name {
            s.links.push(Link {
                target: name.to_string(),
                alias: a,
            });
        }
    }
    // The `depends` label and `depends_on` merge; links imply start order as in compose v1.
    let mut deps: Vec<String> = Vec::new();
    for d in s.depends_on.iter().chain(s.links.iter().map(|l| &l.target)) {
        if d != name && !deps.contains(d) {
            deps.push(d.clone());
        }
    }
    s.depends_on = deps;
    Ok(s)
}

/// `container_name`: containers keep berth's names (it adopts them by name after a
/// restart); the given name is what other services and config files use to reach this one,
/// so it becomes a network alias on the app network.
fn container_name_alias(
    name: &str,
    v: &Yaml,
    loc: &str,
    warnings: &mut Vec<String>,
) -> Result<String, SpecError> {
    let alias = scalar(v, loc)?;
    let valid = alias.starts_with(|c: char| c.is_ascii_alphanumeric())
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid || alias.len() > 63 {
        return Err(invalid(
            loc,
            format!(
                "{alias:?} is not a container name: use letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 63 characters"
            ),
        ));
    }
    warnings.push(format!(
        "service {name:?}: `container_name: {alias}` is a network alias on the app network (berth names the containers {{app}}_{{service}}-{{version}}_{{slot}})"
    ));
    Ok(alias)
}

/// `pull_policy`: `missing` (`if_not_present`), `always`, `never`; `build` and timed
/// policies are refused with the reason.
fn parse_pull_policy(v: &Yaml, loc: &str) -> Result<crate::model::PullPolicy, SpecError> {
    Ok(match scalar(v, loc)?.as_str() {
        "missing" | "if_not_present" => crate::model::PullPolicy::Missing,
        "always" => crate::model::PullPolicy::Always,
        "never" => crate::model::PullPolicy::Never,
        "build" => {
            return Err(SpecError::Unsupported {
                location: loc.to_string(),
                key: "pull_policy: build".into(),
                hint: "berth deploys images and has no builder: build elsewhere, then `berth image load` or push to a registry".into(),
            });
        }
        p if p == "daily" || p == "weekly" || p.starts_with("every_") => {
            return Err(invalid(
                loc,
                format!(
                    "pull_policy {p:?}: berth pulls at a deploy (always, missing, never, or `berth deploy --pull`), not on a timer: use always and redeploy when you want the newer image"
                ),
            ));
        }
        other => {
            return Err(invalid(
                loc,
                format!("pull_policy {other:?}: use always, missing (if_not_present) or never"),
            ));
        }
    })
}

/// What `deploy:` sets against the service-level keys it overlaps: `pids_limit`, `restart`
/// for a job, `scale`; and the per-host cap.
fn reconcile_deploy(
    name: &str,
    sloc: &str,
    s: &mut ServiceSpec,
    deploy: &super::service_keys::Deploy,
    scale: Option<u32>,
    has_restart: bool,
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    if let Some(p) = deploy.pids {
        if s.pids_limit.is_some_and(|l| l != p) {
            return Err(invalid(
                sloc,
                format!(
                    "`pids_limit` and `deploy.resources.limits.pids: {p}` disagree: keep one of them"
                ),
            ));
        }
        s.pids_limit = Some(p);
    }
    // A job (`deploy.mode: *-job`) runs each instance to completion: one that exits 0 is
    // done, one that fails is run again (Swarm's default for jobs is on-failure).
    if deploy.job {
        match s.restart {
            RestartPolicy::Always | RestartPolicy::UnlessStopped
                if has_restart || deploy.restart =>
            {
                return Err(invalid(
                    sloc,
                    "a job (deploy.mode replicated-job or global-job) runs each instance to completion: a restart policy of always/unless-stopped/any would run it again for ever: use on-failure or no, or remove it",
                ));
            }
            _ => {}
        }
    }
    match (scale, deploy.replicas) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                sloc,
                format!("`scale: {a}` and `deploy.replicas: {b}` disagree: keep one of them"),
            ));
        }
        (Some(r), _) | (None, Some(r)) => s.replicas = r,
        (None, None) => {}
    }
    if let Some(max) = s.max_per_node
        && s.replicas > max
        && !s.global
    {
        warnings.push(format!(
            "service {name:?}: max_replicas_per_node {max}: {max} of its {} instances run on this host (the rest wait for hosts to join, as Swarm leaves them pending)",
            s.replicas
        ));
    }
    Ok(())
}

/// The keys the engine takes as they are (privileges, limits, DNS, process settings): set on
/// `s`, and true when `key` is one of them.
fn engine_key(
    key: &str,
    v: &Yaml,
    loc: &str,
    sloc: &str,
    s: &mut ServiceSpec,
) -> Result<bool, SpecError> {
    match key {
        "privileged" => s.privileged = boolean(v, loc)?,
        "cap_add" => s.cap_add = string_list(v, loc)?,
        "security_opt" => {
            s.security_opt = string_list(v, loc)?;
            for o in &s.security_opt {
                check_security_opt(o, loc)?;
            }
        }
        "pids_limit" => s.pids_limit = Some(int(v, loc, -1, i64::from(i32::MAX))?),
        "cap_drop" => s.cap_drop = string_list(v, loc)?,
        "devices" => s.devices = string_list(v, loc)?,
        "dns" => s.dns = string_list(v, loc)?,
        "dns_search" => s.dns_search = string_list(v, loc)?,
        "dns_opt" | "dns_options" => s.dns_opt = string_list(v, loc)?,
        "extra_hosts" => {
            s.extra_hosts = match v {
                Yaml::Hash(_) => string_map(v, loc, false)?
                    .into_iter()
                    .map(|(h, ip)| format!("{h}:{ip}"))
                    .collect(),
                other => string_list(other, loc)?,
            };
            for e in &s.extra_hosts {
                if !e.contains(':') {
                    return Err(invalid(loc, format!("entry {e:?} must be HOST:IP")));
                }
            }
        }
        "mem_limit" => s.mem_limit = Some(size_bytes(v, loc)?),
        "memswap_limit" => s.memswap_limit = Some(size_bytes(v, loc)?),
        "cpu_shares" => s.cpu_shares = Some(int(v, loc, 0, 262_144)?),
        "cpus" => s.nano_cpus = Some(parse_cpus(v, loc)?),
        "cpuset" => s.cpuset = Some(scalar(v, loc)?),
        "cpu_period" => s.engine.cpu_period = Some(int_in(v, loc, 1000, 1_000_000)?),
        "cpu_quota" => s.engine.cpu_quota = Some(int_in(v, loc, -1, i64::MAX)?),
        "cpu_rt_period" => s.engine.cpu_rt_period = Some(micros(v, loc)?),
        "cpu_rt_runtime" => s.engine.cpu_rt_runtime = Some(micros(v, loc)?),
        "mem_reservation" => s.engine.mem_reservation = Some(size_bytes(v, loc)?),
        "mem_swappiness" => s.engine.mem_swappiness = Some(int_in(v, loc, 0, 100)?),
        "oom_score_adj" => s.engine.oom_score_adj = Some(int_in(v, loc, -1000, 1000)?),
        "group_add" => s.engine.group_add = string_list(v, loc)?,
        "domainname" => s.engine.domainname = Some(scalar(v, loc)?),
        "runtime" => s.engine.runtime = Some(scalar(v, loc)?),
        "storage_opt" => s.engine.storage_opt = string_map(v, loc, false)?,
        "device_cgroup_rules" => s.engine.device_cgroup_rules = string_list(v, loc)?,
        "annotations" => s.engine.annotations = string_map(v, loc, false)?,
        // `private` is the engine's default; `host` shares the host's cgroup namespace.
        "cgroup" => {
            match scalar(v, loc)?.as_str() {
                "private" => {}
                "host" => {
                    return Err(SpecError::Unsupported {
                    location: sloc.to_string(),
                    key: "cgroup: host".into(),
                    hint: "berth runs services isolated; this host-namespace option is not available".into(),
                });
                }
                other => {
                    return Err(invalid(
                        loc,
                        format!("cgroup {other:?}: use private or host"),
                    ));
                }
            }
        }
        // `oom-kill-disable` is how the seed guide writes it.
        "oom_kill_disable" | "oom-kill-disable" => s.oom_kill_disable = boolean(v, loc)?,
        "ulimits" => s.ulimits = parse_ulimits(v, loc)?,
        "stop_signal" => s.stop_signal = Some(scalar(v, loc)?),
        "stop_grace_period" => s.stop_grace_period_ms = Some(duration_ms(v, loc)?),
        "healthcheck" => s.healthcheck = parse_healthcheck(v, loc)?,
        "logging" => s.logging = Some(parse_logging(v, loc)?),
        "init" => s.init = Some(boolean(v, loc)?),
        "read_only" => s.read_only = boolean(v, loc)?,
        "tmpfs" => s.tmpfs = string_list(v, loc)?,
        "shm_size" => s.shm_size = Some(size_bytes(v, loc)?),
        "sysctls" => s.sysctls = string_map(v, loc, false)?,
        "tty" => s.tty = boolean(v, loc)?,
        "stdin_open" => s.stdin_open = boolean(v, loc)?,
        _ => return Ok(false),
    }
    Ok(true)
}

pub(super) fn values_list<'a>(v: &'a Yaml, loc: &str) -> Result<Vec<&'a Yaml>, SpecError> {
    match v {
        Yaml::Array(a) => Ok(a.iter().collect()),
        Yaml::Null => Ok(Vec::new()),
        _ => Err(invalid(loc, "expected a list")),
    }
}

pub(super) fn int(v: &Yaml, loc: &str, min: i64, max: i64) -> Result<i64, SpecError> {
    let s = scalar(v, loc)?;
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(
                loc,
                format!("{s:?} is not a whole number between {min} and {max}"),
            )
        })
}

pub(super) fn parse_cpus(v: &Yaml, loc: &str) -> Result<i64, SpecError> {
    let s = scalar(v, loc)?;
    let f: f64 = s.trim().parse().map_err(|_| {
        invalid(
            loc,
            format!("{s:?} is not a number of CPUs (like 0.5 or 2)"),
        )
    })?;
    if !(f > 0.0 && f <= 1024.0) {
        return Err(invalid(
            loc,
            format!("{s:?} CPUs is out of range: use a number above 0"),
        ));
    }
    Ok((f * 1e9) as i64)
}

/// Placement hints written as environment entries (Swarm classic) are moved out.
const PLACEMENT_PREFIXES: [&str; 4] = ["constraint:", "affinity:", "availability:", "reschedule:"];

/// One `security_opt` entry, in the forms the engine takes from a compose file. A seccomp
/// profile given as a file is refused: the engine wants its JSON, which lives on the client.
fn check_security_opt(o: &str, loc: &str) -> Result<(), SpecError> {
    let (k, v) = o
        .split_once(['=', ':'])
        .map_or((o, None), |(k, v)| (k, Some(v)));
    let ok = match (k, v) {
        ("no-new-privileges", None | Some("true" | "false")) => true,
        ("seccomp", Some("unconfined")) => true,
        ("seccomp", Some(_)) => {
            return Err(invalid(
                loc,
                format!(
                    "{o:?}: a seccomp profile file is not supported (the engine needs its JSON, which berth does not send); use `seccomp=unconfined` or leave the engine's default profile"
                ),
            ));
        }
        ("apparmor" | "label" | "systempaths", Some(v)) => !v.is_empty(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            loc,
            format!(
                "{o:?} is not a security option: use no-new-privileges[:true|false], seccomp=unconfined, apparmor=PROFILE, label=..., or systempaths=unconfined"
            ),
        ))
    }
}

/// `environment`, as a map or a list. A key without a value (`- KEY`, or `KEY:` in a map)
/// takes its value from the deploy's variables (`--env`, `--env-file`, the shell: the CLI sends
/// those [`bare_environment_keys`] names), and is left out when none has it, as compose does.
fn parse_environment(
    v: &Yaml,
    loc: &str,
    vars: &super::Vars,
    s: &mut ServiceSpec,
) -> Result<(), SpecError> {
    let from_vars = |k: &str| vars.get(k).cloned();
    let entries: Vec<(String, Option<String>)> = match v {
        Yaml::Null => Vec::new(),
        Yaml::Hash(h) => {
            let mut out = Vec::new();
            for (k, val) in h {
                let key = key_str(k, loc)?;
                if matches!(val, Yaml::Null) {
                    let value = from_vars(&key);
                    out.push((key, value));
                    continue;
                }
                let value = scalar(val, loc)?;
                if PLACEMENT_PREFIXES.iter().any(|p| key.starts_with(p)) {
                    s.placement
                        .push(ext::parse_placement(&format!("{key}={value}"), loc)?);
                    continue;
                }
                out.push((key, Some(value)));
            }
            out
        }
        Yaml::Array(a) => {
            let mut out = Vec::new();
            for item in a {
                let e = scalar(item, loc)?;
                if PLACEMENT_PREFIXES.iter().any(|p| e.starts_with(p)) {
                    s.placement.push(ext::parse_placement(&e, loc)?);
                    continue;
                }
                match e.split_once('=') {
                    Some((k, val)) => out.push((k.to_string(), Some(val.to_string()))),
                    None => {
                        let value = from_vars(&e);
                        out.push((e, value));
                    }
                }
            }
            out
        }
        _ => return Err(invalid(loc, "expected a map or a list of KEY=VALUE")),
    };
    for (k, val) in entries {
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(invalid(
                loc,
                format!("variable name {k:?} is empty or has spaces"),
            ));
        }
        // Unset where the deploy's variables lack it (compose passes nothing then).
        if let Some(val) = val {
            s.environment.insert(k, val);
        }
    }
    Ok(())
}

fn parse_port(item: &Yaml, loc: &str) -> Result<Vec<PortSpec>, SpecError> {
    match item {
        Yaml::Hash(h) => {
            let mut p = PortSpec {
                container_port: 0,
                host_port: None,
                host_ip: None,
                protocol: Protocol::Tcp,
            };
            for (k, v) in h {
                let key = key_str(k, loc)?;
                let val = scalar(v, loc)?;
                let port = || {
                    values::port_number(&val).ok_or_else(|| {
                        invalid(
                            loc,
                            format!("invalid port {val:?} in `{key}`: ports are numbers 1-65535"),
                        )
                    })
                };
                match key.as_str() {
                    "target" => p.container_port = port()?,
                    "published" => p.host_port = Some(port()?),
                    "host_ip" => p.host_ip = Some(val.clone()),
                    "protocol" => {
                        p.protocol = match val.as_str() {
                            "tcp" => Protocol::Tcp,
                            "udp" => Protocol::Udp,
                            _ => {
                                return Err(invalid(
                                    loc,
                                    format!("protocol {val:?}: use tcp or udp"),
                                ));
                            }
                        }
                    }
                    "mode" => {}
                    _ => {
                        return Err(SpecError::UnknownKey {
                            location: loc.to_string(),
                            key,
                        });
                    }
                }
            }
            if p.container_port == 0 {
                return Err(invalid(
                    loc,
                    "a long-form port needs `target` (the container port)",
                ));
            }
            Ok(vec![p])
        }
        other => values::parse_port_short(&scalar(other, loc)?, loc),
    }
}

/// An unknown key inside one of a long-form mount's sub-maps (`bind:`, `volume:`, `tmpfs:`).
fn unknown_in(loc: &str, within: &str, key: &str) -> SpecError {
    SpecError::UnknownKey {
        location: format!("{loc}, `{within}`"),
        key: key.to_string(),
    }
}

/// Bind propagation modes the engine takes after a bind (`:rslave`, `bind.propagation`).
const PROPAGATION: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn parse_mount(item: &Yaml, loc: &str, inputs: &super::Inputs) -> Result<MountSpec, SpecError> {
    let mut m = MountSpec {
        kind: MountKind::Volume,
        source: String::new(),
        target: String::new(),
        read_only: false,
        nocopy: false,
        options: Vec::new(),
    };
    if let Yaml::Hash(h) = item {
        for (k, v) in h {
            let key = key_str(k, loc)?;
            match key.as_str() {
                "type" => {
                    m.kind = match scalar(v, loc)?.as_str() {
                        "bind" => MountKind::Bind,
                        "volume" => MountKind::Volume,
                        "tmpfs" => MountKind::Tmpfs,
                        other => {
                            return Err(invalid(
                                loc,
                                format!(
                                    "mount type {other:?}: use bind, volume or tmpfs (npipe, cluster and image mounts do not exist on a Linux host's engine)"
                                ),
                            ));
                        }
                    }
                }
                "source" => m.source = scalar(v, loc)?,
                "target" => m.target = scalar(v, loc)?,
                "read_only" => m.read_only = boolean(v, loc)?,
                "volume" => {
                    for (vk, vv) in as_hash(v, loc)? {
                        match key_str(vk, loc)?.as_str() {
                            "nocopy" => m.nocopy = boolean(vv, loc)?,
                            "subpath" => {
                                return Err(SpecError::Unsupported {
                                    location: loc.to_string(),
                                    key: "volume.subpath".into(),
                                    hint: "mount the whole volume and point the service at the sub-directory".into(),
                                });
                            }
                            other => return Err(unknown_in(loc, "volume", other)),
                        }
                    }
                }
                "bind" => {
                    for (bk, bv) in as_hash(v, loc)? {
                        match key_str(bk, loc)?.as_str() {
                            "propagation" => {
                                let p = scalar(bv, loc)?;
                                if !PROPAGATION.contains(&p.as_str()) {
                                    return Err(invalid(
                                        loc,
                                        format!(
                                            "bind propagation {p:?}: use one of {}",
                                            PROPAGATION.join(", ")
                                        ),
                                    ));
                                }
                                m.options.push(p);
                            }
                            "selinux" => match scalar(bv, loc)?.as_str() {
                                z @ ("z" | "Z") => m.options.push(z.to_string()),
                                other => {
                                    return Err(invalid(
                                        loc,
                                        format!(
                                            "bind selinux {other:?}: use z (shared label) or Z (private label)"
                                        ),
                                    ));
                                }
                            },
                            // The engine creates a missing bind source (as compose's short
                            // form does); `false` asks for an error instead, which berth does not
                            // add.
                            "create_host_path" => {
                                boolean(bv, loc)?;
                            }
                            other => return Err(unknown_in(loc, "bind", other)),
                        }
                    }
                }
                "tmpfs" => {
                    for (tk, tv) in as_hash(v, loc)? {
                        match key_str(tk, loc)?.as_str() {
                            "size" => m.options.push(format!("size={}", size_bytes(tv, loc)?)),
                            "mode" => {
                                let mode = match tv {
                                    Yaml::Integer(i) => u32::try_from(*i).ok(),
                                    other => u32::from_str_radix(
                                        scalar(other, loc)?.trim_start_matches("0o"),
                                        8,
                                    )
                                    .ok(),
                                }
                                .filter(|m| *m <= 0o7777)
                                .ok_or_else(|| {
                                    invalid(loc, "tmpfs mode: write an octal mode such as 1777")
                                })?;
                                m.options.push(format!("mode={mode:o}"));
                            }
                            other => return Err(unknown_in(loc, "tmpfs", other)),
                        }
                    }
                }
                // macOS file-sharing hints: nothing on Linux, as in compose.
                "consistency" => {}
                _ => {
                    return Err(SpecError::UnknownKey {
                        location: loc.to_string(),
                        key,
                    });
                }
            }
        }
        if m.kind == MountKind::Volume && m.source.is_empty() {
            m.kind = MountKind::Anonymous;
        }
        if m.kind == MountKind::Bind {
            m.source = host_path(&m.source, loc, inputs)?;
        }
        check_target(&m.target, loc)?;
        // As compose: `/media/` and `/media` are one path.
        m.target = clean_path(&m.target);
        return Ok(m);
    }
    let s = scalar(item, loc)?;
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [src, t] => (*src, *t, ""),
        [src, t, o] => (*src, *t, *o),
        _ => {
            return Err(invalid(
                loc,
                format!("invalid volume {s:?}: write SOURCE:TARGET[:OPTIONS]"),
            ));
        }
    };
    check_target(target, loc)?;
    m.kind = if source.is_empty() {
        MountKind::Anonymous
    } else if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    m.source = match m.kind {
        MountKind::Bind => host_path(source, loc, inputs)?,
        _ => source.to_string(),
    };
    m.target = clean_path(target);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "nocopy" => m.nocopy = true,
            "z" | "Z" => m.options.push(o.to_string()),
            p if PROPAGATION.contains(&p) => m.options.push(o.to_string()),
            // macOS file-sharing hints: nothing on Linux, as in compose.
            "cached" | "delegated" | "consistent" => {}
            _ => {
                return Err(invalid(
                    loc,
                    format!(
                        "volume option {o:?}: use ro, rw, nocopy, z, Z or a propagation ({})",
                        PROPAGATION.join(", ")
                    ),
                ));
            }
        }
    }
    if m.kind != MountKind::Bind && !m.options.is_empty() {
        return Err(invalid(
            loc,
            format!(
                "volume option {:?} applies to bind mounts (a host path) only",
                m.options[0]
            ),
        ));
    }
    Ok(m)
}

/// A bind mount's host path, as compose resolves it: `~` against the home directory of the
/// user who ran the CLI, a relative path against the project directory (the template's, or
/// `--project-directory`), both of which the CLI sends; `.` and `..` folded away.
pub(super) fn host_path(
    source: &str,
    loc: &str,
    inputs: &super::Inputs,
) -> Result<String, SpecError> {
    if source.starts_with('/') {
        return Ok(clean_path(source));
    }
    let (base, rest, what) = match source.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => (
            inputs.home.as_deref(),
            rest.trim_start_matches('/'),
            "home directory",
        ),
        _ => (inputs.project_dir.as_deref(), source, "project directory"),
    };
    match base.filter(|b| b.starts_with('/')) {
        Some(b) => Ok(clean_path(&format!("{b}/{rest}"))),
        None => Err(invalid(
            loc,
            format!(
                "bind mount source {source:?} is relative to the {what}, which this request does not name: deploy with the berth CLI (it sends it; --project-directory overrides) or write an absolute path"
            ),
        )),
    }
}

/// `path` (absolute) with `.`, `..` and repeated `/` folded away, lexically (Go's
/// `filepath.Clean`, which compose applies).
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// An integer within `lo..=hi`.
fn int_in(v: &Yaml, loc: &str, lo: i64, hi: i64) -> Result<i64, SpecError> {
    let n = match v {
        Yaml::Integer(i) => Some(*i),
        other => scalar(other, loc)?.parse().ok(),
    };
    n.filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| invalid(loc, format!("expected a whole number from {lo} to {hi}")))
}

/// Microseconds: a number, or a duration (`400ms`) as compose takes `cpu_rt_runtime`.
fn micros(v: &Yaml, loc: &str) -> Result<i64, SpecError> {
    match v {
        Yaml::Integer(i) if *i >= 0 => Ok(*i),
        other => {
            let s = scalar(other, loc)?;
            values::parse_duration_us(&s)
                .and_then(|us| i64::try_from(us).ok())
                .ok_or_else(|| {
                    invalid(
                        loc,
                        format!(
                            "invalid duration {s:?}: write microseconds, or like 400ms or 950us"
                        ),
                    )
                })
        }
    }
}

/// `platform: os/arch[/variant]`. berth runs Linux containers; another architecture than
/// the host's runs only with emulation (binfmt/qemu), which is a warning.
fn parse_platform(p: &str, loc: &str, warnings: &mut Vec<String>) -> Result<String, SpecError> {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|x| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        return Err(invalid(
            loc,
            format!(
                "platform {p:?}: write os/arch[/variant], such as linux/amd64 or linux/arm64/v8"
            ),
        ));
    }
    if parts[0] != "linux" {
        return Err(invalid(
            loc,
            format!("platform {p:?}: berth runs Linux containers (linux/ARCH)"),
        ));
    }
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    if parts[1] != host {
        warnings.push(format!(
            "{loc}: platform {p} is not this host's ({host}): its containers run only where the engine can emulate it (binfmt/qemu)"
        ));
    }
    Ok(p.to_string())
}

fn check_target(t: &str, loc: &str) -> Result<(), SpecError> {
    if !t.starts_with('/') || t.contains(['\0', '\n']) {
        return Err(invalid(
            loc,
            format!("mount target {t:?} must be an absolute path inside the container"),
        ));
    }
    Ok(())
}

fn parse_restart(s: &str, loc: &str) -> Result<RestartPolicy, SpecError> {
    Ok(match s {
        "no" | "false" | "" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure { max_retries: None },
        other => match other.strip_prefix("on-failure:") {
            Some(n) => RestartPolicy::OnFailure {
                max_retries: Some(n.parse().map_err(|_| {
                    invalid(
                        loc,
                        format!("{other:?}: write on-failure:N with N a number"),
                    )
                })?),
            },
            None => {
                return Err(invalid(
                    loc,
                    format!(
                        "restart policy {other:?}: use no, always, on-failure[:N] or unless-stopped"
                    ),
                ));
            }
        },
    })
}

fn parse_links(v: &Yaml, loc: &str) -> Result<Vec<Link>, SpecError> {
    string_list(v, loc)?
        .into_iter()
        .map(|l| {
            let (target, alias) = match l.split_once(':') {
                Some((t, a)) => (t.to_string(), a.to_string()),
                None => (l.clone(), l.clone()),
            };
            if target.is_empty() || alias.is_empty() {
                return Err(invalid(
                    loc,
                    format!("link {l:?}: write SERVICE or SERVICE:ALIAS"),
                ));
            }
            Ok(Link { target, alias })
        })
        .collect()
}

/// An env file without an environment to look keys up in (see [`super::dotenv`]).
pub fn parse_env_file(text: &str, name: &str) -> Result<Vec<(String, String)>, SpecError> {
    super::dotenv::parse(text, name, &|_| None)
}
