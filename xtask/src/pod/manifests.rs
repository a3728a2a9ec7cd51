//! The files of `deploy/`: every YAML file parses, every pod template runs as a non-root user
//! without privileges, and the subordinate ids the Kubernetes pods mount fit a pod with its own
//! user namespace. The pod test mounts the same ids in the pod that stands in for the Job.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

/// The ConfigMap with the subordinate ids of the pods in `deploy/kubernetes`.
const SUBORDINATE_IDS: &str = "deploy/kubernetes/subordinate-ids.yaml";

/// The user the image runs as, whose ranges the ConfigMap lists.
const IMAGE_USER: &str = "img";

/// The `subuid` and `subgid` files of the ConfigMap.
pub struct SubordinateIds {
    pub subuid: String,
    pub subgid: String,
}

impl SubordinateIds {
    /// Reads the ConfigMap from the checkout at `root`.
    pub fn from_deploy(root: &Path) -> Result<SubordinateIds> {
        let path = root.join(SUBORDINATE_IDS);
        let docs = load(&path)?;
        let data = docs
            .iter()
            .find(|doc| doc["kind"].as_str() == Some("ConfigMap"))
            .map(|doc| &doc["data"])
            .with_context(|| format!("{}: no ConfigMap", path.display()))?;
        let field = |key: &str| {
            data[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{}: no data.{key}", path.display()))
        };
        Ok(SubordinateIds {
            subuid: field("subuid")?,
            subgid: field("subgid")?,
        })
    }

    /// How many subordinate uids the ConfigMap gives the image's user.
    pub fn count(&self) -> u64 {
        ranges(&self.subuid).iter().map(|(_, count)| count).sum()
    }
}

/// The `(start, count)` ranges of [`IMAGE_USER`] in an /etc/subuid-format text.
fn ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            if fields.next()? != IMAGE_USER {
                return None;
            }
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

/// Parses every document of a YAML file.
fn load(path: &Path) -> Result<Vec<Yaml>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    YamlLoader::load_from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// The YAML files under `dir`, sorted.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(yaml_files(&path)?);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The pod specs of a Kubernetes object: a Pod's spec, a workload's pod template, a CronJob's
/// job template's.
fn pod_specs(doc: &Yaml) -> Vec<&Yaml> {
    let spec = &doc["spec"];
    match doc["kind"].as_str() {
        Some("Pod") => vec![spec],
        Some("Job" | "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            vec![&spec["template"]["spec"]]
        }
        Some("CronJob") => vec![&spec["jobTemplate"]["spec"]["template"]["spec"]],
        _ => Vec::new(),
    }
}

/// What is wrong with a pod spec: a container that may run as root or is privileged, a
/// hostPath volume, or an unmasked /proc in the host's user namespace (the API server refuses
/// that, and it would be a privileged container in all but name).
fn pod_problems(pod: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let pod_context = &pod["securityContext"];
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|key| pod[*key].as_vec())
        .flatten();
    let mut count = 0;
    for container in containers {
        count += 1;
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        let setting = |key: &str| {
            if context[key].is_badvalue() {
                &pod_context[key]
            } else {
                &context[key]
            }
        };
        match setting("runAsUser").as_i64() {
            Some(0) => problems.push(format!("container {name} runs as uid 0")),
            None => problems.push(format!("container {name} does not set runAsUser")),
            Some(_) => {}
        }
        if setting("runAsNonRoot").as_bool() != Some(true) {
            problems.push(format!("container {name} does not set runAsNonRoot: true"));
        }
        if context["privileged"].as_bool() == Some(true) {
            problems.push(format!("container {name} is privileged"));
        }
        if !context["capabilities"]["add"].is_badvalue() {
            problems.push(format!("container {name} adds capabilities"));
        }
        if context["procMount"].as_str() == Some("Unmasked")
            && pod["hostUsers"].as_bool() != Some(false)
        {
            problems.push(format!(
                "container {name} unmasks /proc without hostUsers: false"
            ));
        }
    }
    if count == 0 {
        problems.push("no containers".to_owned());
    }
    for volume in pod["volumes"].as_vec().into_iter().flatten() {
        if !volume["hostPath"].is_badvalue() {
            problems.push(format!(
                "volume {} is a hostPath",
                volume["name"].as_str().unwrap_or("?")
            ));
        }
    }
    problems
}

/// Checks every YAML file under `deploy/`; returns how many pod templates were checked.
pub fn check_deploy(root: &Path) -> Result<usize> {
    let mut pods = 0;
    let mut problems = Vec::new();
    for file in yaml_files(&root.join("deploy"))? {
        for doc in load(&file)? {
            for pod in pod_specs(&doc) {
                pods += 1;
                let name = doc["metadata"]["name"].as_str().unwrap_or("?");
                for problem in pod_problems(pod) {
                    problems.push(format!("{} ({name}): {problem}", file.display()));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many ids a user-namespaced pod has (ids 0-65535).
    const POD_IDS: u64 = 65536;

    fn root() -> PathBuf {
        crate::workspace_root()
    }

    #[test]
    fn every_pod_template_is_non_root_and_unprivileged() {
        let pods = check_deploy(&root()).unwrap();
        // The Job, the job without RUN steps and the StatefulSet.
        assert!(pods >= 3, "only {pods} pod templates under deploy/");
    }

    #[test]
    fn the_ci_files_parse() {
        for name in ["deploy/ci/github-actions.yml", "deploy/ci/gitlab-ci.yml"] {
            let docs = load(&root().join(name)).unwrap();
            assert_eq!(docs.len(), 1, "{name}");
            assert!(docs[0].as_hash().is_some(), "{name} is not a mapping");
        }
    }

    #[test]
    fn the_configmap_ids_fill_a_user_namespaced_pod_except_root_and_img() {
        let ids = SubordinateIds::from_deploy(&root()).unwrap();
        assert_eq!(ids.subuid, ids.subgid);
        let ranges = ranges(&ids.subuid);
        let total: u64 = ranges.iter().map(|(_, count)| count).sum();
        // Ids 1-65534 of the step need a host id each: 65534 subordinate ids.
        assert_eq!(total, POD_IDS - 2, "{ranges:?}");
        for (start, count) in &ranges {
            assert!(*start >= 1 && start + count <= POD_IDS, "{start}:{count}");
            assert!(!(*start..start + count).contains(&1000), "{start}:{count}");
        }
        assert_eq!(ids.count(), total);
    }

    #[test]
    fn a_root_container_or_a_host_users_unmasked_proc_is_reported() {
        let docs = YamlLoader::load_from_str(
            "kind: Job\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          \
             securityContext:\n            runAsUser: 0\n            privileged: true\n            \
             procMount: Unmasked\n      volumes:\n        - name: v\n          hostPath: {path: /}\n",
        )
        .unwrap();
        let problems = pod_problems(pod_specs(&docs[0])[0]);
        let text = problems.join("\n");
        for expected in [
            "runs as uid 0",
            "runAsNonRoot",
            "is privileged",
            "without hostUsers: false",
            "hostPath",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }
}
