//! File ops: `COPY`, `ADD`, `WORKDIR` and heredoc files, as an ordered list of actions.

use serde::{Deserialize, Serialize};

use crate::OpRef;

/// Applies `actions` in order to a copy of `base`; the result is the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// The filesystem changed; `None` starts from an empty one.
    pub base: Option<OpRef>,
    /// The changes, applied in order.
    pub actions: Vec<FileAction>,
}

impl FileOp {
    /// A file op with no actions yet.
    pub fn new(base: Option<OpRef>) -> Self {
        FileOp {
            base,
            actions: Vec::new(),
        }
    }

    /// Appends an action.
    pub fn with_action(mut self, action: impl Into<FileAction>) -> Self {
        self.actions.push(action.into());
        self
    }
}

/// One change made by a [`FileOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileAction {
    /// Copy paths from another op's output.
    Copy(CopyAction),
    /// Create a directory.
    Mkdir(MkdirAction),
    /// Create a file with given content.
    Mkfile(MkfileAction),
    /// Remove a path.
    Rm(RmAction),
    /// Create a symbolic link.
    Symlink(SymlinkAction),
}

/// A user or group given by number or by name (resolved in the destination's `/etc/passwd`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdOrName {
    /// A numeric id.
    Id(u32),
    /// A name to look up.
    Name(String),
}

/// `--chown=user[:group]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning user.
    pub user: IdOrName,
    /// The owning group; `None` is the user's primary group.
    pub group: Option<IdOrName>,
}

/// Copies `src` paths of `source` to `dest` (`COPY`, `ADD`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    /// The output copied from.
    pub source: OpRef,
    /// Paths in `source`, relative to its root; may contain wildcards when `allow_wildcard`.
    pub src: Vec<String>,
    /// Destination path; a trailing `/` means "into this directory".
    pub dest: String,
    /// Copy what a symlink in `src` points to rather than the link.
    pub follow_symlinks: bool,
    /// Copy a directory's contents rather than the directory itself (Docker's `COPY dir/ …`).
    pub copy_dir_contents: bool,
    /// Create missing parent directories of `dest`.
    pub create_dest_path: bool,
    /// Expand wildcards in `src`.
    pub allow_wildcard: bool,
    /// Succeed when a wildcard matches nothing.
    pub allow_empty_wildcard: bool,
    /// Unpack local tar archives into `dest` (`ADD`).
    pub unpack_archive: bool,
    /// Ownership of the copied files; `None` keeps the source's.
    pub owner: Option<Owner>,
    /// Permission bits of the copied files (an octal `--chmod`); `None` keeps the source's.
    pub mode: Option<u32>,
    /// A symbolic `--chmod` (`u+x`, `go=rX`), applied to each copied entry's own mode; left out
    /// of the serialization when absent, so graphs without one keep their digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbolic_mode: Option<crate::Chmod>,
    /// Only copy paths matching one of these patterns (`--include`); empty means all.
    pub include_patterns: Vec<String>,
    /// Skip paths matching these patterns (`--exclude`).
    pub exclude_patterns: Vec<String>,
}

impl CopyAction {
    /// A Docker `COPY src… dest` with its defaults: wildcards allowed, parents created,
    /// directory contents copied, symlinks followed at the top level, ownership kept.
    pub fn new(source: OpRef, src: Vec<String>, dest: impl Into<String>) -> Self {
        CopyAction {
            source,
            src,
            dest: dest.into(),
            follow_symlinks: true,
            copy_dir_contents: true,
            create_dest_path: true,
            allow_wildcard: true,
            allow_empty_wildcard: false,
            unpack_archive: false,
            owner: None,
            mode: None,
            symbolic_mode: None,
            include_patterns: Vec::new(),
            exclude_patterns: Vec::new(),
        }
    }
}

/// Creates a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirAction {
    /// Absolute path to create.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Create missing parents too (`mkdir -p`).
    pub make_parents: bool,
    /// Owner; `None` is root.
    pub owner: Option<Owner>,
}

/// Creates (or replaces) a regular file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkfileAction {
    /// Absolute path of the file.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// The content.
    pub data: String,
    /// Owner; `None` is root.
    pub owner: Option<Owner>,
}

/// Removes a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmAction {
    /// Absolute path to remove.
    pub path: String,
    /// Succeed when the path does not exist.
    pub allow_not_found: bool,
    /// Expand wildcards in `path`.
    pub allow_wildcard: bool,
}

/// Creates a symbolic link at `path` pointing to `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymlinkAction {
    /// What the link points to (its content, not resolved).
    pub target: String,
    /// Absolute path of the link.
    pub path: String,
}

impl From<CopyAction> for FileAction {
    fn from(a: CopyAction) -> Self {
        FileAction::Copy(a)
    }
}
impl From<MkdirAction> for FileAction {
    fn from(a: MkdirAction) -> Self {
        FileAction::Mkdir(a)
    }
}
impl From<MkfileAction> for FileAction {
    fn from(a: MkfileAction) -> Self {
        FileAction::Mkfile(a)
    }
}
impl From<RmAction> for FileAction {
    fn from(a: RmAction) -> Self {
        FileAction::Rm(a)
    }
}
impl From<SymlinkAction> for FileAction {
    fn from(a: SymlinkAction) -> Self {
        FileAction::Symlink(a)
    }
}
