//! Line-protocol encoding throughput (target: over 5 million lines/s on one core).
//! `cargo bench --bench lineproto`

use berth::metrics::line::{Point, Value};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// A Telegraf-style host line: 2 tags, 3 fields.
fn short() -> Point {
    Point::new("cpu", 1_700_000_000_000_000_000)
        .tag("cpu", "cpu-total")
        .tag("host", "node-1")
        .float("usage_user", 1.25)
        .float("usage_system", 0.5)
        .float("usage_idle", 98.25)
}

/// A berth container line: 11 tags, 7 fields (one a string).
fn container() -> Point {
    let mut p = Point::new("docker_container_cpu", 1_700_000_000_000_000_000);
    for (k, v) in [
        ("host", "node-1"),
        ("container_name", "shop_web_2"),
        ("container_image", "registry.local:5000/shop/web"),
        ("container_version", "1.4.2"),
        ("container_status", "running"),
        ("app", "shop"),
        ("service", "web"),
        ("version", "web-003"),
        ("slot", "2"),
        ("node", "node-1"),
        ("cpu", "cpu-total"),
    ] {
        p = p.tag(k, v);
    }
    p.int("usage_total", 123_456_789_012)
        .int("usage_in_usermode", 100_000_000_000)
        .int("usage_in_kernelmode", 23_456_789_012)
        .int("throttling_periods", 0)
        .int("throttling_throttled_periods", 0)
        .float("usage_percent", 3.25)
        .field(
            "container_id",
            Value::Str("6f5b338a07f2f6250d906b915b4ef513456a43499b51122e6e94ccaab5bf0999".into()),
        )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("line_protocol");
    for (name, p) in [
        ("short_2tags_3fields", short()),
        ("container_11tags_7fields", container()),
    ] {
        let batch: Vec<Point> = (0..1000)
            .map(|i| {
                let mut q = p.clone();
                q.time_ns += i;
                q
            })
            .collect();
        g.throughput(Throughput::Elements(batch.len() as u64));
        let mut out = Vec::with_capacity(1 << 20);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for p in &batch {
                    black_box(p).encode(&mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
