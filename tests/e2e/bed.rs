//! The multi-host bed for end-to-end tests: real hosts made by `tests/bed/hosts.sh` (a network
//! namespace each, on a test bridge, with its own dockerd), an agent started on any of them,
//! partitions and packet loss on their links, and a capture of what crosses the bridge.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Bed {
    dir: tempfile::TempDir,
    /// `10.213.N`: host `hI` is `10.213.N.I`, this machine's end of the bridge `.254`.
    pub prefix: String,
    pub bridge: String,
    netns: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bed/hosts.sh")
}

impl Bed {
    /// `n` hosts with the test images loaded into each engine; `None` (and the test reports
    /// itself skipped, with why) where this machine cannot make network namespaces.
    pub fn up(test: &str, n: usize) -> Option<Bed> {
        let can = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
            && Command::new("dockerd").arg("--version").output().is_ok()
            && Command::new("nsenter").arg("--version").output().is_ok();
        if !can {
            skipped(
                test,
                "needs iproute2 (ip netns), nsenter and dockerd to make hosts in network namespaces",
            );
            return None;
        }
        // The images come from this machine's engine.
        ensure_engine_and_image();
        let dir = tempfile::Builder::new()
            .prefix("bed")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let up = || {
            Command::new("bash")
                .arg(script())
                .args(["up", &dir.path().display().to_string(), &n.to_string()])
                .args([IMAGE, IDLE_IMAGE])
                .output()
                .expect("hosts.sh runs")
        };
        // A failed start leaves nothing behind (hosts.sh takes it down): one more try, the
        // first failure printed.
        let mut out = up();
        if !out.status.success() {
            eprintln!(
                "{test}: hosts.sh up failed once, trying again: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out = up();
        }
        assert!(
            out.status.success(),
            "hosts.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("bed.env")).expect("bed.env");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .expect("bed.env key")
                .to_string()
        };
        Some(Bed {
            prefix: get("BED_PREFIX"),
            bridge: get("BED_BRIDGE"),
            netns: get("BED_NS"),
            dir,
        })
    }

    /// This machine's end of the bridge (what the hosts reach it at).
    pub fn gateway(&self) -> String {
        format!("{}.254", self.prefix)
    }

    /// Host `i`'s address on the bridge.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.prefix)
    }

    pub fn place(&self, i: usize, env: &[(&str, &str)]) -> Place {
        Place {
            netns: format!("{}-h{i}", self.netns),
            docker_host: format!("unix://{}/h{i}/d.sock", self.dir.path().display()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A `[cluster]` section binding host `i`'s gossip and peer port, with these seeds.
    pub fn cluster_toml(&self, i: usize, seeds: &[usize]) -> String {
        let seeds: Vec<String> = seeds
            .iter()
            .map(|s| format!("\"{}:7946\"", self.addr(*s)))
            .collect();
        format!(
            "[cluster]\nbind = \"{}:7946\"\nseeds = [{}]\n",
            self.addr(i),
            seeds.join(", ")
        )
    }

    /// Starts an agent named `h<i>` on host `i`.
    pub fn agent(&self, i: usize, seeds: &[usize], env: &[(&str, &str)]) -> Agent {
        Agent::start_placed(
            &format!("h{i}"),
            self.place(i, env),
            &self.cluster_toml(i, seeds),
        )
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .output()
            .expect("hosts.sh runs");
        assert!(
            out.status.success(),
            "hosts.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts an agent named `h<i>` on host `i` with more `[cluster]` settings.
    pub fn agent_with(&self, i: usize, seeds: &[usize], cluster: &str) -> Agent {
        Agent::start_placed(
            &format!("h{i}"),
            self.place(i, &[]),
            &format!("{}{cluster}", self.cluster_toml(i, seeds)),
        )
    }

    /// Starts an agent named `h<i>` whose router listens on host `i`'s bridge address, port
    /// 8080, domain `test.local`.
    pub fn agent_routed(&self, i: usize, seeds: &[usize]) -> Agent {
        self.agent_routed_with(i, seeds, "")
    }

    /// The same, with more of berth.toml after the router's section.
    pub fn agent_routed_with(&self, i: usize, seeds: &[usize], more: &str) -> Agent {
        Agent::start_placed(
            &format!("h{i}"),
            self.place(i, &[]),
            &format!(
                "{}[router]\nhttp = \"{}:8080\"\ndomain = \"test.local\"\n{more}",
                self.cluster_toml(i, seeds),
                self.addr(i)
            ),
        )
    }

    /// Stops host `i`'s engine (its containers stop with it), as a host going down does.
    pub fn stop_engine(&self, i: usize) {
        self.run(&[
            "stop-engine",
            &self.dir.path().display().to_string(),
            &format!("h{i}"),
        ]);
    }

    pub fn start_engine(&self, i: usize) {
        self.run(&[
            "start-engine",
            &self.dir.path().display().to_string(),
            &format!("h{i}"),
        ]);
    }

    /// Partitions host `i` (its link down; everything on it keeps running).
    pub fn cut(&self, i: usize) {
        self.run(&[
            "cut",
            &self.dir.path().display().to_string(),
            &format!("h{i}"),
        ]);
    }

    pub fn heal(&self, i: usize) {
        self.run(&[
            "heal",
            &self.dir.path().display().to_string(),
            &format!("h{i}"),
        ]);
    }

    /// Drops `pct` percent of host `i`'s packets each way (0: none).
    pub fn loss(&self, i: usize, pct: u32) {
        self.run(&[
            "loss",
            &self.dir.path().display().to_string(),
            &format!("h{i}"),
            &pct.to_string(),
        ]);
    }

    /// Starts capturing every frame that crosses the bridge.
    pub fn capture(&self) -> Capture {
        Capture::start(&self.bridge)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.dir.path().display().to_string()])
            .status();
    }
}

/// Frames seen on an interface (a raw packet socket), kept whole until [`Capture::stop`].
pub struct Capture {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(ifname: &str) -> Capture {
        let name = std::ffi::CString::new(ifname).expect("interface name");
        // SAFETY: plain socket calls on a descriptor this function owns; the name is a valid
        // C string for the call's duration.
        let fd = unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "cannot open a packet socket (root is needed)");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(sll.sll_ifindex > 0, "no interface {ifname}");
            let r = libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind the packet socket to {ifname}");
            // Promiscuous, as tcpdump makes it: a bridge passes up the frames it switches
            // between its ports only then.
            let mut mr: libc::packet_mreq = std::mem::zeroed();
            mr.mr_ifindex = sll.sll_ifindex;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mr as *const libc::packet_mreq as *const libc::c_void,
                std::mem::size_of::<libc::packet_mreq>() as u32,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            fd
        };
        let stop = Arc::new(AtomicBool::new(false));
        let frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (s, f) = (stop.clone(), frames.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                // SAFETY: reads into a buffer of the length given.
                let n =
                    unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
                if n > 0 {
                    f.lock().unwrap().push(buf[..n as usize].to_vec());
                }
            }
            // SAFETY: the descriptor is this thread's and closed once.
            unsafe { libc::close(fd) };
        });
        Capture {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    /// Stops and returns every frame seen.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.frames.lock().unwrap())
    }
}

/// The UDP payloads among `frames` (Ethernet + IPv4) sent to `port`, with their source.
pub fn udp_to(frames: &[Vec<u8>], port: u16) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in frames {
        // Ethernet II, IPv4, UDP.
        if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
            continue;
        }
        let ihl = ((f[14] & 0x0f) as usize) * 4;
        let udp = 14 + ihl;
        if f.len() < udp + 8 {
            continue;
        }
        let dport = u16::from_be_bytes([f[udp + 2], f[udp + 3]]);
        if dport != port {
            continue;
        }
        let src = format!("{}.{}.{}.{}", f[26], f[27], f[28], f[29]);
        out.push((src, f[udp + 8..].to_vec()));
    }
    out
}
