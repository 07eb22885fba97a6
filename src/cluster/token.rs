//! Join tokens and the join handshake's cryptography. Pure (time and randomness passed in).
//!
//! A token names the cluster, the key that signed it, a random token id, an expiry, a use
//! count and the members to join through; its last part is the HMAC-SHA256 of all that under
//! a key derived from the cluster secret ([`Purpose::Token`]). That HMAC is also the token's
//! secret: the joiner never sends it. It proves it holds the token with an HMAC over the
//! handshake under a key derived from it ([`Hello::proof`]), and the member, which can compute
//! the same HMAC from the public fields, seals its reply (the keyring) under another key
//! derived from it. Whoever saw the handshake on the wire but lacks the token can neither read
//! the reply nor forge a hello.

use super::keys::{Keyring, Purpose, derive};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

pub const PREFIX: &str = "berth1";

/// The public part of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub cluster: String,
    pub key_id: u32,
    /// 32 hex digits, random.
    pub id: String,
    /// Seconds since the epoch.
    pub expires: i64,
    /// How many hosts may join with it.
    pub uses: u32,
    pub members: Vec<SocketAddr>,
}

impl Claims {
    fn canonical(&self) -> Vec<u8> {
        let members: Vec<String> = self.members.iter().map(|m| m.to_string()).collect();
        format!(
            "{PREFIX}\n{}\n{:08x}\n{}\n{}\n{}\n{}",
            self.cluster,
            self.key_id,
            self.id,
            self.expires,
            self.uses,
            members.join(",")
        )
        .into_bytes()
    }

    /// The token's HMAC (its secret) under `ring`; `None` when the key is not held.
    fn mac(&self, ring: &Keyring) -> Option<[u8; 32]> {
        let k = ring.derive(self.key_id, Purpose::Token)?;
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), &self.canonical());
        tag.as_ref().try_into().ok()
    }
}

/// A token as the joiner holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub claims: Claims,
    secret: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?}, <secret>)", self.claims)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "this is not a berth join token ({0}): copy the whole line `berth cluster token create` printed"
    )]
    Malformed(String),
}

/// Why a member refuses a join (sent back to the joiner, which prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refused", content = "detail", rename_all = "snake_case")]
pub enum Refusal {
    #[error(
        "the token is not valid for this cluster (wrong or altered): make a new one with `berth cluster token create`"
    )]
    Wrong,
    #[error("the token expired at {0}: make a new one with `berth cluster token create`")]
    Expired(String),
    #[error("the token was used {0} time(s) already, all it allows: make a new one")]
    UsedUp(u32),
    #[error(
        "the token is for cluster {token}, and this member is in cluster {member}: use a token of the cluster you mean to join"
    )]
    Foreign { token: String, member: String },
    #[error(
        "the token was signed with a key this cluster has retired (rotate-key): make a new one"
    )]
    RetiredKey,
    #[error(
        "this member is in no cluster: run `berth cluster init` on it, or join through another member"
    )]
    NoCluster,
    #[error("the member cannot take the join now: {0}")]
    Member(String),
    #[error(
        "this host speaks cluster protocol {joiner} and the member {member}: hosts more than one release apart do not work together; upgrade the older one first"
    )]
    Protocol { joiner: u32, member: u32 },
}

impl Token {
    /// Makes a token on a member of the cluster `ring`.
    pub fn issue(
        ring: &Keyring,
        members: Vec<SocketAddr>,
        expires: i64,
        uses: u32,
        id: [u8; 16],
    ) -> Token {
        let claims = Claims {
            cluster: ring.cluster.clone(),
            key_id: ring.sealing_id(),
            id: hex::encode(id),
            expires,
            uses,
            members,
        };
        let secret = claims.mac(ring).unwrap_or_default();
        Token { claims, secret }
    }

    pub fn to_text(&self) -> String {
        let c = &self.claims;
        let members: Vec<String> = c.members.iter().map(|m| m.to_string()).collect();
        format!(
            "{PREFIX}-{}-{:08x}-{}-{}-{}-{}-{}",
            c.cluster,
            c.key_id,
            c.id,
            c.expires,
            c.uses,
            members.join(","),
            hex::encode(self.secret)
        )
    }

    /// Reads a token's text (whitespace around it ignored). Checks only its form: whether
    /// it is valid is for a member to say.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let bad = |what: &str| TokenError::Malformed(what.to_string());
        let text = text.trim();
        if text.len() > 4096 {
            return Err(bad("too long"));
        }
        let parts: Vec<&str> = text.split('-').collect();
        if parts.len() != 8 || parts[0] != PREFIX {
            return Err(bad(&format!(
                "it must start with `{PREFIX}-` and have 8 parts"
            )));
        }
        let hex_of = |s: &str, n: usize, what: &str| -> Result<Vec<u8>, TokenError> {
            match hex::decode(s) {
                Ok(b) if b.len() == n => Ok(b),
                _ => Err(bad(&format!("{what} must be {} hex digits", n * 2))),
            }
        };
        hex_of(parts[1], 16, "the cluster id")?;
        let key_id = u32::from_str_radix(parts[2], 16)
            .ok()
            .filter(|_| parts[2].len() == 8)
            .ok_or_else(|| bad("the key id must be 8 hex digits"))?;
        hex_of(parts[3], 16, "the token id")?;
        let expires = parts[4]
            .parse::<i64>()
            .map_err(|_| bad("the expiry is not a number"))?;
        let uses = parts[5]
            .parse::<u32>()
            .map_err(|_| bad("the use count is not a number"))?;
        let members = parts[6]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("a member address is not IP:PORT"))?;
        if members.is_empty() || members.len() > 16 {
            return Err(bad("it must name 1 to 16 members"));
        }
        let secret: [u8; 32] = hex_of(parts[7], 32, "the signature")?
            .try_into()
            .map_err(|_| bad("the signature"))?;
        Ok(Token {
            claims: Claims {
                cluster: parts[1].to_ascii_lowercase(),
                key_id,
                id: parts[3].to_ascii_lowercase(),
                expires,
                uses,
                members,
            },
            secret,
        })
    }

    /// The hello a joiner sends: the claims, a fresh nonce, who it is, and the proof.
    pub fn hello(
        &self,
        nonce: [u8; 32],
        node_id: &str,
        name: &str,
        advertise: SocketAddr,
    ) -> Hello {
        let mut h = Hello {
            claims: self.claims.clone(),
            nonce: hex::encode(nonce),
            node_id: node_id.to_string(),
            name: name.to_string(),
            advertise,
            proto: super::spoken(),
            proof: String::new(),
        };
        h.proof = hex::encode(proof(&self.secret, &h));
        h
    }

    /// Opens the member's sealed reply to `hello`.
    pub fn open_reply(&self, hello: &Hello, sealed: &[u8]) -> Option<Vec<u8>> {
        open_sealed(&reply_key(&self.secret, &self.claims), hello, sealed)
    }
}

/// What a joiner sends (in clear: nothing in it is secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub claims: Claims,
    /// 64 hex digits, fresh for each attempt.
    pub nonce: String,
    pub node_id: String,
    pub name: String,
    /// Where the members reach the joiner's gossip port.
    pub advertise: SocketAddr,
    pub proto: u32,
    /// HMAC-SHA256 of the hello under a key derived from the token's secret (hex).
    pub proof: String,
}

impl Hello {
    fn transcript(&self) -> Vec<u8> {
        let mut t = self.claims.canonical();
        t.extend_from_slice(
            format!(
                "\n{}\n{}\n{}\n{}\n{}",
                self.nonce, self.node_id, self.name, self.advertise, self.proto
            )
            .as_bytes(),
        );
        t
    }
}

fn proof(secret: &[u8; 32], hello: &Hello) -> [u8; 32] {
    let k = derive(
        secret,
        hello.claims.cluster.as_bytes(),
        b"berth join proof v1",
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), &hello.transcript());
    tag.as_ref().try_into().unwrap_or_default()
}

fn reply_key(secret: &[u8; 32], claims: &Claims) -> [u8; 32] {
    derive(secret, claims.cluster.as_bytes(), b"berth join reply v1")
}

/// The key a member seals its reply under, once [`check_hello`] accepted the hello.
pub struct ReplyKey([u8; 32]);

/// A member checks a hello against its keyring at `now` (seconds), and the uses the token
/// had so far (`used`). The use count is the caller's to record once the join is done.
pub fn check_hello(
    ring: &Keyring,
    hello: &Hello,
    now: i64,
    used: u32,
) -> Result<ReplyKey, Refusal> {
    let c = &hello.claims;
    if !super::compatible(hello.proto, super::spoken()) {
        return Err(Refusal::Protocol {
            joiner: hello.proto,
            member: super::spoken(),
        });
    }
    if c.cluster != ring.cluster {
        return Err(Refusal::Foreign {
            token: c.cluster.clone(),
            member: ring.cluster.clone(),
        });
    }
    let Some(secret) = c.mac(ring) else {
        return Err(Refusal::RetiredKey);
    };
    let want = derive(&secret, c.cluster.as_bytes(), b"berth join proof v1");
    let given = hex::decode(&hello.proof).map_err(|_| Refusal::Wrong)?;
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, &want),
        &hello.transcript(),
        &given,
    )
    .map_err(|_| Refusal::Wrong)?;
    // Expiry and uses are checked after the proof: who lacks the token learns nothing.
    if now >= c.expires {
        return Err(Refusal::Expired(crate::timefmt::rfc3339_secs(c.expires)));
    }
    if used >= c.uses {
        return Err(Refusal::UsedUp(used));
    }
    Ok(ReplyKey(reply_key(&secret, c)))
}

impl ReplyKey {
    /// Seals the reply `body` for `hello` (its nonce is in the associated data).
    pub fn seal(&self, hello: &Hello, nonce: [u8; NONCE_LEN], body: &[u8]) -> Vec<u8> {
        let Ok(k) = UnboundKey::new(&CHACHA20_POLY1305, &self.0) else {
            return Vec::new();
        };
        let mut buf = body.to_vec();
        if LessSafeKey::new(k)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(hello.nonce.as_bytes()),
                &mut buf,
            )
            .is_err()
        {
            return Vec::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }
}

fn open_sealed(key: &[u8; 32], hello: &Hello, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).ok()?);
    let mut buf = rest.to_vec();
    let plain = k
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(hello.nonce.as_bytes()),
            &mut buf,
        )
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Keyring, Token) {
        let ring = Keyring::create(1).unwrap();
        let t = Token::issue(
            &ring,
            vec![
                "10.0.0.1:7946".parse().unwrap(),
                "[fd00::2]:7946".parse().unwrap(),
            ],
            1_000,
            1,
            [9; 16],
        );
        (ring, t)
    }

    #[test]
    fn a_token_round_trips_as_text_and_a_good_hello_is_accepted() {
        let (ring, t) = setup();
        let text = t.to_text();
        assert!(text.starts_with("berth1-"), "{text}");
        let back = Token::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back, t);
        let h = back.hello([1; 32], "n2", "host2", "10.0.0.2:7946".parse().unwrap());
        let key = check_hello(&ring, &h, 999, 0).expect("accepted");
        let sealed = key.seal(&h, [4; 12], b"the keyring");
        assert_eq!(t.open_reply(&h, &sealed).unwrap(), b"the keyring");
        // The wire holds neither the token's secret nor the reply in clear.
        let wire = serde_json::to_string(&h).unwrap();
        assert!(!wire.contains(&hex::encode(t.secret)));
        assert!(!sealed.windows(11).any(|w| w == b"the keyring"));
        // Another hello (another nonce) cannot open this reply.
        let h2 = t.hello([2; 32], "n2", "host2", "10.0.0.2:7946".parse().unwrap());
        assert!(t.open_reply(&h2, &sealed).is_none());
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let (ring, t) = setup();
        let adv: SocketAddr = "10.0.0.2:7946".parse().unwrap();
        let now = 999;
        // Expired, used up.
        let h = t.hello([1; 32], "n2", "h", adv);
        assert!(matches!(
            check_hello(&ring, &h, 1_000, 0),
            Err(Refusal::Expired(_))
        ));
        assert_eq!(
            check_hello(&ring, &h, now, 1).err(),
            Some(Refusal::UsedUp(1))
        );
        // Altered claims (more uses, later expiry, another member list) break the proof.
        for alter in [
            |c: &mut Claims| c.uses = 100,
            |c: &mut Claims| c.expires = i64::MAX,
            |c: &mut Claims| c.members.clear(),
            |c: &mut Claims| c.id = "0".repeat(32),
        ] {
            let mut forged = t.clone();
            alter(&mut forged.claims);
            let h = forged.hello([1; 32], "n2", "h", adv);
            assert_eq!(check_hello(&ring, &h, now, 0).err(), Some(Refusal::Wrong));
        }
        // A hello changed in flight, a proof made without the secret.
        let mut h = t.hello([1; 32], "n2", "h", adv);
        h.advertise = "10.9.9.9:7946".parse().unwrap();
        assert_eq!(check_hello(&ring, &h, now, 0).err(), Some(Refusal::Wrong));
        let mut guess = t.clone();
        guess.secret = [0; 32];
        let h = guess.hello([1; 32], "n2", "h", adv);
        assert_eq!(check_hello(&ring, &h, now, 0).err(), Some(Refusal::Wrong));
        // Another cluster's token; a token of a retired key.
        let other = Keyring::create(1).unwrap();
        let h = t.hello([1; 32], "n2", "h", adv);
        assert!(matches!(
            check_hello(&other, &h, now, 0),
            Err(Refusal::Foreign { .. })
        ));
        let mut rotated = ring.clone();
        let k = rotated.add_key(2).unwrap();
        rotated.seal_with(k);
        rotated.retire_others();
        assert_eq!(
            check_hello(&rotated, &h, now, 0).err(),
            Some(Refusal::RetiredKey)
        );
        // A joiner two protocols away is refused before anything else is looked at; one
        // apart (either way) is welcome.
        for (p, ok) in [
            (crate::cluster::PROTOCOL + 2, false),
            (crate::cluster::PROTOCOL - 1, true),
        ] {
            let mut h = t.hello([1; 32], "n2", "h", adv);
            h.proto = p;
            h.proof = hex::encode(proof(&t.secret, &h));
            let got = check_hello(&ring, &h, now, 0);
            assert_eq!(got.is_ok(), ok, "protocol {p}");
            if !ok {
                assert!(
                    got.err()
                        .unwrap()
                        .to_string()
                        .contains("upgrade the older one")
                );
            }
        }
        // Refusals travel as JSON and say what to do.
        let j = serde_json::to_string(&Refusal::UsedUp(1)).unwrap();
        assert_eq!(
            serde_json::from_str::<Refusal>(&j).unwrap(),
            Refusal::UsedUp(1)
        );
        assert!(Refusal::Wrong.to_string().contains("token create"));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let (_, t) = setup();
        let text = t.to_text();
        for (bad, says) in [
            ("", "8 parts"),
            ("SWMTKN-1-abc-def", "8 parts"),
            (&text.replacen("berth1", "berth2", 1), "8 parts"),
            (&text[..text.len() - 2], "64 hex"),
            (&text.replace("10.0.0.1:7946", "host:7946"), "IP:PORT"),
            (&"x".repeat(5000), "too long"),
        ] {
            let e = Token::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
