//! The cost of committing acknowledged writes with `synchronous=FULL` (the agent's mode: a
//! deploy survives a power loss) against `NORMAL`, on the real store, on this machine's disk.
//! One iteration is what `berth deploy` of a 10-service template writes: the app and a new
//! version of each service, in one transaction.
//! Run: cargo bench --bench store

use berth::model::Release;
use berth::store::{AckSync, Store};
use criterion::{Criterion, criterion_group, criterion_main};

fn template() -> String {
    let mut t = String::from("services:\n");
    for i in 0..10 {
        t.push_str(&format!(
            "  s{i}:\n    image: berth-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n"
        ));
    }
    t
}

fn deploys(c: &mut Criterion) {
    let text = template();
    let spec = berth::spec::parse(&text, "bench", &Default::default()).expect("template");
    let releases: Vec<(String, Release)> = spec
        .services
        .keys()
        .map(|s| (s.clone(), Release::Promote))
        .collect();
    let mut g = c.benchmark_group("deploy + rm writes (10 services)");
    for (name, mode) in [
        ("synchronous=FULL", AckSync::Full),
        ("synchronous=NORMAL", AckSync::Normal),
    ] {
        // A fresh data dir on the same disk the agent would use (the current directory's).
        let dir = tempfile::tempdir_in(".").expect("tmp");
        let store = Store::open_with(&dir.path().join("state.db"), mode).expect("store");
        g.bench_function(name, |b| {
            b.iter(|| {
                // A deploy and an rm: both are acknowledged writes.
                store
                    .put_app(&spec, &text, &releases, "bench")
                    .expect("deploy");
                store.delete_app("bench").expect("rm");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, deploys);
criterion_main!(benches);
