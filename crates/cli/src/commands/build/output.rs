//! `-o/--output` specs, as buildx reads them (`type=docker,dest=out.tar`; a bare `DIR` for
//! `type=local`, `-` for a tar on standard output), and writing each kind of output.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use img_registry::Reference;
use img_snapshot::Compression;
use img_worker::OciName;

use crate::image::stored_name;

/// Where a file output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `dest=-`.
    Stdout,
    /// A file, written beside its final name and renamed when complete.
    File(PathBuf),
}

/// One output of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `type=image`: the local image store under `names` (untagged when there are none),
    /// pushed too with `push`.
    Image { names: Vec<String>, push: bool },
    /// `type=registry`: pushed to each of `names`.
    Registry { names: Vec<String> },
    /// `type=docker`: a `docker load` archive.
    Docker { dest: Dest, names: Vec<String> },
    /// `type=oci`: an OCI image layout archive.
    Oci { dest: Dest, names: Vec<String> },
    /// `type=tar`: the root filesystem as a tar.
    Tar { dest: Dest },
    /// `type=local`: the root filesystem copied into a directory.
    Local { dest: PathBuf },
}

impl OutputSpec {
    /// Whether the output is made from the image rather than the root filesystem alone.
    pub fn needs_image(&self) -> bool {
        !matches!(self, OutputSpec::Tar { .. } | OutputSpec::Local { .. })
    }

    /// Whether it writes to standard output.
    pub fn writes_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Docker {
                dest: Dest::Stdout,
                ..
            } | OutputSpec::Oci {
                dest: Dest::Stdout,
                ..
            } | OutputSpec::Tar { dest: Dest::Stdout }
        )
    }

    /// The names the image gets or is pushed to.
    pub fn names(&self) -> &[String] {
        match self {
            OutputSpec::Image { names, .. }
            | OutputSpec::Registry { names }
            | OutputSpec::Docker { names, .. }
            | OutputSpec::Oci { names, .. } => names,
            OutputSpec::Tar { .. } | OutputSpec::Local { .. } => &[],
        }
    }
}

/// Parses one `-o` value; `tags` (already qualified) name images whose spec has no `name=`.
pub fn parse_output(spec: &str, tags: &[String]) -> anyhow::Result<OutputSpec> {
    if spec == "-" {
        return Ok(OutputSpec::Tar { dest: Dest::Stdout });
    }
    if !spec.contains('=') {
        return Ok(OutputSpec::Local {
            dest: PathBuf::from(spec),
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut names: Vec<String> = Vec::new();
    let mut push = false;
    for field in spec.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            bail!("invalid --output {spec:?}: {field:?} is not key=value");
        };
        match key.trim() {
            "type" => kind = Some(value.to_owned()),
            "dest" => dest = Some(value.to_owned()),
            "name" => {
                for name in value.split(';').filter(|n| !n.is_empty()) {
                    names.push(
                        stored_name(name).with_context(|| format!("invalid --output {spec:?}"))?,
                    );
                }
            }
            "push" => push = parse_bool(spec, value)?,
            // Read by `image_options`.
            key if is_image_option(key) => {}
            other => bail!(
                "invalid --output {spec:?}: unknown field {other:?} (use type, dest, name, push, compression, compression-level, oci-mediatypes, force-compression, rewrite-timestamp or annotation.KEY)"
            ),
        }
    }
    if names.is_empty() {
        names = tags.to_vec();
    }
    let kind = kind.with_context(|| {
        format!("invalid --output {spec:?}: give type=image|docker|oci|tar|local|registry")
    })?;
    let dest_file = |kind: &str| -> anyhow::Result<Dest> {
        match dest.as_deref() {
            Some("-") => Ok(Dest::Stdout),
            Some(path) if !path.is_empty() => Ok(Dest::File(PathBuf::from(path))),
            _ => bail!("invalid --output {spec:?}: type={kind} needs dest=FILE (or dest=- for standard output)"),
        }
    };
    let need_names = |kind: &str| -> anyhow::Result<()> {
        if names.is_empty() {
            bail!("invalid --output {spec:?}: type={kind} needs a name: give -t NAME or name=NAME");
        }
        Ok(())
    };
    let output = match kind.as_str() {
        "image" => {
            need_names("image")?;
            OutputSpec::Image {
                names: names.clone(),
                push,
            }
        }
        "registry" => {
            need_names("registry")?;
            OutputSpec::Registry {
                names: names.clone(),
            }
        }
        "docker" => OutputSpec::Docker {
            dest: dest_file("docker")?,
            names,
        },
        "oci" => OutputSpec::Oci {
            dest: dest_file("oci")?,
            names,
        },
        "tar" => OutputSpec::Tar {
            dest: dest_file("tar")?,
        },
        "local" => match dest_file("local")? {
            Dest::File(dir) => OutputSpec::Local { dest: dir },
            Dest::Stdout => OutputSpec::Tar { dest: Dest::Stdout },
        },
        other => bail!(
            "invalid --output {spec:?}: unknown type {other:?} (use image, docker, oci, tar, local or registry)"
        ),
    };
    Ok(output)
}

/// What an `-o` value says about the image besides where it goes, as buildx's image
/// exporters take it: the layer compression and annotations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutputImageOptions {
    /// `compression=gzip|zstd|uncompressed`.
    pub compression: Option<Compression>,
    /// `force-compression=true`: base image layers of another compression are written again.
    pub force_compression: bool,
    /// `oci-mediatypes=true|false`: OCI's media types (the default) or Docker's.
    pub oci_media_types: Option<bool>,
    /// `compression-level=N`: 0–9 for gzip, 0–22 for zstd (checked against the compression
    /// once every option is known: [`check_level`]).
    pub level: Option<u32>,
    /// `annotation[-TYPE].KEY=VALUE`, as the `--annotation TYPE:KEY=VALUE` values they mean.
    pub annotations: Vec<String>,
}

fn is_image_option(key: &str) -> bool {
    matches!(
        key,
        "compression"
            | "compression-level"
            | "oci-mediatypes"
            | "force-compression"
            | "rewrite-timestamp"
    ) || key.starts_with("annotation.")
        || key.starts_with("annotation-")
}

/// Reads the image options of one `-o` value (its other fields are `parse_output`'s).
pub fn image_options(spec: &str) -> anyhow::Result<OutputImageOptions> {
    let mut options = OutputImageOptions::default();
    for (key, value) in spec.split(',').filter_map(|f| f.split_once('=')) {
        let key = key.trim();
        match key {
            "compression" => {
                let compression = value
                    .parse()
                    .map_err(|e| anyhow::anyhow!("invalid --output {spec:?}: {e}"))?;
                options.compression = Some(compression);
            }
            "compression-level" => {
                let level = value.parse::<u32>().map_err(|_| {
                    anyhow::anyhow!("invalid --output {spec:?}: compression-level {value:?} is not a number")
                })?;
                options.level = Some(level);
            }
            // img clamps the file times of the layers a build makes to SOURCE_DATE_EPOCH
            // whenever it is set: what BuildKit does only with rewrite-timestamp=true.
            "rewrite-timestamp" if !parse_bool(spec, value)? => bail!(
                "invalid --output {spec:?}: img always clamps the file times of new layers to SOURCE_DATE_EPOCH; leave rewrite-timestamp out or set it to true"
            ),
            "oci-mediatypes" => options.oci_media_types = Some(parse_bool(spec, value)?),
            // Base image layers keep their compression unless this asks otherwise.
            "force-compression" => options.force_compression = parse_bool(spec, value)?,
            _ => {
                if let Some(key) = key.strip_prefix("annotation.") {
                    options.annotations.push(format!("manifest:{key}={value}"));
                } else if let Some(rest) = key.strip_prefix("annotation-") {
                    let (kind, key) = rest.split_once('.').with_context(|| {
                        format!("invalid --output {spec:?}: give annotation-TYPE.KEY=VALUE")
                    })?;
                    options.annotations.push(format!("{kind}:{key}={value}"));
                }
            }
        }
    }
    Ok(options)
}

/// Checks a `compression-level` against the compression it tunes, with BuildKit's ranges
/// (gzip 0–9, zstd 0–22; an uncompressed layer has no level, which BuildKit ignores too).
pub fn check_level(compression: Compression, level: Option<u32>) -> anyhow::Result<Option<u32>> {
    let Some(level) = level else {
        return Ok(None);
    };
    let (name, highest) = match compression {
        Compression::Gzip => ("gzip", 9),
        Compression::Zstd => ("zstd", 22),
        _ => return Ok(None),
    };
    if level > highest {
        bail!("invalid compression-level={level}: {name} takes 0 to {highest}");
    }
    Ok(Some(level))
}

fn parse_bool(spec: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid --output {spec:?}: {value:?} is not true or false"),
    }
}

/// The index.json names of an OCI archive, as BuildKit writes them: each name in full, and
/// its tag as the ref name (what `skopeo oci-archive:FILE:TAG` and `umoci --image DIR:TAG`
/// select by).
pub fn oci_names(names: &[String]) -> Vec<OciName> {
    names
        .iter()
        .filter_map(|name| {
            let reference = Reference::parse(name).ok()?;
            let tag = reference.tag()?.to_owned();
            Some(OciName {
                full: Some(name.clone()),
                ref_name: tag,
            })
        })
        .collect()
}

/// Runs `write` on the destination: standard output (never a terminal), or a temporary file
/// beside `path` renamed over it once complete, so a failed build leaves no truncated file.
pub fn write_dest(
    dest: &Dest,
    write: impl FnOnce(&mut (dyn Write + Send)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Dest::Stdout => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; give dest=FILE or redirect");
            }
            // Unlocked: the writer may be used from the exporter's thread.
            let mut out = BufWriter::new(stdout);
            write(&mut out)?;
            out.flush().context("cannot write to standard output")
        }
        Dest::File(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let mut out = BufWriter::new(tmp);
            write(&mut out)?;
            let tmp = out
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(())
        }
    }
}

/// Runs `write` on the destination as a file, so archives can copy blobs in the kernel:
/// standard output (a pipe or a file, never a terminal) or, as [`write_dest`] does, a
/// temporary file beside `path` renamed over it once complete.
pub fn write_dest_file(
    dest: &Dest,
    write: impl FnOnce(&File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Dest::Stdout => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; give dest=FILE or redirect");
            }
            // Nothing else is written to standard output before the archive, so writing
            // through a duplicate of its descriptor keeps the order.
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .context("cannot use standard output")?;
            write(&File::from(fd))
        }
        Dest::File(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            write(tmp.as_file())?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(())
        }
    }
}

/// A file output's destination, for messages.
pub fn describe(dest: &Dest) -> String {
    match dest {
        Dest::Stdout => "standard output".to_owned(),
        Dest::File(path) => path.display().to_string(),
    }
}

/// Writes a small file whole (`--iidfile`, `--metadata-file`).
pub fn write_small_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "docker.io/library/app:latest";

    fn parse(spec: &str) -> anyhow::Result<OutputSpec> {
        parse_output(spec, &[APP.to_owned()])
    }

    #[test]
    fn output_specs() {
        let file = |p: &str| Dest::File(p.into());
        // spec | output
        let cases = [
            (
                "type=image",
                OutputSpec::Image {
                    names: vec![APP.into()],
                    push: false,
                },
            ),
            (
                "type=image,name=other:1,push=true",
                OutputSpec::Image {
                    names: vec!["docker.io/library/other:1".into()],
                    push: true,
                },
            ),
            (
                "type=registry,name=127.0.0.1:5000/a",
                OutputSpec::Registry {
                    names: vec!["127.0.0.1:5000/a:latest".into()],
                },
            ),
            (
                "type=docker,dest=out.tar",
                OutputSpec::Docker {
                    dest: file("out.tar"),
                    names: vec![APP.into()],
                },
            ),
            (
                "type=oci,dest=-",
                OutputSpec::Oci {
                    dest: Dest::Stdout,
                    names: vec![APP.into()],
                },
            ),
            (
                "type=tar,dest=rootfs.tar",
                OutputSpec::Tar {
                    dest: file("rootfs.tar"),
                },
            ),
            (
                "type=local,dest=out",
                OutputSpec::Local { dest: "out".into() },
            ),
            (
                "out/dir",
                OutputSpec::Local {
                    dest: "out/dir".into(),
                },
            ),
            ("-", OutputSpec::Tar { dest: Dest::Stdout }),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn bad_output_specs() {
        // spec | part of the error
        for (spec, want) in [
            ("type=docker", "needs dest=FILE"),
            ("type=local", "needs dest=FILE"),
            ("type=zip,dest=x", "unknown type"),
            ("dest=x", "give type="),
            ("type=tar,dest=x,colour=red", "unknown field"),
            ("type=tar,junk", "is not key=value"),
            ("type=image,push=maybe", "\"maybe\" is not true or false"),
        ] {
            let err = format!("{:#}", parse(spec).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
        let err = parse_output("type=registry", &[]).unwrap_err();
        assert!(err.to_string().contains("needs a name"), "{err}");
    }

    #[test]
    fn image_options_of_an_output() {
        let options = image_options(
            "type=image,name=a,compression=zstd,compression-level=19,oci-mediatypes=true,\
             force-compression=false,rewrite-timestamp=true,annotation.k=v,annotation-index.i=1,annotation-manifest-descriptor.d=2",
        )
        .unwrap();
        assert_eq!(options.compression, Some(Compression::Zstd));
        assert_eq!(options.level, Some(19));
        assert!(!options.force_compression);
        assert_eq!(options.oci_media_types, Some(true));
        assert_eq!(
            image_options("type=oci,dest=x,oci-mediatypes=false")
                .unwrap()
                .oci_media_types,
            Some(false)
        );
        assert!(
            image_options("type=oci,dest=x,force-compression=true")
                .unwrap()
                .force_compression
        );
        assert_eq!(check_level(Compression::Zstd, Some(19)).unwrap(), Some(19));
        assert_eq!(
            check_level(Compression::Uncompressed, Some(5)).unwrap(),
            None
        );
        let err = check_level(Compression::Gzip, Some(19)).unwrap_err();
        assert!(err.to_string().contains("gzip takes 0 to 9"), "{err}");
        assert_eq!(
            options.annotations,
            ["manifest:k=v", "index:i=1", "manifest-descriptor:d=2"]
        );
        for (spec, want) in [
            ("type=oci,dest=x,compression=lzma", "invalid --output"),
            ("type=oci,dest=x,compression-level=high", "is not a number"),
            ("type=oci,dest=x,rewrite-timestamp=false", "always clamps"),
            (
                "type=oci,dest=x,annotation-index=v",
                "annotation-TYPE.KEY=VALUE",
            ),
        ] {
            let err = format!("{:#}", image_options(spec).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
        // parse_output leaves these fields to image_options.
        parse_output("type=oci,dest=x,compression=zstd,annotation.k=v", &[]).unwrap();
    }

    #[test]
    fn oci_names_are_full_names_and_tags() {
        let names = oci_names(&[
            "docker.io/library/b:latest".into(),
            "localhost:5000/c:v1".into(),
        ]);
        let pairs: Vec<(Option<&str>, &str)> = names
            .iter()
            .map(|n| (n.full.as_deref(), n.ref_name.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Some("docker.io/library/b:latest"), "latest"),
                (Some("localhost:5000/c:v1"), "v1")
            ]
        );
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        let result = write_dest(&Dest::File(path.clone()), |out| {
            out.write_all(b"partial")?;
            bail!("export failed")
        });
        assert!(result.is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_dest(
            &Dest::File(path.clone()),
            |out| Ok(out.write_all(b"whole")?),
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }
}
