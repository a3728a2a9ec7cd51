//! Debian's `docker-registry` on a loopback port, behind a user name and password, for the
//! documentation's examples to log in and push to (the way crates/cli's tests start it).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running registry; stopped on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Registry {
    /// Starts a registry storing into `dir` that accepts only `user`/`password` (HTTP Basic
    /// over an htpasswd file).
    pub fn start(dir: &Path, user: &str, password: &str) -> Result<Registry> {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .context("cannot pick a loopback port")?
            .port();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
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
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: img-doctest\nauth:\n  htpasswd:\n    realm: img-doctest\n    path: {}\n",
            storage.display(),
            htpasswd_path.display()
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
