//! The SBOM scanner on real package databases and on hostile trees.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{require_tool, validate_spdx, Tree};
use img_attest::{
    sbom_statement, scan_rootfs, Package, PackageKind, ScanLimits, ScanReport, SpdxOptions, Subject,
};
use img_llb::{Digest, Platform};

fn scan(tree: &Tree) -> ScanReport {
    scan_rootfs(tree.root(), ScanLimits::default()).unwrap()
}

fn find<'a>(report: &'a ScanReport, kind: PackageKind, name: &str) -> &'a Package {
    report
        .packages
        .iter()
        .find(|p| p.kind == kind && p.name == name)
        .unwrap_or_else(|| panic!("no {kind} package {name} in {:#?}", report.packages))
}

fn spdx_json(report: &ScanReport) -> serde_json::Value {
    let options = SpdxOptions::new(
        "docker.io/library/test:1",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    serde_json::to_value(report.to_spdx(&options)).unwrap()
}

const DEBIAN_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n";

#[test]
fn the_hosts_dpkg_database_lists_what_dpkg_query_lists() {
    if !require_tool("dpkg-query") {
        return;
    }
    let tree = Tree::new();
    tree.write(
        "/var/lib/dpkg/status",
        std::fs::read("/var/lib/dpkg/status").unwrap(),
    );
    tree.write("/etc/os-release", std::fs::read("/etc/os-release").unwrap());
    let dpkg_copyright = std::fs::read("/usr/share/doc/dpkg/copyright").ok();
    if let Some(copyright) = &dpkg_copyright {
        tree.write("/usr/share/doc/dpkg/copyright", copyright);
    }

    let report = scan(&tree);
    let output = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\n",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let expected: BTreeSet<(String, String, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            (parts.next()? == "installed").then(|| {
                (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                )
            })
        })
        .collect();
    let found: BTreeSet<(String, String, String)> = report
        .packages
        .iter()
        .map(|p| {
            assert_eq!(p.kind, PackageKind::Deb);
            let arch = p
                .purl
                .split("arch=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            (p.name.clone(), p.version.clone(), arch.to_string())
        })
        .collect();
    assert!(expected.len() > 50, "the host has dpkg packages");
    assert_eq!(found, expected);

    let dpkg = find(&report, PackageKind::Deb, "dpkg");
    assert!(dpkg.purl.starts_with("pkg:deb/"), "{}", dpkg.purl);
    assert!(dpkg.locations.contains(&"/var/lib/dpkg/status".to_string()));
    if dpkg_copyright.is_some() {
        assert!(
            dpkg.license.as_deref().unwrap().contains("GPL-2"),
            "{:?}",
            dpkg.license
        );
    }
    validate_spdx(&spdx_json(&report));
}

#[test]
fn a_debootstrap_tree_lists_installed_packages_with_distro_purls() {
    let tree = Tree::new();
    tree.write("/etc/os-release", DEBIAN_OS_RELEASE);
    tree.write(
        "/var/lib/dpkg/status",
        "Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\nSection: admin\nInstalled-Size: 340\nMaintainer: Santiago Vila <sanvila@debian.org>\nArchitecture: amd64\nMulti-Arch: foreign\nVersion: 12.4+deb12u5\nReplaces: base, dpkg (<= 1.15.0), miscutils\nProvides: base\nPre-Depends: awk\nBreaks: debian-security-support (<< 2019.04.25), initscripts (<< 2.88dsf-13.3), sendfile (<< 2.1b.20080616-5.2~)\nConffiles:\n /etc/debian_version 1e4a2d4bd5b5ec5ef7e5ab1d1b4ab23c\n /etc/dpkg/origins/debian c47b6815f67ad1aeccb0d4529bd0b990\nDescription: Debian base system miscellaneous files\n This package contains the basic filesystem hierarchy of a Debian system, and\n several important miscellaneous files, such as /etc/debian_version,\n .\n /etc/host.conf, /etc/issue, /etc/motd, /etc/profile, and others,\nHomepage: https://tracker.debian.org/pkg/base-files\n\n\
Package: libc6\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 12986\nMaintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\nArchitecture: amd64\nMulti-Arch: same\nSource: glibc\nVersion: 2.36-9+deb12u4\nDepends: libgcc-s1\nRecommends: libidn2-0 (>= 2.0.5~)\nDescription: GNU C Library: Shared libraries\n Contains the standard libraries that are used by nearly all programs on\n the system.\nHomepage: https://www.gnu.org/software/libc/libc.html\n\n\
Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\nDescription: time zone and daylight-saving time data\n\n\
Package: vim-tiny\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 2:9.0.1378-2\nConffiles:\n /etc/vim/vimrc.tiny 40a5f6b2b4b8e4a4e5c1e5b6fe4f6c2c\nDescription: Vi IMproved - enhanced vi editor - compact version\n",
    );
    tree.write(
        "/usr/share/doc/base-files/copyright",
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: Santiago Vila <sanvila@debian.org>\nLicense: GPL-2+\n\nLicense: GPL-2+\n This program is free software; you can redistribute it and/or modify\n it under the terms of the GNU General Public License as published by\n",
    );

    let report = scan(&tree);
    let names: Vec<&str> = report.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["base-files", "libc6", "tzdata"],
        "vim-tiny is removed"
    );
    let libc = find(&report, PackageKind::Deb, "libc6");
    assert_eq!(
        libc.purl,
        "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12"
    );
    assert_eq!(libc.license, None);
    let base = find(&report, PackageKind::Deb, "base-files");
    assert_eq!(base.license.as_deref(), Some("GPL-2+"));
    let base_json = spdx_json(&report)["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "base-files")
        .unwrap()
        .clone();
    assert_eq!(base_json["licenseDeclared"], "GPL-2.0-or-later");
    assert_eq!(
        base.locations,
        [
            "/usr/share/doc/base-files/copyright",
            "/var/lib/dpkg/status"
        ]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let json = spdx_json(&report);
    validate_spdx(&json);
    let libc_json = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .unwrap();
    assert_eq!(libc_json["versionInfo"], "2.36-9+deb12u4");
    assert_eq!(
        libc_json["sourceInfo"],
        "acquired package info from DPKG DB: /var/lib/dpkg/status"
    );
    assert_eq!(libc_json["externalRefs"][0]["referenceType"], "purl");
    assert_eq!(libc_json["licenseDeclared"], "NOASSERTION");
}

#[test]
fn distroless_status_d_entries_are_packages() {
    let tree = Tree::new();
    tree.write("/etc/os-release", DEBIAN_OS_RELEASE);
    tree.write(
        "/var/lib/dpkg/status.d/libssl3",
        "Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nInstalled-Size: 6304\nMaintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>\nArchitecture: arm64\nMulti-Arch: same\nDepends: libc6 (>= 2.34)\nDescription: Secure Sockets Layer toolkit - shared libraries\n",
    );
    tree.write(
        "/var/lib/dpkg/status.d/libssl3.md5sums",
        "d41d8cd98f00b204e9800998ecf8427e  usr/lib/libssl.so.3\n",
    );
    tree.write(
        "/var/lib/dpkg/status.d/netbase",
        "Package: netbase\nVersion: 6.4\nArchitecture: all\nDescription: Basic TCP/IP networking system\n",
    );
    let report = scan(&tree);
    let purls: Vec<&str> = report.packages.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=arm64&distro=debian-12",
            "pkg:deb/debian/netbase@6.4?arch=all&distro=debian-12",
        ]
    );
    assert_eq!(
        report.packages[0].locations,
        ["/var/lib/dpkg/status.d/libssl3"]
    );
}

const APK_INSTALLED: &str = "C:Q1Gm0bDy0Ym6DSjmjQ8yrJOPq+yfk=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705334220
c:ba6ea1fe1a0c4b4c4e1d8ae5f58d1b0f8c9bbd6c
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1r+ck5vb6rGXEjuh5xmSxWB3qDZ4=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1m5s8N0qTvSWK4jB7Ex5YIpSMm4s=
P:busybox
V:1.36.1-r15
A:x86_64
S:515706
I:947271
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1702981004
c:1bba9a2e01da0bf6fcaca5a8e2e2e9d24c4d7c7e
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r15 cmd:sh=1.36.1-r15
r:busybox-initscripts
F:bin
R:busybox
a:0:0:755
Z:Q1WUwBY0eOGgzhwNLNPzHkbovxjH8=

C:Q1sQ4ZpK0GsuvnAE0yDw1ZbvVa2iA=
P:ca-certificates-bundle
V:20230506-r0
A:x86_64
S:125434
I:233436
T:Pre generated bundle of Mozilla certificates
U:https://www.mozilla.org/en-US/about/governance/policies/security-group/certs/
L:MPL-2.0 AND MIT
o:ca-certificates
t:1683456876
c:59a3b9f6f4e8f6e1b1e4b7c29b6d1a3c8f8e4e0c
p:ca-certificates-cert
F:etc
F:etc/ssl
F:etc/ssl/certs
R:ca-certificates.crt
a:0:0:644
Z:Q1e4a8K4dGd2GcHZ7dQ3r8h2e6yd0=
";

#[test]
fn the_apk_database_lists_alpine_packages_with_licenses() {
    let tree = Tree::new();
    tree.write(
        "/etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
    );
    tree.write("/lib/apk/db/installed", APK_INSTALLED);
    let report = scan(&tree);
    assert_eq!(report.packages.len(), 3);
    let busybox = find(&report, PackageKind::Apk, "busybox");
    assert_eq!(
        busybox.purl,
        "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"
    );
    assert_eq!(busybox.license.as_deref(), Some("GPL-2.0-only"));
    let bundle = find(&report, PackageKind::Apk, "ca-certificates-bundle");
    assert_eq!(bundle.license.as_deref(), Some("MPL-2.0 AND MIT"));
    let json = spdx_json(&report);
    validate_spdx(&json);
    let declared: BTreeSet<&str> = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["licenseDeclared"].as_str().unwrap())
        .collect();
    assert!(declared.contains("MPL-2.0 AND MIT") && declared.contains("MIT"));
}

#[test]
fn python_dist_info_and_egg_info_under_site_packages() {
    let tree = Tree::new();
    tree.write(
        "/usr/local/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: Python HTTP for Humans.\nHome-page: https://requests.readthedocs.io\nAuthor: Kenneth Reitz\nAuthor-email: me@kennethreitz.org\nLicense: Apache 2.0\nProject-URL: Documentation, https://requests.readthedocs.io\nProject-URL: Source, https://github.com/psf/requests\nClassifier: Development Status :: 5 - Production/Stable\nClassifier: License :: OSI Approved :: Apache Software License\nRequires-Python: >=3.7\nDescription-Content-Type: text/markdown\nLicense-File: LICENSE\nRequires-Dist: charset-normalizer (<4,>=2)\nRequires-Dist: idna (<4,>=2.5)\n\n# Requests\n\n**Requests** is a simple, yet elegant, HTTP library.\n\nName: not-a-header\n",
    );
    tree.write(
        "/usr/local/lib/python3.12/site-packages/typing_extensions-4.9.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: typing_extensions\nVersion: 4.9.0\nSummary: Backported and Experimental Type Hints for Python 3.8+\nKeywords: annotations,backport,checker,checking,function,hinting,hints,type,typechecking,typehinting,typehints,typing\nAuthor-email: \"Guido van Rossum, Jukka Lehtosalo, Łukasz Langa, Michael Lee\" <levkivskyi@gmail.com>\nRequires-Python: >=3.8\nDescription-Content-Type: text/markdown\nClassifier: Development Status :: 5 - Production/Stable\nClassifier: License :: OSI Approved :: Python Software Foundation License\nClassifier: Operating System :: OS Independent\n",
    );
    tree.write(
        "/usr/lib/python3/dist-packages/packaging-24.0.dist-info/METADATA",
        "Metadata-Version: 2.4\nName: packaging\nVersion: 24.0\nLicense-Expression: Apache-2.0 OR BSD-2-Clause\n",
    );
    tree.write(
        "/usr/lib/python3/dist-packages/six-1.16.0.egg-info",
        "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nSummary: Python 2 and 3 compatibility utilities\nHome-page: https://github.com/benjaminp/six\nAuthor: Benjamin Peterson\nAuthor-email: benjamin@python.org\nLicense: MIT\n",
    );
    tree.write(
        "/opt/venv/lib/python3.11/site-packages/Flask_Cors-4.0.0.egg-info/PKG-INFO",
        "Metadata-Version: 2.1\r\nName: Flask-Cors\r\nVersion: 4.0.0\r\nLicense: MIT\r\n\r\nbody\r\n",
    );
    // Not under site-packages: a source checkout, not an installed distribution.
    tree.write(
        "/src/proj.dist-info/METADATA",
        "Name: proj\nVersion: 0.0.1\n",
    );

    let report = scan(&tree);
    let purls: Vec<&str> = report.packages.iter().map(|p| p.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:pypi/flask-cors@4.0.0",
            "pkg:pypi/packaging@24.0",
            "pkg:pypi/requests@2.31.0",
            "pkg:pypi/six@1.16.0",
            "pkg:pypi/typing-extensions@4.9.0",
        ]
    );
    assert_eq!(
        find(&report, PackageKind::Python, "requests")
            .license
            .as_deref(),
        Some("Apache 2.0")
    );
    assert_eq!(
        find(&report, PackageKind::Python, "typing_extensions")
            .license
            .as_deref(),
        Some("Python Software Foundation License")
    );
    assert_eq!(
        find(&report, PackageKind::Python, "packaging")
            .license
            .as_deref(),
        Some("Apache-2.0 OR BSD-2-Clause")
    );
    let json = spdx_json(&report);
    validate_spdx(&json);
    let requests = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "requests")
        .unwrap();
    // "Apache 2.0" is no SPDX expression, but it names one.
    assert_eq!(requests["licenseDeclared"], "Apache-2.0");
    let typing = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "typing_extensions")
        .unwrap();
    assert_eq!(
        typing["licenseDeclared"],
        "LicenseRef-Python-Software-Foundation-License"
    );
}

const PACKAGE_LOCK_V3: &str = r#"{
  "name": "web",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "web",
      "version": "1.0.0",
      "license": "ISC",
      "workspaces": ["packages/*"],
      "dependencies": { "@babel/core": "^7.23.0", "express": "^4.18.2" }
    },
    "node_modules/@babel/core": {
      "version": "7.23.7",
      "resolved": "https://registry.npmjs.org/@babel/core/-/core-7.23.7.tgz",
      "integrity": "sha512-+UpDgowcmqe36d4NwqvKsyPMlOLNGMsfMmQ5WGCu+siCe3t3dfe9njrzGfdN4qq+bcNUt0+Vw6haRxBOycs4dw==",
      "dev": true,
      "license": "MIT"
    },
    "node_modules/express": {
      "version": "4.18.2",
      "resolved": "https://registry.npmjs.org/express/-/express-4.18.2.tgz",
      "integrity": "sha512-5/PsL6iGPdfQ/lKM1UuielYgv3BUoJfz1aUwU9vHZ+J7gyvwdQXFEBIEIaxeGf0GIcreATNyBExtalisDbuMqQ==",
      "license": "MIT",
      "dependencies": { "debug": "2.6.9" }
    },
    "node_modules/express/node_modules/debug": {
      "version": "2.6.9",
      "license": "MIT"
    },
    "node_modules/shared": { "resolved": "packages/shared", "link": true },
    "packages/shared": { "name": "shared", "version": "0.1.0" }
  }
}"#;

const PACKAGE_LOCK_V1: &str = r#"{
  "name": "legacy",
  "version": "1.0.0",
  "lockfileVersion": 1,
  "requires": true,
  "dependencies": {
    "accepts": {
      "version": "1.3.8",
      "resolved": "https://registry.npmjs.org/accepts/-/accepts-1.3.8.tgz",
      "integrity": "sha512-PYAthTa2m2VKxuvSD3DPC/Gy+U+sOA1LAuT8mkmRuvw+NACSaeXEQ+NHcVF7rONl6qcaxV3Uuemwawk+7+SJLw==",
      "requires": { "mime-types": "~2.1.34" },
      "dependencies": {
        "mime-types": { "version": "2.1.35", "resolved": "https://registry.npmjs.org/mime-types/-/mime-types-2.1.35.tgz" }
      }
    },
    "lodash": { "version": "4.17.21" },
    "local-lib": { "version": "file:../local-lib" }
  }
}"#;

#[test]
fn npm_lockfiles_of_every_version_and_installed_packages() {
    let tree = Tree::new();
    tree.write("/srv/web/package-lock.json", PACKAGE_LOCK_V3);
    tree.write("/srv/legacy/package-lock.json", PACKAGE_LOCK_V1);
    tree.write(
        "/srv/v2/package-lock.json",
        r#"{"name":"v2","lockfileVersion":2,"packages":{"":{"name":"v2"},"node_modules/ms":{"version":"2.1.3","license":"MIT"}},"dependencies":{"ms":{"version":"2.1.3"},"only-in-v1-tree":{"version":"9.9.9"}}}"#,
    );
    tree.write(
        "/srv/web/node_modules/express/package.json",
        r#"{"name":"express","description":"Fast, unopinionated, minimalist web framework","version":"4.18.2","author":"TJ Holowaychuk <tj@vision-media.ca>","license":"MIT","repository":"expressjs/express"}"#,
    );
    tree.write(
        "/srv/web/node_modules/@babel/core/package.json",
        r#"{"name":"@babel/core","version":"7.23.7","license":"MIT"}"#,
    );
    tree.write(
        "/usr/lib/node_modules/npm/node_modules/old/package.json",
        r#"{"name":"old","version":"0.0.1","licenses":[{"type":"MIT","url":"http://x"},{"type":"Apache-2.0"}]}"#,
    );
    // Not an installed package: the project's own manifest.
    tree.write(
        "/srv/web/package.json",
        r#"{"name":"web","version":"1.0.0"}"#,
    );

    let report = scan(&tree);
    let purls: BTreeSet<&str> = report.packages.iter().map(|p| p.purl.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "pkg:npm/%40babel/core@7.23.7",
        "pkg:npm/express@4.18.2",
        "pkg:npm/debug@2.6.9",
        "pkg:npm/shared@0.1.0",
        "pkg:npm/accepts@1.3.8",
        "pkg:npm/mime-types@2.1.35",
        "pkg:npm/lodash@4.17.21",
        "pkg:npm/ms@2.1.3",
        "pkg:npm/old@0.0.1",
    ]
    .into();
    assert_eq!(purls, expected);
    let express = find(&report, PackageKind::Npm, "express");
    assert_eq!(
        express.locations,
        [
            "/srv/web/node_modules/express/package.json",
            "/srv/web/package-lock.json"
        ],
        "one package, found twice"
    );
    assert_eq!(express.license.as_deref(), Some("MIT"));
    assert_eq!(
        find(&report, PackageKind::Npm, "old").license.as_deref(),
        Some("MIT OR Apache-2.0")
    );
    validate_spdx(&spdx_json(&report));
}

#[test]
fn cargo_lock_lists_every_crate_of_this_workspace() {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let tree = Tree::new();
    tree.write("/usr/src/img/Cargo.lock", &lock);
    tree.write(
        "/app/Cargo.lock",
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n[[package]]\nname = \"hello\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n]\n\n[[package]]\nname = \"itoa\"\nversion = \"1.0.11\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"49f1f14873335454500d59611f1cf4a4b0f786f9ac11f4312a78e4cf2566695b\"\n",
    );
    let report = scan(&tree);
    let in_lock: BTreeSet<String> = lock
        .split("[[package]]")
        .skip(1)
        .map(|block| {
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                    .unwrap()
                    .trim_end_matches('"')
                    .to_string()
            };
            format!("pkg:cargo/{}@{}", field("name"), field("version"))
        })
        .collect();
    let found: BTreeSet<String> = report
        .packages
        .iter()
        .filter(|p| p.locations.contains(&"/usr/src/img/Cargo.lock".to_string()))
        .map(|p| p.purl.clone())
        .collect();
    assert!(in_lock.len() > 100);
    assert_eq!(found, in_lock);
    assert!(found.contains("pkg:cargo/img-attest@0.1.0"));
    let hello = find(&report, PackageKind::Cargo, "hello");
    assert_eq!(hello.purl, "pkg:cargo/hello@0.1.0");
    validate_spdx(&spdx_json(&report));
}

#[test]
fn symlinks_never_lead_out_of_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let leak = |name: &str| {
        format!("Package: {name}\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n")
    };
    std::fs::write(outside.path().join("status"), leak("leaked-absolute")).unwrap();
    std::fs::write(outside.path().join("installed"), "P:leaked-apk\nV:1\n").unwrap();
    std::fs::create_dir_all(outside.path().join("evil.dist-info")).unwrap();
    std::fs::write(
        outside.path().join("evil.dist-info/METADATA"),
        "Name: leaked-python\nVersion: 1\n",
    )
    .unwrap();
    std::fs::create_dir_all(outside.path().join("node_modules/leaked")).unwrap();
    std::fs::write(
        outside.path().join("node_modules/leaked/package.json"),
        r#"{"name":"leaked-npm","version":"1.0.0"}"#,
    )
    .unwrap();

    let tree = Tree::new();
    // Absolute: inside the root it names /<outside path>, which the root does not have.
    tree.symlink("/var/lib/dpkg/status", outside.path().join("status"));
    // Relative, climbing far above the root: `..` stops at the root.
    let climb = format!(
        "../../../../../../../../..{}/installed",
        outside.path().display()
    );
    tree.symlink("/lib/apk/db/installed", &climb);
    // Directories that are symlinks are not walked.
    tree.symlink(
        "/usr/lib/python3/dist-packages/evil.dist-info",
        outside.path().join("evil.dist-info"),
    );
    tree.symlink("/app/node_modules", outside.path().join("node_modules"));
    // The host's own files by absolute link: resolved inside the (empty) root.
    tree.symlink("/usr/lib/os-release", "/etc/passwd");
    tree.symlink("/var/lib/dpkg/status.d/passwd", "/etc/passwd");
    tree.symlink("/srv/Cargo.lock", "../../../../../../etc/passwd");
    // Loops end with an error, not a hang.
    tree.symlink("/etc/os-release", "/etc/os-release.d/link");
    tree.symlink("/etc/os-release.d/link", "/etc/os-release");
    // Symlinked files are not cataloged by the walk.
    tree.symlink("/opt/a/Cargo.lock", "/opt/b/Cargo.lock");
    tree.symlink("/opt/b/Cargo.lock", "/opt/a/Cargo.lock");

    let report = scan(&tree);
    assert!(report.packages.is_empty(), "{:#?}", report.packages);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.path == "/etc/os-release" && w.reason.contains("symbolic links")),
        "{:?}",
        report.warnings
    );
    let report_text = format!("{report:?}");
    assert!(!report_text.contains("leaked") && !report_text.contains("root:x:0:0"));
}

#[test]
fn absolute_symlinks_inside_the_root_resolve_as_in_a_container() {
    let tree = Tree::new();
    tree.write("/usr/lib/os-release", DEBIAN_OS_RELEASE);
    tree.symlink("/etc/os-release", "../usr/lib/os-release");
    tree.write(
        "/srv/dpkg-status",
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n",
    );
    tree.symlink("/var/lib/dpkg/status", "/srv/dpkg-status");
    let report = scan(&tree);
    assert_eq!(report.packages.len(), 1);
    assert_eq!(
        report.packages[0].purl,
        "pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64&distro=debian-12"
    );
}

#[test]
fn fifos_and_huge_files_are_skipped_with_warnings() {
    let tree = Tree::new();
    std::fs::create_dir_all(tree.host("/lib/apk/db")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tree.host("/lib/apk/db/installed"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    // 100 MiB, sparse: over the default 64 MiB bound.
    std::fs::create_dir_all(tree.host("/var/lib/dpkg")).unwrap();
    let huge = std::fs::File::create(tree.host("/var/lib/dpkg/status")).unwrap();
    huge.set_len(100 << 20).unwrap();
    tree.write(
        "/app/Cargo.lock",
        "version = 3\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n",
    );

    let report = scan(&tree);
    assert_eq!(report.packages.len(), 1, "the Cargo.lock is still read");
    let reasons: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    assert!(
        reasons
            .iter()
            .any(|w| w.starts_with("/lib/apk/db/installed: ") && w.contains("not a regular file")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|w| w.starts_with("/var/lib/dpkg/status: ") && w.contains("over the limit")),
        "{reasons:?}"
    );

    let small = ScanLimits {
        max_file_size: 16,
        ..ScanLimits::default()
    };
    let report = scan_rootfs(tree.root(), small).unwrap();
    assert!(report.packages.is_empty());
    assert!(report.warnings.iter().any(|w| w.path == "/app/Cargo.lock"));
}

#[test]
fn walk_bounds_stop_wide_and_deep_trees() {
    let tree = Tree::new();
    for i in 0..40 {
        tree.write(&format!("/wide/f{i:02}"), "x");
    }
    let mut deep = String::new();
    for _ in 0..10 {
        deep.push_str("/d");
    }
    tree.write(&format!("{deep}/Cargo.lock"), "version = 3\n");
    let limits = ScanLimits {
        max_depth: 5,
        ..ScanLimits::default()
    };
    let report = scan_rootfs(tree.root(), limits).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.reason.contains("too deep")),
        "{:?}",
        report.warnings
    );
    let limits = ScanLimits {
        max_entries: 10,
        ..ScanLimits::default()
    };
    let report = scan_rootfs(tree.root(), limits).unwrap();
    assert!(report
        .warnings
        .iter()
        .any(|w| w.reason.contains("scan stopped after 10 entries")));
}

/// xorshift: reproducible bytes that look like nothing.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn binary_garbage_in_every_database_gives_warnings_not_panics() {
    let tree = Tree::new();
    let files = [
        "/etc/os-release",
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/status.d/x",
        "/lib/apk/db/installed",
        "/usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
        "/usr/lib/python3/dist-packages/y.egg-info",
        "/app/package-lock.json",
        "/app/node_modules/z/package.json",
        "/app/Cargo.lock",
    ];
    for (i, path) in files.iter().enumerate() {
        tree.write(path, garbage(i as u64 + 7, 64 << 10));
    }
    // Well-formed but wrong-shaped documents.
    tree.write("/b/package-lock.json", "[1,2,3]");
    tree.write(
        "/c/package-lock.json",
        r#"{"packages":{"node_modules/x":{"version":7}},"lockfileVersion":3}"#,
    );
    tree.write("/d/Cargo.lock", "[[package]]\nname = 5\n");
    tree.write("/var/lib/dpkg/status.d/empty", "");

    let report = scan(&tree);
    assert!(report.packages.is_empty(), "{:#?}", report.packages);
    for path in [
        "/app/package-lock.json",
        "/app/Cargo.lock",
        "/b/package-lock.json",
        "/d/Cargo.lock",
    ] {
        assert!(
            report.warnings.iter().any(|w| w.path == path),
            "no warning for {path}: {:?}",
            report.warnings
        );
    }
    validate_spdx(&spdx_json(&report));
}

#[test]
fn two_scans_of_one_tree_give_identical_bytes() {
    let tree = Tree::new();
    tree.write("/etc/os-release", DEBIAN_OS_RELEASE);
    tree.write("/lib/apk/db/installed", APK_INSTALLED);
    tree.write("/srv/web/package-lock.json", PACKAGE_LOCK_V3);
    tree.write("/srv/legacy/package-lock.json", PACKAGE_LOCK_V1);
    tree.write(
        "/usr/lib/python3/dist-packages/six-1.16.0.egg-info",
        "Name: six\nVersion: 1.16.0\nLicense: MIT\n",
    );
    let options = SpdxOptions::new(
        "app",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let first = serde_json::to_vec(&scan(&tree).to_spdx(&options)).unwrap();
    let second = serde_json::to_vec(&scan(&tree).to_spdx(&options)).unwrap();
    assert_eq!(first, second);

    // The statement BuildKit stores: the SPDX document as the predicate.
    let document = scan(&tree).to_spdx(&options);
    let subject = Subject::for_image(
        &[],
        &Platform::new("linux", "amd64"),
        &Digest::of(b"manifest"),
    );
    let statement: serde_json::Value =
        serde_json::from_slice(&sbom_statement(&document, subject).to_json()).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v0.1");
    assert_eq!(statement["predicateType"], "https://spdx.dev/Document");
    assert_eq!(statement["subject"][0]["name"], "_");
    validate_spdx(&statement["predicate"]);
}
