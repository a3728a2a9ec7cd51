//! HTTP to registries: endpoint discovery (HTTPS, or plain HTTP for insecure and loopback
//! registries), authentication on every request, and retries with backoff.
//!
//! Credentials and tokens go to the registry's own origin (scheme, host and port) only. A
//! registry may send a client elsewhere: an upload `Location` on another host, a blob download
//! redirected to object storage with a presigned URL. Those requests carry no `Authorization`
//! (the URL itself authorizes them), so a registry cannot hand its users' credentials to a
//! third party. Redirects are followed here, not by the HTTP client, to apply that rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::{Body, SendBody};
use url::Url;

use crate::auth::{basic_header, parse_challenge, Challenge, TokenCache, TokenResponse};
use crate::config::ClientConfig;
use crate::credentials::{Credentials, DockerConfig, Secret};
use crate::error::{Error, RegistryErrors, Result};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// Attempts per request (the first plus four retries).
const MAX_ATTEMPTS: u32 = 5;
/// How long the HTTPS attempt at an insecure registry may take before plain HTTP is tried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Error bodies and token responses are small; never read more than this of them.
const SMALL_BODY_LIMIT: u64 = 1 << 20;
/// Redirects followed for one request (as many as Go's HTTP client, which Docker uses).
const MAX_REDIRECTS: u32 = 10;

/// Delay before retry number `attempt` (1-based): 250 ms doubling, capped at 8 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(8))
}

/// Runs `f` until it succeeds, fails with a non-retryable error, or runs out of attempts.
pub(crate) fn with_retries<T>(
    mut f: impl FnMut() -> Result<T>,
    mut on_retry: impl FnMut(u32, Duration, &Error),
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                let delay = backoff(attempt);
                on_retry(attempt, delay, &e);
                std::thread::sleep(delay);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// [`with_retries`] for one blob transfer, announcing each retry as a progress event.
pub(crate) fn with_blob_retries<T>(
    digest: &oci_spec::image::Digest,
    progress: crate::progress::ProgressFn<'_>,
    f: impl FnMut() -> Result<T>,
) -> Result<T> {
    with_retries(f, |attempt, delay, e| {
        progress(&crate::progress::ProgressEvent::Retrying {
            digest: digest.clone(),
            attempt,
            delay,
            reason: e.to_string(),
        })
    })
}

/// One registry (or mirror) as reached over the network.
pub(crate) struct Endpoint {
    /// The name credentials are filed under (`docker.io`, `localhost:5000`, a mirror host).
    pub(crate) registry: String,
    /// `scheme://host[:port]`, without trailing slash.
    pub(crate) base: String,
    /// HTTPS without certificate verification (an insecure registry that speaks TLS).
    no_verify: bool,
    challenge: Mutex<Option<Challenge>>,
}

impl Endpoint {
    /// The URL of a path under `/v2/`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.base)
    }

    /// Whether `url` is on this registry's own origin (scheme, host and port), the only place
    /// its credentials may be sent.
    pub(crate) fn owns(&self, url: &str) -> bool {
        match (Url::parse(&self.base), Url::parse(url)) {
            (Ok(base), Ok(url)) => base.origin() == url.origin(),
            _ => false,
        }
    }
}

/// The Authorization header for one request, and the token in it (to drop it if refused).
struct Authorization {
    header: Option<String>,
    token: Option<Secret>,
}

/// Shared HTTP state of a client.
pub(crate) struct Transport {
    pub(crate) config: ClientConfig,
    agent: ureq::Agent,
    agent_no_verify: ureq::Agent,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    tokens: TokenCache,
    /// Held while fetching a token, so parallel transfers starting together share one
    /// token instead of each asking the realm.
    token_fetch: Mutex<()>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
}

impl Transport {
    pub(crate) fn new(config: ClientConfig) -> Self {
        let agent = |no_verify: bool| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(config.user_agent.as_str())
                // Blobs are verified byte for byte: never let the client decompress them.
                .accept_encoding("identity")
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(300)))
                // A stalled body read is a broken transfer: fail it so it can be resumed.
                .timeout_per_read(Some(Duration::from_secs(120)))
                .max_idle_connections_per_host(8)
                // Requests to registries follow redirects themselves (`send`); what the client
                // still follows (the token realm, the ping) never keeps `Authorization`.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .disable_verification(no_verify)
                        .build(),
                )
                .build()
                .new_agent()
        };
        Transport {
            agent: agent(false),
            agent_no_verify: agent(true),
            config,
            endpoints: Mutex::default(),
            tokens: TokenCache::default(),
            token_fetch: Mutex::new(()),
            credentials: Mutex::default(),
        }
    }

    /// Uses `creds` for `registry` instead of Docker's config (login checks them this way).
    pub(crate) fn set_credentials(&self, registry: &str, creds: Credentials) {
        lock(&self.credentials).insert(registry.to_string(), Some(creds));
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = lock(&self.credentials).get(registry) {
            return Ok(c.clone());
        }
        let found = match self.config.docker_config_dir() {
            Some(dir) => DockerConfig::load(&dir)?.lookup(registry)?,
            None => None,
        };
        lock(&self.credentials).insert(registry.to_string(), found.clone());
        Ok(found)
    }

    /// The endpoint of a registry named in a reference.
    pub(crate) fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>> {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            registry
        };
        self.connect(registry, host, None)
    }

    /// The endpoint of a mirror given as `host[:port]` or `scheme://host[:port]`.
    pub(crate) fn mirror_endpoint(&self, mirror: &str) -> Result<Arc<Endpoint>> {
        let (scheme, rest) = match mirror.split_once("://") {
            Some((s, r)) => (Some(s), r),
            None => (None, mirror),
        };
        let host = rest.trim_end_matches('/');
        self.connect(host, host, scheme)
    }

    /// Finds how to talk to `host` by pinging `/v2/`, as Docker does: HTTPS, and for insecure
    /// registries HTTPS without verification then plain HTTP. The ping also yields the
    /// authentication challenge.
    fn connect(&self, registry: &str, host: &str, scheme: Option<&str>) -> Result<Arc<Endpoint>> {
        let key = format!("{}|{host}", scheme.unwrap_or(""));
        if let Some(ep) = lock(&self.endpoints).get(&key) {
            return Ok(ep.clone());
        }
        let candidates: &[(&str, bool)] = match scheme {
            Some("http") => &[("http", false)],
            Some(_) => &[("https", false)],
            None if self.config.is_insecure(registry) || self.config.is_insecure(host) => {
                &[("https", true), ("http", false)]
            }
            None => &[("https", false)],
        };
        let mut last_err = None;
        for (i, (scheme, no_verify)) in candidates.iter().enumerate() {
            let ep = Endpoint {
                registry: registry.to_string(),
                base: format!("{scheme}://{host}"),
                no_verify: *no_verify,
                challenge: Mutex::new(None),
            };
            let last = i + 1 == candidates.len();
            let ping = || self.ping(&ep, !last);
            let result = if last {
                with_retries(ping, |_, _, _| {})
            } else {
                ping()
            };
            match result {
                Ok(challenge) => {
                    *lock(&ep.challenge) = challenge;
                    let ep = Arc::new(ep);
                    lock(&self.endpoints).insert(key, ep.clone());
                    return Ok(ep);
                }
                Err(e @ Error::Transport { .. }) if !last => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one candidate scheme"))
    }

    /// `probe`: a TLS attempt at a registry that may speak plain HTTP, bounded in time since
    /// such a server may wait for a request line that never comes.
    fn ping(&self, ep: &Endpoint, probe: bool) -> Result<Option<Challenge>> {
        let url = ep.url("");
        let mut req = build(http::Method::GET, &url, &[], None, SendBody::none())?;
        if probe {
            req = self
                .agent(ep)
                .configure_request(req)
                .timeout_global(Some(PROBE_TIMEOUT))
                .build();
        }
        let mut resp = self.execute(ep, req)?;
        match resp.status().as_u16() {
            200..=299 => Ok(None),
            401 => challenge_of(&url, &resp).map(Some),
            _ => Err(status_error(ep, "GET", &url, &mut resp)),
        }
    }

    fn agent(&self, ep: &Endpoint) -> &ureq::Agent {
        if ep.no_verify {
            &self.agent_no_verify
        } else {
            &self.agent
        }
    }

    /// Sends one request to `url` and any redirects after it (GET and HEAD only, which HTTP
    /// lets a client repeat elsewhere), with `authorization` only where `ep` owns the URL.
    /// Returns the last response and the URL that gave it.
    fn send(
        &self,
        ep: &Endpoint,
        method: &http::Method,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<(Response<Body>, String)> {
        let follows = matches!(*method, http::Method::GET | http::Method::HEAD);
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let auth = authorization.filter(|_| ep.owns(&url));
            let req = build(method.clone(), &url, headers, auth, SendBody::none())?;
            let req = self
                .agent(ep)
                .configure_request(req)
                .max_redirects(0)
                .build();
            let resp = self.execute(ep, req)?;
            if !follows || !is_redirect(resp.status().as_u16()) {
                return Ok((resp, url));
            }
            url = location(&url, &resp)?.to_string();
        }
        Err(Error::TooManyRedirects {
            url: strip_query(&url),
            limit: MAX_REDIRECTS,
        })
    }

    /// Sends one request as is.
    fn execute(&self, ep: &Endpoint, req: http::Request<SendBody<'_>>) -> Result<Response<Body>> {
        let url = req.uri().to_string();
        self.agent(ep).run(req).map_err(|source| Error::Transport {
            url: strip_query(&url),
            source,
        })
    }

    fn authorization(&self, ep: &Endpoint, scopes: &[String]) -> Result<Authorization> {
        let challenge = lock(&ep.challenge).clone();
        match challenge {
            None => Ok(Authorization {
                header: None,
                token: None,
            }),
            Some(Challenge::Basic) => Ok(Authorization {
                header: self.credentials(&ep.registry)?.map(|c| basic_header(&c)),
                token: None,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = match self.tokens.find(&ep.base, scopes) {
                    Some(t) => t,
                    None => {
                        let _fetching = lock(&self.token_fetch);
                        match self.tokens.find(&ep.base, scopes) {
                            Some(t) => t,
                            None => self.fetch_token(ep, &realm, service.as_deref(), scopes)?,
                        }
                    }
                };
                Ok(Authorization {
                    header: Some(format!("Bearer {}", token.expose())),
                    token: Some(token),
                })
            }
        }
    }

    /// The token flow: GET the realm with Basic credentials (or POST an OAuth2 refresh token
    /// when Docker stored an identity token). A 401/403 from the realm means bad credentials.
    fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Secret> {
        let creds = self.credentials(&ep.registry)?;
        let url = Url::parse(realm).map_err(|_| Error::AuthProtocol {
            url: ep.base.clone(),
            problem: "the Bearer realm is not a URL",
        })?;
        let realm_shown = strip_query(realm);
        let (token, lifetime) = with_retries(
            || {
                let req = match creds.as_ref().and_then(|c| c.identity_token()) {
                    Some(refresh) => {
                        let mut form = url::form_urlencoded::Serializer::new(String::new());
                        form.append_pair("grant_type", "refresh_token")
                            .append_pair("refresh_token", refresh)
                            .append_pair("client_id", "img");
                        if let Some(s) = service {
                            form.append_pair("service", s);
                        }
                        if !scopes.is_empty() {
                            form.append_pair("scope", &scopes.join(" "));
                        }
                        let body = form.finish();
                        build(
                            http::Method::POST,
                            url.as_str(),
                            &[("Content-Type", "application/x-www-form-urlencoded")],
                            None,
                            SendBody::from_owned_reader(std::io::Cursor::new(body.into_bytes())),
                        )?
                    }
                    None => {
                        let mut u = url.clone();
                        {
                            let mut q = u.query_pairs_mut();
                            if let Some(s) = service {
                                q.append_pair("service", s);
                            }
                            for s in scopes {
                                q.append_pair("scope", s);
                            }
                            if let Some(c) = &creds {
                                q.append_pair("account", c.username());
                            }
                        }
                        let auth = creds.as_ref().map(basic_header);
                        build(
                            http::Method::GET,
                            u.as_str(),
                            &[],
                            auth.as_deref(),
                            SendBody::none(),
                        )?
                    }
                };
                let mut resp = self.execute(ep, req)?;
                let status = resp.status().as_u16();
                match status {
                    200..=299 => {
                        let body = read_small(&realm_shown, &mut resp)?;
                        serde_json::from_slice::<TokenResponse>(&body)
                            .ok()
                            .and_then(TokenResponse::into_parts)
                            .ok_or_else(|| Error::AuthProtocol {
                                url: realm_shown.clone(),
                                problem: "the token response has no token",
                            })
                    }
                    401 | 403 => Err(Error::Unauthorized {
                        registry: ep.registry.clone(),
                        url: realm_shown.clone(),
                        status,
                        errors: errors_of(&mut resp),
                    }),
                    _ => Err(status_error(ep, "GET", &realm_shown, &mut resp)),
                }
            },
            |_, _, _| {},
        )?;
        self.tokens
            .insert(&ep.base, scopes, token.clone(), lifetime);
        Ok(token)
    }

    /// Checks that the credentials for `ep` are accepted: a token for no particular scope
    /// (Docker's login does the same), then `/v2/` with it.
    pub(crate) fn check_login(&self, ep: &Endpoint) -> Result<()> {
        let mut resp = self.request(ep, &[], http::Method::GET, &ep.url(""), &[])?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(status_error(ep, "GET", &ep.url(""), &mut resp)),
        }
    }

    /// A request without body, authenticated, retried on connection errors and 5xx, and
    /// re-authenticated once on 401 (the token expired or needs another scope). Returns any
    /// other status for the caller to judge.
    pub(crate) fn request(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Body>> {
        // POST/PUT/PATCH without content still declare an empty body.
        let mut all_headers = headers.to_vec();
        if matches!(
            method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ) {
            all_headers.push(("Content-Length", "0"));
        }
        let headers = all_headers.as_slice();
        let shown = method_name(&method);
        with_retries(
            || {
                let auth = self.authorization(ep, scopes)?;
                let (resp, at) = self.send(ep, &method, url, headers, auth.header.as_deref())?;
                // A 401 from another host (expired object-storage URL) is no challenge of the
                // registry's: it is reported as it is.
                if resp.status().as_u16() != 401 || !ep.owns(&at) {
                    return server_error_as_err(ep, shown, &at, resp);
                }
                // Learn the challenge (the ping may have said nothing, or it changed), drop the
                // refused token and try once more with fresh authorization.
                let challenge = challenge_of(&at, &resp)?;
                let mut scopes = scopes.to_vec();
                if let Challenge::Bearer { scope: Some(s), .. } = &challenge {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
                *lock(&ep.challenge) = Some(challenge);
                if let Some(t) = &auth.token {
                    self.tokens.remove(&ep.base, t);
                }
                let auth = self.authorization(ep, &scopes)?;
                let (mut resp, at) =
                    self.send(ep, &method, url, headers, auth.header.as_deref())?;
                if resp.status().as_u16() == 401 {
                    return Err(status_error(ep, shown, &at, &mut resp));
                }
                server_error_as_err(ep, shown, &at, resp)
            },
            |_, _, _| {},
        )
    }

    /// A request with a body, sent once with current authorization (the caller restarts the
    /// whole operation on failure, since a streamed body cannot be replayed). Not redirected;
    /// `url` may be on another host (an upload `Location`), which then gets no credentials.
    pub(crate) fn request_with_body(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: SendBody<'_>,
    ) -> Result<Response<Body>> {
        let own = ep.owns(url);
        let auth = if own {
            self.authorization(ep, scopes)?
        } else {
            Authorization {
                header: None,
                token: None,
            }
        };
        let req = build(method.clone(), url, headers, auth.header.as_deref(), body)?;
        let req = self
            .agent(ep)
            .configure_request(req)
            .max_redirects(0)
            .build();
        let mut resp = self.execute(ep, req)?;
        if resp.status().as_u16() == 401 && own {
            if let Some(t) = &auth.token {
                self.tokens.remove(&ep.base, t);
            }
            return Err(status_error(ep, method_name(&method), url, &mut resp));
        }
        server_error_as_err(ep, method_name(&method), url, resp)
    }
}

/// The method's name with a static lifetime, for error values.
fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        _ => "request",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn build<'a>(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    authorization: Option<&str>,
    body: SendBody<'a>,
) -> Result<http::Request<SendBody<'a>>> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if let Some(a) = authorization {
        b = b.header("Authorization", a);
    }
    b.body(body).map_err(|e| Error::Transport {
        url: strip_query(url),
        source: ureq::Error::Http(e),
    })
}

fn challenge_of(url: &str, resp: &Response<Body>) -> Result<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
        .ok_or_else(|| Error::AuthProtocol {
            url: strip_query(url),
            problem: "401 without a usable WWW-Authenticate challenge (Basic or Bearer)",
        })
}

fn server_error_as_err(
    ep: &Endpoint,
    method: &'static str,
    url: &str,
    mut resp: Response<Body>,
) -> Result<Response<Body>> {
    if resp.status().is_server_error() {
        return Err(status_error(ep, method, url, &mut resp));
    }
    Ok(resp)
}

/// The error for an unexpected status: 401/403 are authentication failures, others plain.
pub(crate) fn status_error(
    ep: &Endpoint,
    method: &'static str,
    url: &str,
    resp: &mut Response<Body>,
) -> Error {
    let status = resp.status().as_u16();
    let errors = errors_of(resp);
    let url = strip_query(url);
    match status {
        401 | 403 => Error::Unauthorized {
            registry: ep.registry.clone(),
            url,
            status,
            errors,
        },
        _ => Error::Status {
            method,
            url,
            status,
            errors,
        },
    }
}

pub(crate) fn errors_of(resp: &mut Response<Body>) -> RegistryErrors {
    let body = resp
        .body_mut()
        .with_config()
        .limit(SMALL_BODY_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    RegistryErrors::from_body(&body)
}

/// Reads a small body (JSON answers, manifests) with a size cap.
pub(crate) fn read_limited(url: &str, resp: &mut Response<Body>, limit: u64) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|source| Error::Transport {
            url: strip_query(url),
            source,
        })
}

fn read_small(url: &str, resp: &mut Response<Body>) -> Result<Vec<u8>> {
    read_limited(url, resp, SMALL_BODY_LIMIT)
}

/// Upload URLs carry opaque state in their query; errors show the path only.
pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// A header's value as text.
pub(crate) fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether a status sends the client elsewhere with a `Location`.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The `Location` of a response to `url` (an upload session, a redirect), resolved against
/// `url` since it is often relative; it may name another host.
pub(crate) fn location(url: &str, resp: &Response<Body>) -> Result<Url> {
    let missing = || Error::MissingHeader {
        url: strip_query(url),
        header: "Location",
    };
    let value = header(resp, "location").ok_or_else(missing)?;
    Url::parse(url)
        .and_then(|base| base.join(value))
        .map_err(|_| missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let delays: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn retries_only_retryable_errors() {
        let mut calls = 0;
        let r: Result<()> = with_retries(
            || {
                calls += 1;
                Err(Error::Status {
                    method: "GET",
                    url: "u".into(),
                    status: 404,
                    errors: RegistryErrors::default(),
                })
            },
            |_, _, _| {},
        );
        assert!(r.is_err());
        assert_eq!(calls, 1, "4xx is never retried");
    }

    #[test]
    fn credentials_stay_on_the_registry_origin() {
        let ep = Endpoint {
            registry: "reg.lan:5000".into(),
            base: "https://reg.lan:5000".into(),
            no_verify: false,
            challenge: Mutex::new(None),
        };
        // url | the registry's own
        for (url, own) in [
            ("https://reg.lan:5000/v2/a/blobs/uploads/u?_state=x", true),
            ("HTTPS://REG.LAN:5000/v2/", true),
            ("http://reg.lan:5000/v2/", false),
            ("https://reg.lan:5001/v2/", false),
            ("https://reg.lan/v2/", false),
            ("https://storage.lan/bucket/blob?X-Amz-Signature=s", false),
            ("https://reg.lan.evil:5000/v2/", false),
            ("not a url", false),
        ] {
            assert_eq!(ep.owns(url), own, "{url}");
        }
        let default_port = Endpoint {
            base: "https://reg.lan".into(),
            ..ep
        };
        assert!(default_port.owns("https://reg.lan:443/v2/"));
    }

    #[test]
    fn query_is_not_shown() {
        assert_eq!(
            strip_query("http://h/v2/x/blobs/uploads/u?_state=abc"),
            "http://h/v2/x/blobs/uploads/u"
        );
    }
}
