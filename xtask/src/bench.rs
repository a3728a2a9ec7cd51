//! `cargo xtask bench`: whole builds with img and with its peers, side by side in one run.
//!
//! Every scenario runs several times per builder; the table quotes medians and img/peer ratios
//! from the same run, because the machines are noisy. Peak RSS is the largest resident set of
//! the builder's process tree, read from `wait4`'s rusage.
//!
//! Peers: buildah (Debian's), serial as it builds by default and with `--jobs 4` where a
//! scenario has stages to run side by side; BuildKit when `BUILDCTL` (the buildctl binary)
//! and `BUILDKIT_HOST` (the daemon) are set, else its column says it was skipped; and, for the
//! export scenario, `tar | pigz` of the same tree, the tool pipeline doing the same bulk work.
//!
//! Scenarios (BENCHMARKS.md has the targets):
//! 1. four independent stages that each `RUN sleep 2`, plus a final stage copying their outputs:
//!    cold (base image present, no build cache);
//! 2. the same, fully cached;
//! 3. `COPY` of a 20,000-file, 200 MB context and export into the image store, cold;
//!    P3: the same exported as an OCI archive, cold; P3c: the same, cached;
//! 4. a real-world Dockerfile (a C project built with gcc and make on a Debian base image made
//!    with debootstrap), cold, then after changing one source file;
//! 5. CI with the shared build cache: the same project plus `apt-get install` of a local
//!    package, built by pod A on an empty state directory with `--cache-to type=registry,
//!    mode=max` and pushed, then by pod B on another empty state directory with
//!    `--cache-from`, pushed to the same registry (buildah with `--cache-to`/`--cache-from`,
//!    BuildKit with `--export-cache`/`--import-cache`). Goal: pod B at most 10% of pod A.
//!
//! The base image is a busybox root filesystem built by img from Debian's static busybox and
//! pushed to Debian's docker-registry on a loopback port, where every builder pulls it from.

mod peers;
mod scenarios;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use peers::{img_build, BuildKit};
use scenarios::{BigContext, Builders, CiCache, ParallelStages, RealWorld};

use crate::registry::Registry;

/// Where the generated tables go in BENCHMARKS.md.
const BEGIN_MARKER: &str = "<!-- cargo xtask bench: begin -->";
const END_MARKER: &str = "<!-- cargo xtask bench: end -->";

/// The registry's port when BuildKit is compared: its daemon's configuration must name the
/// registry to reach it over plain HTTP, so the port cannot be a random one.
const BUILDKIT_REGISTRY_PORT: u16 = 5555;

/// The peer columns, in order.
const PEERS: [&str; 4] = ["buildah", "buildah --jobs 4", "BuildKit", "tar | pigz"];

/// Options of `cargo xtask bench`.
struct BenchOptions {
    runs: usize,
    write: bool,
    /// Scenario groups to run (`1` runs 1 and 2, `3` runs 3, P3 and P3c, `4` both rows of 4,
    /// `5` both pods of 5); empty for all.
    only: Vec<String>,
}

impl BenchOptions {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = BenchOptions {
            runs: 5,
            write: false,
            only: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--runs" => {
                    let value = args.next().context("--runs needs a number")?;
                    options.runs = value.parse().context("--runs needs a number")?;
                }
                "--only" => {
                    let value = args.next().context("--only needs scenarios, e.g. 1,3")?;
                    for group in value.split(',') {
                        if !["1", "3", "4", "5"].contains(&group) {
                            bail!("--only takes 1 (scenarios 1 and 2), 3 (3, P3, P3c), 4 or 5, comma-separated; not {group}");
                        }
                        options.only.push(group.to_owned());
                    }
                }
                "--write" => options.write = true,
                other => {
                    bail!("unknown option {other}; expected --runs N, --only 1,3,4,5 or --write")
                }
            }
        }
        if options.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if options.write && !options.only.is_empty() {
            bail!("--write records the whole table; run every scenario with it");
        }
        Ok(options)
    }

    fn runs_group(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// One timed run of a builder.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    wall: Duration,
    peak_rss_kib: u64,
}

/// The samples of one builder in one scenario.
pub(crate) struct Series {
    builder: &'static str,
    samples: Vec<Sample>,
}

impl Series {
    fn median_wall(&self) -> Duration {
        let mut walls: Vec<Duration> = self.samples.iter().map(|s| s.wall).collect();
        walls.sort();
        walls[walls.len() / 2]
    }

    fn max_rss_mib(&self) -> f64 {
        let kib = self
            .samples
            .iter()
            .map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0);
        kib as f64 / 1024.0
    }
}

/// One scenario's row: every builder's samples.
pub(crate) struct Row {
    scenario: &'static str,
    series: Vec<Series>,
}

impl Row {
    pub(crate) fn new(scenario: &'static str) -> Self {
        Row {
            scenario,
            series: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, builder: &'static str, sample: Sample) {
        match self.series.iter_mut().find(|s| s.builder == builder) {
            Some(series) => series.samples.push(sample),
            None => self.series.push(Series {
                builder,
                samples: vec![sample],
            }),
        }
    }

    fn get(&self, builder: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.builder == builder)
    }

    /// The table line: medians, img against the fastest builder peer, peak RSS.
    fn line(&self, buildkit: bool) -> String {
        let cell = |builder: &str| match self.get(builder) {
            Some(series) => format_duration(series.median_wall()),
            None if builder == "BuildKit" && !buildkit => "skipped".to_owned(),
            None => "—".to_owned(),
        };
        let img = self.get("img").map(Series::median_wall);
        let fastest_peer = self
            .series
            .iter()
            .filter(|s| s.builder != "img" && s.builder != "tar | pigz")
            .min_by_key(|s| s.median_wall());
        let ratio = |peer: Option<&Series>| match (img, peer) {
            (Some(img), Some(peer)) => format!(
                "{:.2} ({})",
                img.as_secs_f64() / peer.median_wall().as_secs_f64(),
                // A table cell: its pipe must not end the cell.
                peer.builder.replace('|', "\\|")
            ),
            _ => "—".to_owned(),
        };
        let rss = |builder: &str| {
            self.get(builder)
                .map_or("—".to_owned(), |s| format!("{:.0} MiB", s.max_rss_mib()))
        };
        let mut line = format!("| {} | {} |", self.scenario, cell("img"));
        for peer in PEERS {
            line.push_str(&format!(" {} |", cell(peer)));
        }
        line.push_str(&format!(
            " {} | {} | {} | {} |",
            ratio(fastest_peer),
            ratio(self.get("tar | pigz")),
            rss("img"),
            rss("buildah"),
        ));
        line
    }
}

/// Runs the benchmarks and prints (and with `--write`, records) the table.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = BenchOptions::parse(args)?;
    for program in [
        "buildah",
        "docker-registry",
        "busybox",
        "debootstrap",
        "pigz",
    ] {
        if !crate::system::on_path(program) {
            bail!("{program} is needed for the benchmarks: run `cargo xtask test` once as root, or apt-get install it");
        }
    }
    let buildkit = BuildKit::from_env()?;
    let img = build_img_release(root)?;
    let work = root.join("target/bench-work");
    if work.exists() {
        std::fs::remove_dir_all(&work).context("could not clear target/bench-work")?;
    }
    std::fs::create_dir_all(&work)?;

    let port = buildkit.as_ref().map(|_| BUILDKIT_REGISTRY_PORT);
    let registry = Registry::open(&work.join("registry"), port)?;
    let base = base_ref(&registry);
    publish_base_image(&img, &work, &base)?;
    let with = Builders {
        img: &img,
        buildkit: buildkit.as_ref(),
        runs: options.runs,
    };

    let mut rows = Vec::new();
    if options.runs_group("1") {
        rows.extend(ParallelStages::new(&work, &base)?.measure(&with, &registry)?);
    }
    if options.runs_group("3") {
        let big = BigContext::new(&work)?;
        rows.push(big.measure_tagged(&with)?);
        rows.extend(big.measure_oci(&with)?);
    }
    let mut pods = None;
    if options.runs_group("4") || options.runs_group("5") {
        let real_world = RealWorld::new(&img, &work, &root.join("target/bench-cache"), &registry)?;
        if options.runs_group("4") {
            rows.extend(real_world.measure(&with)?);
        }
        if options.runs_group("5") {
            let [a, b] = CiCache::new(&work, real_world.base(), &registry)?.measure(&with)?;
            pods = Some(pod_ratios(&a, &b));
            rows.extend([a, b]);
        }
    }

    let mut report = String::new();
    let only = if options.only.is_empty() {
        String::new()
    } else {
        format!(" --only {}", options.only.join(","))
    };
    writeln!(
        report,
        "Command: `cargo xtask bench --runs {}{only}` ({}; medians of {} runs each; BuildKit {}).\n",
        options.runs,
        machine_summary(),
        options.runs,
        if buildkit.is_some() { "through BUILDCTL" } else { "skipped: BUILDCTL unset" },
    )?;
    writeln!(
        report,
        "| scenario | img | buildah | buildah --jobs 4 | BuildKit | `tar \\| pigz` | img / fastest builder | img / `tar \\| pigz` | img peak RSS | buildah peak RSS |"
    )?;
    writeln!(
        report,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for row in &rows {
        writeln!(report, "{}", row.line(buildkit.is_some()))?;
    }
    if let Some(pods) = pods {
        writeln!(report, "\n{pods}")?;
    }
    print!("{report}");
    if options.write {
        record(root, &report)?;
        println!("recorded in BENCHMARKS.md");
    }
    Ok(())
}

/// Scenario 5's own figure: pod B's median time as a share of pod A's, per builder.
fn pod_ratios(pod_a: &Row, pod_b: &Row) -> String {
    let shares: Vec<String> = pod_a
        .series
        .iter()
        .filter_map(|a| {
            let b = pod_b.get(a.builder)?;
            Some(format!(
                "{} {:.0}%",
                a.builder,
                100.0 * b.median_wall().as_secs_f64() / a.median_wall().as_secs_f64()
            ))
        })
        .collect();
    format!(
        "Scenario 5, pod B / pod A (goal: at most 10%): {}.",
        shares.join(", ")
    )
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

fn machine_summary() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores")
}

/// Replaces the generated section of BENCHMARKS.md.
fn record(root: &Path, report: &str) -> Result<()> {
    let path = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).context("could not read BENCHMARKS.md")?;
    let (Some(begin), Some(end)) = (text.find(BEGIN_MARKER), text.find(END_MARKER)) else {
        bail!("BENCHMARKS.md has no `{BEGIN_MARKER}` … `{END_MARKER}` section");
    };
    let updated = format!("{}{BEGIN_MARKER}\n{report}{}", &text[..begin], &text[end..]);
    std::fs::write(&path, updated).context("could not write BENCHMARKS.md")
}

/// Runs `command` to completion with its output discarded, failing on a non-zero exit.
pub(crate) fn quiet(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Runs `command` once, returning its wall time and the peak RSS of its process tree.
pub(crate) fn measure(command: &mut Command) -> Result<Sample> {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {command:?}"))?;
    let (status, peak_rss_kib, stderr) = wait_with_rusage(child)?;
    let wall = started.elapsed();
    if status != 0 {
        bail!("{command:?} failed with status {status}\n{stderr}");
    }
    Ok(Sample { wall, peak_rss_kib })
}

/// Waits for `child` with `wait4`, which reports the largest resident set of the child and of
/// the descendants it waited for.
fn wait_with_rusage(mut child: Child) -> Result<(i32, u64, String)> {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        pipe.read_to_string(&mut stderr).ok();
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage point to valid memory.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss as u64, stderr))
}

/// Builds the base image with img and pushes it to the benchmark registry.
fn publish_base_image(img: &Path, work: &Path, reference: &str) -> Result<()> {
    let context = work.join("base-context");
    std::fs::create_dir_all(&context)?;
    std::fs::copy("/bin/busybox", context.join("busybox"))
        .context("could not copy /bin/busybox (apt-get install busybox-static)")?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )?;
    let state = work.join("base-state");
    quiet(&mut img_build(img, &state, reference, &context))?;
    let mut push = Command::new(img);
    push.arg("--state").arg(&state).args(["push", reference]);
    quiet(&mut push)
}

fn build_img_release(root: &Path) -> Result<PathBuf> {
    crate::run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "img-cli",
        "--bin",
        "img",
    ]))?;
    Ok(crate::target_dir(root).join("release/img"))
}

/// The busybox base image every scenario pulls from the benchmark registry.
pub(crate) fn base_ref(registry: &Registry) -> String {
    format!("{}/bench/busybox:latest", registry.host)
}
