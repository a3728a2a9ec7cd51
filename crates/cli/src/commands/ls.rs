//! `img ls [--filter name=PATTERN|reference=PATTERN]... [--format TEMPLATE]`: the stored
//! images as a table (NAME, SIZE, CREATED, DIGEST) or through a Go-style template.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use img_snapshot::ImageRecord;

use crate::config::Config;
use crate::image::{digest_of, familiar, stored_size};
use crate::progress::human_size;

/// The fields a `--format` template may use.
const FIELDS: [&str; 5] = ["Name", "Size", "Created", "CreatedAt", "Digest"];

/// One `--filter`: images whose name matches the glob pattern.
#[derive(Debug)]
struct NameFilter(glob::Pattern);

impl NameFilter {
    fn parse(text: &str) -> anyhow::Result<NameFilter> {
        let Some((key, pattern)) = text.split_once('=') else {
            bail!("invalid filter {text:?}: use name=PATTERN or reference=PATTERN");
        };
        if key != "name" && key != "reference" {
            bail!("unknown filter {key:?}: use name=PATTERN or reference=PATTERN");
        }
        let pattern = glob::Pattern::new(pattern)
            .with_context(|| format!("invalid pattern in filter {text:?}"))?;
        Ok(NameFilter(pattern))
    }

    /// Docker's reference filter matches the short name (`busybox:1`) and, here, also the
    /// stored name (`docker.io/library/busybox:1`) and either without its tag.
    fn matches(&self, name: &str) -> bool {
        let short = familiar(name);
        let untagged = |n: &str| -> String {
            match n.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
                _ => n.to_owned(),
            }
        };
        [name.to_owned(), untagged(name), untagged(&short), short]
            .iter()
            .any(|n| self.0.matches(n))
    }
}

/// A row of the listing.
struct Row {
    name: String,
    size: String,
    created: String,
    created_at: String,
    digest: String,
}

impl Row {
    fn field(&self, field: &str) -> &str {
        match field {
            "Name" => &self.name,
            "Size" => &self.size,
            "Created" => &self.created,
            "CreatedAt" => &self.created_at,
            _ => &self.digest,
        }
    }
}

/// A parsed `--format` template: literal text and `{{.Field}}` placeholders.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

fn parse_template(template: &str) -> anyhow::Result<Vec<Piece>> {
    // The shell passes `\t` literally; Docker's templates treat it as a tab.
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut pieces = Vec::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        let Some(end) = rest[start..].find("}}") else {
            bail!("invalid --format: unclosed {{{{ in {template:?}");
        };
        let inner = rest[start + 2..start + end].trim();
        let field = inner.strip_prefix('.').unwrap_or("");
        let Some(known) = FIELDS.iter().find(|f| **f == field) else {
            bail!(
                "invalid --format: unknown field {inner:?}; use {}",
                FIELDS.map(|f| format!("{{{{.{f}}}}}")).join(", ")
            );
        };
        pieces.push(Piece::Field(known));
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// How long ago, in Docker's words (`units.HumanDuration`).
pub fn human_ago(seconds: u64) -> String {
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    let text = match seconds {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_owned(),
        s if s < 46 * 60 => format!("{minutes} minutes"),
        s if s < 90 * 60 => "About an hour".to_owned(),
        s if s < 48 * 3600 => format!("{hours} hours"),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", hours / 24),
        s if s < 24 * 3600 * 30 * 3 => format!("{} weeks", hours / 24 / 7),
        s if s < 24 * 3600 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    };
    format!("{text} ago")
}

fn row(config_now: u64, content: &img_snapshot::ContentStore, record: &ImageRecord) -> Row {
    let digest = digest_of(&record.target).map(|d| d.to_string());
    let size = digest_of(&record.target)
        .map(|d| human_size(stored_size(content, &d)))
        .unwrap_or_default();
    let created = u64::try_from(record.created).unwrap_or(0);
    Row {
        name: familiar(&record.name),
        size,
        created: human_ago(config_now.saturating_sub(created)),
        created_at: created.to_string(),
        digest: digest.unwrap_or_default(),
    }
}

pub fn run(config: &Config, filters: &[String], format: Option<&str>) -> anyhow::Result<()> {
    let filters = filters
        .iter()
        .map(|f| NameFilter::parse(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let template = format.map(parse_template).transpose()?;
    let store = config.open_store()?;
    let content = store.content();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Row> = store
        .images()
        .list()
        .context("cannot list the image store")?
        .iter()
        .filter(|r| filters.iter().all(|f| f.matches(&r.name)))
        .map(|r| row(now, &content, r))
        .collect();

    let mut out = std::io::stdout().lock();
    if let Some(template) = template {
        for row in &rows {
            for piece in &template {
                match piece {
                    Piece::Text(t) => out.write_all(t.as_bytes())?,
                    Piece::Field(f) => out.write_all(row.field(f).as_bytes())?,
                }
            }
            writeln!(out)?;
        }
        return Ok(());
    }
    let headers = ["NAME", "SIZE", "CREATED", "DIGEST"];
    let cells: Vec<[&str; 4]> = rows
        .iter()
        .map(|r| [&*r.name, &*r.size, &*r.created, &*r.digest])
        .collect();
    let mut widths = headers.map(str::len);
    for line in &cells {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.len());
        }
    }
    for line in std::iter::once(&headers).chain(&cells) {
        let text = line
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("   ");
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("{{.Name}}\\t{{ .Digest }}!").unwrap(),
            [
                Piece::Field("Name"),
                Piece::Text("\t".into()),
                Piece::Field("Digest"),
                Piece::Text("!".into())
            ]
        );
        let err = parse_template("{{.Tag}}").unwrap_err().to_string();
        assert!(err.contains("unknown field \".Tag\""), "{err}");
        assert!(parse_template("{{.Name").is_err());
    }

    #[test]
    fn filters_match_short_and_full_names() {
        // filter | name | matches
        for (filter, name, want) in [
            (
                "reference=busybox",
                "docker.io/library/busybox:latest",
                true,
            ),
            ("reference=busybox:*", "docker.io/library/busybox:1", true),
            ("name=*/library/*", "docker.io/library/busybox:1", true),
            ("reference=alpine", "docker.io/library/busybox:1", false),
            ("reference=localhost:5000/*", "localhost:5000/app:1", true),
        ] {
            assert_eq!(
                NameFilter::parse(filter).unwrap().matches(name),
                want,
                "{filter} {name}"
            );
        }
        assert!(NameFilter::parse("label=x").is_err());
        assert!(NameFilter::parse("busybox").is_err());
    }

    #[test]
    fn ages_like_docker() {
        for (seconds, want) in [
            (0, "Less than a second ago"),
            (30, "30 seconds ago"),
            (90, "About a minute ago"),
            (600, "10 minutes ago"),
            (3 * 3600, "3 hours ago"),
            (3 * 86400, "3 days ago"),
            (30 * 86400, "4 weeks ago"),
        ] {
            assert_eq!(human_ago(seconds), want, "{seconds}");
        }
    }
}
