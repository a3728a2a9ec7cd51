//! SLSA provenance v0.2, laid out as BuildKit writes it for `--provenance=mode=min|max`.
//!
//! The caller describes the build in a [`BuildRecord`]; [`provenance_predicate`] turns it into
//! the predicate and [`provenance_statement`] into the in-toto statement. Field names and their
//! order follow BuildKit's `ProvenancePredicateSLSA02` (which embeds in-toto-golang's v0.2
//! predicate, so `materials` comes before `invocation`).
//!
//! What never appears: secret values (a [`SecretUse`] has only an id, and the record has no
//! field a value could go in), and in `min` mode the values of build arguments and labels, the
//! secret and SSH ids, and the build steps, exactly as BuildKit's min mode drops them.
//! Build arguments are recorded verbatim in `max` mode, as BuildKit records them, with one
//! exception BuildKit does not make: a build argument named like a `--secret` id is left out
//! (and the parameters marked incomplete), since its value is then most likely the secret.
//! The caller must not put secret values anywhere else in the record.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use img_llb::{Digest, Platform};
use oci_spec::image::Descriptor;
use serde::Serialize;
use serde_json::Value;

use crate::purl::image_purl;
use crate::statement::{Statement, Subject};
use crate::timestamp::go_rfc3339_nano;

/// The predicate type of SLSA provenance v0.2.
pub const PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v0.2";

/// BuildKit's build type: consumers use it to know the predicate's layout.
pub const BUILDKIT_BUILD_TYPE: &str = "https://mobyproject.org/buildkit@v1";

/// How much the provenance says (`--provenance=mode=…`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// Materials, frontend, entry point and the arguments that are not build arguments or
    /// labels. buildx's default.
    #[default]
    Min,
    /// Everything: build arguments, secret and SSH ids, the build steps, the Dockerfile and
    /// where each step comes from in it, and the layers of each step.
    Max,
}

impl ProvenanceMode {
    /// Parses `min`, `max` or `full` (BuildKit's old spelling of `max`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "min" => Some(ProvenanceMode::Min),
            "max" | "full" => Some(ProvenanceMode::Max),
            _ => None,
        }
    }
}

/// Something the build read from outside: a provenance material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// A base or `COPY --from` image: its reference as the Dockerfile named it (normalized or
    /// not), the platform pulled, and the digest of what was pulled.
    Image {
        /// `docker.io/library/alpine:3.19`, `alpine`, `ghcr.io/o/app@sha256:…`.
        reference: String,
        /// The platform of the pulled image, when one was chosen.
        platform: Option<Platform>,
        /// The digest resolved (manifest or index, as pinned).
        digest: Digest,
    },
    /// A git repository: its URL (with `#ref` when given) and the commit checked out.
    Git {
        /// `https://github.com/moby/buildkit.git#v0.12.0`.
        url: String,
        /// The full commit hash (sha1 hex).
        commit: String,
    },
    /// A file fetched by `ADD URL`, or a remote context tarball.
    Http {
        /// The URL.
        url: String,
        /// The digest of the content.
        digest: Digest,
    },
}

/// A secret the build mounted: its id only. There is no field for a value, by design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    /// The `--secret id=…`.
    pub id: String,
    /// Whether a missing secret was allowed (`required=false`).
    pub optional: bool,
}

/// One build step, in the order of the build graph (inputs before the steps that use them).
/// Its id is `step` and its position.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildStep {
    /// The step's operation as JSON (the IR op: source, exec, file, merge), written as given.
    pub op: Value,
    /// The steps it reads: (position of the input step, output index of that step).
    pub inputs: Vec<(usize, usize)>,
    /// The digest of the op in the build graph, for `digestMapping`.
    pub digest: Option<Digest>,
    /// The Dockerfile lines the step comes from, as (first, last) line numbers, 1-based.
    pub source_lines: Vec<(u32, u32)>,
    /// The layers of the step's output, base first, when it produced an image.
    pub layers: Vec<Descriptor>,
}

/// Everything provenance records about one build (one platform's result). Fill what is known;
/// empty fields are left out of the predicate as BuildKit leaves them out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildRecord {
    /// `min` or `max`.
    pub mode: ProvenanceMode,
    /// `builder-id=` of `--provenance` (a CI run URL); empty writes `""` as BuildKit does.
    pub builder_id: String,
    /// The frontend: `dockerfile.v0` for Dockerfile builds.
    pub frontend: String,
    /// The Dockerfile's path as given (`-f`), BuildKit's `filename`: the entry point.
    pub dockerfile_path: Option<String>,
    /// The context when it is remote (a git or HTTP URL); its digest comes from the material
    /// of the same URL. `None` for a local directory.
    pub remote_context: Option<String>,
    /// `--build-arg NAME=VALUE`: recorded as `build-arg:NAME` in `max` mode only, and never
    /// when NAME is also a secret's id.
    pub build_args: BTreeMap<String, String>,
    /// `--label NAME=VALUE`: recorded as `label:NAME` in `max` mode only.
    pub labels: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// Other frontend options, already under BuildKit's keys (`no-cache`, `add-hosts`,
    /// `build-arg:` excluded). Host-specific ones (`platform`, `cgroup-parent`,
    /// `image-resolve-mode`, `cache-imports`, `attest:*`) are dropped as BuildKit drops them.
    pub frontend_attrs: BTreeMap<String, String>,
    /// Secrets mounted (ids only): `max` mode lists them.
    pub secrets: Vec<SecretUse>,
    /// SSH forwards used (ids): `max` mode lists them.
    pub ssh: Vec<SecretUse>,
    /// Local sources by name (`context`, `dockerfile`, named `--build-context` directories).
    /// Any local source makes the materials incomplete.
    pub locals: Vec<String>,
    /// Images, repositories and URLs the build read.
    pub materials: Vec<Material>,
    /// The platform the builder ran on (`invocation.environment.platform`), not the target's.
    pub builder_platform: Option<Platform>,
    /// A unique id of the build, shared by the platforms of one multi-platform build.
    pub invocation_id: String,
    /// When the build started.
    pub started: Option<SystemTime>,
    /// When the build finished.
    pub finished: Option<SystemTime>,
    /// `reproducible=true` of `--provenance`.
    pub reproducible: bool,
    /// Whether any step had network access (RUN without `--network=none`): not hermetic.
    pub network_access: bool,
    /// `vcs:source`, `vcs:revision`… given by the client for a local context.
    pub vcs: BTreeMap<String, String>,
    /// The build steps (`max` mode).
    pub steps: Vec<BuildStep>,
    /// The Dockerfile's name and content (`max` mode), for the source map.
    pub dockerfile: Option<(String, Vec<u8>)>,
}

/// Frontend options BuildKit leaves out of provenance: they describe the host, not the build.
const HOST_SPECIFIC_ATTRS: &[&str] = &[
    "cgroup-parent",
    "image-resolve-mode",
    "platform",
    "cache-imports",
];

/// The provenance predicate of `record`, as BuildKit's JSON.
pub fn provenance_predicate(record: &BuildRecord) -> Value {
    let max = record.mode == ProvenanceMode::Max;
    let materials: Vec<Value> = materials(&record.materials);

    let mut args: BTreeMap<String, String> = record
        .frontend_attrs
        .iter()
        .filter(|(k, _)| {
            !HOST_SPECIFIC_ATTRS.contains(&k.as_str())
                && !k.starts_with("attest:")
                && !k.starts_with("build-arg:")
                && !k.starts_with("label:")
                && !k.starts_with("vcs:")
                && k.as_str() != "filename"
                && k.as_str() != "context"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(target) = &record.target {
        args.insert("target".to_string(), target.clone());
    }
    let mut parameters_complete = !record.frontend.is_empty();
    let dropped = !record.build_args.is_empty() || !record.labels.is_empty();
    if max {
        for (name, value) in &record.build_args {
            if record.secrets.iter().any(|secret| &secret.id == name) {
                parameters_complete = false;
                continue;
            }
            args.insert(format!("build-arg:{name}"), value.clone());
        }
        for (name, value) in &record.labels {
            args.insert(format!("label:{name}"), value.clone());
        }
    } else if dropped {
        parameters_complete = false;
    }

    let mut parameters = serde_json::Map::new();
    if !record.frontend.is_empty() {
        parameters.insert("frontend".into(), Value::from(record.frontend.clone()));
    }
    if !args.is_empty() {
        parameters.insert(
            "args".into(),
            serde_json::to_value(&args).unwrap_or_default(),
        );
    }
    if max {
        if !record.secrets.is_empty() {
            parameters.insert("secrets".into(), secret_uses(&record.secrets));
        }
        if !record.ssh.is_empty() {
            parameters.insert("ssh".into(), secret_uses(&record.ssh));
        }
    }
    if !record.locals.is_empty() {
        let locals: Vec<Value> = record
            .locals
            .iter()
            .map(|name| serde_json::json!({ "name": name }))
            .collect();
        parameters.insert("locals".into(), Value::Array(locals));
    }

    let mut config_source = serde_json::Map::new();
    if let Some(context) = record.remote_context.as_deref().filter(|c| !c.is_empty()) {
        config_source.insert("uri".into(), Value::from(context));
        if let Some(digest) = remote_material_digest(&record.materials, context) {
            config_source.insert("digest".into(), digest);
        }
    }
    if let Some(path) = record.dockerfile_path.as_deref().filter(|p| !p.is_empty()) {
        config_source.insert("entryPoint".into(), Value::from(path));
    }

    let materials_complete = record.locals.is_empty();
    let mut metadata = serde_json::Map::new();
    if !record.invocation_id.is_empty() {
        metadata.insert(
            "buildInvocationID".into(),
            Value::from(record.invocation_id.clone()),
        );
    }
    if let Some(started) = record.started {
        metadata.insert(
            "buildStartedOn".into(),
            Value::from(go_rfc3339_nano(started)),
        );
    }
    if let Some(finished) = record.finished {
        metadata.insert(
            "buildFinishedOn".into(),
            Value::from(go_rfc3339_nano(finished)),
        );
    }
    metadata.insert(
        "completeness".into(),
        serde_json::json!({
            "parameters": parameters_complete,
            "environment": true,
            "materials": materials_complete,
        }),
    );
    metadata.insert("reproducible".into(), Value::from(record.reproducible));
    metadata.insert(
        "https://mobyproject.org/buildkit@v1#metadata".into(),
        buildkit_metadata(record, max),
    );
    if materials_complete && !record.network_access {
        metadata.insert(
            "https://mobyproject.org/buildkit@v1#hermetic".into(),
            Value::from(true),
        );
    }

    let mut predicate = serde_json::Map::new();
    predicate.insert(
        "builder".into(),
        serde_json::json!({ "id": record.builder_id }),
    );
    predicate.insert("buildType".into(), Value::from(BUILDKIT_BUILD_TYPE));
    if !materials.is_empty() {
        predicate.insert("materials".into(), Value::Array(materials));
    }
    predicate.insert(
        "invocation".into(),
        serde_json::json!({
            "configSource": config_source,
            "parameters": parameters,
            "environment": {
                "platform": record
                    .builder_platform
                    .clone()
                    .unwrap_or_else(Platform::host)
                    .to_string(),
            },
        }),
    );
    if max && !record.steps.is_empty() {
        predicate.insert("buildConfig".into(), build_config(&record.steps));
    }
    predicate.insert("metadata".into(), Value::Object(metadata));
    Value::Object(predicate)
}

/// The in-toto statement of `record`'s provenance about `subject`.
pub fn provenance_statement(record: &BuildRecord, subject: Vec<Subject>) -> Statement {
    Statement::new(
        PROVENANCE_PREDICATE_TYPE,
        subject,
        provenance_predicate(record),
    )
}

/// Materials in BuildKit's order: images, then git, then HTTP.
fn materials(materials: &[Material]) -> Vec<Value> {
    let mut images = Vec::new();
    let mut git = Vec::new();
    let mut http = Vec::new();
    for material in materials {
        match material {
            Material::Image {
                reference,
                platform,
                digest,
            } => images.push(serde_json::json!({
                "uri": image_purl(reference, platform.as_ref()),
                "digest": { "sha256": digest.hex() },
            })),
            Material::Git { url, commit } => git.push(serde_json::json!({
                "uri": url,
                "digest": { "sha1": commit },
            })),
            Material::Http { url, digest } => http.push(serde_json::json!({
                "uri": url,
                "digest": { "sha256": digest.hex() },
            })),
        }
    }
    images.into_iter().chain(git).chain(http).collect()
}

/// The digest of the git or HTTP material fetched from `uri`, for `configSource`.
fn remote_material_digest(materials: &[Material], uri: &str) -> Option<Value> {
    materials.iter().find_map(|m| match m {
        Material::Git { url, commit } if url == uri => Some(serde_json::json!({ "sha1": commit })),
        Material::Http { url, digest } if url == uri => {
            Some(serde_json::json!({ "sha256": digest.hex() }))
        }
        _ => None,
    })
}

fn secret_uses(uses: &[SecretUse]) -> Value {
    #[derive(Serialize)]
    struct Use<'a> {
        id: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        optional: bool,
    }
    let uses: Vec<Use<'_>> = uses
        .iter()
        .map(|u| Use {
            id: &u.id,
            optional: u.optional,
        })
        .collect();
    serde_json::to_value(uses).unwrap_or_default()
}

fn step_id(index: usize) -> String {
    format!("step{index}")
}

/// `buildConfig`: `llbDefinition` (id, op, inputs per step) and `digestMapping`.
fn build_config(steps: &[BuildStep]) -> Value {
    let definition: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let mut out = serde_json::Map::new();
            out.insert("id".into(), Value::from(step_id(index)));
            if !step.op.is_null() {
                out.insert("op".into(), step.op.clone());
            }
            if !step.inputs.is_empty() {
                let inputs: Vec<Value> = step
                    .inputs
                    .iter()
                    .map(|(input, output)| Value::from(format!("{}:{output}", step_id(*input))))
                    .collect();
                out.insert("inputs".into(), Value::Array(inputs));
            }
            Value::Object(out)
        })
        .collect();
    let mapping: BTreeMap<String, String> = steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| Some((step.digest?.to_string(), step_id(index))))
        .collect();
    let mut config = serde_json::Map::new();
    config.insert("llbDefinition".into(), Value::Array(definition));
    if !mapping.is_empty() {
        config.insert(
            "digestMapping".into(),
            serde_json::to_value(mapping).unwrap_or_default(),
        );
    }
    Value::Object(config)
}

/// `https://mobyproject.org/buildkit@v1#metadata`: `vcs` always; `source` and `layers` in
/// `max` mode.
fn buildkit_metadata(record: &BuildRecord, max: bool) -> Value {
    let mut out = serde_json::Map::new();
    let vcs: BTreeMap<&String, &String> =
        record.vcs.iter().filter(|(_, v)| !v.is_empty()).collect();
    if !vcs.is_empty() {
        out.insert("vcs".into(), serde_json::to_value(vcs).unwrap_or_default());
    }
    if !max {
        return Value::Object(out);
    }
    if let Some((filename, data)) = &record.dockerfile {
        // pb.Locations as Go's encoding/json writes it: zero fields (source index 0,
        // character 0) are left out.
        let locations: BTreeMap<String, Value> = record
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| !step.source_lines.is_empty())
            .map(|(index, step)| {
                let ranges: Vec<Value> = step
                    .source_lines
                    .iter()
                    .map(|(start, end)| {
                        serde_json::json!({
                            "start": { "line": start },
                            "end": { "line": end },
                        })
                    })
                    .collect();
                (
                    step_id(index),
                    serde_json::json!({ "locations": [{ "ranges": ranges }] }),
                )
            })
            .collect();
        let mut source = serde_json::Map::new();
        if !locations.is_empty() {
            source.insert(
                "locations".into(),
                serde_json::to_value(locations).unwrap_or_default(),
            );
        }
        source.insert(
            "infos".into(),
            serde_json::json!([{
                "filename": filename,
                "language": "Dockerfile",
                // Go writes []byte as standard base64.
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            }]),
        );
        out.insert("source".into(), Value::Object(source));
    }
    let layers: BTreeMap<String, Value> = record
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| !step.layers.is_empty())
        .map(|(index, step)| {
            (
                format!("{}:0", step_id(index)),
                serde_json::json!([step.layers]),
            )
        })
        .collect();
    if !layers.is_empty() {
        out.insert(
            "layers".into(),
            serde_json::to_value(layers).unwrap_or_default(),
        );
    }
    Value::Object(out)
}
