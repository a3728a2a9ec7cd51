//! The scenarios of `cargo xtask bench`, each measured with img and with every peer in the
//! same run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use super::peers::{
    buildah_bud, buildah_bud_oci, buildah_bud_with, buildah_pull, buildah_push, img_build,
    img_build_oci, img_pull, remove_buildah_root, BuildKit,
};
use super::{measure, quiet, Registry, Row};

/// What every scenario is measured with.
pub struct Builders<'a> {
    pub img: &'a Path,
    pub buildkit: Option<&'a BuildKit>,
    pub runs: usize,
}

/// A cold BuildKit build: the daemon's cache emptied first (untimed).
fn buildkit_cold(buildkit: &BuildKit, build: &mut Command) -> Result<super::Sample> {
    buildkit.prune()?;
    measure(build)
}

/// Scenarios 1 and 2: four independent sleeping stages and a final stage that copies them.
pub struct ParallelStages {
    context: PathBuf,
}

impl ParallelStages {
    pub fn new(work: &Path, base: &str) -> Result<Self> {
        let context = work.join("parallel-context");
        std::fs::create_dir_all(&context)?;
        let mut dockerfile = String::new();
        for stage in ["a", "b", "c", "d"] {
            writeln!(dockerfile, "FROM {base} AS {stage}")?;
            writeln!(dockerfile, "RUN sleep 2 && echo {stage} > /out-{stage}\n")?;
        }
        writeln!(dockerfile, "FROM {base}")?;
        for stage in ["a", "b", "c", "d"] {
            writeln!(dockerfile, "COPY --from={stage} /out-{stage} /")?;
        }
        std::fs::write(context.join("Dockerfile"), dockerfile)?;
        Ok(ParallelStages { context })
    }

    /// Cold runs (fresh state each time, base image pulled beforehand), then cached runs.
    pub fn measure(&self, with: &Builders<'_>, registry: &Registry) -> Result<[Row; 2]> {
        let mut cold = Row::new("1. four `RUN sleep 2` stages, cold");
        let mut cached = Row::new("2. the same, fully cached");
        let work = self.context.parent().expect("context has a parent");
        for run in 0..with.runs {
            let state = work.join(format!("img-state-{run}"));
            quiet(&mut img_pull(with.img, &state, &super::base_ref(registry)))?;
            let mut build = img_build(with.img, &state, "bench-parallel", &self.context);
            cold.push("img", measure(&mut build)?);
            cached.push("img", measure(&mut build)?);
            std::fs::remove_dir_all(&state).ok();

            for (builder, jobs) in [("buildah", None), ("buildah --jobs 4", Some(4))] {
                let root = work.join(format!("buildah-{run}"));
                quiet(&mut buildah_pull(&root, &super::base_ref(registry)))?;
                let mut bud = buildah_bud(&root, jobs, "bench-parallel", &self.context);
                cold.push(builder, measure(&mut bud)?);
                cached.push(builder, measure(&mut bud)?);
                remove_buildah_root(&root);
            }

            if let Some(buildkit) = with.buildkit {
                let mut build = buildkit.build(&self.context, "type=image,name=bench-parallel");
                cold.push("BuildKit", buildkit_cold(buildkit, &mut build)?);
                cached.push("BuildKit", measure(&mut build)?);
            }
        }
        Ok([cold, cached])
    }
}

/// Scenario 3: a 20,000-file, 200 MB context of random data copied into an image, named in
/// the store and, as P3, exported as an OCI archive, cold and cached.
pub struct BigContext {
    context: PathBuf,
}

impl BigContext {
    pub fn new(work: &Path) -> Result<Self> {
        let context = work.join("big-context");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for dir in 0..100 {
            let dir_path = context.join(format!("dir{dir:03}"));
            std::fs::create_dir_all(&dir_path)?;
            for file in 0..200 {
                let mut data = vec![0u8; 10 * 1024];
                for chunk in data.chunks_mut(8) {
                    // xorshift: incompressible content, cheap to make.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
                }
                std::fs::write(dir_path.join(format!("file{file:03}.bin")), data)?;
            }
        }
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY . /data\n")?;
        Ok(BigContext { context })
    }

    /// `-t` into the store, cold.
    pub fn measure_tagged(&self, with: &Builders<'_>) -> Result<Row> {
        let work = self.context.parent().expect("context has a parent");
        let mut row = Row::new("3. `COPY` of 20,000 files (200 MB) and export");
        for run in 0..with.runs {
            let state = work.join(format!("img-copy-state-{run}"));
            row.push(
                "img",
                measure(&mut img_build(
                    with.img,
                    &state,
                    "bench-copy",
                    &self.context,
                ))?,
            );
            std::fs::remove_dir_all(&state).ok();

            let root = work.join(format!("buildah-copy-{run}"));
            row.push(
                "buildah",
                measure(&mut buildah_bud(&root, None, "bench-copy", &self.context))?,
            );
            remove_buildah_root(&root);

            if let Some(buildkit) = with.buildkit {
                let mut build = buildkit.build(&self.context, "type=image,name=bench-copy");
                row.push("BuildKit", buildkit_cold(buildkit, &mut build)?);
            }
        }
        Ok(row)
    }

    /// P3 and P3c: `-o type=oci,dest=…`, cold then cached, beside `tar | pigz` of the same
    /// tree into a file (the tool pipeline doing the tar, the compression and the write).
    pub fn measure_oci(&self, with: &Builders<'_>) -> Result<[Row; 2]> {
        let work = self.context.parent().expect("context has a parent");
        let mut cold = Row::new("P3. the same as an OCI archive (`-o type=oci`), cold");
        let mut cached = Row::new("P3c. the same, cached");
        let dest = work.join("p3.tar");
        for run in 0..with.runs {
            let state = work.join(format!("img-oci-state-{run}"));
            let mut build = img_build_oci(with.img, &state, &dest, &self.context);
            cold.push("img", measure(&mut build)?);
            cached.push("img", measure(&mut build)?);
            std::fs::remove_dir_all(&state).ok();

            let root = work.join(format!("buildah-oci-{run}"));
            let mut bud = buildah_bud_oci(&root, "bench-oci", &self.context, &dest);
            cold.push("buildah", measure(&mut bud)?);
            std::fs::remove_file(&dest).ok();
            cached.push("buildah", measure(&mut bud)?);
            remove_buildah_root(&root);

            if let Some(buildkit) = with.buildkit {
                let output = format!("type=oci,dest={}", dest.display());
                let mut build = buildkit.build(&self.context, &output);
                cold.push("BuildKit", buildkit_cold(buildkit, &mut build)?);
                cached.push("BuildKit", measure(&mut build)?);
            }

            let mut pipeline = Command::new("sh");
            pipeline.current_dir(&self.context).arg("-c").arg(format!(
                "tar --sort=name --numeric-owner -cf - . | pigz > '{}'",
                dest.display()
            ));
            cold.push("tar | pigz", measure(&mut pipeline)?);
        }
        std::fs::remove_file(&dest).ok();
        Ok([cold, cached])
    }
}

/// Scenario 4: a C project built with gcc and make on a Debian base image.
pub struct RealWorld {
    context: PathBuf,
    base: String,
}

/// The source file scenario 4 edits between its cold build and its rebuild.
const EDITED_SOURCE: &str = "src/greet.c";

impl RealWorld {
    pub fn new(img: &Path, work: &Path, cache: &Path, registry: &Registry) -> Result<Self> {
        let rootfs = cache.join("debian-rootfs");
        crate::debian::bookworm_rootfs(&rootfs, &["gcc", "libc6-dev", "make"])?;
        let base = format!("{}/bench/debian:bookworm", registry.host);
        let scratch = work.join("debian-base");
        crate::debian::publish_image(
            img,
            &rootfs,
            &scratch.join("context"),
            &scratch.join("state"),
            &base,
            "gzip",
        )?;
        std::fs::remove_dir_all(&scratch).ok();

        let context = work.join("c-project");
        write_c_project(&context, &base)?;
        Ok(RealWorld { context, base })
    }

    /// The Debian base image in the benchmark registry.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Cold builds (base image pulled beforehand; BuildKit's cold builds pull it) and
    /// rebuilds after one source edit.
    pub fn measure(&self, with: &Builders<'_>) -> Result<[Row; 2]> {
        let work = self.context.parent().expect("context has a parent");
        let source = self.context.join(EDITED_SOURCE);
        let original = std::fs::read_to_string(&source)?;
        let mut cold = Row::new("4. C project on Debian, cold");
        let mut edit = Row::new("4. the same after editing one source file");
        let builders: &[&'static str] = if with.buildkit.is_some() {
            &["img", "buildah", "BuildKit"]
        } else {
            &["img", "buildah"]
        };
        for run in 0..with.runs {
            for &builder in builders {
                std::fs::write(&source, &original)?;
                let scratch = work.join(format!("real-world-{builder}-{run}"));
                let mut build = match (builder, with.buildkit) {
                    ("img", _) => {
                        quiet(&mut img_pull(with.img, &scratch, &self.base))?;
                        img_build(with.img, &scratch, "bench-real-world", &self.context)
                    }
                    ("BuildKit", Some(buildkit)) => {
                        buildkit.prune()?;
                        buildkit.build(&self.context, "type=image,name=bench-real-world")
                    }
                    _ => {
                        quiet(&mut buildah_pull(&scratch, &self.base))?;
                        buildah_bud(&scratch, None, "bench-real-world", &self.context)
                    }
                };
                cold.push(builder, measure(&mut build)?);
                std::fs::write(
                    &source,
                    original.replace("hello", &format!("hello again {run}")),
                )?;
                edit.push(builder, measure(&mut build)?);
                match builder {
                    "img" => {
                        std::fs::remove_dir_all(&scratch).ok();
                    }
                    "buildah" => remove_buildah_root(&scratch),
                    _ => {}
                }
            }
        }
        std::fs::write(&source, original)?;
        Ok([cold, edit])
    }
}

/// A small C program with a Makefile and a Dockerfile that builds it on `base`.
fn write_c_project(context: &Path, base: &str) -> Result<()> {
    let src = context.join("src");
    std::fs::create_dir_all(&src)?;
    let mut objects = Vec::new();
    for unit in 0..24 {
        let mut code = String::from("#include <stdio.h>\n#include <string.h>\n");
        for function in 0..40 {
            writeln!(
                code,
                "unsigned long unit{unit}_f{function}(const char *s) {{ unsigned long h = {function}; \
                 for (size_t i = 0; i < strlen(s); i++) h = h * 31 + (unsigned char)s[i] + {unit}; return h; }}"
            )?;
        }
        std::fs::write(src.join(format!("unit{unit}.c")), code)?;
        objects.push(format!("src/unit{unit}.o"));
    }
    std::fs::write(
        src.join("greet.c"),
        "#include <stdio.h>\nvoid greet(void) { puts(\"hello from the benchmark\"); }\n",
    )?;
    std::fs::write(
        src.join("main.c"),
        "void greet(void);\nint main(void) { greet(); return 0; }\n",
    )?;
    objects.extend(["src/greet.o".to_string(), "src/main.o".to_string()]);
    std::fs::write(
        context.join("Makefile"),
        format!(
            "CFLAGS ?= -O2\nPREFIX ?= /usr/local\nOBJS = {}\n\nhello: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n\
             install: hello\n\tinstall -m 0755 hello $(PREFIX)/bin/hello\n",
            objects.join(" ")
        ),
    )?;
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN useradd --create-home app\nWORKDIR /src\nCOPY Makefile ./\n\
             COPY src/ src/\nRUN make -j2 && make install\nUSER app\nCMD [\"hello\"]\n"
        ),
    )?;
    Ok(())
}

/// Scenario 5, the CI case of the shared build cache: pod A builds cold on an empty state
/// directory, exports its cache to the registry (`mode=max`) and pushes the image; pod B, on
/// another empty state directory, imports that cache and pushes the same image. The project:
/// the Debian base of scenario 4, `apt-get install` of a local package, and the C build.
pub struct CiCache {
    context: PathBuf,
    registry: String,
}

impl CiCache {
    /// The project on `base` (scenario 4's Debian image in the benchmark registry).
    pub fn new(work: &Path, base: &str, registry: &Registry) -> Result<Self> {
        let context = work.join("ci-project");
        write_c_project(&context, base)?;
        write_local_package(work, &context)?;
        std::fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM {base}\nCOPY bench-tool.deb /tmp/\n\
                 RUN apt-get install -y --no-install-recommends /tmp/bench-tool.deb && bench-tool\n\
                 RUN useradd --create-home app\nWORKDIR /src\nCOPY Makefile ./\nCOPY src/ src/\n\
                 RUN make -j2 && make install\nUSER app\nCMD [\"hello\"]\n"
            ),
        )?;
        Ok(CiCache {
            context,
            registry: registry.host.clone(),
        })
    }

    /// Each run: pod A then pod B per builder, every pod on an empty state directory, every
    /// run with its own repositories so no blob of an earlier run is found there.
    pub fn measure(&self, with: &Builders<'_>) -> Result<[Row; 2]> {
        let work = self.context.parent().expect("context has a parent");
        let mut pod_a = Row::new("5. CI pod A: cold, `--cache-to type=registry,mode=max`, push");
        let mut pod_b = Row::new("5. CI pod B: empty state, `--cache-from`, push");
        for run in 0..with.runs {
            let repo = format!("{}/bench/ci-img-{run}", self.registry);
            let cache = format!("{repo}:buildcache");
            for (row, pod, cache_flag) in [
                (
                    &mut pod_a,
                    "a",
                    format!("type=registry,ref={cache},mode=max"),
                ),
                (&mut pod_b, "b", cache.clone()),
            ] {
                let state = work.join(format!("ci-img-{run}-{pod}"));
                let flag = if pod == "a" {
                    "--cache-to"
                } else {
                    "--cache-from"
                };
                let mut build = Command::new(with.img);
                build
                    .arg("--state")
                    .arg(&state)
                    .args([
                        "build",
                        "--progress=plain",
                        flag,
                        &cache_flag,
                        "--push",
                        "-t",
                    ])
                    .arg(format!("{repo}:{pod}"))
                    .arg(&self.context);
                row.push("img", measure(&mut build)?);
                std::fs::remove_dir_all(&state).ok();
            }

            let repo = format!("{}/bench/ci-buildah-{run}", self.registry);
            for (row, pod, flag) in [
                (&mut pod_a, "a", "--cache-to"),
                (&mut pod_b, "b", "--cache-from"),
            ] {
                let root = work.join(format!("ci-buildah-{run}-{pod}"));
                let cache = format!("{repo}/cache");
                let bud = buildah_bud_with(&root, None, &[flag, &cache], "bench-ci", &self.context);
                let mut push = buildah_push(&root, "bench-ci", &format!("docker://{repo}:{pod}"));
                row.push("buildah", measure(&mut both(&bud, &mut push))?);
                remove_buildah_root(&root);
            }

            if let Some(buildkit) = with.buildkit {
                let repo = format!("{}/bench/ci-buildkit-{run}", self.registry);
                let cache = format!("type=registry,ref={repo}:buildcache");
                buildkit.prune()?;
                let mut build = buildkit.build(
                    &self.context,
                    &format!("type=image,name={repo}:a,push=true"),
                );
                build.args(["--export-cache", &format!("{cache},mode=max")]);
                pod_a.push("BuildKit", measure(&mut build)?);
                buildkit.prune()?;
                let mut build = buildkit.build(
                    &self.context,
                    &format!("type=image,name={repo}:b,push=true"),
                );
                build.args(["--import-cache", &cache]);
                pod_b.push("BuildKit", measure(&mut build)?);
            }
        }
        Ok([pod_a, pod_b])
    }
}

/// `sh -c 'FIRST && SECOND'`: two commands timed as one.
fn both(first: &Command, second: &mut Command) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "{} && {}",
        super::peers::shell_line(first),
        super::peers::shell_line(second)
    ));
    command
}

/// A small Debian package without dependencies, built with `dpkg-deb` into the context as
/// `bench-tool.deb`: what `apt-get install` installs without a network.
fn write_local_package(work: &Path, context: &Path) -> Result<()> {
    let root = work.join("bench-tool-pkg");
    std::fs::create_dir_all(root.join("DEBIAN"))?;
    std::fs::create_dir_all(root.join("usr/bin"))?;
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: bench-tool\nVersion: 1.0\nArchitecture: all\nMaintainer: img <img@localhost>\n\
         Description: a tool for img's CI benchmark\n",
    )?;
    let tool = root.join("usr/bin/bench-tool");
    std::fs::write(&tool, "#!/bin/sh\necho bench-tool installed\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
    quiet(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(context.join("bench-tool.deb")),
    )?;
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}
