//! `cargo xtask bench`: whole builds with img and with its peers, side by side in one run.
//!
//! Every scenario runs several times per builder; the table quotes medians and img/peer ratios
//! from the same run, because the machines are noisy. Peak RSS is the largest resident set of
//! the builder's process tree, read from `wait4`'s rusage.
//!
//! Scenarios (BENCHMARKS.md has the targets):
//! 1. four independent stages that each `RUN sleep 2`, plus a final stage copying their outputs:
//!    cold (base image present, no build cache);
//! 2. the same, fully cached;
//! 3. `COPY` of a 20,000-file, 200 MB context and export, cold;
//! 4. a real-world Dockerfile (a C project built with gcc and make on a Debian base image made
//!    with debootstrap), cold, then after changing one source file.
//!
//! The base image is a busybox root filesystem built by img from Debian's static busybox and
//! pushed to Debian's docker-registry on a loopback port, where every builder pulls it from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::registry::Registry;

/// Where the generated tables go in BENCHMARKS.md.
const BEGIN_MARKER: &str = "<!-- cargo xtask bench: begin -->";
const END_MARKER: &str = "<!-- cargo xtask bench: end -->";

/// Options of `cargo xtask bench`.
struct BenchOptions {
    runs: usize,
    write: bool,
}

impl BenchOptions {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = BenchOptions {
            runs: 5,
            write: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--runs" => {
                    let value = args.next().context("--runs needs a number")?;
                    options.runs = value.parse().context("--runs needs a number")?;
                }
                "--write" => options.write = true,
                other => bail!("unknown option {other}; expected --runs N or --write"),
            }
        }
        if options.runs == 0 {
            bail!("--runs must be at least 1");
        }
        Ok(options)
    }
}

/// One timed run of a builder.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    peak_rss_kib: u64,
}

/// The samples of one builder in one scenario.
struct Series {
    builder: &'static str,
    samples: Vec<Sample>,
}

impl Series {
    fn new(builder: &'static str) -> Self {
        Series {
            builder,
            samples: Vec::new(),
        }
    }

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

/// Runs the benchmarks and prints (and with `--write`, records) the table.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = BenchOptions::parse(args)?;
    for program in ["buildah", "docker-registry", "busybox", "debootstrap"] {
        if !crate::system::on_path(program) {
            bail!("{program} is needed for the benchmarks: run `cargo xtask test` once as root, or apt-get install it");
        }
    }
    let img = build_img_release(root)?;
    let work = root.join("target/bench-work");
    if work.exists() {
        std::fs::remove_dir_all(&work).context("could not clear target/bench-work")?;
    }
    std::fs::create_dir_all(&work)?;

    let registry = Registry::start(&work.join("registry"))?;
    let base = format!("{}/bench/busybox:latest", registry.address);
    publish_base_image(&img, &work, &base)?;

    let mut report = String::new();
    writeln!(
        report,
        "Command: `cargo xtask bench --runs {}` ({}; medians of {} runs each).\n",
        options.runs,
        machine_summary(),
        options.runs
    )?;
    writeln!(
        report,
        "| scenario | img median | buildah median | img/buildah | img peak RSS | buildah peak RSS |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;

    let parallel = ParallelStages::new(&work, &base)?;
    let (cold, cached) = parallel.measure(&img, &registry, options.runs)?;
    push_row(&mut report, "1. four `RUN sleep 2` stages, cold", &cold)?;
    push_row(&mut report, "2. the same, fully cached", &cached)?;

    let big = BigContext::new(&work)?;
    let copy = big.measure(&img, options.runs)?;
    push_row(
        &mut report,
        "3. `COPY` of 20,000 files (200 MB) and export",
        &copy,
    )?;

    let real_world = RealWorld::new(&img, &work, &root.join("target/bench-cache"), &registry)?;
    let [cold, edit] = real_world.measure(&img, options.runs)?;
    push_row(&mut report, "4. C project on Debian, cold", &cold)?;
    push_row(
        &mut report,
        "4. the same after editing one source file",
        &edit,
    )?;

    print!("{report}");
    if options.write {
        record(root, &report)?;
        println!("recorded in BENCHMARKS.md");
    }
    Ok(())
}

fn push_row(report: &mut String, scenario: &str, series: &[Series; 2]) -> Result<()> {
    let [img, peer] = series;
    let ratio = img.median_wall().as_secs_f64() / peer.median_wall().as_secs_f64();
    writeln!(
        report,
        "| {scenario} | {} | {} | {ratio:.2} | {:.0} MiB | {:.0} MiB |",
        format_duration(img.median_wall()),
        format_duration(peer.median_wall()),
        img.max_rss_mib(),
        peer.max_rss_mib(),
    )?;
    debug_assert_eq!((img.builder, peer.builder), ("img", "buildah"));
    Ok(())
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

/// Scenarios 1 and 2: four independent sleeping stages and a final stage that copies them.
struct ParallelStages {
    context: PathBuf,
}

impl ParallelStages {
    fn new(work: &Path, base: &str) -> Result<Self> {
        let context = work.join("parallel-context");
        std::fs::create_dir_all(&context)?;
        let mut dockerfile = String::new();
        for stage in ["a", "b", "c", "d"] {
            writeln!(dockerfile, "FROM {base} AS {stage}")?;
            writeln!(dockerfile, "RUN sleep 2 && echo {stage} > /out-{stage}\n")?;
        }
        writeln!(dockerfile, "FROM {base}")?;
        for stage in ["a", "b", "c", "d"] {
            writeln!(dockerfile, "COPY --from={stage} /out-{stage} /")?;
        }
        std::fs::write(context.join("Dockerfile"), dockerfile)?;
        Ok(ParallelStages { context })
    }

    /// Cold runs (fresh state each time, base image pulled beforehand), then cached runs.
    fn measure(
        &self,
        img: &Path,
        registry: &Registry,
        runs: usize,
    ) -> Result<([Series; 2], [Series; 2])> {
        let mut img_cold = Series {
            builder: "img",
            samples: vec![],
        };
        let mut img_cached = Series {
            builder: "img",
            samples: vec![],
        };
        let mut bud_cold = Series {
            builder: "buildah",
            samples: vec![],
        };
        let mut bud_cached = Series {
            builder: "buildah",
            samples: vec![],
        };
        let work = self.context.parent().expect("context has a parent");
        for run in 0..runs {
            let state = work.join(format!("img-state-{run}"));
            quiet(&mut img_pull(img, &state, &registry.base_ref()))?;
            let mut build = img_build(img, &state, "bench-parallel", &self.context);
            img_cold.samples.push(measure(&mut build)?);
            img_cached.samples.push(measure(&mut build)?);
            std::fs::remove_dir_all(&state).ok();

            let buildah_root = work.join(format!("buildah-{run}"));
            quiet(&mut buildah_pull(&buildah_root, &registry.base_ref()))?;
            let mut bud = buildah_bud(&buildah_root, "bench-parallel", &self.context);
            bud_cold.samples.push(measure(&mut bud)?);
            bud_cached.samples.push(measure(&mut bud)?);
            remove_buildah_root(&buildah_root);
        }
        Ok(([img_cold, bud_cold], [img_cached, bud_cached]))
    }
}

/// Scenario 3: a 20,000-file, 200 MB context copied into an image.
struct BigContext {
    context: PathBuf,
}

impl BigContext {
    fn new(work: &Path) -> Result<Self> {
        let context = work.join("big-context");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for dir in 0..100 {
            let dir_path = context.join(format!("dir{dir:03}"));
            std::fs::create_dir_all(&dir_path)?;
            for file in 0..200 {
                let mut data = vec![0u8; 10 * 1024];
                for chunk in data.chunks_mut(8) {
                    // xorshift: incompressible content, cheap to make.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
                }
                std::fs::write(dir_path.join(format!("file{file:03}.bin")), data)?;
            }
        }
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY . /data\n")?;
        Ok(BigContext { context })
    }

    fn measure(&self, img: &Path, runs: usize) -> Result<[Series; 2]> {
        let work = self.context.parent().expect("context has a parent");
        let mut img_series = Series {
            builder: "img",
            samples: vec![],
        };
        let mut bud_series = Series {
            builder: "buildah",
            samples: vec![],
        };
        for run in 0..runs {
            let state = work.join(format!("img-copy-state-{run}"));
            img_series.samples.push(measure(&mut img_build(
                img,
                &state,
                "bench-copy",
                &self.context,
            ))?);
            std::fs::remove_dir_all(&state).ok();

            let buildah_root = work.join(format!("buildah-copy-{run}"));
            let mut bud = buildah_bud(&buildah_root, "bench-copy", &self.context);
            bud_series.samples.push(measure(&mut bud)?);
            remove_buildah_root(&buildah_root);
        }
        Ok([img_series, bud_series])
    }
}

/// `img --state STATE build --progress=plain -t TAG CONTEXT`.
fn img_build(img: &Path, state: &Path, tag: &str, context: &Path) -> Command {
    let mut command = Command::new(img);
    command
        .arg("--state")
        .arg(state)
        .args(["build", "--progress=plain", "-t", tag])
        .arg(context);
    command
}

/// `img --state STATE pull REFERENCE`.
fn img_pull(img: &Path, state: &Path, reference: &str) -> Command {
    let mut command = Command::new(img);
    command.arg("--state").arg(state).args(["pull", reference]);
    command
}

/// `buildah bud` as a user would run it here (runc, host network), with its layer cache.
fn buildah_bud(root: &Path, tag: &str, context: &Path) -> Command {
    let mut command = buildah(root);
    command
        .args([
            "bud",
            "--runtime",
            "runc",
            "--network",
            "host",
            "--layers",
            "--tls-verify=false",
            "-q",
            "-t",
            tag,
        ])
        .arg(context);
    command
}

/// `buildah pull` of a base image from the loopback registry.
fn buildah_pull(root: &Path, reference: &str) -> Command {
    let mut command = buildah(root);
    command.args(["pull", "-q", "--tls-verify=false", reference]);
    command
}

/// Scenario 4: a C project built with gcc and make on a Debian base image.
struct RealWorld {
    context: PathBuf,
    base: String,
}

/// The source file scenario 4 edits between its cold build and its rebuild.
const EDITED_SOURCE: &str = "src/greet.c";

impl RealWorld {
    fn new(img: &Path, work: &Path, cache: &Path, registry: &Registry) -> Result<Self> {
        let rootfs = cache.join("debian-rootfs");
        crate::debian::bookworm_rootfs(&rootfs, &["gcc", "libc6-dev", "make"])?;
        let base = format!("{}/bench/debian:bookworm", registry.address);
        let scratch = work.join("debian-base");
        crate::debian::publish_image(
            img,
            &rootfs,
            &scratch.join("context"),
            &scratch.join("state"),
            &base,
        )?;
        std::fs::remove_dir_all(&scratch).ok();

        let context = work.join("c-project");
        write_c_project(&context, &base)?;
        Ok(RealWorld { context, base })
    }

    /// Cold builds (base image pulled beforehand) and rebuilds after one source edit.
    fn measure(&self, img: &Path, runs: usize) -> Result<[[Series; 2]; 2]> {
        let work = self.context.parent().expect("context has a parent");
        let source = self.context.join(EDITED_SOURCE);
        let original = std::fs::read_to_string(&source)?;
        let mut series = [
            [Series::new("img"), Series::new("buildah")],
            [Series::new("img"), Series::new("buildah")],
        ];
        for run in 0..runs {
            for (column, builder) in ["img", "buildah"].into_iter().enumerate() {
                std::fs::write(&source, &original)?;
                let scratch = work.join(format!("real-world-{builder}-{run}"));
                let mut build = if builder == "img" {
                    quiet(&mut img_pull(img, &scratch, &self.base))?;
                    img_build(img, &scratch, "bench-real-world", &self.context)
                } else {
                    quiet(&mut buildah_pull(&scratch, &self.base))?;
                    buildah_bud(&scratch, "bench-real-world", &self.context)
                };
                series[0][column].samples.push(measure(&mut build)?);
                std::fs::write(
                    &source,
                    original.replace("hello", &format!("hello again {run}")),
                )?;
                series[1][column].samples.push(measure(&mut build)?);
                if builder == "img" {
                    std::fs::remove_dir_all(&scratch).ok();
                } else {
                    remove_buildah_root(&scratch);
                }
            }
        }
        std::fs::write(&source, original)?;
        Ok(series)
    }
}

/// A small C program with a Makefile and a Dockerfile that builds it on `base`.
fn write_c_project(context: &Path, base: &str) -> Result<()> {
    let src = context.join("src");
    std::fs::create_dir_all(&src)?;
    let mut objects = Vec::new();
    for unit in 0..24 {
        let mut code = String::from("#include <stdio.h>\n#include <string.h>\n");
        for function in 0..40 {
            writeln!(
                code,
                "unsigned long unit{unit}_f{function}(const char *s) {{ unsigned long h = {function}; \
                 for (size_t i = 0; i < strlen(s); i++) h = h * 31 + (unsigned char)s[i] + {unit}; return h; }}"
            )?;
        }
        std::fs::write(src.join(format!("unit{unit}.c")), code)?;
        objects.push(format!("src/unit{unit}.o"));
    }
    std::fs::write(
        src.join("greet.c"),
        "#include <stdio.h>\nvoid greet(void) { puts(\"hello from the benchmark\"); }\n",
    )?;
    std::fs::write(
        src.join("main.c"),
        "void greet(void);\nint main(void) { greet(); return 0; }\n",
    )?;
    objects.extend(["src/greet.o".to_string(), "src/main.o".to_string()]);
    std::fs::write(
        context.join("Makefile"),
        format!(
            "CFLAGS ?= -O2\nPREFIX ?= /usr/local\nOBJS = {}\n\nhello: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n\
             install: hello\n\tinstall -m 0755 hello $(PREFIX)/bin/hello\n",
            objects.join(" ")
        ),
    )?;
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN useradd --create-home app\nWORKDIR /src\nCOPY Makefile ./\n\
             COPY src/ src/\nRUN make -j2 && make install\nUSER app\nCMD [\"hello\"]\n"
        ),
    )?;
    Ok(())
}

fn buildah(root: &Path) -> Command {
    let mut command = Command::new("buildah");
    command
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("runroot"));
    command
}

fn remove_buildah_root(root: &Path) {
    // buildah leaves overlay mounts behind only when a run crashed; unmount before deleting.
    let _ = buildah(root)
        .args(["rm", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = buildah(root)
        .args(["rmi", "--all", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(root);
}

/// Runs `command` to completion with its output discarded, failing on a non-zero exit.
fn quiet(command: &mut Command) -> Result<()> {
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
fn measure(command: &mut Command) -> Result<Sample> {
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

impl Registry {
    fn base_ref(&self) -> String {
        format!("{}/bench/busybox:latest", self.address)
    }
}
