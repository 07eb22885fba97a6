//! Compose templates -> the validated domain model ([`AppSpec`]).
//!
//! Role: parse YAML (v2/v3 layout with `services:`, or the v1 layout with services at the top
//! level), substitute variables, check every key, parse the berth extension labels (`berth.`
//! or its alias `aliyun.`) and return a normalised [`AppSpec`].
//!
//! Invariants: pure (no I/O, no environment reads: variables come in as a map); never panics
//! on any input (a fuzz test runs in CI); an error names the service and the key and says how
//! to fix it. Unknown keys are errors; unknown berth labels are kept and reported as warnings.
//!
//! Limits: templates are capped at [`MAX_TEMPLATE_BYTES`] and YAML alias expansion at
//! [`MAX_NODES`] nodes, so a hostile body cannot exhaust memory.

pub mod cron;
mod ext;
mod files;
mod interpolate;
mod proxy;
pub mod run;
mod service;
mod service_keys;
mod values;

use crate::model::{AppSpec, MountKind, NetworkMode, VolumeSpec};
use std::collections::{BTreeMap, BTreeSet};
use yaml_rust2::Yaml;

pub use ext::{Affinity, HostContainer, MAX_REPLICAS};
pub use interpolate::{interpolate, referenced_vars};
pub use service::parse_env_file;
mod dotenv;
pub use dotenv::parse as parse_dotenv;
pub use values::parse_duration_ms;

/// Largest template accepted (bytes).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Largest number of YAML nodes after alias expansion.
pub const MAX_NODES: usize = 200_000;

/// Variables for `$VAR` substitution, already merged by the caller in priority order.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("template is not valid YAML: {message} at line {line}, column {column}")]
    Yaml {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("template is empty: it needs a `services:` map of at least one service")]
    Empty,
    #[error("template is too large ({0} bytes): the limit is 1 MiB")]
    TooLarge(usize),
    #[error("template expands to more than {MAX_NODES} YAML nodes: check its anchors and aliases")]
    TooManyNodes,
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    #[error("{location}: `{key}` is not supported: {hint}")]
    Unsupported {
        location: String,
        key: String,
        hint: String,
    },
    #[error("{location}: unknown key `{key}`: remove it or check its spelling")]
    UnknownKey { location: String, key: String },
    #[error(
        "variable `{name}` is not set{detail}: pass it with --env {name}=VALUE, --env-file or a default (${{{name}:-default}})"
    )]
    UnsetVariable { name: String, detail: String },
    #[error(
        "invalid variable substitution in {location}: {message} (write `$$` for a literal `$`)"
    )]
    BadSubstitution { location: String, message: String },
    #[error(
        "invalid app name {0:?}: use 1-48 lower-case letters, digits, `-` or `_`, starting with a letter or digit"
    )]
    BadAppName(String),
}

impl SpecError {
    /// Where in `text` the error is (1-based line and column), when it can be told: the
    /// YAML parser's position, or the line of the key its location names
    /// (`services.web.ports[0]`).
    pub fn position(&self, text: &str) -> Option<(usize, usize)> {
        let location = match self {
            SpecError::Yaml { line, column, .. } => return Some((*line, *column)),
            SpecError::Invalid { location, .. }
            | SpecError::Unsupported { location, .. }
            | SpecError::BadSubstitution { location, .. } => location.clone(),
            SpecError::UnknownKey { location, key } => format!("{location}, key `{key}`"),
            _ => return None,
        };
        locate(text, &location)
    }
}

/// The keys a location names, outermost first: `service "web", key `ports`` and
/// `services.web.ports[0]` both name services, web, ports.
fn location_keys(location: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in location.split(", ") {
        let part = part.trim();
        let quoted = |p: &str, open: char, close: char| -> Option<String> {
            let a = p.find(open)?;
            let b = p[a + 1..].find(close)?;
            Some(p[a + 1..a + 1 + b].to_string())
        };
        let kinds = [
            ("service ", "services"),
            ("volume ", "volumes"),
            ("network ", "networks"),
            ("secret ", "secrets"),
            ("config ", "configs"),
        ];
        if let Some((_, map)) = kinds.iter().find(|(k, _)| part.starts_with(k)) {
            out.push(map.to_string());
            out.extend(quoted(part, '"', '"'));
        } else if part.starts_with("key ") || part.starts_with("label ") {
            out.extend(quoted(part, '`', '`'));
        } else {
            out.extend(
                part.split('.')
                    .map(|s| s.split('[').next().unwrap_or(s).trim().to_string()),
            );
        }
    }
    out.retain(|k| !k.is_empty());
    out
}

/// The line and column of the key a location names in `text` (each key looked for after
/// the previous one, deeper indented); the deepest key found.
pub fn locate(text: &str, location: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut found = None;
    let mut indent: Option<usize> = None;
    for seg in location_keys(location) {
        let key = seg.as_str();
        if key.is_empty() {
            continue;
        }
        let hit = (from..lines.len()).find(|&i| {
            let l = lines[i];
            let ind = l.len() - l.trim_start().len();
            let t = l.trim_start().trim_start_matches("- ");
            indent.is_none_or(|p| ind > p)
                && [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ]
                .iter()
                .any(|k| t.starts_with(k.as_str()))
        });
        match hit {
            Some(i) => {
                let ind = lines[i].len() - lines[i].trim_start().len();
                found = Some((i + 1, ind + 1));
                indent = Some(ind);
                from = i + 1;
            }
            None => break,
        }
    }
    found
}

pub(crate) fn invalid(location: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        location: location.into(),
        message: message.into(),
    }
}

/// Checks an app or service name: it becomes part of container and network names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A service name: an app name's characters, up to 63 (it is a DNS name on the app network,
/// and one label of the router's `service.app.domain`). The engine takes the longer container
/// names this makes (`{app}_{service}-{NNN}_{slot}`, up to 120 characters).
pub fn valid_service_name(name: &str) -> bool {
    name.len() <= 63
        && valid_name(name.get(..name.len().min(48)).unwrap_or_default())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What a template may draw on besides its own text: variables and the files it names.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Variables for substitution, already merged by the caller in priority order.
    pub vars: Vars,
    /// Contents of the files the template names (`env_file`), by the name it uses.
    pub files: BTreeMap<String, String>,
    /// The absolute directory relative bind sources are resolved against (compose's project
    /// directory: the template's, or `--project-directory`); None refuses them.
    pub project_dir: Option<String>,
    /// The home directory `~` stands for (the CLI user's); None refuses `~` sources.
    pub home: Option<String>,
    /// Active profiles (`--profile`, `COMPOSE_PROFILES`): a service with `profiles:` is
    /// deployed only when one of its profiles is active (`*` activates all).
    pub profiles: Vec<String>,
}

/// Parses and validates a template. `app` is the app name (from `--name` or the file name).
pub fn parse(text: &str, app: &str, inputs: &Inputs) -> Result<AppSpec, SpecError> {
    let vars = &inputs.vars;
    if !valid_name(app) {
        return Err(SpecError::BadAppName(app.to_string()));
    }
    let root = load_yaml(text)?;
    let root = interpolate::interpolate_tree(root, vars, "template")?;
    let top = match &root {
        Yaml::Hash(h) => h,
        Yaml::Null | Yaml::BadValue => return Err(SpecError::Empty),
        _ => {
            return Err(invalid(
                "template",
                "the top level must be a map with `services:`",
            ));
        }
    };

    let mut warnings = Vec::new();
    let mut labels = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    let mut services_node: Vec<(String, &Yaml)> = Vec::new();
    let mut defined = service::Defined::default();
    let mut file_values = BTreeMap::new();

    let layout_v2 = top
        .get(&Yaml::String("services".into()))
        .is_some_and(|s| matches!(s, Yaml::Hash(_)));
    for (k, v) in top {
        let key = values::key_str(k, "template")?;
        if layout_v2 {
            match key.as_str() {
                "version" => values::check_version(v)?,
                "services" => {
                    for (sk, sv) in values::as_hash(v, "services")? {
                        services_node.push((values::key_str(sk, "services")?, sv));
                    }
                }
                // Compose's project name: the CLI takes it as the app name when no --name
                // is given ([`project_name`]); the name the request carries wins, as `-p`.
                "name" => {
                    values::scalar(v, "template, key `name`")?;
                }
                "include" => {
                    return Err(SpecError::Unsupported {
                        location: "template".into(),
                        key,
                        hint: "berth reads one file: merge the included files first (`docker compose config` prints them as one)".into(),
                    });
                }
                "models" => {
                    return Err(SpecError::Unsupported {
                        location: "template".into(),
                        key,
                        hint:
                            "it is a docker compose feature (model runner) that berth does not have"
                                .into(),
                    });
                }
                "volumes" => volumes = parse_volumes(v, &mut warnings)?,
                "networks" => check_networks(v, &mut warnings)?,
                "labels" => labels = values::string_map(v, "labels", true)?,
                k if k.starts_with("x-") => {}
                "secrets" => {
                    defined.secrets =
                        files::parse_defined(v, files::Kind::Secret, inputs, &mut file_values)?
                }
                "configs" => {
                    defined.configs =
                        files::parse_defined(v, files::Kind::Config, inputs, &mut file_values)?
                }
                "build" => {
                    return Err(SpecError::Unsupported {
                        location: "template".into(),
                        key,
                        hint: "berth deploys images on appliances without a builder or secret store: build elsewhere, then `berth image load`".into(),
                    });
                }
                _ => {
                    return Err(SpecError::UnknownKey {
                        location: "template".into(),
                        key,
                    });
                }
            }
        } else if key == "version" {
            values::check_version(v)?;
        } else if key == "labels"
            && !matches!(v.as_hash(), Some(h) if h.contains_key(&Yaml::String("image".into())))
        {
            labels = values::string_map(v, "labels", true)?;
        } else if key.starts_with("x-") {
        } else {
            services_node.push((key, v));
        }
    }
    if services_node.is_empty() {
        return Err(SpecError::Empty);
    }

    let app_labels = ext::normalise_label_keys(&labels);
    let app_ext = ext::AppLabels::parse(&app_labels, &mut warnings)?;

    let mut services = BTreeMap::new();
    // Services left out by profiles, with their profiles.
    let mut disabled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // `volumes_from` entries by service: (source service, read-only).
    let mut volumes_from: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    let mut externals: BTreeMap<String, crate::model::ExternalService> = BTreeMap::new();
    for (name, node) in services_node {
        if !valid_service_name(&name) {
            return Err(invalid(
                format!("service {name:?}"),
                "service names use lower-case letters, digits, `-` and `_`, at most 63 (a DNS label: other services reach it by this name), starting with a letter or digit",
            ));
        }
        let profiles = service_profiles(&name, node)?;
        let from = volumes_from_of(&name, node)?;
        if !from.is_empty() {
            volumes_from.insert(name.clone(), from);
        }
        if let Some(ext) = service::parse_external(&name, node)? {
            externals.insert(name, ext);
            continue;
        }
        let svc = service::parse_service(&name, node, &app_ext, inputs, &defined, &mut warnings)?;
        let active = profiles.is_empty()
            || inputs
                .profiles
                .iter()
                .any(|p| p == "*" || profiles.contains(p));
        match active {
            true => {
                services.insert(name, svc);
            }
            false => {
                disabled.insert(name, profiles);
            }
        }
    }
    check_profiles(&services, &disabled, &mut warnings)?;
    resolve_volumes_from(&mut services, &volumes_from, &disabled)?;
    let proxy_ports = proxy::take_proxy_services(&mut services, &mut warnings);
    // An outside address is there already: nothing to wait for.
    for (name, svc) in services.iter_mut() {
        svc.depends_on.retain(|d| !externals.contains_key(d));
        // A label certificate's key is a value the deploy writes, as a secret's.
        if let Some(c) = svc.ext.ssl_cert.as_mut() {
            file_values.insert(tls_key_value(name), std::mem::take(&mut c.key_pem));
        }
    }
    if services.is_empty() && !externals.is_empty() {
        return Err(invalid(
            "template",
            "every service is `external:`: an app needs at least one service with an image",
        ));
    }
    let spec = AppSpec {
        name: app.to_string(),
        labels: app_labels,
        services: services
            .into_iter()
            .map(|(k, v)| (k, std::sync::Arc::new(v)))
            .collect(),
        volumes,
        externals,
        proxy_ports,
        warnings,
        file_values,
    };
    check_cross_references(&spec)?;
    Ok(spec)
}

/// The key of a service's label certificate's private key in
/// [`crate::model::AppSpec::file_values`].
pub fn tls_key_value(service: &str) -> String {
    format!("tls/{service}")
}

/// A service's `profiles:` (compose's rule for a name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn service_profiles(name: &str, node: &Yaml) -> Result<Vec<String>, SpecError> {
    let Some(v) = values::key_of(node, "profiles") else {
        return Ok(Vec::new());
    };
    let loc = format!("service {name:?}, key `profiles`");
    let list = values::string_list(v, &loc)?;
    for p in &list {
        if !values::compose_name(p) {
            return Err(invalid(
                &loc,
                format!(
                    "profile {p:?}: profile names use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                ),
            ));
        }
    }
    Ok(list)
}

/// A service's `volumes_from` (`SERVICE`, `service:SERVICE`, with `:ro`/`:rw`).
fn volumes_from_of(name: &str, node: &Yaml) -> Result<Vec<(String, bool)>, SpecError> {
    let Some(v) = values::key_of(node, "volumes_from") else {
        return Ok(Vec::new());
    };
    let loc = format!("service {name:?}, key `volumes_from`");
    let mut out = Vec::new();
    for e in values::string_list(v, &loc)? {
        let (src, mode) = match e.rsplit_once(':') {
            Some((s, m @ ("ro" | "rw"))) => (s, m),
            _ => (e.as_str(), "rw"),
        };
        let src = match src.split_once(':') {
            None => src,
            Some(("service", s)) => s,
            Some(("container", c)) => {
                return Err(SpecError::Unsupported {
                    location: loc,
                    key: format!("volumes_from: container:{c}"),
                    hint: "berth shares volumes between its own services; mount the other container's volume by name instead (top-level `volumes:` with `external: true`)".into(),
                });
            }
            Some(_) => {
                return Err(invalid(
                    &loc,
                    format!("{e:?}: write SERVICE or service:SERVICE, with :ro or :rw"),
                ));
            }
        };
        out.push((src.to_string(), mode == "ro"));
    }
    Ok(out)
}

/// `volumes_from` as compose means it for services: the other service's named volumes and
/// bind mounts are mounted at the same paths (read-only with `:ro`), unless this service
/// mounts that path itself, and the other service starts first. An anonymous volume cannot
/// be shared (each of berth's instances and versions has its own): it is refused with the
/// advice to name it.
fn resolve_volumes_from(
    services: &mut BTreeMap<String, crate::model::ServiceSpec>,
    from: &BTreeMap<String, Vec<(String, bool)>>,
    disabled: &BTreeMap<String, Vec<String>>,
) -> Result<(), SpecError> {
    use crate::model::MountKind;
    fn mounts_of(
        name: &str,
        services: &BTreeMap<String, crate::model::ServiceSpec>,
        from: &BTreeMap<String, Vec<(String, bool)>>,
        disabled: &BTreeMap<String, Vec<String>>,
        seen: &mut Vec<String>,
    ) -> Result<Vec<crate::model::MountSpec>, SpecError> {
        let loc = format!("service {name:?}, key `volumes_from`");
        if seen.iter().any(|s| s == name) {
            return Err(invalid(
                &loc,
                format!(
                    "volumes_from goes round in a circle: {} -> {name}",
                    seen.join(" -> ")
                ),
            ));
        }
        let Some(svc) = services.get(name) else {
            return Err(match disabled.get(name) {
                Some(p) => invalid(
                    &loc,
                    format!(
                        "{name:?} is in profile {} that is not active: deploy with --profile {}",
                        p.join(", "),
                        p[0]
                    ),
                ),
                None => invalid(&loc, format!("{name:?} is not a service of this app")),
            });
        };
        let mut out = svc.volumes.clone();
        seen.push(name.to_string());
        for (src, ro) in from.get(name).map(Vec::as_slice).unwrap_or_default() {
            let loc = format!("service {name:?}, key `volumes_from`");
            for m in mounts_of(src, services, from, disabled, seen)? {
                if m.kind == MountKind::Anonymous {
                    return Err(invalid(
                        &loc,
                        format!(
                            "service {src:?} mounts an anonymous volume at {}, which cannot be shared (each instance has its own): give it a name under the top-level `volumes:`",
                            m.target
                        ),
                    ));
                }
                if m.kind == MountKind::Tmpfs || out.iter().any(|o| o.target == m.target) {
                    continue;
                }
                out.push(crate::model::MountSpec {
                    read_only: m.read_only || *ro,
                    ..m
                });
            }
        }
        seen.pop();
        Ok(out)
    }
    for name in from.keys() {
        if !services.contains_key(name) {
            continue;
        }
        let mounts = mounts_of(name, services, from, disabled, &mut Vec::new())?;
        if let Some(svc) = services.get_mut(name) {
            svc.volumes = mounts;
            for (src, _) in &from[name] {
                if !svc.depends_on.contains(src) {
                    svc.depends_on.push(src.clone());
                }
            }
        }
    }
    Ok(())
}

/// Services outside the active profiles are not deployed (as compose): each is a warning,
/// a deployed service that needs one is refused with the profile to activate, and a
/// template left with no service is refused.
fn check_profiles(
    services: &BTreeMap<String, crate::model::ServiceSpec>,
    disabled: &BTreeMap<String, Vec<String>>,
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    let flag = |profiles: &[String]| {
        profiles
            .iter()
            .map(|p| format!("--profile {p}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    for (name, svc) in services {
        let needs = svc
            .depends_on
            .iter()
            .map(|d| (d, "depends on"))
            .chain(svc.links.iter().map(|l| (&l.target, "links to")));
        for (dep, how) in needs {
            if let Some(p) = disabled.get(dep) {
                return Err(invalid(
                    format!("service {name:?}"),
                    format!(
                        "{how} {dep:?}, which is in profile {} that is not active: deploy with {}",
                        p.join(", "),
                        flag(p)
                    ),
                ));
            }
        }
    }
    if services.is_empty() && !disabled.is_empty() {
        let all: BTreeSet<String> = disabled.values().flatten().cloned().collect();
        return Err(invalid(
            "template",
            format!(
                "every service is in a profile and none is active: deploy with {}",
                flag(&all.into_iter().collect::<Vec<_>>())
            ),
        ));
    }
    for (name, p) in disabled {
        warnings.push(format!(
            "service {name:?} is in profile {} that is not active: not deployed ({} deploys it)",
            p.join(", "),
            flag(p)
        ));
    }
    Ok(())
}

/// The template's YAML document as JSON (merge keys resolved, scalars as YAML 1.2's core
/// schema types them), read exactly as `parse` reads it: what the YAML compatibility test
/// compares with libyaml's reading.
pub fn yaml_document(text: &str) -> Result<serde_json::Value, SpecError> {
    Ok(values::to_json(&load_yaml(text)?))
}

/// Loads one YAML document, guarding against alias bombs and oversized input.
fn load_yaml(text: &str) -> Result<Yaml, SpecError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(SpecError::TooLarge(text.len()));
    }
    let load = |t: &str| {
        yaml_rust2::YamlLoader::load_from_str(t).map_err(|e| SpecError::Yaml {
            message: tidy_scan_message(e.info()),
            line: e.marker().line(),
            column: e.marker().col() + 1,
        })
    };
    // A document the spec accepts is loaded as it is; only one that fails is repaired as
    // libyaml would read it (and counted again, since the repair changed it).
    values::check_node_budget(text)?;
    let docs = match load(text) {
        Ok(d) => d,
        Err(first) => match values::read_as_libyaml(text) {
            std::borrow::Cow::Borrowed(_) => return Err(first),
            std::borrow::Cow::Owned(repaired) => {
                values::check_node_budget(&repaired)?;
                load(&repaired)?
            }
        },
    };
    let mut docs = docs.into_iter();
    let first = docs.next().unwrap_or(Yaml::Null);
    if docs.next().is_some() {
        return Err(invalid(
            "template",
            "holds several YAML documents (`---`): put one app in one file",
        ));
    }
    Ok(values::resolve_merge_keys(first))
}

/// yaml-rust2 prints a duplicate key as `String("image"): duplicated key in mapping`.
fn tidy_scan_message(m: &str) -> String {
    match m.strip_suffix(": duplicated key in mapping") {
        Some(k) => {
            let k = k
                .strip_prefix("String(")
                .and_then(|k| k.strip_suffix(')'))
                .unwrap_or(k);
            format!("key {k} appears twice in the same map")
        }
        None => m.to_string(),
    }
}

fn parse_volumes(
    v: &Yaml,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, VolumeSpec>, SpecError> {
    let mut out = BTreeMap::new();
    if matches!(v, Yaml::Null) {
        return Ok(out);
    }
    for (k, body) in values::as_hash(v, "volumes")? {
        let name = values::key_str(k, "volumes")?;
        let loc = format!("volume {name:?}");
        if !values::valid_volume_name(&name) {
            return Err(invalid(
                &loc,
                "volume names use letters, digits, `_`, `.`, `-`",
            ));
        }
        let mut spec = VolumeSpec {
            driver: "local".into(),
            ..Default::default()
        };
        if let Yaml::Hash(h) = body {
            for (ok, ov) in h {
                let okey = values::key_str(ok, &loc)?;
                match okey.as_str() {
                    "driver" => spec.driver = values::scalar(ov, &format!("{loc}, key `driver`"))?,
                    "driver_opts" => {
                        spec.driver_opts =
                            values::string_map(ov, &format!("{loc}, key `driver_opts`"), false)?
                    }
                    "external" => {
                        spec.external = match ov {
                            Yaml::Hash(_) => true,
                            other => values::boolean(other, &format!("{loc}, key `external`"))?,
                        }
                    }
                    "name" => {
                        let n = values::scalar(ov, &format!("{loc}, key `name`"))?;
                        if !crate::volumes::valid_name(&n) {
                            return Err(invalid(
                                &loc,
                                format!(
                                    "name {n:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                                ),
                            ));
                        }
                        spec.name = Some(n);
                    }
                    "labels" => {
                        values::string_map(ov, &format!("{loc}, key `labels`"), true)?;
                        warnings.push(format!(
                            "{loc}, key `labels`: not applied: berth labels the volumes it makes with their app (`berth volume inspect` shows them)"
                        ));
                    }
                    k if k.starts_with("x-") => {}
                    _ => {
                        return Err(SpecError::UnknownKey {
                            location: loc,
                            key: okey,
                        });
                    }
                }
            }
        } else if !matches!(body, Yaml::Null) {
            return Err(invalid(
                &loc,
                "must be a map (driver, driver_opts, external) or empty",
            ));
        }
        let driver = crate::volumes::Driver::parse(&spec.driver)
            .map_err(|e| invalid(&loc, e.to_string()))?;
        if spec.external {
            if !spec.driver_opts.is_empty() {
                return Err(invalid(
                    &loc,
                    "an external volume is made outside the template: remove `driver_opts` (or `external`)",
                ));
            }
        } else {
            // The options are checked here, before anything is created.
            crate::volumes::validate(&name, driver, &spec.driver_opts)
                .map_err(|e| invalid(&loc, e.to_string()))?;
        }
        out.insert(name, spec);
    }
    Ok(out)
}

/// Top-level `networks:`. berth gives each app one bridge network (`berth-APP`) that every
/// service joins, whatever networks the file names: what a key means on that network is
/// applied, what it cannot mean there is refused, what it leaves out is a warning.
fn check_networks(v: &Yaml, warnings: &mut Vec<String>) -> Result<(), SpecError> {
    if matches!(v, Yaml::Null) {
        return Ok(());
    }
    for (k, body) in values::as_hash(v, "networks")? {
        let name = values::key_str(k, "networks")?;
        let loc = format!("network {name:?}");
        if let Yaml::Hash(h) = body {
            for (key, val) in h {
                let key = values::key_str(key, &loc)?;
                if matches!(val, Yaml::Boolean(false) | Yaml::Null) {
                    continue;
                }
                let why = match key.as_str() {
                    "driver" | "external" | "internal" => continue,
                    "ipam" => {
                        "the app's network takes its address range from the engine's pool (`default-address-pools` in daemon.json chooses it); services reach each other by name"
                    }
                    "driver_opts" => "the app's network is a bridge with the engine's defaults",
                    "enable_ipv6" => "the app's network has the engine's default addressing (IPv4)",
                    "attachable" => {
                        "only the app's own containers join its network (containers outside reach it through the router or published ports)"
                    }
                    "labels" | "name" => "the app's network is named and labelled by berth",
                    _ => {
                        return Err(SpecError::UnknownKey { location: loc, key });
                    }
                };
                warnings.push(format!("{loc}, key `{key}`: not applied: {why}"));
            }
        } else if !matches!(body, Yaml::Null) {
            return Err(invalid(&loc, "must be a map (driver, ipam, ...) or empty"));
        }
        // Meanings berth's one bridge network per app does not have: refused, not dropped.
        for (key, why) in [
            (
                "external",
                "joining a network made outside the app is not built yet: berth gives each app one bridge network of its own; reach other apps through the router or published ports",
            ),
            (
                "internal",
                "a network without outbound access is not built yet: berth's app network reaches outside",
            ),
        ] {
            if let Some(val) = values::key_of(body, key)
                && !matches!(val, Yaml::Boolean(false) | Yaml::Null)
            {
                return Err(SpecError::Unsupported {
                    location: format!("network {name:?}"),
                    key: key.into(),
                    hint: why.into(),
                });
            }
        }
        if let Yaml::Hash(h) = body
            && let Some(d) = h.get(&Yaml::String("driver".into()))
        {
            let d = values::scalar(d, &format!("network {name:?}, key `driver`"))?;
            if d != "bridge" {
                return Err(SpecError::Unsupported {
                    location: format!("network {name:?}"),
                    key: "driver".into(),
                    hint: format!(
                        "network driver {d:?}: berth gives each app one bridge network and reaches other hosts through its router; remove the driver"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Checks what only the whole app can tell: references between services and volumes.
fn check_cross_references(spec: &AppSpec) -> Result<(), SpecError> {
    let names: BTreeSet<&str> = spec.services.keys().map(String::as_str).collect();
    let mut host_ports: BTreeMap<(u16, &str), &str> = BTreeMap::new();
    for (name, svc) in &spec.services {
        let loc = format!("service {name:?}");
        for dep in &svc.depends_on {
            if !names.contains(dep.as_str()) {
                return Err(invalid(
                    format!("{loc}, key `depends_on`"),
                    format!("depends on {dep:?}, which is not a service of this app"),
                ));
            }
            if dep == name {
                return Err(invalid(
                    format!("{loc}, key `depends_on`"),
                    "a service cannot depend on itself",
                ));
            }
        }
        for link in &svc.links {
            if !names.contains(link.target.as_str()) && !spec.externals.contains_key(&link.target) {
                return Err(invalid(
                    format!("{loc}, key `links`"),
                    format!(
                        "links to {:?}, which is not a service of this app (use `external_links` for other containers)",
                        link.target
                    ),
                ));
            }
        }
        for m in &svc.volumes {
            if m.kind == MountKind::Volume && !spec.volumes.contains_key(&m.source) {
                return Err(invalid(
                    format!("{loc}, key `volumes`"),
                    format!(
                        "named volume {:?} is not declared: add it under the top-level `volumes:` (or write an absolute path for a bind mount)",
                        m.source
                    ),
                ));
            }
        }
        for p in &svc.ports {
            if let Some(hp) = p.host_port {
                // `max_replicas_per_node: 1` is how Swarm files run a fixed port per host.
                if svc.replicas.min(svc.max_per_node.unwrap_or(u32::MAX)) > 1 && !svc.global {
                    return Err(invalid(
                        format!("{loc}, key `ports`"),
                        format!(
                            "host port {hp} is fixed but the service has {} replicas, which cannot all bind it: publish only the container port (\"{}\") or use the router",
                            svc.replicas, p.container_port
                        ),
                    ));
                }
                if svc.network_mode != NetworkMode::Bridge {
                    continue;
                }
                if let Some(other) = host_ports.insert((hp, p.protocol.as_str()), name) {
                    return Err(invalid(
                        format!("{loc}, key `ports`"),
                        format!(
                            "host port {hp}/{} is also published by service {other:?}",
                            p.protocol.as_str()
                        ),
                    ));
                }
            }
        }
    }
    check_job(spec)?;
    if let Some(cycle) = depends_cycle(spec) {
        return Err(invalid(
            "template",
            format!(
                "services depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ),
        ));
    }
    Ok(())
}

/// A job is a whole app: every service is one of its tasks, and a cron job has one schedule.
fn check_job(spec: &AppSpec) -> Result<(), SpecError> {
    let jobs: Vec<(&String, &crate::model::JobSpec)> = spec
        .services
        .iter()
        .filter_map(|(n, s)| Some((n, s.ext.job.as_ref()?)))
        .collect();
    let Some((first, j)) = jobs.first() else {
        return Ok(());
    };
    if let Some((n, _)) = spec.services.iter().find(|(_, s)| s.ext.job.is_none()) {
        return Err(invalid(
            format!("service {n:?}"),
            format!(
                "is not a job task while service {first:?} is: a job is a whole app; put `aliyun.project_type: batch` in the template's top-level labels, or deploy the job and the services as two apps"
            ),
        ));
    }
    for (n, other) in &jobs[1..] {
        if (&other.schedule, &other.timezone) != (&j.schedule, &j.timezone) {
            return Err(invalid(
                format!("service {n:?}"),
                format!(
                    "has another schedule than service {first:?}: a cron job runs all its tasks on one schedule; set `aliyun.schedule` (and `schedule.timezone`) in the template's top-level labels"
                ),
            ));
        }
    }
    Ok(())
}

fn depends_cycle(spec: &AppSpec) -> Option<Vec<String>> {
    // Depth-first search with colours; returns the first cycle found.
    fn visit(
        n: &str,
        spec: &AppSpec,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut c = stack[start..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        if let Some(svc) = spec.services.get(n) {
            for d in &svc.depends_on {
                if let Some(c) = visit(d, spec, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in spec.services.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, spec, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// The template text without service `service` (`berth rm APP/SERVICE`): its block under
/// `services:` (or at the top level of a version 1 template) is cut, comments and the rest
/// kept as written. None when the text has no block-style entry for it (flow style).
pub fn strip_service(template: &str, service: &str) -> Option<String> {
    let lines: Vec<&str> = template.split_inclusive('\n').collect();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let content = |l: &str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let top = |l: &str| content(l) && indent(l) == 0;
    let (from, to, child) = match lines
        .iter()
        .position(|l| indent(l) == 0 && l.split('#').next().unwrap_or("").trim() == "services:")
    {
        Some(i) => {
            let end = (i + 1..lines.len())
                .find(|&j| top(lines[j]))
                .unwrap_or(lines.len());
            let child = (i + 1..end)
                .find(|&j| content(lines[j]))
                .map(|j| indent(lines[j]))?;
            (i + 1, end, child)
        }
        None => (0, lines.len(), 0),
    };
    let is_key = |l: &str| {
        let t = l.trim();
        [
            format!("{service}:"),
            format!("\"{service}\":"),
            format!("'{service}':"),
        ]
        .iter()
        .any(|k| {
            t.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim().is_empty() || rest.trim().starts_with('#'))
        })
    };
    let start = (from..to).find(|&j| indent(lines[j]) == child && is_key(lines[j]))?;
    let end = (start + 1..to)
        .find(|&j| content(lines[j]) && indent(lines[j]) <= child)
        .unwrap_or(to);
    let mut out = String::with_capacity(template.len());
    for (j, l) in lines.iter().enumerate() {
        if !(start..end).contains(&j) {
            out.push_str(l);
        }
    }
    Some(out)
}

/// Services in start order (dependencies first, then by name), for display and planning.
pub fn start_order(spec: &AppSpec) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < spec.services.len() {
        let before = out.len();
        for (name, svc) in &spec.services {
            if !done.contains(name) && svc.depends_on.iter().all(|d| done.contains(d)) {
                out.push(name.clone());
            }
        }
        for n in &out[before..] {
            done.insert(n.clone());
        }
        if out.len() == before {
            // A cycle (refused at parse time); append the rest to stay total.
            out.extend(spec.services.keys().filter(|n| !done.contains(*n)).cloned());
            break;
        }
    }
    out
}

/// Hash of a service's spec as it matters for its containers (everything but the replica
/// count): a container whose `berth.spec` label differs is out of date.
pub fn service_hash(svc: &crate::model::ServiceSpec) -> String {
    let mut s = svc.clone();
    s.replicas = 0;
    // Autoscaling bounds change replicas, not containers; a certificate changes the router.
    s.ext.auto_scaling = None;
    s.ext.ssl_cert = None;
    let json = serde_json::to_vec(&s).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &json);
    hex::encode(&d.as_ref()[..8])
}

#[cfg(test)]
mod tests;

/// What a client gathers for a template before it sends it, from one load of its YAML. Best
/// effort: a template that does not parse yields nothing, and `parse` reports the real error.
#[derive(Debug, Default, PartialEq)]
pub struct ClientNeeds {
    /// The top-level `name:` (compose's project name), when it is a plain string.
    pub name: Option<String>,
    /// Variables to look up in the shell: `$VAR` references, `environment` keys without a
    /// value, and what secrets and configs take from `environment:`. Sorted, once each.
    pub vars: Vec<String>,
    /// The files the services name in `env_file` (sorted, once each).
    pub env_files: Vec<String>,
}

pub fn client_needs(text: &str) -> ClientNeeds {
    let mut vars = referenced_vars(text);
    let Ok(top @ Yaml::Hash(_)) = load_yaml(text) else {
        return ClientNeeds {
            vars,
            ..Default::default()
        };
    };
    vars.extend(bare_environment_keys_in(&top));
    vars.extend(file_source_vars_in(&top));
    vars.sort();
    vars.dedup();
    ClientNeeds {
        name: values::key_of(&top, "name")
            .and_then(Yaml::as_str)
            .map(str::to_string),
        vars,
        env_files: env_files_in(&top),
    }
}

/// The value of `key` in every service of a loaded template.
fn service_values<'a>(top: &'a Yaml, key: &str) -> Vec<&'a Yaml> {
    let services: Vec<&Yaml> = match values::key_of(top, "services") {
        Some(Yaml::Hash(h)) => h.values().collect(),
        _ => top
            .as_hash()
            .map(|h| h.values().collect())
            .unwrap_or_default(),
    };
    services
        .into_iter()
        .filter_map(|s| values::key_of(s, key))
        .collect()
}

/// Keys of `environment` entries without a value (`- KEY`, `KEY:`) in every service: the
/// client looks them up in its shell environment, as it does for `$VAR` references.
pub fn bare_environment_keys(text: &str) -> Vec<String> {
    load_yaml(text)
        .map(|top| bare_environment_keys_in(&top))
        .unwrap_or_default()
}

fn bare_environment_keys_in(top: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    for env in service_values(top, "environment") {
        match env {
            Yaml::Array(a) => out.extend(
                a.iter()
                    .filter_map(|e| e.as_str())
                    .filter(|e| !e.contains('='))
                    .map(str::to_string),
            ),
            Yaml::Hash(h) => out.extend(
                h.iter()
                    .filter(|(_, v)| matches!(v, Yaml::Null))
                    .filter_map(|(k, _)| k.as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Variables the top-level `secrets:` and `configs:` take their value from (`environment:
/// VAR`), as compose takes them from its environment.
fn file_source_vars_in(top: &Yaml) -> Vec<String> {
    ["secrets", "configs"]
        .iter()
        .filter_map(|k| values::key_of(top, k)?.as_hash())
        .flat_map(|defs| defs.values())
        .filter_map(|d| values::key_of(d, "environment")?.as_str())
        .map(str::to_string)
        .collect()
}

/// The files a template names in `env_file` (so a client can send their contents).
pub fn env_files(text: &str) -> Vec<String> {
    load_yaml(text)
        .map(|top| env_files_in(&top))
        .unwrap_or_default()
}

fn env_files_in(top: &Yaml) -> Vec<String> {
    let mut out: Vec<String> = service_values(top, "env_file")
        .into_iter()
        .flat_map(|v| values::string_list(v, "env_file").unwrap_or_default())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod locate_tests {
    #[test]
    fn an_errors_location_names_its_line() {
        let t =
            "services:\n  db:\n    image: x\n  web:\n    image: y\n    ports:\n      - \"80\"\n";
        assert_eq!(super::locate(t, "services.web.ports[0]"), Some((6, 5)));
        assert_eq!(super::locate(t, "services.web"), Some((4, 3)));
        let e = super::parse(
            "services:\n  web:\n    image: y\n    bogus: 1\n",
            "a",
            &Default::default(),
        )
        .expect_err("unknown key");
        assert_eq!(
            e.position("services:\n  web:\n    image: y\n    bogus: 1\n")
                .map(|p| p.0),
            Some(4),
            "{e}"
        );
    }
}
