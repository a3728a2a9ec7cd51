//! What `--add-host`, `--ulimit` and `--shm-size` give every RUN step, checked as buildx and
//! Docker check them. They become fields of each exec op, so, as in BuildKit, they are part
//! of the step's cache key.

use std::net::IpAddr;

use anyhow::{bail, Context};
use img_llb::{ExecOp, HostEntry, Ulimit};
use img_sandbox::ResourceLimit;

use crate::flags::BuildFlags;

/// The RUN steps' extra settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// `--add-host`, in order.
    pub extra_hosts: Vec<HostEntry>,
    /// `--ulimit`, in order.
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<u64>,
}

impl StepOptions {
    /// Checks the flags.
    pub fn from_flags(flags: &BuildFlags) -> anyhow::Result<StepOptions> {
        Ok(StepOptions {
            extra_hosts: flags
                .add_hosts
                .iter()
                .map(|h| parse_add_host(h))
                .collect::<anyhow::Result<_>>()?,
            ulimits: flags
                .ulimits
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<anyhow::Result<_>>()?,
            shm_size: flags.shm_size.as_deref().map(parse_shm_size).transpose()?,
        })
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self == &StepOptions::default()
    }

    /// Gives `exec` these settings.
    pub fn apply(&self, exec: &mut ExecOp) {
        exec.extra_hosts.extend(self.extra_hosts.iter().cloned());
        exec.ulimits.extend(self.ulimits.iter().cloned());
        if self.shm_size.is_some() {
            exec.shm_size = self.shm_size;
        }
    }
}

/// `--add-host HOST:IP` or `HOST=IP`, as buildx reads it (the first `=`, else the first `:`,
/// separates them, so `HOST:::1` is an IPv6 entry). `host-gateway` is the host itself: RUN
/// steps share the host's network, where that is loopback.
pub fn parse_add_host(spec: &str) -> anyhow::Result<HostEntry> {
    let (host, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .with_context(|| format!("invalid --add-host {spec:?}: give HOST:IP"))?;
    let host = host.trim();
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        bail!("invalid --add-host {spec:?}: the host name is empty or has spaces");
    }
    let ip = match ip.trim() {
        "host-gateway" => "127.0.0.1".to_owned(),
        ip => {
            // An IPv6 address may come in brackets, as Docker allows.
            let bare = ip.trim_start_matches('[').trim_end_matches(']');
            bare.parse::<IpAddr>()
                .with_context(|| {
                    format!("invalid --add-host {spec:?}: {ip:?} is not an IP address")
                })?
                .to_string()
        }
    };
    Ok(HostEntry {
        host: host.to_owned(),
        ip,
    })
}

/// `--ulimit NAME=SOFT[:HARD]` as Docker parses it (the hard limit defaults to the soft one;
/// `-1` or `unlimited` is no limit).
pub fn parse_ulimit(spec: &str) -> anyhow::Result<Ulimit> {
    let (name, values) = spec.split_once('=').with_context(|| {
        format!("invalid --ulimit {spec:?}: give NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    })?;
    if !ResourceLimit::NAMES.contains(&name) {
        bail!(
            "invalid --ulimit {spec:?}: unknown resource {name:?} (use {})",
            ResourceLimit::NAMES.join(", ")
        );
    }
    let value = |text: &str| -> anyhow::Result<u64> {
        match text.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            t => t
                .parse::<u64>()
                .with_context(|| format!("invalid --ulimit {spec:?}: {t:?} is not a number")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("invalid --ulimit {spec:?}: the soft limit must be at most the hard limit");
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

/// `--shm-size` as Docker reads memory sizes: bytes, or with a binary unit (`64m`, `1g`,
/// `512MiB`).
pub fn parse_shm_size(spec: &str) -> anyhow::Result<u64> {
    let bytes = super::super::prune::parse_size(spec)
        .with_context(|| format!("invalid --shm-size {spec:?}: give e.g. 64m or 1g"))?;
    if bytes == 0 {
        bail!("invalid --shm-size {spec:?}: give a size above zero, e.g. 64m");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_as_buildx_reads_it() {
        // spec | host | ip
        for (spec, host, ip) in [
            ("db:10.0.0.5", "db", "10.0.0.5"),
            ("db=10.0.0.5", "db", "10.0.0.5"),
            ("v6:::1", "v6", "::1"),
            ("v6=[2001:db8::1]", "v6", "2001:db8::1"),
            ("gw:host-gateway", "gw", "127.0.0.1"),
        ] {
            let entry = parse_add_host(spec).unwrap();
            assert_eq!(
                (entry.host.as_str(), entry.ip.as_str()),
                (host, ip),
                "{spec}"
            );
        }
        for (spec, want) in [
            ("db", "give HOST:IP"),
            (":10.0.0.5", "host name is empty"),
            ("db:10.0.0", "not an IP address"),
        ] {
            let err = format!("{:#}", parse_add_host(spec).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn ulimits_as_docker_parses_them() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=64").unwrap();
        assert_eq!((u.soft, u.hard), (64, 64));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        for (spec, want) in [
            ("nofile", "NAME=SOFT"),
            ("files=1", "unknown resource"),
            ("nofile=a:2", "not a number"),
            ("nofile=10:5", "at most the hard limit"),
        ] {
            let err = format!("{:#}", parse_ulimit(spec).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn shm_sizes_as_docker_reads_them() {
        assert_eq!(parse_shm_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_shm_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_shm_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_shm_size("4096").unwrap(), 4096);
        assert!(parse_shm_size("lots").is_err());
        assert!(parse_shm_size("0").is_err());
    }
}
