//! The probe that runs in the namespaces a step gets: can a user namespace be made, and in it
//! a fresh /proc and an overlay (and for real root, an idmapped mount of the state directory)?

use std::path::Path;

use super::diagnose::{self, Who};
use super::{error_chain, make_removable, ok, problem, Probe, ProbeResult};
use crate::idmap::IdMapping;
use crate::isolate::NotIsolated;
use crate::paths::HostPaths;
use crate::protocol::{ChildFailure, ChildMessage, InitRequest, SetupStep};
use crate::sandbox::Sandbox;

/// What the namespace probe found.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The namespaces were made; the mounts' results.
    Ran {
        overlay: Result<(), ChildFailure>,
        proc: Result<(), ChildFailure>,
        /// sethostname(2) in the probe's UTS namespace.
        hostname: Result<(), ChildFailure>,
        not_isolated: Option<NotIsolated>,
        /// What the sandbox would have told a build (a refused newuidmap).
        notices: Vec<String>,
        /// Where the probe mounted.
        dir: std::path::PathBuf,
    },
    /// The kernel refused a namespace with this errno.
    NamespaceRefused { errno: i32 },
    /// The probe failed otherwise.
    Failed { detail: String, fix: String },
}

/// Runs the probe, in a scratch directory of `state_dir` when given (where builds mount).
pub(super) fn probe(sandbox: &Sandbox, mapping: &IdMapping, state_dir: Option<&Path>) -> Outcome {
    // An unusable state directory is the state directory probe's to report: then the
    // temporary directory will do.
    let in_state = state_dir.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        tempfile::Builder::new()
            .prefix(".img-doctor-")
            .tempdir_in(dir)
            .ok()
    });
    let scratch = match in_state {
        Some(dir) => Ok(dir),
        None => tempfile::Builder::new().prefix("img-doctor-").tempdir(),
    };
    let dir = match scratch {
        Ok(dir) => dir,
        Err(e) => {
            return Outcome::Failed {
                detail: format!("cannot create a scratch directory: {e}"),
                fix: "make the state directory (or the temporary directory) writable".into(),
            }
        }
    };
    let request = InitRequest::Probe {
        id_mapping: mapping.clone(),
        dir: dir.path().to_path_buf(),
    };
    let mut session = match sandbox.start(&request) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failed {
                detail: format!("cannot start the sandbox init: {}", error_chain(&e)),
                fix: "the img binary must be executable by this user".into(),
            }
        }
    };
    let mut not_isolated = None;
    let outcome = loop {
        match session.recv_one(mapping, sandbox.host_paths()) {
            Ok(Some(ChildMessage::ProbeResults {
                overlay,
                proc,
                hostname,
            })) => {
                break Outcome::Ran {
                    overlay,
                    proc,
                    hostname,
                    not_isolated: not_isolated.take(),
                    notices: session.take_notices(),
                    dir: dir.path().to_path_buf(),
                }
            }
            Ok(Some(ChildMessage::NotIsolated(n))) => not_isolated = Some(n),
            Ok(Some(ChildMessage::Failed(ChildFailure::Os {
                step: SetupStep::Unshare,
                errno,
                ..
            }))) => break Outcome::NamespaceRefused { errno },
            Ok(Some(ChildMessage::Failed(f))) => {
                break Outcome::Failed {
                    detail: crate::SetupError::from(f).to_string(),
                    fix: "see the detail: the sandbox could not be set up".into(),
                }
            }
            Ok(Some(_)) => continue,
            Ok(None) => {
                break Outcome::Failed {
                    detail: "the sandbox init exited without reporting".into(),
                    fix: "the img binary's main must call img_sandbox::maybe_run_init() first"
                        .into(),
                }
            }
            Err(e) => {
                let fix = match &e {
                    crate::SandboxError::IdMap(_) => {
                        "check /etc/subuid and /etc/subgid against the ranges newuidmap was \
                         given, and that the uidmap package is installed"
                    }
                    _ => "see the detail",
                };
                break Outcome::Failed {
                    detail: error_chain(&e),
                    fix: fix.into(),
                };
            }
        }
    };
    let spoke = matches!(outcome, Outcome::Ran { .. });
    let _ = session.finish(spoke);
    make_removable(dir.path());
    outcome
}

/// The overlayfs and /proc probes from the outcome; when no namespace was made they were not
/// checked, and say why.
pub(super) fn overlay_and_proc(
    paths: &HostPaths,
    who: Who,
    outcome: &Outcome,
) -> (ProbeResult, ProbeResult) {
    let not_checked = |detail: String, fix: String| {
        (
            problem(
                Probe::OverlayInUserNamespace,
                false,
                detail.clone(),
                fix.clone(),
            ),
            problem(Probe::ProcMount, true, detail, fix),
        )
    };
    let (overlay, proc, dir) = match outcome {
        Outcome::Ran {
            overlay, proc, dir, ..
        } => (overlay, proc, dir),
        Outcome::NamespaceRefused { errno } => {
            let (detail, fix) = diagnose::namespace_refusal(paths, who, *errno);
            return not_checked(format!("not checked: {detail}"), fix);
        }
        Outcome::Failed { detail, fix } => return not_checked(detail.clone(), fix.clone()),
    };
    let describe = |f: &ChildFailure| error_chain(&crate::SetupError::from(f.clone()));
    let overlay = match overlay {
        Ok(()) => ok(
            Probe::OverlayInUserNamespace,
            false,
            "overlayfs mounts inside a user namespace".into(),
        ),
        Err(f) => {
            let (detail, fix) = diagnose::overlay_cause(paths, dir, describe(f));
            problem(Probe::OverlayInUserNamespace, false, detail, fix)
        }
    };
    let proc = match proc {
        Ok(()) => ok(
            Probe::ProcMount,
            true,
            "a fresh /proc mounts in a new pid namespace".into(),
        ),
        Err(f) => problem(
            Probe::ProcMount,
            true,
            describe(f),
            "Kubernetes: set `securityContext.procMount: Unmasked` on the container (which \
             needs `hostUsers: false`); docker/podman: --security-opt systempaths=unconfined"
                .into(),
        ),
    };
    (overlay, proc)
}

/// Real root only: whether steps run as root's subordinate ids (idmapped mounts work where
/// the probe ran) or fall back to the host's ids.
pub(super) fn step_ids(mapping: &IdMapping, outcome: &Outcome) -> ProbeResult {
    let p = Probe::StepIds;
    match outcome {
        Outcome::Ran {
            not_isolated: Some(n),
            ..
        } => problem(
            p,
            false,
            format!(
                "the kernel cannot make an idmapped mount of {} ({}): RUN steps run with the \
                 host's ids (in a user namespace of their own)",
                n.path.display(),
                std::io::Error::from_raw_os_error(n.errno)
            ),
            "put the state directory on ext4, xfs or btrfs (Kubernetes: an emptyDir or another \
             volume rather than the container's root filesystem; docker/podman: -v)"
                .into(),
        ),
        Outcome::Ran { dir, .. } => {
            let first = mapping.uid_map().first().map_or(0, |r| r.host_id);
            ok(
                p,
                false,
                format!(
                    "RUN steps are not the host's root: their uid 0 is host uid {first}, and \
                     idmapped mounts of {} keep files' ids on disk",
                    dir.parent().unwrap_or(dir).display()
                ),
            )
        }
        _ => problem(
            p,
            false,
            "not checked: the namespace probe did not run".into(),
            "fix the problems above first".into(),
        ),
    }
}
