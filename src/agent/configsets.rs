//! Config sets (`berth configset`, the seed's "配置项"): named sets of variables a deploy
//! binds to with `--config-set`. Their items fill the template's `${VAR}` after `--env` and
//! before the shell environment; secret items are sealed at rest (bound to
//! `configset:SET/KEY`) and masked in every view. A change of a set marks the apps bound to
//! it out of date; `berth redeploy APP` and `berth configset apply SET` deploy them again
//! with the new values, from the inputs their last deploy stored (sealed, bound to
//! `app-inputs:APP`).

use super::{CoreError, Ops};
use crate::store::{AppInputsRow, ConfigItemRow, ConfigSetRow};
use crate::wire::{
    BoundApp, ConfigApplied, ConfigDiffRow, ConfigItemView, ConfigSetView, ConfigSetWrite,
    ConfigUnset, DeployRequest,
};
use std::collections::{BTreeMap, BTreeSet};

/// The seed's limits.
pub const MAX_NAME: usize = 32;
pub const MAX_ITEMS: usize = 50;
pub const MAX_KEY: usize = 32;
pub const MAX_VALUE: usize = 128;
const MAX_DESCRIPTION: usize = 256;
/// The volumes' mask: one look for every hidden value.
use crate::volumes::MASK;

/// A set's name: 1..32 of letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    let ok = (1..=MAX_NAME).contains(&n)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "config set name {name:?} is not valid: 1 to {MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

/// An item: its key a variable name of 1..32 characters, its value 1..128 characters.
pub fn check_item(key: &str, value: &str) -> Result<(), String> {
    let k = key.chars().count();
    if !(1..=MAX_KEY).contains(&k)
        || !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "config item key {key:?} is not valid: a variable name of 1 to {MAX_KEY} letters, digits and '_', not starting with a digit"
        ));
    }
    let v = value.chars().count();
    if !(1..=MAX_VALUE).contains(&v) {
        return Err(format!(
            "config item {key}: its value has {v} characters; a value has 1 to {MAX_VALUE}"
        ));
    }
    if value.contains('\0') {
        return Err(format!("config item {key}: its value holds a NUL byte"));
    }
    Ok(())
}

/// The items a set has after a write: `old` with `new` over it; a key named in `secret`
/// becomes secret, and a secret item stays secret when set again. Checked against every
/// limit; nothing of a refused write is kept.
pub fn merged(
    old: &BTreeMap<String, (String, bool)>,
    new: &BTreeMap<String, String>,
    secret: &[String],
) -> Result<BTreeMap<String, (String, bool)>, String> {
    for s in secret {
        if !new.contains_key(s) {
            return Err(format!(
                "--secret {s}: give its value too (-e {s}=VALUE, or in the env file)"
            ));
        }
    }
    let mut out = old.clone();
    for (k, v) in new {
        check_item(k, v)?;
        let was = old.get(k).is_some_and(|(_, s)| *s);
        out.insert(k.clone(), (v.clone(), was || secret.contains(k)));
    }
    if out.len() > MAX_ITEMS {
        return Err(format!(
            "a config set holds at most {MAX_ITEMS} items; this one would hold {}",
            out.len()
        ));
    }
    Ok(out)
}

/// Each variable the template uses against the set: `same` when the set's value is what
/// the deploy would use without it, `different` when not (or nothing else gives one),
/// `missing` when the set has no such item.
pub fn diff(
    used: &[String],
    set: &BTreeMap<String, (String, bool)>,
    without: &BTreeMap<String, String>,
) -> Vec<ConfigDiffRow> {
    used.iter()
        .map(|v| {
            let other = without.get(v);
            let (state, set_value, secret) = match set.get(v) {
                None => ("missing", String::new(), false),
                Some((value, secret)) => (
                    if other == Some(value) {
                        "same"
                    } else {
                        "different"
                    },
                    if *secret {
                        MASK.to_string()
                    } else {
                        value.clone()
                    },
                    *secret,
                ),
            };
            ConfigDiffRow {
                variable: v.clone(),
                state: state.into(),
                set_value,
                other: other.map(|o| if secret { MASK.into() } else { o.clone() }),
            }
        })
        .collect()
}

fn item_aad(set: &str, key: &str) -> String {
    format!("configset:{set}/{key}")
}

fn inputs_aad(app: &str) -> String {
    format!("app-inputs:{app}")
}

fn unknown_set(name: &str) -> CoreError {
    CoreError::NotFound(format!(
        "no config set is named {name:?}: see `berth configset ls`, or create it with `berth configset create {name}`"
    ))
}

/// A set's items, unsealed: key -> (value, secret).
type Items = BTreeMap<String, (String, bool)>;

/// A set as its member publishes it to the others (`Kind::ConfigSet`).
#[derive(serde::Serialize, serde::Deserialize)]
struct SetRecord {
    name: String,
    #[serde(default)]
    description: String,
    revision: i64,
    created_ms: i64,
    updated_ms: i64,
    items: Vec<RecordItem>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RecordItem {
    key: String,
    value: String,
    #[serde(default)]
    secret: bool,
}

impl Ops {
    /// One change of a set at a time (read, merge, write).
    fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        self.core
            .config_sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn sealer(&self) -> Result<&crate::volumes::secret::Sealer, CoreError> {
        Ok(self.core.volumes.sealer()?)
    }

    /// The keys of a set's secret items (nothing unsealed); none for a set that is not.
    pub fn secret_config_keys(&self, name: &str) -> Result<BTreeSet<String>, CoreError> {
        Ok(self
            .core
            .store
            .config_set(name)?
            .or_else(|| self.remote_set(name).map(|(row, ..)| row))
            .map(|row| {
                row.items
                    .into_iter()
                    .filter(|i| i.secret)
                    .map(|i| i.key)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A set another member holds (the newest record of that name), with its items and
    /// the member's id and name. Read only here: its changes are made there.
    fn remote_set(&self, name: &str) -> Option<(ConfigSetRow, Items, String, String)> {
        self.cluster
            .remote(crate::cluster::state::Kind::ConfigSet)
            .into_iter()
            .filter(|r| r.body["name"].as_str() == Some(name))
            .filter_map(|r| {
                let rec: SetRecord = serde_json::from_value(r.body.clone()).ok()?;
                Some((rec, r.node_id, r.node_name))
            })
            .max_by_key(|(rec, ..)| rec.updated_ms)
            .map(|(rec, node_id, node_name)| {
                let items: Items = rec
                    .items
                    .iter()
                    .map(|i| (i.key.clone(), (i.value.clone(), i.secret)))
                    .collect();
                let row = ConfigSetRow {
                    name: rec.name,
                    description: rec.description,
                    rev: rec.revision,
                    created_ms: rec.created_ms,
                    updated_ms: rec.updated_ms,
                    items: rec
                        .items
                        .into_iter()
                        .map(|i| ConfigItemRow {
                            key: i.key,
                            value: i.value.into_bytes(),
                            secret: i.secret,
                        })
                        .collect(),
                };
                (row, items, node_id, node_name)
            })
    }

    /// The member that holds set `name` when another one does (its changes are made there).
    pub fn config_set_home(&self, name: &str) -> Option<String> {
        if self.core.store.config_set(name).ok().flatten().is_some() {
            return None;
        }
        self.remote_set(name).map(|(_, _, node, _)| node)
    }

    /// This host's sets as records for the other members (secret values in clear inside
    /// the record, which travels and rests sealed).
    pub(super) fn config_set_records(&self) -> Vec<(String, serde_json::Value)> {
        let names = self.core.store.config_set_names().unwrap_or_default();
        names
            .into_iter()
            .filter_map(|n| {
                let (row, items) = self.open_local_set(&n).ok()?;
                let rec = SetRecord {
                    name: row.name,
                    description: row.description,
                    revision: row.rev,
                    created_ms: row.created_ms,
                    updated_ms: row.updated_ms,
                    items: items
                        .into_iter()
                        .map(|(key, (value, secret))| RecordItem { key, value, secret })
                        .collect(),
                };
                Some((n, serde_json::to_value(rec).ok()?))
            })
            .collect()
    }

    /// A set and its items, unsealed: this host's, else another member's (read only).
    fn open_set(&self, name: &str) -> Result<(ConfigSetRow, Items), CoreError> {
        match self.open_local_set(name) {
            Err(CoreError::NotFound(e)) => match self.remote_set(name) {
                Some((row, items, ..)) => Ok((row, items)),
                None => Err(CoreError::NotFound(e)),
            },
            r => r,
        }
    }

    /// The current revision of set `name`, wherever it is held (0: none).
    fn set_rev(&self, name: &str) -> i64 {
        match self.core.store.config_set(name) {
            Ok(Some(s)) => s.rev,
            _ => self.remote_set(name).map_or(0, |(row, ..)| row.rev),
        }
    }

    /// The apps of other owners bound to set `name`, with whether each is out of date (from
    /// their app records).
    fn remote_bound(&self, name: &str) -> Vec<BoundApp> {
        self.cluster
            .remote(crate::cluster::state::Kind::App)
            .into_iter()
            .filter(|r| r.body["config"]["name"].as_str() == Some(name))
            .filter_map(|r| {
                Some(BoundApp {
                    app: r.body["name"].as_str()?.to_string(),
                    out_of_date: r.body["config"]["out_of_date"].as_bool().unwrap_or(false),
                })
            })
            .collect()
    }

    /// A set of this host and its items, unsealed.
    fn open_local_set(&self, name: &str) -> Result<(ConfigSetRow, Items), CoreError> {
        let row = self
            .core
            .store
            .config_set(name)?
            .ok_or_else(|| unknown_set(name))?;
        let mut items = Items::new();
        for i in &row.items {
            let plain = if i.secret {
                self.sealer()?
                    .unseal(&item_aad(name, &i.key), &i.value)
                    .map_err(|_| {
                        CoreError::Conflict(format!(
                            "secret item {} of config set {name} does not open with this data dir's key (was volume-secrets.key replaced?): set it again with `berth configset set {name} --secret {}=VALUE`",
                            i.key, i.key
                        ))
                    })?
            } else {
                i.value.clone()
            };
            let value = String::from_utf8(plain).map_err(|_| {
                CoreError::Conflict(format!(
                    "item {} of config set {name} is damaged: set it again",
                    i.key
                ))
            })?;
            items.insert(i.key.clone(), (value, i.secret));
        }
        Ok((row, items))
    }

    /// Writes a set's items (secret ones sealed); returns the new revision.
    fn write_set(
        &self,
        name: &str,
        description: String,
        created_ms: i64,
        items: &Items,
        create: bool,
    ) -> Result<i64, CoreError> {
        let mut rows = Vec::new();
        for (k, (v, secret)) in items {
            let value = if *secret {
                self.sealer()?.seal(&item_aad(name, k), v.as_bytes())?
            } else {
                v.as_bytes().to_vec()
            };
            rows.push(ConfigItemRow {
                key: k.clone(),
                value,
                secret: *secret,
            });
        }
        Ok(self.core.store.put_config_set(
            &ConfigSetRow {
                name: name.to_string(),
                description,
                rev: 0,
                created_ms,
                updated_ms: crate::clock::now_ms(),
                items: rows,
            },
            create,
        )?)
    }

    fn check_description(d: &str) -> Result<(), CoreError> {
        if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
            return Err(CoreError::BadRequest(format!(
                "a config set's description is one line of at most {MAX_DESCRIPTION} characters"
            )));
        }
        Ok(())
    }

    pub fn create_config_set(&self, w: ConfigSetWrite) -> Result<ConfigSetView, CoreError> {
        check_name(&w.name).map_err(CoreError::BadRequest)?;
        if let Some((.., node)) = self.remote_set(&w.name) {
            return Err(CoreError::Conflict(format!(
                "config set {} exists on member {node}: change it with `berth configset set {}` (any member takes the change to it)",
                w.name, w.name
            )));
        }
        let description = w.description.unwrap_or_default();
        Self::check_description(&description)?;
        let items = merged(&Items::new(), &w.items, &w.secret).map_err(CoreError::BadRequest)?;
        self.write_set(&w.name, description, crate::clock::now_ms(), &items, true)?;
        self.core.event(
            crate::model::EventKind::Config,
            "",
            "",
            &format!("config set {} created with {} item(s)", w.name, items.len()),
        );
        self.config_set_view(&w.name)
    }

    /// `berth configset set NAME K=V...`: adds or changes items; the apps bound to it are
    /// out of date from now on.
    pub fn set_config_items(
        &self,
        name: &str,
        w: ConfigSetWrite,
    ) -> Result<ConfigSetView, CoreError> {
        let _serial = self.serial();
        let (row, old) = self.open_local_set(name)?;
        let description = w.description.unwrap_or(row.description);
        Self::check_description(&description)?;
        let items = merged(&old, &w.items, &w.secret).map_err(CoreError::BadRequest)?;
        if items == old && w.items.is_empty() {
            return Err(CoreError::BadRequest(format!(
                "nothing to set: write `berth configset set {name} KEY=VALUE...`"
            )));
        }
        let rev = self.write_set(name, description, row.created_ms, &items, false)?;
        let keys: Vec<&str> = w.items.keys().map(String::as_str).collect();
        self.set_changed(name, rev, &format!("set {}", keys.join(", ")))?;
        self.config_set_view(name)
    }

    /// `berth configset unset NAME K...`.
    pub fn unset_config_items(
        &self,
        name: &str,
        u: ConfigUnset,
    ) -> Result<ConfigSetView, CoreError> {
        let _serial = self.serial();
        let (row, mut items) = self.open_local_set(name)?;
        if u.keys.is_empty() {
            return Err(CoreError::BadRequest(format!(
                "nothing to unset: write `berth configset unset {name} KEY...`"
            )));
        }
        for k in &u.keys {
            if items.remove(k).is_none() {
                return Err(CoreError::NotFound(format!(
                    "config set {name} has no item {k} (it has {})",
                    row.items
                        .iter()
                        .map(|i| i.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let rev = self.write_set(name, row.description, row.created_ms, &items, false)?;
        self.set_changed(name, rev, &format!("unset {}", u.keys.join(", ")))?;
        self.config_set_view(name)
    }

    /// An event for a change, naming the bound apps it leaves out of date.
    fn set_changed(&self, name: &str, rev: i64, what: &str) -> Result<(), CoreError> {
        let stale: Vec<String> = self
            .core
            .store
            .bound_apps(name)?
            .into_iter()
            .filter(|(_, _, r)| *r != rev)
            .map(|(a, _, _)| a)
            .collect();
        let tail = if stale.is_empty() {
            String::new()
        } else {
            format!(
                "; out of date: {} (`berth configset apply {name}` or `berth redeploy APP`)",
                stale.join(", ")
            )
        };
        self.core.event(
            crate::model::EventKind::Config,
            "",
            "",
            &format!("config set {name} revision {rev}: {what}{tail}"),
        );
        Ok(())
    }

    pub fn remove_config_set(&self, name: &str) -> Result<(), CoreError> {
        let _serial = self.serial();
        let elsewhere: Vec<String> = self.remote_bound(name).into_iter().map(|b| b.app).collect();
        if !elsewhere.is_empty() {
            return Err(CoreError::Conflict(format!(
                "config set {name} is bound to {} (on other members): deploy them without --config-set {name} (or remove them) first",
                elsewhere.join(", ")
            )));
        }
        if !self.core.store.remove_config_set(name)? {
            return Err(unknown_set(name));
        }
        self.core.event(
            crate::model::EventKind::Config,
            "",
            "",
            &format!("config set {name} removed"),
        );
        Ok(())
    }

    pub fn config_set_view(&self, name: &str) -> Result<ConfigSetView, CoreError> {
        let (row, node) = match self.core.store.config_set(name)? {
            Some(row) => (row, String::new()),
            None => self
                .remote_set(name)
                .map(|(row, _, _, node)| (row, node))
                .ok_or_else(|| unknown_set(name))?,
        };
        let mut bound: Vec<BoundApp> = self
            .core
            .store
            .bound_apps(name)?
            .into_iter()
            .map(|(app, _, rev)| BoundApp {
                app,
                out_of_date: rev != row.rev,
            })
            .collect();
        bound.extend(self.remote_bound(name));
        bound.sort_by(|a, b| a.app.cmp(&b.app));
        bound.dedup_by(|a, b| a.app == b.app);
        Ok(ConfigSetView {
            items: row
                .items
                .iter()
                .map(|i| ConfigItemView {
                    key: i.key.clone(),
                    value: if i.secret {
                        MASK.into()
                    } else {
                        String::from_utf8_lossy(&i.value).into_owned()
                    },
                    secret: i.secret,
                })
                .collect(),
            name: row.name,
            description: row.description,
            revision: row.rev,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            bound,
            node,
        })
    }

    /// This host's sets and the other members' (each with where it is held).
    pub fn config_sets(&self) -> Result<Vec<ConfigSetView>, CoreError> {
        let mut names: BTreeSet<String> = self.core.store.config_set_names()?.into_iter().collect();
        for r in self.cluster.remote(crate::cluster::state::Kind::ConfigSet) {
            if let Some(n) = r.body["name"].as_str() {
                names.insert(n.to_string());
            }
        }
        names.iter().map(|n| self.config_set_view(n)).collect()
    }

    /// `berth configset diff NAME -f app.yml`: the template's variables against the set.
    pub fn config_diff(
        &self,
        name: &str,
        req: &DeployRequest,
    ) -> Result<Vec<ConfigDiffRow>, CoreError> {
        let (_, items) = self.open_set(name)?;
        let used = crate::spec::client_needs(&req.template).vars;
        Ok(diff(&used, &items, &req.vars))
    }

    /// The request a deploy parses: the bound set's items over `vars`, `overrides` over
    /// them; with the set's revision (0 without a set).
    pub(super) fn with_config_set(
        &self,
        req: &DeployRequest,
    ) -> Result<(DeployRequest, i64), CoreError> {
        if req.config_set.is_empty() {
            return Ok((req.clone(), 0));
        }
        let (row, items) = self.open_set(&req.config_set)?;
        let mut eff = req.clone();
        for (k, (v, _)) in items {
            eff.vars.insert(k, v);
        }
        for (k, v) in &req.overrides {
            eff.vars.insert(k.clone(), v.clone());
        }
        Ok((eff, row.rev))
    }

    /// Stores what a deploy drew on (the request as given, sealed: it may hold secrets and
    /// volume credentials), so a redeploy can parse the template again.
    pub(super) fn record_inputs(&self, req: &DeployRequest, rev: i64) -> Result<(), CoreError> {
        let mut kept = req.clone();
        kept.pull = false;
        kept.message = String::new();
        kept.blue_green = false;
        let json = serde_json::to_vec(&kept)
            .map_err(|e| CoreError::BadRequest(format!("cannot store the deploy's inputs: {e}")))?;
        let sealed = self.sealer()?.seal(&inputs_aad(&req.name), &json)?;
        self.core.store.put_app_inputs(&AppInputsRow {
            app: req.name.clone(),
            config_set: req.config_set.clone(),
            set_rev: rev,
            sealed,
        })?;
        Ok(())
    }

    /// The deploy that brings `app` up to its bound set's current values; None when it is
    /// not bound or saw the set's last change.
    pub(super) fn stale_inputs(&self, app: &str) -> Result<Option<DeployRequest>, CoreError> {
        let Some(row) = self.core.store.app_inputs(app)? else {
            return Ok(None);
        };
        if row.config_set.is_empty() {
            return Ok(None);
        }
        let rev = self.set_rev(&row.config_set);
        if rev == row.set_rev {
            return Ok(None);
        }
        let plain = self
            .sealer()?
            .unseal(&inputs_aad(app), &row.sealed)
            .map_err(|_| {
                CoreError::Conflict(format!(
                    "the inputs of {app}'s last deploy do not open with this data dir's key: deploy it again with `berth deploy -f FILE --config-set {}`",
                    row.config_set
                ))
            })?;
        let req: DeployRequest = serde_json::from_slice(&plain).map_err(|e| {
            CoreError::Conflict(format!(
                "the inputs of {app}'s last deploy are unreadable ({e}): deploy it again with `berth deploy -f FILE --config-set {}`",
                row.config_set
            ))
        })?;
        Ok(Some(req))
    }

    /// After `berth rm APP/SERVICE`: the stored inputs' template without the service.
    pub(super) fn forget_input_service(&self, app: &str, service: &str) {
        let Ok(Some(row)) = self.core.store.app_inputs(app) else {
            return;
        };
        let Ok(sealer) = self.sealer() else { return };
        let Some(mut req) = sealer
            .unseal(&inputs_aad(app), &row.sealed)
            .ok()
            .and_then(|p| serde_json::from_slice::<DeployRequest>(&p).ok())
        else {
            return;
        };
        match crate::spec::strip_service(&req.template, service) {
            Some(t) => {
                req.template = t;
                if let Err(e) = self.record_inputs(&req, row.set_rev) {
                    tracing::warn!(app, error = %e, "cannot update the app's deploy inputs");
                }
            }
            None => tracing::warn!(
                app,
                service,
                "the stored template still names the removed service; a redeploy after a config set change brings it back"
            ),
        }
    }

    /// `berth configset apply NAME`: every bound app out of date redeployed with the set's
    /// values, each as a normal versioned deploy (one failing does not stop the others).
    pub async fn apply_config_set(&self, name: &str) -> Result<Vec<ConfigApplied>, CoreError> {
        self.open_set(name)?;
        let mut out = Vec::new();
        // Apps of other owners: their owners redeploy them (a redeploy of an app bound to
        // a changed set parses it again with the new values).
        for b in self
            .remote_bound(name)
            .into_iter()
            .filter(|b| b.out_of_date)
        {
            let Some(owner) = self.remote_owner(&b.app) else {
                continue;
            };
            let url = format!("/v1/apps/{}/redeploy", b.app);
            let error = match self.cluster.forward(&owner, "POST", &url, b"{}").await {
                Ok(r) if (200..300).contains(&r.status) => None,
                Ok(r) => Some(
                    serde_json::from_str::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string))
                        .unwrap_or(r.body),
                ),
                Err(e) => Some(e.to_string()),
            };
            out.push(ConfigApplied {
                app: b.app,
                versions: Vec::new(),
                error,
            });
        }
        for (app, _, _) in self.core.store.bound_apps(name)? {
            let done = match self.stale_inputs(&app)? {
                None => Ok(Vec::new()),
                Some(mut req) => {
                    req.message = format!("config set {name} changed");
                    self.deploy(req).await.map(|r| r.versions)
                }
            };
            out.push(match done {
                Ok(versions) => ConfigApplied {
                    app,
                    versions,
                    error: None,
                },
                Err(e) => ConfigApplied {
                    app,
                    versions: Vec::new(),
                    error: Some(e.to_string()),
                },
            });
        }
        Ok(out)
    }

    /// Each app bound to a set, and whether the set changed since its deploy.
    pub(super) fn bound_sets(&self) -> BTreeMap<String, crate::wire::BoundSet> {
        let revs = self.core.store.config_set_revs().unwrap_or_default();
        self.core
            .store
            .bound_apps("")
            .unwrap_or_default()
            .into_iter()
            .map(|(app, set, rev)| {
                let current = revs
                    .get(&set)
                    .copied()
                    .unwrap_or_else(|| self.set_rev(&set));
                let out_of_date = current != rev;
                (
                    app,
                    crate::wire::BoundSet {
                        name: set,
                        out_of_date,
                    },
                )
            })
            .collect()
    }

    /// Values of secret items of `app`'s bound set, to mask where the app's environment is
    /// shown.
    pub(super) fn secret_values(&self, app: &str) -> BTreeSet<String> {
        let Ok(Some(row)) = self.core.store.app_inputs(app) else {
            return BTreeSet::new();
        };
        if row.config_set.is_empty() {
            return BTreeSet::new();
        }
        self.open_set(&row.config_set)
            .map(|(_, items)| {
                items
                    .into_values()
                    .filter(|(v, s)| *s && v.chars().count() >= 4)
                    .map(|(v, _)| v)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `text` with every occurrence of a secret value masked (as CI systems mask secrets in
/// their logs).
pub fn mask_secrets(text: &str, secrets: &BTreeSet<String>) -> String {
    let mut t = text.to_string();
    // Longest first, so a secret holding another is masked whole.
    let mut by_len: Vec<&String> = secrets.iter().collect();
    by_len.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in by_len {
        t = t.replace(s.as_str(), MASK);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_keys_and_values_keep_the_seeds_limits() {
        let long = |n: usize| "a".repeat(n);
        let table: &[(&str, &str, bool)] = &[
            ("names", "prod", true),
            ("names", "prod-2.eu_x", true),
            ("names", "", false),
            ("names", "-prod", false),
            ("names", "pr od", false),
            ("names", "prod/x", false),
        ];
        for (_, n, ok) in table {
            assert_eq!(check_name(n).is_ok(), *ok, "{n:?}");
        }
        assert!(check_name(&long(32)).is_ok());
        let e = check_name(&long(33)).unwrap_err();
        assert!(e.contains("1 to 32"), "{e}");
        assert!(check_item("DB_HOST", "db").is_ok());
        assert!(check_item("_X1", "v").is_ok());
        assert!(check_item(&long(32), "v").is_ok());
        assert!(check_item(&long(33), "v").is_err());
        assert!(check_item("1X", "v").is_err());
        assert!(check_item("A-B", "v").is_err());
        assert!(check_item("", "v").is_err());
        assert!(check_item("K", "").unwrap_err().contains("1 to 128"));
        assert!(check_item("K", &long(128)).is_ok());
        // Characters, not bytes: 128 CJK characters are a valid value.
        assert!(check_item("K", &"配".repeat(128)).is_ok());
        assert!(check_item("K", &long(129)).unwrap_err().contains("129"));
        assert!(check_item("K", "a\0b").is_err());
    }

    #[test]
    fn merging_keeps_secrets_secret_and_counts_items() {
        let old: Items = [("A".to_string(), ("1".to_string(), true))].into();
        let got = merged(&old, &m(&[("A", "2"), ("B", "3")]), &["B".into()]).unwrap();
        assert_eq!(got["A"], ("2".to_string(), true), "a secret stays secret");
        assert_eq!(got["B"], ("3".to_string(), true));
        let e = merged(&old, &m(&[]), &["C".into()]).unwrap_err();
        assert!(e.contains("give its value"), "{e}");
        let many: BTreeMap<String, String> = (0..51)
            .map(|i| (format!("K{i}"), "v".to_string()))
            .collect();
        let e = merged(&Items::new(), &many, &[]).unwrap_err();
        assert!(e.contains("at most 50"), "{e}");
        let fifty: BTreeMap<String, String> = (0..50)
            .map(|i| (format!("K{i}"), "v".to_string()))
            .collect();
        assert_eq!(merged(&Items::new(), &fifty, &[]).unwrap().len(), 50);
        // One bad item refuses the whole write.
        assert!(merged(&old, &m(&[("OK", "1"), ("B-AD", "2")]), &[]).is_err());
    }

    #[test]
    fn diff_says_same_different_or_missing_and_masks_secrets() {
        let set: Items = [
            ("HOST".to_string(), ("db".to_string(), false)),
            ("PORT".to_string(), ("5432".to_string(), false)),
            ("PASS".to_string(), ("hunter22".to_string(), true)),
        ]
        .into();
        let used = vec![
            "HOST".to_string(),
            "PASS".into(),
            "PORT".into(),
            "USER".into(),
        ];
        let rows = diff(
            &used,
            &set,
            &m(&[("HOST", "db"), ("PASS", "other"), ("USER", "me")]),
        );
        let got: Vec<(&str, &str, &str, Option<&str>)> = rows
            .iter()
            .map(|r| {
                (
                    r.variable.as_str(),
                    r.state.as_str(),
                    r.set_value.as_str(),
                    r.other.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("HOST", "same", "db", Some("db")),
                ("PASS", "different", MASK, Some(MASK)),
                ("PORT", "different", "5432", None),
                ("USER", "missing", "", Some("me")),
            ]
        );
    }

    #[test]
    fn secrets_are_masked_longest_first() {
        let s: BTreeSet<String> = ["abcd".to_string(), "abcdef".to_string()].into();
        assert_eq!(
            mask_secrets("x=abcdef y=abcd", &s),
            format!("x={MASK} y={MASK}")
        );
    }
}
