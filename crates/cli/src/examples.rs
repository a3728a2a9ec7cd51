//! The examples that end each command's `--help`, as `podman build --help` ends with some.
//!
//! Each command's examples are data here, rendered into its `after_help` by [`help`]; the man
//! pages read them back with [`examples_of`] and give them an EXAMPLES section. A test checks
//! that every example parses with today's flags, so an example cannot outlive a renamed flag.

/// One example: what it does, and the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    /// What the command does, in a line.
    pub what: &'static str,
    /// The command line as typed at a shell prompt.
    pub command: &'static str,
}

const fn ex(what: &'static str, command: &'static str) -> Example {
    Example { what, command }
}

/// The heading that starts the examples in `--help`.
const HEADING: &str = "Examples:";

/// The text clap prints after a command's help: the heading, then each example as a comment
/// line and the command, separated by blank lines.
pub fn help(examples: &[Example]) -> String {
    let mut text = String::from(HEADING);
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("\n  # {}\n  {}", example.what, example.command));
    }
    text
}

/// The examples of a command, read back from its `after_help` (none when it has no such
/// section, as clap's own `help` command).
pub fn examples_of(command: &clap::Command) -> Vec<(String, String)> {
    let Some(text) = command.get_after_help().map(|t| t.to_string()) else {
        return Vec::new();
    };
    let Some(body) = text.strip_prefix(HEADING) else {
        return Vec::new();
    };
    let mut examples = Vec::new();
    let mut what = String::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("# ") {
            Some(comment) => what = comment.to_owned(),
            None => examples.push((std::mem::take(&mut what), line.to_owned())),
        }
    }
    examples
}

/// `img` itself.
pub const IMG: &[Example] = &[
    ex(
        "Build the Dockerfile in the current directory and name the image app:latest",
        "img build -t app .",
    ),
    ex(
        "Check what this host lets a rootless build do",
        "img doctor",
    ),
    ex(
        "Log in, then push the image under a registry's name",
        "img login registry.example.com && img tag app registry.example.com/team/app:1.0 && img push registry.example.com/team/app:1.0",
    ),
];

/// `img version`.
pub const VERSION: &[Example] = &[
    ex(
        "Show img's version, commit, compiler and platform",
        "img version",
    ),
    ex("Print only the version line", "img --version"),
];

/// `img pull`.
pub const PULL: &[Example] = &[
    ex("Pull an image from Docker Hub", "img pull alpine:3.20"),
    ex(
        "Pull the arm64 image of a multi-platform image",
        "img pull --platform linux/arm64 debian:bookworm",
    ),
    ex(
        "Pull from a registry served over plain HTTP",
        "img --insecure-registry registry.lan:5000 pull registry.lan:5000/team/base:1",
    ),
];

/// `img push`.
pub const PUSH: &[Example] = &[
    ex(
        "Push a stored image to the registry its name points at",
        "img push registry.example.com/team/app:1.0",
    ),
    ex(
        "Give a local image a registry name, then push it",
        "img tag app registry.example.com/team/app:1.0 && img push registry.example.com/team/app:1.0",
    ),
    ex(
        "Push to a registry served over plain HTTP",
        "img --insecure-registry registry.lan:5000 push registry.lan:5000/team/app:1.0",
    ),
];

/// `img login`.
pub const LOGIN: &[Example] = &[
    ex(
        "Log in to a registry; img asks for the password",
        "img login -u alice registry.example.com",
    ),
    ex(
        "Log in from a script, the password or token on standard input",
        "printenv REGISTRY_TOKEN | img login -u alice --password-stdin registry.example.com",
    ),
    ex("Log in to Docker Hub", "img login -u alice"),
];

/// `img logout`.
pub const LOGOUT: &[Example] = &[
    ex(
        "Forget the credentials stored for a registry",
        "img logout registry.example.com",
    ),
    ex("Forget the credentials for Docker Hub", "img logout"),
];

/// `img ls`.
pub const LS: &[Example] = &[
    ex("List every stored image", "img ls"),
    ex(
        "List the images named after one registry",
        "img ls --filter 'reference=registry.example.com/*'",
    ),
    ex(
        "Print names and digests only",
        "img ls --format '{{.Name}} {{.Digest}}'",
    ),
];

/// `img rm`.
pub const RM: &[Example] = &[
    ex("Remove a name", "img rm app:1.0"),
    ex(
        "Remove two names and free the space nothing else uses",
        "img rm app:1.0 app:1.1 && img prune",
    ),
];

/// `img tag`.
pub const TAG: &[Example] = &[
    ex(
        "Name a local image for a registry",
        "img tag app registry.example.com/team/app:1.0",
    ),
    ex(
        "Add a version tag beside latest",
        "img tag app:latest app:1.0",
    ),
];

/// `img inspect`.
pub const INSPECT: &[Example] = &[
    ex("Print an image's manifest and config", "img inspect app"),
    ex(
        "Show the environment the image's processes start with",
        "img inspect app | jq .config.config.Env",
    ),
];

/// `img save`.
pub const SAVE: &[Example] = &[
    ex(
        "Write an archive `docker load` and `podman load` read",
        "img save -o app.tar app",
    ),
    ex(
        "Write an OCI image layout archive, compressed",
        "img save --format oci app | gzip > app-oci.tar.gz",
    ),
    ex(
        "Hand an image to Docker without a registry",
        "img save app | docker load",
    ),
];

/// `img load`.
pub const LOAD: &[Example] = &[
    ex("Read images from an archive", "img load -i app.tar"),
    ex(
        "Take an image over from Docker",
        "docker save alpine:3.20 | img load",
    ),
];

/// `img unpack`.
pub const UNPACK: &[Example] = &[
    ex(
        "Extract an image's root filesystem into ./rootfs",
        "img unpack app",
    ),
    ex(
        "Extract into another directory",
        "img unpack -o /tmp/app-root app",
    ),
];

/// `img du`.
pub const DU: &[Example] = &[
    ex(
        "Show what the state directory holds and what prune could reclaim",
        "img du",
    ),
    ex("Show full ids", "img --debug du"),
];

/// `img doctor`.
pub const DOCTOR: &[Example] = &[
    ex(
        "Check this host, with the fix for each problem",
        "img doctor",
    ),
    ex(
        "The report as JSON, for scripts",
        "img doctor --format json",
    ),
    ex(
        "Check for the state directory a build will use",
        "img --state /var/tmp/img doctor",
    ),
];

/// `img prune`.
pub const PRUNE: &[Example] = &[
    ex(
        "Delete what nothing refers to (the build cache stays)",
        "img prune",
    ),
    ex(
        "Also drop cache records unused for a day",
        "img prune --keep-duration 24h",
    ),
    ex(
        "Drop the whole build cache and the cache mounts",
        "img prune --all",
    ),
];

/// `img build`.
pub const BUILD: &[Example] = &[
    ex(
        "Build ./Dockerfile with the current directory as context, name it app:latest",
        "img build -t app .",
    ),
    ex(
        "Another Dockerfile, a build argument and a stage of it",
        "img build -f docker/Dockerfile --build-arg VERSION=1.2 --target runtime -t app:1.2 .",
    ),
    ex(
        "Copy a stage's files out instead of making an image",
        "img build --target artifacts -o type=local,dest=out .",
    ),
    ex(
        "Build and push from a fresh CI pod, with the cache (and cache mounts) kept in the registry",
        "img build -t registry.example.com/team/app:1.0 --push --cache-from registry.example.com/team/app:cache --cache-to type=registry,ref=registry.example.com/team/app:cache,mode=max,cache-mounts=true .",
    ),
];

/// `img debug`.
pub const DEBUG: &[Example] = &[
    ex(
        "Show a Dockerfile's syntax tree",
        "img debug parse Dockerfile",
    ),
    ex(
        "Draw the build graph",
        "img debug llb --format dot . | dot -Tsvg > graph.svg",
    ),
];

/// `img debug parse`.
pub const DEBUG_PARSE: &[Example] = &[
    ex("The syntax tree of ./Dockerfile", "img debug parse"),
    ex(
        "Of a Dockerfile on standard input",
        "img debug parse - < build/Dockerfile",
    ),
];

/// `img debug backend`.
pub const DEBUG_BACKEND: &[Example] = &[
    ex(
        "Which snapshot backend a build here gets, and why",
        "img debug backend",
    ),
    ex(
        "Whether overlayfs would work if asked for",
        "img --backend overlayfs debug backend",
    ),
];

/// `img debug llb`.
pub const DEBUG_LLB: &[Example] = &[
    ex("The build graph of ./Dockerfile as JSON", "img debug llb ."),
    ex(
        "One stage's graph as an SVG picture",
        "img debug llb --format dot --target test . | dot -Tsvg > graph.svg",
    ),
];

/// `img completion`.
pub const COMPLETION: &[Example] = &[
    ex(
        "bash: completions for every new shell",
        "img completion bash > ~/.local/share/bash-completion/completions/img",
    ),
    ex(
        "zsh: a directory of your $fpath (add `fpath+=(~/.zfunc)` before compinit in ~/.zshrc)",
        "img completion zsh > ~/.zfunc/_img",
    ),
    ex(
        "fish",
        "img completion fish > ~/.config/fish/completions/img.fish",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command below `command`, with its path (`img debug llb`), less clap's `help`.
    fn walk(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_path = format!("{path} {}", sub.get_name());
            walk(sub, sub_path.clone(), out);
            out.push((sub_path, sub.clone()));
        }
    }

    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut command = crate::command();
        command.build();
        let mut out = vec![("img".to_owned(), command.clone())];
        walk(&command, "img".to_owned(), &mut out);
        out
    }

    /// The `img ...` commands of a shell line: split as the shell splits words, cut at the
    /// pipes, redirections and `&&`.
    fn img_invocations(line: &str) -> Vec<Vec<String>> {
        let words = shlex::split(line).unwrap_or_else(|| panic!("unbalanced quotes: {line}"));
        let mut commands = vec![Vec::new()];
        let mut redirect = false;
        for word in words {
            match word.as_str() {
                "|" | "&&" | ";" => commands.push(Vec::new()),
                ">" | "<" => redirect = true,
                _ if redirect => redirect = false,
                _ => commands.last_mut().expect("one").push(word),
            }
        }
        commands
            .into_iter()
            .filter(|c| c.first().is_some_and(|w| w == "img"))
            .collect()
    }

    #[test]
    fn every_command_but_help_ends_its_help_with_two_to_four_examples() {
        for (path, command) in all_commands() {
            let examples = examples_of(&command);
            assert!(
                (2..=4).contains(&examples.len()),
                "{path} has {} examples",
                examples.len()
            );
            for (what, line) in &examples {
                assert!(!what.is_empty(), "{path}: {line} says not what it does");
            }
        }
    }

    #[test]
    fn every_example_parses_with_todays_flags_and_runs_its_own_command() {
        for (path, command) in all_commands() {
            for (_, line) in examples_of(&command) {
                let invocations = img_invocations(&line);
                assert!(!invocations.is_empty(), "{path}: {line} runs no img");
                for argv in &invocations {
                    if let Err(err) = crate::command().try_get_matches_from(argv) {
                        panic!("{path}: {line}: {err}");
                    }
                }
                // The example of a subcommand uses that subcommand.
                let words: Vec<&str> = path.split(' ').skip(1).collect();
                if !words.is_empty() {
                    let uses_it = invocations
                        .iter()
                        .any(|argv| argv.windows(words.len()).any(|w| w.iter().eq(words.iter())));
                    let top_flag = path == "img version" && line == "img --version";
                    assert!(uses_it || top_flag, "{path}: {line}");
                }
            }
        }
    }

    #[test]
    fn help_text_reads_back_as_the_examples() {
        let text = help(BUILD);
        assert!(
            text.starts_with("Examples:\n  # Build ./Dockerfile"),
            "{text}"
        );
        let command = clap::Command::new("x").after_help(text);
        let read: Vec<(String, String)> = examples_of(&command);
        let want: Vec<(String, String)> = BUILD
            .iter()
            .map(|e| (e.what.to_owned(), e.command.to_owned()))
            .collect();
        assert_eq!(read, want);
    }
}
