//! The build checks: BuildKit's Dockerfile linter rules, by name, with what each one is about.
//! The messages of the findings are worded where each check runs.

/// One build check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The name used in `# check=skip=…` and in findings.
    pub(crate) name: &'static str,
    /// What the rule asks for, in BuildKit's words.
    pub(crate) description: &'static str,
    /// Only run when `# check=experimental=<name|all>` asks for it.
    pub(crate) experimental: bool,
}

const fn rule(name: &'static str, description: &'static str) -> Rule {
    Rule {
        name,
        description,
        experimental: false,
    }
}

/// Every rule, in BuildKit's order.
pub(crate) const RULES: &[Rule] = &[
    rule("StageNameCasing", "Stage names should be lowercase"),
    rule(
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
    ),
    rule(
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
    ),
    rule(
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
    ),
    rule("DuplicateStageName", "Stage names should be unique"),
    rule(
        "ReservedStageName",
        "Reserved words should not be used as stage names",
    ),
    rule(
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    ),
    rule(
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    ),
    rule("UndefinedArgInFrom", "FROM command must use declared ARGs"),
    rule(
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    ),
    rule("UndefinedVar", "Variables should be defined before their use"),
    rule(
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
    ),
    rule(
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
    ),
    rule(
        "InvalidBaseImagePlatform",
        "Base image platform does not match expected target platform",
    ),
    rule(
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    ),
    rule(
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
    ),
    rule(
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
    ),
    rule(
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
    ),
    rule(
        "CopyIgnoredFile",
        "Attempting to Copy file that is excluded by .dockerignore",
    ),
    Rule {
        name: "InvalidDefinitionDescription",
        description: "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        experimental: true,
    },
    rule(
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
    ),
    rule(
        "ExposeInvalidFormat",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    ),
];

/// The rule of that name.
pub(crate) fn find(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

/// Keys that look like they hold a secret, as BuildKit decides: an `_`-separated part of the
/// name (any case) is a secret word, and none is `public`.
pub(crate) fn looks_secret(key: &str) -> bool {
    const SECRET_WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let parts = || key.split('_').map(str::to_ascii_lowercase);
    parts().any(|p| SECRET_WORDS.contains(&p.as_str())) && !parts().any(|p| p == "public")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_one_rule_is_experimental() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(!RULES[..i].iter().any(|o| o.name == r.name), "{}", r.name);
        }
        let experimental: Vec<&str> = RULES
            .iter()
            .filter(|r| r.experimental)
            .map(|r| r.name)
            .collect();
        assert_eq!(experimental, ["InvalidDefinitionDescription"]);
        assert_eq!(RULES.len(), 22);
    }

    #[test]
    fn secret_looking_keys() {
        for key in [
            "API_KEY",
            "password",
            "GITHUB_TOKEN",
            "secret_MESSAGE",
            "AUTH",
            "a__key",
        ] {
            assert!(looks_secret(key), "{key}");
        }
        for key in ["KEYBOARD", "PUBLIC_KEY", "monkey", "TOKENS", "passwords_x"] {
            assert!(!looks_secret(key), "{key}");
        }
    }
}
