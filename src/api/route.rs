//! `(method, path?query)` -> [`Command`]: pure, tested without a server.

use crate::spec::valid_name;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Health,
    ListApps,
    Deploy,
    AppStatus(String),
    Inspect(String),
    /// `GET /v1/apps/NAME/images`: a tarball of the app's images.
    SaveImages(String),
    RemoveApp {
        name: String,
        volumes: bool,
    },
    Scale(String),
    Stop(String),
    Start(String),
    Redeploy(String),
    Ps {
        app: Option<String>,
    },
    Events {
        app: Option<String>,
        after: i64,
        limit: i64,
        wait_s: u64,
    },
    ListImages,
    LoadImages,
    PruneImages,
    Versions {
        app: String,
        service: String,
    },
    DeleteVersion {
        app: String,
        service: String,
        number: u32,
    },
    Traffic {
        app: String,
        service: String,
    },
    Rollback {
        app: String,
        service: String,
    },
    Release {
        app: String,
        service: String,
        confirm: bool,
    },
    /// Prometheus exposition (`GET /metrics`).
    Prometheus,
    Top {
        app: Option<String>,
    },
    /// The last hour of an app's series (None: the host's).
    MetricsHistory {
        app: Option<String>,
    },
    ListAlarms,
    AddAlarm,
    RemoveAlarm(String),
    Outbox,
    Logs(LogsParams),
    ListVolumes,
    CreateVolume,
    InspectVolume(String),
    RemoveVolume(String),
    SystemPrune,
}

/// `GET /v1/logs` parameters, times still as the user wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsParams {
    pub app: String,
    pub service: Option<String>,
    pub slot: Option<u32>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub tail: Option<usize>,
    pub grep: Option<String>,
    pub stream: Option<String>,
    pub follow: bool,
}

impl Command {
    /// Answered without a token (liveness checks, load balancers).
    pub fn public(&self) -> bool {
        matches!(self, Command::Health)
    }

    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Command::Deploy
                | Command::Scale(_)
                | Command::Redeploy(_)
                | Command::Traffic { .. }
                | Command::Rollback { .. }
                | Command::AddAlarm
                | Command::CreateVolume
        )
    }
}

/// A request body, parsed as its command's type (pure; the API fuzz target drives it).
#[derive(Debug)]
pub enum Body {
    None,
    Deploy(crate::wire::DeployRequest),
    Scale(crate::wire::ScaleRequest),
    Redeploy(crate::wire::RedeployRequest),
    Traffic(crate::wire::TrafficRequest),
    Rollback(crate::wire::RollbackRequest),
    Alarm(crate::metrics::history::AlarmRule),
    Volume(crate::wire::VolumeCreateRequest),
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// `body` parsed for `cmd`; empty (or blank) is the default request where the command allows
/// one (redeploy, rollback). Err is the message of a 400.
pub fn parse_body(cmd: &Command, body: &[u8]) -> Result<Body, String> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    Ok(match cmd {
        Command::Deploy => Body::Deploy(json(body)?),
        Command::Scale(_) => Body::Scale(json(body)?),
        Command::Redeploy(_) if blank => Body::Redeploy(Default::default()),
        Command::Redeploy(_) => Body::Redeploy(json(body)?),
        Command::Traffic { .. } => Body::Traffic(json(body)?),
        Command::Rollback { .. } if blank => Body::Rollback(Default::default()),
        Command::Rollback { .. } => Body::Rollback(json(body)?),
        Command::AddAlarm => Body::Alarm(json(body)?),
        Command::CreateVolume => Body::Volume(json(body)?),
        _ => Body::None,
    })
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteError {
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("invalid app name {0:?} in the path")]
    BadName(String),
    #[error("invalid query parameter {name}={value:?}: {hint}")]
    BadQuery {
        name: String,
        value: String,
        hint: &'static str,
    },
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound { .. } => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::BadName(_) | RouteError::BadQuery { .. } => 400,
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn num<T: std::str::FromStr>(name: &str, v: &str, hint: &'static str) -> Result<T, RouteError> {
    v.parse().map_err(|_| RouteError::BadQuery {
        name: name.into(),
        value: v.into(),
        hint,
    })
}

/// A name from the path, percent-decoded, if `valid` accepts it.
fn checked(s: &str, valid: fn(&str) -> bool) -> Result<String, RouteError> {
    let s = percent_decode(s);
    if valid(&s) {
        Ok(s)
    } else {
        Err(RouteError::BadName(s))
    }
}

fn volume_name(s: &str) -> Result<String, RouteError> {
    checked(s, crate::volumes::valid_name)
}

fn app_name(s: &str) -> Result<String, RouteError> {
    checked(s, valid_name)
}

fn service_name(s: &str) -> Result<String, RouteError> {
    checked(s, crate::spec::valid_service_name)
}

pub fn parse_request(method: &str, url: &str) -> Result<Command, RouteError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q = query_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let not_allowed = || RouteError::MethodNotAllowed {
        method: method.into(),
        path: path.into(),
    };
    let cmd = match (segs.as_slice(), method) {
        (["v1", "health"], "GET") => Command::Health,
        (["v1", "health"], _) => return Err(not_allowed()),
        (["v1", "apps"], "GET") => Command::ListApps,
        (["v1", "apps"], "POST") => Command::Deploy,
        (["v1", "apps"], _) => return Err(not_allowed()),
        (["v1", "apps", name], "GET") => Command::AppStatus(app_name(name)?),
        (["v1", "apps", name], "DELETE") => Command::RemoveApp {
            name: app_name(name)?,
            volumes: matches!(get("volumes"), Some("true" | "1")),
        },
        (["v1", "apps", _], _) => return Err(not_allowed()),
        (["v1", "apps", name, "spec"], "GET") => Command::Inspect(app_name(name)?),
        (["v1", "apps", name, "images"], "GET") => Command::SaveImages(app_name(name)?),
        (["v1", "apps", name, "scale"], "POST") => Command::Scale(app_name(name)?),
        (["v1", "apps", name, "stop"], "POST") => Command::Stop(app_name(name)?),
        (["v1", "apps", name, "start"], "POST") => Command::Start(app_name(name)?),
        (["v1", "apps", name, "redeploy"], "POST") => Command::Redeploy(app_name(name)?),
        (
            [
                "v1",
                "apps",
                _,
                "spec" | "scale" | "stop" | "start" | "redeploy",
            ],
            _,
        ) => return Err(not_allowed()),

        (["v1", "apps", name, "services", svc, "versions"], "GET") => Command::Versions {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "versions", n], "DELETE") => {
            Command::DeleteVersion {
                app: app_name(name)?,
                service: service_name(svc)?,
                number: num("version", n, "a version number")?,
            }
        }
        (["v1", "apps", _, "services", _, "versions", ..], _) => return Err(not_allowed()),
        (["v1", "apps", name, "services", svc, "traffic"], "POST") => Command::Traffic {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "rollback"], "POST") => Command::Rollback {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (
            [
                "v1",
                "apps",
                name,
                "services",
                svc,
                "release",
                verb @ ("confirm" | "abort"),
            ],
            "POST",
        ) => Command::Release {
            app: app_name(name)?,
            service: service_name(svc)?,
            confirm: *verb == "confirm",
        },
        (["v1", "apps", _, "services", _, "traffic" | "rollback"], _)
        | (
            [
                "v1",
                "apps",
                _,
                "services",
                _,
                "release",
                "confirm" | "abort",
            ],
            _,
        ) => {
            return Err(not_allowed());
        }
        (["v1", "ps"], "GET") => Command::Ps {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
        },
        (["v1", "events"], "GET") => Command::Events {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
            after: get("after")
                .map(|v| num("after", v, "an event id"))
                .transpose()?
                .unwrap_or(0),
            limit: get("limit")
                .map(|v| num::<i64>("limit", v, "a number of events"))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 10_000),
            wait_s: get("wait")
                .map(|v| num::<u64>("wait", v, "seconds to wait"))
                .transpose()?
                .unwrap_or(0)
                .min(60),
        },
        (["metrics"], "GET") => Command::Prometheus,
        (["v1", "top"], "GET") => Command::Top {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
        },
        (["v1", "metrics"], "GET") => Command::MetricsHistory {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
        },
        (["v1", "alarms"], "GET") => Command::ListAlarms,
        (["v1", "alarms"], "POST") => Command::AddAlarm,
        (["v1", "alarms", name], "DELETE") => Command::RemoveAlarm(app_name(name)?),
        (["v1", "outbox"], "GET") => Command::Outbox,
        (["v1", "logs"], "GET") => {
            let opt = |k: &str| get(k).filter(|v| !v.is_empty()).map(str::to_string);
            Command::Logs(LogsParams {
                app: app_name(get("app").unwrap_or(""))?,
                service: get("service")
                    .filter(|a| !a.is_empty())
                    .map(app_name)
                    .transpose()?,
                slot: get("slot")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("slot", v, "a slot number"))
                    .transpose()?,
                since: opt("since"),
                until: opt("until"),
                tail: get("tail")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("tail", v, "a number of lines"))
                    .transpose()?,
                grep: opt("grep"),
                stream: opt("stream"),
                follow: matches!(get("follow"), Some("true" | "1")),
            })
        }
        (["metrics"], _)
        | (["v1", "top" | "metrics" | "alarms" | "outbox" | "logs"], _)
        | (["v1", "alarms", _], _) => return Err(not_allowed()),
        (["v1", "volumes"], "GET") => Command::ListVolumes,
        (["v1", "volumes"], "POST") => Command::CreateVolume,
        (["v1", "volumes", name], "GET") => Command::InspectVolume(volume_name(name)?),
        (["v1", "volumes", name], "DELETE") => Command::RemoveVolume(volume_name(name)?),
        (["v1", "system", "prune"], "POST") => Command::SystemPrune,
        (["v1", "volumes"], _) | (["v1", "volumes", _], _) | (["v1", "system", "prune"], _) => {
            return Err(not_allowed());
        }
        (["v1", "images"], "GET") => Command::ListImages,
        (["v1", "images", "load"], "POST") => Command::LoadImages,
        (["v1", "images", "prune"], "POST") => Command::PruneImages,
        (["v1", "ps" | "events" | "images"], _) | (["v1", "images", "load" | "prune"], _) => {
            return Err(not_allowed());
        }
        _ => {
            return Err(RouteError::NotFound {
                method: method.into(),
                path: path.into(),
            });
        }
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_to_commands() {
        assert_eq!(parse_request("GET", "/v1/apps"), Ok(Command::ListApps));
        assert_eq!(
            parse_request("DELETE", "/v1/apps/shop?volumes=true"),
            Ok(Command::RemoveApp {
                name: "shop".into(),
                volumes: true
            })
        );
        assert_eq!(
            parse_request("GET", "/v1/events?app=shop&after=5&wait=3"),
            Ok(Command::Events {
                app: Some("shop".into()),
                after: 5,
                limit: 100,
                wait_s: 3
            })
        );
        assert_eq!(
            parse_request("POST", "/v1/apps/shop/services/web/release/abort"),
            Ok(Command::Release {
                app: "shop".into(),
                service: "web".into(),
                confirm: false
            })
        );
        assert_eq!(
            parse_request("GET", "/v1/apps/shop/services/web/traffic").map_err(|e| e.status()),
            Err(405)
        );
        assert_eq!(
            parse_request("GET", "/v1/ps?app=a%2Db"),
            Ok(Command::Ps {
                app: Some("a-b".into())
            })
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_status() {
        assert_eq!(
            parse_request("GET", "/v2/x").map_err(|e| e.status()),
            Err(404)
        );
        assert_eq!(
            parse_request("PUT", "/v1/apps").map_err(|e| e.status()),
            Err(405)
        );
        assert_eq!(
            parse_request("GET", "/v1/apps/..%2Fetc").map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            parse_request("GET", "/v1/events?after=x").map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }
}
