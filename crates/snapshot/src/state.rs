//! Where img keeps its state, and the names of everything inside it.
//!
//! ```text
//! <state>/
//!   metadata.db            SQLite (WAL): snapshots, images, leases, settings
//!   content/               an OCI image layout readable by skopeo/umoci
//!     oci-layout
//!     index.json           regenerated from the images table on every tag change
//!     blobs/sha256/<hex>   manifests, indexes, configs, layers
//!   snapshots/<id>/fs      native: the full tree; overlayfs: the upper directory
//!   snapshots/<id>/work    overlayfs work directory
//!   snapshots/<id>/flat/fs overlayfs: the merged view of a chain too deep to mount, flattened
//!   tmp/                   in-progress files, renamed into place once complete
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Failure to resolve the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The explicit path could not be made absolute.
    #[error("cannot make state directory {path} absolute; pass an absolute --state path")]
    Absolute {
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The root of img's on-disk state, with accessors for its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Resolves the state directory: `explicit` (the cli's `--state` flag or `IMG_STATE`),
    /// else `$XDG_DATA_HOME/img` (the first entry if it is a `:`-list), else
    /// `$HOME/.local/share/img`, else `/tmp/img`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<StateDir, StateError> {
        Self::resolve_with_env(explicit, |name| std::env::var_os(name))
    }

    /// As [`StateDir::resolve`], reading environment variables through `env`.
    pub fn resolve_with_env(
        explicit: Option<PathBuf>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<StateDir, StateError> {
        if let Some(path) = explicit.filter(|p| !p.as_os_str().is_empty()) {
            let root = std::path::absolute(&path).map_err(|source| StateError::Absolute {
                path: path.clone(),
                source,
            })?;
            return Ok(StateDir { root });
        }
        // The XDG base directory spec says relative entries are invalid and must be ignored.
        let xdg = env("XDG_DATA_HOME").and_then(|v| {
            let v = v.to_string_lossy().into_owned();
            let first = v.split(':').next().unwrap_or("").to_owned();
            Some(PathBuf::from(first)).filter(|p| p.is_absolute())
        });
        if let Some(xdg) = xdg {
            return Ok(StateDir {
                root: xdg.join("img"),
            });
        }
        if let Some(home) = env("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
            return Ok(StateDir {
                root: home.join(".local/share/img"),
            });
        }
        Ok(StateDir {
            root: PathBuf::from("/tmp/img"),
        })
    }

    /// A state directory at exactly `root` (no resolution rules).
    pub fn at(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<state>/metadata.db`, the SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("metadata.db")
    }

    /// `<state>/content`, the OCI image layout holding every blob.
    pub fn content(&self) -> PathBuf {
        self.root.join("content")
    }

    /// `<state>/content/blobs/sha256`.
    pub fn blobs(&self) -> PathBuf {
        self.content().join("blobs").join("sha256")
    }

    /// `<state>/snapshots`, one numbered directory per snapshot.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// `<state>/tmp`, in-progress files (same filesystem, so completion is a rename).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(explicit: Option<&str>, vars: &[(&str, &str)]) -> PathBuf {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StateDir::resolve_with_env(explicit.map(PathBuf::from), |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
        .unwrap()
        .root
    }

    #[test]
    fn resolution_order() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (Some("/s"), &[("XDG_DATA_HOME", "/x"), ("HOME", "/h")], "/s"),
            (
                None,
                &[("XDG_DATA_HOME", "/x:/y"), ("HOME", "/h")],
                "/x/img",
            ),
            (
                None,
                &[("XDG_DATA_HOME", "rel"), ("HOME", "/h")],
                "/h/.local/share/img",
            ),
            (
                None,
                &[("XDG_DATA_HOME", ""), ("HOME", "/h")],
                "/h/.local/share/img",
            ),
            (None, &[("HOME", "/h")], "/h/.local/share/img"),
            (None, &[], "/tmp/img"),
        ];
        for (explicit, vars, want) in cases {
            assert_eq!(
                resolve(*explicit, vars),
                PathBuf::from(want),
                "{explicit:?} {vars:?}"
            );
        }
    }

    #[test]
    fn relative_explicit_is_made_absolute() {
        assert!(resolve(Some("rel/state"), &[]).is_absolute());
    }
}
