//! From a real Dockerfile through the frontend's plan and lower to a solved, exported image:
//! what the cli's `img build` does.

use std::collections::HashMap;

use img_frontend_dockerfile::{
    lower, parse, plan, BaseImageError, BuildOptions, ImageConfig, LowerOptions, LoweredBase,
    LoweredBuild, Platform,
};
use img_llb::Op;
use img_solver::{
    export_image, write_rootfs_dir, ExportedImage, ImageExportOptions, ImageRequest, LayerSource,
    Solver, Worker,
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

/// Base image configs from the fixture's image store, as the cli resolves them.
fn resolver(
    fx: &Fixture,
) -> impl Fn(&str, &Platform) -> Result<Option<ImageConfig>, BaseImageError> + '_ {
    move |reference, _platform| {
        let store = fx.store();
        let Ok(Some(record)) = store.images().get(reference) else {
            return Ok(None);
        };
        let content = store.content();
        let digest = img_snapshot::Digest::try_from(record.target.digest()).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&content.read_blob(&digest).unwrap()).unwrap();
        let config = manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let config = content.read_blob(&config).unwrap();
        Ok(Some(serde_json::from_slice(&config).unwrap()))
    }
}

fn lowered(fx: &Fixture) -> Result<LoweredBuild, String> {
    let dockerfile = parse(DOCKERFILE, "Dockerfile").map_err(fail)?;
    let plan = plan(&dockerfile, &BuildOptions::new(), &resolver(fx)).map_err(fail)?;
    lower(&plan, &LowerOptions::new()).map_err(fail)
}

/// What the cli does after lowering: solve, then export the target's layers.
fn build_dockerfile(
    fx: &Fixture,
) -> Result<(Solver<Worker>, ExportedImage, Vec<img_llb::Digest>), String> {
    let lowered = lowered(fx)?;
    let mut options = fx.options();
    options.exec_env = lowered
        .definition
        .ops()
        .filter(|(_, op)| matches!(op, Op::Exec(_)))
        .map(|(d, _)| (*d, lowered.proxy_env(d).to_vec()))
        .collect::<HashMap<_, _>>();
    let solver = fx.solver_with(options);
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
    let image =
        export_image(solver.executor(), &request, &ImageExportOptions::new()).map_err(fail)?;
    Ok((solver, image, solved.executed))
}

fn dockerfile_end_to_end() -> TestResult {
    let fx = Fixture::new();
    fx.write("a.txt", "a\n");
    fx.write("b.txt", "b\n");
    fx.write("notes.md", "not copied\n");
    let (solver, image, _) = build_dockerfile(&fx)?;
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

    let solved_output = {
        let lowered = lowered(&fx)?;
        solve(&solver, &lowered.definition).map_err(fail)?.output
    };
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(solver.executor(), &solved_output, &out).map_err(fail)?;
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
    let (_, again, executed) = build_dockerfile(&fx)?;
    let lowered = lowered(&fx)?;
    let rerun: Vec<_> = executed
        .iter()
        .filter(|d| !matches!(lowered.definition.op(d), Some(Op::Source(_))))
        .collect();
    check(rerun.is_empty(), format!("re-executed {rerun:?}"))?;
    check(
        again.manifest_digest == image.manifest_digest,
        "same manifest digest",
    )
}
