use super::*;

fn svc(name: &str, replicas: u32, hash: &str, deps: &[&str]) -> DesiredService {
    DesiredService {
        name: name.into(),
        versions: vec![DesiredVersion {
            number: 1,
            replicas,
            spec_hash: hash.into(),
            rolling: None,
            here: None,
            claim: None,
        }],
        discard: vec![],
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        restart: RestartPolicy::UnlessStopped,
        bridge: true,
        stopped: None,
    }
}

fn app(name: &str, services: Vec<DesiredService>) -> DesiredApp {
    DesiredApp {
        name: name.into(),
        stopped: false,
        resumed_ms: 1_000,
        services,
    }
}

pub(crate) fn inst(
    id: &str,
    app: &str,
    service: &str,
    slot: u32,
    hash: &str,
    state: InstanceState,
) -> Instance {
    Instance {
        id: id.into(),
        name: format!("{app}_{service}_{slot}"),
        app: app.into(),
        service: service.into(),
        slot,
        spec_hash: hash.into(),
        version: format!("{service}-001"),
        image: "img".into(),
        state,
        exit_code: None,
        finished_ms: None,
        ports: vec![],
        exposed: vec![],
        created: id.len() as i64,
        status: String::new(),
        ip: String::new(),
        health: Default::default(),
        labels: Default::default(),
        owner: String::new(),
        job: None,
    }
}

fn observed(instances: Vec<Instance>, nets: &[&str]) -> Observed {
    Observed {
        instances,
        boot_ms: 500,
        seen_done: Default::default(),
        networks: nets
            .iter()
            .map(|s| AppNetwork {
                id: format!("net-{s}"),
                app: s.to_string(),
                created: "2026-01-01T00:00:00Z".into(),
            })
            .collect(),
    }
}

fn creates(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Create {
                app,
                service,
                version: 1,
                slot,
            } => Some(format!("{app}_{service}_{slot}")),
            Action::Create {
                app,
                service,
                version,
                slot,
            } => Some(format!("{app}_{service}-{version:03}_{slot}")),
            _ => None,
        })
        .collect()
}

fn removes(p: &Plan) -> Vec<(String, RemoveReason)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Remove { name, reason, .. } => Some((name.clone(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn fresh_app_creates_network_then_instances_of_ready_services_only() {
    let d = [app(
        "shop",
        vec![svc("db", 1, "h1", &[]), svc("web", 2, "h2", &["db"])],
    )];
    let p = plan(&d, &Observed::default());
    assert_eq!(p.actions[0], Action::CreateNetwork { app: "shop".into() });
    assert_eq!(creates(&p), ["shop_db_1"]);
    assert_eq!(p.waiting, [("shop".to_string(), "web".to_string())]);

    // Once db runs, web follows.
    let o = observed(
        vec![inst("a", "shop", "db", 1, "h1", InstanceState::Running)],
        &["shop"],
    );
    let p = plan(&d, &o);
    assert_eq!(creates(&p), ["shop_web_1", "shop_web_2"]);
    assert!(p.waiting.is_empty());
}

#[test]
fn converged_state_plans_nothing() {
    let d = [app("a", vec![svc("web", 2, "h", &[])])];
    let o = observed(
        vec![
            inst("x1", "a", "web", 1, "h", InstanceState::Running),
            inst("x2", "a", "web", 2, "h", InstanceState::Running),
        ],
        &["a"],
    );
    assert_eq!(plan(&d, &o), Plan::default());
}

#[test]
fn scale_down_removes_high_slots_and_scale_up_fills_gaps() {
    let d = [app("a", vec![svc("web", 1, "h", &[])])];
    let o = observed(
        vec![
            inst("x1", "a", "web", 1, "h", InstanceState::Running),
            inst("x2", "a", "web", 2, "h", InstanceState::Running),
            inst("x3", "a", "web", 3, "h", InstanceState::Running),
        ],
        &["a"],
    );
    let p = plan(&d, &o);
    assert_eq!(
        removes(&p),
        [
            ("a_web_2".into(), RemoveReason::ScaleDown),
            ("a_web_3".into(), RemoveReason::ScaleDown)
        ]
    );
    let d = [app("a", vec![svc("web", 3, "h", &[])])];
    let o = observed(
        vec![inst("x2", "a", "web", 2, "h", InstanceState::Running)],
        &["a"],
    );
    assert_eq!(creates(&plan(&d, &o)), ["a_web_1", "a_web_3"]);
}

#[test]
fn duplicates_keep_the_up_to_date_running_one() {
    let d = [app("a", vec![svc("web", 1, "new", &[])])];
    let o = observed(
        vec![
            inst("old", "a", "web", 1, "old", InstanceState::Running),
            inst("new1", "a", "web", 1, "new", InstanceState::Running),
        ],
        &["a"],
    );
    let p = plan(&d, &o);
    assert_eq!(removes(&p), [("a_web_1".into(), RemoveReason::Duplicate)]);
    assert!(matches!(&p.actions[0], Action::Remove { id, .. } if id == "old"));
    assert!(creates(&p).is_empty());
}

#[test]
fn outdated_spec_is_replaced_in_place() {
    let d = [app(
        "a",
        vec![svc("web", 1, "v2", &[]), svc("db", 1, "d", &[])],
    )];
    let o = observed(
        vec![
            inst("w", "a", "web", 1, "v1", InstanceState::Running),
            inst("d", "a", "db", 1, "d", InstanceState::Running),
        ],
        &["a"],
    );
    let p = plan(&d, &o);
    assert_eq!(removes(&p), [("a_web_1".into(), RemoveReason::Outdated)]);
    assert_eq!(creates(&p), ["a_web_1"]);
}

#[test]
fn killed_and_created_instances_are_started_but_restart_no_is_respected() {
    let mut once = svc("once", 1, "h", &[]);
    once.restart = RestartPolicy::No;
    let mut onfail = svc("job", 1, "h", &[]);
    onfail.restart = RestartPolicy::OnFailure { max_retries: None };
    let d = [app("a", vec![svc("web", 2, "h", &[]), once, onfail])];
    let mut killed = inst("k", "a", "web", 1, "h", InstanceState::Exited);
    killed.exit_code = Some(137);
    let mut done = inst("o", "a", "once", 1, "h", InstanceState::Exited);
    done.exit_code = Some(1);
    let mut ok = inst("j", "a", "job", 1, "h", InstanceState::Exited);
    ok.exit_code = Some(0);
    let o = observed(
        vec![
            killed,
            inst("c", "a", "web", 2, "h", InstanceState::Created),
            done,
            ok,
        ],
        &["a"],
    );
    let started: Vec<String> = plan(&d, &o)
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["k", "c"]);
}

#[test]
fn a_service_without_restart_that_exits_0_on_its_own_is_done() {
    // No `restart` in the template: the default policy.
    let default = |name: &str| {
        let mut s = svc(name, 1, "h", &[]);
        s.restart = RestartPolicy::default();
        s
    };
    let d = [app("a", vec![default("init"), default("web")])];
    assert_eq!(d[0].services[0].restart, RestartPolicy::UnlessCompleted);
    let exited = |id: &str, service: &str, code: i64, finished: Option<i64>| {
        let mut i = inst(id, "a", service, 1, "h", InstanceState::Exited);
        i.exit_code = Some(code);
        i.finished_ms = finished;
        i
    };
    let started = |o: &Observed, d: &[DesiredApp]| -> Vec<String> {
        plan(d, o)
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    // Exit 0 after the boot and after the last deploy: done, not started, not replaced.
    let o = observed(
        vec![
            exited("i", "init", 0, Some(2_000)),
            exited("w", "web", 1, None),
        ],
        &["a"],
    );
    assert_eq!(
        started(&o, &d),
        ["w"],
        "the crash is restarted, the completed step is not"
    );
    assert!(creates(&plan(&d, &o)).is_empty());
    // Finished before the host booted: the shutdown stopped it, it comes back.
    let mut o = observed(vec![exited("i", "init", 0, Some(2_000))], &["a"]);
    o.boot_ms = 3_000;
    assert_eq!(started(&o, &d), ["i"]);
    // ... unless the agent saw it done before the reboot (the same finish): it stays done.
    o.seen_done.insert("i".into(), 2_000);
    assert!(
        started(&o, &d).is_empty(),
        "a one-shot seen done ran again after a reboot"
    );
    // Seen done at another finish (it ran again since): the record does not apply.
    o.seen_done.insert("i".into(), 1_500);
    assert_eq!(started(&o, &d), ["i"]);
    // Seen done, but the app was started again after it finished: it runs again.
    let mut resumed = d.clone();
    resumed[0].resumed_ms = 2_500;
    o.seen_done.insert("i".into(), 2_000);
    assert_eq!(started(&o, &resumed), ["i"]);
    // Finished before the app was last deployed or started: it runs again (compose `up`).
    let mut again = d.clone();
    again[0].resumed_ms = 5_000;
    let o = observed(vec![exited("i", "init", 0, Some(2_000))], &["a"]);
    assert_eq!(started(&o, &again), ["i"]);
    // What depends on a done one-shot starts.
    let mut web = default("web");
    web.depends_on = vec!["init".into()];
    let dep = [app("a", vec![default("init"), web])];
    let o = observed(vec![exited("i", "init", 0, Some(2_000))], &["a"]);
    assert_eq!(
        creates(&plan(&dep, &o)),
        ["a_web_1"],
        "web waits for a done one-shot"
    );
    // When it finished is unknown: brought back (a restart is the safe side).
    let o = observed(vec![exited("i", "init", 0, None)], &["a"]);
    assert_eq!(started(&o, &d), ["i"]);
}

#[test]
fn orphans_and_their_networks_are_removed() {
    let o = observed(
        vec![inst("z", "gone", "web", 1, "h", InstanceState::Running)],
        &["gone"],
    );
    let p = plan(&[], &o);
    assert_eq!(removes(&p), [("gone_web_1".into(), RemoveReason::Orphan)]);
    assert_eq!(
        p.actions.last(),
        Some(&Action::RemoveNetwork {
            id: "net-gone".into(),
            app: "gone".into()
        })
    );
}

#[test]
fn stopped_app_stops_live_instances_and_creates_nothing() {
    let mut a = app("a", vec![svc("web", 2, "h", &[])]);
    a.stopped = true;
    let o = observed(
        vec![inst("r", "a", "web", 1, "h", InstanceState::Running)],
        &["a"],
    );
    let p = plan(&[a], &o);
    assert_eq!(
        p.actions,
        [Action::Stop {
            id: "r".into(),
            name: "a_web_1".into(),
            app: "a".into(),
            service: "web".into()
        }]
    );
}

#[test]
fn a_service_removed_from_the_template_is_an_orphan() {
    let d = [app("a", vec![svc("web", 1, "h", &[])])];
    let o = observed(
        vec![
            inst("w", "a", "web", 1, "h", InstanceState::Running),
            inst("c", "a", "cache", 1, "h", InstanceState::Running),
        ],
        &["a"],
    );
    assert_eq!(
        removes(&plan(&d, &o)),
        [("a_cache_1".into(), RemoveReason::Orphan)]
    );
}

/// Regression: kill -9 during network creation left two networks named `berth_{app}`; every
/// container start then failed with "network is ambiguous". The newer duplicate is removed
/// first, and nothing new is planned on top of it.
#[test]
fn duplicate_app_network_after_interrupted_create_is_removed() {
    let d = [app("dup", vec![svc("web", 1, "h", &[])])];
    let mut o = observed(vec![], &[]);
    for (id, created) in [
        ("newer", "2026-01-01T00:00:02Z"),
        ("older", "2026-01-01T00:00:01Z"),
    ] {
        o.networks.push(AppNetwork {
            id: id.into(),
            app: "dup".into(),
            created: created.into(),
        });
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.actions[0],
        Action::RemoveNetwork {
            id: "newer".into(),
            app: "dup".into()
        }
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::CreateNetwork { .. }))
    );
    assert_eq!(creates(&p), ["dup_web_1"]);
}

#[test]
fn prune_keeps_images_in_use_and_images_deployed_apps_name() {
    use crate::runtime::ImageInfo;
    let img = |id: &str, tags: &[&str]| ImageInfo {
        id: id.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        size: 1,
        created: 0,
        containers: -1,
    };
    let images = [
        img("used", &["web:1"]),
        img("scaled-to-zero", &["shop:2", "shop:old"]),
        img("dangling", &["<none>:<none>"]),
        img("stray", &["stray:latest"]),
    ];
    let in_use = ["used".to_string()].into();
    let referenced = [normalize_image_ref("shop:2")].into();
    assert_eq!(
        images_to_prune(&images, &in_use, &referenced),
        ["shop:old", "dangling", "stray:latest"]
    );
    assert_eq!(normalize_image_ref("redis"), "redis:latest");
    assert_eq!(normalize_image_ref("reg:5000/app"), "reg:5000/app:latest");
    assert_eq!(normalize_image_ref("reg:5000/app:1"), "reg:5000/app:1");
}

fn ver(number: u32, replicas: u32, hash: &str, rolling: Option<u32>) -> DesiredVersion {
    DesiredVersion {
        number,
        replicas,
        spec_hash: hash.into(),
        rolling,
        here: None,
        claim: None,
    }
}

/// An instance of version `v`.
fn vinst(id: &str, v: u32, slot: u32, hash: &str, health: crate::model::Health) -> Instance {
    let mut i = inst(id, "a", "web", slot, hash, InstanceState::Running);
    i.version = format!("web-{v:03}");
    i.name = format!("a_web-{v:03}_{slot}");
    i.health = health;
    i
}

#[test]
fn start_first_keeps_the_old_version_until_the_new_one_is_ready() {
    use crate::model::Health::{Healthy, Starting};
    let mut s = svc("web", 2, "h1", &[]);
    // Version 1 lost its traffic to version 2 (or never had any left): only 2 is live.
    s.versions = vec![ver(2, 2, "h2", None)];
    let d = [app("a", vec![s])];
    let old = [
        vinst("o1", 1, 1, "h1", Healthy),
        vinst("o2", 1, 2, "h1", Healthy),
    ];
    let p = plan(&d, &observed(old.to_vec(), &["a"]));
    assert_eq!(creates(&p), ["a_web-002_1", "a_web-002_2"]);
    assert!(removes(&p).is_empty(), "old instances serve meanwhile");

    let mut all = old.to_vec();
    all.push(vinst("n1", 2, 1, "h2", Healthy));
    all.push(vinst("n2", 2, 2, "h2", Starting));
    let p = plan(&d, &observed(all.clone(), &["a"]));
    assert_eq!(p, Plan::default(), "one new instance is not ready yet");

    all[3].health = Healthy;
    let p = plan(&d, &observed(all, &["a"]));
    assert_eq!(
        removes(&p),
        [
            ("a_web-001_1".to_string(), RemoveReason::Retired),
            ("a_web-001_2".to_string(), RemoveReason::Retired)
        ]
    );
    assert!(creates(&p).is_empty());
}

#[test]
fn versions_with_traffic_run_side_by_side_with_their_own_slots() {
    use crate::model::Health::Healthy;
    let mut s = svc("web", 2, "h1", &[]);
    s.versions = vec![ver(1, 2, "h1", None), ver(3, 1, "h3", None)];
    let d = [app("a", vec![s])];
    let o = [
        vinst("o1", 1, 1, "h1", Healthy),
        vinst("o2", 1, 2, "h1", Healthy),
    ];
    let p = plan(&d, &observed(o.to_vec(), &["a"]));
    assert_eq!(creates(&p), ["a_web-003_1"]);
    assert!(removes(&p).is_empty());
}

#[test]
fn rolling_update_replaces_a_batch_at_a_time_and_waits_for_it() {
    use crate::model::Health::{Healthy, Starting};
    let mut s = svc("web", 4, "h1", &[]);
    s.versions = vec![ver(1, 4, "h1", None), ver(2, 4, "h2", Some(2))];
    let d = [app("a", vec![s])];
    let mut all: Vec<Instance> = (1..=4)
        .map(|slot| vinst(&format!("o{slot}"), 1, slot, "h1", Healthy))
        .collect();
    let p = plan(&d, &observed(all.clone(), &["a"]));
    assert_eq!(creates(&p), ["a_web-002_1", "a_web-002_2"]);
    assert_eq!(
        removes(&p),
        [
            ("a_web-001_1".to_string(), RemoveReason::Replaced),
            ("a_web-001_2".to_string(), RemoveReason::Replaced)
        ]
    );
    // The batch runs but is not healthy yet: nothing more happens.
    all.retain(|i| i.slot > 2);
    all.push(vinst("n1", 2, 1, "h2", Healthy));
    all.push(vinst("n2", 2, 2, "h2", Starting));
    assert_eq!(plan(&d, &observed(all.clone(), &["a"])), Plan::default());
    // A create that failed leaves its slot empty: still the same batch, no more old ones go.
    let without_n2: Vec<Instance> = all.iter().filter(|i| i.id != "n2").cloned().collect();
    let p = plan(&d, &observed(without_n2, &["a"]));
    assert_eq!(creates(&p), ["a_web-002_2"]);
    assert!(removes(&p).is_empty());
    // Healthy: the next batch.
    all[3].health = Healthy;
    let p = plan(&d, &observed(all, &["a"]));
    assert_eq!(creates(&p), ["a_web-002_3", "a_web-002_4"]);
    assert_eq!(removes(&p).len(), 2);
}

#[test]
fn a_cluster_wide_batch_takes_the_next_slots_only_once_all_it_holds_run_ready() {
    let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
    // Nothing started: the first batch (lowest slots); nothing released.
    let c = claim(6, 2, &set(&[]), &set(&[]), &set(&[1, 2, 3, 4, 5, 6]));
    assert_eq!((c.slots, c.released), (set(&[1, 2]), set(&[])));
    // One of the batch ready (on some member), one not: the batch holds.
    let c = claim(6, 2, &set(&[1, 2]), &set(&[1]), &set(&[1, 2, 3, 4, 5, 6]));
    assert_eq!((c.slots, c.released), (set(&[1, 2]), set(&[1])));
    // Both ready: the next batch; the ready ones are released.
    let c = claim(6, 2, &set(&[1, 2]), &set(&[1, 2]), &set(&[3, 4, 5, 6]));
    assert_eq!((c.slots, c.released), (set(&[1, 2, 3, 4]), set(&[1, 2])));
    // A slot no other version fills (scaled up, or its old instance gone) is held at once.
    let c = claim(4, 1, &set(&[1]), &set(&[]), &set(&[2, 3]));
    assert_eq!(c.slots, set(&[1, 4]));
}

#[test]
fn a_node_follows_the_owners_batch_and_stops_an_old_instance_only_once_released() {
    use crate::model::Health::Healthy;
    // This node runs slots 1 and 3 of both versions; the owner's batch is slots 1 and 2,
    // of which 2 (elsewhere) runs ready.
    let mut s = svc("web", 4, "h1", &[]);
    let here = Some([1, 3].into_iter().collect::<BTreeSet<u32>>());
    let mut v2 = ver(2, 4, "h2", Some(2));
    v2.here = here.clone();
    v2.claim = Some(Claim {
        slots: [1, 2].into_iter().collect(),
        released: [2].into_iter().collect(),
    });
    let mut v1 = ver(1, 4, "h1", None);
    v1.here = here;
    s.versions = vec![v1, v2];
    let d = [app("a", vec![s.clone()])];
    let all = vec![
        vinst("o1", 1, 1, "h1", Healthy),
        vinst("o3", 1, 3, "h1", Healthy),
    ];
    let p = plan(&d, &observed(all.clone(), &["a"]));
    // Slot 1 of the new version starts here; slot 3 is not in the batch; the old slot 1
    // serves until the new one is ready (start-first across hosts).
    assert_eq!(creates(&p), ["a_web-002_1"]);
    assert!(removes(&p).is_empty(), "{:?}", removes(&p));
    // Released: the old slot 1 goes.
    let mut s2 = s;
    if let Some(c) = s2.versions[1].claim.as_mut() {
        c.released.insert(1);
    }
    let d = [app("a", vec![s2])];
    let mut all = all;
    all.push(vinst("n1", 2, 1, "h2", Healthy));
    let p = plan(&d, &observed(all, &["a"]));
    assert!(creates(&p).is_empty());
    assert_eq!(removes(&p).len(), 1, "{:?}", removes(&p));
    assert_eq!(removes(&p)[0].0, "a_web-001_1");
}

#[test]
fn a_failed_rolling_update_brings_the_old_version_back_first() {
    use crate::model::Health::{Healthy, Unhealthy};
    // The rolling version failed: only version 1 is live again.
    let mut s = svc("web", 4, "h1", &[]);
    s.versions = vec![ver(1, 4, "h1", None)];
    let d = [app("a", vec![s])];
    let all = vec![
        vinst("n1", 2, 1, "h2", Unhealthy),
        vinst("n2", 2, 2, "h2", Healthy),
        vinst("o3", 1, 3, "h1", Healthy),
        vinst("o4", 1, 4, "h1", Healthy),
    ];
    let p = plan(&d, &observed(all, &["a"]));
    assert_eq!(creates(&p), ["a_web_1", "a_web_2"]);
    // The unhealthy one goes at once; the healthy one serves until version 1 is back.
    assert_eq!(
        removes(&p),
        [("a_web-002_1".to_string(), RemoveReason::Retired)]
    );
}

#[test]
fn instances_of_a_superseded_version_go_at_once() {
    use crate::model::Health::{Healthy, Starting};
    // web-002 was superseded by web-003 while still starting; web-003 is not ready yet.
    let mut s = svc("web", 2, "h1", &[]);
    s.versions = vec![ver(1, 2, "h1", None), ver(3, 2, "h3", None)];
    s.discard = vec![2];
    let d = [app("a", vec![s])];
    let all = vec![
        vinst("o1", 1, 1, "h1", Healthy),
        vinst("o2", 1, 2, "h1", Healthy),
        vinst("s1", 2, 1, "h2", Healthy),
        vinst("s2", 2, 2, "h2", Starting),
    ];
    let p = plan(&d, &observed(all, &["a"]));
    assert_eq!(
        removes(&p),
        [
            ("a_web-002_1".to_string(), RemoveReason::Discarded),
            ("a_web-002_2".to_string(), RemoveReason::Discarded)
        ]
    );
}

#[test]
fn in_a_cluster_a_node_runs_only_the_slots_placed_on_it() {
    let mut web = svc("web", 6, "h1", &[]);
    web.versions[0].here = Some([2, 5].into());
    let d = [app("shop", vec![web])];
    // From nothing: slots 2 and 5 only.
    let p = plan(&d, &observed(vec![], &["shop"]));
    assert_eq!(creates(&p), vec!["shop_web_2", "shop_web_5"]);
    // Slot 3 ran here before placement moved it: it goes, as moved; 2 and 5 stay.
    let o = observed(
        vec![
            inst("a", "shop", "web", 2, "h1", InstanceState::Running),
            inst("bb", "shop", "web", 3, "h1", InstanceState::Running),
            inst("ccc", "shop", "web", 5, "h1", InstanceState::Running),
        ],
        &["shop"],
    );
    let p = plan(&d, &o);
    assert!(creates(&p).is_empty(), "{p:?}");
    assert_eq!(
        removes(&p),
        vec![("shop_web_3".into(), RemoveReason::Moved)]
    );
    // Above the replica count it is a scale-down as before.
    let o = observed(
        vec![
            inst("a", "shop", "web", 2, "h1", InstanceState::Running),
            inst("ccc", "shop", "web", 5, "h1", InstanceState::Running),
            inst("dddd", "shop", "web", 7, "h1", InstanceState::Running),
        ],
        &["shop"],
    );
    assert_eq!(
        removes(&plan(&d, &o)),
        vec![("shop_web_7".into(), RemoveReason::ScaleDown)]
    );
    // No slot here: the network is not needed either.
    let mut none = svc("web", 2, "h1", &[]);
    none.versions[0].here = Some(Default::default());
    let p = plan(&[app("shop", vec![none])], &observed(vec![], &[]));
    assert!(p.actions.is_empty(), "{p:?}");
}

#[test]
fn instances_of_the_only_live_version_take_their_compose_names_when_free() {
    use crate::model::Health;
    let v2 = |slot| vinst(&format!("n{slot}"), 2, slot, "h", Health::Healthy);
    // Two live versions: names stay as they are.
    let both = |_: &str, _: &str| None;
    let old = inst("o1", "a", "web", 1, "h", InstanceState::Running);
    assert!(compose_renames(both, &[old.clone(), v2(1), v2(2)]).is_empty());
    // web-002 alone: its instances take a_web_N, except where the name is still held.
    let alone = |app: &str, service: &str| (app == "a" && service == "web").then_some(2);
    let r = compose_renames(alone, &[old, v2(1), v2(2)]);
    assert_eq!(r, vec![("n2".to_string(), "a_web_2".to_string())]);
    let r = compose_renames(alone, &[v2(1), v2(2)]);
    assert_eq!(r.len(), 2);
    // Two instances of one slot (a replacement under way) never both get the name; job
    // containers and instances of other apps are left alone.
    let mut twin = v2(1);
    twin.id = "n1b".into();
    assert_eq!(compose_renames(alone, &[v2(1), twin]).len(), 1);
    let mut job = v2(3);
    job.job = Some(crate::model::JobRef { run: 1, attempt: 1 });
    let mut other = v2(4);
    other.app = "b".into();
    assert!(compose_renames(alone, &[job, other]).is_empty());
}
