//! What the build's flags decide about RUN steps once the graph exists: `--allow` entitlements,
//! the `--network` of steps that do not choose one, and `--add-host`, `--ulimit`,
//! `--shm-size`.

use std::collections::HashMap;

use anyhow::bail;
use img_llb::{Definition, DefinitionBuilder, Digest, NetworkMode, Op, OpRef, SecurityMode};

use super::options::{DefaultNetwork, Entitlements};
use super::step_options::StepOptions;

/// `RUN --security=insecure` runs only with `--allow security.insecure`, as in BuildKit,
/// where it is an entitlement the client must ask for.
pub fn check_entitlements(definition: &Definition, allowed: Entitlements) -> anyhow::Result<()> {
    for (digest, op) in definition.ops() {
        let Op::Exec(exec) = op else { continue };
        if exec.security == SecurityMode::Insecure && !allowed.security_insecure {
            let at = definition
                .metadata(digest)
                .and_then(|m| m.location.as_ref())
                .map_or_else(
                    || format!("op {}", digest.short()),
                    |l| format!("{l}: `{}`", l.text),
                );
            bail!("{at}: RUN --security=insecure needs the entitlement: add --allow security.insecure");
        }
    }
    Ok(())
}

/// The graph with `network` applied to exec ops left at the default and `steps` given to
/// every exec op, and where each op of `definition` went. `default` and `host` change
/// nothing: RUN steps without a network namespace share the host's network either way.
pub fn apply_step_options(
    definition: &Definition,
    network: DefaultNetwork,
    steps: &StepOptions,
) -> anyhow::Result<(Definition, HashMap<Digest, OpRef>)> {
    let mut moved: HashMap<Digest, OpRef> = HashMap::new();
    if network != DefaultNetwork::None && steps.is_empty() {
        return Ok((definition.clone(), moved));
    }
    let mut builder = DefinitionBuilder::new();
    for digest in definition.dependency_order() {
        let Some(op) = definition.op(&digest) else {
            continue;
        };
        let mut op = op.map_inputs(|input| {
            moved.get(&input.digest).map_or(*input, |to| OpRef {
                digest: to.digest,
                output: input.output,
            })
        });
        if let Op::Exec(exec) = &mut op {
            if network == DefaultNetwork::None && exec.network == NetworkMode::Sandbox {
                exec.network = NetworkMode::None;
            }
            steps.apply(exec);
        }
        let metadata = definition.metadata(&digest).cloned().unwrap_or_default();
        let to = builder.add(op, metadata)?;
        moved.insert(digest, to);
    }
    // Every output: a multi-platform graph has one per platform.
    let outputs: Vec<OpRef> = definition
        .outputs()
        .iter()
        .map(|output| {
            moved.get(&output.digest).map_or(*output, |to| OpRef {
                digest: to.digest,
                output: output.output,
            })
        })
        .collect();
    Ok((builder.build_outputs(&outputs)?, moved))
}

#[cfg(test)]
mod tests {
    use img_llb::{ExecOp, ImageSource, OpMetadata, Platform, SourceOp};

    use super::*;

    fn graph(security: SecurityMode, network: NetworkMode) -> Definition {
        let mut b = DefinitionBuilder::new();
        let base = b
            .add(
                Op::Source(SourceOp::Image(ImageSource {
                    reference: "docker.io/library/busybox:latest".into(),
                    platform: Platform::new("linux", "amd64"),
                })),
                OpMetadata::described("FROM busybox"),
            )
            .unwrap();
        let first = b
            .add(
                ExecOp::new(Some(base), vec!["true".into()])
                    .with_security(security)
                    .with_network(network),
                OpMetadata::described("RUN true"),
            )
            .unwrap();
        let second = b
            .add(
                ExecOp::new(Some(first), vec!["echo".into()]),
                OpMetadata::described("RUN echo"),
            )
            .unwrap();
        b.build(second).unwrap()
    }

    fn networks(definition: &Definition) -> Vec<NetworkMode> {
        definition
            .dependency_order()
            .iter()
            .filter_map(|d| match definition.op(d) {
                Some(Op::Exec(e)) => Some(e.network),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn insecure_steps_need_the_entitlement() {
        let insecure = graph(SecurityMode::Insecure, NetworkMode::Sandbox);
        let err = check_entitlements(&insecure, Entitlements::default()).unwrap_err();
        assert!(
            err.to_string().contains("--allow security.insecure"),
            "{err}"
        );
        let allowed = Entitlements {
            security_insecure: true,
            ..Entitlements::default()
        };
        check_entitlements(&insecure, allowed).unwrap();
        let plain = graph(SecurityMode::Sandbox, NetworkMode::Sandbox);
        check_entitlements(&plain, Entitlements::default()).unwrap();
    }

    #[test]
    fn network_none_applies_to_steps_that_chose_nothing() {
        let g = graph(SecurityMode::Sandbox, NetworkMode::Host);
        let none_extra = StepOptions::default();
        let (same, moved) = apply_step_options(&g, DefaultNetwork::Default, &none_extra).unwrap();
        assert_eq!(same.output(), g.output());
        assert!(moved.is_empty());

        let (none, moved) = apply_step_options(&g, DefaultNetwork::None, &none_extra).unwrap();
        // The step that asked for the host's network keeps it; the other loses its network.
        assert_eq!(networks(&none), [NetworkMode::Host, NetworkMode::None]);
        assert_eq!(moved[&g.output().digest], none.output());
        assert_ne!(none.output(), g.output());
        assert_eq!(none.len(), g.len());
    }

    #[test]
    fn step_options_reach_every_exec_op_and_change_its_digest() {
        let g = graph(SecurityMode::Sandbox, NetworkMode::Sandbox);
        let steps = StepOptions {
            extra_hosts: vec![img_llb::HostEntry {
                host: "db".into(),
                ip: "10.0.0.5".into(),
            }],
            ulimits: vec![],
            shm_size: Some(128 << 20),
        };
        let (with, moved) = apply_step_options(&g, DefaultNetwork::Default, &steps).unwrap();
        assert_ne!(with.output(), g.output());
        assert_eq!(moved[&g.output().digest], with.output());
        for digest in with.dependency_order() {
            if let Some(Op::Exec(e)) = with.op(&digest) {
                assert_eq!(e.extra_hosts, steps.extra_hosts);
                assert_eq!(e.shm_size, Some(128 << 20));
                assert_eq!(e.network, NetworkMode::Sandbox);
            }
        }
    }
}
