//! `img build`'s flags checked into [`BuildConfig`]: names, outputs, secrets, SSH agents,
//! network, entitlements, compression. Nothing here touches the store or the network.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use img_snapshot::Compression;
use img_worker::{SecretSource, SecretStore};

use super::annotations::Annotations;
use super::attest_spec::AttestOptions;
use super::output::{image_options, parse_output, OutputSpec};
use super::step_options::StepOptions;
use crate::context::ContextSpec;
use crate::flags::BuildFlags;
use crate::graph::{check_key, GraphOptions};
use crate::image::stored_name;
use img_worker::MediaTypes;

/// Why `type=docker` cannot take a multi-platform build.
pub const DOCKER_MULTI_PLATFORM: &str = "type=docker cannot hold a multi-platform image (a docker archive has no index): use type=oci, type=image or --push, or build one --platform";

/// The network RUN steps get when they do not ask for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultNetwork {
    /// The builder's default (the host's network, as RUN steps have no network namespace).
    Default,
    /// Only loopback.
    None,
    /// The host's network.
    Host,
}

/// Entitlements granted with `--allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `security.insecure`: `RUN --security=insecure` may run.
    pub security_insecure: bool,
    /// `network.host`.
    pub network_host: bool,
}

/// The checked configuration of one `img build`.
#[derive(Debug)]
pub struct BuildConfig {
    /// Where the context comes from.
    pub context: ContextSpec,
    /// The Dockerfile (`-f`).
    pub file: Option<PathBuf>,
    /// What shapes the build graph.
    pub graph: GraphOptions,
    /// Where the result goes, at least one.
    pub outputs: Vec<OutputSpec>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter` stages.
    pub no_cache_filter: Vec<String>,
    /// `--pull`.
    pub pull: bool,
    /// `--secret` values (never printed: [`SecretStore`] redacts them).
    pub secrets: SecretStore,
    /// `--ssh` agent sockets by id.
    pub ssh_agents: BTreeMap<String, PathBuf>,
    /// `--ssh` key files by id, served by an agent of img's own during the build.
    pub ssh_keys: BTreeMap<String, Vec<PathBuf>>,
    /// `--network`.
    pub network: DefaultNetwork,
    /// `--allow`.
    pub entitlements: Entitlements,
    /// `--compression`.
    pub compression: Compression,
    /// `-o …,compression-level=N`, checked against the compression.
    pub compression_level: Option<u32>,
    /// `-o …,force-compression=true`: base image layers take the compression too.
    pub force_compression: bool,
    /// `-o …,oci-mediatypes=false`: Docker's media types instead of OCI's.
    pub media_types: MediaTypes,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// `--iidfile`.
    pub iidfile: Option<PathBuf>,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
    /// `--jobs`.
    pub jobs: Option<usize>,
    /// `--cache-to`.
    pub cache_to: Vec<super::cache_spec::CacheToSpec>,
    /// `--cache-from`.
    pub cache_from: Vec<super::cache_spec::CacheFromSpec>,
    /// `--add-host`, `--ulimit`, `--shm-size`.
    pub step_options: StepOptions,
    /// `--annotation`.
    pub annotations: Annotations,
    /// `--provenance`, `--sbom`, `--attest`.
    pub attestations: AttestOptions,
    /// The `--secret` ids, for provenance (which records ids, never values).
    pub secret_ids: Vec<String>,
}

impl BuildConfig {
    /// How the image's layers are written, for a cache that should name the same blobs.
    pub fn layer_format(&self) -> super::remote_cache::LayerFormat {
        super::remote_cache::LayerFormat {
            compression: self.compression,
            level: self.compression_level,
            source_date_epoch: self.source_date_epoch,
        }
    }

    /// Checks `flags`; `env` reads the environment (`--build-arg KEY`, `--secret env=`,
    /// `--ssh default`, `SOURCE_DATE_EPOCH`).
    pub fn from_flags(
        flags: &BuildFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<BuildConfig> {
        let mut graph = GraphOptions::from_flags(&flags.graph, &env)?;
        for label in &flags.labels {
            let Some((key, value)) = label.split_once('=') else {
                bail!("invalid --label {label:?}: give KEY=VALUE");
            };
            check_key("--label", label, key)?;
            graph.labels.insert(key.to_owned(), value.to_owned());
        }
        let source_date_epoch = graph.source_date_epoch()?;
        let tags = flags
            .tags
            .iter()
            .map(|t| stored_name(t).with_context(|| format!("invalid -t {t:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let outputs = outputs(&flags.outputs, &tags, flags.push)?;
        let mut secrets = SecretStore::new();
        let mut secret_ids = Vec::new();
        for spec in &flags.secrets {
            let (id, source) = parse_secret(spec, &env)?;
            secret_ids.push(id.clone());
            secrets = secrets.with(id, source);
        }
        let mut ssh_agents = BTreeMap::new();
        let mut ssh_keys = BTreeMap::new();
        for spec in &flags.ssh {
            match parse_ssh(spec, &env)? {
                (id, SshSource::Agent(socket)) => {
                    ssh_agents.insert(id, socket);
                }
                (id, SshSource::Keys(files)) => {
                    ssh_keys.insert(id, files);
                }
            }
        }
        let network = match flags.network.as_str() {
            "default" | "" => DefaultNetwork::Default,
            "none" => DefaultNetwork::None,
            "host" => DefaultNetwork::Host,
            other => bail!("invalid --network {other:?}: give default, none or host"),
        };
        let mut entitlements = Entitlements::default();
        for allow in flags.allow.iter().flat_map(|a| a.split(',')) {
            match allow.trim() {
                "security.insecure" => entitlements.security_insecure = true,
                "network.host" => entitlements.network_host = true,
                other => bail!(
                    "invalid --allow {other:?}: the entitlements are security.insecure and network.host"
                ),
            }
        }
        if graph.is_multi_platform()
            && outputs
                .iter()
                .any(|o| matches!(o, OutputSpec::Docker { .. }))
        {
            let platforms: Vec<String> = graph.platforms.iter().map(ToString::to_string).collect();
            bail!(
                "{DOCKER_MULTI_PLATFORM} (--platform {})",
                platforms.join(",")
            );
        }
        let mut compression: Compression = flags
            .compression
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --compression: {e}"))?;
        // `-o type=image,compression=zstd,annotation.KEY=VALUE`: one export serves every
        // output, so the outputs must agree on its compression.
        let mut annotation_specs = flags.annotations.clone();
        let mut output_compression: Option<(Compression, &str)> = None;
        let mut output_level: Option<(u32, &str)> = None;
        let mut force_compression = false;
        let mut output_media_types: Option<(bool, &str)> = None;
        for spec in &flags.outputs {
            let options = image_options(spec)?;
            force_compression |= options.force_compression;
            if let Some(wanted) = options.oci_media_types {
                if let Some((earlier, earlier_spec)) = output_media_types {
                    if earlier != wanted {
                        bail!(
                            "--output {earlier_spec:?} and {spec:?} ask for different media types; img exports one image for every output"
                        );
                    }
                }
                output_media_types = Some((wanted, spec));
            }
            annotation_specs.extend(options.annotations);
            if let Some(wanted) = options.level {
                if let Some((earlier, earlier_spec)) = output_level {
                    if earlier != wanted {
                        bail!(
                            "--output {earlier_spec:?} and {spec:?} ask for different compression levels; img exports one image for every output"
                        );
                    }
                }
                output_level = Some((wanted, spec));
            }
            if let Some(wanted) = options.compression {
                if let Some((earlier, earlier_spec)) = output_compression {
                    if earlier != wanted {
                        bail!(
                            "--output {earlier_spec:?} and {spec:?} ask for different compressions; img exports one image for every output"
                        );
                    }
                }
                output_compression = Some((wanted, spec));
                compression = wanted;
            }
        }
        let compression_level =
            super::output::check_level(compression, output_level.map(|(level, _)| level))?;
        let media_types = match output_media_types {
            Some((false, spec)) => {
                if !MediaTypes::Docker.supports(compression) {
                    bail!("invalid --output {spec:?}: zstd layers need OCI media types; leave oci-mediatypes=false out or use gzip");
                }
                MediaTypes::Docker
            }
            _ => MediaTypes::Oci,
        };
        let cache_to = flags
            .cache_to
            .iter()
            .map(|s| super::cache_spec::parse_cache_to(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cache_from = flags
            .cache_from
            .iter()
            .map(|s| super::cache_spec::parse_cache_from(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if flags.jobs == Some(0) {
            bail!("invalid --jobs 0: give at least 1");
        }
        Ok(BuildConfig {
            context: ContextSpec::parse(&flags.graph.context)?,
            file: flags.graph.file.clone(),
            graph,
            outputs,
            no_cache: flags.no_cache,
            no_cache_filter: flags.no_cache_filter.clone(),
            pull: flags.pull,
            secrets,
            ssh_agents,
            ssh_keys,
            network,
            entitlements,
            compression,
            compression_level,
            force_compression,
            media_types,
            source_date_epoch,
            iidfile: flags.iidfile.clone(),
            metadata_file: flags.metadata_file.clone(),
            jobs: flags.jobs,
            cache_to,
            cache_from,
            step_options: StepOptions::from_flags(flags)?,
            annotations: Annotations::parse(&annotation_specs)?,
            attestations: AttestOptions::parse(
                &flags.attest,
                flags.provenance.as_deref(),
                flags.sbom.as_deref(),
            )?,
            secret_ids,
        })
    }

    /// Whether any output needs the image (manifest, config, layers) rather than only the
    /// root filesystem.
    pub fn needs_image(&self) -> bool {
        self.outputs.iter().any(OutputSpec::needs_image)
    }
}

/// The outputs: `-o` specs, or the local image store under the `-t` names (with none, the
/// image is kept untagged, as `docker build .` keeps it); `--push` adds a push of the `-t`
/// names, as buildx's `--push` adds `type=registry`.
fn outputs(specs: &[String], tags: &[String], push: bool) -> anyhow::Result<Vec<OutputSpec>> {
    if push && tags.is_empty() {
        bail!("--push needs an image name: give -t NAME");
    }
    let mut outputs = if specs.is_empty() {
        vec![OutputSpec::Image {
            names: tags.to_vec(),
            push,
        }]
    } else {
        let mut outputs = specs
            .iter()
            .map(|s| parse_output(s, tags))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if push {
            outputs.push(OutputSpec::Registry {
                names: tags.to_vec(),
            });
        }
        outputs
    };
    let to_stdout = outputs.iter().filter(|o| o.writes_stdout()).count();
    if to_stdout > 1 {
        bail!("only one output can write to standard output (dest=-)");
    }
    outputs.dedup();
    Ok(outputs)
}

/// `--secret id=ID[,src=FILE|,source=FILE|,env=VAR][,type=file|env]`, as buildx reads it.
/// With neither a file nor a variable, the variable named ID is used when set, else the file
/// ID (buildx's rule).
pub fn parse_secret(
    spec: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, SecretSource)> {
    let mut id = None;
    let mut src = None;
    let mut var = None;
    let mut kind = None;
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').with_context(|| {
            format!(
                "invalid --secret {spec:?}: fields are key=value (id=ID,src=FILE or id=ID,env=VAR)"
            )
        })?;
        match key.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(value.to_owned()),
            "src" | "source" => src = Some(value.to_owned()),
            "env" => var = Some(value.to_owned()),
            "type" if value == "file" || value == "env" => kind = Some(value.to_owned()),
            "type" => bail!("invalid --secret {spec:?}: type is file or env"),
            other => {
                bail!("invalid --secret {spec:?}: unknown field {other:?} (use id, src, env, type)")
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .with_context(|| format!("invalid --secret {spec:?}: id=ID is required"))?;
    // `type=env,src=VAR` names a variable, as in buildx.
    if kind.as_deref() == Some("env") && var.is_none() {
        var = src.take();
    }
    let source = match (src, var) {
        (Some(_), Some(_)) => {
            bail!("invalid --secret {spec:?}: give either src=FILE or env=VAR, not both")
        }
        (Some(file), None) => SecretSource::File(PathBuf::from(file)),
        (None, Some(var)) => SecretSource::Env(var),
        (None, None) if kind.as_deref() != Some("file") && env(&id).is_some() => {
            SecretSource::Env(id.clone())
        }
        (None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    if let SecretSource::File(path) = &source {
        if !path.is_file() {
            bail!(
                "--secret {id}: {} is not a readable file (give src=FILE or env=VAR)",
                path.display()
            );
        }
    }
    Ok((id, source))
}

/// What an `--ssh` id is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// An ssh agent's socket, forwarded.
    Agent(PathBuf),
    /// Private key files, served by img's own agent.
    Keys(Vec<PathBuf>),
}

/// `--ssh default` (the agent at `SSH_AUTH_SOCK`), `--ssh ID=SOCKET`, or `--ssh
/// ID=KEYFILE[,KEYFILE...]` as buildx reads it (`~/` is the home directory).
pub fn parse_ssh(
    spec: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, SshSource)> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, paths)) => {
            let home = env("HOME").unwrap_or_default();
            let paths = paths
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| match p.strip_prefix("~/") {
                    Some(rest) if !home.is_empty() => PathBuf::from(&home).join(rest),
                    _ => PathBuf::from(p),
                })
                .collect::<Vec<_>>();
            (id.to_owned(), paths)
        }
        None => {
            let socket = env("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).with_context(|| {
                format!("--ssh {spec}: SSH_AUTH_SOCK is not set; start an ssh agent or give {spec}=SOCKET or {spec}=KEYFILE")
            })?;
            (spec.to_owned(), vec![PathBuf::from(socket)])
        }
    };
    if id.is_empty() || id.contains(',') || paths.is_empty() {
        bail!("invalid --ssh {spec:?}: give default, ID=SOCKET or ID=KEYFILE[,KEYFILE...]");
    }
    let is_socket = |p: &PathBuf| {
        std::fs::metadata(p)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    };
    if let [socket] = paths.as_slice() {
        if is_socket(socket) {
            return Ok((id, SshSource::Agent(socket.clone())));
        }
    }
    for path in &paths {
        if is_socket(path) {
            bail!("invalid --ssh {spec:?}: give one agent socket, or key files, not both");
        }
        if !path.is_file() {
            bail!(
                "--ssh {id}: {} is neither an ssh agent socket nor a key file",
                path.display()
            );
        }
    }
    Ok((id, SshSource::Keys(paths)))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Args, Command};

    fn config(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<BuildConfig> {
        let mut argv = vec!["img", "build"];
        argv.extend_from_slice(args);
        argv.push(".");
        let Some(Command::Build(flags)) = Args::try_parse_from(argv)?.command else {
            unreachable!("build parses as such")
        };
        BuildConfig::from_flags(&flags, |k| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", config(args, &[]).unwrap_err())
    }

    #[test]
    fn without_a_tag_or_an_output_the_image_is_kept_untagged() {
        let c = config(&[], &[]).unwrap();
        assert_eq!(
            c.outputs,
            [OutputSpec::Image {
                names: vec![],
                push: false
            }]
        );
        assert!(c.needs_image());
        assert!(err(&["--push"]).contains("--push needs an image name"));
    }

    #[test]
    fn tags_get_latest_and_go_to_the_store() {
        let c = config(&["-t", "app", "-t", "reg.lan:5000/team/app:v1"], &[]).unwrap();
        assert_eq!(
            c.outputs,
            [OutputSpec::Image {
                names: vec![
                    "docker.io/library/app:latest".into(),
                    "reg.lan:5000/team/app:v1".into()
                ],
                push: false
            }]
        );
        assert!(err(&["-t", "Bad Name"]).contains("invalid -t"));
    }

    #[test]
    fn push_adds_a_registry_output() {
        let c = config(&["-t", "app", "--push"], &[]).unwrap();
        assert_eq!(
            c.outputs,
            [OutputSpec::Image {
                names: vec!["docker.io/library/app:latest".into()],
                push: true
            }]
        );
        let c = config(&["-t", "app", "--push", "-o", "type=tar,dest=x.tar"], &[]).unwrap();
        assert_eq!(c.outputs.len(), 2);
        assert!(matches!(c.outputs[1], OutputSpec::Registry { .. }));
        assert!(err(&["--push", "-o", "type=tar,dest=x.tar"]).contains("--push needs"));
    }

    #[test]
    fn docker_archives_hold_one_platform() {
        let e = err(&[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=docker,dest=x.tar",
        ]);
        assert!(
            e.contains("type=docker cannot hold a multi-platform image"),
            "{e}"
        );
        assert!(e.contains("linux/amd64,linux/arm64"), "{e}");
        let c = config(
            &["--platform", "arm64", "-o", "type=docker,dest=x.tar"],
            &[],
        )
        .unwrap();
        assert_eq!(c.graph.platforms.len(), 1);
        let c = config(&["--platform", "linux/amd64,linux/arm64", "-t", "app"], &[]).unwrap();
        assert!(c.graph.is_multi_platform());
    }

    #[test]
    fn one_output_at_most_on_stdout() {
        assert!(
            err(&["-o", "type=tar,dest=-", "-o", "type=oci,dest=-"]).contains("only one output")
        );
    }

    #[test]
    fn labels_network_allow_compression_jobs() {
        let c = config(
            &[
                "-t",
                "a",
                "--label",
                "k=v",
                "--label",
                "e=",
                "--network",
                "none",
                "--allow",
                "security.insecure",
                "--compression",
                "zstd",
                "--jobs",
                "2",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.graph.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.graph.labels.get("e").map(String::as_str), Some(""));
        assert_eq!(c.network, DefaultNetwork::None);
        assert!(c.entitlements.security_insecure && !c.entitlements.network_host);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.jobs, Some(2));
        for (args, want) in [
            (&["-t", "a", "--label", "novalue"][..], "invalid --label"),
            (&["-t", "a", "--network", "bridge"], "invalid --network"),
            (&["-t", "a", "--allow", "device"], "invalid --allow"),
            (
                &["-t", "a", "--compression", "lz4"],
                "invalid --compression",
            ),
            (&["-t", "a", "--jobs", "0"], "invalid --jobs"),
        ] {
            assert!(err(args).contains(want), "{args:?}: {}", err(args));
        }
    }

    #[test]
    fn secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret").unwrap();
        let env = |k: &str| (k == "TOKEN").then(|| "from-env".to_owned());
        let src = format!("id=tok,src={}", file.display());
        let (id, source) = parse_secret(&src, &env).unwrap();
        assert_eq!(id, "tok");
        assert!(matches!(source, SecretSource::File(p) if p == file));
        let (_, source) = parse_secret("id=tok,env=TOKEN", &env).unwrap();
        assert!(matches!(source, SecretSource::Env(v) if v == "TOKEN"));
        let (_, source) = parse_secret("type=env,id=tok,src=TOKEN", &env).unwrap();
        assert!(matches!(source, SecretSource::Env(v) if v == "TOKEN"));
        // An id alone: the variable of that name.
        let (_, source) = parse_secret("id=TOKEN", &env).unwrap();
        assert!(matches!(source, SecretSource::Env(v) if v == "TOKEN"));
        for (spec, want) in [
            ("src=/x", "id=ID is required"),
            ("id=a,src=/nonexistent", "not a readable file"),
            ("id=a,bogus=1", "unknown field"),
            ("id=a,src", "key=value"),
        ] {
            let e = format!("{:#}", parse_secret(spec, &env).unwrap_err());
            assert!(e.contains(want), "{spec}: {e}");
        }
        // The value never shows in Debug.
        let (_, source) = parse_secret(&src, &env).unwrap();
        let store = SecretStore::new().with("tok", source);
        assert!(!format!("{store:?}").contains("s3cret"));
    }

    #[test]
    fn ssh_agent_sockets_and_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let sock_env = sock.display().to_string();
        let env = move |k: &str| (k == "SSH_AUTH_SOCK").then(|| sock_env.clone());
        assert_eq!(
            parse_ssh("default", &env).unwrap(),
            ("default".to_owned(), SshSource::Agent(sock.clone()))
        );
        let spec = format!("deploy={}", sock.display());
        assert_eq!(
            parse_ssh(&spec, &env).unwrap(),
            ("deploy".to_owned(), SshSource::Agent(sock.clone()))
        );
        let none = |_: &str| None;
        let e = format!("{:#}", parse_ssh("default", &none).unwrap_err());
        assert!(e.contains("SSH_AUTH_SOCK is not set"), "{e}");
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "key").unwrap();
        assert_eq!(
            parse_ssh(&format!("k={}", key.display()), &none).unwrap(),
            ("k".to_owned(), SshSource::Keys(vec![key.clone()]))
        );
        let home = dir.path().display().to_string();
        let home_env = move |k: &str| (k == "HOME").then(|| home.clone());
        assert_eq!(
            parse_ssh("k=~/id_ed25519", &home_env).unwrap().1,
            SshSource::Keys(vec![key.clone()])
        );
        let e = format!("{:#}", parse_ssh("k=/nonexistent/key", &none).unwrap_err());
        assert!(
            e.contains("neither an ssh agent socket nor a key file"),
            "{e}"
        );
        let both = format!("k={},{}", sock.display(), key.display());
        let e = format!("{:#}", parse_ssh(&both, &none).unwrap_err());
        assert!(e.contains("not both"), "{e}");
    }
}
