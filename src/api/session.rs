//! Browser sessions for the web console: a person signs in with an API token once and the
//! browser then carries an opaque session cookie (`HttpOnly`, `SameSite=Strict`), so the
//! token is never kept by page scripts.
//!
//! Invariants: a session id is 32 random bytes, kept here only as its SHA-256 (a copy of
//! this table gives no session away); sessions end after [`IDLE`] without a request, on
//! sign-out, and at agent restart; at most [`MAX_SESSIONS`] live at once (the least recently
//! used goes). A state change made with a session (anything but GET/HEAD) must carry an
//! `Origin` equal to the address it was sent to, so another site cannot make a browser
//! change anything; nothing changes state through a GET. Sign-in failures are rate-limited.

use std::collections::HashMap;
use std::sync::Mutex;

pub const COOKIE: &str = "berth_session";
/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
pub const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins allowed per minute (then refused until the minute is over).
pub const FAILURES_PER_MINUTE: u32 = 10;

/// A named access token: (name, role).
pub type Who = (String, String);
/// A session: when it was last used, and who signed in.
type Live = (i64, Option<Who>);

#[derive(Default)]
pub struct Sessions {
    /// Last use, and the named access token it was signed in with (None: the API token).
    live: Mutex<HashMap<[u8; 32], Live>>,
    /// (minute, failures in it).
    failures: Mutex<(i64, u32)>,
}

fn digest(id: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Sessions {
    /// A new session; returns its id (the cookie's value).
    pub fn create(&self, now_ms: i64) -> Result<String, String> {
        self.create_as(now_ms, None)
    }

    /// A new session signed in with a named access token (name, role).
    pub fn create_as(&self, now_ms: i64, who: Option<(String, String)>) -> Result<String, String> {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| "the OS has no source of randomness".to_string())?;
        let id = hex::encode(b);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, (seen, _)| now_ms - *seen < IDLE_MS);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.0).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(digest(&id), (now_ms, who));
        Ok(id)
    }

    /// Whether `id` is a live session (and marks it used now).
    pub fn check(&self, id: &str, now_ms: i64) -> bool {
        let key = digest(id);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get_mut(&key) {
            Some((seen, _)) if now_ms - *seen < IDLE_MS => {
                *seen = now_ms;
                true
            }
            Some(_) => {
                live.remove(&key);
                false
            }
            None => false,
        }
    }

    /// The named access token a live session was signed in with (None: the API token).
    pub fn who(&self, id: &str) -> Option<(String, String)> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest(id))
            .and_then(|(_, w)| w.clone())
    }

    pub fn remove(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id));
    }

    /// Counts a failed sign-in; false when this minute's allowance is used up.
    pub fn failed(&self, now_ms: i64) -> bool {
        let minute = now_ms / 60_000;
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.0 != minute {
            *f = (minute, 0);
        }
        f.1 = f.1.saturating_add(1);
        f.1 <= FAILURES_PER_MINUTE
    }

    /// Whether sign-ins are refused for the rest of this minute.
    pub fn locked(&self, now_ms: i64) -> bool {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.0 == now_ms / 60_000 && f.1 >= FAILURES_PER_MINUTE
    }
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the request's `Origin` is the address it was sent to (`Host`): a browser sets
/// `Origin` on every POST/DELETE and a page of another site cannot forge it.
pub fn same_origin(headers: &hyper::HeaderMap) -> bool {
    let get = |h: hyper::header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (get(hyper::header::ORIGIN), get(hyper::header::HOST)) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

/// The `Set-Cookie` value of a new session (`Secure` when the console was reached over
/// TLS, as a proxy in front says with `X-Forwarded-Proto: https`).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        IDLE_MS / 1000 * 48,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                hyper::header::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_session_lives_while_used_and_ends_idle_or_removed() {
        let s = Sessions::default();
        let id = s.create(0).unwrap();
        assert!(s.check(&id, 1_000));
        assert!(s.check(&id, IDLE_MS), "used at 1 s: alive until 1 s + idle");
        assert!(!s.check(&id, 2 * IDLE_MS + 1), "idle too long");
        let id = s.create(0).unwrap();
        s.remove(&id);
        assert!(!s.check(&id, 1));
        assert!(!s.check(&"0".repeat(64), 1), "a guessed id is no session");
    }

    #[test]
    fn the_table_is_bounded_and_the_least_recently_used_goes() {
        let s = Sessions::default();
        let first = s.create(0).unwrap();
        for i in 1..=MAX_SESSIONS as i64 {
            s.create(i).unwrap();
        }
        assert!(!s.check(&first, MAX_SESSIONS as i64 + 1));
        assert_eq!(s.live.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_read_only_in_its_own_shape() {
        let id = "ab".repeat(32);
        assert_eq!(
            cookie(&headers(&[("cookie", &format!("x=1; {COOKIE}={id}; y=2"))])),
            Some(id)
        );
        assert_eq!(
            cookie(&headers(&[("cookie", &format!("{COOKIE}=../../x"))])),
            None
        );
        assert_eq!(cookie(&headers(&[])), None);
    }

    #[test]
    fn a_change_needs_the_origin_it_was_sent_to() {
        let ok = headers(&[
            ("origin", "http://127.0.0.1:7878"),
            ("host", "127.0.0.1:7878"),
        ]);
        assert!(same_origin(&ok));
        for bad in [
            headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:7878"),
            ]),
            headers(&[("origin", "null"), ("host", "127.0.0.1:7878")]),
            headers(&[("host", "127.0.0.1:7878")]),
            headers(&[
                ("origin", "http://127.0.0.1:7878.evil.example"),
                ("host", "127.0.0.1:7878"),
            ]),
        ] {
            assert!(!same_origin(&bad), "{bad:?}");
        }
    }

    #[test]
    fn sign_in_failures_are_limited_per_minute() {
        let s = Sessions::default();
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(s.failed(1_000));
        }
        assert!(s.locked(2_000));
        assert!(!s.failed(3_000));
        assert!(!s.locked(61_000), "a new minute");
    }

    #[test]
    fn the_cookie_is_httponly_strict_and_secure_behind_tls() {
        let c = set_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!set_cookie("abc", false).contains("Secure"));
    }
}
