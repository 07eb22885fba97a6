//! Random identifiers and secrets from the OS's entropy source (ring's `SystemRandom`).

use ring::rand::SecureRandom;

/// `bytes` random bytes in hex, for an identifier (a node id). Without an entropy source
/// (`SystemRandom` fails only when the OS has none) it falls back to the clock: an
/// identifier must still be made, and it is not a secret.
pub fn random_hex(bytes: usize) -> String {
    secret_hex(bytes).unwrap_or_else(|_| {
        let t = crate::clock::now_ms().to_le_bytes();
        hex::encode(
            (0..bytes)
                .map(|i| t[i % t.len()] ^ (i as u8))
                .collect::<Vec<u8>>(),
        )
    })
}

/// `bytes` random bytes in hex, for a secret (the API token): never a guessable fallback.
pub fn secret_hex(bytes: usize) -> Result<String, std::io::Error> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| std::io::Error::other("the OS has no source of randomness for a secret"))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_secrets_are_hex_of_the_length_asked_and_differ() {
        let (a, b) = (super::random_hex(8), super::random_hex(8));
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        let s = super::secret_hex(32).expect("entropy");
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
