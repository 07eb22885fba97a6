//! Planner cost for 1,000 apps x 10 instances (target: under 50 ms), and placement of 10,000
//! instances over 50 hosts with constraints, zones and spread (target: under 100 ms).
//! Run: cargo bench --bench plan

use berth::model::{AppNetwork, Instance, InstanceState, RestartPolicy};
use berth::plan::placement::{Assignment, Demand, NodeInfo, Running, placement};
use berth::plan::{DesiredApp, DesiredService, DesiredVersion, Observed, plan};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn desired(apps: usize) -> Vec<DesiredApp> {
    (0..apps)
        .map(|a| DesiredApp {
            name: format!("app{a}"),
            stopped: false,
            resumed_ms: 0,
            services: vec![
                DesiredService {
                    name: "db".into(),
                    versions: vec![DesiredVersion {
                        number: 1,
                        replicas: 2,
                        spec_hash: "d1.0".into(),
                        rolling: None,
                        here: None,
                        claim: None,
                    }],
                    discard: vec![],
                    depends_on: vec![],
                    restart: RestartPolicy::UnlessStopped,
                    bridge: true,
                    stopped: None,
                },
                DesiredService {
                    name: "web".into(),
                    versions: vec![DesiredVersion {
                        number: 1,
                        replicas: 8,
                        spec_hash: "w2.0".into(),
                        rolling: None,
                        here: None,
                        claim: None,
                    }],
                    discard: vec![],
                    depends_on: vec!["db".into()],
                    restart: RestartPolicy::UnlessStopped,
                    bridge: true,
                    stopped: None,
                },
            ],
        })
        .collect()
}

fn observed(apps: usize, web_hash: &str) -> Observed {
    let mut instances = Vec::with_capacity(apps * 10);
    for a in 0..apps {
        for (svc, n, hash) in [("db", 2, "d1.0"), ("web", 8, web_hash)] {
            for slot in 1..=n {
                instances.push(Instance {
                    id: format!("{a}-{svc}-{slot}"),
                    name: format!("app{a}_{svc}_{slot}"),
                    app: format!("app{a}"),
                    service: svc.into(),
                    slot,
                    spec_hash: hash.into(),
                    version: format!("{svc}-001"),
                    image: "img".into(),
                    state: InstanceState::Running,
                    exit_code: None,
                    finished_ms: None,
                    ports: vec![],
                    exposed: vec![],
                    created: 1,
                    status: String::new(),
                    ip: String::new(),
                    health: Default::default(),
                    labels: Default::default(),
                    owner: String::new(),
                    job: None,
                });
            }
        }
    }
    Observed {
        instances,
        boot_ms: 0,
        seen_done: Default::default(),
        networks: (0..apps)
            .map(|a| AppNetwork {
                id: format!("n{a}"),
                app: format!("app{a}"),
                created: "2026-01-01T00:00:00Z".into(),
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let d = desired(1000);
    let converged = observed(1000, "w2.0");
    let outdated = observed(1000, "w1.0");
    let empty = Observed::default();
    c.bench_function("plan 1000 apps x 10 instances, converged", |b| {
        b.iter(|| plan(black_box(&d), black_box(&converged)))
    });
    c.bench_function("plan 1000 apps x 10 instances, web outdated", |b| {
        b.iter(|| plan(black_box(&d), black_box(&outdated)))
    });
    c.bench_function("plan 1000 apps x 10 instances, from nothing", |b| {
        b.iter(|| plan(black_box(&d), black_box(&empty)))
    });
}

/// 50 hosts in 5 zones, half of them `disk=ssd`, 16 CPUs and 64 GiB each.
fn hosts() -> Vec<NodeInfo> {
    (0..50)
        .map(|i| NodeInfo {
            id: format!("{i:016x}"),
            name: format!("h{i}"),
            labels: [
                ("az".to_string(), (i % 5).to_string()),
                (
                    "disk".to_string(),
                    if i % 2 == 0 { "ssd" } else { "hdd" }.to_string(),
                ),
            ]
            .into(),
            open: true,
            drained: false,
            lost: false,
            cpu_millis: 16_000,
            mem_bytes: 64 << 30,
            gpus: 0,
            running: Vec::new(),
        })
        .collect()
}

/// Places 1,000 services of 10 replicas (10,000 instances), one after another as a deploy of
/// many apps would, each seeing the instances placed before it: half of them constrained to
/// `disk==ssd`, all over at least 3 zones, with a CPU and memory reservation.
fn place_all(nodes: &[NodeInfo]) -> usize {
    let mut nodes = nodes.to_vec();
    let mut total = 0;
    for s in 0..1000u32 {
        let mut placement_rules = vec!["availability:az==3".to_string()];
        if s % 2 == 0 {
            placement_rules.push("constraint:disk==ssd".into());
        }
        let d = Demand {
            app: format!("app{}", s / 2),
            service: format!("svc{s}"),
            version: 1,
            image: "img".into(),
            replicas: 10,
            global: false,
            placement: placement_rules,
            max_per_node: None,
            cpu_millis: 50,
            mem_bytes: 32 << 20,
            gpus: 0,
            reschedule: false,
            local_state: None,
        };
        let placed = placement(&d, &nodes, &[]).expect("placed");
        for a in &placed.assignments {
            if let Some(n) = nodes.iter_mut().find(|n| n.id == a.node) {
                n.running.push(Running {
                    app: a.app.clone(),
                    service: a.service.clone(),
                    image: d.image.clone(),
                    name: format!("{}_{}_{}", a.app, a.service, a.slot),
                    labels: Default::default(),
                    cpu_millis: d.cpu_millis,
                    mem_bytes: d.mem_bytes,
                    gpus: 0,
                });
            }
        }
        total += placed.assignments.len();
    }
    total
}

fn bench_placement(c: &mut Criterion) {
    let nodes = hosts();
    assert_eq!(place_all(&nodes), 10_000);
    c.bench_function(
        "placement 10000 instances (1000 services x 10) over 50 hosts",
        |b| b.iter(|| place_all(black_box(&nodes))),
    );
    // One service of 10,000 replicas, sticky over 9,000 kept assignments.
    let d = Demand {
        app: "big".into(),
        service: "web".into(),
        version: 1,
        image: "img".into(),
        replicas: 10_000,
        placement: vec!["constraint:disk==ssd".into(), "availability:az==3".into()],
        ..Default::default()
    };
    let kept: Vec<Assignment> = placement(&d, &nodes, &[])
        .expect("placed")
        .assignments
        .into_iter()
        .filter(|a| a.slot <= 9_000)
        .collect();
    c.bench_function("placement one service of 10000 over 50 hosts", |b| {
        b.iter(|| placement(black_box(&d), black_box(&nodes), &[]))
    });
    c.bench_function(
        "placement one service of 10000, 9000 kept, over 50 hosts",
        |b| b.iter(|| placement(black_box(&d), black_box(&nodes), black_box(&kept))),
    );
}

criterion_group!(benches, bench, bench_placement);
criterion_main!(benches);
