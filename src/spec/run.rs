//! `berth run NAME IMAGE`: the one-service compose template a deploy from an image stands
//! for. Pure: the caller says which ports the image exposes.

/// `POST /v1/run`: `berth run NAME IMAGE`, a one-service app deployed from an image (the
/// agent writes the template it stands for; `spec::run`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub name: String,
    pub image: String,
    /// Compose port strings (`8080:80`, `80`); none: the image's first exposed TCP port.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `KEY=VALUE`, as written.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub replicas: Option<u32>,
    /// A domain the router serves the port on.
    #[serde(default)]
    pub route: Option<String>,
    /// A path on the port (`/health`), or a probe URL (`http://container:8080/x`, `tcp://`).
    #[serde(default)]
    pub probe: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub pull: bool,
}

/// The first line of every template `berth run` writes: a later `berth run` of the same name
/// updates such an app, and never one deployed from a template.
pub const HEADER: &str = "# Deployed from an image: berth run";

/// A YAML scalar holding `s` exactly: a JSON string is a YAML double-quoted scalar, and `$`
/// is doubled so the template's `${VAR}` interpolation leaves it as written.
fn scalar(s: &str) -> String {
    serde_json::Value::String(s.replace('$', "$$")).to_string()
}

/// The container port of a compose port string (`8080:80`, `127.0.0.1:8080:80/tcp`, `80`).
fn container_port(p: &str) -> Result<u16, String> {
    let (spec, _proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let last = spec.rsplit(':').next().unwrap_or(spec);
    last.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| {
        format!(
            "-p {p:?}: the container port must be one number (like -p 8080:80 or -p 80); ranges are for templates"
        )
    })
}

/// The lowest TCP port among an image's exposed ones (`80/tcp`, `53/udp`).
pub fn first_tcp_port(exposed: &[String]) -> Option<u16> {
    exposed
        .iter()
        .filter_map(|e| {
            let (n, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            (proto == "tcp").then(|| n.parse::<u16>().ok()).flatten()
        })
        .min()
}

/// What can be checked before the image is on the host: the name, the image reference and
/// the variables.
pub fn check(req: &RunRequest) -> Result<(), String> {
    if !super::valid_name(&req.name) {
        return Err(format!(
            "app name {:?}: use 1-48 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            req.name
        ));
    }
    if req.image.trim().is_empty()
        || req
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "image {:?} is not an image reference: write it as docker does, like nginx:1.27",
            req.image
        ));
    }
    for e in &req.env {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(format!("-e {e:?}: write KEY=VALUE"));
        }
    }
    Ok(())
}

/// The template for `req`, given the ports its image exposes. The port routes and probes
/// use is the first `-p`'s container port, else the image's first exposed TCP port, which is
/// then published on a free host port (`berth ps` shows it) unless a route serves it.
pub fn template(req: &RunRequest, exposed: &[String]) -> Result<String, String> {
    check(req)?;
    let port = match req.ports.first() {
        Some(p) => Some(container_port(p)?),
        None => first_tcp_port(exposed),
    };
    let needs_port =
        req.route.is_some() || req.probe.as_deref().is_some_and(|p| p.starts_with('/'));
    if needs_port && port.is_none() {
        return Err(format!(
            "{} exposes no TCP port, so the route or probe has none to use: name it with -p CONTAINER_PORT (or -p HOST:CONTAINER)",
            req.image
        ));
    }
    let mut t = String::new();
    t.push_str(&format!(
        "{HEADER} {} {}\nservices:\n  {}:\n    image: {}\n",
        req.name,
        req.image,
        req.name,
        scalar(&req.image)
    ));
    if !req.command.is_empty() {
        let args: Vec<String> = req.command.iter().map(|a| scalar(a)).collect();
        t.push_str(&format!("    command: [{}]\n", args.join(", ")));
    }
    if !req.env.is_empty() {
        t.push_str("    environment:\n");
        for e in &req.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() => t.push_str(&format!("      - {}\n", scalar(e))),
                _ => return Err(format!("-e {e:?}: write KEY=VALUE")),
            }
        }
    }
    let published: Vec<String> = if !req.ports.is_empty() {
        req.ports.clone()
    } else if req.route.is_none() {
        port.map(|p| vec![p.to_string()]).unwrap_or_default()
    } else {
        Vec::new()
    };
    if !published.is_empty() {
        t.push_str("    ports:\n");
        for p in &published {
            t.push_str(&format!("      - {}\n", scalar(p)));
        }
    }
    let mut labels = Vec::new();
    if let Some(n) = req.replicas {
        labels.push(("aliyun.scale".to_string(), n.to_string()));
    }
    if let (Some(domain), Some(p)) = (&req.route, port) {
        labels.push((format!("aliyun.routing.port_{p}"), domain.clone()));
    }
    if let Some(probe) = &req.probe {
        let url = match (probe.starts_with('/'), port) {
            (true, Some(p)) => format!("http://container:{p}{probe}"),
            _ if probe.starts_with("http://") || probe.starts_with("tcp://") => probe.clone(),
            _ => {
                return Err(format!(
                    "--probe {probe:?}: give a path (/health, on the service's port), or a URL like http://container:8080/health or tcp://container:5432"
                ));
            }
        };
        labels.push(("aliyun.probe.url".into(), url));
    }
    if !labels.is_empty() {
        t.push_str("    labels:\n");
        for (k, v) in labels {
            t.push_str(&format!("      {k}: {}\n", scalar(&v)));
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(image: &str) -> RunRequest {
        RunRequest {
            name: "web".into(),
            image: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_template_parses_as_what_was_asked() {
        let mut r = req("nginx:alpine");
        r.env = vec!["GREETING=hello $USER".into(), "EMPTY=".into()];
        r.command = vec!["nginx".into(), "-g".into(), "daemon off;".into()];
        r.replicas = Some(2);
        r.route = Some("web.example.com".into());
        r.probe = Some("/healthz".into());
        let t = template(&r, &["443/tcp".into(), "80/tcp".into()]).expect("template");
        let app = crate::spec::parse(&t, "web", &Default::default()).expect("parses");
        let s = &app.services["web"];
        assert_eq!(s.image, "nginx:alpine");
        assert_eq!(
            s.command.as_deref(),
            Some(&["nginx".to_string(), "-g".into(), "daemon off;".into()][..])
        );
        assert_eq!(
            s.environment["GREETING"], "hello $USER",
            "$ is kept as written"
        );
        assert_eq!(s.environment["EMPTY"], "");
        assert_eq!(s.replicas, 2);
        // The lowest exposed TCP port routes and probes; a route publishes nothing.
        assert!(
            t.contains("aliyun.routing.port_80: \"web.example.com\""),
            "{t}"
        );
        assert!(t.contains("http://container:80/healthz"), "{t}");
        assert!(
            s.ports.iter().all(|p| p.host_port.is_none()),
            "{:?}",
            s.ports
        );
    }

    #[test]
    fn ports_default_to_the_image_and_bad_input_is_named() {
        // No -p, no route: the first exposed port is published on a free host port.
        let t = template(&req("redis"), &["6379/tcp".into()]).expect("t");
        let app = crate::spec::parse(&t, "web", &Default::default()).expect("parses");
        assert_eq!(app.services["web"].ports[0].container_port, 6379);
        assert_eq!(app.services["web"].ports[0].host_port, None);
        // -p wins, and names the route's port.
        let mut r = req("img");
        r.ports = vec!["127.0.0.1:8081:8080/tcp".into()];
        r.route = Some("a.test".into());
        let t = template(&r, &["80/tcp".into()]).expect("t");
        assert!(t.contains("aliyun.routing.port_8080"), "{t}");
        for (ports, route, probe, env, says) in [
            (vec![], Some("a.test"), None, vec![], "exposes no TCP port"),
            (vec!["80-90"], None, None, vec![], "one number"),
            (vec![], None, Some("health"), vec![], "give a path"),
            (vec![], None, None, vec!["NOVALUE"], "KEY=VALUE"),
            (vec![], None, None, vec!["=x"], "KEY=VALUE"),
        ] {
            let mut r = req("img");
            r.ports = ports.iter().map(|s| s.to_string()).collect();
            r.route = route.map(String::from);
            r.probe = probe.map(String::from);
            r.env = env.iter().map(|s| s.to_string()).collect();
            let e = template(&r, &[]).expect_err(says);
            assert!(e.contains(says), "{e}");
        }
        assert!(template(&req(" "), &[]).is_err());
        // Nothing reaches the YAML unquoted: a name or image with a newline is refused.
        assert!(template(&req("a\n    privileged: true"), &[]).is_err());
        let mut r = req("img");
        r.name = "web:\n  evil".into();
        assert!(template(&r, &[]).expect_err("name").contains("app name"));
        assert_eq!(
            first_tcp_port(&["53/udp".into(), "8080/tcp".into(), "80".into()]),
            Some(80)
        );
    }
}
