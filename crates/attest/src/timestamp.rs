//! Times as Go's `time.Time` marshals them in JSON (RFC 3339 with nanoseconds, trailing zeros
//! of the fraction dropped), so provenance timestamps read as BuildKit's do.

use std::time::SystemTime;

/// `2024-03-01T12:00:00.5Z` for a time with a fraction, `2024-03-01T12:00:00Z` without.
pub(crate) fn go_rfc3339_nano(time: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(time).to_string();
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
    match full.strip_suffix('Z').and_then(|s| s.split_once('.')) {
        Some((seconds, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{fraction}Z")
            }
        }
        None => full,
    }
}

/// `2024-03-01T12:00:00Z`, as SPDX `created` wants it.
pub(crate) fn rfc3339_seconds(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn trims_the_fraction_like_go() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(go_rfc3339_nano(t), "2023-11-14T22:13:20Z");
        let t = t + Duration::from_millis(250);
        assert_eq!(go_rfc3339_nano(t), "2023-11-14T22:13:20.25Z");
        assert_eq!(rfc3339_seconds(t), "2023-11-14T22:13:20Z");
    }
}
