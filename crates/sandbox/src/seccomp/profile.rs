//! The seccomp profile of a RUN step, as data: the same policy as Docker's default profile,
//! which BuildKit applies to every RUN step. Everything not listed fails with EPERM.
//!
//! Entries may depend on the step's capabilities (a syscall allowed only with the capability
//! that makes it useful) and on the architecture. The sandbox evaluates them for Docker's
//! default capability set ([`crate::caps::DOCKER_DEFAULT`]); names the architecture does not
//! have (the 32-bit `chown32`, `_llseek`, ... on a 64-bit kernel) are left out when compiling.

/// What a matching syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    /// Fails with this errno instead of EPERM.
    Errno(u32),
}

/// A comparison of syscall argument `index` (all 64 bits, as Docker compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    Eq {
        index: u8,
        value: u64,
    },
    Ne {
        index: u8,
        value: u64,
    },
    /// `(arg & mask) == value`.
    MaskedEq {
        index: u8,
        mask: u64,
        value: u64,
    },
}

/// Architectures whose entries differ; no filter is compiled on others (see `super`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
}

/// One entry: `names` get `action` when every `args` comparison holds, on `arches` (all when
/// empty), for a step with every capability of `with_caps` and none of `without_caps`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub names: &'static [&'static str],
    pub action: Action,
    pub args: &'static [Arg],
    pub arches: &'static [Arch],
    pub with_caps: &'static [u32],
    pub without_caps: &'static [u32],
}

const fn allow(names: &'static [&'static str]) -> Entry {
    Entry {
        names,
        action: Action::Allow,
        args: &[],
        arches: &[],
        with_caps: &[],
        without_caps: &[],
    }
}

const fn allow_with_cap(names: &'static [&'static str], cap: &'static [u32]) -> Entry {
    Entry {
        with_caps: cap,
        ..allow(names)
    }
}

const fn allow_on(names: &'static [&'static str], arches: &'static [Arch]) -> Entry {
    Entry {
        arches,
        ..allow(names)
    }
}

// Capability numbers (linux/capability.h) the entries depend on.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_TIME: u32 = 25;
const CAP_SYS_TTY_CONFIG: u32 = 26;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Namespace-creating clone flags: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
/// (0x7E020000). Without CAP_SYS_ADMIN a step may clone threads and processes, not namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `AF_VSOCK`: host/guest sockets of virtual machines.
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;

/// Syscalls every step may make.
const ALWAYS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// `personality(2)` only with the personalities programs commonly ask for (and the query).
const fn personality(value: u64) -> Entry {
    Entry {
        args: match value {
            0 => &[Arg::Eq { index: 0, value: 0 }],
            0x8 => &[Arg::Eq {
                index: 0,
                value: 0x8,
            }],
            0x20000 => &[Arg::Eq {
                index: 0,
                value: 0x20000,
            }],
            0x20008 => &[Arg::Eq {
                index: 0,
                value: 0x20008,
            }],
            _ => &[Arg::Eq {
                index: 0,
                value: 0xffff_ffff,
            }],
        },
        ..allow(&["personality"])
    }
}

/// The profile.
pub(crate) const PROFILE: &[Entry] = &[
    allow(ALWAYS),
    // Usable since Linux 4.8, where seccomp runs after ptrace.
    allow(&["process_vm_readv", "process_vm_writev", "ptrace"]),
    Entry {
        args: &[Arg::Ne {
            index: 0,
            value: AF_VSOCK,
        }],
        ..allow(&["socket"])
    },
    personality(0),           // PER_LINUX
    personality(0x8),         // UNAME26
    personality(0x20000),     // PER_LINUX | ADDR_NO_RANDOMIZE
    personality(0x20008),     // UNAME26 | ADDR_NO_RANDOMIZE
    personality(0xffff_ffff), // query
    allow_on(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        &[Arch::Aarch64],
    ),
    allow_on(&["arch_prctl", "modify_ldt"], &[Arch::X86_64]),
    allow_on(&["riscv_flush_icache"], &[Arch::Riscv64]),
    allow_with_cap(&["open_by_handle_at"], &[CAP_DAC_READ_SEARCH]),
    allow_with_cap(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        &[CAP_SYS_ADMIN],
    ),
    // Without CAP_SYS_ADMIN: processes and threads, no namespaces.
    Entry {
        args: &[Arg::MaskedEq {
            index: 0,
            mask: CLONE_NAMESPACE_FLAGS,
            value: 0,
        }],
        without_caps: &[CAP_SYS_ADMIN],
        ..allow(&["clone"])
    },
    // clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes the C
    // libraries fall back to clone, whose flags the entry above checks.
    Entry {
        action: Action::Errno(ENOSYS),
        without_caps: &[CAP_SYS_ADMIN],
        ..allow(&["clone3"])
    },
    allow_with_cap(&["reboot"], &[CAP_SYS_BOOT]),
    allow_with_cap(&["chroot"], &[CAP_SYS_CHROOT]),
    allow_with_cap(
        &["delete_module", "init_module", "finit_module"],
        &[CAP_SYS_MODULE],
    ),
    allow_with_cap(&["acct"], &[CAP_SYS_PACCT]),
    allow_with_cap(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        &[CAP_SYS_PTRACE],
    ),
    allow_with_cap(&["iopl", "ioperm"], &[CAP_SYS_RAWIO]),
    allow_with_cap(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        &[CAP_SYS_TIME],
    ),
    allow_with_cap(&["vhangup"], &[CAP_SYS_TTY_CONFIG]),
    allow_with_cap(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        &[CAP_SYS_NICE],
    ),
    allow_with_cap(&["syslog"], &[CAP_SYSLOG]),
    allow_with_cap(&["bpf"], &[CAP_BPF]),
    allow_with_cap(&["perf_event_open"], &[CAP_PERFMON]),
];

impl Entry {
    /// Whether the entry applies on `arch` to a step with capabilities `caps`.
    pub(crate) fn applies(&self, arch: Arch, caps: &[u32]) -> bool {
        (self.arches.is_empty() || self.arches.contains(&arch))
            && self.with_caps.iter().all(|c| caps.contains(c))
            && !self.without_caps.iter().any(|c| caps.contains(c))
    }
}
