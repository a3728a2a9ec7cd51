//! Writing the maps of a new user namespace: directly to /proc, or through the setuid
//! `newuidmap`/`newgidmap` helpers for an ordinary user's subordinate ranges.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{IdMapError, IdRange};

pub(super) fn map_text(map: &[IdRange]) -> String {
    map.iter()
        .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.count))
        .collect()
}

pub(crate) fn write_map(path: &Path, text: &str) -> Result<(), IdMapError> {
    fs::write(path, text).map_err(|source| IdMapError::WriteMap {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `uid_map` and `gid_map` of process `pid` (under `proc`) directly, which needs
/// CAP_SETUID and CAP_SETGID over the parent namespace (or a map of the writer's own id only,
/// after setgroups is denied).
pub(super) fn write_maps(
    proc: &Path,
    pid: i32,
    uid_map: &[IdRange],
    gid_map: &[IdRange],
    deny_setgroups: bool,
) -> Result<(), IdMapError> {
    let dir = proc.join(pid.to_string());
    if deny_setgroups {
        write_map(&dir.join("setgroups"), "deny")?;
    }
    write_map(&dir.join("uid_map"), &map_text(uid_map))?;
    write_map(&dir.join("gid_map"), &map_text(gid_map))
}

pub(super) struct RunningHelper {
    program: PathBuf,
    args: Vec<String>,
    child: std::process::Child,
}

pub(super) fn start_helper(
    program: &Path,
    pid: i32,
    map: &[IdRange],
) -> Result<RunningHelper, IdMapError> {
    let mut args = vec![pid.to_string()];
    for r in map {
        args.extend([
            r.container_id.to_string(),
            r.host_id.to_string(),
            r.count.to_string(),
        ]);
    }
    let child = Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| IdMapError::SpawnHelper {
            program: program.to_path_buf(),
            source,
        })?;
    Ok(RunningHelper {
        program: program.to_path_buf(),
        args,
        child,
    })
}

pub(super) fn finish_helper(helper: RunningHelper) -> Result<(), IdMapError> {
    let RunningHelper {
        program,
        args,
        child,
    } = helper;
    let output = child
        .wait_with_output()
        .map_err(|source| IdMapError::SpawnHelper {
            program: program.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(IdMapError::HelperFailed {
        program,
        args: args.join(" "),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
