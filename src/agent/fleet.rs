//! The cluster as a reconcile pass sees it (Cluster II): the nodes placement may use and the
//! other nodes' apps with their assignments. `Ops` builds a [`Fleet`] from the replicated
//! records after each publish; a pass places this node's apps over it ([`place`], which
//! calls the pure `plan::placement`), keeps the assignments in the store, and runs exactly
//! the slots placed on this node, of its own apps and of the others'.
//!
//! Invariants: without a fleet (no cluster, or a cluster of one) every slot of this node's
//! apps runs here, as on a single host. A container of another node's app is removed only
//! when that node's records are here and no longer place it here; a container whose owner
//! this node knows nothing about is left alone (edge autonomy: a partition or a forgotten
//! owner never makes a host stop what it runs).

use crate::model::{Assignment, Instance};
use crate::plan::placement::{Demand, NodeInfo, PlacementError, Running, placement};
use crate::store::{LiveVersion, StoredApp};
use std::collections::{BTreeMap, BTreeSet};

/// Another node's app, as its owner replicates it.
#[derive(Debug, Clone)]
pub struct RemoteApp {
    pub app: std::sync::Arc<StoredApp>,
    pub assignments: Vec<Assignment>,
    /// Its rolling updates' batches: (service, version, claim).
    pub claims: Vec<(String, u32, crate::plan::Claim)>,
}

/// Rolling batches by (app, service, version number).
pub type Claims = BTreeMap<(String, String, u32), crate::plan::Claim>;

/// What the cluster looks like to a pass.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Every member placement may consider, this node included (`open`: alive and not
    /// drained), with what runs on each.
    pub nodes: Vec<NodeInfo>,
    /// The other nodes' apps.
    pub remote: Vec<RemoteApp>,
    /// Members whose records this node holds: an app of theirs absent from `remote` is gone.
    pub owners: BTreeSet<String>,
    /// Instances running ready and up to date on the other members, as their records say.
    pub ready: Ready,
    /// Members that take no instances now, and why (lost, drained, an older protocol).
    pub closed: BTreeMap<String, String>,
    /// Instances the other (alive) members run ready, as the router reaches them.
    pub endpoints: Vec<crate::router::table::RemoteEndpoint>,
    /// Slots that run ready, on this node and the others: (app, service, version name,
    /// slot, node id). A move ends when its slot runs ready on its new node.
    pub ready_slots: BTreeSet<(String, String, String, u32, String)>,
    /// This node's containers by (app, service, version number, slot).
    pub local_slots: BTreeSet<(String, String, u32, u32)>,
    /// Slots with an instance (not being removed) on this node or an alive member: (app,
    /// service, version name, slot).
    pub present: BTreeSet<(String, String, String, u32)>,
    /// Members lost past the grace period whose instances stay where they are although
    /// their services ask to be rescheduled, by node id, and why (no majority seen here).
    pub held: BTreeMap<String, String>,
    /// Instances the other (alive) members run, for service names across hosts.
    pub elsewhere: Vec<crate::plan::names::Elsewhere>,
    /// The alive members' figures of the autoscaled services they run instances of.
    pub loads: Vec<crate::plan::autoscale::Load>,
    /// When each `app/service` was last asked for through an alive member's router (ms).
    pub requests: BTreeMap<String, i64>,
}

/// The assignments placement starts from: `current`, plus, for a version of this node's
/// apps that has none yet (deployed before the cluster, or before this host joined one),
/// the slots it already runs here, so placing it for the first time moves nothing that runs.
pub fn adopt(
    me: &str,
    apps: &[std::sync::Arc<StoredApp>],
    current: &[Assignment],
    local: &BTreeSet<(String, String, u32, u32)>,
) -> Vec<Assignment> {
    let mut out = current.to_vec();
    for app in apps {
        for (service, lives) in &app.versions {
            for live in lives {
                let n = live.version.number;
                let placed = current
                    .iter()
                    .any(|a| a.app == app.spec.name && &a.service == service && a.version == n);
                if placed {
                    continue;
                }
                out.extend(
                    local
                        .iter()
                        .filter(|(a, s, v, _)| a == &app.spec.name && s == service && *v == n)
                        .map(|(a, s, v, slot)| Assignment {
                            app: a.clone(),
                            service: s.clone(),
                            version: *v,
                            slot: *slot,
                            node: me.to_string(),
                            from: String::new(),
                        }),
                );
            }
        }
    }
    out
}

/// Ends the moves whose new instance runs ready (`ready_slots`): the old node then stops
/// its own.
pub fn settle_moves(
    list: &mut [Assignment],
    ready: &BTreeSet<(String, String, String, u32, String)>,
) {
    for a in list.iter_mut().filter(|a| !a.from.is_empty()) {
        let key = (
            a.app.clone(),
            a.service.clone(),
            crate::model::version_name(&a.service, a.version),
            a.slot,
            a.node.clone(),
        );
        if ready.contains(&key) {
            a.from.clear();
        }
    }
}

/// Instances ready, by (app, service, version name).
pub type Ready = BTreeMap<(String, String, String), u32>;

/// Does another member's instance, as its record shows it, serve: running, healthy (or
/// without a probe) and up to date?
pub fn serves(v: &crate::wire::InstanceView) -> bool {
    v.state == "running" && matches!(v.health.as_str(), "" | "healthy") && v.up_to_date
}

/// Counts the instances of `views` (other members' records, of members alive) that run
/// ready and up to date.
pub fn count_ready(views: impl IntoIterator<Item = crate::wire::InstanceView>) -> Ready {
    let mut out = Ready::new();
    for v in views {
        if serves(&v) {
            *out.entry((v.app, v.service, v.version)).or_default() += 1;
        }
    }
    out
}

/// Where a pass placed things: the slots on this node and the count placed cluster-wide,
/// by (app, service, version), and the rolling batches to follow.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub here: Here,
    pub total: BTreeMap<(String, String, u32), u32>,
    pub claims: Claims,
}

/// The batches of `apps`' rolling updates over the cluster (`plan::claim`), from the slots
/// that run on every member as `f` shows them.
pub fn claims(apps: &[std::sync::Arc<StoredApp>], f: &Fleet) -> Claims {
    let mut out = Claims::new();
    for app in apps {
        let a = app.spec.name.as_str();
        for (service, lives) in &app.versions {
            let Some(r) = lives
                .iter()
                .find(|l| l.version.release == crate::model::Release::Rolling)
            else {
                continue;
            };
            let name = crate::model::version_name(service, r.version.number);
            let slots_of = |version: &str| -> BTreeSet<u32> {
                f.present
                    .iter()
                    .filter(|(x, s, v, _)| x == a && s == service && v == version)
                    .map(|(.., slot)| *slot)
                    .collect()
            };
            let started = slots_of(&name);
            let ready: BTreeSet<u32> = f
                .ready_slots
                .iter()
                .filter(|(x, s, v, ..)| x == a && s == service && *v == name)
                .map(|(.., slot, _)| *slot)
                .collect();
            let others: BTreeSet<u32> = lives
                .iter()
                .filter(|l| l.version.number != r.version.number)
                .flat_map(|l| slots_of(&crate::model::version_name(service, l.version.number)))
                .collect();
            let replicas = r.version.instances(app.replicas(service));
            let c = crate::plan::claim(
                replicas,
                super::parallelism(&r.version.spec),
                &started,
                &ready,
                &others,
            );
            out.insert((a.to_string(), service.clone(), r.version.number), c);
        }
    }
    out
}

impl Fleet {
    /// What a pass depends on, as a digest: the other members' apps and assignments, and
    /// each member's id, openness, labels and instance count.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for r in &self.remote {
            if let Ok(b) = serde_json::to_vec(&(&*r.app, &r.assignments, &r.claims)) {
                ctx.update(&b);
            }
        }
        for n in &self.nodes {
            if let Ok(b) = serde_json::to_vec(&(&n.id, n.open, n.lost, &n.labels, n.running.len()))
            {
                ctx.update(&b);
            }
        }
        for (k, v) in &self.ready {
            ctx.update(format!("{k:?}={v};").as_bytes());
        }
        if let Ok(b) = serde_json::to_vec(&(&self.endpoints, &self.held)) {
            ctx.update(&b);
        }
        for e in &self.elsewhere {
            ctx.update(format!("{e:?};").as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Does this node run a container of `app` (so a pass must see its app to plan it)?
    pub fn runs_here(&self, app: &str) -> bool {
        self.local_slots.iter().any(|(a, ..)| a == app)
    }
}

/// Slots of (app, service, version) that run on this node.
pub type Here = BTreeMap<(String, String, u32), BTreeSet<u32>>;

/// A service version's demand on placement: its replicas (cluster-wide), its rules and the
/// room one instance reserves (`deploy.resources.reservations`, else the seed's
/// `cpu_shares` where 100 is one core, and `mem_reservation`, else `mem_limit`).
pub fn demand(app: &StoredApp, service: &str, live: &LiveVersion) -> Option<Demand> {
    let global = app.spec.services.get(service).is_some_and(|x| x.global);
    Some(demand_of(
        &app.spec,
        service,
        &live.version.spec,
        live.version.number,
        live.version.instances(app.replicas(service)),
        global,
    ))
}

/// The demand of `replicas` instances of service spec `s` of `app`.
pub fn demand_of(
    app: &crate::model::AppSpec,
    service: &str,
    s: &crate::model::ServiceSpec,
    version: u32,
    replicas: u32,
    global: bool,
) -> Demand {
    let cpu_millis = match (s.reserved_nano_cpus, s.cpu_shares) {
        (Some(n), _) if n > 0 => (n / 1_000_000) as u64,
        (_, Some(shares)) if shares > 0 => shares as u64 * 10,
        _ => 0,
    };
    let mem_bytes = s
        .engine
        .mem_reservation
        .or(s.mem_limit)
        .filter(|m| *m > 0)
        .unwrap_or(0) as u64;
    Demand {
        app: app.name.clone(),
        service: service.to_string(),
        version,
        image: s.image.clone(),
        replicas,
        global,
        placement: s.placement.clone(),
        max_per_node: s.max_per_node,
        cpu_millis,
        mem_bytes,
        gpus: s.ext.gpu,
        reschedule: s
            .placement
            .iter()
            .any(|p| p == "reschedule:on-node-failure"),
        local_state: local_state(app, s),
    }
}

/// The data an instance of `s` keeps on its host, in words: a bind mount or a named volume
/// of the `local` driver (an external volume counts as local: another host cannot know its
/// driver). oss and nas volumes are shared; anonymous volumes and tmpfs are scratch space.
fn local_state(app: &crate::model::AppSpec, s: &crate::model::ServiceSpec) -> Option<String> {
    use crate::model::MountKind;
    s.volumes.iter().find_map(|m| match m.kind {
        MountKind::Bind => Some(format!("bind mount {}", m.source)),
        MountKind::Volume => {
            let shared = app
                .volumes
                .get(&m.source)
                .is_some_and(|v| matches!(v.driver.as_str(), "oss" | "nas"));
            (!shared).then(|| format!("local volume {}", m.source))
        }
        MountKind::Anonymous | MountKind::Tmpfs => None,
    })
}

/// Can `app` be placed at all? Checked before a deploy stores anything: a hard rule no
/// member meets refuses the deploy with what each member lacks; soft rules left unmet are
/// returned as warnings. The app's own running instances do not count against the room
/// (a redeploy replaces them).
pub fn check(
    app: &crate::model::AppSpec,
    scale: &BTreeMap<String, u32>,
    nodes: &[NodeInfo],
) -> Result<Vec<String>, PlacementError> {
    let mut nodes: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            running: n
                .running
                .iter()
                .filter(|r| r.app != app.name)
                .cloned()
                .collect(),
            ..n.clone()
        })
        .collect();
    let mut warnings = Vec::new();
    let mut order: Vec<(&String, &crate::model::ServiceSpec)> =
        app.services.iter().map(|(k, s)| (k, &**s)).collect();
    order.sort_by_key(|(_, s)| names_services(&s.placement));
    for (name, s) in order {
        let replicas = scale.get(name).copied().unwrap_or(s.replicas);
        let d = demand_of(app, name, s, 0, replicas, s.global);
        let p = placement(&d, &nodes, &[])?;
        mark(&mut nodes, &d, &p.assignments);
        warnings.extend(p.warnings);
    }
    Ok(warnings)
}

/// Does a service's placement name other services (`affinity:service==db`)? Such services
/// are placed after the others, so the instances they are placed beside (or away from) are
/// known, in a deploy that places them all at once too.
fn names_services(placement: &[String]) -> bool {
    placement.iter().any(|p| p.starts_with("affinity:service"))
}

/// Makes the instances just placed for `d` visible to the demands placed after it in the
/// same pass (for their affinity rules), on the nodes that run none of `d` yet.
fn mark(nodes: &mut [NodeInfo], d: &Demand, placed: &[Assignment]) {
    for n in nodes.iter_mut() {
        let here = placed.iter().any(|a| a.node == n.id);
        if here
            && !n
                .running
                .iter()
                .any(|r| r.app == d.app && r.service == d.service)
        {
            n.running.push(Running {
                app: d.app.clone(),
                service: d.service.clone(),
                image: d.image.clone(),
                ..Default::default()
            });
        }
    }
}

/// What an instance reserves, from its app's spec when this node knows it.
pub fn running(i: &Instance, apps: &BTreeMap<&str, &StoredApp>) -> Running {
    reserved(
        Running {
            app: i.app.clone(),
            service: i.service.clone(),
            image: i.image.clone(),
            name: i.name.clone(),
            labels: i.labels.clone(),
            ..Default::default()
        },
        i.version_number(),
        apps,
    )
}

/// `r` (of version `version` of its service) with the room its spec reserves.
pub fn reserved(
    mut r: Running,
    version: Option<u32>,
    apps: &BTreeMap<&str, &StoredApp>,
) -> Running {
    let d = apps.get(r.app.as_str()).and_then(|a| {
        let live = a.live_version(&r.service, version?)?;
        demand(a, &r.service, live)
    });
    if let Some(d) = d {
        (r.cpu_millis, r.mem_bytes, r.gpus) = (d.cpu_millis, d.mem_bytes, d.gpus);
    }
    r
}

/// Places every live version of this node's `apps` over `nodes`, keeping `current` where it
/// still holds. Returns the assignments and what to tell: for each version that cannot be
/// placed, the error (its current assignments are kept meanwhile: nothing stops because a
/// rule broke), the warnings of the others (instances waiting for room, preferences unmet),
/// instances rescheduled off lost or removed nodes, and those held on a lost node (`held`:
/// why not), as (app, service, message).
pub fn place(
    apps: &[std::sync::Arc<StoredApp>],
    current: &[Assignment],
    nodes: &[NodeInfo],
    held: &BTreeMap<String, String>,
) -> (Vec<Assignment>, Vec<(String, String, String)>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut nodes = nodes.to_vec();
    for app in apps {
        let mut order: Vec<(&String, &Vec<LiveVersion>)> = app.versions.iter().collect();
        order.sort_by_key(|(_, lives)| {
            lives
                .iter()
                .any(|l| names_services(&l.version.spec.placement))
        });
        for (service, lives) in order {
            for live in lives {
                let Some(d) = demand(app, service, live) else {
                    continue;
                };
                let mine: Vec<Assignment> = current
                    .iter()
                    .filter(|a| a.app == d.app && a.service == d.service && a.version == d.version)
                    .cloned()
                    .collect();
                if d.reschedule {
                    for (node, why) in held {
                        let n = mine.iter().filter(|a| &a.node == node).count();
                        if n > 0 {
                            let name = nodes
                                .iter()
                                .find(|x| &x.id == node)
                                .map_or(node.as_str(), |x| x.name.as_str());
                            let w = format!(
                                "reschedule: {n} instance(s) of {} stay on lost {name}: {why}",
                                d.service
                            );
                            errors.push((d.app.clone(), d.service.clone(), w));
                        }
                    }
                }
                match placement(&d, &nodes, &mine) {
                    Ok(p) => {
                        mark(&mut nodes, &d, &p.assignments);
                        out.extend(p.assignments);
                        if !p.warnings.is_empty() {
                            let w = format!("placement: {}", p.warnings.join("; "));
                            errors.push((d.app.clone(), d.service.clone(), w));
                        }
                        for r in p.rescheduled {
                            errors.push((
                                d.app.clone(),
                                d.service.clone(),
                                format!("reschedule: {r}"),
                            ));
                        }
                    }
                    Err(e) => {
                        out.extend(mine);
                        let e = format!("cannot place: {e}");
                        errors.push((d.app.clone(), d.service.clone(), e));
                    }
                }
            }
        }
    }
    out.sort();
    (out, errors)
}

/// Before the first view of the cluster (an agent just started), this node runs what the
/// stored assignments give it, so a restart never starts the other members' share of its
/// apps; an app never placed (deployed before the cluster) runs every slot here.
pub fn stored_only(
    me: &str,
    apps: &[std::sync::Arc<StoredApp>],
    stored: &[Assignment],
) -> Placement {
    let mut p = Placement {
        here: here(me, stored),
        total: BTreeMap::new(),
        claims: Claims::new(),
    };
    for a in stored {
        *p.total
            .entry((a.app.clone(), a.service.clone(), a.version))
            .or_default() += 1;
    }
    for app in apps {
        for (service, lives) in &app.versions {
            for live in lives {
                let key = (app.spec.name.clone(), service.clone(), live.version.number);
                p.here.entry(key).or_insert_with(|| {
                    (1..=live.version.instances(app.replicas(service))).collect()
                });
            }
        }
    }
    p
}

/// The slots of each version that run on node `me`.
pub fn here<'a>(me: &str, assignments: impl IntoIterator<Item = &'a Assignment>) -> Here {
    let mut h = Here::new();
    for a in assignments {
        let slots = h
            .entry((a.app.clone(), a.service.clone(), a.version))
            .or_default();
        // The old node of a move keeps its instance until the new one runs.
        if a.node == me || a.from == me {
            slots.insert(a.slot);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppSpec, ServiceSpec, Version, VersionState};

    fn app(name: &str, replicas: u32, placement: &[&str]) -> StoredApp {
        let spec = ServiceSpec {
            image: "img".into(),
            replicas,
            placement: placement.iter().map(|s| s.to_string()).collect(),
            cpu_shares: Some(50),
            ..Default::default()
        };
        let version = Version {
            app: name.into(),
            service: "web".into(),
            number: 1,
            spec: std::sync::Arc::new(spec.clone()),
            message: String::new(),
            state: VersionState::Normal,
            reason: String::new(),
            weight: 100,
            created_ms: 0,
            release: Default::default(),
            since_ms: 0,
        };
        let app_spec: AppSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "services": {},
        }))
        .map(|mut a: AppSpec| {
            a.services.insert("web".into(), std::sync::Arc::new(spec));
            a
        })
        .expect("spec");
        StoredApp {
            spec: app_spec,
            template: String::new(),
            stopped: false,
            redeploy_gen: 0,
            scale: Default::default(),
            stopped_services: Default::default(),
            versions: [(
                "web".to_string(),
                vec![LiveVersion {
                    version,
                    hash: "h".into(),
                }],
            )]
            .into(),
            failed: Default::default(),
            created_ms: 0,
            updated_ms: 0,
            owner: String::new(),
            epoch: 0,
            route_weights: Default::default(),
            service_release: None,
        }
    }

    fn node(id: &str, az: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            name: id.into(),
            labels: [("az".to_string(), az.to_string())].into(),
            open: true,
            drained: false,
            lost: false,
            cpu_millis: 2000,
            mem_bytes: 1 << 30,
            gpus: 0,
            running: vec![],
        }
    }

    #[test]
    fn six_replicas_over_three_nodes_land_two_each_and_this_node_runs_its_two() {
        let nodes = [node("a", "1"), node("b", "2"), node("c", "3")];
        let (list, errors) = place(&[app("shop", 6, &[]).into()], &[], &nodes, &BTreeMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(list.len(), 6);
        for n in ["a", "b", "c"] {
            assert_eq!(list.iter().filter(|a| a.node == n).count(), 2, "{list:?}");
        }
        let h = here("b", &list);
        assert_eq!(h[&("shop".into(), "web".into(), 1)].len(), 2);
        // Placed again with the same input: the same answer (sticky and deterministic).
        let (again, _) = place(
            &[app("shop", 6, &[]).into()],
            &list,
            &nodes,
            &BTreeMap::new(),
        );
        assert_eq!(again, list);
    }

    #[test]
    fn before_the_first_view_a_node_runs_its_stored_share_or_everything_never_placed() {
        let nodes = [node("a", "1"), node("b", "2"), node("c", "3")];
        let (list, _) = place(&[app("shop", 6, &[]).into()], &[], &nodes, &BTreeMap::new());
        let p = stored_only(
            "b",
            &[app("shop", 6, &[]).into(), app("old", 3, &[]).into()],
            &list,
        );
        assert_eq!(p.here[&("shop".into(), "web".into(), 1)].len(), 2);
        assert_eq!(p.total[&("shop".into(), "web".into(), 1)], 6);
        assert_eq!(
            p.here[&("old".into(), "web".into(), 1)],
            [1, 2, 3].into_iter().collect()
        );
    }

    #[test]
    fn an_app_that_ran_before_the_cluster_keeps_its_instances_where_they_run() {
        let nodes = [node("a", "1"), node("b", "2"), node("c", "3")];
        let local: BTreeSet<(String, String, u32, u32)> = [
            ("shop".into(), "web".into(), 1, 1),
            ("shop".into(), "web".into(), 1, 2),
        ]
        .into();
        let start = adopt("c", &[app("shop", 3, &[]).into()], &[], &local);
        let (list, _) = place(
            &[app("shop", 3, &[]).into()],
            &start,
            &nodes,
            &BTreeMap::new(),
        );
        let on_c: Vec<u32> = list
            .iter()
            .filter(|a| a.node == "c")
            .map(|a| a.slot)
            .collect();
        assert_eq!(on_c, vec![1, 2], "{list:?}");
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn an_impossible_rule_keeps_the_current_assignments_and_says_why() {
        let nodes = [node("a", "1"), node("b", "1")];
        let current = vec![Assignment {
            app: "shop".into(),
            service: "web".into(),
            version: 1,
            slot: 1,
            node: "a".into(),
            from: String::new(),
        }];
        let (list, errors) = place(
            &[app("shop", 2, &["availability:az==3"]).into()],
            &current,
            &nodes,
            &BTreeMap::new(),
        );
        assert_eq!(list, current);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].2.contains("cannot place") && errors[0].2.contains("az==3"),
            "{:?}",
            errors[0]
        );
    }

    #[test]
    fn services_placed_in_one_pass_see_each_other_for_anti_affinity() {
        // `cache` (sorted first by name) must keep away from `db`, placed in the same pass: three
        // of them over three nodes would put one beside it otherwise.
        let mut a = app("shop", 1, &["constraint:az==2"]);
        let web = a.versions.remove("web").expect("web");
        let mut db = web[0].clone();
        db.version.service = "db".into();
        let mut cache = web[0].clone();
        cache.version.service = "cache".into();
        let c = std::sync::Arc::make_mut(&mut cache.version.spec);
        c.replicas = 3;
        c.placement = vec!["affinity:service!=db".into()];
        a.spec.services.remove("web");
        a.spec.services.insert("db".into(), db.version.spec.clone());
        a.spec
            .services
            .insert("cache".into(), cache.version.spec.clone());
        a.versions.insert("db".into(), vec![db]);
        a.versions.insert("cache".into(), vec![cache]);
        let nodes = vec![node("a", "1"), node("b", "1"), node("c", "2")];
        let (list, errors) = place(&[a.clone().into()], &[], &nodes, &BTreeMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        let on = |svc: &str| -> Vec<&str> {
            list.iter()
                .filter(|x| x.service == svc)
                .map(|x| x.node.as_str())
                .collect()
        };
        assert_eq!(on("db"), ["c"]);
        assert!(!on("cache").contains(&"c"), "{list:?}");
        // The check before a deploy sees the same.
        let scale = BTreeMap::from([("cache".to_string(), 3)]);
        assert!(check(&a.spec, &scale, &nodes).is_ok());
    }

    #[test]
    fn the_seed_cpu_shares_reserve_a_tenth_of_a_core_per_ten() {
        let a = app("shop", 1, &[]);
        let d = demand(&a, "web", &a.versions["web"][0]).expect("demand");
        assert_eq!(d.cpu_millis, 500);
        // Two cores hold four of them; a fifth waits for room (as Swarm leaves it pending).
        let (list, errors) = place(
            &[app("shop", 5, &[]).into()],
            &[],
            &[node("a", "1")],
            &BTreeMap::new(),
        );
        assert_eq!(list.len(), 4, "{list:?}");
        assert!(errors[0].2.contains("waits for room"), "{errors:?}");
        let warnings = check(
            &app("shop", 5, &[]).spec,
            &Default::default(),
            &[node("a", "1")],
        )
        .expect("placeable in part");
        assert!(warnings[0].contains("CPUs free"), "{warnings:?}");
        // Not even one fits: an error that names what the node lacks.
        let mut small = node("a", "1");
        small.cpu_millis = 100;
        let e = check(&app("shop", 1, &[]).spec, &Default::default(), &[small]).unwrap_err();
        assert!(e.to_string().contains("CPUs free"), "{e}");
    }
}
