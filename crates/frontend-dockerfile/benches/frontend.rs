//! Frontend throughput: word expansion over a realistic mix of Dockerfile words, and parsing a
//! large generated Dockerfile with continuations and heredocs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use img_frontend_dockerfile::{parse, Lexer};

/// Words as they appear in real Dockerfiles: mostly plain, many `$VAR`/`${VAR}`, some defaults,
/// quotes, escapes and pattern operators.
const WORD_MIX: &[&str] = &[
    "/usr/src/app",
    "--no-cache",
    "$HOME/.local/bin",
    "${APP_HOME}/config.yaml",
    "app-${VERSION}.tar.gz",
    "${VERSION:-1.0.0}",
    "\"$PATH:/opt/tools/bin\"",
    "'literal $NOT_EXPANDED'",
    "${TARGETPLATFORM#linux/}",
    "${IMAGE%%:*}",
    "https://example.com/releases/v${VERSION}/tool-${TARGETARCH}.tgz",
    "--mount=type=cache,target=/root/.cache/pip",
    "name=\"img builder\"",
    "C:\\\\path\\\\with\\\\escapes",
    "${UNSET:+--flag}",
    "${REGISTRY}/${REPOSITORY}:${TAG}",
    "python3",
    "-m",
    "pip",
    "install",
];

fn environment() -> Vec<(String, String)> {
    [
        ("HOME", "/root"),
        ("APP_HOME", "/srv/app"),
        ("VERSION", "2.4.1"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("TARGETPLATFORM", "linux/arm64"),
        ("TARGETARCH", "arm64"),
        ("IMAGE", "docker.io/library/alpine:3.20"),
        ("REGISTRY", "registry.example.com"),
        ("REPOSITORY", "team/service"),
        ("TAG", "v1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A Dockerfile of `instructions` instructions mixing every form the parser handles.
fn generated_dockerfile(instructions: usize) -> String {
    let mut text = String::from("# syntax=docker/dockerfile:1\n# escape=\\\n");
    text.push_str("FROM alpine:3.20 AS base\n");
    for i in 1..instructions {
        let instruction = match i % 10 {
            0 => format!(
                "RUN apk add --no-cache \\\n    curl \\\n    git \\\n    ca-certificates && \\\n    echo done-{i}\n"
            ),
            1 => format!("COPY <<EOF /etc/app/conf-{i}.ini\n[section]\nkey = {i}\nEOF\n"),
            2 => format!("ENV KEY_{i}=\"value {i}\" OTHER_{i}=$VERSION\n"),
            3 => format!("RUN <<EOT bash\nset -eux\necho step {i}\nls -la /\nEOT\n"),
            4 => format!("WORKDIR /app/{i}\n"),
            5 => format!("LABEL org.example.step-{i}=\"{i}\" \\\n      org.example.kind=bench\n"),
            6 => format!("RUN [\"/bin/sh\", \"-c\", \"echo {i}\"]\n"),
            7 => format!("# comment {i}\nCOPY --chown=1000:1000 --chmod=644 src/{i} /dst/{i}\n"),
            8 => format!("ARG BUILD_{i}=default\n"),
            _ => format!("RUN --mount=type=cache,target=/root/.cache \\\n    echo cached {i}\n"),
        };
        text.push_str(&instruction);
    }
    text
}

fn expand_words(c: &mut Criterion) {
    let lexer = Lexer::new('\\');
    let env = environment();
    let words: Vec<&str> = WORD_MIX.iter().copied().cycle().take(100_000).collect();
    let mut group = c.benchmark_group("shell");
    group.throughput(Throughput::Elements(words.len() as u64));
    group.bench_function("expand_word x100000", |b| {
        b.iter(|| {
            for word in &words {
                black_box(lexer.expand_word(black_box(word), &env).unwrap());
            }
        })
    });
    group.finish();
}

fn parse_dockerfile(c: &mut Criterion) {
    let text = generated_dockerfile(2_000);
    let parsed = parse(&text, "Dockerfile").expect("generated Dockerfile parses");
    assert_eq!(parsed.instructions.len(), 2_000);
    let heredocs = parsed
        .instructions
        .iter()
        .filter(|node| !node.heredocs.is_empty())
        .count();
    assert_eq!(heredocs, 400);
    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse 2000 instructions", |b| {
        b.iter(|| black_box(parse(black_box(&text), "Dockerfile").unwrap()))
    });
    group.finish();
}

criterion_group!(benches, expand_words, parse_dockerfile);
criterion_main!(benches);
