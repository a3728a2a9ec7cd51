//! Debian's `docker-registry` on a loopback port: open, for the benchmarks and the pod test,
//! or behind a user name and password, for the documentation's examples to log in and push to
//! (the way crates/cli's tests start it). img speaks plain HTTP to loopback registries without
//! being told.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running registry; stopped on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    child: Child,
    log: PathBuf,
}

impl Registry {
    /// Starts a registry storing into `dir` that anyone on loopback may pull from and push to,
    /// on `port` or, when `None`, on a free port.
    pub fn open(dir: &Path, port: Option<u16>) -> Result<Registry> {
        Registry::spawn(dir, port, "")
    }

    /// Starts a registry storing into `dir` that accepts only `user`/`password` (HTTP Basic
    /// over an htpasswd file).
    pub fn start(dir: &Path, user: &str, password: &str) -> Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .context("cannot run htpasswd (apt-get install apache2-utils)")?;
        if !htpasswd.status.success() {
            bail!(
                "htpasswd failed: {}",
                String::from_utf8_lossy(&htpasswd.stderr)
            );
        }
        let htpasswd_path = dir.join("htpasswd");
        std::fs::write(&htpasswd_path, htpasswd.stdout)?;
        let auth = format!(
            "  secret: img-doctest\nauth:\n  htpasswd:\n    realm: img-doctest\n    path: {}\n",
            htpasswd_path.display()
        );
        Registry::spawn(dir, None, &auth)
    }

    /// Writes the configuration (`http_tail` continues its `http:` section) and starts the
    /// registry, then waits until it answers.
    fn spawn(dir: &Path, port: Option<u16>, http_tail: &str) -> Result<Registry> {
        let port = match port {
            Some(port) => port,
            None => TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .context("cannot pick a loopback port")?
                .port(),
        };
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{http_tail}",
            storage.display(),
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = dir.join("registry.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start docker-registry (apt-get install docker-registry)")?;
        let mut registry = Registry {
            host: format!("127.0.0.1:{port}"),
            child,
            log,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    /// Waits until `/v2/` answers (401 without credentials counts).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited with {status}: {}", self.log());
            }
            if let Ok(mut stream) = TcpStream::connect(&self.host) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("HTTP/")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "docker-registry did not answer /v2/ in time: {}",
            self.log()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
