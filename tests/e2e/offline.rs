//! Offline hosts: `berth image save APP -o bundle.tar` and `berth deploy --images bundle.tar`
//! against the real engine.

use super::harness::*;
use std::time::Duration;

fn tar_names(path: &std::path::Path) -> String {
    let out = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(path)
        .arg("manifest.json")
        .output()
        .expect("tar runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `berth deploy -f FILE --name bundled --images BUNDLE`.
fn deploy_with_images<'a>(file: &'a std::path::Path, bundle: &'a std::path::Path) -> [&'a str; 7] {
    [
        "deploy",
        "-f",
        path_str(file),
        "--name",
        "bundled",
        "--images",
        path_str(bundle),
    ]
}

#[test]
fn image_save_then_deploy_with_images_on_a_host_without_them() {
    let a = Agent::start();
    let tag = format!("berth-test/bundle-{}:v1", std::process::id());
    docker_ok(&["tag", "berth-test/busybox", &tag]);
    let template =
        format!("services:\n  web:\n    image: {tag}\n    command: [\"sleep\", \"3600\"]\n");
    let file = a.template("bundled", &template);
    a.ok(&["deploy", "-f", path_str(&file), "--name", "bundled"]);
    let bundle = a.dir.path().join("bundle.tar");
    let out = a.ok(&["image", "save", "bundled", "-o", path_str(&bundle)]);
    assert!(out.contains(&tag), "{out}");
    assert!(
        tar_names(&bundle).contains(&tag),
        "the tarball carries the tag"
    );
    // No partial files are left beside it.
    let stray: Vec<_> = std::fs::read_dir(a.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // The host loses the image (as a fresh offline host has none).
    a.ok(&["rm", "bundled"]);
    docker_ok(&["rmi", &tag]);
    let err = a.fails(&["image", "save", "nosuchapp", "-o", path_str(&bundle)]);
    assert!(err.contains("nosuchapp"), "{err}");

    // Bad input loads and deploys nothing.
    let junk = a.dir.path().join("junk.tar");
    std::fs::write(&junk, vec![7u8; 4096]).expect("write");
    let err = a.fails(&deploy_with_images(&file, &junk));
    assert!(err.contains("tarball"), "{err}");
    assert!(!a.ok(&["apps"]).contains("bundled"));
    let bad = a.template("badtpl", "services:\n  web:\n    imagee: x\n");
    let err = a.fails(&[
        "deploy",
        "-f",
        path_str(&bad),
        "--images",
        path_str(&bundle),
    ]);
    assert!(err.contains("no images loaded"), "{err}");
    assert!(
        !std::process::Command::new("docker")
            .args(["image", "inspect", &tag])
            .output()
            .expect("docker")
            .status
            .success(),
        "a bad template loads nothing"
    );

    // The bundle brings the image back and the app runs.
    a.ok(&deploy_with_images(&file, &bundle));
    a.wait_running("bundled", 1, Duration::from_secs(60));
    // Saving an app whose image is gone names it.
    a.ok(&["rm", "bundled"]);
    a.ok(&["deploy", "-f", path_str(&file), "--name", "bundled", "-d"]);
    a.ok(&["stop", "bundled"]);
    docker_ok(&["rm", "-f", "bundled_web_1"]);
    docker_ok(&["rmi", &tag]);
    let err = a.fails(&["image", "save", "bundled", "-o", path_str(&bundle)]);
    assert!(
        err.contains(&tag) && err.contains("not on this host"),
        "{err}"
    );
    a.ok(&["rm", "bundled"]);
}

/// A 256 MiB bundle goes through the agent both ways without the agent holding it: its peak
/// memory stays far below the bundle's size.
#[test]
fn large_bundles_stream_through_the_agent() {
    let a = Agent::start();
    let tag = format!("berth-test/big-{}:v1", std::process::id());
    let dir = a.dir.path();
    // An image of one 256 MiB layer of random bytes (incompressible), made without a registry.
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; mkdir -p {d}/rootfs; head -c 268435456 /dev/urandom > {d}/rootfs/blob; tar -C {d}/rootfs -cf - . | docker import - {tag} >/dev/null; rm -rf {d}/rootfs",
            d = dir.display()
        ))
        .status()
        .expect("sh");
    assert!(st.success(), "docker import");
    let template = format!("services:\n  big:\n    image: {tag}\n    command: [\"/blob\"]\n");
    let file = a.template("big", &template);
    // Deployed detached: the container cannot run (the blob is no program); only its image
    // matters here.
    let _ = a.berth(&["deploy", "-f", path_str(&file), "--name", "big", "-d"]);
    let bundle = dir.join("big.tar");
    a.ok(&["image", "save", "big", "-o", path_str(&bundle)]);
    let size = std::fs::metadata(&bundle).expect("bundle").len();
    assert!(size > 256 << 20, "{size}");
    a.ok(&["rm", "big"]);
    docker_ok(&["rmi", &tag]);
    let out = a.ok(&["image", "load", path_str(&bundle)]);
    assert!(out.contains(&tag), "{out}");
    let peak_mib = a.peak_rss_kib() / 1024;
    eprintln!(
        "agent peak RSS {peak_mib} MiB for a {} MiB bundle",
        size >> 20
    );
    assert!(
        peak_mib < 128,
        "the agent held the bundle: peak RSS {peak_mib} MiB"
    );
    docker_ok(&["rmi", &tag]);
}
