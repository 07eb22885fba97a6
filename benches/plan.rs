//! Planner cost for 1,000 apps x 10 instances (target: under 50 ms).
//! Run: cargo bench --bench plan

use berth::model::{AppNetwork, Instance, InstanceState, RestartPolicy};
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
                    }],
                    discard: vec![],
                    depends_on: vec![],
                    restart: RestartPolicy::UnlessStopped,
                    bridge: true,
                },
                DesiredService {
                    name: "web".into(),
                    versions: vec![DesiredVersion {
                        number: 1,
                        replicas: 8,
                        spec_hash: "w2.0".into(),
                        rolling: None,
                    }],
                    discard: vec![],
                    depends_on: vec!["db".into()],
                    restart: RestartPolicy::UnlessStopped,
                    bridge: true,
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
                    name: format!("app{a}_{svc}-001_{slot}"),
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
                    created: 1,
                    status: String::new(),
                    ip: String::new(),
                    health: Default::default(),
                    labels: Default::default(),
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

criterion_group!(benches, bench);
criterion_main!(benches);
