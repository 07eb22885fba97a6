//! Stamps the binary with its git commit and build date for `berth version`.
//! `BERTH_COMMIT` / `SOURCE_DATE_EPOCH` override both (builds from a tarball, reproducible builds).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit changes HEAD or the branch it points at; without .git (a source tarball)
    // only this file triggers a rerun, so builds are not redone every time.
    println!("cargo:rerun-if-changed=build.rs");
    for p in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = std::env::var("BERTH_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    });
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!(
        "cargo:rustc-env=BERTH_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("@{epoch}"));
    println!("cargo:rustc-env=BERTH_BUILD_DATE={date}");
    println!("cargo:rustc-env=BERTH_BUILD_EPOCH={epoch}");
}
