//! Compose's top-level `secrets:` and `configs:` and a service's references to them, as
//! docker compose runs them without a swarm: each is a file bind-mounted read-only into the
//! container (a secret at `/run/secrets/NAME`, a config at `/NAME`, or the reference's
//! `target`). A `file:` source is a host path (resolved as bind sources are); an
//! `environment:` source (a variable's value) or a config's `content:` is written by the agent
//! into its data directory at deploy time (see `agent::ops`), so the value is never part of
//! the stored spec. `external:` ones live in a swarm's store, which berth has none of.

use super::values::{self, as_hash, key_str, scalar};
use super::{SpecError, invalid};
use crate::model::{FileMount, FileSource};
use std::collections::BTreeMap;
use yaml_rust2::Yaml;

/// Secrets or configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }

    /// Where a reference without `target` (or with a relative one) puts the file.
    fn dir(self) -> &'static str {
        match self {
            Kind::Secret => "/run/secrets/",
            Kind::Config => "/",
        }
    }
}

/// The top-level definitions of one kind: name -> where its bytes come from.
pub type Defined = BTreeMap<String, FileSource>;

/// Parses top-level `secrets:` or `configs:`. Values from `environment:` come from the
/// template's variables, as compose takes them from its environment.
pub fn parse_defined(
    v: &Yaml,
    kind: Kind,
    inputs: &super::Inputs,
    values_out: &mut BTreeMap<String, String>,
) -> Result<Defined, SpecError> {
    let mut out = Defined::new();
    if matches!(v, Yaml::Null) {
        return Ok(out);
    }
    for (k, body) in as_hash(v, kind.word())? {
        let name = key_str(k, kind.word())?;
        let loc = format!("{} {name:?}", &kind.word()[..kind.word().len() - 1]);
        if !values::valid_volume_name(&name) {
            return Err(invalid(
                &loc,
                "names use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
            ));
        }
        let mut source = None;
        for (bk, bv) in as_hash(body, &loc)? {
            let key = key_str(bk, &loc)?;
            let s = match key.as_str() {
                "file" => Some(FileSource::File(super::service::host_path(
                    &scalar(bv, &loc)?,
                    &loc,
                    inputs,
                )?)),
                "environment" => {
                    let var = scalar(bv, &loc)?;
                    let Some(value) = inputs.vars.get(&var) else {
                        return Err(invalid(
                            &loc,
                            format!(
                                "its value comes from the variable `{var}`, which is not set: export it, or pass -e {var}=... or an --env-file"
                            ),
                        ));
                    };
                    values_out.insert(value_key(kind, &name), value.clone());
                    Some(FileSource::Value {
                        digest: digest(value),
                    })
                }
                "content" if kind == Kind::Config => {
                    let value = scalar(bv, &loc)?;
                    let d = digest(&value);
                    values_out.insert(value_key(kind, &name), value);
                    Some(FileSource::Value { digest: d })
                }
                "external" => {
                    if values::boolean(bv, &loc)? {
                        return Err(SpecError::Unsupported {
                            location: loc.clone(),
                            key: "external".into(),
                            hint: format!(
                                "external {} live in a swarm's store, which a berth host does not have: define it here with `file:` or `environment:`",
                                kind.word()
                            ),
                        });
                    }
                    None
                }
                // Swarm's name in its store, its template driver and labels: nothing to do
                // for a file on one host.
                "name" | "labels" | "template_driver" => None,
                "driver" | "driver_opts" => {
                    return Err(SpecError::Unsupported {
                        location: loc.clone(),
                        key,
                        hint: "secret drivers belong to a swarm: use `file:` or `environment:`"
                            .into(),
                    });
                }
                other => {
                    return Err(SpecError::UnknownKey {
                        location: loc.clone(),
                        key: other.to_string(),
                    });
                }
            };
            if let Some(s) = s {
                if source.is_some() {
                    return Err(invalid(
                        &loc,
                        "give one source: `file`, `environment` (or a config's `content`)",
                    ));
                }
                source = Some(s);
            }
        }
        let source = source.ok_or_else(|| {
            invalid(
                &loc,
                match kind {
                    Kind::Secret => "say where it comes from: `file: PATH` or `environment: VAR`",
                    Kind::Config => {
                        "say where it comes from: `file: PATH`, `environment: VAR` or `content: TEXT`"
                    }
                },
            )
        })?;
        out.insert(name, source);
    }
    Ok(out)
}

/// The key of a written value in [`crate::model::AppSpec::file_values`].
pub fn value_key(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.word())
}

/// A service's `secrets:` or `configs:` (short: `- NAME`; long: `source`, `target`, `uid`,
/// `gid`, `mode`).
pub fn parse_refs(
    v: &Yaml,
    kind: Kind,
    defined: &Defined,
    loc: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<FileMount>, SpecError> {
    let mut out = Vec::new();
    for item in super::service::values_list(v, loc)? {
        let (name, target) = match item {
            Yaml::Hash(h) => {
                let mut name = None;
                let mut target = None;
                for (k, val) in h {
                    match key_str(k, loc)?.as_str() {
                        "source" => name = Some(scalar(val, loc)?),
                        "target" => target = Some(scalar(val, loc)?),
                        // compose (without a swarm) ignores these for a bind-mounted file too.
                        f @ ("uid" | "gid" | "mode") => warnings.push(format!(
                            "{loc}: `{f}` is ignored: the file is bind-mounted read-only with its owner and mode on the host, as docker compose does without a swarm"
                        )),
                        other => {
                            return Err(SpecError::UnknownKey {
                                location: loc.to_string(),
                                key: other.to_string(),
                            });
                        }
                    }
                }
                (
                    name.ok_or_else(|| invalid(loc, "a long-form reference needs `source`"))?,
                    target,
                )
            }
            other => (scalar(other, loc)?, None),
        };
        let Some(source) = defined.get(&name) else {
            return Err(invalid(
                loc,
                format!(
                    "{name:?} is not defined: add it under the top-level `{}:` with `file:` or `environment:`",
                    kind.word()
                ),
            ));
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if !t.is_empty() && !t.split('/').any(|c| c == "..") => {
                format!("{}{t}", kind.dir())
            }
            Some(t) => return Err(invalid(loc, format!("target {t:?}: write a path"))),
            None => format!("{}{name}", kind.dir()),
        };
        out.push(FileMount {
            name,
            target,
            source: source.clone(),
        });
    }
    Ok(out)
}

/// SHA-256 of a value, hex, first 16 characters: which written file a version uses.
pub(super) fn digest(value: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    hex::encode(&d.as_ref()[..8])
}
