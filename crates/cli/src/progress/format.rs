//! Small text formats shared by the renderers.

use std::time::{Duration, SystemTime};

/// Sizes as Docker prints them (`units.HumanSize`): decimal units, four significant digits,
/// no trailing zeros (`120B`, `3.4MB`, `1.049MB`). Docker's own output is what users compare
/// against, hence decimal rather than binary units.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let mut text = format!("{value:.4}");
    // Four significant digits: as many decimals as the integer part leaves.
    let integer_digits = text.split('.').next().map_or(1, str::len);
    let decimals = 4usize.saturating_sub(integer_digits);
    text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// The first 12 hex digits of a blob digest, as Docker shows layer ids.
pub fn short_digest(digest: &img_registry::Digest) -> String {
    digest.digest().chars().take(12).collect()
}

/// `later - earlier`, or zero if the clock went backwards.
pub fn elapsed(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// What a transfer event means, in Docker's words: `(status, bar?)`.
pub fn transfer_status(
    direction: super::Direction,
    event: &img_registry::ProgressEvent,
) -> Option<(img_registry::Digest, String)> {
    use img_registry::ProgressEvent as E;

    use super::Direction::{Pull, Push};
    let (digest, status) = match (direction, event) {
        (Pull, E::Started { digest, size }) => {
            (digest, format!("Downloading {}", human_size(*size)))
        }
        (Push, E::Started { digest, size }) => (digest, format!("Pushing {}", human_size(*size))),
        (Pull, E::Done { digest, .. }) => (digest, "Download complete".to_owned()),
        (Push, E::Done { digest, .. }) => (digest, "Pushed".to_owned()),
        (Pull, E::Exists { digest, .. }) => (digest, "Already exists".to_owned()),
        (Push, E::Exists { digest, .. }) => (digest, "Layer already exists".to_owned()),
        (_, E::Mounted { digest, from }) => (digest, format!("Mounted from {from}")),
        (
            _,
            E::Retrying {
                digest,
                attempt,
                delay,
                reason,
            },
        ) => (
            digest,
            format!(
                "Retrying in {:.1}s (attempt {attempt}): {reason}",
                delay.as_secs_f64()
            ),
        ),
        _ => return None,
    };
    Some((digest.clone(), status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        // bytes | shown
        for (bytes, want) in [
            (0, "0B"),
            (120, "120B"),
            (999, "999B"),
            (1000, "1kB"),
            (1536, "1.536kB"),
            (1_048_576, "1.049MB"),
            (3_400_000, "3.4MB"),
            (123_456_789, "123.5MB"),
            (5_000_000_000, "5GB"),
        ] {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }
}
