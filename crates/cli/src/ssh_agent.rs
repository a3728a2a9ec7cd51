//! An ssh agent inside img for `--ssh ID=KEYFILE`, as buildx serves key files: RUN steps with
//! `--mount=type=ssh` reach it through a socket, so the key itself never enters a step, a
//! layer, a cache key or a log. It answers the two requests a client needs (list the keys,
//! sign with one) of the agent protocol (draft-miller-ssh-agent); anything else, such as
//! adding or removing keys, is refused.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use signature::Signer;
use ssh_key::{Algorithm, HashAlg, PrivateKey};

const FAILURE: u8 = 5;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// The sign-request flag asking for an RSA signature with SHA-512.
const RSA_SHA2_512: u32 = 4;
/// The largest request read: a signing request holds a session hash, never much.
const MAX_MESSAGE: usize = 256 << 10;

/// A running agent serving some keys on a socket of its own; stops when dropped.
pub struct KeyAgent {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl KeyAgent {
    /// Reads the OpenSSH private keys `files` and serves them on a socket in a new private
    /// directory under `scratch`.
    pub fn start(files: &[PathBuf], scratch: &Path) -> anyhow::Result<KeyAgent> {
        let keys = files
            .iter()
            .map(|f| read_key(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        std::fs::create_dir_all(scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        // A step's ids are not the builder's (real root's steps run as subordinate ids), and
        // the sandbox mounts the socket from inside the step's user namespace: the directory
        // can be passed through but not listed, its name is random, and the state
        // directory above it is the builder's own.
        let dir = tempfile::Builder::new()
            .prefix("ssh-agent-")
            .tempdir_in(scratch)
            .with_context(|| format!("cannot create a directory in {}", scratch.display()))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(keys);
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("ssh-agent".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let keys = Arc::clone(&keys);
                    // One thread per client: a step may hold its connection open.
                    let _ = std::thread::Builder::new()
                        .name("ssh-agent-client".into())
                        .spawn(move || serve(stream, &keys));
                }
            })
            .context("cannot start the ssh agent")?;
        Ok(KeyAgent {
            socket,
            stop,
            _dir: dir,
        })
    }

    /// The agent's socket, for `SSH_AUTH_SOCK` or a RUN step's mount.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the stop.
        let _ = UnixStream::connect(&self.socket);
    }
}

/// Reads one unencrypted OpenSSH private key; the message never holds the key's content.
fn read_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let text = std::fs::read(path)
        .with_context(|| format!("--ssh: cannot read the key file {}", path.display()))?;
    let key = PrivateKey::from_openssh(&text).map_err(|_| {
        anyhow::anyhow!(
            "--ssh: {} is not an OpenSSH private key (give a key file such as ~/.ssh/id_ed25519, or an agent socket)",
            path.display()
        )
    })?;
    if key.is_encrypted() {
        bail!(
            "--ssh: the key {} is protected by a passphrase; load it into an ssh agent (ssh-add) and give the agent's socket",
            path.display()
        );
    }
    Ok(key)
}

/// Answers one client's requests until it hangs up.
fn serve(mut stream: UnixStream, keys: &[PrivateKey]) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return;
        }
        let mut message = vec![0u8; len];
        if stream.read_exact(&mut message).is_err() {
            return;
        }
        let reply = answer(&message, keys).unwrap_or_else(|| vec![FAILURE]);
        let mut out = (reply.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The reply to one request, or `None` for a failure.
fn answer(message: &[u8], keys: &[PrivateKey]) -> Option<Vec<u8>> {
    let (&kind, body) = message.split_first()?;
    match kind {
        REQUEST_IDENTITIES => {
            let mut reply = vec![IDENTITIES_ANSWER];
            reply.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for key in keys {
                put_string(&mut reply, &key.public_key().to_bytes().ok()?);
                put_string(&mut reply, key.comment().as_bytes());
            }
            Some(reply)
        }
        SIGN_REQUEST => {
            let mut body = body;
            let blob = take_string(&mut body)?;
            let data = take_string(&mut body)?;
            let flags = take_u32(&mut body).unwrap_or(0);
            let key = keys
                .iter()
                .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(blob))?;
            let signature = match key.algorithm() {
                // The key library signs RSA with SHA-512 only: a client asking for another
                // hash (or SHA-1's ssh-rsa) is refused rather than answered with another.
                Algorithm::Rsa { .. } if flags & RSA_SHA2_512 == 0 => return None,
                _ => key.try_sign(data).ok()?,
            };
            if let Algorithm::Rsa { hash } = signature.algorithm() {
                if hash != Some(HashAlg::Sha512) {
                    return None;
                }
            }
            let mut encoded = Vec::new();
            put_string(&mut encoded, signature.algorithm().as_str().as_bytes());
            put_string(&mut encoded, signature.as_bytes());
            let mut reply = vec![SIGN_RESPONSE];
            put_string(&mut reply, &encoded);
            Some(reply)
        }
        _ => None,
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_u32(input: &mut &[u8]) -> Option<u32> {
    let (head, rest) = input.split_first_chunk::<4>()?;
    *input = rest;
    Some(u32::from_be_bytes(*head))
}

fn take_string<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(input)? as usize;
    if input.len() < len {
        return None;
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn run(cmd: &mut Command) -> std::process::Output {
        let out = cmd.output().expect("the ssh tools run");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// OpenSSH's own client tools list the key and sign with it through the agent, and the
    /// signature verifies.
    #[test]
    fn openssh_lists_and_signs_through_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind) in [("id_ed25519", "ed25519"), ("id_ecdsa", "ecdsa")] {
            let key = dir.path().join(name);
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
                .arg(&key));
            let agent =
                KeyAgent::start(std::slice::from_ref(&key), &dir.path().join("scratch")).unwrap();
            let listed = run(Command::new("ssh-add")
                .arg("-L")
                .env("SSH_AUTH_SOCK", agent.socket()));
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&listed.stdout).trim(),
                public.trim()
            );

            // `ssh-keygen -Y sign` with only the public key signs through the agent.
            let data = dir.path().join(format!("{name}.txt"));
            std::fs::write(&data, "signed through the agent\n").unwrap();
            run(Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(key.with_extension("pub"))
                .arg(&data)
                .env("SSH_AUTH_SOCK", agent.socket()));
            let signers = dir.path().join("allowed");
            std::fs::write(&signers, format!("me {public}")).unwrap();
            run(Command::new("sh").arg("-c").arg(format!(
                "ssh-keygen -Y verify -f {} -I me -n file -s {}.sig < {}",
                signers.display(),
                data.display(),
                data.display()
            )));
        }
    }

    #[test]
    fn bad_key_files_are_refused_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not-a-key-SECRET").unwrap();
        let err = format!("{:#}", KeyAgent::start(&[junk], dir.path()).err().unwrap());
        assert!(err.contains("is not an OpenSSH private key"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        let locked = dir.path().join("locked");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-f"])
            .arg(&locked));
        let err = format!(
            "{:#}",
            KeyAgent::start(&[locked], dir.path()).err().unwrap()
        );
        assert!(err.contains("passphrase"), "{err}");
    }

    #[test]
    fn unknown_requests_fail() {
        assert_eq!(answer(&[17], &[]), None);
        assert_eq!(answer(&[], &[]), None);
        assert_eq!(answer(&[SIGN_REQUEST, 0, 0], &[]), None);
        assert_eq!(
            answer(&[REQUEST_IDENTITIES], &[]),
            Some(vec![IDENTITIES_ANSWER, 0, 0, 0, 0])
        );
    }
}
