//! Volumes: named objects with a driver and options.
//!
//! - `local`: an engine named volume (the engine's `local` driver, its `type`/`device`/`o`).
//! - `oss`: an S3-compatible bucket mounted on the host through a FUSE helper (`ossfs` when
//!   installed, else `s3fs`), credentials handed over in a passwd file of mode 0600.
//! - `nas`: an NFS export mounted on the host (`mount -t nfs`), its sub-directory created on
//!   first mount.
//!
//! This file and `command.rs` are pure (validation, masking, the helper's argument list);
//! `secret.rs` seals credentials at rest; `host.rs` runs the helpers and reads the kernel's
//! mount table. Which containers use a volume and when it is mounted is the agent's business
//! (`agent::volumes`).

pub mod command;
pub mod host;
pub mod secret;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Options whose values are credentials: sealed at rest, never shown back.
pub const SECRET_OPTS: &[&str] = &["access_key", "secret_key"];

/// What a secret option shows instead of its value.
pub const MASK: &str = "********";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Local,
    Oss,
    Nas,
}

impl Driver {
    pub fn parse(s: &str) -> Result<Driver, VolumeError> {
        match s {
            "" | "local" => Ok(Driver::Local),
            "oss" => Ok(Driver::Oss),
            "nas" => Ok(Driver::Nas),
            other => Err(VolumeError::Invalid(format!(
                "unknown volume driver {other:?}: use `local`, `oss` or `nas`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Local => "local",
            Driver::Oss => "oss",
            Driver::Nas => "nas",
        }
    }

    /// Mounted by berth on the host (and bound into containers), not by the engine.
    pub fn host_mounted(self) -> bool {
        !matches!(self, Driver::Local)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Invalid(String),
    /// The helper's own words, as it printed them.
    #[error("mounting volume {name:?} failed: {detail}")]
    Mount { name: String, detail: String },
    #[error("unmounting volume {name:?} failed: {detail}")]
    Unmount { name: String, detail: String },
    #[error("volume secrets: {0}")]
    Secret(String),
    #[error("volume {name:?}: {op} {path}: {source}")]
    Io {
        name: String,
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn invalid(msg: String) -> VolumeError {
    VolumeError::Invalid(msg)
}

/// A volume as the user defined it: every option, credentials included (only ever in memory;
/// the store keeps them sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDef {
    pub name: String,
    pub driver: Driver,
    pub opts: BTreeMap<String, String>,
}

impl VolumeDef {
    /// The options with every credential masked, for display.
    pub fn masked(&self) -> BTreeMap<String, String> {
        mask(&self.opts)
    }

    /// The options that are not credentials.
    pub fn public_opts(&self) -> BTreeMap<String, String> {
        self.opts
            .iter()
            .filter(|(k, _)| !SECRET_OPTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The credentials only.
    pub fn secret_opts(&self) -> BTreeMap<String, String> {
        self.opts
            .iter()
            .filter(|(k, _)| SECRET_OPTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// `opts` with every credential replaced by [`MASK`].
pub fn mask(opts: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    opts.iter()
        .map(|(k, v)| {
            let v = if SECRET_OPTS.contains(&k.as_str()) {
                MASK.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Names: what the engine accepts for a volume and what is safe as a directory name.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a volume definition and fills in defaults; the error says what is wrong and how to
/// write it instead.
pub fn validate(
    name: &str,
    driver: Driver,
    opts: &BTreeMap<String, String>,
) -> Result<VolumeDef, VolumeError> {
    if !valid_name(name) {
        return Err(invalid(format!(
            "volume name {name:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit (at most 128)"
        )));
    }
    for (k, v) in opts {
        if v.chars().any(char::is_control) {
            return Err(invalid(format!(
                "volume {name:?}: option {k:?} holds a control character (a newline?): write it on one line"
            )));
        }
    }
    let allowed: &[&str] = match driver {
        Driver::Local => &["type", "device", "o", "size"],
        Driver::Oss => &[
            "endpoint",
            "bucket",
            "path",
            "access_key",
            "secret_key",
            "cache",
            "other_opts",
        ],
        Driver::Nas => &["server", "path", "subdir", "vers", "mode", "options"],
    };
    if let Some(k) = opts.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "volume {name:?}: the {} driver has no option {k:?}; its options are {}",
            driver.as_str(),
            allowed.join(", ")
        )));
    }
    let mut opts = opts.clone();
    match driver {
        Driver::Local => {}
        Driver::Oss => check_oss(name, &mut opts)?,
        Driver::Nas => check_nas(name, &mut opts)?,
    }
    Ok(VolumeDef {
        name: name.to_string(),
        driver,
        opts,
    })
}

fn required<'a>(
    name: &str,
    opts: &'a BTreeMap<String, String>,
    key: &str,
    example: &str,
) -> Result<&'a str, VolumeError> {
    match opts.get(key).map(|s| s.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid(format!(
            "volume {name:?} needs option `{key}` (for example --opt {key}={example})"
        ))),
    }
}

fn check_oss(name: &str, opts: &mut BTreeMap<String, String>) -> Result<(), VolumeError> {
    let endpoint = required(
        name,
        opts,
        "endpoint",
        "https://oss-cn-hangzhou.aliyuncs.com",
    )?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.contains(char::is_whitespace)
    {
        return Err(invalid(format!(
            "volume {name:?}: endpoint {endpoint:?} is not a URL: write http://HOST[:PORT] or https://HOST"
        )));
    }
    let bucket = required(name, opts, "bucket", "my-bucket")?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err(invalid(format!(
            "volume {name:?}: bucket {bucket:?} is not a bucket name: 3 to 63 lowercase letters, digits, `-` and `.`"
        )));
    }
    if let Some(p) = opts.get("path") {
        let trimmed = p.trim_matches('/');
        let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
        if (!trimmed.is_empty() && trimmed.split('/').any(bad_segment))
            || p.contains(char::is_whitespace)
        {
            return Err(invalid(format!(
                "volume {name:?}: path {p:?} is not a key prefix: write segments like data/app, without `..`, `.`, spaces or empty segments"
            )));
        }
        let normal = trimmed.to_string();
        opts.insert("path".into(), normal);
    }
    let ak = opts.get("access_key").map(|s| s.trim()).unwrap_or("");
    let sk = opts.get("secret_key").map(|s| s.trim()).unwrap_or("");
    if ak.is_empty() != sk.is_empty() {
        return Err(invalid(format!(
            "volume {name:?}: give both access_key and secret_key (or neither, for a public bucket)"
        )));
    }
    for (k, v) in [("access_key", ak), ("secret_key", sk)] {
        if v.contains([':', ' ', '\t']) {
            return Err(invalid(format!(
                "volume {name:?}: {k} holds `:` or a space, which no S3 credential has: check what was pasted"
            )));
        }
    }
    match opts.get("cache").map(String::as_str) {
        None => {}
        Some("true" | "false") => {}
        Some(other) => {
            return Err(invalid(format!(
                "volume {name:?}: cache {other:?}: use true (a local file cache, faster) or false (consistent across hosts)"
            )));
        }
    }
    if let Some(o) = opts.get("other_opts") {
        command::fuse_options(o).map_err(|e| invalid(format!("volume {name:?}: {e}")))?;
    }
    Ok(())
}

fn check_nas(name: &str, opts: &mut BTreeMap<String, String>) -> Result<(), VolumeError> {
    let server = required(name, opts, "server", "nas.example.com")?;
    let server_ok = server
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && !server.starts_with('-');
    if !server_ok {
        return Err(invalid(format!(
            "volume {name:?}: server {server:?} is not a host name or address"
        )));
    }
    let path = required(name, opts, "path", "/export")?;
    if !path.starts_with('/')
        || path.split('/').any(|s| s == "..")
        || path.contains(char::is_whitespace)
    {
        return Err(invalid(format!(
            "volume {name:?}: path {path:?} must be the export's absolute path, without `..` or spaces (for example /export)"
        )));
    }
    if let Some(sub) = opts.get("subdir") {
        let t = sub.trim_matches('/');
        if t.is_empty()
            || t.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            || sub.contains(char::is_whitespace)
        {
            return Err(invalid(format!(
                "volume {name:?}: subdir {sub:?} must be a relative path inside the export, like apps/web, without `..`"
            )));
        }
        let t = t.to_string();
        opts.insert("subdir".into(), t);
    }
    match opts.get("vers").map(String::as_str) {
        None | Some("3" | "4" | "4.0" | "4.1" | "4.2") => {}
        Some(v) => {
            return Err(invalid(format!(
                "volume {name:?}: vers {v:?}: use 3 or 4 (or 4.0, 4.1, 4.2)"
            )));
        }
    }
    if let Some(m) = opts.get("mode") {
        parse_mode(m).ok_or_else(|| {
            invalid(format!(
                "volume {name:?}: mode {m:?} is not a permission: write octal digits like 0755 or 775"
            ))
        })?;
    }
    if let Some(o) = opts.get("options") {
        command::nfs_options(o).map_err(|e| invalid(format!("volume {name:?}: {e}")))?;
    }
    Ok(())
}

/// An octal permission (`0755`, `775`).
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn oss_needs_endpoint_bucket_and_both_keys() {
        let ok = opts(&[
            ("endpoint", "http://127.0.0.1:9000"),
            ("bucket", "data"),
            ("access_key", "AK"),
            ("secret_key", "SK"),
            ("path", "/apps/web/"),
        ]);
        let d = validate("v1", Driver::Oss, &ok).expect("valid");
        assert_eq!(d.opts["path"], "apps/web");
        assert_eq!(d.masked()["secret_key"], MASK);
        assert_eq!(d.masked()["access_key"], MASK);
        assert!(!d.public_opts().contains_key("secret_key"));
        for (bad, says) in [
            (&[("bucket", "data")][..], "needs option `endpoint`"),
            (
                &[("endpoint", "ftp://x"), ("bucket", "data")],
                "is not a URL",
            ),
            (
                &[("endpoint", "http://x"), ("bucket", "Data_1")],
                "not a bucket name",
            ),
            (
                &[
                    ("endpoint", "http://x"),
                    ("bucket", "data"),
                    ("access_key", "a"),
                ],
                "give both",
            ),
            (
                &[
                    ("endpoint", "http://x"),
                    ("bucket", "data"),
                    ("cache", "yes"),
                ],
                "cache \"yes\"",
            ),
            (
                &[
                    ("endpoint", "http://x"),
                    ("bucket", "data"),
                    ("path", "a/../b"),
                ],
                "not a key prefix",
            ),
            (
                &[
                    ("endpoint", "http://x"),
                    ("bucket", "data"),
                    ("colour", "red"),
                ],
                "has no option \"colour\"",
            ),
            (
                &[
                    ("endpoint", "http://x"),
                    ("bucket", "data"),
                    ("other_opts", "-f"),
                ],
                "-o",
            ),
        ] {
            let e = validate("v", Driver::Oss, &opts(bad))
                .expect_err(says)
                .to_string();
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn nas_checks_server_path_subdir_vers_mode() {
        let d = validate(
            "n",
            Driver::Nas,
            &opts(&[
                ("server", "10.0.0.2"),
                ("path", "/export"),
                ("subdir", "/a/b/"),
                ("mode", "0775"),
            ]),
        )
        .expect("valid");
        assert_eq!(d.opts["subdir"], "a/b");
        for (bad, says) in [
            (&[("path", "/x")][..], "needs option `server`"),
            (&[("server", "-oops"), ("path", "/x")], "not a host name"),
            (&[("server", "s"), ("path", "x")], "absolute path"),
            (
                &[("server", "s"), ("path", "/x"), ("subdir", "../etc")],
                "relative path",
            ),
            (
                &[("server", "s"), ("path", "/x"), ("vers", "2")],
                "use 3 or 4",
            ),
            (&[("server", "s"), ("path", "/x"), ("mode", "rwx")], "octal"),
            (
                &[("server", "s"), ("path", "/x"), ("options", "a b")],
                "option",
            ),
        ] {
            let e = validate("v", Driver::Nas, &opts(bad))
                .expect_err(says)
                .to_string();
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn names_and_modes() {
        assert!(valid_name("app_data-1.x"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("_x"));
        assert!(!valid_name(""));
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("8"), None);
        let e = validate("v", Driver::Local, &opts(&[("x", "y")]))
            .expect_err("x")
            .to_string();
        assert!(e.contains("type, device, o"), "{e}");
        let e = validate("v", Driver::Oss, &opts(&[("bucket", "a\nb")]))
            .expect_err("nl")
            .to_string();
        assert!(e.contains("control character"), "{e}");
    }
}
