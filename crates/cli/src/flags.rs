//! The command line, parsed into plain data that mirrors it (no checking beyond clap's).
//! `config` derives the checked configuration from it.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

use crate::examples::{self, help};

/// img: build container images without a daemon and without root.
#[derive(Debug, Parser)]
#[command(
    name = "img",
    about,
    disable_version_flag = true,
    arg_required_else_help = true,
    after_help = help(examples::IMG)
)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalFlags,

    /// Print the version and exit.
    #[arg(short = 'v', long)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every command accepts.
#[derive(Debug, Clone, ClapArgs)]
pub struct GlobalFlags {
    /// Directory holding all of img's state (default: $XDG_DATA_HOME/img, else
    /// ~/.local/share/img, else /tmp/img).
    #[arg(
        short = 's',
        long,
        env = "IMG_STATE",
        global = true,
        value_name = "DIR"
    )]
    pub state: Option<PathBuf>,

    /// Snapshot backend: auto, overlayfs or native.
    #[arg(
        short = 'b',
        long,
        global = true,
        default_value = "auto",
        value_name = "BACKEND"
    )]
    pub backend: String,

    /// Print more detail: error debug output, full ids in `du`, what `prune` removed.
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,

    /// How progress is shown on standard error.
    #[arg(long, global = true, value_enum, default_value_t = ProgressFlag::Auto)]
    pub progress: ProgressFlag,

    /// Show no progress (same as --progress=quiet).
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,

    /// A registry (HOST[:PORT]) reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// `--progress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressFlag {
    /// tty when standard error is a terminal, else plain.
    Auto,
    /// A live view redrawn in place.
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per event and line.
    Rawjson,
    /// Nothing.
    Quiet,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show version information.
    #[command(after_help = help(examples::VERSION))]
    Version,

    /// Pull an image from a registry into the local store.
    #[command(after_help = help(examples::PULL))]
    Pull {
        /// The image: NAME[:TAG|@DIGEST].
        #[arg(value_name = "NAME[:TAG|@DIGEST]")]
        reference: String,
        /// The platform to pull from a multi-platform image (default: this machine's).
        #[arg(
            long,
            value_name = "OS/ARCH[/VARIANT]",
            conflicts_with = "all_platforms"
        )]
        platform: Option<String>,
        /// Keep every platform of a multi-platform image: the whole index is stored under
        /// the name.
        #[arg(long)]
        all_platforms: bool,
    },

    /// Push an image from the local store to a registry.
    #[command(after_help = help(examples::PUSH))]
    Push {
        /// The image: NAME[:TAG].
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },

    /// Log in to a registry, storing the credentials where Docker keeps them.
    #[command(after_help = help(examples::LOGIN))]
    Login {
        /// The registry (default: Docker Hub).
        #[arg(value_name = "SERVER")]
        server: Option<String>,
        /// The user name.
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// The password (insecure: it shows in the process list and shell history).
        #[arg(short = 'p', long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },

    /// Remove stored credentials for a registry.
    #[command(after_help = help(examples::LOGOUT))]
    Logout {
        /// The registry (default: Docker Hub).
        #[arg(value_name = "SERVER")]
        server: Option<String>,
    },

    /// List the stored images.
    #[command(visible_alias = "images", after_help = help(examples::LS))]
    Ls {
        /// Only images whose name matches: name=PATTERN or reference=PATTERN (glob), or
        /// dangling=true for the images without a name (repeatable).
        #[arg(short = 'f', long = "filter", value_name = "KEY=PATTERN")]
        filters: Vec<String>,
        /// Print each image through a template instead of the table, e.g.
        /// '{{.Name}} {{.Digest}}' (fields: Name, ID, Size, Created, CreatedAt, Digest).
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
    },

    /// Remove image names, or an image by its ID (the blobs go with the next garbage
    /// collection).
    #[command(visible_alias = "rmi", after_help = help(examples::RM))]
    Rm {
        /// The images.
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
    },

    /// Give a stored image another name.
    #[command(after_help = help(examples::TAG))]
    Tag {
        /// The stored image.
        #[arg(value_name = "SOURCE[:TAG]")]
        source: String,
        /// The new name.
        #[arg(value_name = "TARGET[:TAG]")]
        target: String,
    },

    /// Print a stored image's manifest and config as JSON.
    #[command(after_help = help(examples::INSPECT))]
    Inspect {
        /// The image.
        #[arg(value_name = "NAME[:TAG]")]
        image: String,
        /// The platform to show of a multi-platform image (default: this machine's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },

    /// Write images to a tar archive (standard output by default).
    #[command(after_help = help(examples::SAVE))]
    Save {
        /// The images.
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
        /// The archive to write.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// docker: `docker load`'s layout; oci: an OCI image layout.
        #[arg(long, value_enum, default_value_t = ArchiveFormat::Docker)]
        format: ArchiveFormat,
        /// The platform to save of a multi-platform image. A docker archive holds one
        /// (default: this machine's); an OCI layout holds every platform unless this is given.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },

    /// Read images from a tar archive (docker save layout or OCI image layout).
    #[command(after_help = help(examples::LOAD))]
    Load {
        /// The archive to read (standard input by default).
        #[arg(short = 'i', long, value_name = "FILE")]
        input: Option<PathBuf>,
    },

    /// Extract an image's root filesystem into a new directory.
    #[command(after_help = help(examples::UNPACK))]
    Unpack {
        /// The image.
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The directory to create.
        #[arg(short = 'o', long, value_name = "DIR", default_value = "rootfs")]
        output: PathBuf,
        /// The platform to unpack of a multi-platform image (default: this machine's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },

    /// Show disk usage: every blob and snapshot, and what could be reclaimed.
    #[command(after_help = help(examples::DU))]
    Du,

    /// Check this host for rootless builds: user namespaces, subordinate ids, overlayfs,
    /// /proc, binfmt_misc, the state directory; prints the fix for each problem and exits
    /// non-zero when builds with RUN steps cannot work here.
    #[command(after_help = help(examples::DOCTOR))]
    Doctor {
        /// text: one line per check; json: the whole report.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Also check that RUN steps for these platforms can run here (natively or through a
        /// binfmt_misc emulator), e.g. linux/arm64 or linux/arm64,linux/riscv64.
        #[arg(long, value_name = "PLATFORMS")]
        platform: Option<String>,
    },

    /// Trim the build cache and delete what nothing refers to.
    #[command(after_help = help(examples::PRUNE))]
    Prune {
        /// Drop every build cache record.
        #[arg(short = 'a', long)]
        all: bool,
        /// Drop cache records last used longer ago than this (e.g. 24h, 7days).
        #[arg(long, value_name = "DURATION")]
        keep_duration: Option<String>,
        /// Drop the least recently used cache records until the rest fit (e.g. 10GB).
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
    },

    /// Build an image from a Dockerfile and a context.
    #[command(after_help = help(examples::BUILD))]
    Build(Box<BuildFlags>),

    /// Tools for looking inside img's pipeline.
    #[command(subcommand, after_help = help(examples::DEBUG))]
    Debug(DebugCommand),

    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = help(examples::COMPLETION))]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// `img completion` values: the shells whose scripts are tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash (with or without the bash-completion package).
    Bash,
    /// Zsh (compinit).
    Zsh,
    /// Fish.
    Fish,
}

/// The Dockerfile, its context and the options that shape the build graph: what `img build`
/// and `img debug llb` share.
#[derive(Debug, Clone, ClapArgs)]
pub struct GraphFlags {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build argument; without `=VALUE` the value comes from the environment (repeatable).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// The platform to build for (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// A directory, `-` (a Dockerfile, or a tar archive of the context, on standard input) or
    /// a git URL (`https://host/repo.git#ref:subdir`).
    #[arg(value_name = "CONTEXT")]
    pub context: String,
    /// An extra named context for FROM NAME, COPY --from=NAME and RUN --mount from=NAME:
    /// NAME=DIR, NAME=docker-image://REF, NAME=oci-layout://PATH[:TAG][@DIGEST] or NAME=GIT-URL
    /// (repeatable).
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
}

/// `img build`.
#[derive(Debug, Clone, ClapArgs)]
pub struct BuildFlags {
    #[command(flatten)]
    pub graph: GraphFlags,
    /// A name for the image, NAME[:TAG] (`:latest` when no tag is given; repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// A label for the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Use no cached result.
    #[arg(long)]
    pub no_cache: bool,
    /// Use no cached result for this stage and what builds on it (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Where the result goes: type=image|docker|oci|tar|local|registry[,dest=PATH|-][,name=REF]
    /// (default: type=image, named by -t; repeatable).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the image to the registry of each name.
    #[arg(long)]
    pub push: bool,
    /// Export the build cache: type=registry,ref=REF | type=local,dest=DIR | type=inline, with
    /// the options mode=min|max, compression=ALGO, ignore-error=true, cache-mounts=true and
    /// cache-mounts-max-size=SIZE after a comma (repeatable).
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Import a build cache: type=registry,ref=REF, a bare image reference (its cache or
    /// inline cache), or type=local,src=DIR (repeatable).
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Pull base images even when the local store has them.
    #[arg(long)]
    pub pull: bool,
    /// A secret for `RUN --mount=type=secret`: id=ID[,src=FILE|,env=VAR] (repeatable).
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: default (SSH_AUTH_SOCK), ID=SOCKET, or
    /// ID=KEYFILE[,KEYFILE] served by img's own agent (repeatable).
    #[arg(long = "ssh", value_name = "default|ID=SOCKET|ID=KEYFILE")]
    pub ssh: Vec<String>,
    /// The network of RUN steps without `--network`: default, none or host.
    #[arg(long, value_name = "MODE", default_value = "default")]
    pub network: String,
    /// Grant an entitlement: security.insecure (for `RUN --security=insecure`) or
    /// network.host (repeatable).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Layer compression: gzip, zstd or uncompressed.
    #[arg(long, value_name = "ALGO", default_value = "gzip")]
    pub compression: String,
    /// Write the image ID (sha256:..., the config digest, as Docker's) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build result's metadata as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Run at most N RUN steps at once (default: no limit).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Evaluate the Dockerfile's build checks without building, print what they find and exit
    /// non-zero if they find anything (the same as --call=check).
    #[arg(long)]
    pub check: bool,
    /// What to do with the Dockerfile: build it, or check it (as --check).
    #[arg(long, value_enum, default_value_t = CallFlag::Build)]
    pub call: CallFlag,
    /// An /etc/hosts entry for RUN steps, HOST:IP or HOST=IP (repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// A resource limit for RUN steps, e.g. nofile=1024:2048 (repeatable).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// The size of RUN steps' /dev/shm, e.g. 128m (default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// An annotation of the image manifest: KEY=VALUE, manifest:KEY=VALUE or
    /// manifest-descriptor:KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Attach SLSA provenance to the image: true, false, or mode=min|max[,builder-id=URL]
    /// (the same as --attest type=provenance,…). Without it img adds none, unlike buildx.
    #[arg(long, value_name = "true|false|mode=min|max")]
    pub provenance: Option<String>,
    /// Attach an SPDX SBOM of the image's packages: true or false (the same as --attest
    /// type=sbom). img scans the image itself; a generator= other than BuildKit's default
    /// scanner is refused.
    #[arg(long, value_name = "true|false")]
    pub sbom: Option<String>,
    /// An attestation to attach: type=provenance[,mode=min|max][,builder-id=URL] or
    /// type=sbom, with disabled=true to turn one off (repeatable; --provenance and --sbom
    /// win over it).
    #[arg(long = "attest", value_name = "type=provenance|sbom,…")]
    pub attest: Vec<String>,
}

impl BuildFlags {
    /// True for `--check` and `--call=check`: nothing is built.
    pub fn checks_only(&self) -> bool {
        self.check || self.call == CallFlag::Check
    }
}

/// `img build --call` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CallFlag {
    /// Build the image.
    Build,
    /// Evaluate the build checks only.
    Check,
}

/// `img doctor --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One line per check, the fix under each problem, and a verdict.
    Text,
    /// The report as JSON.
    Json,
}

/// `img save --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// manifest.json, <config>.json and <layer>/layer.tar, as `docker save` writes.
    Docker,
    /// oci-layout, index.json and blobs/sha256/.
    Oci,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's raw syntax tree as JSON, as Docker's parser builds it before
    /// instructions are checked and before any substitution.
    #[command(after_help = help(examples::DEBUG_PARSE))]
    Parse {
        /// The Dockerfile to read; `-` reads standard input.
        #[arg(value_name = "FILE|-", default_value = "Dockerfile")]
        file: PathBuf,
    },

    /// Print, as JSON, the snapshot backend `--backend` resolves to for a build here, and why
    /// (for an ordinary user, probed in the user namespace a build runs in).
    #[command(after_help = help(examples::DEBUG_BACKEND))]
    Backend,

    /// Print the build graph a Dockerfile lowers to, as JSON or Graphviz dot.
    #[command(after_help = help(examples::DEBUG_LLB))]
    Llb {
        /// The output format.
        #[arg(long, value_enum, default_value_t = GraphFormatFlag::Json)]
        format: GraphFormatFlag,
        #[command(flatten)]
        graph: GraphFlags,
    },
}

/// `img debug llb --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormatFlag {
    /// The graph's stable JSON serialization.
    Json,
    /// Graphviz dot (`dot -Tsvg`).
    Dot,
}
