//! Resolution of `USER` against the image's /etc/passwd and /etc/group, as Docker does
//! (runc's `GetExecUser`): names or numbers, a numeric user without a passwd entry runs with
//! gid 0 and home `/`, and the supplementary groups are the groups listing the user by name.

use serde::{Deserialize, Serialize};

/// Errors of resolving `USER`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UserError {
    /// A user name not in the image's /etc/passwd.
    #[error("unable to find user {name}: no matching entries in the image's /etc/passwd")]
    UnknownUser {
        /// The name.
        name: String,
    },
    /// A group name not in the image's /etc/group.
    #[error("unable to find group {name}: no matching entries in the image's /etc/group")]
    UnknownGroup {
        /// The name.
        name: String,
    },
}

/// The identity a step's process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members,
        })
    })
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`; empty is root) given the contents of
/// the image's /etc/passwd and /etc/group (empty text when a file is missing).
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let found =
        passwd_entries(passwd).find(|e| e.name == user_part || e.uid.to_string() == user_part);
    let (uid, mut gid, name, home) = match (found, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_string()),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(UserError::UnknownUser {
                name: user_part.to_string(),
            })
        }
    };
    let mut groups = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match group_entries(group).find(|e| e.name == g || e.gid.to_string() == g) {
                Some(e) => e.gid,
                None => g.parse().map_err(|_| UserError::UnknownGroup {
                    name: g.to_string(),
                })?,
            };
        }
        // Only a user without an explicit group gets the groups /etc/group gives it.
        _ => {
            if let Some(name) = name {
                groups.extend(
                    group_entries(group)
                        .filter(|e| e.members.contains(&name))
                        .map(|e| e.gid),
                );
            }
        }
    }
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\naudio:x:29:app,web\nvideo:x:44:app\nstaff:x:50:\n";

    #[test]
    fn resolves_user_specs_like_docker() {
        type Want = Result<(u32, u32, &'static [u32], &'static str), UserError>;
        let cases: &[(&str, Want)] = &[
            ("", Ok((0, 0, &[0], "/root"))),
            ("root", Ok((0, 0, &[0], "/root"))),
            ("app", Ok((1000, 1000, &[1000, 29, 44], "/home/app"))),
            ("1000", Ok((1000, 1000, &[1000, 29, 44], "/home/app"))),
            ("app:staff", Ok((1000, 50, &[50], "/home/app"))),
            ("app:77", Ok((1000, 77, &[77], "/home/app"))),
            ("4242", Ok((4242, 0, &[0], "/"))),
            ("4242:4243", Ok((4242, 4243, &[4243], "/"))),
            (
                "nobody",
                Err(UserError::UnknownUser {
                    name: "nobody".into(),
                }),
            ),
            (
                "app:nogroup",
                Err(UserError::UnknownGroup {
                    name: "nogroup".into(),
                }),
            ),
        ];
        for (spec, want) in cases {
            let got = resolve(spec, PASSWD, GROUP)
                .map(|u| (u.uid, u.gid, u.groups.clone(), u.home.clone()));
            let want = want
                .clone()
                .map(|(u, g, gs, h)| (u, g, gs.to_vec(), h.to_string()));
            assert_eq!(got, want, "USER {spec:?}");
        }
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        assert_eq!(
            resolve("12:34", "", "").map(|u| (u.uid, u.gid)),
            Ok((12, 34))
        );
        assert!(resolve("app", "", "").is_err());
    }
}
