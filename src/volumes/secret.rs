//! Credentials sealed at rest: ChaCha20-Poly1305 (ring) with a 256-bit key kept in the data
//! dir (`volume-secrets.key`, mode 0600, made on first use). A stolen state database alone
//! does not give the keys away. Each sealed value is bound to its volume's name, so sealed
//! values cannot be swapped between volumes.

use super::VolumeError;
use crate::atomic_file::create as create_file_atomic;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

fn err(msg: impl Into<String>) -> VolumeError {
    VolumeError::Secret(msg.into())
}

impl Sealer {
    /// Loads the key from `path`, making it when there is none.
    pub fn open(path: &Path) -> Result<Sealer, VolumeError> {
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                rng.fill(&mut k)
                    .map_err(|_| err("the system gave no random bytes for the key"))?;
                match create_file_atomic(path, &k, 0o600) {
                    Ok(true) => k.to_vec(),
                    // Made by another process meanwhile: that one is the key.
                    Ok(false) => std::fs::read(path)
                        .map_err(|e| err(format!("cannot read the key {}: {e}", path.display())))?,
                    Err(e) => {
                        return Err(err(format!(
                            "cannot create the key {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            Err(e) => {
                return Err(err(format!("cannot read the key {}: {e}", path.display())));
            }
        };
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| {
            err(format!(
                "the key {} is damaged (not 32 bytes): restore it from a backup; sealed credentials cannot be read without it",
                path.display()
            ))
        })?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
            rng,
        })
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, volume: &str, plain: &[u8]) -> Result<Vec<u8>, VolumeError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| err("the system gave no random bytes"))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(volume.as_bytes()),
                &mut buf,
            )
            .map_err(|_| err("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn unseal(&self, volume: &str, sealed: &[u8]) -> Result<Vec<u8>, VolumeError> {
        if sealed.len() < NONCE_LEN {
            return Err(err(format!(
                "the sealed credentials of {volume:?} are cut short"
            )));
        }
        let (n, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| err("bad nonce"))?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(volume.as_bytes()), &mut buf)
            .map_err(|_| {
                err(format!(
                    "the credentials of volume {volume:?} do not open with this data dir's key (was volume-secrets.key replaced?): set them again with `berth volume rm` and `berth volume create`"
                ))
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_whole_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        assert!(create_file_atomic(&p, b"first", 0o600).expect("made"));
        assert!(!create_file_atomic(&p, b"second", 0o600).expect("exists"));
        assert_eq!(std::fs::read(&p).expect("read"), b"first");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }

    #[test]
    fn seals_opens_and_binds_to_the_volume() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k");
        let s = Sealer::open(&path).expect("new key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let sealed = s.seal("v", b"{\"secret_key\":\"xyz\"}").expect("seal");
        assert!(!sealed.windows(3).any(|w| w == b"xyz"));
        // The same key is loaded again.
        let again = Sealer::open(&path).expect("load");
        assert_eq!(
            again.unseal("v", &sealed).expect("open"),
            b"{\"secret_key\":\"xyz\"}"
        );
        assert!(again.unseal("w", &sealed).is_err(), "bound to its volume");
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(again.unseal("v", &bad).is_err());
        assert!(again.unseal("v", b"x").is_err());
        std::fs::write(&path, b"short").expect("write");
        assert!(Sealer::open(&path).is_err());
    }
}
