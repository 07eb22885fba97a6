//! Stamps the binary with its git commit and build date for `berth version`, and embeds the
//! web console (`web-ui/`): each file gzipped here, with an ETag from its content, listed in
//! `$OUT_DIR/web_ui.rs` for `api::ui`.
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
    embed_web_ui();
}

/// FNV-1a, 64 bits: an ETag only needs to change when the content does.
fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name == "node_modules" || name == "tests" {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn embed_web_ui() {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-ui");
    println!("cargo:rerun-if-changed=web-ui");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        let Ok(raw) = std::fs::read(&f) else { continue };
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(&f)
            .to_string_lossy()
            .replace('\\', "/");
        let gz_path = out_dir.join(format!("web-ui-{}.gz", rel.replace('/', "_")));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gz = enc
            .write_all(&raw)
            .and_then(|_| enc.finish())
            .unwrap_or_default();
        if std::fs::write(&gz_path, &gz).is_err() {
            continue;
        }
        table.push_str(&format!(
            "    Asset {{ path: {:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", raw: include_bytes!({:?}), gzip: include_bytes!({:?}) }},\n",
            rel,
            content_type(&rel),
            fnv(&raw),
            f.display().to_string(),
            gz_path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let _ = std::fs::write(out_dir.join("web_ui.rs"), table);
}
