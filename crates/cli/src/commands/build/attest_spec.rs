//! `--provenance`, `--sbom` and `--attest`, read as buildx reads them: `--provenance=VALUE`
//! is `--attest type=provenance,VALUE` (a boolean VALUE meaning `disabled=!VALUE`), likewise
//! `--sbom`; the last spec of each type wins, and `--provenance`/`--sbom` come after every
//! `--attest`. Unlike buildx, nothing is attested unless asked.

use anyhow::{bail, Context};
use img_attest::ProvenanceMode;

/// BuildKit's default SBOM generator: img's own scanner stands in for it.
const DEFAULT_SBOM_GENERATOR: &str = "docker/buildkit-syft-scanner";

/// The attestations a build attaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestOptions {
    /// SLSA provenance, when asked for.
    pub provenance: Option<ProvenanceOptions>,
    /// An SPDX SBOM of each platform's image.
    pub sbom: bool,
}

/// `type=provenance` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenanceOptions {
    /// `mode=min|max` (`min` when not given, as in buildx).
    pub mode: ProvenanceMode,
    /// `builder-id=`.
    pub builder_id: String,
    /// `reproducible=true`.
    pub reproducible: bool,
}

impl AttestOptions {
    /// Whether any attestation is attached.
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }

    /// Reads the flags: `attest` (each `--attest`), then `--provenance` and `--sbom`.
    pub fn parse(
        attest: &[String],
        provenance: Option<&str>,
        sbom: Option<&str>,
    ) -> anyhow::Result<AttestOptions> {
        let mut specs: Vec<(String, String)> = attest
            .iter()
            .map(|spec| (format!("--attest {spec:?}"), spec.clone()))
            .collect();
        if let Some(value) = provenance {
            specs.push((
                format!("--provenance {value:?}"),
                canonical("provenance", value),
            ));
        }
        if let Some(value) = sbom {
            specs.push((format!("--sbom {value:?}"), canonical("sbom", value)));
        }
        let mut options = AttestOptions::default();
        for (flag, spec) in &specs {
            apply(&mut options, flag, spec)?;
        }
        Ok(options)
    }
}

/// buildx's `CanonicalizeAttest`: a boolean becomes `disabled=`, anything else is options.
fn canonical(kind: &str, value: &str) -> String {
    match go_bool(value) {
        Some(enabled) => format!("type={kind},disabled={}", !enabled),
        None => format!("type={kind},{value}"),
    }
}

/// Go's `strconv.ParseBool`.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One spec (`type=KIND,KEY=VALUE,…`) replaces what an earlier spec of its type said.
fn apply(options: &mut AttestOptions, flag: &str, spec: &str) -> anyhow::Result<()> {
    let mut kind = None;
    let mut disabled = false;
    let mut fields = Vec::new();
    for field in spec.split(',').filter(|f| !f.trim().is_empty()) {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("invalid {flag}: {field:?} is not key=value"))?;
        match key.trim() {
            "type" => kind = Some(value.trim().to_owned()),
            "disabled" => {
                disabled = go_bool(value).with_context(|| {
                    format!("invalid {flag}: disabled={value:?} is not a boolean")
                })?;
            }
            key => fields.push((key.to_owned(), value.to_owned())),
        }
    }
    match kind.as_deref() {
        Some("provenance") => {
            let mut provenance = ProvenanceOptions::default();
            for (key, value) in &fields {
                match key.as_str() {
                    "mode" => {
                        provenance.mode = ProvenanceMode::parse(value).with_context(|| {
                            format!("invalid {flag}: mode={value:?} (give mode=min or mode=max)")
                        })?;
                    }
                    "builder-id" => provenance.builder_id = value.clone(),
                    "reproducible" => {
                        provenance.reproducible = go_bool(value).with_context(|| {
                            format!("invalid {flag}: reproducible={value:?} is not a boolean")
                        })?;
                    }
                    other => bail!(
                        "invalid {flag}: unknown provenance option {other:?} (use mode, builder-id, reproducible or disabled)"
                    ),
                }
            }
            options.provenance = (!disabled).then_some(provenance);
        }
        Some("sbom") => {
            for (key, value) in &fields {
                match key.as_str() {
                    // img scans the image itself; the default scanner's name (any tag) is
                    // accepted so buildx command lines that spell it out still work.
                    "generator" if value.split([':', '@']).next() == Some(DEFAULT_SBOM_GENERATOR) => {}
                    "generator" => bail!(
                        "invalid {flag}: img scans the image itself and cannot run the SBOM generator {value:?}; leave generator= out"
                    ),
                    "scan-context" | "scan-stage" if go_bool(value) == Some(false) => {}
                    "scan-context" | "scan-stage" => bail!(
                        "invalid {flag}: {key}=true is not supported; img scans the final image only"
                    ),
                    other => bail!(
                        "invalid {flag}: unknown sbom option {other:?} (use generator or disabled)"
                    ),
                }
            }
            options.sbom = !disabled;
        }
        Some(other) => {
            bail!("invalid {flag}: unknown attestation type {other:?} (use provenance or sbom)")
        }
        None => bail!("invalid {flag}: give type=provenance or type=sbom"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(attest: &[&str], provenance: Option<&str>, sbom: Option<&str>) -> AttestOptions {
        let attest: Vec<String> = attest.iter().map(|s| s.to_string()).collect();
        AttestOptions::parse(&attest, provenance, sbom).unwrap()
    }

    fn provenance(mode: ProvenanceMode, builder_id: &str) -> Option<ProvenanceOptions> {
        Some(ProvenanceOptions {
            mode,
            builder_id: builder_id.into(),
            reproducible: false,
        })
    }

    /// `--attest` values, `--provenance`, `--sbom`, the provenance and SBOM wanted.
    type Case = (
        &'static [&'static str],
        Option<&'static str>,
        Option<&'static str>,
        Option<ProvenanceOptions>,
        bool,
    );

    #[test]
    fn flags_as_buildx_reads_them() {
        use ProvenanceMode::{Max, Min};
        // --attest… | --provenance | --sbom | provenance | sbom
        let cases: &[Case] = &[
            (&[], None, None, None, false),
            (&[], Some("true"), None, provenance(Min, ""), false),
            (&[], Some("1"), Some("True"), provenance(Min, ""), true),
            (&[], Some("false"), Some("false"), None, false),
            (&[], Some("mode=max"), None, provenance(Max, ""), false),
            (
                &[],
                Some("mode=max,builder-id=https://ci/run/1"),
                None,
                provenance(Max, "https://ci/run/1"),
                false,
            ),
            (
                &["type=provenance,mode=max", "type=sbom"],
                None,
                None,
                provenance(Max, ""),
                true,
            ),
            // The last of a type wins; --provenance comes after --attest.
            (
                &["type=provenance,mode=max"],
                Some("mode=min"),
                None,
                provenance(Min, ""),
                false,
            ),
            (
                &["type=sbom", "type=sbom,disabled=true"],
                None,
                None,
                None,
                false,
            ),
            (&["type=provenance"], Some("false"), None, None, false),
            (
                &["type=sbom,generator=docker/buildkit-syft-scanner:stable-1"],
                None,
                None,
                None,
                true,
            ),
        ];
        for (attest, prov, sbom, want_provenance, want_sbom) in cases {
            let got = parse(attest, *prov, *sbom);
            assert_eq!(
                &got.provenance, want_provenance,
                "{attest:?} {prov:?} {sbom:?}"
            );
            assert_eq!(got.sbom, *want_sbom, "{attest:?} {prov:?} {sbom:?}");
        }
    }

    #[test]
    fn bad_specs() {
        // --attest | part of the error
        for (spec, want) in [
            ("mode=max", "give type=provenance or type=sbom"),
            ("type=vex", "unknown attestation type"),
            ("type=provenance,mode=full-ish", "give mode=min or mode=max"),
            ("type=provenance,colour=red", "unknown provenance option"),
            (
                "type=sbom,generator=example/scanner",
                "cannot run the SBOM generator",
            ),
            ("type=sbom,scan-stage=true", "scans the final image only"),
            ("type=sbom,disabled=maybe", "is not a boolean"),
            ("type=sbom,junk", "is not key=value"),
        ] {
            let err = AttestOptions::parse(&[spec.to_owned()], None, None).unwrap_err();
            assert!(err.to_string().contains(want), "{spec}: {err}");
        }
        let err = AttestOptions::parse(&[], Some("yes"), None).unwrap_err();
        assert!(err.to_string().contains("--provenance \"yes\""), "{err}");
    }
}
