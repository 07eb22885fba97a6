//! The image of the containers that hold a service's name on an app network for its
//! instances on other members (`berth-hold`): one file, a 129-byte static program that
//! waits forever (`pause(2)` in a loop), so the holder needs no pull, no base image and no
//! shell. The agent binds the listeners in the holder's network namespace itself
//! (`agent/names.rs`); the holder's process only keeps that namespace alive.
//!
//! Pure: builds the `docker load` tarball (manifest, config, one layer) in memory.

/// The image's reference.
pub const IMAGE: &str = "berth-hold:1";

/// The program: an ELF64 header, one loadable segment, and `mov eax, 34 (pause); syscall;
/// jmp back`. Only x86_64 has one; elsewhere [`image_tar`] says so.
#[cfg(target_arch = "x86_64")]
fn program() -> Option<Vec<u8>> {
    const BASE: u64 = 0x40_0000;
    let code: [u8; 9] = [0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
    let total = (64 + 56 + code.len()) as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + 120).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&64u16.to_le_bytes());
    e.extend_from_slice(&56u16.to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes());
    e.extend_from_slice(&64u16.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    e.extend_from_slice(&code);
    Some(e)
}

#[cfg(not(target_arch = "x86_64"))]
fn program() -> Option<Vec<u8>> {
    None
}

/// One ustar entry (a regular file).
fn tar_entry(out: &mut Vec<u8>, name: &str, mode: u32, body: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, mode as u64);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, body.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    let pad = (512 - body.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn tar_end(out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(0u8, 1024));
}

/// The `docker load` tarball of [`IMAGE`], or why this build has none.
pub fn image_tar() -> Result<Vec<u8>, String> {
    let prog = program().ok_or_else(|| {
        format!(
            "service names across hosts need the holder program, which this build has only for x86_64 (this is {})",
            std::env::consts::ARCH
        )
    })?;
    let mut layer = Vec::new();
    tar_entry(&mut layer, "hold", 0o755, &prog);
    tar_end(&mut layer);
    let diff = hex::encode(ring::digest::digest(&ring::digest::SHA256, &layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/hold"],
            "Labels": {"berth.role": "hold"}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "berth"}]
    });
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_name = format!(
        "{}.json",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &config))
    );
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [IMAGE],
        "Layers": ["layer.tar"]
    }]))
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tar_entry(&mut out, "layer.tar", 0o644, &layer);
    tar_entry(&mut out, &config_name, 0o644, &config);
    tar_entry(&mut out, "manifest.json", 0o644, &manifest);
    tar_end(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_program_is_a_129_byte_elf_that_loops_on_pause() {
        let p = program().expect("x86_64");
        assert_eq!(p.len(), 129);
        assert_eq!(&p[..4], b"\x7fELF");
        // entry = base + 120, where the code starts
        assert_eq!(u64::from_le_bytes(p[24..32].try_into().unwrap()), 0x40_0078);
        assert_eq!(&p[120..], &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_tarball_has_a_manifest_naming_the_image_and_checksummed_headers() {
        let t = image_tar().expect("tar");
        assert_eq!(t.len() % 512, 0);
        // Each header's checksum is the sum of its bytes with the field as spaces.
        let mut at = 0;
        let mut names = Vec::new();
        while at + 512 <= t.len() && t[at] != 0 {
            let h = &t[at..at + 512];
            let name = String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_string();
            let size =
                usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
            let stored =
                u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
            let mut c = h.to_vec();
            c[148..156].copy_from_slice(b"        ");
            assert_eq!(stored, c.iter().map(|b| *b as u32).sum::<u32>(), "{name}");
            if name == "manifest.json" {
                let m: serde_json::Value =
                    serde_json::from_slice(&t[at + 512..at + 512 + size]).unwrap();
                assert_eq!(m[0]["RepoTags"][0], IMAGE);
            }
            names.push(name);
            at += 512 + size.div_ceil(512) * 512;
        }
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
