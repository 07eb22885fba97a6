//! Routes shared between services, and the seed's blue/green between services.
//!
//! Two services of one app that name the same route (`routing.port_N` with the same domain
//! and path) share it: with equal weights, as the seed's acs/proxy merges services with the
//! same virtual host, unless weights were set (`berth traffic APP --route R S=W...`). A
//! blue/green deploy that renames services (`nginx-v1` -> `nginx-v2`, both routed at
//! `nginx`) keeps the old services beside the new ones and gives the new ones 0% of every
//! route they share until `berth release confirm|abort APP`.
//!
//! Invariants: pure. A route's weights are percents over the services that name it and add
//! up to 100; a service that names the route and is not in its weights gets 0%.

use crate::model::{AppSpec, Route};
use std::collections::BTreeMap;

/// Weights by route key, then by service.
pub type RouteWeights = BTreeMap<String, BTreeMap<String, u32>>;

/// A route's key: its domain as written (a full domain, or a prefix of the router's
/// domain) and its path. The same key in two services is one shared route.
pub fn key(r: &Route) -> String {
    format!("{}{}", r.domain.to_ascii_lowercase(), r.path)
}

/// Every labelled route of the app, with the services that name it (sorted, once each).
pub fn by_route(spec: &AppSpec) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in &spec.services {
        for r in svc.ext.routing.values().flatten() {
            let services = out.entry(key(r)).or_default();
            if !services.contains(name) {
                services.push(name.clone());
            }
        }
    }
    out
}

/// The routes two or more services name.
pub fn shared(spec: &AppSpec) -> BTreeMap<String, Vec<String>> {
    let mut all = by_route(spec);
    all.retain(|_, s| s.len() > 1);
    all
}

/// Each service's percent of a route named by `services`: the weights set for it (a service
/// not in them gets 0), or equal shares (the first ones take the remainder) when none are
/// set or the set ones no longer add up to 100 over these services (one was removed).
pub fn service_weights(services: &[String], set: Option<&BTreeMap<String, u32>>) -> Vec<u32> {
    if let Some(set) = set {
        let w: Vec<u32> = services
            .iter()
            .map(|s| set.get(s).copied().unwrap_or(0))
            .collect();
        if w.iter().sum::<u32>() == 100 {
            return w;
        }
    }
    let n = services.len().max(1) as u32;
    (0..services.len() as u32)
        .map(|i| 100 / n + u32::from(i < 100 % n))
        .collect()
}

/// The weights a blue/green deploy between services starts with: on every shared route of
/// `merged` (the new template's services plus the old ones it dropped), the services `new`
/// get 0% and the others keep their part (equal shares, or the weights `current` had).
pub fn release_start(merged: &AppSpec, new: &[String], current: &RouteWeights) -> RouteWeights {
    let mut out = RouteWeights::new();
    for (route, services) in shared(merged) {
        let old: Vec<String> = services
            .iter()
            .filter(|s| !new.contains(s))
            .cloned()
            .collect();
        if old.is_empty() {
            continue;
        }
        let mut w: BTreeMap<String, u32> = services.iter().map(|s| (s.clone(), 0)).collect();
        let weights = service_weights(&old, current.get(&route));
        for (s, p) in old.iter().zip(weights) {
            w.insert(s.clone(), p);
        }
        out.insert(route, w);
    }
    out
}

/// The weights that still mean something for `spec`: of routes its services still share,
/// for the services that still name them (a deploy keeps a split it does not change).
pub fn kept(weights: &RouteWeights, spec: &AppSpec) -> RouteWeights {
    let shared = shared(spec);
    weights
        .iter()
        .filter_map(|(route, w)| {
            let services = shared.get(route)?;
            let w: BTreeMap<String, u32> = w
                .iter()
                .filter(|(s, _)| services.contains(s))
                .map(|(s, p)| (s.clone(), *p))
                .collect();
            (!w.is_empty()).then(|| (route.clone(), w))
        })
        .collect()
}

/// Finds the shared route the user named (`--route nginx`): its key, its domain alone when
/// only one of its routes has that domain, or the host it answers to under the router's
/// domain.
pub fn find<'a>(
    shared: &'a BTreeMap<String, Vec<String>>,
    given: &str,
    router_domain: &str,
) -> Result<(&'a String, &'a Vec<String>), String> {
    let g = given
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_ascii_lowercase();
    let d = router_domain.trim_matches('.').to_ascii_lowercase();
    let under = |k: &str| -> String {
        match d.is_empty() {
            true => k.to_string(),
            false => format!("{k}.{d}"),
        }
    };
    let exact: Vec<_> = shared
        .iter()
        .filter(|(k, _)| **k == g || (!d.is_empty() && under(k) == g))
        .collect();
    let hits = if exact.is_empty() {
        shared
            .iter()
            .filter(|(k, _)| {
                let domain = k.split('/').next().unwrap_or(k);
                domain == g || (!d.is_empty() && under(domain) == g)
            })
            .collect()
    } else {
        exact
    };
    match hits.as_slice() {
        [one] => Ok(*one),
        [] if shared.is_empty() => Err(format!(
            "no route of this app is shared between services, so there is no route {given:?} to split: give two services the same routing.port_N label"
        )),
        [] => Err(format!(
            "no shared route {given:?}: the app's shared routes are {}",
            shared.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        _ => Err(format!(
            "{given:?} names several routes ({}): give the path too",
            hits.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `SERVICE=PERCENT` pairs for a route named by `services`: every name one of them, each
/// once, percents adding up to 100; services not named get 0.
pub fn parse_weights(
    services: &[String],
    args: &[String],
) -> Result<BTreeMap<String, u32>, String> {
    if args.is_empty() {
        return Err(format!(
            "no weights given: name the route's services with their percent, e.g. {}",
            example(services)
        ));
    }
    let mut out = BTreeMap::new();
    for a in args {
        let bad = |why: &str| {
            format!(
                "{a:?}: {why}; write SERVICE=PERCENT, e.g. {}",
                example(services)
            )
        };
        let (s, w) = a.split_once('=').ok_or_else(|| bad("no '='"))?;
        let s = s.trim();
        if !services.iter().any(|x| x == s) {
            return Err(bad(&format!(
                "{s:?} is not one of the route's services ({})",
                services.join(", ")
            )));
        }
        let w = w.trim().trim_end_matches('%');
        let weight: u32 = match w.len() {
            1..=3 if w.bytes().all(|b| b.is_ascii_digit()) => w.parse().unwrap_or(101),
            _ => 101,
        };
        if weight > 100 {
            return Err(bad("the weight is not a whole percent from 0 to 100"));
        }
        if out.insert(s.to_string(), weight).is_some() {
            return Err(bad("this service is named twice"));
        }
    }
    let sum: u32 = out.values().sum();
    if sum != 100 {
        return Err(format!(
            "the weights add up to {sum}, not 100: give every service that should get traffic its percent"
        ));
    }
    for s in services {
        out.entry(s.clone()).or_insert(0);
    }
    Ok(out)
}

fn example(services: &[String]) -> String {
    let w = service_weights(services, None);
    services
        .iter()
        .zip(w)
        .map(|(s, w)| format!("{s}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Scheme, ServiceSpec};
    use std::sync::Arc;

    fn svc(routes: &[(&str, &str)]) -> Arc<ServiceSpec> {
        let mut s = ServiceSpec::default();
        for (domain, path) in routes {
            s.ext.routing.entry(80).or_default().push(Route {
                scheme: Scheme::Http,
                domain: domain.to_string(),
                prefix: !domain.contains('.'),
                path: path.to_string(),
                port: 0,
                weight: 0,
            });
        }
        Arc::new(s)
    }

    fn app(services: &[(&str, Arc<ServiceSpec>)]) -> AppSpec {
        AppSpec {
            name: "a".into(),
            services: services
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            labels: Default::default(),
            volumes: Default::default(),
            externals: Default::default(),
            proxy_ports: Vec::new(),
            warnings: Vec::new(),
            file_values: Default::default(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn services_naming_one_route_share_it_with_equal_weights() {
        let a = app(&[
            ("nginx-v1", svc(&[("nginx", "")])),
            (
                "nginx-v2",
                svc(&[("nginx", ""), ("www.example.com", "/api")]),
            ),
            ("db", svc(&[])),
            ("x", svc(&[("www.example.com", "/x")])),
        ]);
        let s = shared(&a);
        assert_eq!(s.len(), 1);
        assert_eq!(s["nginx"], names(&["nginx-v1", "nginx-v2"]));
        assert_eq!(service_weights(&s["nginx"], None), vec![50, 50]);
        assert_eq!(
            service_weights(&names(&["a", "b", "c"]), None),
            vec![34, 33, 33]
        );
        let set = BTreeMap::from([("nginx-v2".to_string(), 30), ("nginx-v1".to_string(), 70)]);
        assert_eq!(service_weights(&s["nginx"], Some(&set)), vec![70, 30]);
        // Weights that no longer add up over the services (one renamed since) fall back to
        // equal shares.
        let stale = BTreeMap::from([("gone".to_string(), 70), ("nginx-v2".to_string(), 30)]);
        assert_eq!(service_weights(&s["nginx"], Some(&stale)), vec![50, 50]);
    }

    #[test]
    fn a_release_between_services_starts_the_new_ones_at_zero() {
        let merged = app(&[
            ("nginx-v1", svc(&[("nginx", "")])),
            ("nginx-v2", svc(&[("nginx", "")])),
            ("api-a", svc(&[("api", "")])),
            ("api-b", svc(&[("api", "")])),
            ("api-c", svc(&[("api", "")])),
        ]);
        let current = RouteWeights::from([(
            "api".to_string(),
            BTreeMap::from([("api-a".to_string(), 80), ("api-b".to_string(), 20)]),
        )]);
        let w = release_start(&merged, &names(&["nginx-v2", "api-c"]), &current);
        assert_eq!(w["nginx"]["nginx-v1"], 100);
        assert_eq!(w["nginx"]["nginx-v2"], 0);
        assert_eq!(w["api"]["api-a"], 80);
        assert_eq!(w["api"]["api-b"], 20);
        assert_eq!(w["api"]["api-c"], 0);
    }

    #[test]
    fn a_route_is_found_by_key_domain_or_host() {
        let a = app(&[
            ("v1", svc(&[("nginx", ""), ("www.example.com", "/api")])),
            (
                "v2",
                svc(&[
                    ("nginx", ""),
                    ("www.example.com", "/api"),
                    ("www.example.com", "/"),
                ]),
            ),
            ("v3", svc(&[("www.example.com", "/")])),
        ]);
        let s = shared(&a);
        assert_eq!(find(&s, "nginx", "").map(|r| r.0.as_str()), Ok("nginx"));
        assert_eq!(
            find(&s, "nginx.apps.test", "apps.test").map(|r| r.0.as_str()),
            Ok("nginx")
        );
        assert_eq!(
            find(&s, "www.example.com/api", "").map(|r| r.0.as_str()),
            Ok("www.example.com/api")
        );
        let e = find(&s, "www.example.com", "").expect_err("two routes");
        assert!(e.contains("several routes"), "{e}");
        let e = find(&s, "shop", "").expect_err("none");
        assert!(e.contains("shared routes are"), "{e}");
    }

    #[test]
    fn route_weights_are_checked() {
        let s = names(&["nginx-v1", "nginx-v2"]);
        let w = parse_weights(&s, &names(&["nginx-v2=30", "nginx-v1=70%"])).expect("ok");
        assert_eq!(w["nginx-v1"], 70);
        assert_eq!(w["nginx-v2"], 30);
        let w = parse_weights(&s, &names(&["nginx-v2=100"])).expect("ok");
        assert_eq!(w["nginx-v1"], 0);
        for (bad, says) in [
            (vec!["nginx-v2=30"], "add up to 30"),
            (vec!["web=100"], "not one of the route's services"),
            (vec!["nginx-v2"], "no '='"),
            (vec!["nginx-v2=101"], "whole percent"),
            (vec!["nginx-v2=-1", "nginx-v1=101"], "whole percent"),
            (vec!["nginx-v2=50", "nginx-v2=50"], "named twice"),
            (vec![], "no weights given"),
        ] {
            let e = parse_weights(&s, &names(&bad)).expect_err("refused");
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
