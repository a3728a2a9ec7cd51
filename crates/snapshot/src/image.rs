//! The image store: names (references) in the database, pointing at manifests or indexes in
//! the content store. Every change regenerates `content/index.json` so the content directory
//! stays a valid OCI image layout that skopeo and umoci can read by name.

use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::Descriptor;

use crate::db::{now_unix, DatabaseError, Db};
use crate::fsutil;
use crate::state::StateDir;
use img_llb::{Digest, DigestError};

/// The annotation OCI layout readers (skopeo `oci:DIR:NAME`, umoci `--image DIR:NAME`) match.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd uses for the full image name.
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A failure of the image store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No image has this name.
    #[error("image {name:?} not found")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// The name is empty or contains characters OCI layout references cannot hold.
    #[error("invalid image name {name:?}: use letters, digits and . _ - : / @ +")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The manifest or index the name would point at is not in the content store.
    #[error("image {name:?}: target {digest} is not in the content store; write the manifest blob first")]
    MissingTarget {
        /// The image name.
        name: String,
        /// The missing blob.
        digest: Digest,
    },
    /// The descriptor's digest is not sha256.
    #[error("image {name:?}: {source}")]
    Digest {
        /// The image name.
        name: String,
        /// The underlying error.
        #[source]
        source: DigestError,
    },
    /// A stored descriptor could not be (de)serialized.
    #[error("image {name:?}: descriptor json: {source}")]
    Json {
        /// The image name.
        name: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing `index.json` failed.
    #[error("writing OCI layout index {path}: {source}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// A named image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The reference, e.g. `docker.io/library/app:latest`.
    pub name: String,
    /// The manifest or index descriptor the name points at.
    pub target: Descriptor,
    /// When the name was first stored (unix seconds).
    pub created: i64,
    /// When the name last changed (unix seconds).
    pub updated: i64,
}

/// Names to manifests. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    state: StateDir,
    db: Arc<Db>,
}

impl ImageStore {
    pub(crate) fn new(state: StateDir, db: Arc<Db>) -> Self {
        ImageStore { state, db }
    }

    /// Points `name` at `target` (a manifest or index already in the content store), creating
    /// or replacing the name.
    pub fn put(&self, name: &str, target: &Descriptor) -> Result<(), ImageError> {
        validate_name(name)?;
        let digest = Digest::try_from(target.digest()).map_err(|source| ImageError::Digest {
            name: name.to_owned(),
            source,
        })?;
        if !self.state.blobs().join(digest.hex()).is_file() {
            return Err(ImageError::MissingTarget {
                name: name.to_owned(),
                digest,
            });
        }
        let json = serde_json::to_string(target).map_err(|source| ImageError::Json {
            name: name.to_owned(),
            source,
        })?;
        self.change(|tx| {
            let now = now_unix();
            tx.execute(
                "INSERT INTO images (name, digest, descriptor, created, updated) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET digest = ?2, descriptor = ?3, updated = ?4",
                (name, digest.to_string(), &json, now),
            )?;
            Ok(())
        })
    }

    /// The image named `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let row = self.db.read(|c| {
            let mut st =
                c.prepare("SELECT name, descriptor, created, updated FROM images WHERE name = ?1")?;
            let mut rows = st.query_map([name], row_tuple)?;
            rows.next().transpose()
        })?;
        row.map(record).transpose()
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let rows = self.db.read(|c| {
            let mut st =
                c.prepare("SELECT name, descriptor, created, updated FROM images ORDER BY name")?;
            let rows = st
                .query_map([], row_tuple)?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })?;
        rows.into_iter().map(record).collect()
    }

    /// Removes a name (the blobs stay until garbage collection). Returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, ImageError> {
        self.change(|tx| Ok(tx.execute("DELETE FROM images WHERE name = ?1", [name])? > 0))
    }

    /// Gives the image `source` a second name `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let record = self.get(source)?.ok_or_else(|| ImageError::NotFound {
            name: source.to_owned(),
        })?;
        self.put(target, &record.target)
    }

    /// Runs a change and rewrites index.json inside the same write transaction, so concurrent
    /// changes from several processes write the index in the order they commit.
    fn change<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, ImageError> {
        self.db.write_with(|tx| {
            let value = f(tx).map_err(|e| self.db.err(e))?;
            regenerate_index(&self.state, &self.db, tx)?;
            Ok(value)
        })
    }
}

/// Rewrites index.json from the images table, inside the caller's write transaction.
pub(crate) fn regenerate_index(
    state: &StateDir,
    db: &Db,
    tx: &rusqlite::Transaction<'_>,
) -> Result<(), ImageError> {
    let rows = {
        let mut st = tx
            .prepare("SELECT name, descriptor, created, updated FROM images ORDER BY name")
            .map_err(|e| db.err(e))?;
        let rows = st.query_map([], row_tuple).map_err(|e| db.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db.err(e))?
    };
    let records = rows
        .into_iter()
        .map(record)
        .collect::<Result<Vec<_>, _>>()?;
    write_index(state, &records)
}

type Row = (String, String, i64, i64);

fn row_tuple(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn record((name, json, created, updated): Row) -> Result<ImageRecord, ImageError> {
    let target = serde_json::from_str(&json).map_err(|source| ImageError::Json {
        name: name.clone(),
        source,
    })?;
    Ok(ImageRecord {
        name,
        target,
        created,
        updated,
    })
}

fn validate_name(name: &str) -> Result<(), ImageError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Writes `content/index.json`: one entry per name, annotated with the name.
fn write_index(state: &StateDir, records: &[ImageRecord]) -> Result<(), ImageError> {
    let path = state.content().join("index.json");
    let mut manifests = Vec::with_capacity(records.len());
    for r in records {
        let mut desc = serde_json::to_value(&r.target).map_err(|source| ImageError::Json {
            name: r.name.clone(),
            source,
        })?;
        let annotations = desc.as_object_mut().map(|o| {
            o.entry("annotations")
                .or_insert_with(|| serde_json::json!({}))
        });
        if let Some(serde_json::Value::Object(a)) = annotations {
            a.insert(REF_NAME_ANNOTATION.into(), r.name.clone().into());
            a.insert(CONTAINERD_NAME_ANNOTATION.into(), r.name.clone().into());
        }
        manifests.push(desc);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec_pretty(&index).map_err(|source| ImageError::Json {
        name: String::new(),
        source,
    })?;
    fsutil::write_atomic(&state.tmp(), &path, &bytes)
        .map_err(|source| ImageError::Index { path, source })
}
