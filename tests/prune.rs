//! `berth image prune` against the real engine. It prunes every unused image on the engine
//! (as `docker image prune -a` would, but keeping images deployed apps name), so it lives in
//! its own test binary: cargo runs test binaries one after another, so it never overlaps the
//! end-to-end tests, whose images the harness rebuilds when they are missing.

#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::*;

#[test]
fn prune_removes_unused_images_but_keeps_what_apps_name() {
    let a = Agent::start();
    let (gone, kept) = ("berth-e2e/prune-me:1", "berth-e2e/keep-me:1");
    // An image of its own (one file of unique content), not a tag of the test image: prune
    // rightly keeps an image any container on the engine uses, and a container of the test
    // image left by something else would keep a mere tag of it.
    let layer = tempfile::tempdir().expect("a temporary directory");
    let marker = format!("{:?}", std::time::SystemTime::now());
    std::fs::write(layer.path().join("marker"), marker).expect("the marker is written");
    let imported = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "tar -C {} -c . | docker import - {gone} >/dev/null",
                layer.path().display()
            ),
        ])
        .status()
        .expect("bash runs");
    assert!(imported.success(), "docker import of {gone} failed");
    docker_ok(&["tag", IMAGE, kept]);
    // Deployed but scaled to zero: no container uses `kept`, yet the app needs it back.
    a.deploy(
        "keep",
        &format!("services:\n  web:\n    image: {kept}\n    labels:\n      berth.scale: \"0\"\n"),
    );
    // In use by a running container.
    a.deploy(
        "busy",
        &format!("services:\n  web:\n    image: {IDLE_IMAGE}\n    stop_grace_period: 1s\n"),
    );

    let out = a.ok(&["image", "prune"]);
    assert!(out.starts_with("deleted "), "{out}");
    let present = |r: &str| {
        std::process::Command::new("docker")
            .args(["image", "inspect", r])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(!present(gone), "an unused, unnamed image must go");
    assert!(present(kept), "an image a deployed app names must stay");
    assert!(present(IDLE_IMAGE), "an image in use must stay");
    assert!(a.ok(&["events"]).contains("pruned"));
    // The test image is rebuilt by the harness the next time it is missing.
    docker_ok(&["tag", kept, IMAGE]);
    docker_ok(&["rmi", kept]);
}
