//! Collection cost per cycle for the containers with label `berth.app=$BENCH_APP`: berth's
//! cgroup collector vs the engine's stats API (`/containers/{id}/stats?stream=false&one-shot=true`
//! for each), in the same run. CPU time counts this process and dockerd.
//! Run through benches/collect.sh (it deploys the containers).

use berth::metrics::cgroup::Cgroups;
use berth::metrics::collect::{Collector, Target};
use futures_util::StreamExt;
use std::time::Instant;

fn cpu_self() -> f64 {
    cpu_of(std::process::id())
}

fn cpu_of(pid: u32) -> f64 {
    let t = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &t[t.rfind(')').map(|i| i + 1).unwrap_or(0)..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn main() {
    let app = std::env::var("BENCH_APP").unwrap_or_else(|_| "collect".into());
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=berth.app={app}"),
        ])
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        !ids.is_empty(),
        "no running containers with label berth.app={app}"
    );
    let dockerd: u32 = String::from_utf8_lossy(
        &std::process::Command::new("pidof")
            .arg("dockerd")
            .output()
            .expect("pidof")
            .stdout,
    )
    .split_whitespace()
    .next()
    .and_then(|p| p.parse().ok())
    .expect("dockerd pid");
    let targets: Vec<Target> = ids
        .iter()
        .map(|id| Target {
            id: id.clone(),
            name: id[..12].to_string(),
            status: "running".into(),
            ..Default::default()
        })
        .collect();

    let mut c = Collector::new(Cgroups::detect());
    c.collect("h", "n", targets.clone(), 0); // warm (first cycle has no rates)
    let (c0, d0, w0) = (cpu_self(), cpu_of(dockerd), Instant::now());
    let mut snaps = Vec::with_capacity(cycles);
    for i in 0..cycles {
        snaps.push(c.collect("h", "n", targets.clone(), i as i64));
    }
    let berth_cpu = (cpu_self() - c0) / cycles as f64;
    let berth_dockerd = (cpu_of(dockerd) - d0) / cycles as f64;
    let berth_wall = w0.elapsed().as_secs_f64() / cycles as f64;
    // What a sink adds per cycle: Telegraf points and their line protocol.
    let c1 = cpu_self();
    let mut points = 0;
    let mut bytes = 0;
    for s in &snaps {
        let p = berth::metrics::collect::points(s);
        points += p.len();
        bytes += berth::metrics::line::encode_batches(&p, 5000)
            .iter()
            .map(|(_, b)| b.len())
            .sum::<usize>();
    }
    let encode_cpu = (cpu_self() - c1) / cycles as f64;
    // `/metrics`: the Prometheus text of one cycle (the agent encodes it per scrape).
    let own = berth::metrics::prom::Own::default();
    let mut prom_times: Vec<f64> = Vec::with_capacity(snaps.len());
    let mut prom_bytes = 0;
    for s in &snaps {
        let t = Instant::now();
        let text = berth::metrics::prom::encode(s, &own);
        prom_times.push(t.elapsed().as_secs_f64());
        prom_bytes = text.len();
    }
    prom_times.sort_by(f64::total_cmp);
    let prom_median = prom_times[prom_times.len() / 2];
    let prom_max = prom_times[prom_times.len() - 1];

    // The writable layer's size (cAdvisor's container_fs_usage_bytes): the collector measures
    // at most 8 containers a cycle and each at most once a minute; this is one walk of each.
    let pids: Vec<u32> = snaps
        .last()
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.stats.as_ref().and_then(|st| st.pid))
                .collect()
        })
        .unwrap_or_default();
    let mounts = snaps
        .last()
        .map(|s| s.sample.mounts.clone())
        .unwrap_or_default();
    let (f0, fw) = (cpu_self(), Instant::now());
    let mut walked = 0;
    for pid in &pids {
        if berth::metrics::fsusage::measure(*pid, &mounts).is_some() {
            walked += 1;
        }
    }
    let fs_cpu = (cpu_self() - f0) / walked.max(1) as f64;
    let fs_wall = fw.elapsed().as_secs_f64() / walked.max(1) as f64;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let docker = bollard::Docker::connect_with_local_defaults().expect("engine");
    let stats_cycles: usize = std::env::var("BENCH_STATS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (c0, d0, w0) = (cpu_self(), cpu_of(dockerd), Instant::now());
    rt.block_on(async {
        for _ in 0..stats_cycles {
            for id in &ids {
                let opts = bollard::query_parameters::StatsOptions {
                    stream: false,
                    one_shot: true,
                };
                let mut s = docker.stats(id, Some(opts));
                while let Some(r) = s.next().await {
                    r.expect("stats");
                }
            }
        }
    });
    let api_cpu = (cpu_self() - c0) / stats_cycles as f64;
    let api_dockerd = (cpu_of(dockerd) - d0) / stats_cycles as f64;
    let api_wall = w0.elapsed().as_secs_f64() / stats_cycles as f64;

    println!("containers: {}", ids.len());
    println!(
        "berth cgroup collector: {:.2} ms CPU/cycle (+ dockerd {:.2} ms), {:.2} ms wall",
        berth_cpu * 1e3,
        berth_dockerd * 1e3,
        berth_wall * 1e3
    );
    println!(
        "  + points and line protocol for a sink: {:.2} ms CPU/cycle ({} points, {} KiB)",
        encode_cpu * 1e3,
        points / cycles,
        bytes / cycles / 1024
    );
    println!(
        "  /metrics text: median {:.2} ms, max {:.2} ms ({} KiB)",
        prom_median * 1e3,
        prom_max * 1e3,
        prom_bytes / 1024
    );
    println!(
        "  writable layer size, one walk: {:.2} ms CPU, {:.2} ms wall per container ({walked} walked; at most 8 a cycle)",
        fs_cpu * 1e3,
        fs_wall * 1e3
    );
    println!(
        "engine stats API:       {:.2} ms CPU/cycle (client {:.2} ms + dockerd {:.2} ms), {:.2} s wall",
        (api_cpu + api_dockerd) * 1e3,
        api_cpu * 1e3,
        api_dockerd * 1e3,
        api_wall
    );
    let api = api_cpu + api_dockerd;
    println!(
        "ratio (CPU, stats API / berth collection): {:.0}x; counting points and encoding too: {:.0}x",
        api / (berth_cpu + berth_dockerd).max(1e-9),
        api / (berth_cpu + berth_dockerd + encode_cpu).max(1e-9)
    );
}
