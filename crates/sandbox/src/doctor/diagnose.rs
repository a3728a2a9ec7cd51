//! Why the kernel refused something, from what /proc says about this process and host, and
//! the setting that fixes it (for a host, docker/podman, and a Kubernetes pod).

use std::fs;
use std::path::Path;

use crate::paths::HostPaths;

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Who img runs as, which decides how steps get their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    /// uid 0 of the initial user namespace.
    RealRoot,
    /// uid 0 of another user namespace (a pod with `hostUsers: false`).
    NamespaceRoot,
    /// Any other uid.
    User,
}

impl Who {
    pub(super) fn detect(paths: &HostPaths) -> Who {
        if !nix::unistd::getuid().is_root() {
            return Who::User;
        }
        let identity = read_trimmed(&paths.proc.join("self/uid_map"))
            .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
        match identity {
            Some(false) => Who::NamespaceRoot,
            _ => Who::RealRoot,
        }
    }
}

/// A field of /proc/self/status.
fn status_field(paths: &HostPaths, name: &str) -> Option<String> {
    let status = fs::read_to_string(paths.proc.join("self/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Whether no_new_privs is set (a pod with `allowPrivilegeEscalation: false`): setuid
/// programs such as newuidmap then run without their privileges.
pub(super) fn no_new_privs(paths: &HostPaths) -> bool {
    status_field(paths, "NoNewPrivs").as_deref() == Some("1")
}

/// The AppArmor profile confining this process, unless unconfined.
fn apparmor_profile(paths: &HostPaths) -> Option<String> {
    let attr = read_trimmed(&paths.proc.join("self/attr/apparmor/current"))
        .or_else(|| read_trimmed(&paths.proc.join("self/attr/current")))?;
    let profile = attr.trim_end_matches('\0').trim().to_string();
    (!profile.is_empty() && profile != "unconfined").then_some(profile)
}

/// A sysctl that forbids user namespaces, with its fix.
pub(super) fn sysctl_refusal(paths: &HostPaths, unprivileged: bool) -> Option<(String, String)> {
    let sys = paths.proc.join("sys");
    let max = read_trimmed(&sys.join("user/max_user_namespaces"));
    if max.as_deref() == Some("0") {
        return Some((
            "user.max_user_namespaces is 0".into(),
            "sudo sysctl -w user.max_user_namespaces=28633 (on a Kubernetes node, with a \
             sysctl DaemonSet or the node's configuration; a pod cannot change it)"
                .into(),
        ));
    }
    if !unprivileged {
        return None;
    }
    if read_trimmed(&sys.join("kernel/unprivileged_userns_clone")).as_deref() == Some("0") {
        return Some((
            "kernel.unprivileged_userns_clone is 0 (Debian)".into(),
            "sudo sysctl -w kernel.unprivileged_userns_clone=1; or run img as uid 0 of a user \
             namespace (Kubernetes: `hostUsers: false` with `runAsUser: 0`)"
                .into(),
        ));
    }
    if read_trimmed(&sys.join("kernel/apparmor_restrict_unprivileged_userns")).as_deref()
        == Some("1")
    {
        return Some((
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10+)".into(),
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or add an AppArmor \
             profile allowing userns for img)"
                .into(),
        ));
    }
    None
}

/// Why creating a namespace failed with `errno`, and what fixes it: the sysctls, a seccomp
/// filter (a container runtime's default profile refuses unshare), an AppArmor profile.
pub(super) fn namespace_refusal(paths: &HostPaths, who: Who, errno: i32) -> (String, String) {
    let error = std::io::Error::from_raw_os_error(errno);
    if let Some((detail, fix)) = sysctl_refusal(paths, who == Who::User) {
        return (
            format!("{detail}: creating a user namespace failed ({error})"),
            fix,
        );
    }
    let mut causes = Vec::new();
    let mut fixes = Vec::new();
    if status_field(paths, "Seccomp").as_deref() == Some("2") {
        causes.push("a seccomp filter");
        fixes.push(
            "a container runtime's default seccomp profile refuses unshare: Kubernetes \
             `securityContext.seccompProfile.type: Unconfined` (or a Localhost \
             profile that allows unshare and clone with CLONE_NEWUSER); docker/podman: \
             --security-opt seccomp=unconfined",
        );
    }
    let apparmor = apparmor_profile(paths);
    if apparmor.is_some() {
        causes.push("an AppArmor profile");
        fixes.push(
            "Kubernetes: `securityContext.appArmorProfile.type: Unconfined` (or a profile that \
             allows userns); docker/podman: --security-opt apparmor=unconfined",
        );
    }
    if causes.is_empty() {
        return (
            format!("creating a user namespace failed ({error})"),
            "user namespaces are refused here for a reason img cannot see (a security module \
             or a nested namespace limit); Kubernetes: `hostUsers: false` gives the pod a user \
             namespace of its own to nest in"
                .into(),
        );
    }
    let profile = apparmor.map(|p| format!(" ({p})")).unwrap_or_default();
    (
        format!(
            "creating a user namespace failed ({error}); this process is confined by {}{profile}",
            causes.join(" and ")
        ),
        fixes.join("; "),
    )
}

/// Why sethostname(2) failed with `errno` in the step's own UTS namespace, where the kernel
/// allows it: a seccomp filter (podman's default profile allows it only with CAP_SYS_ADMIN,
/// while it allows unshare and mount), else a security module.
pub(super) fn hostname_refusal(paths: &HostPaths, errno: i32) -> (String, String) {
    let error = std::io::Error::from_raw_os_error(errno);
    let by = if status_field(paths, "Seccomp").as_deref() == Some("2") {
        "this process's seccomp filter"
    } else {
        "a security module"
    };
    (
        format!(
            "user namespaces work, but {by} refuses sethostname(2), which every RUN step makes \
             in its own uts namespace ({error})"
        ),
        "Kubernetes: `securityContext.seccompProfile.type: Unconfined` (or a Localhost profile \
         that allows sethostname); docker/podman: --security-opt seccomp=unconfined (podman's \
         default profile allows sethostname only with CAP_SYS_ADMIN)"
            .into(),
    )
}

/// Why an overlay mount inside a user namespace failed in `dir`, and the fix: an old kernel,
/// a directory on overlayfs (which cannot hold an upper layer), or the error itself.
pub(super) fn overlay_cause(paths: &HostPaths, dir: &Path, error: String) -> (String, String) {
    let release = read_trimmed(&paths.proc.join("sys/kernel/osrelease")).unwrap_or_default();
    if kernel_older_than(&release, (5, 11)) {
        return (
            format!("Linux {release} cannot mount overlayfs in a user namespace ({error})"),
            "use Linux 5.11 or newer (snapshots fall back to copying meanwhile)".into(),
        );
    }
    let on_overlay = nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    if on_overlay {
        return (
            format!(
                "{} is on overlayfs (a container's root filesystem), which cannot hold an \
                 overlay's upper layer ({error})",
                dir.display()
            ),
            "put the state directory on a volume (Kubernetes: an emptyDir; docker/podman: -v) \
             (snapshots fall back to copying meanwhile)"
                .into(),
        );
    }
    (
        format!("overlayfs does not mount in a user namespace here on Linux {release}: {error}"),
        "snapshots fall back to copying; a security module refusing the mount, or a \
         filesystem overlayfs cannot use as upper layer, are the usual causes"
            .into(),
    )
}

/// Whether kernel `release` ("6.1.0-18-amd64") is older than `(major, minor)`.
fn kernel_older_than(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::tests::fake_proc;

    #[test]
    fn a_refused_user_namespace_names_what_refused_it() {
        // what /proc says | what the fix must name
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("self/status", "Seccomp:\t2\nNoNewPrivs:\t1\n")],
                "seccompProfile.type: Unconfined",
            ),
            (
                &[("self/attr/current", "cri-containerd.apparmor.d (enforce)\n")],
                "appArmorProfile.type: Unconfined",
            ),
            (
                &[("sys/user/max_user_namespaces", "0\n")],
                "user.max_user_namespaces=28633",
            ),
            (&[("self/status", "Seccomp:\t0\n")], "hostUsers: false"),
        ];
        for (files, fix) in cases {
            let (_tmp, paths) = fake_proc(files);
            let (detail, got) = namespace_refusal(&paths, Who::User, libc::EPERM);
            assert!(got.contains(fix), "{files:?}: {detail} / {got}");
            assert!(detail.contains("Operation not permitted"), "{detail}");
        }
        let (_tmp, paths) = fake_proc(&[
            ("self/status", "Seccomp:\t2\n"),
            ("self/attr/current", "docker-default (enforce)"),
        ]);
        let (detail, fix) = namespace_refusal(&paths, Who::User, libc::EPERM);
        assert!(
            detail.contains("seccomp filter and an AppArmor profile (docker-default (enforce))"),
            "{detail}"
        );
        assert!(
            fix.contains("seccomp=unconfined") && fix.contains("apparmor=unconfined"),
            "{fix}"
        );
    }

    #[test]
    fn who_runs_img_comes_from_the_uid_map() {
        let (_tmp, paths) = fake_proc(&[("self/uid_map", "0 200000 65536\n")]);
        let expected = if nix::unistd::getuid().is_root() {
            Who::NamespaceRoot
        } else {
            Who::User
        };
        assert_eq!(Who::detect(&paths), expected);
        let (_tmp, paths) = fake_proc(&[("self/status", "NoNewPrivs:\t1\n")]);
        assert!(no_new_privs(&paths));
    }

    #[test]
    fn an_old_kernel_is_named_only_when_it_is_old() {
        assert!(kernel_older_than("5.10.0-28-amd64", (5, 11)));
        assert!(!kernel_older_than("6.18.44-fc-v1147", (5, 11)));
        assert!(!kernel_older_than("5.11.0", (5, 11)));
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_p, paths) = fake_proc(&[("sys/kernel/osrelease", "6.18.44\n")]);
        let (detail, fix) = overlay_cause(&paths, tmp.path(), "EINVAL".into());
        assert!(
            !fix.contains("5.11") && detail.contains("6.18.44"),
            "{detail} / {fix}"
        );
        let (_p, paths) = fake_proc(&[("sys/kernel/osrelease", "5.4.0\n")]);
        let (_, fix) = overlay_cause(&paths, tmp.path(), "EINVAL".into());
        assert!(fix.contains("Linux 5.11 or newer"), "{fix}");
    }
}
