//! `img ls [--filter name=PATTERN|reference=PATTERN|dangling=BOOL]... [--format TEMPLATE]`:
//! the stored images as a table (NAME, IMAGE ID, SIZE, CREATED, PLATFORMS, DIGEST) or through a
//! Go-style template. A multi-platform image lists every platform of its index; an image built
//! without a name shows as `<none>` until it gets one.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use img_snapshot::ImageRecord;

use crate::config::Config;
use crate::image::{
    digest_of, familiar, image_id, is_untagged, platforms_of, short_id, stored_size,
};
use crate::progress::human_size;

/// The fields a `--format` template may use.
const FIELDS: [&str; 7] = [
    "Name",
    "ID",
    "Size",
    "Created",
    "CreatedAt",
    "Platforms",
    "Digest",
];

/// One `--filter`: images whose name matches the glob pattern, or (`dangling=true`) the
/// images without a name.
#[derive(Debug)]
enum NameFilter {
    Name(glob::Pattern),
    Dangling(bool),
}

impl NameFilter {
    fn parse(text: &str) -> anyhow::Result<NameFilter> {
        const USE: &str = "use name=PATTERN, reference=PATTERN or dangling=true|false";
        let Some((key, value)) = text.split_once('=') else {
            bail!("invalid filter {text:?}: {USE}");
        };
        match key {
            "name" | "reference" => {
                let pattern = glob::Pattern::new(value)
                    .with_context(|| format!("invalid pattern in filter {text:?}"))?;
                Ok(NameFilter::Name(pattern))
            }
            "dangling" => match value {
                "true" | "1" => Ok(NameFilter::Dangling(true)),
                "false" | "0" => Ok(NameFilter::Dangling(false)),
                _ => bail!("invalid filter {text:?}: dangling is true or false"),
            },
            _ => bail!("unknown filter {key:?}: {USE}"),
        }
    }

    /// Docker's reference filter matches the short name (`busybox:1`) and, here, also the
    /// stored name (`docker.io/library/busybox:1`) and either without its tag; an image
    /// without a name matches no pattern.
    fn matches(&self, name: &str) -> bool {
        let pattern = match self {
            NameFilter::Dangling(want) => return is_untagged(name) == *want,
            NameFilter::Name(_) if is_untagged(name) => return false,
            NameFilter::Name(pattern) => pattern,
        };
        let short = familiar(name);
        let untagged = |n: &str| -> String {
            match n.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
                _ => n.to_owned(),
            }
        };
        [name.to_owned(), untagged(name), untagged(&short), short]
            .iter()
            .any(|n| pattern.matches(n))
    }
}

/// A row of the listing.
struct Row {
    name: String,
    id: String,
    size: String,
    created: String,
    created_at: String,
    /// Comma-separated, as `--platform` takes them.
    platforms: String,
    digest: String,
}

impl Row {
    fn field(&self, field: &str) -> &str {
        match field {
            "Name" => &self.name,
            "ID" => &self.id,
            "Size" => &self.size,
            "Created" => &self.created,
            "CreatedAt" => &self.created_at,
            "Platforms" => &self.platforms,
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
    let id = image_id(content, &record.target).map(|d| short_id(&d));
    let size = digest_of(&record.target)
        .map(|d| human_size(stored_size(content, &d)))
        .unwrap_or_default();
    let created = u64::try_from(record.created).unwrap_or(0);
    Row {
        name: familiar(&record.name),
        id: id.unwrap_or_default(),
        size,
        created: human_ago(config_now.saturating_sub(created)),
        created_at: created.to_string(),
        platforms: platforms_of(content, &record.target).join(","),
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
    let records = store
        .images()
        .list()
        .context("cannot list the image store")?;
    // An untagged record whose image also has a name is not shown: Docker lists an image as
    // `<none>` only while nothing names it.
    let named: std::collections::HashSet<String> = records
        .iter()
        .filter(|r| !is_untagged(&r.name))
        .map(|r| r.target.digest().to_string())
        .collect();
    let rows: Vec<Row> = records
        .iter()
        .filter(|r| !is_untagged(&r.name) || !named.contains(&r.target.digest().to_string()))
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
    let headers = ["NAME", "IMAGE ID", "SIZE", "CREATED", "PLATFORMS", "DIGEST"];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                &*r.name,
                &*r.id,
                &*r.size,
                &*r.created,
                &*r.platforms,
                &*r.digest,
            ]
        })
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
        assert!(NameFilter::parse("dangling=true")
            .unwrap()
            .matches("untagged@sha256:00"));
        assert!(!NameFilter::parse("dangling=true")
            .unwrap()
            .matches("docker.io/library/busybox:1"));
        assert!(NameFilter::parse("dangling=false")
            .unwrap()
            .matches("docker.io/library/busybox:1"));
        assert!(!NameFilter::parse("reference=*")
            .unwrap()
            .matches("untagged@sha256:00"));
        assert!(NameFilter::parse("dangling=maybe").is_err());
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
