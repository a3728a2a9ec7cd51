//! Build attestations as BuildKit lays them out: SLSA provenance and SPDX SBOMs, wrapped in
//! in-toto statements and stored in an attestation manifest next to the image.
//!
//! # Place in the pipeline
//!
//! After the worker has built and exported an image for one platform, the exporter (with
//! `--provenance` or `--sbom`, or `--attest type=…`):
//!
//! 1. fills a [`BuildRecord`] from what the build used (materials, arguments, steps, times) and
//!    makes the provenance statement with [`provenance_statement`];
//! 2. scans the image's flattened root filesystem with [`scan_rootfs`] and makes the SBOM
//!    statement from [`ScanReport::to_spdx`] with [`sbom_statement`];
//! 3. lays the statements out with [`AttestationManifest::new`], writes its blobs
//!    ([`AttestationManifest::blobs`]) and adds [`AttestationManifest::index_entry`] to the
//!    image index after the image manifests.
//!
//! The crate knows nothing of the solver or the registry: its inputs are plain data, its
//! outputs bytes and OCI descriptors. It depends on `img-llb` only for [`img_llb::Digest`] and
//! [`img_llb::Platform`].
//!
//! # Design
//!
//! The JSON follows BuildKit's field names (so tools reading BuildKit's attestations, such as
//! `docker buildx imagetools inspect --format '{{json .Provenance}}'`, read img's). Objects of
//! the provenance predicate are written with sorted keys; the statement keeps in-toto's field
//! order. The SBOM scanner treats the image as hostile: every file is opened with
//! `openat2(RESOLVE_IN_ROOT)`, reads are bounded and unparsable files are skipped with a
//! warning. Provenance never carries secret values: the record has no field for one.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use img_attest::{
//!     provenance_statement, sbom_statement, scan_rootfs, AttestationManifest, BuildRecord,
//!     Material, ProvenanceMode, ScanLimits, SpdxOptions, Subject,
//! };
//! use img_llb::{Digest, Platform};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let platform = Platform::new("linux", "amd64");
//! let image_manifest = Digest::of(b"the image manifest");
//! let subject = Subject::for_image(&["docker.io/library/app:1".into()], &platform, &image_manifest);
//!
//! let record = BuildRecord {
//!     mode: ProvenanceMode::Min,
//!     frontend: "dockerfile.v0".into(),
//!     dockerfile_path: Some("Dockerfile".into()),
//!     locals: vec!["context".into(), "dockerfile".into()],
//!     materials: vec![Material::Image {
//!         reference: "docker.io/library/alpine:3.19".into(),
//!         platform: Some(platform.clone()),
//!         digest: Digest::of(b"alpine"),
//!     }],
//!     started: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
//!     ..BuildRecord::default()
//! };
//! let provenance = provenance_statement(&record, subject.clone());
//!
//! let rootfs = tempfile::tempdir()?;
//! std::fs::create_dir_all(rootfs.path().join("lib/apk/db"))?;
//! std::fs::write(
//!     rootfs.path().join("lib/apk/db/installed"),
//!     "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\n\n",
//! )?;
//! let report = scan_rootfs(rootfs.path(), ScanLimits::default())?;
//! assert_eq!(report.packages[0].purl, "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64");
//! let sbom = report.to_spdx(&SpdxOptions::new("app:1", SystemTime::UNIX_EPOCH));
//!
//! let attestations = AttestationManifest::new(&[provenance, sbom_statement(&sbom, subject)], &image_manifest, true);
//! assert_eq!(attestations.layers.len(), 2);
//! assert_eq!(
//!     attestations.index_entry.annotations().as_ref().unwrap()["vnd.docker.reference.digest"],
//!     image_manifest.to_string()
//! );
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod manifest;
mod provenance;
mod purl;
mod sbom;
mod statement;
mod timestamp;

pub use manifest::{
    AttestationManifest, Blob, ATTESTATION_MANIFEST_TYPE, IN_TOTO_MEDIA_TYPE,
    PREDICATE_TYPE_ANNOTATION, REFERENCE_DIGEST_ANNOTATION, REFERENCE_TYPE_ANNOTATION,
};
pub use provenance::{
    provenance_predicate, provenance_statement, BuildRecord, BuildStep, Material, ProvenanceMode,
    SecretUse, BUILDKIT_BUILD_TYPE, PROVENANCE_PREDICATE_TYPE,
};
pub use purl::image_purl;
pub use sbom::{
    sbom_statement, scan_rootfs, Package, PackageKind, ScanError, ScanLimits, ScanReport,
    ScanWarning, SpdxCreationInfo, SpdxDocument, SpdxExternalRef, SpdxLicenseInfo, SpdxOptions,
    SpdxPackage, SpdxRelationship, SPDX_PREDICATE_TYPE,
};
pub use statement::{Statement, Subject, STATEMENT_TYPE, UNNAMED_SUBJECT};
