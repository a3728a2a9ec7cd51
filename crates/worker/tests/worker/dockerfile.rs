//! From a real Dockerfile through the frontend's plan and lower to a solved, exported image:
//! what the cli's `img build` does.

use std::cell::RefCell;
use std::collections::BTreeMap;

use img_frontend_dockerfile::{
    lower, parse, plan, BaseImageError, BuildOptions, ImageConfig, LowerOptions, LoweredBase,
    LoweredBuild, Platform,
};
use img_llb::Op;
use img_solver::{Solved, Solver};
use img_worker::{
    export_image, write_rootfs_dir, ExportedImage, ImageExportOptions, ImageRequest, LayerSource,
    Worker, WorkerRef,
};
use libtest_mimic::Trial;

use crate::common::*;

const DOCKERFILE: &str = r#"
FROM busybox:test AS build
WORKDIR /src
COPY *.txt ./
RUN cat a.txt b.txt > joined && echo built > stamp

FROM busybox:test
ENV GREETING=hello
COPY --from=build /src/joined /app/joined
COPY --link b.txt /linked/
RUN echo "$GREETING" > /app/greeting
CMD ["cat", "/app/greeting"]
"#;

pub fn tests() -> Vec<Trial> {
    vec![Trial::test(
        "dockerfile_plans_lowers_solves_and_exports",
        || dockerfile_end_to_end().map_err(Into::into),
    )]
}

/// What the cli does: plan with base image configs the worker resolves, pin the references
/// to the resolved manifests, lower, solve, and export the target's layers.
fn build_dockerfile(
    fx: &Fixture,
) -> Result<
    (
        Solver<Worker>,
        LoweredBuild,
        Solved<WorkerRef>,
        ExportedImage,
    ),
    String,
> {
    let solver = fx.solver();
    let worker = solver.executor();
    let pinned = RefCell::new(BTreeMap::new());
    let resolver = |reference: &str, platform: &Platform| {
        let platform = img_llb::Platform {
            os: platform.os.clone(),
            architecture: platform.architecture.clone(),
            variant: platform.variant.clone(),
        };
        let base = worker.resolve_base_image(reference, &platform)?;
        pinned.borrow_mut().insert(
            reference.to_owned(),
            format!("{reference}@{}", base.manifest_digest),
        );
        let config: ImageConfig = serde_json::from_slice(&base.config)?;
        Ok::<_, BaseImageError>(Some(config))
    };
    let dockerfile = parse(DOCKERFILE, "Dockerfile").map_err(fail)?;
    let plan = plan(&dockerfile, &BuildOptions::new(), &resolver).map_err(fail)?;
    let mut options = LowerOptions::new();
    for (written, pin) in pinned.into_inner() {
        options = options.resolved_image(written, pin);
    }
    let lowered = lower(&plan, &options).map_err(fail)?;
    for (digest, op) in lowered.definition.ops() {
        if matches!(op, Op::Exec(_)) {
            worker.set_exec_env(*digest, lowered.proxy_env(digest).to_vec());
        }
    }
    let solved = solve(&solver, &lowered.definition).map_err(fail)?;
    let target = lowered.target();
    let base = match &target.base {
        LoweredBase::Image { op, .. } => Some(solved.outputs[&op.digest].clone()),
        _ => None,
    };
    let layers = target
        .layers
        .iter()
        .map(|step| LayerSource {
            // A linked step's layer is its own files, whatever it lands on.
            output: solved.outputs[&step.linked.unwrap_or(step.op).digest].clone(),
            history_index: Some(step.history_index),
        })
        .collect();
    let request = ImageRequest {
        base,
        layers,
        config: serde_json::to_value(&lowered.image).map_err(fail)?,
    };
    let image = export_image(worker, &request, &ImageExportOptions::new()).map_err(fail)?;
    Ok((solver, lowered, solved, image))
}

fn dockerfile_end_to_end() -> TestResult {
    let fx = Fixture::new();
    fx.write("a.txt", "a\n");
    fx.write("b.txt", "b\n");
    fx.write("notes.md", "not copied\n");
    let (solver, lowered, solved, image) = build_dockerfile(&fx)?;
    let pinned = lowered.definition.ops().any(|(_, op)| {
        matches!(op, Op::Source(img_llb::SourceOp::Image(i)) if i.reference.contains("@sha256:"))
    });
    check(pinned, "base images pinned to the resolved manifest")?;
    let config: serde_json::Value = serde_json::from_slice(&image.config).map_err(fail)?;
    check(
        config["config"]["Cmd"] == serde_json::json!(["cat", "/app/greeting"]),
        format!("{}", config["config"]),
    )?;
    check(
        config["config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "GREETING=hello")),
        format!("{}", config["config"]["Env"]),
    )?;
    // busybox's layer, COPY --from, COPY --link, RUN.
    check(
        image.layers.len() == 4,
        format!("{} layers", image.layers.len()),
    )?;
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let with_layers = history
        .iter()
        .filter(|h| h.get("empty_layer").is_none())
        .count();
    check(with_layers == 4, format!("history: {history:?}"))?;
    let linked = layer_files(&fx.store(), &image.layers[2].digest);
    check(
        linked.iter().map(|f| f.0.as_str()).collect::<Vec<_>>() == ["linked", "linked/b.txt"],
        format!(
            "linked layer: {:?}",
            linked.iter().map(|f| &f.0).collect::<Vec<_>>()
        ),
    )?;

    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    check(
        read(&out.join("app/joined")) == "a\nb\n",
        read(&out.join("app/joined")),
    )?;
    check(
        read(&out.join("app/greeting")) == "hello\n",
        read(&out.join("app/greeting")),
    )?;
    check(read(&out.join("linked/b.txt")) == "b\n", "linked file")?;

    // A second process rebuilds nothing and makes the same image.
    drop(solver);
    let (_, lowered, solved, again) = build_dockerfile(&fx)?;
    let rerun: Vec<_> = solved
        .executed
        .iter()
        .filter(|d| !matches!(lowered.definition.op(d), Some(Op::Source(_))))
        .collect();
    check(rerun.is_empty(), format!("re-executed {rerun:?}"))?;
    check(
        again.manifest_digest == image.manifest_digest,
        "same manifest digest",
    )
}
