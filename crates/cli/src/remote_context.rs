//! A build context given as an http(s) URL that is not a git repository, as `docker build URL`
//! reads it: the download is a tar archive of the context (plain or compressed), or else a
//! Dockerfile alone with an empty context.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context};

/// The most a remote context may weigh: it is held in memory while its kind is decided.
const MAX_BYTES: u64 = 1 << 30;

/// Downloads `url` whole, refusing anything above [`MAX_BYTES`] or an error status.
pub fn download(url: &str) -> anyhow::Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("cannot download the build context {url}"))?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot download the build context {url}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        bail!(
            "the build context {url} is larger than {} GiB; download it and give the directory",
            MAX_BYTES >> 30
        );
    }
    Ok(bytes)
}
