//! The pod test (`cargo xtask pod`, and the last part of `cargo xtask test`): img's own image,
//! built by img from the root Dockerfile, builds an image with a RUN step inside containers
//! set up the way the pods of `deploy/kubernetes` are. podman with runc stands in for the
//! kubelet and its runtime:
//!
//! - a pod with its own user namespace (`hostUsers: false`), running as root of it, seccomp and
//!   AppArmor unconfined, /proc unmasked;
//! - a pod in the host's user namespace running as uid 1000, seccomp and AppArmor unconfined,
//!   /proc unmasked;
//! - the Kubernetes Job's pod: its own user namespace, uid 1000, and the subordinate ids of the
//!   manifests' ConfigMap;
//! - a pod with the runtime's default /proc masks, where `img doctor` must fail and name
//!   `procMount: Unmasked`, and where a build without RUN steps still works (the variant for
//!   clusters that cannot unmask /proc);
//! - a pod with its own user namespace and the runtime's default seccomp profile, which allows
//!   namespaces and mounts but not sethostname(2): `img doctor` must fail and name
//!   `seccompProfile.type: Unconfined`.
//!
//! In every pod the RUN step must run as root of a user namespace of its own (its namespace
//! differs from the pod's) with every id the pod gives img mapped (it counts them in its uid
//! map, and chowns a file to two ids other than its own).
//!
//! img's image is built by img from the root Dockerfile in one of two ways:
//!
//! - by default (and in `cargo xtask test`), with `IMG_BINARY=context`: the Dockerfile's final
//!   stage takes the binary cargo has just built (stripped like the from-source build strips
//!   it) from a context of that binary and the Dockerfile. Compiling the workspace again inside
//!   a RUN step would take 20 minutes or more of the CI budget on two cores for no more
//!   coverage of the pods;
//! - with `--from-source`, the documented build: the Dockerfile compiles img in its build stage
//!   with Debian's Rust and cache mounts.
//!
//! There is no Docker Hub here: the `debian:bookworm-slim` stand-in is made with debootstrap
//! (kept in `target/pod-test` between runs) and served by Debian's docker-registry on loopback.
//! img's state directories for building its own image are kept there too, so a rerun reuses
//! the layers and, from source, the cargo caches of the Dockerfile's cache mounts.

mod manifests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::registry::Registry;

/// `podman run` options every pod gets: runc (crun fails on this machine's hybrid cgroups), the
/// host's network (slirp4netns needs /dev/net/tun) and limits a nested runc may set.
const POD_BASE: &[&str] = &[
    "--rm",
    "--runtime",
    "runc",
    "--network",
    "host",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=4096:4096",
];

/// The pod's own user namespace, as the kubelet gives a `hostUsers: false` pod: 65536 ids.
const OWN_USER_NAMESPACE: &[&str] = &["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"];

/// seccomp and AppArmor profiles that allow user namespaces and mounts.
const UNCONFINED: &[&str] = &[
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
];

/// `procMount: Unmasked`.
const UNMASKED_PROC: &[&str] = &["--security-opt", "unmask=/proc/*"];

/// The layer compression of the images the test makes: none. The img under test is a debug
/// build, whose gzip compresses the 120 MB Debian layer at well under 1 MB/s on a busy
/// machine: four minutes of the CI budget per image, for nothing the pods check.
const TEST_COMPRESSION: &str = "uncompressed";

/// The name of the Debian base in the state directory img's image is built in.
const STABLE_BASE: &str = "localhost/pod-test/debian:bookworm-slim";

/// The ids of a pod with its own user namespace.
const POD_IDS: u64 = 65536;

/// The subordinate ids the Dockerfile gives the user img (100000-165535).
const IMAGE_SUBORDINATE_IDS: u64 = 65536;

/// How long one pod may take (a build of a two-step Dockerfile); a hung pod fails the test.
const POD_TIMEOUT: Duration = Duration::from_secs(600);

/// How long building img's image from source may take: a cold build compiles the workspace in
/// a RUN step (about 23 CPU-minutes, so 12 minutes or more on two idle cores; far longer on a
/// busy machine).
const SOURCE_IMAGE_TIMEOUT: Duration = Duration::from_secs(80 * 60);

/// How long building img's image around a built binary may take (the final stage's apt-get).
const BINARY_IMAGE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Where the binary in img's image comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ImageSource {
    /// The Dockerfile compiles it (`IMG_BINARY=source`, the default build).
    FromSource,
    /// The binary under test, put in the build context (`IMG_BINARY=context`).
    Binary,
}

impl ImageSource {
    /// `cargo xtask pod [--from-source]`.
    fn parse(args: &[String]) -> Result<ImageSource> {
        match args {
            [] => Ok(ImageSource::Binary),
            [flag] if flag == "--from-source" => Ok(ImageSource::FromSource),
            _ => bail!("usage: cargo xtask pod [--from-source] (got {args:?})"),
        }
    }

    /// The state directory under `cache` its builds keep between runs: apart, so that pruning
    /// the binary builds' leftovers never drops the cargo caches of the source builds.
    fn state(self, cache: &Path) -> PathBuf {
        match self {
            ImageSource::FromSource => cache.join("state-source"),
            ImageSource::Binary => cache.join("state-binary"),
        }
    }
}

/// Runs the pod test with the host's `img` binary (`args`: `cargo xtask pod`'s); prints one
/// line per case and a summary.
pub fn run(root: &Path, img: &Path, args: &[String]) -> Result<()> {
    let source = ImageSource::parse(args)?;
    for program in [
        "podman",
        "runc",
        "docker-registry",
        "debootstrap",
        "timeout",
    ] {
        if !crate::system::on_path(program) {
            bail!("{program} is needed for the pod test: run `cargo xtask test` once as root, or apt-get install it");
        }
    }
    let started = Instant::now();
    let manifests = manifests::check_deploy(root).map(|pods| {
        println!("pod: {pods} pod templates under deploy/ are non-root and unprivileged")
    });
    let test = PodTest::prepare(root, img, source)?;
    let mut outcomes = vec![("deploy/ manifests".to_owned(), manifests)];
    outcomes.extend(test.run_pods());
    let mut failed = 0;
    for (case, outcome) in &outcomes {
        match outcome {
            Ok(()) => println!("pod: ok   {case}"),
            Err(err) => {
                failed += 1;
                println!("pod: FAIL {case}: {err:#}");
            }
        }
    }
    println!(
        "pod: took {} in all (logs in {})",
        seconds(started.elapsed()),
        test.logs.display()
    );
    println!("pod: {} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 {
        bail!("{failed} pod case(s) failed");
    }
    Ok(())
}

/// What the pods need: img's image loaded into podman, a registry with the Debian base, and the
/// build contexts.
struct PodTest {
    /// Keeps the base image reachable while the pods pull it.
    _registry: Registry,
    /// Removes img's image from podman's store when the test ends.
    image: LoadedImage,
    work: PathBuf,
    logs: PathBuf,
    subordinate_ids: manifests::SubordinateIds,
}

impl PodTest {
    fn prepare(root: &Path, img: &Path, source: ImageSource) -> Result<PodTest> {
        let subordinate_ids = manifests::SubordinateIds::from_deploy(root)?;
        let cache = crate::target_dir(root).join("pod-test");
        let work = cache.join("work");
        if work.exists() {
            std::fs::remove_dir_all(&work).context("could not clear target/pod-test/work")?;
        }
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs)?;

        let phase = Instant::now();
        let rootfs = cache.join("debian-bookworm");
        crate::debian::bookworm_rootfs(&rootfs, &[])?;
        let registry = Registry::open(&work.join("registry"), None)?;
        let base = format!("{}/library/debian:bookworm-slim", registry.host);
        let state = source.state(&cache);
        let base_context = work.join("base-context");
        crate::debian::publish_image(img, &rootfs, &base_context, &state, &base, TEST_COMPRESSION)?;
        rename_base(img, &state, &base, &logs)?;
        println!(
            "pod: Debian base pushed to {base} in {}",
            seconds(phase.elapsed())
        );

        let phase = Instant::now();
        let tag = format!("localhost/img-pod-test:{}", std::process::id());
        let log = logs.join("img-image.log");
        let image_context = match source {
            ImageSource::FromSource => root.to_path_buf(),
            ImageSource::Binary => binary_context(root, img, &work.join("image-context"))?,
        };
        build_img_image(&image_context, source, img, &state, STABLE_BASE, &tag, &log)?;
        println!(
            "pod: img's image built by img ({}) in {} (state kept in {})",
            match source {
                ImageSource::FromSource => "from source",
                ImageSource::Binary => "around the binary under test",
            },
            seconds(phase.elapsed()),
            state.display()
        );

        let phase = Instant::now();
        let archive = work.join("img-image.tar");
        let mut save = img_at(img, &state);
        save.args(["save", "--format", "docker", "-o"])
            .arg(&archive)
            .arg(&tag);
        run_logged(&mut save, &logs.join("save.log"), POD_TIMEOUT)?;
        // The state directory is kept between runs; its layers and cache are, the name is not.
        run_logged(
            img_at(img, &state).args(["rm", &tag]),
            &logs.join("untag.log"),
            POD_TIMEOUT,
        )?;
        if source == ImageSource::Binary {
            // Every run adds a layer with a new binary; what no name refers to goes, the
            // Debian layers stay cached.
            run_logged(
                img_at(img, &state).args(["prune", "--keep-storage", "1GB"]),
                &logs.join("prune.log"),
                POD_TIMEOUT,
            )?;
        }
        let mut load = Command::new("podman");
        load.args(["load", "-i"]).arg(&archive);
        run_logged(&mut load, &logs.join("podman-load.log"), POD_TIMEOUT)?;
        let image = LoadedImage(tag);
        std::fs::remove_file(&archive).ok();
        println!(
            "pod: saved and loaded into podman in {}",
            seconds(phase.elapsed())
        );

        write_contexts(&work, &base, &subordinate_ids)?;
        Ok(PodTest {
            _registry: registry,
            image,
            work,
            logs,
            subordinate_ids,
        })
    }

    /// Every case, each with its outcome; a failing case does not stop the others.
    fn run_pods(&self) -> Vec<(String, Result<()>)> {
        let run_context = self.work.join("run-context");
        let ids = self.work.join("subordinate-ids");
        let subid_mounts = [
            "-v".to_owned(),
            format!("{}:/etc/subuid:ro", ids.join("subuid").display()),
            "-v".to_owned(),
            format!("{}:/etc/subgid:ro", ids.join("subgid").display()),
        ];
        let mut outcomes = Vec::new();

        // The runtime's default seccomp profile is not enough even here: podman's (like
        // containerd's) allows sethostname(2) only to containers holding CAP_SYS_ADMIN, and
        // every RUN step sets its own hostname. The pods of deploy/kubernetes are Unconfined.
        let options = [
            OWN_USER_NAMESPACE,
            UNCONFINED,
            UNMASKED_PROC,
            &["--user", "0"],
        ]
        .concat();
        outcomes.push((
            "own user namespace, root: RUN with the pod's 65536 ids".to_owned(),
            self.build_in_pod("userns-root", &options, &run_context, POD_IDS),
        ));

        let options = [UNCONFINED, UNMASKED_PROC, &["--user", "1000:1000"]].concat();
        outcomes.push((
            "host user namespace, uid 1000: RUN with the image's subordinate ids".to_owned(),
            self.build_in_pod(
                "host-uid1000",
                &options,
                &run_context,
                1 + IMAGE_SUBORDINATE_IDS,
            ),
        ));

        let mut options = [
            OWN_USER_NAMESPACE,
            UNCONFINED,
            UNMASKED_PROC,
            &["--user", "1000:1000"],
        ]
        .concat();
        options.extend(subid_mounts.iter().map(String::as_str));
        outcomes.push((
            "the Job's pod (own user namespace, uid 1000, the ConfigMap's ids)".to_owned(),
            self.build_in_pod(
                "job-uid1000",
                &options,
                &run_context,
                1 + self.subordinate_ids.count(),
            ),
        ));

        let masked = [UNCONFINED, &["--user", "1000:1000"]].concat();
        outcomes.push((
            "default /proc masks: img doctor fails and names procMount: Unmasked".to_owned(),
            self.doctor_names_proc_mount(&masked),
        ));
        outcomes.push((
            "default /proc masks: a build without RUN steps works".to_owned(),
            self.build_without_run(&masked),
        ));

        let default_seccomp = [
            OWN_USER_NAMESPACE,
            UNMASKED_PROC,
            &["--security-opt", "apparmor=unconfined", "--user", "0"],
        ]
        .concat();
        outcomes.push((
            "default seccomp profile: img doctor fails and names seccompProfile".to_owned(),
            self.doctor_names(
                "seccomp-doctor",
                &default_seccomp,
                "seccompProfile.type: Unconfined",
            ),
        ));
        outcomes
    }

    /// Builds the RUN context in a pod and checks what the step saw: root of a user namespace
    /// that is not the pod's, with `ids` ids mapped (the step's uid map is relative to the
    /// namespace img itself runs in, which may be one of its own, so only the count is fixed),
    /// and chown to ids other than its own working.
    fn build_in_pod(&self, name: &str, options: &[&str], context: &Path, ids: u64) -> Result<()> {
        let script = "echo \"pod-userns $(readlink /proc/self/ns/user)\"; \
                      exec img build --progress=plain -t pod-test /context";
        let output = self.pod(name, options, context, script)?;
        let pod_ns = marker(&output, "pod-userns ").context("the pod printed no namespace")?;
        let step_ns = marker(&output, "step-userns ").context("the RUN step printed nothing")?;
        let step_uid = marker(&output, "step-uid ").context("the RUN step printed no uid")?;
        let uid_map = marker(&output, "step-uid_map ").context("no uid_map")?;
        if step_ns == pod_ns {
            bail!("the RUN step ran in the pod's own user namespace ({pod_ns})");
        }
        if step_uid != "0" {
            bail!("the RUN step ran as uid {step_uid}, not as root of its namespace");
        }
        let mapped = mapped_ids(&uid_map)
            .with_context(|| format!("the RUN step's uid_map {uid_map:?} does not parse"))?;
        if mapped != ids {
            bail!("the RUN step has {mapped} ids (uid_map {uid_map:?}), expected {ids}");
        }
        if marker(&output, "step-chown ").as_deref() != Some("ok") {
            bail!("the RUN step could not chown to ids 1 and 65534 (uid_map {uid_map:?})");
        }
        Ok(())
    }

    fn doctor_names_proc_mount(&self, options: &[&str]) -> Result<()> {
        self.doctor_names("masked-doctor", options, "procMount: Unmasked")
    }

    /// Runs `img doctor` in a pod with `options`: it must fail and name `setting`.
    fn doctor_names(&self, name: &str, options: &[&str], setting: &str) -> Result<()> {
        let script = "img doctor; echo \"doctor-exit $?\"";
        let output = self.pod(name, options, &self.work.join("copy-context"), script)?;
        let exit = marker(&output, "doctor-exit ").context("img doctor did not run")?;
        if exit == "0" {
            bail!("img doctor passed:\n{output}");
        }
        if !output.contains(setting) {
            bail!("img doctor failed without naming {setting}:\n{output}");
        }
        Ok(())
    }

    fn build_without_run(&self, options: &[&str]) -> Result<()> {
        let script = "img build --progress=plain -t copy-only /context && echo \"copy-build ok\"";
        let output = self.pod(
            "masked-copy",
            options,
            &self.work.join("copy-context"),
            script,
        )?;
        if marker(&output, "copy-build ").as_deref() != Some("ok") {
            bail!("the build without RUN steps failed:\n{output}");
        }
        Ok(())
    }

    /// Runs `script` with /bin/sh in a pod of img's image with `options`, `context` mounted at
    /// /context; returns its output (also kept in the logs), failing when the pod fails.
    fn pod(&self, name: &str, options: &[&str], context: &Path, script: &str) -> Result<String> {
        let mut podman = Command::new("podman");
        podman
            .arg("run")
            .args(POD_BASE)
            .args(options)
            .arg("-v")
            .arg(format!("{}:/context:ro", context.display()))
            .args(["--entrypoint", "/bin/sh"])
            .arg(&self.image.0)
            .args(["-c", script]);
        let log = self.logs.join(format!("{name}.log"));
        let started = Instant::now();
        let result = run_logged(&mut podman, &log, POD_TIMEOUT);
        println!("pod: {name} ran in {}", seconds(started.elapsed()));
        result?;
        Ok(std::fs::read_to_string(&log)?)
    }
}

/// A podman image removed from podman's store on drop.
struct LoadedImage(String);

impl Drop for LoadedImage {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `img --state STATE`.
fn img_at(img: &Path, state: &Path) -> Command {
    let mut command = Command::new(img);
    command.arg("--state").arg(state);
    command
}

/// Names the base [`STABLE_BASE`] in `state` (it was built there), which is what the image
/// build uses: a FROM's cache key includes its reference, and the registry's port changes from
/// run to run, so building from the registry's name would never reuse the last run's layers.
fn rename_base(img: &Path, state: &Path, base: &str, logs: &Path) -> Result<()> {
    let log = logs.join("base-rename.log");
    run_logged(
        img_at(img, state).args(["tag", base, STABLE_BASE]),
        &log,
        POD_TIMEOUT,
    )?;
    run_logged(img_at(img, state).args(["rm", base]), &log, POD_TIMEOUT)
}

/// The build context of img's image around the binary under test: the root Dockerfile and
/// the binary as `img`, without its debug information as the Dockerfile's own build strips it.
fn binary_context(root: &Path, img: &Path, context: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(context)?;
    std::fs::copy(root.join("Dockerfile"), context.join("Dockerfile"))
        .context("could not copy the root Dockerfile")?;
    let mut strip = Command::new("strip");
    strip
        .arg("--strip-debug")
        .arg("-o")
        .arg(context.join("img"))
        .arg(img);
    crate::run(&mut strip).context("strip (binutils) is needed to put img in its image")?;
    Ok(context.to_path_buf())
}

/// `img build` of img's Dockerfile in `context` on the Debian base. The host's CA bundle goes
/// in as the `cacerts` secret: apt and, from source, cargo in the RUN steps reach their
/// archives through whatever proxy the host uses, and the bundle stays out of the image.
fn build_img_image(
    context: &Path,
    source: ImageSource,
    img: &Path,
    state: &Path,
    base: &str,
    tag: &str,
    log: &Path,
) -> Result<()> {
    let mut build = img_at(img, state);
    build
        .args(["build", "--progress=plain", "-t", tag])
        .arg("--build-arg")
        .arg(format!("BASE_IMAGE={base}"));
    let limit = match source {
        ImageSource::FromSource => SOURCE_IMAGE_TIMEOUT,
        ImageSource::Binary => {
            build.args(["--build-arg", "IMG_BINARY=context"]);
            build.args(["--compression", TEST_COMPRESSION]);
            BINARY_IMAGE_TIMEOUT
        }
    };
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.is_file() {
        build
            .arg("--secret")
            .arg(format!("id=cacerts,src={}", bundle.display()));
    }
    build.arg(context);
    run_logged(&mut build, log, limit)
}

/// The build contexts: one whose RUN step reports the namespace it runs in, one without RUN.
fn write_contexts(work: &Path, base: &str, ids: &manifests::SubordinateIds) -> Result<()> {
    let run = work.join("run-context");
    std::fs::create_dir_all(&run)?;
    let mut dockerfile = format!("FROM {base}\n");
    // One line per fact. The prefixes are spelled through `$m` so that only the step's output,
    // not the echo of its command line, contains them.
    writeln!(
        dockerfile,
        "RUN m=step; echo \"$m-userns $(readlink /proc/self/ns/user)\" \\\n\
         \x20&& echo \"$m-uid $(id -u)\" \\\n\
         \x20&& echo \"$m-uid_map $(awk '{{print $1, $2, $3}}' /proc/self/uid_map | paste -sd, -)\" \\\n\
         \x20&& touch /owned && chown 1:1 /owned && chown 65534:65534 /owned \\\n\
         \x20&& echo \"$m-chown ok\""
    )?;
    std::fs::write(run.join("Dockerfile"), dockerfile)?;

    let copy = work.join("copy-context");
    std::fs::create_dir_all(&copy)?;
    std::fs::write(copy.join("greeting"), "hello from a pod\n")?;
    std::fs::write(
        copy.join("Dockerfile"),
        format!("FROM {base}\nCOPY greeting /etc/greeting\nLABEL built-in=pod\n"),
    )?;

    let subordinate = work.join("subordinate-ids");
    std::fs::create_dir_all(&subordinate)?;
    std::fs::write(subordinate.join("subuid"), &ids.subuid)?;
    std::fs::write(subordinate.join("subgid"), &ids.subgid)?;
    Ok(())
}

/// The rest of the first output line that contains `prefix`, after it (progress lines carry a
/// step number and a time before the step's own output).
fn marker(output: &str, prefix: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let at = line.find(prefix)?;
        Some(line[at + prefix.len()..].trim().to_owned())
    })
}

/// How many ids a uid map (`/proc/self/uid_map` lines joined with commas) maps.
fn mapped_ids(uid_map: &str) -> Option<u64> {
    uid_map
        .split(',')
        .map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

/// Runs `command` under `timeout` with standard output and error in `log`; fails with the end
/// of the log when the command fails or runs out of time.
fn run_logged(command: &mut Command, log: &Path, limit: Duration) -> Result<()> {
    let file = std::fs::File::create(log)?;
    let mut timed = Command::new("timeout");
    timed
        .args(["--kill-after=30", &format!("{}", limit.as_secs())])
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let status = timed
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let why = if status.code() == Some(124) {
            format!("ran out of time after {}", seconds(limit))
        } else {
            format!("failed: {status}")
        };
        bail!("{command:?} {why} (log: {})\n{tail}", log.display());
    }
    Ok(())
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_ids_of_a_uid_map() {
        assert_eq!(mapped_ids("0 1000 1,1 100000 65536"), Some(65537));
        assert_eq!(mapped_ids("0 0 65536"), Some(65536));
        assert_eq!(mapped_ids("0 0"), None);
    }

    #[test]
    fn finds_a_marker_after_the_progress_prefix() {
        let output = "#2 [2/2] RUN m=step; echo \"$m-uid $(id -u)\"\n#2 0.023 step-uid 0\n";
        assert_eq!(marker(output, "step-uid "), Some("0".to_owned()));
        assert_eq!(marker(output, "step-userns "), None);
    }

    #[test]
    fn builds_around_the_binary_unless_told_from_source() {
        assert_eq!(ImageSource::parse(&[]).unwrap(), ImageSource::Binary);
        assert_eq!(
            ImageSource::parse(&["--from-source".to_owned()]).unwrap(),
            ImageSource::FromSource
        );
        assert!(ImageSource::parse(&["--bogus".to_owned()]).is_err());
    }
}
