//! Collection cost per cycle for the containers with label `berth.app=$BENCH_APP`: berth's
//! cgroup collector vs the engine's stats API (`/containers/{id}/stats?stream=false&one-shot=true`
//! for each), in the same run. CPU time counts this process and the engine: dockerd,
//! containerd and every containerd-shim (a stats call crosses all three), less the engine's
//! background CPU, measured in idle windows before and after (with 100 containers the engine
//! burns ~40 ms/s doing nothing, which over the 100-second stats pass would otherwise be
//! charged to the API). Run the bench agent stopped: its own loops load the engine.
//! Run through benches/collect.sh (it deploys the containers).

use berth::metrics::cgroup::Cgroups;
use berth::metrics::collect::{Collector, Target};
use futures_util::StreamExt;
use std::time::Instant;

/// This process's CPU seconds (getrusage: microseconds, where /proc ticks are 10 ms).
fn cpu_self() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    us(u.user_time()) + us(u.system_time())
}

/// CPU seconds of the engine's processes: dockerd, containerd and the containerd shims
/// (`/proc/<pid>/stat`, 10 ms ticks).
fn engine_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "dockerd" | "containerd" | "containerd-shim")
        })
        .map(cpu_of)
        .sum()
}

/// CPU ms per call of `f`, over `n` calls.
fn cpu_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let c = cpu_self();
    for _ in 0..n {
        f();
    }
    (cpu_self() - c) / n as f64 * 1e3
}

/// Where a cycle's time goes: each reader alone, in steady state (kept files open, caches
/// warm), `n` calls each. Returns the containers' part (cgroup and net files) in ms.
fn parts(targets: &[Target], n: usize) -> f64 {
    use berth::metrics::host::{HostCache, HostSample};
    use berth::metrics::node::{
        NetClass, NetClassCache, NodeSample, ProcStates, tcp_states_netlink,
    };
    use berth::metrics::procfile::Kept;
    let mut cache = HostCache::default();
    let mut files = Kept::new(10_000);
    let mut netclass = NetClassCache::default();
    let cg = Cgroups::detect();
    let mut pids = Vec::new();
    let mut rows: Vec<(&str, f64)> = Vec::new();
    // Warm: open what is kept, and see what the kernel holds for it (a seq_file keeps its
    // page-sized buffer while open).
    let kernel_kib = || {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Slab:") || l.starts_with("KernelStack:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
            .sum::<i64>()
    };
    let k0 = kernel_kib();
    HostSample::read(&mut cache);
    for t in targets {
        if let Some(p) = cg.read(&t.id, &mut files, None).and_then(|s| s.pid) {
            pids.push(p);
        }
    }
    for p in &pids {
        berth::metrics::cgroup::net_of(*p, 0, &mut files);
    }
    println!(
        "kept open: {} files; kernel memory (Slab) {:+} KiB while they are",
        cache.files.len() + files.len(),
        kernel_kib() - k0
    );
    rows.push((
        "host: everything below and /proc, statvfs",
        cpu_ms(n, || {
            HostSample::read(&mut cache);
        }),
    ));
    rows.push((
        "  node_exporter extras (netclass, tcp, procs, ...)",
        cpu_ms(n, || {
            NodeSample::read(&mut netclass, &mut cache.files);
        }),
    ));
    rows.push((
        "    interfaces: RTM_GETLINK dump (+ cached sysfs)",
        cpu_ms(n, || {
            NetClass::read_all(&mut netclass);
        }),
    ));
    rows.push((
        "    interfaces: every attribute from sysfs (before)",
        cpu_ms(n.min(5), || {
            NetClass::read_all_sysfs();
        }),
    ));
    rows.push((
        "    TCP states: sock_diag dump",
        cpu_ms(n, || {
            tcp_states_netlink();
        }),
    ));
    rows.push((
        "    process states: /proc/*/stat kept open",
        cpu_ms(n, || {
            ProcStates::read(&mut cache.files);
        }),
    ));
    rows.push((
        "    process states: opened each time (before)",
        cpu_ms(n.min(5), || {
            ProcStates::read(&mut Kept::new(0));
        }),
    ));
    rows.push((
        "  hardware (hwmon, thermal, cpufreq, ...)",
        cpu_ms(n, || {
            berth::metrics::sysclass::read(
                std::path::Path::new("/sys"),
                std::path::Path::new("/proc"),
            );
        }),
    ));
    rows.push((
        "containers: cgroup files kept open",
        cpu_ms(n, || {
            for (t, p) in targets.iter().zip(&pids) {
                cg.read(&t.id, &mut files, Some(*p));
            }
        }),
    ));
    rows.push((
        "containers: cgroup files opened each time (before)",
        cpu_ms(n.min(5), || {
            for t in targets {
                cg.read(&t.id, &mut Kept::new(0), None);
            }
        }),
    ));
    rows.push((
        "containers: /proc/PID/net/dev kept open",
        cpu_ms(n, || {
            for p in &pids {
                berth::metrics::cgroup::net_of(*p, 0, &mut files);
            }
        }),
    ));
    println!("where a cycle's CPU goes (each reader alone, {n} calls):");
    let mut containers = 0.0;
    for (name, ms) in rows {
        println!("  {name:55} {ms:7.2} ms");
        if name.ends_with("kept open") && name.starts_with("containers:") {
            containers += ms;
        }
    }
    containers
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
        .unwrap_or(100);
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
    let idle_s: u64 = std::env::var("BENCH_IDLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let background = || {
        let (e0, w0) = (engine_cpu(), Instant::now());
        std::thread::sleep(std::time::Duration::from_secs(idle_s));
        (engine_cpu() - e0) / w0.elapsed().as_secs_f64()
    };
    let idle_before = background();
    let targets: Vec<Target> = ids
        .iter()
        .map(|id| Target {
            id: id.clone(),
            name: id[..12].to_string(),
            status: "running".into(),
            ..Default::default()
        })
        .collect();

    if let Some(n) = std::env::var("BENCH_PROFILE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Whole cycles only, for a profiler (`perf record`).
        let mut c = Collector::new(Cgroups::detect());
        for i in 0..n {
            std::hint::black_box(c.collect("h", "n", targets.clone(), i as i64));
        }
        return;
    }
    let containers_ms = Some(parts(&targets, 20));
    if std::env::var_os("BENCH_PARTS_ONLY").is_some() {
        return;
    }
    let mut c = Collector::new(Cgroups::detect());
    c.collect("h", "n", targets.clone(), 0); // warm (first cycle has no rates)
    let (c0, d0, w0) = (cpu_self(), engine_cpu(), Instant::now());
    let mut snaps = Vec::with_capacity(cycles);
    for i in 0..cycles {
        snaps.push(c.collect("h", "n", targets.clone(), i as i64));
    }
    let berth_cpu = (cpu_self() - c0) / cycles as f64;
    let berth_engine_raw = engine_cpu() - d0;
    let berth_wall_total = w0.elapsed().as_secs_f64();
    let berth_wall = berth_wall_total / cycles as f64;
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
    let (c0, d0, w0) = (cpu_self(), engine_cpu(), Instant::now());
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
    let api_engine_raw = engine_cpu() - d0;
    let api_wall_total = w0.elapsed().as_secs_f64();
    let api_wall = api_wall_total / stats_cycles as f64;
    let idle_after = background();
    let idle = (idle_before + idle_after) / 2.0;
    let berth_engine = (berth_engine_raw - idle * berth_wall_total).max(0.0) / cycles as f64;
    let api_engine = (api_engine_raw - idle * api_wall_total).max(0.0) / stats_cycles as f64;

    println!("containers: {}", ids.len());
    println!(
        "engine background (dockerd + containerd + shims, idle): {:.1} ms/s before, {:.1} ms/s after",
        idle_before * 1e3,
        idle_after * 1e3
    );
    println!(
        "berth collector, whole cycle: {:.2} ms CPU/cycle (+ engine {:.2} ms net of background), {:.2} ms wall",
        berth_cpu * 1e3,
        berth_engine * 1e3,
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
        "engine stats API: {:.2} ms CPU/cycle (client {:.2} ms + engine {:.2} ms net of background; {:.2} ms raw), {:.2} s wall",
        (api_cpu + api_engine) * 1e3,
        api_cpu * 1e3,
        api_engine * 1e3,
        api_engine_raw / stats_cycles as f64 * 1e3,
        api_wall
    );
    let api = api_cpu + api_engine;
    let berth = berth_cpu + berth_engine;
    println!(
        "ratio (CPU, stats API / berth's whole cycle): {:.0}x; with points and encoding: {:.0}x",
        api / berth.max(1e-9),
        api / (berth + encode_cpu).max(1e-9)
    );
    if let Some(c) = containers_ms {
        println!(
            "ratio (CPU, stats API / berth's container reads: cgroup + net files): {:.0}x",
            api / (c / 1e3).max(1e-9)
        );
    }
}
