//! Whole-graph properties: layers and history, digests, sharing and independence.

use img_frontend_dockerfile::{GraphFormat, LoweredBase};

use crate::*;

#[test]
fn layers_line_up_with_history() {
    let build = lower_text(
        "FROM alpine:3.20\nENV A=1\nWORKDIR /\nWORKDIR /app\nCOPY a /a\nLABEL x=y\nRUN true\n",
    );
    let target = build.target();
    // The base is the image op at the bottom of the chain.
    let mut bottom = build.definition.output();
    while let Some(first) = build
        .definition
        .op(&bottom.digest)
        .unwrap()
        .inputs()
        .first()
    {
        bottom = *first;
    }
    assert_eq!(
        target.base,
        LoweredBase::Image {
            reference: ALPINE_PINNED.to_string(),
            op: bottom,
        }
    );
    let created: Vec<&str> = target
        .layers
        .iter()
        .map(|l| build.image.history[l.history_index].created_by.as_str())
        .collect();
    assert_eq!(created[0], "WORKDIR /app");
    assert!(created[1].starts_with("COPY a /a"), "{created:?}");
    assert!(created[2].starts_with("RUN /bin/sh -c true"), "{created:?}");
    for layer in &target.layers {
        assert!(!build.image.history[layer.history_index].empty_layer);
    }
    // Every non-empty entry after the base image's is a layer op, in order.
    let own: Vec<usize> = build
        .image
        .history
        .iter()
        .enumerate()
        .skip(2)
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    let layer_indexes: Vec<usize> = target.layers.iter().map(|l| l.history_index).collect();
    assert_eq!(own, layer_indexes);
    // Each layer's parent is the previous layer (the image op for the first).
    for pair in target.layers.windows(2) {
        assert_eq!(pair[1].parent, Some(pair[0].op));
    }
    assert_eq!(target.output, Some(build.definition.output()));
    let aligned = build.history_layers();
    assert_eq!(aligned.len(), build.image.history.len());
    for (entry, layer) in build.image.history.iter().zip(&aligned).skip(2) {
        assert_eq!(entry.empty_layer, layer.is_none(), "{}", entry.created_by);
    }
    assert!(
        aligned[..2].iter().all(Option::is_none),
        "base image entries"
    );
}

#[test]
fn same_dockerfile_gives_the_same_graph_and_a_golden_root() {
    let text = "FROM alpine:3.20\nWORKDIR /app\nCOPY . .\nRUN make\n";
    let a = lower_text(text);
    let b = lower_text(text);
    assert_eq!(a.definition, b.definition);
    assert_eq!(a.definition.to_json(), b.definition.to_json());
    // Pinned so that any change of the op format or of lowering is noticed; update it only
    // for a deliberate change (it invalidates every cache).
    assert_eq!(
        a.definition.output().digest.to_string(),
        "sha256:ae9de90ca18a40177b72d060f6bdf9b71cf1ca4081b60556d03a859ce70931f2"
    );
}

#[test]
fn build_args_change_only_the_steps_that_see_them() {
    let text = concat!(
        "FROM alpine:3.20 AS a\nRUN one\nARG V\nRUN two\nRUN three\n",
        "FROM alpine:3.20 AS b\nRUN four\n",
        "FROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n",
    );
    let v1 = lower_with(text, &build_options().build_arg("V", "1"));
    let v2 = lower_with(text, &build_options().build_arg("V", "2"));
    let digest = |build: &LoweredBuild, suffix: &str| find(&build.definition, suffix).digest;
    assert_eq!(digest(&v1, "RUN one"), digest(&v2, "RUN one"));
    assert_eq!(digest(&v1, "RUN four"), digest(&v2, "RUN four"));
    assert_ne!(digest(&v1, "RUN two"), digest(&v2, "RUN two"));
    assert_ne!(
        digest(&v1, "RUN three"),
        digest(&v2, "RUN three"),
        "descendant"
    );
    assert_ne!(v1.definition.output(), v2.definition.output());
    let two = as_exec(&v1.definition, &find(&v1.definition, "RUN two"));
    assert_eq!(env_of(two)["V"], "1");
    // An argument no stage declares changes nothing.
    let unused = lower_with(
        text,
        &build_options().build_arg("V", "1").build_arg("W", "9"),
    );
    assert_eq!(unused.definition, v1.definition);
}

#[test]
fn independent_stages_are_independent_subgraphs() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS a\nRUN one\n",
        "FROM alpine:3.20 AS b\nRUN two\n",
        "FROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n",
    ));
    let def = &build.definition;
    let a = build.stage(0).unwrap().output.unwrap().digest;
    let b = build.stage(1).unwrap().output.unwrap().digest;
    assert!(!ancestors(def, a).contains(&b));
    assert!(!ancestors(def, b).contains(&a));
    let root = ancestors(def, def.output().digest);
    assert!(root.contains(&a) && root.contains(&b));
    assert_eq!(description(def, &OpRef::new(a)), "[a 2/2] RUN one");
    assert_eq!(
        def.metadata(&b).unwrap().stage.as_deref(),
        Some("b"),
        "stage names for --no-cache-filter"
    );
}

#[test]
fn stages_doing_the_same_work_share_ops() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS a\nRUN make\n",
        "FROM alpine:3.20 AS b\nRUN make\n",
        "FROM scratch\nCOPY --from=a / /a\nCOPY --from=b / /b\n",
    ));
    assert_eq!(
        build.stage(0).unwrap().output,
        build.stage(1).unwrap().output
    );
    assert_eq!(build.definition.len(), 4);
}

#[test]
fn a_stage_built_on_another_continues_its_chain() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS base\nRUN setup\n",
        "FROM base\nRUN app\n",
    ));
    let base = build.stage(0).unwrap();
    let target = build.target();
    assert_eq!(target.base, base.base);
    assert_eq!(target.layers.len(), 2);
    assert_eq!(target.layers[0], base.layers[0]);
    assert_eq!(target.layers[1].parent, base.output);
    let history: Vec<&str> = target
        .layers
        .iter()
        .map(|l| build.image.history[l.history_index].created_by.as_str())
        .collect();
    assert!(
        history[0].contains("setup") && history[1].contains("app"),
        "{history:?}"
    );
    assert_eq!(
        description(&build.definition, &build.definition.output()),
        "[stage-1 1/1] RUN app"
    );
}

#[test]
fn proxy_args_reach_the_process_but_not_the_digest() {
    let text = "FROM alpine:3.20\nRUN curl example.com\n";
    let plain = lower_with(text, &build_options());
    let proxied = lower_with(
        text,
        &build_options().build_arg("HTTP_PROXY", "http://proxy:3128"),
    );
    let root = proxied.definition.output();
    assert_eq!(root, plain.definition.output());
    assert!(!as_exec(&proxied.definition, &root)
        .env
        .iter()
        .any(|e| e.starts_with("HTTP_PROXY")));
    assert_eq!(
        proxied.proxy_env(&root.digest),
        [("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]
    );
    assert!(plain.proxy_env(&root.digest).is_empty());
    assert!(!proxied.render(GraphFormat::Json).contains("proxy:3128"));
    let debug = format!("{proxied:?}");
    assert!(debug.contains("HTTP_PROXY") && !debug.contains("proxy:3128"));
}

#[test]
fn renders_json_that_reads_back_and_dot_with_one_node_per_op() {
    let build = lower_text("FROM alpine:3.20\nCOPY a /a\nRUN make\n");
    let json = build.render(GraphFormat::Json);
    assert_eq!(Definition::from_json(&json).unwrap(), build.definition);
    let dot = build.render(GraphFormat::Dot);
    assert_eq!(dot.matches("[label=").count(), build.definition.len());
    assert!(dot.contains("[3/3] RUN make"));
    assert!(dot.contains("Dockerfile:3"));
}
