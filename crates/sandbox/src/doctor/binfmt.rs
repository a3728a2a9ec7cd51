//! Whether RUN steps of a foreign platform can run here: the kernel hands a foreign ELF
//! executable to the binfmt_misc handler whose magic and mask match its header (QEMU's user
//! mode emulator, registered by `qemu-user-static` and `binfmt-support`).
//!
//! A handler is matched exactly as the kernel matches it: the first bytes of an ELF executable
//! of the platform (identification, type, machine), masked, against the handler's masked
//! magic at its offset. Only handlers registered with the `F` flag work in a RUN step: the
//! kernel opened their interpreter at registration, so it need not exist inside the step's
//! root filesystem. Debian's `qemu-user-static` and `tonistiigi/binfmt` both register so.

use std::fs;
use std::path::{Path, PathBuf};

use crate::paths::HostPaths;

/// How to make foreign platforms work, for every message that needs it.
pub const BINFMT_FIX: &str = "install qemu-user-static and binfmt-support (apt-get install \
     qemu-user-static binfmt-support), mount binfmt_misc if it is not (mount -t binfmt_misc \
     binfmt_misc /proc/sys/fs/binfmt_misc) and enable the handlers (update-binfmts --enable)";

/// How a platform's RUN steps run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlatformSupport {
    /// The processor runs the platform's programs itself.
    Native,
    /// A binfmt_misc handler runs them.
    Emulated {
        /// The handler's name (`qemu-aarch64`).
        handler: String,
        /// Its interpreter (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P`).
        interpreter: String,
    },
}

/// Why a platform's RUN steps cannot run on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinfmtError {
    /// The platform string is not `os/arch[/variant]`.
    #[error("invalid platform {platform:?}: expected os/arch[/variant]")]
    InvalidPlatform {
        /// As given.
        platform: String,
    },
    /// Only Linux programs run in a RUN step.
    #[error("RUN steps for {platform} cannot run here: only linux platforms can run RUN steps")]
    NotLinux {
        /// The platform.
        platform: String,
    },
    /// An architecture img knows no ELF machine for.
    #[error("RUN steps for {platform} cannot run here: img does not know the executables of architecture {architecture:?}")]
    UnknownArchitecture {
        /// The platform.
        platform: String,
        /// Its architecture.
        architecture: String,
    },
    /// binfmt_misc is not mounted (or not readable).
    #[error("RUN steps for {platform} need emulation, but {} is not mounted: {BINFMT_FIX}", dir.display())]
    NotMounted {
        /// The platform.
        platform: String,
        /// Where binfmt_misc was looked for.
        dir: PathBuf,
    },
    /// binfmt_misc is switched off as a whole.
    #[error("RUN steps for {platform} need emulation, but binfmt_misc is disabled ({}/status): {BINFMT_FIX}", dir.display())]
    Disabled {
        /// The platform.
        platform: String,
        /// The binfmt_misc directory.
        dir: PathBuf,
    },
    /// No enabled handler takes the platform's executables.
    #[error("RUN steps for {platform} need emulation, but no binfmt_misc handler is registered for {architecture} executables: {BINFMT_FIX}")]
    NoHandler {
        /// The platform.
        platform: String,
        /// Its architecture.
        architecture: String,
    },
    /// The handler would need its interpreter inside the step's root filesystem.
    #[error("RUN steps for {platform} would run through the binfmt_misc handler {handler}, but it is registered without the F flag, so its interpreter {interpreter} is not reachable inside a step: register it with F (qemu-user-static does: apt-get install qemu-user-static binfmt-support, then update-binfmts --enable)")]
    NotFixed {
        /// The platform.
        platform: String,
        /// The handler's name.
        handler: String,
        /// Its interpreter.
        interpreter: String,
    },
}

/// Where binfmt_misc is mounted under `paths`' procfs.
pub fn binfmt_dir(paths: &HostPaths) -> PathBuf {
    paths.proc.join("sys/fs/binfmt_misc")
}

/// The architecture this program runs on, in Go's spelling (`amd64`, `arm64`).
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Whether the host runs `architecture`'s programs without emulation: its own, and 32-bit x86
/// on x86-64.
fn runs_natively(architecture: &str) -> bool {
    let host = host_architecture();
    architecture == host || (host == "amd64" && architecture == "386")
}

/// The first 20 bytes of an ELF executable of `architecture` (Go's name): identification
/// (class, byte order, version), type `ET_EXEC` and machine, as binfmt handlers match them.
fn elf_header(architecture: &str) -> Option<[u8; 20]> {
    // (64-bit, little-endian, e_machine)
    let (wide, little, machine): (bool, bool, u16) = match architecture {
        "amd64" => (true, true, 62),
        "386" => (false, true, 3),
        "arm64" => (true, true, 183),
        "arm" => (false, true, 40),
        "ppc64le" => (true, true, 21),
        "ppc64" => (true, false, 21),
        "s390x" => (true, false, 22),
        "riscv64" => (true, true, 243),
        "mips64le" => (true, true, 8),
        "mips64" => (true, false, 8),
        "mipsle" => (false, true, 8),
        "mips" => (false, false, 8),
        "loong64" => (true, true, 258),
        _ => return None,
    };
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if wide { 2 } else { 1 };
    header[5] = if little { 1 } else { 2 };
    header[6] = 1;
    let (kind, machine) = if little {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    } else {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    };
    header[16..18].copy_from_slice(&kind);
    header[18..20].copy_from_slice(&machine);
    Some(header)
}

/// One registered handler, as its file under binfmt_misc describes it.
#[derive(Debug, Default)]
struct Handler {
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Option<Vec<u8>>,
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_handler(text: &str) -> Option<Handler> {
    let mut handler = Handler::default();
    let mut magic = None;
    for line in text.lines() {
        let line = line.trim();
        match line.split_once(' ') {
            _ if line == "enabled" => handler.enabled = true,
            Some(("interpreter", v)) => handler.interpreter = v.trim().to_owned(),
            Some(("flags:", v)) => handler.flags = v.trim().to_owned(),
            Some(("offset", v)) => handler.offset = v.trim().parse().ok()?,
            Some(("magic", v)) => magic = parse_hex(v.trim()),
            Some(("mask", v)) => handler.mask = parse_hex(v.trim()),
            _ => {}
        }
    }
    // Extension handlers (`extension .jar`) have no magic and never take an ELF file.
    handler.magic = magic?;
    Some(handler)
}

impl Handler {
    /// The kernel's test: every magic byte equals the file's byte at offset + i, both masked.
    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, magic)| {
            let mask = self
                .mask
                .as_ref()
                .and_then(|m| m.get(i).copied())
                .unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|byte| byte & mask == magic & mask)
        })
    }
}

/// How `platform` (`linux/arm64`, as img normalizes it) runs here, with binfmt_misc mounted
/// at `dir` ([`binfmt_dir`] for the host's).
pub fn platform_support(dir: &Path, platform: &str) -> Result<PlatformSupport, BinfmtError> {
    let name = || platform.to_owned();
    let mut parts = platform.split('/');
    let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
        return Err(BinfmtError::InvalidPlatform { platform: name() });
    };
    if os != "linux" {
        return Err(BinfmtError::NotLinux { platform: name() });
    }
    if runs_natively(architecture) {
        return Ok(PlatformSupport::Native);
    }
    let Some(header) = elf_header(architecture) else {
        return Err(BinfmtError::UnknownArchitecture {
            platform: name(),
            architecture: architecture.to_owned(),
        });
    };
    let entries = fs::read_dir(dir).map_err(|_| BinfmtError::NotMounted {
        platform: name(),
        dir: dir.to_owned(),
    })?;
    match fs::read_to_string(dir.join("status")) {
        Ok(status) if status.trim() == "disabled" => {
            return Err(BinfmtError::Disabled {
                platform: name(),
                dir: dir.to_owned(),
            })
        }
        Ok(_) => {}
        // A directory without the status file is not binfmt_misc.
        Err(_) => {
            return Err(BinfmtError::NotMounted {
                platform: name(),
                dir: dir.to_owned(),
            })
        }
    }
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "register" && n != "status")
        .collect();
    // The first match wins in the kernel too (the newest registration); sorting keeps the
    // message stable when several would.
    names.sort();
    let mut unfixed = None;
    for handler_name in names {
        let Some(handler) = fs::read_to_string(dir.join(&handler_name))
            .ok()
            .as_deref()
            .and_then(parse_handler)
        else {
            continue;
        };
        if !handler.enabled || !handler.matches(&header) {
            continue;
        }
        if handler.flags.contains('F') {
            return Ok(PlatformSupport::Emulated {
                handler: handler_name,
                interpreter: handler.interpreter,
            });
        }
        unfixed.get_or_insert((handler_name, handler.interpreter));
    }
    match unfixed {
        Some((handler, interpreter)) => Err(BinfmtError::NotFixed {
            platform: name(),
            handler,
            interpreter,
        }),
        None => Err(BinfmtError::NoHandler {
            platform: name(),
            architecture: architecture.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-user-static registration for aarch64.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    /// And for s390x (big-endian).
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\nmask ffffffffffffff00fffffffffffffffffffeffff\n";

    fn binfmt(handlers: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in handlers {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn foreign() -> (&'static str, &'static str) {
        // A foreign platform with a real registration above, whatever the host.
        if host_architecture() == "arm64" {
            ("linux/s390x", "qemu-s390x")
        } else {
            ("linux/arm64", "qemu-aarch64")
        }
    }

    #[test]
    fn the_matching_fixed_handler_emulates() {
        let dir = binfmt(&[
            ("qemu-aarch64", AARCH64),
            ("qemu-s390x", S390X),
            (
                "jar",
                "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n",
            ),
        ]);
        let (platform, handler) = foreign();
        assert_eq!(
            platform_support(dir.path(), platform).unwrap(),
            PlatformSupport::Emulated {
                handler: handler.into(),
                interpreter: if handler == "qemu-aarch64" {
                    "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
                } else {
                    "/usr/libexec/qemu-binfmt/s390x-binfmt-P".into()
                },
            }
        );
        let host = format!("linux/{}", host_architecture());
        assert_eq!(
            platform_support(dir.path(), &host).unwrap(),
            PlatformSupport::Native
        );
    }

    #[test]
    fn no_matching_handler_names_the_platform_and_the_fix() {
        let (platform, _) = foreign();
        let dir = binfmt(&[]);
        let err = platform_support(dir.path(), platform).unwrap_err();
        assert!(matches!(err, BinfmtError::NoHandler { .. }), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(platform), "{shown}");
        assert!(shown.contains("qemu-user-static"), "{shown}");
        assert!(shown.contains("update-binfmts --enable"), "{shown}");
        // A disabled handler, or one for another machine, does not count.
        let off = AARCH64.replace("enabled", "disabled");
        let dir = binfmt(&[
            ("qemu-aarch64", &off),
            ("qemu-mips", S390X.replace("0016", "0008").as_str()),
        ]);
        assert!(matches!(
            platform_support(dir.path(), "linux/riscv64"),
            Err(BinfmtError::NoHandler { .. })
        ));
    }

    #[test]
    fn a_handler_without_f_is_not_reachable_in_a_step() {
        let (platform, handler) = foreign();
        let text = if handler == "qemu-aarch64" {
            AARCH64
        } else {
            S390X
        };
        let dir = binfmt(&[(handler, &text.replace("flags: PF", "flags: P"))]);
        let err = platform_support(dir.path(), platform).unwrap_err();
        assert!(matches!(err, BinfmtError::NotFixed { .. }), "{err}");
    }

    #[test]
    fn unmounted_disabled_and_unknown() {
        let (platform, _) = foreign();
        let missing = Path::new("/nonexistent/binfmt_misc");
        assert!(matches!(
            platform_support(missing, platform),
            Err(BinfmtError::NotMounted { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            platform_support(empty.path(), platform),
            Err(BinfmtError::NotMounted { .. })
        ));
        let dir = binfmt(&[("qemu-aarch64", AARCH64)]);
        fs::write(dir.path().join("status"), "disabled\n").unwrap();
        assert!(matches!(
            platform_support(dir.path(), platform),
            Err(BinfmtError::Disabled { .. })
        ));
        assert!(matches!(
            platform_support(dir.path(), "windows/amd64"),
            Err(BinfmtError::NotLinux { .. })
        ));
        assert!(matches!(
            platform_support(dir.path(), "linux/wasm"),
            Err(BinfmtError::UnknownArchitecture { .. })
        ));
        assert!(matches!(
            platform_support(dir.path(), "amd64"),
            Err(BinfmtError::InvalidPlatform { .. })
        ));
    }

    #[test]
    fn elf_headers_match_the_registrations_qemu_ships() {
        let aarch64 = parse_handler(AARCH64).unwrap();
        assert!(aarch64.matches(&elf_header("arm64").unwrap()));
        assert!(!aarch64.matches(&elf_header("amd64").unwrap()));
        let s390x = parse_handler(S390X).unwrap();
        assert!(s390x.matches(&elf_header("s390x").unwrap()));
        assert!(!s390x.matches(&elf_header("ppc64").unwrap()));
    }
}
