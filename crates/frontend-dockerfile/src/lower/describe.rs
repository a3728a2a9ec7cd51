//! Progress names and source locations of ops, worded as BuildKit's `prefixCommand` words them:
//! `[build 2/4] RUN make`, with the step count padded to the width of the total.

use img_llb::{OpMetadata, SourceLocation};

use crate::instructions::{CommandLine, FileSources, Instruction, Location, RunScript};
use crate::stages::{BuildPlan, Stage, StageBase};

/// Numbers the steps of one stage for progress names.
pub(crate) struct StepCounter {
    label: Option<String>,
    stage_key: String,
    index: usize,
    total: usize,
}

impl StepCounter {
    /// The counter for `stage`. BuildKit counts FROM of an image and every RUN, COPY, ADD and
    /// WORKDIR (ONBUILD triggers included), and leaves the stage name out when the Dockerfile
    /// has a single stage. The plan only holds the stages the target needs, so "single stage" is
    /// recognised as an unnamed stage 0 alone in the plan (a named one keeps its name).
    pub(crate) fn new(plan: &BuildPlan, stage: &Stage) -> StepCounter {
        let from_image = matches!(stage.base, StageBase::Image { .. });
        let steps = stage
            .instructions
            .iter()
            .filter(|p| {
                matches!(
                    p.instruction,
                    Instruction::Run(_)
                        | Instruction::Copy(_)
                        | Instruction::Add(_)
                        | Instruction::Workdir(_)
                )
            })
            .count();
        let single = plan.stages.len() == 1 && stage.index == 0 && stage.name.is_none();
        let label = match &stage.name {
            Some(name) => Some(name.clone()),
            None if single => None,
            None => Some(format!("stage-{}", stage.index)),
        };
        StepCounter {
            label,
            stage_key: stage
                .name
                .clone()
                .unwrap_or_else(|| stage.index.to_string()),
            index: 0,
            total: usize::from(from_image) + steps,
        }
    }

    /// The name of the next step: `[label i/N] text`.
    pub(crate) fn next(&mut self, text: &str, from_trigger: bool) -> String {
        self.index += 1;
        self.name_at(self.index, text, from_trigger)
    }

    /// The name of the current step again (COPY --link names its copy and its merge alike).
    pub(crate) fn again(&self, text: &str, from_trigger: bool) -> String {
        self.name_at(self.index, text, from_trigger)
    }

    fn name_at(&self, index: usize, text: &str, from_trigger: bool) -> String {
        let width = self.total.max(1).to_string().len();
        let mut out = String::from("[");
        if let Some(label) = &self.label {
            out.push_str(label);
            out.push(' ');
        }
        out.push_str(&format!("{index:>width$}/{}] ", self.total));
        if from_trigger {
            out.push_str("ONBUILD ");
        }
        out.push_str(text);
        out
    }

    /// Metadata for an op of this stage.
    pub(crate) fn metadata(&self, description: String, location: &Location) -> OpMetadata {
        OpMetadata {
            description,
            location: Some(source_location(location)),
            stage: Some(self.stage_key.clone()),
            ignore_cache: false,
        }
    }

    /// Metadata for a helper op of this stage that is not a step (an inline file).
    pub(crate) fn internal(&self, what: &str, location: &Location) -> OpMetadata {
        self.metadata(format!("[internal] {what}"), location)
    }
}

/// The op's Dockerfile location.
pub(crate) fn source_location(location: &Location) -> SourceLocation {
    let start = u32::try_from(location.line).unwrap_or(u32::MAX);
    let end = u32::try_from(location.end_line.max(location.line)).unwrap_or(u32::MAX);
    SourceLocation {
        file: location.file.clone(),
        start_line: start,
        end_line: end,
        text: location.original.clone(),
    }
}

/// The instruction as written with its keyword upper-cased (BuildKit's `uppercaseCmd`), plus a
/// one-line summary of a RUN heredoc.
pub(crate) fn instruction_text(location: &Location, instruction: &Instruction) -> String {
    let original = location.original.trim();
    let mut text = match original.split_once(char::is_whitespace) {
        Some((keyword, rest)) => format!("{} {}", keyword.to_uppercase(), rest.trim_start()),
        None => original.to_uppercase(),
    };
    // A base image's ONBUILD trigger is located at the FROM line, whose text is not the
    // trigger's: describe the trigger from its typed form instead.
    if !original
        .get(..instruction.keyword().len())
        .is_some_and(|k| k.eq_ignore_ascii_case(instruction.keyword()))
    {
        text = trigger_text(instruction);
    }
    if let Instruction::Run(run) = instruction {
        let body = match run.script() {
            RunScript::Executable { content, .. } | RunScript::ShellBody(content) => Some(content),
            _ => None,
        };
        if let Some(body) = body {
            text.push_str(&format!(" ({})", summarize_heredoc(&body)));
        }
    }
    text
}

/// The text of an instruction rebuilt from its typed form (filesystem instructions only).
fn trigger_text(instruction: &Instruction) -> String {
    let keyword = instruction.keyword();
    let command = |c: &CommandLine| match c {
        CommandLine::Shell(s) => s.clone(),
        CommandLine::Exec(args) => serde_json::to_string(args).unwrap_or_default(),
    };
    let files = |f: &FileSources| {
        let mut words: Vec<String> = f.sources.clone();
        words.extend(f.inline.iter().map(|i| format!("<<{}", i.name)));
        words.push(f.dest.clone());
        words.join(" ")
    };
    let rest = match instruction {
        Instruction::Run(run) => command(&run.command),
        Instruction::Copy(copy) => match &copy.from {
            Some(from) => format!("--from={from} {}", files(&copy.files)),
            None => files(&copy.files),
        },
        Instruction::Add(add) => files(&add.files),
        Instruction::Workdir(w) => w.path.clone(),
        _ => String::new(),
    };
    format!("{keyword} {rest}").trim_end().to_string()
}

/// BuildKit's `summarizeHeredoc`: the first line, with `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().trim_end_matches('\r');
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_summary() {
        assert_eq!(summarize_heredoc("\necho a\necho b\n"), "echo a...");
        assert_eq!(summarize_heredoc("echo a\n"), "echo a");
    }

    #[test]
    fn keyword_is_upper_cased() {
        let location = Location {
            file: "Dockerfile".into(),
            line: 3,
            end_line: 4,
            original: "workdir  /app".into(),
        };
        let workdir = Instruction::Workdir(crate::instructions::WorkdirInstruction {
            path: "/app".into(),
        });
        assert_eq!(instruction_text(&location, &workdir), "WORKDIR /app");
        let loc = source_location(&location);
        assert_eq!((loc.start_line, loc.end_line), (3, 4));
    }

    #[test]
    fn a_trigger_is_described_from_its_instruction() {
        let from_line = Location {
            file: "Dockerfile".into(),
            line: 1,
            end_line: 1,
            original: "FROM base".into(),
        };
        let workdir = Instruction::Workdir(crate::instructions::WorkdirInstruction {
            path: "/app".into(),
        });
        assert_eq!(instruction_text(&from_line, &workdir), "WORKDIR /app");
    }
}
