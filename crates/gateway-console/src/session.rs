//! Console sessions: a token typed into the sign-in form is exchanged for
//! a random session id in an `HttpOnly`, `SameSite=Strict` cookie, so the
//! token itself never stays in the browser. Sessions live in memory (a
//! restart signs everyone out), expire after [`SESSION_TTL`], and are
//! capped at [`MAX_SESSIONS`] (the oldest goes first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use rand::RngCore as _;

use crate::role::Access;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 1024;

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// What it may do.
    pub access: Access,
    /// The token state-changing calls must echo in `X-CSRF-Token`.
    pub csrf: String,
    expires: Instant,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_TTL)
    }
}

impl Sessions {
    /// An empty table whose sessions last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a new session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session: returns its id (the cookie value) and CSRF token.
    pub fn create(&self, access: Access) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                access,
                csrf: csrf.clone(),
                expires: now + self.ttl,
            },
        );
        (id, csrf)
    }

    /// The session with this id, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock();
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.map.lock().remove(id);
    }
}

/// 256 random bits, URL-safe.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `Set-Cookie` value starting a session. `secure` adds `Secure`
/// (the admin address is reached over TLS).
pub fn start_cookie(id: &str, ttl: Duration, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value ending a session.
pub fn end_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(Duration::from_millis(30));
        let (id, csrf) = s.create(Access::Viewer);
        assert_ne!(id, csrf);
        assert_eq!(s.get(&id).unwrap().access, Access::Viewer);
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::from_secs(60));
        let (id, _) = s.create(Access::Admin);
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn the_table_is_capped() {
        let s = Sessions::new(Duration::from_secs(60));
        let first = s.create(Access::Admin).0;
        for _ in 0..MAX_SESSIONS {
            s.create(Access::Admin);
        }
        assert!(s.get(&first).is_none());
        assert_eq!(s.map.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_carry_the_protections() {
        let c = start_cookie("abc", Duration::from_secs(60), true);
        assert_eq!(
            c,
            "gatehouse_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!start_cookie("abc", Duration::from_secs(60), false).contains("Secure"));
        assert!(end_cookie(false).contains("Max-Age=0"));
    }
}
