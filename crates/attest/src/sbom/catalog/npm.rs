//! npm packages: `package-lock.json` (lockfileVersion 1, 2 and 3, including npm's hidden
//! `node_modules/.package-lock.json`) and the `package.json` of each installed package under
//! `node_modules` (`node_modules/NAME/package.json`, `node_modules/@SCOPE/NAME/package.json`).

use serde_json::{Map, Value};

use super::Catalog;
use crate::sbom::package::{purl, Package, PackageKind};

/// Whether `path` is a file this cataloger reads.
pub(super) fn wants(path: &str) -> bool {
    let parts: Vec<&str> = path.rsplit('/').collect();
    match parts.as_slice() {
        ["package-lock.json" | ".package-lock.json", ..] => true,
        ["package.json", _, "node_modules", ..] => true,
        ["package.json", _, scope, "node_modules", ..] => scope.starts_with('@'),
        _ => false,
    }
}

pub(super) fn catalog_file(catalog: &mut Catalog<'_>, path: &str) {
    let Some(bytes) = catalog.read(path) else {
        return;
    };
    let json: Value = match serde_json::from_slice(&bytes) {
        Ok(json) => json,
        Err(e) => {
            catalog.warn(path, format!("not valid JSON: {e}"));
            return;
        }
    };
    let Some(object) = json.as_object() else {
        catalog.warn(path, "not a JSON object");
        return;
    };
    if path.ends_with("package.json") {
        installed_package(catalog, path, object);
    } else {
        lockfile(catalog, path, object);
    }
}

fn installed_package(catalog: &mut Catalog<'_>, path: &str, object: &Map<String, Value>) {
    let (Some(name), Some(version)) = (string(object, "name"), string(object, "version")) else {
        catalog.warn(path, "no name or version, skipped");
        return;
    };
    push(catalog, path, name, version, license(object));
}

fn lockfile(catalog: &mut Catalog<'_>, path: &str, object: &Map<String, Value>) {
    // v2 and v3 list every installed path under "packages"; v2 repeats v1's tree, so when
    // "packages" is there it is the whole truth.
    if let Some(packages) = object.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            // "" is the project itself; links point at workspace folders listed elsewhere.
            if key.is_empty() || entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = string(entry, "name")
                .or_else(|| key.rsplit_once("node_modules/").map(|(_, name)| name))
                .unwrap_or(key);
            let Some(version) = string(entry, "version") else {
                continue;
            };
            push(catalog, path, name, version, license(entry));
        }
        return;
    }
    if let Some(dependencies) = object.get("dependencies").and_then(Value::as_object) {
        let mut stack = vec![dependencies];
        while let Some(dependencies) = stack.pop() {
            for (name, entry) in dependencies {
                let Some(entry) = entry.as_object() else {
                    continue;
                };
                if let Some(version) = string(entry, "version") {
                    // v1 writes local links as "file:..." versions: not a registry package.
                    if !version.starts_with("file:") {
                        push(catalog, path, name, version, None);
                    }
                }
                if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                    stack.push(nested);
                }
            }
        }
        return;
    }
    catalog.warn(path, "no packages or dependencies, not an npm lockfile");
}

fn push(catalog: &mut Catalog<'_>, path: &str, name: &str, version: &str, license: Option<String>) {
    let (namespace, short) = match name.split_once('/') {
        Some((scope, short)) if scope.starts_with('@') => (Some(scope), short),
        _ => (None, name),
    };
    catalog.packages.push(Package {
        kind: PackageKind::Npm,
        name: name.to_string(),
        version: version.to_string(),
        purl: purl("npm", namespace, short, Some(version), &[]),
        license,
        locations: vec![path.to_string()],
    });
}

fn string<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `"license": "MIT"`, the old `"license": {"type": "MIT"}`, or `"licenses": [{"type": …}]`.
fn license(object: &Map<String, Value>) -> Option<String> {
    match object.get("license") {
        Some(Value::String(s)) if !s.is_empty() => return Some(s.clone()),
        Some(Value::Object(o)) => {
            if let Some(t) = string(o, "type") {
                return Some(t.to_string());
            }
        }
        _ => {}
    }
    let types: Vec<&str> = object
        .get("licenses")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|l| l.as_object().and_then(|o| string(o, "type")))
        .collect();
    (!types.is_empty()).then(|| types.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_npm_paths() {
        assert!(wants("/app/package-lock.json"));
        assert!(wants("/app/node_modules/.package-lock.json"));
        assert!(wants("/app/node_modules/express/package.json"));
        assert!(wants("/app/node_modules/@babel/core/package.json"));
        assert!(!wants("/app/package.json"));
        assert!(!wants("/app/node_modules/express/lib/package.json"));
        assert!(!wants("/app/node_modules/babel/core/package.json"));
    }
}
