//! Compose files from the wild (`tests/data/wild/`) deployed for real, unchanged: their
//! images are the test image tagged locally under the names the files use (nothing can be
//! pulled here), and each service reaches the others by the names the file gives them.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

/// Copies a corpus case into `dir` (bind sources are made beside the file, not in the tree).
fn copy_case(case: &str, dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wild")
        .join(case);
    let dst = dir.join(case);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(&src).expect("case").flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
    dst
}

/// (case, file, images it names, (from service, to the name it uses))
type Case = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[test]
fn compose_files_from_the_wild_deploy_and_their_services_reach_each_other_by_name() {
    let a = Agent::start();
    let cases: [Case; 3] = [
        (
            "library-wordpress",
            "compose.yaml",
            &["wordpress", "mysql:8.0"],
            &[("wordpress", "db")],
        ),
        (
            "awesome-gitea-postgres",
            "compose.yaml",
            &["gitea/gitea:latest", "postgres:alpine"],
            &[("gitea", "db")],
        ),
        (
            "paperless-postgres",
            "docker-compose.postgres.yml",
            &[
                "docker.io/valkey/valkey:9-alpine",
                "docker.io/library/postgres:18",
                "ghcr.io/paperless-ngx/paperless-ngx:latest",
            ],
            &[("webserver", "db"), ("webserver", "broker")],
        ),
    ];
    for (case, file, images, reach) in cases {
        // A created container holds each tag "in use": a prune by a test running beside
        // this one (`berth system prune`) leaves it.
        let mut keep = Containers(Vec::new());
        for image in images {
            docker_ok(&["tag", WEB_IMAGE, image]);
            keep.0.push(docker_ok(&["create", image]));
        }
        let dir = copy_case(case, a.dir.path());
        let path = dir.join(file);
        // The app is named after the directory, as compose names the project.
        let out = a.ok(&["deploy", "-f", path_str(&path), "--timeout", "90"]);
        assert!(out.contains(&format!("{case}: deployed")), "{out}");
        let services: Vec<&str> = reach.iter().flat_map(|(f, t)| [*f, *t]).collect();
        wait_until(&format!("{case} runs"), Duration::from_secs(60), || {
            let running: Vec<String> = a.running(case).iter().map(|i| i.service.clone()).collect();
            services.iter().all(|s| running.iter().any(|r| r == s))
        });
        for (from, to) in reach {
            let id = a
                .running(case)
                .into_iter()
                .find(|i| i.service == *from)
                .expect("instance")
                .container_id;
            // (busybox's static wget crashes with -T: no timeout flag.)
            let mut body = String::new();
            let reached = (0..50).any(|_| {
                let o = std::process::Command::new("docker")
                    .args(["exec", &id, "wget", "-qO-", &format!("http://{to}:80/")])
                    .output()
                    .expect("docker exec");
                body = String::from_utf8_lossy(&o.stdout).into_owned();
                o.status.success() || {
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
            });
            assert!(
                reached && body.contains("hello from berth"),
                "{case}: {from} cannot reach {to:?} by name: {body:?}"
            );
        }
        // Host ports the files publish are served, then freed for the next case.
        a.ok(&["rm", case]);
    }
}
