//! The seccomp filter of a RUN step: Docker's default policy ([`profile`]), evaluated for
//! Docker's default capability set, compiled to BPF once per process by the caller and
//! installed by the step's process just before it executes the command.
//!
//! Compilation uses `seccompiler`, whose syscall tables cover x86_64, aarch64 and riscv64. The
//! compiled program refuses everything outside the profile with EPERM (`clone3` with ENOSYS,
//! so that C libraries fall back to `clone`, whose flags the filter can see). Two limits follow
//! from the compiler:
//!
//! - The filter checks the architecture of every syscall and kills the process on another one:
//!   32-bit binaries (i386 on x86_64, arm on aarch64) cannot run in a filtered step; they need
//!   `RUN --security=insecure`. Docker's profile allows those compat ABIs; `seccompiler` has no
//!   tables for them.
//! - On other architectures (s390x, ppc64le, ...) no filter is compiled and steps run without
//!   one; [`available`] says so and `img doctor` reports it.

mod profile;

use std::collections::BTreeSet;
use std::io;
use std::sync::OnceLock;

use seccompiler::TargetArch;
use serde_json::{json, Value};

use profile::{Action, Arch, Arg, PROFILE};

/// A compiled BPF program, one instruction per `u64` (code, jt, jf, k packed), so that it
/// crosses to the sandbox init as plain data.
pub(crate) type Program = Vec<u64>;

/// Errors of compiling the profile: a defect of the profile data, never of the input.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the seccomp profile: {detail}")]
pub struct SeccompError {
    detail: String,
}

fn this_arch() -> Option<(TargetArch, Arch)> {
    if cfg!(target_arch = "x86_64") {
        Some((TargetArch::x86_64, Arch::X86_64))
    } else if cfg!(target_arch = "aarch64") {
        Some((TargetArch::aarch64, Arch::Aarch64))
    } else if cfg!(target_arch = "riscv64") {
        Some((TargetArch::riscv64, Arch::Riscv64))
    } else {
        None
    }
}

/// Whether steps get a seccomp filter on this architecture.
pub fn available() -> bool {
    this_arch().is_some()
}

/// The filters for a step with Docker's default capabilities, in installation order; `None`
/// where no filter can be compiled (see the module documentation). Compiled once per process.
pub(crate) fn default_filters() -> Result<Option<&'static [Program]>, SeccompError> {
    static COMPILED: OnceLock<Result<Option<Vec<Program>>, String>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(|| {
        let Some((target, arch)) = this_arch() else {
            return Ok(None);
        };
        compile(target, arch, &crate::caps::DOCKER_DEFAULT).map(Some)
    });
    match compiled {
        Ok(filters) => Ok(filters.as_deref()),
        Err(detail) => Err(SeccompError {
            detail: detail.clone(),
        }),
    }
}

/// Compiles the profile for `arch` and capabilities `caps`: one filter allowing what the
/// profile allows (EPERM otherwise), then one filter per errno override. The kernel runs every
/// filter and keeps the most restrictive verdict, the newest filter's among equals, so the
/// override filters installed after the allow filter decide the errno.
fn compile(target: TargetArch, arch: Arch, caps: &[u32]) -> Result<Vec<Program>, String> {
    let known = |name: &str| -> bool {
        // The compiler refuses a filter whose two actions are the same.
        let probe = json!({"probe": {
            "mismatch_action": "allow",
            "match_action": {"errno": libc::EPERM},
            "filter": [{"syscall": name}],
        }});
        seccompiler::compile_from_json(probe.to_string().as_bytes(), target).is_ok()
    };
    // name -> rules (each a list of conditions); an empty rule list matches unconditionally.
    let mut allowed: std::collections::BTreeMap<&str, Option<Vec<Value>>> = Default::default();
    let mut overrides: std::collections::BTreeMap<u32, BTreeSet<&str>> = Default::default();
    for entry in PROFILE.iter().filter(|e| e.applies(arch, caps)) {
        for &name in entry.names {
            if !known(name) {
                continue;
            }
            match entry.action {
                Action::Allow => {
                    let slot = allowed.entry(name).or_insert_with(|| Some(Vec::new()));
                    match (slot.as_mut(), entry.args.is_empty()) {
                        // Unconditional wins over any conditions.
                        (_, true) => *slot = None,
                        (Some(rules), false) => rules.push(conditions(entry.args)),
                        (None, false) => {}
                    }
                }
                Action::Errno(errno) => {
                    overrides.entry(errno).or_default().insert(name);
                }
            }
        }
    }
    let mut rules = Vec::new();
    for (name, conditions) in &allowed {
        match conditions {
            None => rules.push(json!({"syscall": name})),
            Some(list) => {
                for args in list {
                    rules.push(json!({"syscall": name, "args": args}));
                }
            }
        }
    }
    let mut filters = vec![json!({
        "mismatch_action": {"errno": libc::EPERM},
        "match_action": "allow",
        "filter": rules,
    })];
    for (errno, names) in &overrides {
        filters.push(json!({
            "mismatch_action": "allow",
            "match_action": {"errno": errno},
            "filter": names.iter().map(|n| json!({"syscall": n})).collect::<Vec<_>>(),
        }));
    }
    filters
        .into_iter()
        .map(|filter| {
            let text = json!({ "step": filter }).to_string();
            let mut map = seccompiler::compile_from_json(text.as_bytes(), target)
                .map_err(|e| e.to_string())?;
            let program = map.remove("step").ok_or("no program compiled")?;
            Ok(program.iter().map(pack).collect())
        })
        .collect()
}

fn conditions(args: &[Arg]) -> Value {
    args.iter()
        .map(|arg| {
            let (index, op, value) = match *arg {
                Arg::Eq { index, value } => (index, json!("eq"), value),
                Arg::Ne { index, value } => (index, json!("ne"), value),
                Arg::MaskedEq { index, mask, value } => {
                    (index, json!({ "masked_eq": mask }), value)
                }
            };
            json!({"index": index, "type": "qword", "op": op, "val": value})
        })
        .collect()
}

fn pack(i: &seccompiler::sock_filter) -> u64 {
    u64::from(i.code) | u64::from(i.jt) << 16 | u64::from(i.jf) << 24 | u64::from(i.k) << 32
}

/// Installs `filters` in order on the calling thread. Needs CAP_SYS_ADMIN in the current user
/// namespace, as `no_new_privs` stays off (setuid programs such as sudo work in steps, as with
/// BuildKit): the step's process installs them as root of its user namespace, before it
/// switches user.
pub(crate) fn install(filters: &[Program]) -> io::Result<()> {
    for filter in filters {
        let code: Vec<libc::sock_filter> = filter
            .iter()
            .map(|&w| libc::sock_filter {
                code: w as u16,
                jt: (w >> 16) as u8,
                jf: (w >> 24) as u8,
                k: (w >> 32) as u32,
            })
            .collect();
        let len =
            u16::try_from(code.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        let prog = libc::sock_fprog {
            len,
            filter: code.as_ptr().cast_mut(),
        };
        // SAFETY: the kernel copies the program; `code` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_for_every_supported_arch() {
        for (target, arch) in [
            (TargetArch::x86_64, Arch::X86_64),
            (TargetArch::aarch64, Arch::Aarch64),
            (TargetArch::riscv64, Arch::Riscv64),
        ] {
            let filters = compile(target, arch, &crate::caps::DOCKER_DEFAULT).expect("compiles");
            // The allow list and the ENOSYS override for clone3.
            assert_eq!(filters.len(), 2, "{arch:?}");
            assert!(filters[0].len() > 300, "{arch:?}: {}", filters[0].len());
        }
    }

    #[test]
    fn capabilities_decide_the_namespace_syscalls() {
        let arch = Arch::X86_64;
        let applies = |name: &str, caps: &[u32]| {
            PROFILE
                .iter()
                .filter(|e| e.applies(arch, caps) && e.names.contains(&name))
                .map(|e| (e.action, e.args.len()))
                .collect::<Vec<_>>()
        };
        let default = &crate::caps::DOCKER_DEFAULT;
        assert!(applies("unshare", default).is_empty());
        assert!(applies("mount", default).is_empty());
        assert_eq!(applies("clone", default), [(Action::Allow, 1)]);
        assert_eq!(applies("clone3", default), [(Action::Errno(38), 0)]);
        assert_eq!(applies("chroot", default), [(Action::Allow, 0)]);
        assert_eq!(applies("unshare", &[21]), [(Action::Allow, 0)]);
        assert_eq!(applies("clone3", &[21]), [(Action::Allow, 0)]);
        assert!(applies("arch_prctl", default).len() == 1);
        assert!(PROFILE
            .iter()
            .filter(|e| e.applies(Arch::Aarch64, default))
            .all(|e| !e.names.contains(&"arch_prctl")));
    }

    #[test]
    fn packing_round_trips() {
        let i = seccompiler::sock_filter {
            code: 0x15,
            jt: 3,
            jf: 250,
            k: 0xdead_beef,
        };
        let w = pack(&i);
        assert_eq!(
            (w as u16, (w >> 16) as u8, (w >> 24) as u8, (w >> 32) as u32),
            (0x15, 3, 250, 0xdead_beef)
        );
    }
}
