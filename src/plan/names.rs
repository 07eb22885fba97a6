//! Service names across hosts: which (app, service) needs a holder on this host, what it
//! answers to and on which ports, and where each of its connections may go.
//!
//! A service's name on its app network resolves to its instances on this host (their
//! aliases, as on one host) and, when it also runs on other members, to a holder container
//! whose network namespace the agent listens in: a connection there goes to a ready
//! instance of the service on any host (this host's directly, another member's through a
//! sealed stream on the peer channel). Pure.

use crate::model::{AppSpec, Instance, NetworkMode};
use std::collections::{BTreeMap, BTreeSet};

/// The DNS names of `service` on its app network: its name, and every alias other services
/// link to it by.
pub fn dns_names(app: &AppSpec, service: &str) -> Vec<String> {
    let mut aliases = vec![service.to_string()];
    for other in app.services.values() {
        for l in &other.links {
            if l.target == service && !aliases.contains(&l.alias) {
                aliases.push(l.alias.clone());
            }
        }
    }
    aliases
}

/// An instance another member runs, as its record says.
#[derive(Debug, Clone, PartialEq)]
pub struct Elsewhere {
    pub app: String,
    pub service: String,
    /// The member's node id.
    pub node: String,
    /// Ready (running, healthy, of a live version) and so a target.
    pub ready: bool,
    pub exposed: Vec<u16>,
}

/// Where a connection to a service's name may go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An instance on this host, at its app network address.
    Local(std::net::IpAddr),
    /// An instance on another member (by node id).
    Remote(String),
    /// An address outside (an `external:` service's host), resolved at each connection.
    Outside(String),
    /// The router's internal side (a `.local` route name, routed by Host).
    Router,
}

/// A holder this host needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Want {
    pub aliases: Vec<String>,
    pub ports: BTreeSet<u16>,
    pub targets: Vec<Target>,
}

/// The holders this host needs, by (app, service): a service of an app with a running
/// instance here (so its network is here and something may call), in bridge mode, with an
/// instance on another member. Its ports are those the template names (`expose:`, `ports:`)
/// and those its instances expose (the image's `EXPOSE`); its targets are its ready
/// instances here and on the other members (a holder stays while the service runs
/// elsewhere, even with none ready, so its name does not come and go with health).
pub fn wanted(
    apps: &[&AppSpec],
    local: &[Instance],
    elsewhere: &[Elsewhere],
) -> BTreeMap<(String, String), Want> {
    let mut out = BTreeMap::new();
    for app in apps {
        let here = local
            .iter()
            .any(|i| i.app == app.name && i.state == crate::model::InstanceState::Running);
        if !here {
            continue;
        }
        for (name, svc) in &app.services {
            if svc.network_mode != NetworkMode::Bridge {
                continue;
            }
            let remote: Vec<&Elsewhere> = elsewhere
                .iter()
                .filter(|e| e.app == app.name && e.service == *name)
                .collect();
            if remote.is_empty() {
                continue;
            }
            let mine = local
                .iter()
                .filter(|i| i.app == app.name && i.service == *name);
            let mut ports: BTreeSet<u16> = svc.expose.iter().copied().collect();
            ports.extend(svc.ports.iter().map(|p| p.container_port));
            ports.extend(remote.iter().flat_map(|e| e.exposed.iter().copied()));
            ports.extend(mine.clone().flat_map(|i| i.exposed.iter().copied()));
            ports.remove(&0);
            let mut targets: Vec<Target> = mine
                .filter(|i| super::is_ready(i))
                .filter_map(|i| i.ip.parse().ok().map(Target::Local))
                .collect();
            targets.extend(
                remote
                    .iter()
                    .filter(|e| e.ready)
                    .map(|e| Target::Remote(e.node.clone())),
            );
            out.insert(
                (app.name.clone(), name.clone()),
                Want {
                    aliases: dns_names(app, name),
                    ports,
                    targets,
                },
            );
        }
        // `.local` route names the app's services link to (`external_links`): held on the
        // app network, carried to the router's internal side on port 80.
        for svc in app.services.values() {
            for l in &svc.local_routes {
                let w = out
                    .entry((app.name.clone(), l.target.clone()))
                    .or_insert_with(|| Want {
                        aliases: vec![l.target.clone()],
                        ports: BTreeSet::from([80]),
                        targets: vec![Target::Router],
                    });
                if !w.aliases.contains(&l.alias) {
                    w.aliases.push(l.alias.clone());
                }
            }
        }
        // An outside address the app names: held on every host the app runs on.
        for (name, ext) in &app.externals {
            out.insert(
                (app.name.clone(), name.clone()),
                Want {
                    aliases: dns_names(app, name),
                    ports: ext.ports.iter().copied().collect(),
                    targets: vec![Target::Outside(ext.host.clone())],
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppSpec {
        crate::spec::parse(
            "web:\n  image: nginx\n  links: [\"db:database\"]\ndb:\n  image: postgres\n  expose: [\"5432\"]\nside:\n  image: x\n  network_mode: host\n",
            "shop",
            &Default::default(),
        )
        .expect("parse")
    }

    fn local(service: &str, ip: &str, ready: bool) -> Instance {
        let mut i = crate::plan::tests::inst(
            "c1",
            "shop",
            service,
            1,
            "h",
            crate::model::InstanceState::Running,
        );
        i.ip = ip.into();
        if !ready {
            i.health = crate::model::Health::Starting;
        }
        i
    }

    fn away(service: &str, node: &str, ready: bool, exposed: &[u16]) -> Elsewhere {
        Elsewhere {
            app: "shop".into(),
            service: service.into(),
            node: node.into(),
            ready,
            exposed: exposed.to_vec(),
        }
    }

    #[test]
    fn a_local_route_named_in_external_links_is_held_for_the_router() {
        let a = crate::spec::parse(
            "services:\n  web:\n    image: nginx\n    external_links: [\"restserver.local\", \"api.local:api\", \"legacy_db:db\"]\n",
            "shop",
            &Default::default(),
        )
        .expect("parse");
        let web = &a.services["web"];
        assert_eq!(
            web.external_links.len(),
            1,
            "only real containers are engine links"
        );
        let w = wanted(&[&a], &[local("web", "172.20.0.2", true)], &[]);
        let rest = &w[&("shop".to_string(), "restserver.local".to_string())];
        assert_eq!(rest.targets, vec![Target::Router]);
        assert_eq!(rest.ports, BTreeSet::from([80]));
        let api = &w[&("shop".to_string(), "api.local".to_string())];
        assert_eq!(
            api.aliases,
            vec!["api.local".to_string(), "api".to_string()]
        );
    }

    #[test]
    fn an_external_service_is_held_where_the_app_runs_with_its_aliases_and_ports() {
        let a = crate::spec::parse(
            "services:\n  web:\n    image: nginx\n    links: [\"db:database\"]\n  db:\n    external:\n      host: rds1.mysql.rds.aliyuncs.com\n      ports: [3306, 33060]\n",
            "shop",
            &Default::default(),
        )
        .expect("parse");
        assert!(wanted(&[&a], &[], &[]).is_empty(), "no network here yet");
        let w = wanted(&[&a], &[local("web", "172.20.0.2", true)], &[]);
        let db = &w[&("shop".to_string(), "db".to_string())];
        assert_eq!(db.aliases, vec!["db".to_string(), "database".to_string()]);
        assert_eq!(db.ports, BTreeSet::from([3306, 33060]));
        assert_eq!(
            db.targets,
            vec![Target::Outside("rds1.mysql.rds.aliyuncs.com".into())]
        );
    }

    #[test]
    fn a_service_running_elsewhere_gets_a_holder_with_its_link_aliases_and_ports() {
        let a = app();
        let w = wanted(
            &[&a],
            &[local("web", "172.20.0.2", true)],
            &[away("db", "n2", true, &[5432, 9187])],
        );
        let db = &w[&("shop".to_string(), "db".to_string())];
        assert_eq!(db.aliases, vec!["db".to_string(), "database".to_string()]);
        assert_eq!(db.ports, BTreeSet::from([5432, 9187]));
        assert_eq!(db.targets, vec![Target::Remote("n2".into())]);
        assert_eq!(w.len(), 1, "web runs only here: no holder for it");
    }

    #[test]
    fn local_ready_instances_and_remote_ones_are_targets_unready_are_not() {
        let a = app();
        let w = wanted(
            &[&a],
            &[
                local("web", "172.20.0.2", true),
                local("db", "172.20.0.3", true),
                local("db", "172.20.0.4", false),
            ],
            &[away("db", "n2", true, &[]), away("db", "n3", false, &[])],
        );
        let db = &w[&("shop".to_string(), "db".to_string())];
        assert_eq!(
            db.targets,
            vec![
                Target::Local("172.20.0.3".parse().unwrap()),
                Target::Remote("n2".into())
            ]
        );
    }

    #[test]
    fn no_holder_without_a_local_running_instance_of_the_app_or_in_host_mode() {
        let a = app();
        assert!(wanted(&[&a], &[], &[away("db", "n2", true, &[5432])]).is_empty());
        let w = wanted(
            &[&a],
            &[local("web", "172.20.0.2", true)],
            &[away("side", "n2", true, &[80])],
        );
        assert!(
            w.is_empty(),
            "a host-network service has no name on the app network"
        );
    }

    #[test]
    fn a_holder_stays_while_the_service_runs_elsewhere_unready() {
        let a = app();
        let w = wanted(
            &[&a],
            &[local("web", "172.20.0.2", true)],
            &[away("db", "n2", false, &[])],
        );
        let db = &w[&("shop".to_string(), "db".to_string())];
        assert!(db.targets.is_empty());
        assert_eq!(db.ports, BTreeSet::from([5432]));
    }
}
