//! Registry authentication: `WWW-Authenticate` challenges, Basic, and the Bearer token flow
//! of the distribution token specification, with tokens reused for the scopes they cover.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::credentials::{Credentials, Secret};

/// What a registry asks for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="...",service="...",scope="..."`. Quoted values
/// may contain commas (scopes do), so this walks the string rather than splitting it.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm").cloned().filter(|r| !r.is_empty())?,
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned().filter(|s| !s.is_empty()),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// A `repository:NAME:ACTIONS` scope, as one (resource, action) pair per action.
pub(crate) fn scope_pairs(scope: &str) -> Vec<(String, String)> {
    scope
        .split(' ')
        .filter_map(|s| s.rsplit_once(':'))
        .flat_map(|(resource, actions)| {
            actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(move |a| (resource.to_string(), a.to_string()))
        })
        .collect()
}

/// `repository:NAME:pull` or `repository:NAME:pull,push`.
pub(crate) fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// The `Basic` Authorization value.
pub(crate) fn basic_header(creds: &Credentials) -> String {
    let raw = format!("{}:{}", creds.username(), creds.password());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

struct CachedToken {
    endpoint: String,
    covers: BTreeSet<(String, String)>,
    token: Secret,
    expires: Instant,
}

/// Bearer tokens obtained so far, reused for any request whose scopes they cover.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<Vec<CachedToken>>,
}

/// Tokens are renewed this long before they expire, so one never lapses mid-request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

impl TokenCache {
    /// A live token for `endpoint` covering every scope in `scopes`.
    pub(crate) fn find(&self, endpoint: &str, scopes: &[String]) -> Option<Secret> {
        let wanted: BTreeSet<_> = scopes.iter().flat_map(|s| scope_pairs(s)).collect();
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|t| t.expires > now + EXPIRY_MARGIN);
        tokens
            .iter()
            .find(|t| t.endpoint == endpoint && wanted.is_subset(&t.covers))
            .map(|t| t.token.clone())
    }

    /// Remembers a token granted for `scopes`.
    pub(crate) fn insert(
        &self,
        endpoint: &str,
        scopes: &[String],
        token: Secret,
        lifetime: Duration,
    ) {
        let covers = scopes.iter().flat_map(|s| scope_pairs(s)).collect();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.push(CachedToken {
            endpoint: endpoint.to_string(),
            covers,
            token,
            expires: Instant::now() + lifetime,
        });
    }

    /// Forgets a token the registry refused (it expired or was revoked).
    pub(crate) fn remove(&self, endpoint: &str, token: &Secret) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|t| !(t.endpoint == endpoint && t.token == *token));
    }
}

/// The token endpoint's answer (distribution token spec; `access_token` is the OAuth2 name).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long to use it (the spec's default lifetime is 60 seconds).
    pub(crate) fn into_parts(self) -> Option<(Secret, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let secs = self.expires_in.filter(|s| *s > 0).unwrap_or(60);
        Some((Secret::new(token), Duration::from_secs(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        // header | expected
        let cases = [
            ("Basic realm=\"Registry Realm\"", Some(Challenge::Basic)),
            (
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\"",
                Some(Challenge::Bearer {
                    realm: "https://auth.example/token".into(),
                    service: Some("registry.example".into()),
                    scope: Some("repository:a/b:pull,push".into()),
                }),
            ),
            (
                "bearer realm=http://127.0.0.1:1/t, service=\"s\"",
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:1/t".into(),
                    service: Some("s".into()),
                    scope: None,
                }),
            ),
            ("Bearer service=\"s\"", None),
            ("Negotiate", None),
        ];
        for (header, want) in cases {
            assert_eq!(parse_challenge(header), want, "{header}");
        }
    }

    #[test]
    fn tokens_cover_scopes() {
        let cache = TokenCache::default();
        cache.insert(
            "r",
            &[repository_scope("a", true), repository_scope("b", false)],
            Secret::new("t1"),
            Duration::from_secs(300),
        );
        assert!(cache.find("r", &[repository_scope("a", false)]).is_some());
        assert!(cache
            .find(
                "r",
                &[repository_scope("a", true), repository_scope("b", false)]
            )
            .is_some());
        assert!(cache.find("r", &[repository_scope("b", true)]).is_none());
        assert!(cache
            .find("other", &[repository_scope("a", false)])
            .is_none());
        cache.remove("r", &Secret::new("t1"));
        assert!(cache.find("r", &[repository_scope("a", false)]).is_none());
        // A token that expires within the margin is not handed out.
        cache.insert(
            "r",
            &[repository_scope("a", false)],
            Secret::new("t2"),
            Duration::from_secs(5),
        );
        assert!(cache.find("r", &[repository_scope("a", false)]).is_none());
    }
}
