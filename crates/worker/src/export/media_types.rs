//! The two families of media types an image can be written with: OCI's (the default, as in
//! buildx) and Docker's schema 2 (`-o oci-mediatypes=false`), for registries and tools that
//! predate OCI images.

use img_snapshot::Compression;

/// Which media types an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    /// OCI image manifests, configs, indexes and layers.
    #[default]
    Oci,
    /// Docker's schema 2 manifests, configs, manifest lists and layers.
    Docker,
}

/// Docker's schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

impl MediaTypes {
    /// The image manifest's media type.
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => super::OCI_MANIFEST,
            MediaTypes::Docker => DOCKER_MANIFEST,
        }
    }

    /// The image config's media type.
    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => super::OCI_CONFIG,
            MediaTypes::Docker => DOCKER_CONFIG,
        }
    }

    /// The media type of an index of several platforms' manifests.
    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => super::OCI_INDEX,
            MediaTypes::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    /// The media type of a layer of `compression`. Docker's family has no zstd layer type
    /// that its tools read; the caller refuses that pairing first
    /// ([`MediaTypes::supports`]).
    pub fn layer(self, compression: Compression) -> String {
        self.convert_layer(compression.media_type())
    }

    /// Whether layers of `compression` can be written with these media types.
    pub fn supports(self, compression: Compression) -> bool {
        self == MediaTypes::Oci || compression != Compression::Zstd
    }

    /// A layer media type of either family, in this family (`…tar+gzip` and `…tar.gzip`
    /// alike); a type of neither family (a foreign layer, say) is kept as it is.
    pub fn convert_layer(self, media_type: &str) -> String {
        let suffix = media_type
            .strip_prefix(OCI_LAYER)
            .map(|rest| rest.trim_start_matches('+'))
            .or_else(|| {
                media_type
                    .strip_prefix(DOCKER_LAYER)
                    .map(|rest| rest.trim_start_matches('.'))
            });
        let Some(suffix) = suffix else {
            return media_type.to_owned();
        };
        match (self, suffix) {
            (MediaTypes::Oci, "") => OCI_LAYER.to_owned(),
            (MediaTypes::Oci, compression) => format!("{OCI_LAYER}+{compression}"),
            (MediaTypes::Docker, "") => DOCKER_LAYER.to_owned(),
            (MediaTypes::Docker, compression) => format!("{DOCKER_LAYER}.{compression}"),
        }
    }

    /// The family of a manifest or index media type; `None` for neither.
    pub fn of(media_type: &str) -> Option<MediaTypes> {
        match media_type {
            super::OCI_MANIFEST | super::OCI_INDEX => Some(MediaTypes::Oci),
            DOCKER_MANIFEST | DOCKER_MANIFEST_LIST => Some(MediaTypes::Docker),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_convert_between_families() {
        for (oci, docker) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.docker.image.rootfs.diff.tar",
            ),
        ] {
            assert_eq!(MediaTypes::Docker.convert_layer(oci), docker);
            assert_eq!(MediaTypes::Docker.convert_layer(docker), docker);
            assert_eq!(MediaTypes::Oci.convert_layer(docker), oci);
            assert_eq!(MediaTypes::Oci.convert_layer(oci), oci);
        }
        let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        assert_eq!(MediaTypes::Oci.convert_layer(foreign), foreign);
        assert_eq!(
            MediaTypes::Docker.layer(Compression::Gzip),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert!(!MediaTypes::Docker.supports(Compression::Zstd));
        assert!(MediaTypes::Oci.supports(Compression::Zstd));
    }
}
