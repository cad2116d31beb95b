//! Keys the service holds: the Ed25519 key that signs access-log checkpoints (and, later,
//! evidence manifests), and the HMAC key of playback tokens.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

use crate::StorageError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the Ed25519 key in PKCS#8 PEM at `path`, generating it (mode 0600) if missing.
pub fn load_or_create_signing_key(path: &Path, key: &str) -> Result<SigningKey, StorageError> {
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(io(path))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            StorageError::config(
                key,
                format!("{}: not an Ed25519 PKCS#8 PEM key: {e}", path.display()),
            )
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = signing
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| StorageError::Internal(format!("encoding a new key: {e}")))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(pem.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    tracing::info!(path = %path.display(), "generated a new Ed25519 signing key");
    Ok(signing)
}

/// Reads the playback HMAC key (at least 32 bytes) from `path`.
pub fn load_playback_key(path: &Path, key: &str) -> Result<Vec<u8>, StorageError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.len() < 32 {
        return Err(StorageError::config(
            key,
            format!(
                "{} holds {} bytes; at least 32 are needed",
                path.display(),
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k.pem");
        let a = load_or_create_signing_key(&path, "signing_key_file").unwrap();
        let b = load_or_create_signing_key(&path, "signing_key_file").unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        let e = load_or_create_signing_key(&path, "signing_key_file").unwrap_err();
        assert!(e.to_string().contains("signing_key_file"), "{e}");
    }
}
