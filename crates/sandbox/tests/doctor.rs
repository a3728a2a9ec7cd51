//! The doctor's probes against this host, and a masked /proc as in a default Kubernetes pod.

mod common;

use std::process::Command;

use common::*;
use img_sandbox::{doctor, DoctorReport, Probe, ProbeStatus, SandboxError, SetupError};

fn result_of(report: &DoctorReport, probe: Probe) -> &img_sandbox::ProbeResult {
    report
        .probes
        .iter()
        .find(|p| p.probe == probe)
        .expect("probe present")
}

#[test]
fn this_host_can_run_steps() {
    let state = tempfile::tempdir().expect("tempdir");
    let report = doctor(&sandbox(), Some(state.path()));
    assert!(report.can_run_steps, "{report:#?}");
    for probe in [
        Probe::UserNamespaces,
        Probe::ProcMount,
        Probe::OverlayInUserNamespace,
        Probe::StateDir,
    ] {
        assert_eq!(
            result_of(&report, probe).status,
            ProbeStatus::Ok,
            "{report:#?}"
        );
    }
    for problem in report
        .probes
        .iter()
        .filter(|p| p.status == ProbeStatus::Problem)
    {
        assert!(
            problem.fix.as_deref().is_some_and(|f| !f.is_empty()),
            "problem without a fix: {problem:?}"
        );
    }
    let cached: DoctorReport =
        serde_json::from_str(&serde_json::to_string(&report).expect("to json")).expect("from json");
    assert_eq!(cached, report);
}

/// Masks part of /proc (a tmpfs over /proc/fs, as Kubernetes masks /proc/acpi) in a mount
/// namespace, then enters a user namespace, where the kernel locks that mask, and re-runs
/// `inner` there.
#[test]
fn masked_proc_is_diagnosed_with_its_fix() {
    if !is_root() {
        // An ordinary user cannot lay the mask; the check then is that /proc is usable.
        assert!(doctor(&sandbox(), None).can_run_steps);
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let script = format!(
        "mount -t tmpfs -o size=4k tmpfs /proc/fs && exec unshare --user --map-root-user --mount {} \
         --exact inner_masked_proc --ignored --nocapture --test-threads=1",
        exe.display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by masked_proc_is_diagnosed_with_its_fix inside a namespace with a masked /proc"]
fn inner_masked_proc() {
    let (_tmp, root) = temp_rootfs();
    let (result, _) = run(&sh(&root, "true").build());
    let err = result.expect_err("proc must be refused");
    assert!(
        matches!(err, SandboxError::Setup(SetupError::ProcMasked { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("sandbox setup failed"));
    let SandboxError::Setup(setup) = &err else {
        unreachable!()
    };
    assert!(
        setup
            .to_string()
            .contains("securityContext.procMount: Unmasked"),
        "{setup}"
    );
    assert!(!root.join("etc/hosts").exists());

    let report = doctor(&sandbox(), None);
    let proc = result_of(&report, Probe::ProcMount);
    assert_eq!(proc.status, ProbeStatus::Problem, "{report:#?}");
    assert!(
        proc.fix
            .as_deref()
            .is_some_and(|f| f.contains("procMount: Unmasked")),
        "{proc:?}"
    );
    assert!(!report.can_run_steps);
}

/// Runs the ignored test `inner` of this binary under a seccomp filter that refuses `syscall`
/// with EPERM, and asserts that it passed.
fn run_under_filter_refusing(syscall: &str, inner: &str) {
    let filter = format!(
        r#"{{"refuse": {{"mismatch_action": "allow", "match_action": {{"errno": 1}},
                     "filter": [{{"syscall": "{syscall}"}}]}}}}"#
    );
    let arch = std::env::consts::ARCH.try_into().expect("supported arch");
    let mut map = seccompiler::compile_from_json(filter.as_bytes(), arch).expect("compile");
    let program = map.remove("refuse").expect("program");
    let mut command = Command::new(std::env::current_exe().expect("current exe"));
    command.args([
        "--exact",
        inner,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    // SAFETY: prctl and seccomp only, on a program compiled before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        command
            .pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
    }
    let output = command.output().expect("run inner test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// As in a container under docker's or containerd's default seccomp profile: unshare is
/// refused, and the doctor names the filter and the pod setting that lifts it instead of an
/// errno.
#[test]
fn a_seccomp_filter_refusing_unshare_is_diagnosed() {
    run_under_filter_refusing("unshare", "inner_seccomp_refuses_unshare");
}

/// As in a container under podman's (and CRI-O's) default seccomp profile: namespaces and
/// mounts are allowed, sethostname is not, and every step sets its hostname.
#[test]
fn a_seccomp_filter_refusing_sethostname_is_diagnosed() {
    run_under_filter_refusing("sethostname", "inner_seccomp_refuses_sethostname");
}

#[test]
#[ignore = "run by a_seccomp_filter_refusing_sethostname_is_diagnosed under a filter"]
fn inner_seccomp_refuses_sethostname() {
    let report = doctor(&sandbox(), None);
    let userns = result_of(&report, Probe::UserNamespaces);
    assert_eq!(userns.status, ProbeStatus::Problem, "{report:#?}");
    assert!(userns.detail.contains("sethostname"), "{userns:?}");
    assert!(
        userns
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("seccompProfile.type: Unconfined")),
        "{userns:?}"
    );
    assert!(!report.can_run_steps);
}

#[test]
#[ignore = "run by a_seccomp_filter_refusing_unshare_is_diagnosed under a filter"]
fn inner_seccomp_refuses_unshare() {
    let report = doctor(&sandbox(), None);
    let userns = result_of(&report, Probe::UserNamespaces);
    assert_eq!(userns.status, ProbeStatus::Problem, "{report:#?}");
    assert!(userns.detail.contains("seccomp filter"), "{userns:?}");
    assert!(
        userns
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("seccompProfile.type: Unconfined")),
        "{userns:?}"
    );
    // The probes that need a namespace say why they did not run, not "see another probe".
    let proc = result_of(&report, Probe::ProcMount);
    assert!(proc.detail.starts_with("not checked: "), "{proc:?}");
    assert!(
        proc.fix
            .as_deref()
            .is_some_and(|f| f.contains("seccompProfile")),
        "{proc:?}"
    );
    assert!(!report.can_run_steps);
}
