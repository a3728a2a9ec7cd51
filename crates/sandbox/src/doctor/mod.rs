//! `img doctor`: what this host allows a rootless build to do, and how to fix what it does not.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idmap::{read_sub_ids, user_name, IdMapping};
use crate::paths::HostPaths;
use crate::protocol::ChildFailure;
use crate::sandbox::Sandbox;

mod binfmt;
mod diagnose;
mod namespaces;

pub use binfmt::{binfmt_dir, platform_support, BinfmtError, PlatformSupport, BINFMT_FIX};

use diagnose::Who;
use namespaces::Outcome;

/// Fewest subordinate ids that cover the users of common images (nobody is 65534).
pub const MIN_SUBORDINATE_IDS: u32 = 65536;

/// What a probe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Probe {
    /// Unprivileged user namespaces are allowed.
    UserNamespaces,
    /// newuidmap/newgidmap exist and are setuid root or have file capabilities.
    IdMapHelpers,
    /// /etc/subuid and /etc/subgid give this user enough ids.
    SubordinateIds,
    /// overlayfs mounts inside a user namespace.
    OverlayInUserNamespace,
    /// A fresh procfs mounts (/proc is not masked).
    ProcMount,
    /// binfmt_misc handlers for foreign platforms.
    Binfmt,
    /// The state directory is writable and supports reflinks.
    StateDir,
    /// Real root's RUN steps run as subordinate ids through idmapped mounts.
    StepIds,
    /// A seccomp filter can be compiled for this architecture.
    Seccomp,
}

/// Whether a probe passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProbeStatus {
    /// Fine.
    Ok,
    /// Something is missing or refused.
    Problem,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// What was checked.
    pub probe: Probe,
    /// Passed or not.
    pub status: ProbeStatus,
    /// What was found.
    pub detail: String,
    /// For problems: the command or pod-spec change that fixes it.
    pub fix: Option<String>,
    /// Whether builds with RUN steps need this probe to pass.
    pub required: bool,
}

/// All probe results; serializable so a caller can cache them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    /// One result per probe, in a fixed order.
    pub probes: Vec<ProbeResult>,
    /// Whether builds with RUN steps can work here.
    pub can_run_steps: bool,
}

fn ok(probe: Probe, required: bool, detail: String) -> ProbeResult {
    ProbeResult {
        probe,
        status: ProbeStatus::Ok,
        detail,
        fix: None,
        required,
    }
}

fn problem(probe: Probe, required: bool, detail: String, fix: String) -> ProbeResult {
    ProbeResult {
        probe,
        status: ProbeStatus::Problem,
        detail,
        fix: Some(fix),
        required,
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Runs every probe; `state_dir`, when given, is checked for writability and reflinks, and the
/// namespace probes (overlayfs, idmapped mounts) run in it, where builds will. The namespace
/// probes start `sandbox`'s init program.
pub fn doctor(sandbox: &Sandbox, state_dir: Option<&Path>) -> DoctorReport {
    let paths = sandbox.host_paths();
    let who = Who::detect(paths);
    let mapping = IdMapping::detect(paths).unwrap_or_else(|_| {
        IdMapping::single_id(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    });
    let outcome = namespaces::probe(sandbox, &mapping, state_dir);
    let mut probes = vec![
        user_namespaces(paths, who, &outcome),
        helpers(paths, who, &outcome),
        subordinate_ids(paths, who, &mapping),
    ];
    let (overlay, proc) = namespaces::overlay_and_proc(paths, who, &outcome);
    probes.push(overlay);
    probes.push(proc);
    if who == Who::RealRoot {
        probes.push(namespaces::step_ids(&mapping, &outcome));
    }
    probes.push(seccomp_probe());
    probes.push(binfmt(paths));
    if let Some(dir) = state_dir {
        probes.push(state_dir_probe(dir));
    }
    let can_run_steps = probes
        .iter()
        .all(|p| !p.required || p.status == ProbeStatus::Ok);
    DoctorReport {
        probes,
        can_run_steps,
    }
}

fn user_namespaces(paths: &HostPaths, who: Who, outcome: &Outcome) -> ProbeResult {
    let p = Probe::UserNamespaces;
    if let Outcome::NamespaceRefused { errno } = outcome {
        let (detail, fix) = diagnose::namespace_refusal(paths, who, *errno);
        return problem(p, true, detail, fix);
    }
    if let Outcome::Ran {
        hostname: Err(ChildFailure::Os { errno, .. }),
        ..
    } = outcome
    {
        let (detail, fix) = diagnose::hostname_refusal(paths, *errno);
        return problem(p, true, detail, fix);
    }
    if let Outcome::Failed { .. } = outcome {
        // The probe did not get as far as a namespace: say what the sysctls say.
        if let Some((detail, fix)) = diagnose::sysctl_refusal(paths, who == Who::User) {
            return problem(p, true, detail, fix);
        }
    }
    let detail = match who {
        Who::RealRoot => "allowed: RUN steps run in a user namespace of their own".to_string(),
        Who::NamespaceRoot => "allowed: img runs as uid 0 of a user namespace (not the host's \
                               root); each RUN step nests one with the same ids"
            .to_string(),
        Who::User => {
            let max = read_trimmed(&paths.proc.join("sys/user/max_user_namespaces"));
            format!(
                "allowed (max_user_namespaces {})",
                max.unwrap_or_else(|| "unknown".into())
            )
        }
    };
    ok(p, true, detail)
}

fn helper_ok(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|_| format!("{} not found", path.display()))?;
    if meta.uid() == 0 && meta.mode() & 0o4000 != 0 {
        return Ok(format!("{} is setuid root", path.display()));
    }
    let mut buf = [0u8; 64];
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "bad path".to_string())?;
    // SAFETY: getxattr into a local buffer of the given size.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n > 0 {
        return Ok(format!("{} has file capabilities", path.display()));
    }
    Err(format!(
        "{} is neither setuid root nor has file capabilities",
        path.display()
    ))
}

/// The other way to give a pod's steps many ids, without the setuid helpers.
const POD_AS_NAMESPACE_ROOT: &str =
    "Kubernetes: run img as uid 0 of the pod's own user namespace (`hostUsers: false` with \
     `runAsUser: 0`), where no helper is needed";

fn helpers(paths: &HostPaths, who: Who, outcome: &Outcome) -> ProbeResult {
    let p = Probe::IdMapHelpers;
    if who != Who::User {
        return ok(
            p,
            false,
            "not needed: uid 0 writes the maps of the steps' namespaces itself".into(),
        );
    }
    if let Outcome::Ran { notices, .. } = outcome {
        if let Some(refused) = notices.iter().find(|n| n.contains("newuidmap was refused")) {
            return problem(p, false, refused.clone(), POD_AS_NAMESPACE_ROOT.into());
        }
    }
    if diagnose::no_new_privs(paths) {
        return problem(
            p,
            false,
            "no_new_privs is set on this process (Kubernetes `allowPrivilegeEscalation: false`): \
             the setuid newuidmap cannot map subordinate ids, so RUN steps get one id"
                .into(),
            format!(
                "Kubernetes: `securityContext.allowPrivilegeEscalation: true`; or {}",
                POD_AS_NAMESPACE_ROOT.trim_start_matches("Kubernetes: ")
            ),
        );
    }
    match (helper_ok(&paths.newuidmap), helper_ok(&paths.newgidmap)) {
        (Ok(a), Ok(b)) => ok(p, false, format!("{a}; {b}")),
        (Err(e), _) | (_, Err(e)) => problem(
            p,
            false,
            e,
            format!(
                "sudo apt-get install uidmap (in a container image too; or: sudo chmod u+s \
                 /usr/bin/newuidmap /usr/bin/newgidmap); {POD_AS_NAMESPACE_ROOT}"
            ),
        ),
    }
}

fn subordinate_ids(paths: &HostPaths, who: Who, mapping: &IdMapping) -> ProbeResult {
    let p = Probe::SubordinateIds;
    let ids: u64 = mapping.uid_map().iter().map(|r| u64::from(r.count)).sum();
    match who {
        Who::RealRoot => {
            let first = mapping.uid_map().first().map_or(0, |r| r.host_id);
            return ok(
                p,
                false,
                format!(
                    "RUN steps run as host ids {first}..{} (root's /etc/subuid entry, or img's \
                     default range)",
                    u64::from(first) + ids - 1
                ),
            );
        }
        Who::NamespaceRoot if ids >= u64::from(MIN_SUBORDINATE_IDS) => {
            return ok(
                p,
                false,
                format!("this user namespace has {ids} ids for RUN steps"),
            );
        }
        Who::NamespaceRoot => {
            return problem(
                p,
                false,
                format!(
                    "this user namespace has {ids} ids: without {MIN_SUBORDINATE_IDS} some \
                         images' users do not exist in RUN steps"
                ),
                "Kubernetes `hostUsers: false` gives a pod 65536 ids; with podman, --userns=auto \
                 or a larger --uidmap"
                    .into(),
            );
        }
        Who::User => {}
    }
    let uid = nix::unistd::getuid().as_raw();
    let name = user_name(uid);
    let who = name.clone().unwrap_or_else(|| uid.to_string());
    let count = |path: &Path| {
        read_sub_ids(path, name.as_deref(), uid)
            .map(|r| r.iter().map(|r| u64::from(r.count)).sum::<u64>())
            .unwrap_or(0)
    };
    let (uids, gids) = (count(&paths.subuid), count(&paths.subgid));
    let fix = format!(
        "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who} (in a container image: echo {who}:100000:65536 | tee -a /etc/subuid /etc/subgid)"
    );
    let detail = format!("{who} has {uids} subordinate uids and {gids} subordinate gids");
    if uids >= u64::from(MIN_SUBORDINATE_IDS) && gids >= u64::from(MIN_SUBORDINATE_IDS) {
        ok(p, false, detail)
    } else {
        problem(
            p,
            false,
            format!(
                "{detail}; without {MIN_SUBORDINATE_IDS} of each only root exists in RUN steps"
            ),
            fix,
        )
    }
}

fn seccomp_probe() -> ProbeResult {
    let p = Probe::Seccomp;
    if crate::seccomp::available() {
        ok(
            p,
            false,
            format!(
                "Docker's default seccomp profile on every RUN step ({})",
                std::env::consts::ARCH
            ),
        )
    } else {
        problem(
            p,
            false,
            format!(
                "no seccomp filter can be compiled for {}: RUN steps run without one",
                std::env::consts::ARCH
            ),
            "run builds on x86_64, aarch64 or riscv64 hosts to filter steps' system calls".into(),
        )
    }
}

/// Gives every directory below `root` its owner's read, write and search bits, so that an
/// unprivileged caller can delete the probe's scratch directory: overlayfs leaves its
/// `workdir/work` with mode 000.
pub(super) fn make_removable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir {
            continue;
        }
        let path = entry.path();
        if let Ok(meta) = fs::symlink_metadata(&path) {
            let mode = meta.permissions().mode() | 0o700;
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
        }
        make_removable(&path);
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether RUN steps for `platform` (`linux/arm64`) can run here, with binfmt_misc at `dir`
/// ([`binfmt_dir`] for the host's): `img doctor --platform`. Required, since the caller asked
/// about this platform.
pub fn platform_probe(dir: &Path, platform: &str) -> ProbeResult {
    let p = Probe::Binfmt;
    match platform_support(dir, platform) {
        Ok(PlatformSupport::Native) => ok(p, true, format!("{platform}: runs natively")),
        Ok(PlatformSupport::Emulated {
            handler,
            interpreter,
        }) => ok(
            p,
            true,
            format!("{platform}: emulated by the binfmt_misc handler {handler} ({interpreter})"),
        ),
        Err(
            e @ (BinfmtError::NotLinux { .. }
            | BinfmtError::UnknownArchitecture { .. }
            | BinfmtError::InvalidPlatform { .. }),
        ) => problem(
            p,
            true,
            e.to_string(),
            "build for a linux platform this machine runs or emulates (such as linux/amd64, linux/arm64)".to_owned(),
        ),
        Err(e) => problem(p, true, e.to_string(), BINFMT_FIX.to_owned()),
    }
}

fn binfmt(paths: &HostPaths) -> ProbeResult {
    let p = Probe::Binfmt;
    let dir = paths.proc.join("sys/fs/binfmt_misc");
    let fix = "sudo apt-get install qemu-user-static binfmt-support (or: docker run --privileged --rm tonistiigi/binfmt --install all)".to_string();
    let Ok(entries) = fs::read_dir(&dir) else {
        return problem(
            p,
            false,
            format!(
                "{} is not mounted: only native-platform builds can run",
                dir.display()
            ),
            fix,
        );
    };
    let mut handlers: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "register" && n != "status")
        .filter(|n| read_trimmed(&dir.join(n)).is_some_and(|t| t.starts_with("enabled")))
        .collect();
    handlers.sort();
    if handlers.is_empty() {
        problem(
            p,
            false,
            "no binfmt_misc handlers: only native-platform builds can run".into(),
            fix,
        )
    } else {
        ok(p, false, format!("handlers: {}", handlers.join(", ")))
    }
}

/// FICLONE from linux/fs.h: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

fn state_dir_probe(dir: &Path) -> ProbeResult {
    let p = Probe::StateDir;
    let fix = format!("mkdir -p {0} && chown $(id -u):$(id -g) {0}", dir.display());
    if let Err(e) = fs::create_dir_all(dir) {
        return problem(
            p,
            true,
            format!("cannot create {}: {e}", dir.display()),
            fix,
        );
    }
    let files = (|| -> std::io::Result<(tempfile::NamedTempFile, tempfile::NamedTempFile)> {
        use std::io::Write;
        let mut src = tempfile::NamedTempFile::new_in(dir)?;
        src.write_all(&[7u8; 4096])?;
        src.flush()?;
        let dst = tempfile::NamedTempFile::new_in(dir)?;
        Ok((src, dst))
    })();
    let (src, dst) = match files {
        Ok(files) => files,
        Err(e) => {
            return problem(
                p,
                true,
                format!("{} is not writable: {e}", dir.display()),
                fix,
            )
        }
    };
    // SAFETY: FICLONE between two open files.
    let rc = unsafe {
        libc::ioctl(
            dst.as_file().as_raw_fd(),
            FICLONE as _,
            src.as_file().as_raw_fd(),
        )
    };
    let reflinks = rc == 0;
    let fs_note: PathBuf = dir.to_path_buf();
    ok(
        p,
        true,
        format!(
            "{} is writable; reflinks {}",
            fs_note.display(),
            if reflinks {
                "supported (copies are instant)"
            } else {
                "not supported (copies fall back to copy_file_range)"
            }
        ),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `/proc` made of `files` (path under /proc, content), for probes that read it.
    pub(crate) fn fake_proc(files: &[(&str, &str)]) -> (tempfile::TempDir, HostPaths) {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = tmp.path().join(path);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        }
        let paths = HostPaths {
            proc: tmp.path().to_path_buf(),
            ..HostPaths::default()
        };
        (tmp, paths)
    }

    #[test]
    fn user_namespace_sysctls_name_their_fix() {
        let cases = [
            (
                "sys/user/max_user_namespaces",
                "0\n",
                "user.max_user_namespaces=28633",
            ),
            (
                "sys/kernel/unprivileged_userns_clone",
                "0\n",
                "unprivileged_userns_clone=1",
            ),
            (
                "sys/kernel/apparmor_restrict_unprivileged_userns",
                "1\n",
                "apparmor_restrict_unprivileged_userns=0",
            ),
        ];
        for (file, value, fix) in cases {
            let (_tmp, paths) =
                fake_proc(&[("sys/user/max_user_namespaces", "100\n"), (file, value)]);
            let refused = Outcome::NamespaceRefused { errno: libc::EPERM };
            let r = user_namespaces(&paths, Who::User, &refused);
            assert_eq!(r.status, ProbeStatus::Problem, "{file}");
            assert!(r.fix.as_deref().is_some_and(|f| f.contains(fix)), "{r:?}");
        }
        let (_tmp, paths) = fake_proc(&[("sys/user/max_user_namespaces", "100\n")]);
        let ran = |hostname| Outcome::Ran {
            overlay: Ok(()),
            proc: Ok(()),
            hostname,
            not_isolated: None,
            notices: Vec::new(),
            dir: "/tmp".into(),
        };
        assert_eq!(
            user_namespaces(&paths, Who::User, &ran(Ok(()))).status,
            ProbeStatus::Ok
        );
        // podman's default seccomp profile: namespaces and mounts allowed, sethostname not.
        let (_tmp, paths) = fake_proc(&[
            ("sys/user/max_user_namespaces", "100\n"),
            ("self/status", "Seccomp:\t2\n"),
        ]);
        let refused = Err(ChildFailure::Os {
            step: crate::protocol::SetupStep::Hostname,
            path: "imgsandbox".into(),
            errno: libc::EPERM,
        });
        let r = user_namespaces(&paths, Who::NamespaceRoot, &ran(refused));
        assert_eq!(r.status, ProbeStatus::Problem);
        assert!(r.detail.contains("sethostname"), "{r:?}");
        assert!(!r.detail.contains("  ") && !r.fix.as_deref().unwrap_or("").contains("  "));
        assert!(
            r.fix
                .as_deref()
                .is_some_and(|f| f.contains("seccompProfile.type: Unconfined")),
            "{r:?}"
        );
    }

    #[test]
    fn binfmt_lists_enabled_handlers() {
        let (_tmp, paths) = fake_proc(&[
            ("sys/fs/binfmt_misc/register", ""),
            ("sys/fs/binfmt_misc/status", "enabled"),
            (
                "sys/fs/binfmt_misc/qemu-aarch64",
                "enabled\ninterpreter /usr/bin/qemu-aarch64-static\n",
            ),
            ("sys/fs/binfmt_misc/qemu-arm", "disabled\n"),
        ]);
        let r = binfmt(&paths);
        assert_eq!(r.status, ProbeStatus::Ok);
        assert_eq!(r.detail, "handlers: qemu-aarch64");
        let (_tmp, empty) = fake_proc(&[]);
        assert_eq!(binfmt(&empty).status, ProbeStatus::Problem);
    }

    #[test]
    fn subordinate_ids_need_a_full_range() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let uid = nix::unistd::getuid().as_raw();
        fs::write(tmp.path().join("subuid"), format!("{uid}:100000:65536\n")).expect("write");
        fs::write(tmp.path().join("subgid"), format!("{uid}:100000:1000\n")).expect("write");
        let paths = HostPaths {
            subuid: tmp.path().join("subuid"),
            subgid: tmp.path().join("subgid"),
            ..HostPaths::default()
        };
        let r = subordinate_ids(&paths, Who::User, &IdMapping::single_id(uid, uid));
        assert_eq!(r.status, ProbeStatus::Problem, "{r:?}");
        assert!(
            r.detail
                .contains("65536 subordinate uids and 1000 subordinate gids"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn state_dir_is_probed_and_report_round_trips() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = state_dir_probe(&tmp.path().join("state"));
        assert_eq!(r.status, ProbeStatus::Ok, "{r:?}");
        let report = DoctorReport {
            probes: vec![r],
            can_run_steps: true,
        };
        let text = serde_json::to_string(&report).expect("serialize");
        assert_eq!(
            serde_json::from_str::<DoctorReport>(&text).expect("deserialize"),
            report
        );
    }
}
