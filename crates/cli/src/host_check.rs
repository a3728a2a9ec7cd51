//! The host check behind `img doctor` and every build: the sandbox's probes of what this host
//! lets a rootless build do, plus which snapshot backend `--backend` ends up with.
//!
//! Running the probes starts a sandbox init, so the result is cached in `<state>/doctor.json`
//! under a key of everything the answers depend on (user, kernel and boot, the user namespace
//! sysctls, /etc/subuid and /etc/subgid, the uidmap helpers, binfmt_misc entries, the img
//! binary itself). `main` refreshes the cache as the user sees the host, before a build
//! re-executes into its user namespace, where the probes would see root and answer for it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use img_sandbox::{DoctorReport, HostPaths, Probe, ProbeResult, ProbeStatus, Sandbox};
use img_snapshot::{Backend, BackendChoice};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The cache file, in the state directory.
const CACHE_FILE: &str = "doctor.json";

/// What the doctor found: the probes, and the backend builds will use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// The sandbox's probes and its verdict on RUN steps.
    #[serde(flatten)]
    pub doctor: DoctorReport,
    /// The snapshot backend `--backend` resolves to here.
    pub backend: BackendPick,
}

/// Which snapshot backend a build gets, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPick {
    /// What `--backend` asked for.
    pub asked: String,
    /// What builds use; `None` when the asked-for backend cannot work.
    pub picked: Option<String>,
    /// Why.
    pub reason: String,
}

/// The cache file's content.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    key: HostKey,
    report: HostReport,
}

/// Everything the probes' answers depend on; a cached report is used only for an equal key.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HostKey {
    uid: u32,
    kernel_release: Option<String>,
    /// Sysctls reset on reboot, and a container restart on another host changes it.
    boot_id: Option<String>,
    userns_sysctls: Vec<Option<String>>,
    subuid: Option<String>,
    subgid: Option<String>,
    /// This process's user namespace map, no_new_privs, seccomp mode and AppArmor profile:
    /// what a container or pod spec decides.
    confinement: Vec<Option<String>>,
    /// Owner, mode and change time of newuidmap and newgidmap (setuid bit or capabilities).
    id_map_helpers: Vec<Option<(u32, u32, i64)>>,
    binfmt_entries: Vec<String>,
    /// Size and change time of img itself: another build may probe differently.
    binary: Option<(u64, i64)>,
    state: PathBuf,
    backend: String,
}

impl HostKey {
    fn current(config: &Config, paths: &HostPaths) -> HostKey {
        let read = |path: &Path| fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
        let sys = paths.proc.join("sys");
        let helper = |path: &Path| {
            fs::metadata(path)
                .ok()
                .map(|m| (m.uid(), m.mode(), m.ctime()))
        };
        let mut binfmt_entries: Vec<String> = fs::read_dir(sys.join("fs/binfmt_misc"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        binfmt_entries.sort();
        HostKey {
            uid: current_uid(),
            kernel_release: read(&sys.join("kernel/osrelease")),
            boot_id: read(&sys.join("kernel/random/boot_id")),
            userns_sysctls: [
                "user/max_user_namespaces",
                "kernel/unprivileged_userns_clone",
                "kernel/apparmor_restrict_unprivileged_userns",
            ]
            .iter()
            .map(|name| read(&sys.join(name)))
            .collect(),
            subuid: read(&paths.subuid),
            subgid: read(&paths.subgid),
            confinement: {
                let own = paths.proc.join("self");
                let status = read(&own.join("status")).unwrap_or_default();
                let field = |name: &str| {
                    status
                        .lines()
                        .find(|l| l.starts_with(name))
                        .map(str::to_owned)
                };
                vec![
                    read(&own.join("uid_map")),
                    field("NoNewPrivs:"),
                    field("Seccomp:"),
                    read(&own.join("attr/current")),
                ]
            },
            id_map_helpers: vec![helper(&paths.newuidmap), helper(&paths.newgidmap)],
            binfmt_entries,
            binary: std::env::current_exe()
                .and_then(fs::metadata)
                .ok()
                .map(|m| (m.size(), m.ctime())),
            state: config.state.root().to_owned(),
            backend: backend_name(config.backend).to_owned(),
        }
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn backend_name(choice: BackendChoice) -> &'static str {
    match choice {
        BackendChoice::Overlayfs => "overlayfs",
        BackendChoice::Native => "native",
        _ => "auto",
    }
}

impl HostReport {
    /// Runs every probe now (starting a sandbox init) and records the result in the cache.
    pub fn probe(config: &Config) -> HostReport {
        let paths = HostPaths::default();
        let key = HostKey::current(config, &paths);
        let doctor = img_sandbox::doctor(
            &Sandbox::new().with_host_paths(paths),
            Some(config.state.root()),
        );
        let backend = pick_backend(config);
        let entry = CacheEntry {
            key,
            report: HostReport { doctor, backend },
        };
        // The answer stands even when it cannot be remembered (a read-only state directory).
        let _ = store(config, &entry);
        entry.report
    }

    /// The cached report when the host has not changed since it was made, else a fresh one.
    /// Must run as the user sees the host (not in img's user namespace).
    pub fn cached_or_probe(config: &Config) -> HostReport {
        let key = HostKey::current(config, &HostPaths::default());
        match read_cache(config) {
            Ok(entry) if entry.key == key => entry.report,
            _ => HostReport::probe(config),
        }
    }

    /// The report `main` refreshed for this build before it entered the user namespace.
    pub fn refreshed_for_this_build(config: &Config) -> Option<HostReport> {
        read_cache(config).ok().map(|entry| entry.report)
    }

    /// Problems that stop or limit RUN steps (binfmt_misc matters only for foreign platforms
    /// and the backend only for speed), most important first.
    pub fn step_problems(&self) -> Vec<&ProbeResult> {
        let mut problems: Vec<&ProbeResult> = self
            .doctor
            .probes
            .iter()
            .filter(|p| p.status == ProbeStatus::Problem)
            .filter(|p| {
                !matches!(
                    p.probe,
                    Probe::Binfmt | Probe::OverlayInUserNamespace | Probe::StepIds | Probe::Seccomp
                )
            })
            .collect();
        problems.sort_by_key(|p| !p.required);
        problems
    }

    /// Says, on standard error, what on this host keeps RUN steps from working and how to
    /// fix it; says nothing when the probes found no such problem.
    pub fn explain_step_failure(&self) {
        let problems = self.step_problems();
        if problems.is_empty() {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "img doctor found what keeps RUN steps from working here:"
        );
        for probe in problems {
            let _ = write_probe(&mut stderr, probe);
        }
    }
}

/// One probe as `img doctor` prints it: `ok`/`problem`, its name and detail, the fix under it.
pub fn write_probe(out: &mut impl Write, probe: &ProbeResult) -> std::io::Result<()> {
    let status = match probe.status {
        ProbeStatus::Ok => "ok",
        _ => "problem",
    };
    writeln!(
        out,
        "{status:<8} {:<26} {}",
        probe_name(probe.probe),
        probe.detail
    )?;
    if let Some(fix) = probe
        .fix
        .as_deref()
        .filter(|_| probe.status != ProbeStatus::Ok)
    {
        writeln!(out, "{:9}fix: {fix}", "")?;
    }
    Ok(())
}

/// A probe's name in `img doctor`'s output.
pub fn probe_name(probe: Probe) -> &'static str {
    match probe {
        Probe::UserNamespaces => "user-namespaces",
        Probe::IdMapHelpers => "newuidmap/newgidmap",
        Probe::SubordinateIds => "subordinate-ids",
        Probe::OverlayInUserNamespace => "overlayfs-in-userns",
        Probe::ProcMount => "proc-mount",
        Probe::Binfmt => "binfmt-misc",
        Probe::StateDir => "state-directory",
        Probe::StepIds => "step-ids",
        Probe::Seccomp => "seccomp",
        _ => "other",
    }
}

/// The backend `--backend` resolves to for a build. An ordinary user's build runs as root of
/// a user namespace, where overlayfs may mount when it does not outside (`userxattr`), so the
/// question is asked of `img debug backend` re-executed in one, as a build would be.
fn pick_backend(config: &Config) -> BackendPick {
    if config.backend == BackendChoice::Native || current_uid() == 0 {
        return backend_in_this_process(config);
    }
    let asked = backend_name(config.backend);
    let failed = |reason: String| BackendPick {
        asked: asked.to_owned(),
        picked: None,
        reason,
    };
    let output = std::process::Command::new("/proc/self/exe")
        .arg("--state")
        .arg(config.state.root())
        .args(["--backend", asked, "debug", "backend"])
        // A pipe closed at once rather than /dev/null: nothing is read, and nothing of the
        // host's device nodes is needed.
        .stdin(std::process::Stdio::piped())
        .output();
    match output {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| failed(format!("img debug backend printed no report: {e}"))),
        Ok(out) => failed(format!(
            "a build's user namespace cannot be entered: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => failed(format!("cannot run img debug backend: {e}")),
    }
}

/// The backend `--backend` resolves to in this process (root, or root of img's user
/// namespace): the snapshotter's own probe mount in the state directory decides `auto`.
pub fn backend_in_this_process(config: &Config) -> BackendPick {
    let asked = backend_name(config.backend);
    let pick = |backend: Option<Backend>, reason: String| BackendPick {
        asked: asked.to_owned(),
        picked: backend.map(|b| b.to_string()),
        reason,
    };
    if config.backend == BackendChoice::Native {
        return pick(
            Some(Backend::Native),
            "asked for with --backend native".into(),
        );
    }
    // The snapshot error names its cause and the way out; the store's error needs its chain.
    let probe = match config.open_store() {
        Ok(store) => store
            .snapshotter(BackendChoice::Overlayfs)
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    match (probe, config.backend) {
        (Ok(_), _) => pick(
            Some(Backend::Overlayfs),
            format!(
                "a probe overlay mount in {} succeeded",
                config.state.tmp().display()
            ),
        ),
        (Err(e), BackendChoice::Overlayfs) => {
            pick(None, format!("--backend overlayfs cannot work: {e}"))
        }
        (Err(e), _) => pick(
            Some(Backend::Native),
            format!("overlayfs does not mount here ({e}); snapshots are full copies"),
        ),
    }
}

fn cache_path(config: &Config) -> PathBuf {
    config.state.root().join(CACHE_FILE)
}

fn read_cache(config: &Config) -> anyhow::Result<CacheEntry> {
    let path = cache_path(config);
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Replaces the cache file whole (temp file and rename), as concurrent builds may read it.
fn store(config: &Config, entry: &CacheEntry) -> anyhow::Result<()> {
    let root = config.state.root();
    fs::create_dir_all(root)?;
    let mut file = tempfile::NamedTempFile::new_in(root)?;
    serde_json::to_writer_pretty(&mut file, entry)?;
    file.persist(cache_path(config))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: ProbeStatus, fix: Option<&str>) -> ProbeResult {
        ProbeResult {
            probe: Probe::SubordinateIds,
            status,
            detail: "me has 0 subordinate uids".into(),
            fix: fix.map(str::to_owned),
            required: false,
        }
    }

    #[test]
    fn a_problem_prints_its_fix_indented_under_it() {
        // probe result | printed
        let cases = [
            (
                result(ProbeStatus::Ok, None),
                "ok       subordinate-ids            me has 0 subordinate uids\n",
            ),
            (
                result(ProbeStatus::Problem, Some("sudo usermod --add-subuids 1-2 me")),
                "problem  subordinate-ids            me has 0 subordinate uids\n         fix: sudo usermod --add-subuids 1-2 me\n",
            ),
        ];
        for (probe, want) in cases {
            let mut out = Vec::new();
            write_probe(&mut out, &probe).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn step_problems_leave_out_platforms_and_put_blocking_ones_first() {
        let mut subids = result(ProbeStatus::Problem, Some("usermod"));
        subids.required = false;
        let proc = ProbeResult {
            probe: Probe::ProcMount,
            required: true,
            ..result(ProbeStatus::Problem, Some("procMount: Unmasked"))
        };
        let binfmt = ProbeResult {
            probe: Probe::Binfmt,
            ..result(ProbeStatus::Problem, Some("qemu"))
        };
        let report = HostReport {
            doctor: DoctorReport {
                probes: vec![subids, binfmt, proc],
                can_run_steps: false,
            },
            backend: BackendPick {
                asked: "auto".into(),
                picked: Some("native".into()),
                reason: String::new(),
            },
        };
        let names: Vec<Probe> = report.step_problems().iter().map(|p| p.probe).collect();
        assert_eq!(names, [Probe::ProcMount, Probe::SubordinateIds]);
    }
}
