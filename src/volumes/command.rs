//! The helpers' command lines, built from a volume's options (pure).
//!
//! Credentials never appear here: the FUSE helper reads them from a passwd file (mode 0600)
//! whose path is the only thing on its command line, so `ps` shows nothing secret.

use super::VolumeDef;

/// FUSE options berth sets itself from the volume's own options.
const OWN_FUSE_OPTS: &[&str] = &["passwd_file", "url", "use_cache", "public_bucket"];

/// Checks `other_opts` (`-o allow_other -o umask=022`, `-oa,b`) and returns the options, one
/// per entry.
pub fn fuse_options(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut words = s.split_whitespace();
    while let Some(w) = words.next() {
        let value = if w == "-o" {
            words
                .next()
                .ok_or_else(|| "other_opts ends with `-o` and no option after it".to_string())?
        } else if let Some(v) = w.strip_prefix("-o") {
            v
        } else {
            return Err(format!(
                "other_opts {w:?}: write the helper's options as `-o name[=value]` (for example -o allow_other -o umask=022)"
            ));
        };
        for o in value.split(',').filter(|o| !o.is_empty()) {
            let key = o.split('=').next().unwrap_or(o);
            if OWN_FUSE_OPTS.contains(&key) {
                return Err(format!(
                    "other_opts: berth sets `{key}` itself (from endpoint, cache and the keys); remove it"
                ));
            }
            if !o
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_=.:/-+@%".contains(c))
            {
                return Err(format!(
                    "other_opts: option {o:?} has characters no helper option uses"
                ));
            }
            out.push(o.to_string());
        }
    }
    Ok(out)
}

/// Checks NFS mount options (`nolock,soft,timeo=600`).
pub fn nfs_options(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !o
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=.:/-".contains(c))
        {
            return Err(format!(
                "NFS option {o:?}: write mount options separated by commas, like nolock,soft,timeo=600"
            ));
        }
        if o.starts_with("vers=") || o.starts_with("nfsvers=") {
            return Err(format!(
                "NFS option {o:?}: set the version with the `vers` option of the volume"
            ));
        }
        out.push(o.to_string());
    }
    Ok(out)
}

/// How an `oss` volume addresses its bucket, and why: virtual-host style
/// (`bucket.endpoint`) needs a DNS name the bucket can be put in front of; an IP address,
/// `localhost` or a one-label host (MinIO, a local S3 API, a service name) cannot take that,
/// so those use path style (`endpoint/bucket`) by themselves; `use_path_request_style` in
/// `other_opts` asks for it anywhere.
pub fn request_style(def: &VolumeDef) -> (&'static str, &'static str) {
    let o = &def.opts;
    if o.get("other_opts")
        .is_some_and(|x| x.contains("use_path_request_style"))
    {
        return ("path", "other_opts asks for use_path_request_style");
    }
    let endpoint = o.get("endpoint").map(String::as_str).unwrap_or_default();
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal.
        Some(v6) => {
            return (
                "path",
                if v6.contains(']') {
                    "the endpoint is an IP address"
                } else {
                    "the endpoint is not a DNS name"
                },
            );
        }
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        ("path", "the endpoint is an IP address")
    } else if host.eq_ignore_ascii_case("localhost") {
        ("path", "the endpoint is localhost")
    } else if !host.contains('.') {
        ("path", "the endpoint is a one-label host name")
    } else {
        (
            "virtual-host",
            "the endpoint is a DNS name (bucket.endpoint)",
        )
    }
}

/// The FUSE helper's arguments: it runs in the foreground (`-f`) so berth sees it exit and
/// reads its own error text.
pub fn oss_args(
    def: &VolumeDef,
    mountpoint: &str,
    passwd_file: &str,
    cache_dir: &str,
) -> Vec<String> {
    let o = &def.opts;
    let bucket = o.get("bucket").map(String::as_str).unwrap_or_default();
    let mut args = vec![
        match o.get("path").filter(|p| !p.is_empty()) {
            Some(p) => format!("{bucket}:/{p}"),
            None => bucket.to_string(),
        },
        mountpoint.to_string(),
        "-f".into(),
    ];
    let mut push = |opt: String| {
        args.push("-o".into());
        args.push(opt);
    };
    if o.get("access_key").is_some_and(|k| !k.is_empty()) {
        push(format!("passwd_file={passwd_file}"));
    } else {
        push("public_bucket=1".into());
    }
    push(format!(
        "url={}",
        o.get("endpoint").map(String::as_str).unwrap_or_default()
    ));
    // Containers run as any user: the mount is for all of them.
    push("allow_other".into());
    if o.get("cache").map(String::as_str) == Some("true") {
        push(format!("use_cache={cache_dir}"));
    } else {
        // No metadata cache: what another host wrote is seen at once.
        push("max_stat_cache_size=0".into());
    }
    let extras = o
        .get("other_opts")
        .and_then(|s| fuse_options(s).ok())
        .unwrap_or_default();
    if request_style(def).0 == "path" && !extras.iter().any(|e| e == "use_path_request_style") {
        push("use_path_request_style".into());
    }
    for extra in extras {
        push(extra);
    }
    args
}

/// The passwd file's one line (`bucket:access_key:secret_key`, which both s3fs and ossfs read).
pub fn passwd_line(def: &VolumeDef) -> String {
    let g = |k: &str| def.opts.get(k).map(|s| s.trim()).unwrap_or_default();
    format!("{}:{}:{}\n", g("bucket"), g("access_key"), g("secret_key"))
}

/// `server:/path[/subdir]` (an IPv6 server in brackets).
pub fn nfs_source(def: &VolumeDef, with_subdir: bool) -> String {
    let o = &def.opts;
    let server = o.get("server").map(String::as_str).unwrap_or_default();
    let server = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]")
    } else {
        server.to_string()
    };
    let path = o.get("path").map(String::as_str).unwrap_or("/");
    let mut src = format!("{server}:{path}");
    if with_subdir && let Some(sub) = o.get("subdir") {
        if !src.ends_with('/') {
            src.push('/');
        }
        src.push_str(sub);
    }
    src
}

/// `mount`'s arguments for an NFS volume.
pub fn nfs_args(def: &VolumeDef, source: &str, mountpoint: &str) -> Vec<String> {
    let vers = def.opts.get("vers").map(String::as_str).unwrap_or("4");
    let mut opts = vec![format!("vers={vers}")];
    opts.extend(
        def.opts
            .get("options")
            .and_then(|s| nfs_options(s).ok())
            .unwrap_or_default(),
    );
    vec![
        "-t".into(),
        "nfs".into(),
        "-o".into(),
        opts.join(","),
        source.to_string(),
        mountpoint.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::{Driver, validate};

    fn def(driver: Driver, kv: &[(&str, &str)]) -> VolumeDef {
        let opts = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate("vol", driver, &opts).expect("valid")
    }

    #[test]
    fn endpoints_that_cannot_take_a_bucket_name_use_path_style() {
        for (endpoint, style) in [
            ("http://127.0.0.1:9000", "path"),
            ("https://10.0.0.5", "path"),
            ("http://[::1]:9000", "path"),
            ("http://localhost:9000", "path"),
            ("http://LOCALHOST", "path"),
            ("http://minio:9000/", "path"),
            ("https://oss-cn-hangzhou.aliyuncs.com", "virtual-host"),
            ("https://s3.example.com:8443", "virtual-host"),
        ] {
            let d = def(Driver::Oss, &[("endpoint", endpoint), ("bucket", "bkt")]);
            assert_eq!(request_style(&d).0, style, "{endpoint}");
            let line = oss_args(&d, "/m", "/pw", "/c").join(" ");
            assert_eq!(
                line.contains("use_path_request_style"),
                style == "path",
                "{endpoint}: {line}"
            );
        }
        // Asked for by hand: once, not twice.
        let d = def(
            Driver::Oss,
            &[
                ("endpoint", "http://127.0.0.1:9000"),
                ("bucket", "bkt"),
                ("other_opts", "-o use_path_request_style"),
            ],
        );
        let line = oss_args(&d, "/m", "/pw", "/c").join(" ");
        assert_eq!(line.matches("use_path_request_style").count(), 1, "{line}");
    }

    #[test]
    fn oss_command_line_has_no_secret() {
        let d = def(
            Driver::Oss,
            &[
                ("endpoint", "http://127.0.0.1:9000"),
                ("bucket", "data"),
                ("path", "web"),
                ("access_key", "AKIDSECRETISH"),
                ("secret_key", "VERYSECRET"),
                ("other_opts", "-o use_path_request_style -oumask=022,ro"),
            ],
        );
        let args = oss_args(&d, "/var/lib/berth/volumes/vol", "/run/pw", "/c");
        let line = args.join(" ");
        assert_eq!(
            line,
            "data:/web /var/lib/berth/volumes/vol -f -o passwd_file=/run/pw -o url=http://127.0.0.1:9000 -o allow_other -o max_stat_cache_size=0 -o use_path_request_style -o umask=022 -o ro"
        );
        assert!(!line.contains("SECRET"));
        assert_eq!(passwd_line(&d), "data:AKIDSECRETISH:VERYSECRET\n");
        let cached = def(
            Driver::Oss,
            &[
                ("endpoint", "https://e"),
                ("bucket", "data"),
                ("cache", "true"),
            ],
        );
        let line = oss_args(&cached, "/m", "/pw", "/cache/vol").join(" ");
        assert!(line.contains("-o use_cache=/cache/vol"), "{line}");
        assert!(line.contains("-o public_bucket=1"), "{line}");
        assert!(!line.contains("passwd_file"), "{line}");
    }

    #[test]
    fn fuse_options_refuse_what_berth_sets_and_non_options() {
        assert_eq!(
            fuse_options("-o allow_other -odefault_permission=666").expect("ok"),
            vec!["allow_other", "default_permission=666"]
        );
        assert!(fuse_options("-o passwd_file=/etc/x").is_err());
        assert!(fuse_options("-o url=http://x").is_err());
        assert!(fuse_options("--debug").is_err());
        assert!(fuse_options("-o").is_err());
        assert!(fuse_options("-o a;rm").is_err());
    }

    #[test]
    fn nfs_sources_and_options() {
        let d = def(
            Driver::Nas,
            &[
                ("server", "fd00::2"),
                ("path", "/export"),
                ("subdir", "apps/web"),
                ("vers", "3"),
                ("options", "nolock, soft,timeo=600"),
            ],
        );
        assert_eq!(nfs_source(&d, false), "[fd00::2]:/export");
        assert_eq!(nfs_source(&d, true), "[fd00::2]:/export/apps/web");
        assert_eq!(
            nfs_args(&d, "s:/e", "/m"),
            vec![
                "-t",
                "nfs",
                "-o",
                "vers=3,nolock,soft,timeo=600",
                "s:/e",
                "/m"
            ]
        );
        let plain = def(Driver::Nas, &[("server", "nas"), ("path", "/")]);
        assert_eq!(nfs_source(&plain, true), "nas:/");
        assert_eq!(nfs_args(&plain, "nas:/", "/m")[3], "vers=4");
        assert!(nfs_options("vers=3").is_err());
        assert!(nfs_options("a b").is_err());
    }
}
