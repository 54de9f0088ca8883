//! TLS and credentials for the engine connection: the files named by
//! `cluster.ca_file`, `cert_file`, `key_file` and `credentials_file`, read
//! and checked once at start (a file that cannot be used stops the server
//! with a message naming the key and the file), and the user, password or
//! token a NATS URL carries (`nats://user:pass@host`, `tls://token@host`),
//! which the NATS client does not take from the URL by itself.

use crate::config::settings::{CLUSTER_CA_FILE, CLUSTER_CERT_FILE, CLUSTER_KEY_FILE};
use crate::config::EngineFiles;
use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// The PEM files, read and checked.
#[derive(Default)]
pub struct EngineTls {
    /// CA certificates to trust, as PEM.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key, as PEM.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl EngineTls {
    /// Whether any file asks for TLS.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

/// Reads and checks the certificate files of `files`.
pub fn load(files: &EngineFiles) -> Result<EngineTls, String> {
    let mut tls = EngineTls::default();
    if let Some(path) = &files.ca {
        let pem = read(CLUSTER_CA_FILE.key, path)?;
        check_certs(CLUSTER_CA_FILE.key, path, &pem)?;
        tls.ca = Some(pem);
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        let cert_pem = read(CLUSTER_CERT_FILE.key, cert)?;
        check_certs(CLUSTER_CERT_FILE.key, cert, &cert_pem)?;
        let key_pem = read(CLUSTER_KEY_FILE.key, key)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "{}: {} holds no usable private key: {e}",
                CLUSTER_KEY_FILE.key,
                key.display()
            )
        })?;
        tls.client = Some((cert_pem, key_pem));
    }
    Ok(tls)
}

fn check_certs(key: &str, path: &Path, pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} has no PEM CERTIFICATE block",
            path.display()
        ));
    }
    Ok(())
}

/// How a NATS URL authenticates.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlAuth {
    None,
    UserPassword(String, String),
    Token(String),
}

/// The credentials in a URL's userinfo (percent-decoded): `user:password`
/// or a lone token.
pub fn url_auth(url: &str) -> UrlAuth {
    let Some((_, rest)) = url.split_once("://") else {
        return UrlAuth::None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return UrlAuth::None;
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    match userinfo.split_once(':') {
        Some((user, pass)) => UrlAuth::UserPassword(decode(user), decode(pass)),
        None if !userinfo.is_empty() => UrlAuth::Token(decode(userinfo)),
        None => UrlAuth::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_credentials_are_read_from_the_userinfo() {
        assert_eq!(url_auth("nats://127.0.0.1:4222"), UrlAuth::None);
        assert_eq!(
            url_auth("tls://al%40ice:p%3Ass@host:4222/x"),
            UrlAuth::UserPassword("al@ice".into(), "p:ss".into())
        );
        assert_eq!(
            url_auth("nats://s3cr3t@host"),
            UrlAuth::Token("s3cr3t".into())
        );
        assert_eq!(url_auth("nats://host/a@b"), UrlAuth::None);
    }

    #[test]
    fn unusable_files_are_named() {
        let dir =
            std::env::temp_dir().join(format!("shardcast-engine-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let files = EngineFiles {
            ca: Some(junk.clone()),
            ..Default::default()
        };
        let err = load(&files).err().unwrap();
        assert!(err.starts_with("cluster.ca_file: "), "{err}");
        assert!(err.contains("junk.pem"), "{err}");
        let files = EngineFiles {
            ca: Some(dir.join("missing.pem")),
            ..Default::default()
        };
        let err = load(&files).err().unwrap();
        assert!(
            err.contains("cannot read") && err.contains("missing.pem"),
            "{err}"
        );
    }
}
