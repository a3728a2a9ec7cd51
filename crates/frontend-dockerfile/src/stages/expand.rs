//! Variable expansion of typed instructions: Docker expands the words of ADD, COPY, ENV, EXPOSE,
//! LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR, the `--chown`, `--chmod` and `--checksum` flags,
//! and `RUN --mount` values, but never the command of RUN, CMD or ENTRYPOINT (the shell does that
//! at run time), nor SHELL, HEALTHCHECK, ONBUILD, `--exclude`, `--network` or `--security`.

use crate::instructions::{
    Instruction, InstructionErrorKind, KeyValue, Mount, MountError, MountType, MountValues,
};
use crate::stages::error::FrontendError;

/// Expands words with the environment and location the caller binds.
pub(crate) trait WordExpander {
    /// Expands one word: quotes removed, escapes processed.
    fn word(&mut self, word: &str) -> Result<String, FrontendError>;
    /// Expands and splits into words (EXPOSE: `EXPOSE $PORTS` may give several ports).
    fn words(&mut self, word: &str) -> Result<Vec<String>, FrontendError>;
    /// Expands a heredoc body: quotes and escapes kept, as BuildKit does for `COPY <<EOF`.
    fn heredoc(&mut self, body: &str) -> Result<String, FrontendError>;
}

type Expand<'a> = dyn WordExpander + 'a;

/// The instruction with its words expanded, or an error about the expanded form.
pub(crate) fn expand_instruction(
    instruction: &Instruction,
    expand: &mut Expand<'_>,
) -> Result<Instruction, Expanded> {
    let mut out = instruction.clone();
    match &mut out {
        Instruction::Env(kv) | Instruction::Label(kv) => {
            for KeyValue { key, value } in &mut kv.pairs {
                *key = expand.word(key)?;
                *value = expand.word(value)?;
            }
        }
        Instruction::Expose(e) => {
            let mut ports = Vec::new();
            for port in &e.ports {
                ports.extend(expand.words(port)?);
            }
            e.ports = ports;
        }
        Instruction::Workdir(w) => w.path = expand.word(&w.path)?,
        Instruction::User(u) => u.user = expand.word(&u.user)?,
        Instruction::StopSignal(s) => s.signal = expand.word(&s.signal)?,
        Instruction::Volume(v) => {
            for path in &mut v.paths {
                *path = expand.word(path)?;
                if path.trim().is_empty() {
                    return Err(Expanded::Invalid(InstructionErrorKind::EmptyVolume));
                }
            }
        }
        Instruction::Run(run) => {
            let mut ssh_count = 0;
            let mut mounts = Vec::with_capacity(run.mounts.len());
            for mount in &run.mounts {
                let mut failure = None;
                let mut expand_value = |v: &str| {
                    expand.word(v).map_err(|e| {
                        let message = e.to_string();
                        failure = Some(e);
                        message
                    })
                };
                let parsed = Mount::parse(
                    &mount.spec,
                    ssh_count,
                    MountValues::Expand(&mut expand_value),
                );
                let parsed = match (parsed, failure) {
                    (_, Some(e)) => return Err(Expanded::Failed(e)),
                    (Ok(m), None) => m,
                    (Err(e), None) => {
                        return Err(Expanded::Invalid(InstructionErrorKind::Mount(e)))
                    }
                };
                if parsed.kind == MountType::Ssh {
                    ssh_count += 1;
                }
                mounts.push(parsed);
            }
            run.mounts = mounts;
        }
        Instruction::Copy(copy) => {
            expand_files(&mut copy.files, expand)?;
            expand_opt(&mut copy.chown, expand)?;
            expand_chmod(&mut copy.chmod, expand)?;
            check_destination(&copy.files, "COPY")?;
            if let Some(url) = copy.files.sources.iter().find(|s| is_http_source(s)) {
                return Err(Expanded::Invalid(InstructionErrorKind::UrlSourceInCopy {
                    source_url: url.clone(),
                }));
            }
        }
        Instruction::Add(add) => {
            expand_files(&mut add.files, expand)?;
            expand_opt(&mut add.chown, expand)?;
            expand_chmod(&mut add.chmod, expand)?;
            expand_opt(&mut add.checksum, expand)?;
            check_destination(&add.files, "ADD")?;
            if add.checksum.is_some() && add.files.sources.len() + add.files.inline.len() > 1 {
                return Err(Expanded::Invalid(
                    InstructionErrorKind::ChecksumWithSeveralSources,
                ));
            }
        }
        // ARG defaults are expanded when declared (only without a build arg), and COPY --from
        // against the global ARGs only: see the stage walk.
        Instruction::From(_)
        | Instruction::Arg(_)
        | Instruction::Cmd(_)
        | Instruction::Entrypoint(_)
        | Instruction::Shell(_)
        | Instruction::Healthcheck(_)
        | Instruction::OnBuild(_)
        | Instruction::Maintainer(_) => {}
        // A variant added later is passed through unexpanded until it is handled here.
        #[allow(unreachable_patterns)]
        _ => {}
    }
    Ok(out)
}

/// Why expansion stopped: the expansion itself failed, or the expanded instruction is invalid.
pub(crate) enum Expanded {
    /// The shell-word expansion failed.
    Failed(FrontendError),
    /// The expanded instruction is invalid.
    Invalid(InstructionErrorKind),
}

impl From<FrontendError> for Expanded {
    fn from(e: FrontendError) -> Self {
        Expanded::Failed(e)
    }
}

impl From<MountError> for Expanded {
    fn from(e: MountError) -> Self {
        Expanded::Invalid(InstructionErrorKind::Mount(e))
    }
}

fn expand_opt(value: &mut Option<String>, expand: &mut Expand<'_>) -> Result<(), Expanded> {
    if let Some(v) = value {
        *v = expand.word(v)?;
    }
    Ok(())
}

fn expand_chmod(
    chmod: &mut Option<crate::instructions::ChmodFlag>,
    expand: &mut Expand<'_>,
) -> Result<(), Expanded> {
    if let Some(flag) = chmod {
        let raw = expand.word(&flag.raw)?;
        *flag = crate::instructions::parse_chmod_flag(raw).map_err(Expanded::Invalid)?;
    }
    Ok(())
}

fn expand_files(
    files: &mut crate::instructions::FileSources,
    expand: &mut Expand<'_>,
) -> Result<(), Expanded> {
    // The JSON form is expanded too: Docker processes COPY/ADD words in both forms.
    for src in &mut files.sources {
        *src = expand.word(src)?;
    }
    files.dest = expand.word(&files.dest)?;
    for inline in &mut files.inline {
        if inline.expand {
            inline.data = expand.heredoc(&inline.data)?;
        }
    }
    Ok(())
}

/// Several sources need a directory destination (`/` at the end), as Docker requires. A
/// wildcard that matches several files is checked when the sources are read.
fn check_destination(
    files: &crate::instructions::FileSources,
    instruction: &'static str,
) -> Result<(), Expanded> {
    if files.sources.len() + files.inline.len() > 1 && !files.dest.ends_with('/') {
        return Err(Expanded::Invalid(
            InstructionErrorKind::DestinationNotDirectory { instruction },
        ));
    }
    Ok(())
}

fn is_http_source(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}
