//! The web console in a real headless Chromium (Debian's), driven by Playwright
//! (`tests/ui/console.mjs`, npm package `playwright-core`), against a real agent and engine:
//! sign-in (a wrong token refused), a cross-site POST refused, deploy from the Deploy page
//! (an invalid template's error at its line first), scale 1 -> 3, a 50/50 split and a
//! rollback, live logs, a metrics chart with points, every other page, a phone's width,
//! remove with its confirmation, sign-out ending the session; no console error on any
//! page. Screenshots go to `target/console/`.

use crate::harness::*;
use std::path::Path;
use std::process::Command;

#[test]
fn the_console_in_a_real_browser_signs_in_deploys_scales_splits_follows_and_removes() {
    let test =
        "console::the_console_in_a_real_browser_signs_in_deploys_scales_splits_follows_and_removes";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ui = root.join("tests/ui");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        skipped(
            test,
            &format!("no Chromium at {chromium}: scripts/test installs Debian's chromium"),
        );
        return;
    }
    if !ui.join("node_modules/playwright-core").exists() {
        skipped(
            test,
            "tests/ui/node_modules has no playwright-core: scripts/test runs `npm ci` there",
        );
        return;
    }
    let a = Agent::start();
    let shots = root.join("target/console");
    let out = Command::new("node")
        .arg("console.mjs")
        .current_dir(&ui)
        .env("BERTH_URL", a.api())
        .env("BERTH_TOKEN", a.token())
        .env("BERTH_IMAGE", IMAGE)
        .env("BERTH_SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\n(screenshots in {}; agent log:\n{})",
        shots.display(),
        a.log()
    );
    assert!(text.contains("console: all steps passed"), "{text}");
}

/// The same console in Firefox (Debian's firefox-esr over WebDriver BiDi, puppeteer-core;
/// `tests/ui/firefox.mjs`): sign-in (a wrong token refused), the overview, an app's page,
/// live logs, every other page, a phone's width, no console error.
#[test]
fn the_console_works_in_firefox() {
    let test = "console::the_console_works_in_firefox";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ui = root.join("tests/ui");
    let firefox = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    if !Path::new(&firefox).exists() {
        skipped(
            test,
            &format!("no Firefox at {firefox}: scripts/test installs Debian's firefox-esr"),
        );
        return;
    }
    if !ui.join("node_modules/puppeteer-core").exists() {
        skipped(
            test,
            "tests/ui/node_modules has no puppeteer-core: scripts/test runs `npm ci` there",
        );
        return;
    }
    let a = Agent::start();
    a.deploy(
        "fox",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"while true; do echo tick; sleep 1; done\"]\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"2\"\n"
        ),
    );
    let shots = root.join("target/console");
    let _ = std::fs::create_dir_all(&shots);
    let out = Command::new("node")
        .arg("firefox.mjs")
        .current_dir(&ui)
        .env("BERTH_URL", a.api())
        .env("BERTH_TOKEN", a.token())
        .env("BERTH_APP", "fox")
        .env("BERTH_SHOTS", &shots)
        .env("FIREFOX", &firefox)
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("firefox: all steps passed"),
        "{text}\n(screenshots in {}; agent log:\n{})",
        shots.display(),
        a.log()
    );
}
