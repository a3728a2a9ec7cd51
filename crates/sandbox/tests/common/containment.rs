//! What a step must not be able to do, probed from inside a step: run as root (CI) and as an
//! ordinary user (`unprivileged.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use img_sandbox::{Process, Rootfs, SandboxSpec};

use super::{mapping, run, sh, stdout_of};

/// Probes run in one step; each prints a line only when containment failed, or the kernel's
/// answer where it is checked.
const PROBES: &str = r#"
grep '^Seccomp:' /proc/self/status
for d in /sys/fs/cgroup /sys/fs/cgroup/*; do
  [ -d "$d" ] || continue
  if mkdir "$d/img-probe" 2>>/tmp/errors; then echo "cgroup-writable $d"; rmdir "$d/img-probe"; fi
done
v=$(cat /proc/sys/vm/swappiness)
echo "$v" 2>>/tmp/errors > /proc/sys/vm/swappiness && echo proc-sys-writable
if [ -e /sys/kernel/mm/ksm/pages_to_scan ]; then
  v=$(cat /sys/kernel/mm/ksm/pages_to_scan)
  echo "$v" 2>>/tmp/errors > /sys/kernel/mm/ksm/pages_to_scan && echo sys-kernel-writable
fi
touch /sys/kernel/img-probe 2>>/tmp/errors && echo sys-kernel-created
for node in /tmp/blk /dev/blk; do
  if mknod "$node" b 7 0 2>>/tmp/errors; then
    head -c 1 "$node" >/dev/null 2>>/tmp/errors && echo "block-device-opened $node"
    rm -f "$node"
  fi
done
unshare -U true 2>>/tmp/errors && echo unshare-allowed
for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/interrupts; do
  [ -e "$f" ] && echo "masked $f $(wc -c < "$f")"
done
echo "firmware $(ls -A /sys/firmware | wc -l)"
echo "powercap $(ls -A /sys/devices/virtual/powercap 2>/dev/null | wc -l)"
echo "uid_map $(head -n 1 /proc/self/uid_map)"
echo ---
cat /tmp/errors
rm /tmp/errors
"#;

/// Runs the probes in a step of `root` and checks every answer; returns the step's uid_map
/// line, as numbers.
pub fn assert_contained(root: &Path) -> Vec<u64> {
    let out = stdout_of(&sh(root, PROBES).build());
    let (answers, errors) = out.split_once("---\n").expect("separator");
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines[0], "Seccomp:\t2", "{out}");
    for bad in [
        "cgroup-writable",
        "proc-sys-writable",
        "sys-kernel-writable",
        "sys-kernel-created",
        "block-device-opened",
        "unshare-allowed",
    ] {
        assert!(!answers.contains(bad), "{bad}:\n{out}");
    }
    // Refused because read-only, not only because of file permissions.
    assert!(
        errors.contains("/proc/sys/vm/swappiness: Read-only file system"),
        "{errors}"
    );
    if Path::new("/sys/kernel/mm/ksm/pages_to_scan").exists() {
        assert!(
            errors.contains("/sys/kernel/mm/ksm/pages_to_scan: Read-only file system"),
            "{errors}"
        );
    }
    if Path::new("/sys/fs/cgroup").is_dir() {
        assert!(
            errors.contains("/sys/fs/cgroup/img-probe': Read-only file system"),
            "{errors}"
        );
    }
    // The default seccomp profile refuses namespaces to a step without CAP_SYS_ADMIN.
    assert!(
        errors.contains("unshare(0x10000000): Operation not permitted"),
        "{errors}"
    );
    let masked_files: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("masked "))
        .collect();
    assert!(!masked_files.is_empty(), "{out}");
    for file in masked_files {
        assert!(file.ends_with(" 0"), "{file} readable in\n{out}");
    }
    for masked in ["firmware 0", "powercap 0"] {
        assert!(lines.contains(&masked), "{masked} in\n{out}");
    }
    let uid_map = lines
        .iter()
        .find_map(|l| l.strip_prefix("uid_map "))
        .expect("uid_map line");
    uid_map
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect()
}

/// A static program that exits with its effective uid (modulo 256): a setuid-root copy
/// exits 0 when run by another user.
fn euid_program() -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    let (machine, code): (u16, &[u8]) = (
        62,
        &[
            0xb8, 107, 0, 0, 0, // mov eax, geteuid
            0x0f, 0x05, // syscall
            0x89, 0xc7, // mov edi, eax
            0xb8, 60, 0, 0, 0, // mov eax, exit
            0x0f, 0x05, // syscall
        ],
    );
    #[cfg(target_arch = "aarch64")]
    let (machine, code): (u16, &[u8]) = (
        183,
        &[
            0xe8, 0x15, 0x80, 0xd2, // mov x8, #175 (geteuid)
            0x01, 0x00, 0x00, 0xd4, // svc #0
            0xa8, 0x0b, 0x80, 0xd2, // mov x8, #93 (exit)
            0x01, 0x00, 0x00, 0xd4, // svc #0
        ],
    );
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + code.len() as u64;
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}

/// A setuid-root program run by user app (1000) runs with euid 0: no no_new_privs, as with
/// BuildKit, so sudo works in steps. Needs uid 1000 mapped.
pub fn assert_setuid_works(root: &Path) {
    let program = root.join("bin/euid");
    fs::write(&program, euid_program()).expect("write program");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut process = Process::new(["/bin/euid"]);
    process.user = "app".into();
    let spec = SandboxSpec::builder(Rootfs::Directory(root.to_path_buf()), process, mapping());
    let (result, out) = run(&spec.clone().build());
    assert_eq!(result.expect("ran").code, Some(1000 % 256), "{out:?}");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    let (result, out) = run(&spec.build());
    assert_eq!(
        result.expect("ran").code,
        Some(0),
        "setuid root ignored: {out:?}"
    );
    fs::remove_file(&program).expect("remove program");
}
