//! Volumes against real components: an S3 API server (moto) mounted through s3fs, engine
//! volumes, and an NFS server (nfs-ganesha) mounted by the kernel where it has an NFS client.

use super::backends::{Nfs, S3};
use super::harness::*;
use std::time::Duration;

const AK: &str = "AKIDBERTHTESTKEY1";
const SK: &str = "berthTestSecretKey0123456789xyz";

fn oss_template(s3: &S3, path: &str) -> String {
    format!(
        r#"
services:
  writer:
    image: berth-test/busybox
    command: ["sh", "-c", "echo hello-from-writer > /data/hello.txt; exec sleep 3600"]
    volumes: ["shared:/data:nocopy"]
  reader:
    image: berth-test/busybox
    command: ["sleep", "3600"]
    volumes: ["shared:/mnt/s:ro"]
volumes:
  shared:
    driver: oss
    driver_opts:
      endpoint: {url}
      bucket: {bucket}
      path: {path}
      access_key: {AK}
      secret_key: {SK}
      other_opts: "-o use_path_request_style -o retries=2 -o default_acl=public-read"
"#,
        url = s3.url(),
        bucket = s3.bucket,
    )
}

fn exec(container: &str, cmd: &[&str]) -> Option<String> {
    let mut args = vec!["exec", container];
    args.extend(cmd);
    let o = std::process::Command::new("docker")
        .args(&args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn volume(a: &Agent, name: &str) -> berth::wire::VolumeView {
    serde_json::from_str(
        &a.get_raw(&format!("/v1/volumes/{name}"), true)
            .expect("volume")
            .1,
    )
    .expect("volume json")
}

#[test]
fn oss_volume_shares_a_bucket_hides_credentials_and_survives_its_helper() {
    let s3 = S3::start("berth-data");
    let mut a = Agent::start();
    a.deploy("ossv", &oss_template(&s3, "app1"));
    a.wait_running("ossv", 2, Duration::from_secs(90));
    // The container's file is an object in the bucket, under the volume's path.
    wait_until("the object in the bucket", Duration::from_secs(30), || {
        s3.get("app1/hello.txt").as_deref() == Some("hello-from-writer\n")
    });
    // The other container shares the one host mount.
    let reader = "ossv_reader_1";
    wait_until("the reader sees the file", Duration::from_secs(20), || {
        exec(reader, &["cat", "/mnt/s/hello.txt"]).as_deref() == Some("hello-from-writer")
    });
    let v = volume(&a, "ossv_shared");
    assert_eq!(v.state, "mounted", "{v:?}");
    assert_eq!(v.used_by.len(), 2, "{v:?}");
    let mp = a.dir.path().join("volumes/ossv_shared");
    assert_eq!(v.mountpoint, mp.display().to_string());
    assert_eq!(
        mounts_under(a.dir.path()).len(),
        1,
        "one mount for both containers"
    );

    // A second mount of the same bucket (as another host would have), made by hand with the
    // credentials in a file: it sees what the first wrote. Its endpoint is an IP address
    // and it does not ask for path-style requests: berth uses them by itself.
    let opts = a.dir.path().join("other.opts");
    std::fs::write(
        &opts,
        format!(
            "endpoint={}\nbucket=berth-data\npath=app1\naccess_key={AK}\nsecret_key={SK}\n",
            s3.url()
        ),
    )
    .expect("opts");
    a.ok(&[
        "volume",
        "create",
        "other",
        "--driver",
        "oss",
        "--opt-file",
        path_str(&opts),
    ]);
    a.deploy(
        "ossw",
        "services:\n  peek:\n    image: berth-test/busybox\n    command: [\"sleep\", \"3600\"]\n    volumes: [\"other:/seen\"]\nvolumes:\n  other:\n    external: true\n",
    );
    a.wait_running("ossw", 1, Duration::from_secs(60));
    assert_eq!(
        exec("ossw_peek_1", &["cat", "/seen/hello.txt"]).as_deref(),
        Some("hello-from-writer")
    );
    assert_eq!(mounts_under(a.dir.path()).len(), 2);
    let shown = a.ok(&["volume", "inspect", "other"]);
    assert!(
        shown.contains("requests:   path style (the endpoint is an IP address)"),
        "{shown}"
    );

    // Credentials: not in any process's command line, the agent's log, the API, the CLI's
    // views, or the state database in clear.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("s3fs"), "the helper runs: {ps}");
    let mut seen = vec![("ps", ps.to_string()), ("agent log", a.log())];
    for path in [
        "/v1/volumes",
        "/v1/volumes/ossv_shared",
        "/v1/volumes/other",
        "/v1/apps/ossv/spec",
        "/v1/events?limit=1000",
    ] {
        seen.push((path, a.get_raw(path, true).expect("api").1));
    }
    seen.push(("volume ls", a.ok(&["volume", "ls"])));
    seen.push((
        "volume inspect",
        a.ok(&["volume", "inspect", "ossv_shared"]),
    ));
    seen.push(("inspect", a.ok(&["inspect", "ossv", "--json"])));
    for db in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(a.dir.path().join(db)).unwrap_or_default();
        seen.push((db, String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (what, text) in &seen {
        assert!(
            !text.contains(SK) && !text.contains(AK),
            "a credential shows in {what}"
        );
    }
    assert!(seen[2].1.contains("********"), "masked: {}", seen[2].1);
    assert!(
        std::fs::read_dir(a.dir.path().join("volumes/.berth"))
            .expect("private dir")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".passwd")),
        "the passwd file is gone once the helper has read it"
    );

    // A volume in use cannot be removed; the error names the user.
    let err = a.fails(&["volume", "rm", "other"]);
    assert!(err.contains("ossw_peek_1"), "{err}");

    // The helper dies: berth mounts the volume again and restarts the containers that held
    // the dead mount, which then read the bucket again.
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-f", &format!("s3fs .* {}", mp.display())])
        .status()
        .expect("pkill");
    assert!(killed.success(), "the helper was found and killed");
    wait_until(
        "the volume is mounted again",
        Duration::from_secs(60),
        || {
            a.ok(&["events"]).contains("mounting it again")
                && volume(&a, "ossv_shared").state == "mounted"
        },
    );
    wait_until("the reader reads again", Duration::from_secs(60), || {
        exec(reader, &["cat", "/mnt/s/hello.txt"]).as_deref() == Some("hello-from-writer")
    });
    assert!(a.ok(&["events"]).contains("to remount volume ossv_shared"));

    // The agent dies and the mount goes with the host (a reboot): the restarted agent mounts
    // the volume again and restarts the containers that run without it.
    a.kill9();
    let _ = std::process::Command::new("umount")
        .args(["-l", path_str(&mp)])
        .status();
    a.restart();
    wait_until("mounted after the restart", Duration::from_secs(60), || {
        volume(&a, "ossv_shared").state == "mounted"
    });
    wait_until(
        "the reader reads after the restart",
        Duration::from_secs(60),
        || exec(reader, &["cat", "/mnt/s/hello.txt"]).as_deref() == Some("hello-from-writer"),
    );

    // The last user stops: the volume is unmounted; it comes back with the app.
    a.ok(&["stop", "ossw"]);
    wait_until("other is unmounted", Duration::from_secs(40), || {
        volume(&a, "other").state == "unmounted"
    });
    a.ok(&["rm", "ossw"]);
    wait_until("ossw's container is gone", Duration::from_secs(30), || {
        a.engine_containers("ossw").is_empty()
    });
    a.ok(&["volume", "rm", "other"]);
    a.ok(&["rm", "ossv", "--volumes"]);
    wait_until("nothing mounted", Duration::from_secs(40), || {
        mounts_under(a.dir.path()).is_empty()
    });
    // The data stays in the bucket: a volume is a view of it.
    assert!(s3.get("app1/hello.txt").is_some());
}

#[test]
fn bad_endpoint_fails_the_deploy_with_the_helpers_error_and_mounts_nothing() {
    let s3 = S3::start("berth-bad");
    let a = Agent::start();
    let closed = free_port();
    let template = oss_template(&s3, "x").replace(&s3.url(), &format!("http://127.0.0.1:{closed}"));
    let p = a.template("ossbad", &template);
    let err = a.fails(&["deploy", "-f", path_str(&p), "--name", "ossbad"]);
    assert!(
        err.contains("s3fs") && err.contains("ossbad_shared"),
        "the helper's words: {err}"
    );
    // Which endpoint and which request style were tried.
    assert!(
        err.contains(&format!(
            "endpoint http://127.0.0.1:{closed}, path-style requests"
        )),
        "{err}"
    );
    assert!(
        mounts_under(a.dir.path()).is_empty(),
        "nothing stays mounted"
    );
    assert!(
        a.ok(&["volume", "ls", "--json"]).trim() == "[]",
        "no volume kept"
    );
    assert!(!a.ok(&["apps"]).contains("ossbad"), "no app kept");
}

#[test]
fn local_volumes_survive_redeploy_refuse_rm_in_use_and_prune() {
    let a = Agent::start();
    let t = |v: &str| {
        format!(
            "services:\n  db:\n    image: berth-test/busybox\n    command: [\"sleep\", \"3600\"]\n    environment:\n      V: \"{v}\"\n    volumes: [\"data:/var/data\"]\nvolumes:\n  data: {{}}\n"
        )
    };
    a.deploy("locv", &t("1"));
    a.wait_running("locv", 1, Duration::from_secs(60));
    exec("locv_db_1", &["sh", "-c", "echo kept > /var/data/f"]).expect("write");
    a.deploy("locv", &t("2"));
    // Started beside db-001 with the version in its name, then, alone, renamed to the
    // compose name.
    wait_until(
        "the new version runs as locv_db_1",
        Duration::from_secs(60),
        || {
            let r = a.running("locv");
            r.len() == 1 && r[0].version == "db-002" && r[0].name == "locv_db_1"
        },
    );
    assert_eq!(
        exec("locv_db_1", &["cat", "/var/data/f"]).as_deref(),
        Some("kept")
    );
    let ls = a.ok(&["volume", "ls"]);
    assert!(ls.contains("/locv_data") && ls.contains("local"), "{ls}");
    let err = a.fails(&["volume", "rm", "locv_data"]);
    assert!(err.contains("in use by locv_db_1"), "{err}");

    // Prune: asks (refuses without a terminal), then removes what no app names. It prunes
    // images engine-wide too: a created container keeps each test image "in use", so tests
    // running beside this one keep theirs.
    let _keep = Containers(
        [IMAGE, WEB_IMAGE, IDLE_IMAGE]
            .iter()
            .map(|i| docker_ok(&["create", i]))
            .collect(),
    );
    a.ok(&["volume", "create", "loose"]);
    let err = a.fails(&["system", "prune"]);
    assert!(err.contains("--force"), "{err}");
    let out = a.ok(&["system", "prune", "--force"]);
    assert!(out.contains("loose") && !out.contains("locv_data"), "{out}");
    assert!(
        a.fails(&["volume", "inspect", "loose"])
            .contains("no volume")
    );
    // Bad input changes nothing.
    let err = a.fails(&[
        "volume", "create", "x", "--driver", "oss", "--opt", "bucket=b",
    ]);
    assert!(err.contains("endpoint"), "{err}");
    let err = a.fails(&["volume", "create", "../x"]);
    assert!(err.contains("x"), "{err}");
    a.ok(&["rm", "locv", "--volumes"]);
}

#[test]
fn nas_volume_mounts_a_real_nfs_export_or_fails_with_the_mount_error() {
    let a = Agent::start();
    let nfs = match Nfs::start() {
        Ok(n) => n,
        Err(why) => panic!("the NFS server for this test: {why}"),
    };
    // The server itself answers NFSv4 (checked in user space, so also on kernels without NFS).
    std::fs::write(nfs.export().join("from-server"), "s").expect("write export");
    let listing = nfs.ls().expect("nfs-ls lists the export");
    assert!(listing.contains("from-server"), "{listing}");

    let template = format!(
        "services:\n  app:\n    image: berth-test/busybox\n    command: [\"sleep\", \"3600\"]\n    volumes: [\"share:/share\"]\nvolumes:\n  share:\n    driver: nas\n    driver_opts:\n      server: 127.0.0.1\n      path: /export\n      subdir: apps/one\n      vers: \"4\"\n      mode: \"0770\"\n      options: \"port={},soft,timeo=50,retrans=2\"\n",
        nfs.port
    );
    let p = a.template("nasv", &template);
    let has_nfs = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim_end().ends_with("\tnfs") || l.trim_end().ends_with("\tnfs4"));
    if !has_nfs {
        let err = a.fails(&["deploy", "-f", path_str(&p), "--name", "nasv"]);
        assert!(err.contains("nasv_share") && err.contains("mount"), "{err}");
        eprintln!("deploy refused as expected: {err}");
        assert!(
            mounts_under(a.dir.path()).is_empty(),
            "nothing stays mounted"
        );
        assert_eq!(a.ok(&["volume", "ls", "--json"]).trim(), "[]");
        assert!(
            !nfs.export().join("apps").exists(),
            "a failed mount makes no sub-directory"
        );
        skipped(
            "volumes::nas end to end",
            "this kernel has no NFS client (`nfs` is not in /proc/filesystems); the NFS server (nfs-ganesha) was checked with libnfs, and the mount options, the sub-directory step and the failure path were tested",
        );
        return;
    }
    a.ok(&["deploy", "-f", path_str(&p), "--name", "nasv"]);
    let sub = nfs.export().join("apps/one");
    let meta = std::fs::metadata(&sub).expect("the sub-directory is made on first mount");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o770);
    let container = "nasv_app_1";
    exec(
        container,
        &["sh", "-c", "echo from-container > /share/hello"],
    )
    .expect("write");
    assert_eq!(
        std::fs::read_to_string(sub.join("hello")).expect("the file is on the server"),
        "from-container\n"
    );
    std::fs::write(sub.join("back"), "from-host").expect("write on the server");
    assert_eq!(
        exec(container, &["cat", "/share/back"]).as_deref(),
        Some("from-host")
    );
    let v = volume(&a, "nasv_share");
    assert_eq!(v.state, "mounted", "{v:?}");
    a.ok(&["rm", "nasv"]);
    wait_until("the NFS mount is released", Duration::from_secs(30), || {
        mounts_under(a.dir.path()).is_empty()
    });
    a.ok(&["volume", "rm", "nasv_share"]);
    assert!(
        sub.join("hello").exists(),
        "removing the volume keeps the data"
    );
}
