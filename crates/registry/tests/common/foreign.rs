//! A second loopback HTTP server standing for a host other than the registry: object storage
//! that blob downloads are redirected to, and an upload service that upload `Location`s point
//! at. It records whether each request carried an `Authorization` header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;

use super::TestRegistry;

/// One request as the foreign host saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub authorization: Option<String>,
}

/// What the foreign host serves: the registry's storage directory (as object storage would)
/// and, for `/v2/` paths, the registry itself, reached with the registry's credentials (as an
/// upload service authorizes a request by the opaque state in its URL, never by the client's
/// registry credentials).
struct Backend {
    registry_port: u16,
    storage: PathBuf,
    authorization: Option<String>,
}

pub struct ForeignHost {
    pub port: u16,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    backend: Arc<OnceLock<Backend>>,
}

impl ForeignHost {
    /// Listens now (so its URL can go into the registry's config); serves once
    /// [`ForeignHost::serve`] names the registry.
    pub fn start() -> ForeignHost {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backend: Arc<OnceLock<Backend>> = Arc::new(OnceLock::new());
        let (s, b) = (seen.clone(), backend.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (s, b) = (s.clone(), b.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &s, &b);
                });
            }
        });
        ForeignHost {
            port,
            seen,
            backend,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Backs this host with `registry`: its storage for plain paths, the registry itself
    /// (with `user:password`, if given) for `/v2/` paths.
    pub fn serve(&self, registry: &TestRegistry, credentials: Option<(&str, &str)>) {
        let authorization = credentials.map(|(u, p)| {
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {pair}")
        });
        let set = self.backend.set(Backend {
            registry_port: registry.port,
            storage: registry.storage(),
            authorization,
        });
        assert!(set.is_ok(), "serve is called once");
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests so far had `method`.
    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|r| r.method == method).count()
    }
}

fn handle(
    client: TcpStream,
    seen: &Mutex<Vec<SeenRequest>>,
    backend: &OnceLock<Backend>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end().is_empty() {
            break;
        }
        headers.push(line);
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let authorization = headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    seen.lock().unwrap().push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        authorization,
    });
    let Some(backend) = backend.get() else {
        return respond(client, "503 Service Unavailable", &[], false);
    };
    if path.starts_with("/v2/") {
        forward(client, reader, &request_line, &headers, backend)
    } else {
        serve_file(client, &method, &backend.storage, &path)
    }
}

/// Passes the request to the registry with the backend's credentials instead of any the client
/// sent. The `Host` header stays, so the registry's next `Location` points here again.
fn forward(
    client: TcpStream,
    client_reader: BufReader<TcpStream>,
    request_line: &str,
    headers: &[String],
    backend: &Backend,
) -> std::io::Result<()> {
    let mut head = request_line.to_string();
    for h in headers {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "authorization" && name != "connection" {
            head.push_str(h);
        }
    }
    if let Some(a) = &backend.authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", backend.registry_port))?;
    server.write_all(head.as_bytes())?;
    let mut up = server.try_clone()?;
    let mut client_reader = client_reader;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut up);
    });
    let mut out = client;
    std::io::copy(&mut server, &mut out)?;
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

/// GET or HEAD of a file under the storage directory, as object storage answers a presigned
/// URL.
fn serve_file(client: TcpStream, method: &str, root: &Path, path: &str) -> std::io::Result<()> {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return respond(client, "400 Bad Request", &[], false);
    }
    let mut body = Vec::new();
    match std::fs::File::open(root.join(relative)) {
        Ok(mut f) if method == "GET" || method == "HEAD" => {
            f.read_to_end(&mut body)?;
        }
        Ok(_) => return respond(client, "405 Method Not Allowed", &[], false),
        Err(_) => return respond(client, "404 Not Found", &[], false),
    }
    respond(client, "200 OK", &body, method == "HEAD")
}

fn respond(mut out: TcpStream, status: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        out.write_all(body)?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}
