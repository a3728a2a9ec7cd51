//! `img doctor`: what this host allows a rootless build to do, and how to fix what it does not.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idmap::{read_sub_ids, user_name, IdMapping};
use crate::paths::HostPaths;
use crate::protocol::{ChildFailure, ChildMessage, InitRequest};
use crate::sandbox::Sandbox;

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

/// Runs every probe; `state_dir`, when given, is checked for writability and reflinks. The
/// namespace probes start `sandbox`'s init program.
pub fn doctor(sandbox: &Sandbox, state_dir: Option<&Path>) -> DoctorReport {
    let paths = sandbox.host_paths();
    let root = nix::unistd::getuid().is_root();
    let mut probes = vec![
        user_namespaces(paths, root),
        helpers(paths, root),
        subordinate_ids(paths, root),
    ];
    let (overlay, proc) = namespace_probes(sandbox);
    probes.push(overlay);
    probes.push(proc);
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

fn user_namespaces(paths: &HostPaths, root: bool) -> ProbeResult {
    let p = Probe::UserNamespaces;
    let sys = paths.proc.join("sys");
    if root {
        return ok(p, false, "running as root: no user namespace needed".into());
    }
    let max =
        read_trimmed(&sys.join("user/max_user_namespaces")).and_then(|s| s.parse::<u64>().ok());
    if max == Some(0) {
        return problem(
            p,
            true,
            "user.max_user_namespaces is 0".into(),
            "sudo sysctl -w user.max_user_namespaces=28633".into(),
        );
    }
    if read_trimmed(&sys.join("kernel/unprivileged_userns_clone")).as_deref() == Some("0") {
        return problem(
            p,
            true,
            "kernel.unprivileged_userns_clone is 0 (Debian)".into(),
            "sudo sysctl -w kernel.unprivileged_userns_clone=1".into(),
        );
    }
    if read_trimmed(&sys.join("kernel/apparmor_restrict_unprivileged_userns")).as_deref()
        == Some("1")
    {
        return problem(
            p,
            true,
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10+)".into(),
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or add an AppArmor profile allowing userns for img)".into(),
        );
    }
    ok(
        p,
        true,
        format!(
            "allowed (max_user_namespaces {})",
            max.map_or("unknown".into(), |m| m.to_string())
        ),
    )
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

fn helpers(paths: &HostPaths, root: bool) -> ProbeResult {
    let p = Probe::IdMapHelpers;
    match (helper_ok(&paths.newuidmap), helper_ok(&paths.newgidmap)) {
        (Ok(a), Ok(b)) => ok(p, false, format!("{a}; {b}")),
        (Err(e), _) | (_, Err(e)) if root => ok(p, false, format!("{e} (not needed as root)")),
        (Err(e), _) | (_, Err(e)) => problem(
            p,
            false,
            e,
            "sudo apt-get install uidmap (or: sudo chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap)".into(),
        ),
    }
}

fn subordinate_ids(paths: &HostPaths, root: bool) -> ProbeResult {
    let p = Probe::SubordinateIds;
    if root {
        return ok(p, false, "running as root: every id is available".into());
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

fn namespace_probes(sandbox: &Sandbox) -> (ProbeResult, ProbeResult) {
    let mapping = IdMapping::detect(sandbox.host_paths()).unwrap_or_else(|_| {
        IdMapping::single_id(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    });
    let failed = |detail: String| {
        (
            problem(
                Probe::OverlayInUserNamespace,
                false,
                detail.clone(),
                "see the user namespace probe".into(),
            ),
            problem(
                Probe::ProcMount,
                true,
                detail,
                "see the user namespace probe".into(),
            ),
        )
    };
    let dir = match tempfile::Builder::new().prefix("img-doctor-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return failed(format!("cannot create a scratch directory: {e}")),
    };
    let request = InitRequest::Probe {
        id_mapping: mapping.clone(),
        dir: dir.path().to_path_buf(),
    };
    let mut session = match sandbox.start(&request) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot start the sandbox init: {e}")),
    };
    let outcome = loop {
        match session.recv_one(&mapping, sandbox.host_paths()) {
            Ok(Some(ChildMessage::ProbeResults { overlay, proc })) => break Ok((overlay, proc)),
            Ok(Some(ChildMessage::Failed(f))) => break Err(crate::SetupError::from(f).to_string()),
            Ok(Some(_)) => continue,
            Ok(None) => break Err("the sandbox init exited without reporting".to_string()),
            Err(e) => break Err(error_chain(&e)),
        }
    };
    let spoke = outcome.is_ok();
    let _ = session.finish(spoke);
    make_removable(dir.path());
    let (overlay, proc) = match outcome {
        Ok(results) => results,
        Err(detail) => return failed(detail),
    };
    let describe = |f: ChildFailure| error_chain(&crate::SetupError::from(f));
    let overlay = match overlay {
        Ok(()) => ok(
            Probe::OverlayInUserNamespace,
            false,
            "overlayfs mounts inside a user namespace".into(),
        ),
        Err(f) => problem(
            Probe::OverlayInUserNamespace,
            false,
            describe(f),
            "use Linux 5.11 or newer (snapshots fall back to copying meanwhile)".into(),
        ),
    };
    let proc = match proc {
        Ok(()) => ok(Probe::ProcMount, true, "a fresh /proc mounts in a new pid namespace".into()),
        Err(f) => problem(
            Probe::ProcMount,
            true,
            describe(f),
            "Kubernetes: set `securityContext.procMount: Unmasked` (with `hostUsers: false`) on the container; docker/podman: --security-opt systempaths=unconfined".into(),
        ),
    };
    (overlay, proc)
}

/// Gives every directory below `root` its owner's read, write and search bits, so that an
/// unprivileged caller can delete the probe's scratch directory: overlayfs leaves its
/// `workdir/work` with mode 000.
fn make_removable(root: &Path) {
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
mod tests {
    use super::*;

    fn fake_proc(files: &[(&str, &str)]) -> (tempfile::TempDir, HostPaths) {
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
            let r = user_namespaces(&paths, false);
            assert_eq!(r.status, ProbeStatus::Problem, "{file}");
            assert!(r.fix.as_deref().is_some_and(|f| f.contains(fix)), "{r:?}");
        }
        let (_tmp, paths) = fake_proc(&[("sys/user/max_user_namespaces", "100\n")]);
        assert_eq!(user_namespaces(&paths, false).status, ProbeStatus::Ok);
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
        let r = subordinate_ids(&paths, false);
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
