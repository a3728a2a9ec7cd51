//! In-toto statements v0.1: the JSON each attestation layer holds, unsigned (BuildKit stores
//! the statement itself, not a DSSE envelope around it).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use img_llb::{Digest, Platform};

use crate::purl::image_purl;

/// The statement type BuildKit writes.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";

/// The subject name BuildKit uses when the image has no name.
pub const UNNAMED_SUBJECT: &str = "_";

/// One in-toto statement. Fields serialize in in-toto-golang's order (`_type`,
/// `predicateType`, `subject`, `predicate`), so the bytes match BuildKit's for the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the predicate is (`https://slsa.dev/provenance/v0.2`, `https://spdx.dev/Document`).
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What the statement is about: the image manifest, under each of its names.
    pub subject: Vec<Subject>,
    /// The predicate document.
    pub predicate: serde_json::Value,
}

impl Statement {
    /// A statement of `predicate_type` about `subject`.
    pub fn new(
        predicate_type: impl Into<String>,
        subject: Vec<Subject>,
        predicate: serde_json::Value,
    ) -> Self {
        Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            predicate_type: predicate_type.into(),
            subject,
            predicate,
        }
    }

    /// The statement's bytes as an attestation layer holds them (compact JSON, as Go's
    /// `json.Marshal` writes it).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, maps and `Value`s cannot fail.
        serde_json::to_vec(self).expect("a statement serializes")
    }
}

/// A subject: a name and the digests of the thing attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// A package URL of the image name (`pkg:docker/alpine@latest?platform=linux%2Famd64`), or
    /// [`UNNAMED_SUBJECT`].
    pub name: String,
    /// Algorithm to hex digest: `{"sha256": "…"}`.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// The subjects of an image's statements as BuildKit's image exporter makes them: one per
    /// image name (a `pkg:docker` purl with the platform), or one named `_` when the image has
    /// no name; each with the digest of the platform's image manifest.
    pub fn for_image(names: &[String], platform: &Platform, manifest: &Digest) -> Vec<Subject> {
        let digest = BTreeMap::from([("sha256".to_string(), manifest.hex())]);
        let mut subjects: Vec<Subject> = names
            .iter()
            .map(|name| Subject {
                name: image_purl(name, Some(platform)),
                digest: digest.clone(),
            })
            .collect();
        if subjects.is_empty() {
            subjects.push(Subject {
                name: UNNAMED_SUBJECT.to_string(),
                digest,
            });
        }
        subjects
    }
}
