//! Push, pull, and test-image generation from the command line; the transfer benchmark
//! (`benches/transfer-1g.sh`) times this binary with `/usr/bin/time -v`.
//!
//! ```text
//! transfer make-image DIR SIZE_BYTES        # random layer + config + manifest as an OCI layout
//! transfer push DIR MANIFEST_DIGEST REF [--chunk BYTES]
//! transfer pull REF DIR [PLATFORM]
//! ```

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::str::FromStr;

use img_registry::{
    Client, ClientConfig, Digest, DirBlobStore, Platform, ProgressEvent, PushOptions, Reference,
};
use sha2::Digest as _;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("make-image") if args.len() == 3 => make_image(&args[1], &args[2]),
        Some("push") if args.len() >= 4 => push(&args[1], &args[2], &args[3], &args[4..]),
        Some("pull") if args.len() >= 3 => pull(&args[1], &args[2], args.get(3)),
        _ => Err("usage: transfer make-image DIR SIZE | push DIR DIGEST REF [--chunk N] | pull REF DIR [PLATFORM]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Prints a line when a blob starts, finishes, or is skipped (not every MiB).
fn report(e: &ProgressEvent) {
    match e {
        ProgressEvent::Started { digest, size } => eprintln!("{digest}: started ({size} bytes)"),
        ProgressEvent::Done { digest, .. } => eprintln!("{digest}: done"),
        ProgressEvent::Exists { digest, .. } => eprintln!("{digest}: already present"),
        ProgressEvent::Mounted { digest, from } => eprintln!("{digest}: mounted from {from}"),
        ProgressEvent::Retrying {
            digest,
            attempt,
            reason,
            ..
        } => {
            eprintln!("{digest}: retry {attempt}: {reason}")
        }
        _ => {}
    }
}

/// Writes a layer of `size` random bytes (streamed: generated, hashed and written in 1 MiB
/// pieces), a config and a manifest, plus `oci-layout`/`index.json` (tag `bench`) so skopeo's
/// `oci:` transport can read the same image.
fn make_image(dir: &str, size: &str) -> Result<(), BoxError> {
    let size: u64 = size.parse()?;
    let store = DirBlobStore::new(dir)?;
    let tmp = store.root().join("layer.tmp");
    let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
    let mut hasher = sha2::Sha256::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    drop(out);
    let layer = Digest::from_str(&format!("sha256:{}", hex::encode(hasher.finalize())))?;
    let dest = store.blob_path(&layer);
    std::fs::create_dir_all(dest.parent().expect("blob path has a parent"))?;
    std::fs::rename(&tmp, &dest)?;
    // An uncompressed tar layer's diff id is its digest; the bytes are not a tar, but
    // registries and copy tools never look inside layers.
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = store.put_bytes(&config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.to_string(), "size": size}],
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let digest = store.put_bytes(&manifest)?;
    std::fs::write(
        store.root().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest.to_string(), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "bench"}}],
    });
    std::fs::write(store.root().join("index.json"), serde_json::to_vec(&index)?)?;
    println!("{digest}");
    Ok(())
}

fn push(dir: &str, digest: &str, reference: &str, rest: &[String]) -> Result<(), BoxError> {
    let store = DirBlobStore::new(dir)?;
    let manifest = std::fs::read(store.blob_path(&Digest::from_str(digest)?))?;
    let mut options = PushOptions::default();
    if let [flag, n] = rest {
        if flag == "--chunk" {
            options.chunk_size = Some(n.parse()?);
        }
    }
    let client = Client::new(ClientConfig::default());
    let pushed = client.push(
        &Reference::parse(reference)?,
        &manifest,
        &store,
        &options,
        &report,
    )?;
    println!("{pushed}");
    Ok(())
}

fn pull(reference: &str, dir: &str, platform: Option<&String>) -> Result<(), BoxError> {
    let store = DirBlobStore::new(dir)?;
    let platform = match platform {
        Some(p) => Platform::from_str(p)?,
        None => Platform::host(),
    };
    let client = Client::new(ClientConfig::default());
    let image = client.pull(&Reference::parse(reference)?, &platform, &store, &report)?;
    println!("{}", image.manifest.digest);
    Ok(())
}
