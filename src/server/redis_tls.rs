//! TLS to Redis (`rediss://`): the process's crypto provider, the
//! certificates of `REDIS_CA_CERT`, `REDIS_CLIENT_CERT` and
//! `REDIS_CLIENT_KEY`, the one way every Redis client of the server and the
//! command line is built ([`RedisTls::client`], [`RedisTls::cluster`]), and
//! the one-line explanation of a TLS failure that retrying will not fix
//! ([`RedisTls::explain`]).
//!
//! `rediss://host:port/#insecure` skips the verification of the server's
//! certificate (redis-rs's `tls-rustls-insecure`), for a test set-up only.

use super::config::ConfigError;
use redis::{cluster::ClusterClientBuilder, ClientTlsConfig, RedisResult, TlsCertificates};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Installs ring as the process's rustls crypto provider. rustls cannot
/// pick one by itself when its features name none (or two), and then the
/// first `rediss://` connection panics. Idempotent: a provider that is
/// already installed (an earlier call, a test harness) stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS settings, with their PEM files read and checked at start-up.
/// Empty: `rediss://` trusts the public CAs (webpki roots), no client
/// certificate.
#[derive(Clone, Default)]
pub struct RedisTls {
    ca: Option<PemFile>,
    client: Option<(PemFile, PemFile)>,
}

#[derive(Clone)]
struct PemFile {
    /// The setting that names the file, for errors.
    setting: &'static str,
    path: PathBuf,
    pem: Vec<u8>,
}

// Paths only: a private key never reaches a log.
impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.as_ref().map(|c| &c.path))
            .field("client_cert", &self.client.as_ref().map(|(c, _)| &c.path))
            .finish()
    }
}

impl RedisTls {
    /// Reads and checks the files of `REDIS_CA_CERT`, `REDIS_CLIENT_CERT`
    /// and `REDIS_CLIENT_KEY` (each optional; the last two go together).
    /// An error names the setting.
    pub fn load(
        ca: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let ca = ca
            .map(|path| {
                let file = PemFile::read("REDIS_CA_CERT", path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in file.certificates()? {
                    roots.add(cert).map_err(|e| file.error(&e.to_string()))?;
                }
                Ok::<_, ConfigError>(file)
            })
            .transpose()?;
        let client = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert = PemFile::read("REDIS_CLIENT_CERT", cert)?;
                let key = PemFile::read("REDIS_CLIENT_KEY", key)?;
                let der = PrivateKeyDer::from_pem_slice(&key.pem)
                    .map_err(|_| key.error("no PEM private key in it"))?;
                rustls::sign::CertifiedKey::from_der(
                    cert.certificates()?,
                    der,
                    &rustls::crypto::ring::default_provider(),
                )
                .map_err(|e| {
                    key.error(&format!(
                        "not the key of REDIS_CLIENT_CERT={} ({e})",
                        cert.path.display()
                    ))
                })?;
                Some((cert, key))
            }
            _ => {
                return Err(ConfigError(
                    "REDIS_CLIENT_CERT and REDIS_CLIENT_KEY go together (mutual TLS): set both or neither"
                        .into(),
                ))
            }
        };
        Ok(Self { ca, client })
    }

    /// Whether any TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.pem.clone(),
                client_key: key.pem.clone(),
            }),
            root_cert: self.ca.as_ref().map(|ca| ca.pem.clone()),
        }
    }

    /// A client for one Redis URL: with the certificates for `rediss://`.
    pub fn client(&self, url: &str) -> RedisResult<redis::Client> {
        if self.is_set() && uses_tls(url) {
            redis::Client::build_with_tls(url, self.certificates())
        } else {
            redis::Client::open(url)
        }
    }

    /// A cluster client builder for these seed nodes, with the
    /// certificates when the nodes speak TLS.
    pub fn cluster(&self, urls: &[String]) -> ClusterClientBuilder {
        let builder = redis::cluster::ClusterClient::builder(urls.to_vec());
        if self.is_set() && urls.iter().any(|url| uses_tls(url)) {
            builder.certs(self.certificates())
        } else {
            builder
        }
    }

    /// What to fix, as one line, when `error` is a TLS failure that no
    /// retry will heal (a certificate that is not trusted or not valid, a
    /// client certificate that is missing or refused, no TLS at the
    /// other end); `None` for anything else (Redis not up yet, …).
    ///
    /// Read from the error's text, since redis-rs keeps only the text of a
    /// cluster's connection errors. The texts are rustls's own
    /// (`rustls::Error`'s `Display`): exact ones made here from its
    /// values, and the fixed beginnings below for whole families.
    pub fn explain(&self, error: &redis::RedisError) -> Option<String> {
        use rustls::{AlertDescription as Alert, CertificateError, Error};
        let text = error.to_string();
        let said = |e: Error| text.contains(&e.to_string());
        let ca = match &self.ca {
            Some(ca) => format!(
                "REDIS_CA_CERT={} did not sign it; set it to the CA that did",
                ca.path.display()
            ),
            None => "set REDIS_CA_CERT to the CA that signed it".into(),
        };
        let line = if said(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            || said(Error::InvalidCertificate(CertificateError::BadSignature))
        {
            format!("the Redis server's certificate is not trusted: {ca}")
        } else if text.contains(CERTIFICATE_PROBLEM) {
            format!(
                "the Redis server's certificate is not valid ({}): it must name the host of the URL and be within its dates",
                detail(&text, CERTIFICATE_PROBLEM)
            )
        } else if [
            Alert::CertificateRequired,
            Alert::HandshakeFailure,
            Alert::BadCertificate,
            Alert::UnknownCA,
            Alert::CertificateUnknown,
            Alert::UnsupportedCertificate,
            Alert::CertificateExpired,
            Alert::AccessDenied,
        ]
        .into_iter()
        .any(|alert| said(Error::AlertReceived(alert)))
        {
            match &self.client {
                None => "the Redis server requires a client certificate (mutual TLS): set REDIS_CLIENT_CERT and REDIS_CLIENT_KEY".into(),
                Some((cert, _)) => format!(
                    "the Redis server refused the client certificate REDIS_CLIENT_CERT={} ({}): it must be signed by a CA the server trusts (its tls-ca-cert-file)",
                    cert.path.display(),
                    detail(&text, ALERT)
                ),
            }
        } else if text.contains(CORRUPT) {
            "no TLS at the other end of the rediss:// URL: is that the server's TLS port?".into()
        } else {
            return None;
        };
        Some(format!("TLS to Redis failed: {line}"))
    }
}

/// The beginnings of rustls's texts for a certificate it rejects, an alert
/// from the server, and bytes that are not TLS.
const CERTIFICATE_PROBLEM: &str = "invalid peer certificate: ";
const ALERT: &str = "received fatal alert: ";
const CORRUPT: &str = "received corrupt message";

/// What follows `prefix` in `text`, up to the end of its line.
fn detail<'a>(text: &'a str, prefix: &str) -> &'a str {
    let rest = text.split_once(prefix).map_or("", |(_, rest)| rest);
    rest.lines().next().unwrap_or_default().trim_end()
}

/// `rediss://` (TLS).
pub fn uses_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// `rediss://…#insecure`: no verification of the server's certificate.
pub fn is_insecure(url: &str) -> bool {
    uses_tls(url) && url.ends_with("#insecure")
}

impl PemFile {
    fn read(setting: &'static str, path: &Path) -> Result<Self, ConfigError> {
        let mut file = Self {
            setting,
            path: path.to_path_buf(),
            pem: vec![],
        };
        file.pem = std::fs::read(path).map_err(|e| file.error(&format!("cannot read it: {e}")))?;
        Ok(file)
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs = CertificateDer::pem_slice_iter(&self.pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(&format!("not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(self.error("no PEM certificate in it"));
        }
        Ok(certs)
    }

    fn error(&self, what: &str) -> ConfigError {
        ConfigError(format!("{}={}: {what}", self.setting, self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CertificateError, Error};

    fn explained(error: impl Into<redis::RedisError>) -> Option<String> {
        RedisTls::default().explain(&error.into())
    }

    #[test]
    fn failures_that_retrying_will_not_fix_are_explained() {
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let untrusted = explained(io(Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )))
        .unwrap();
        assert!(untrusted.contains("set REDIS_CA_CERT"), "{untrusted}");
        let expired = explained(Error::InvalidCertificate(CertificateError::Expired)).unwrap();
        assert!(
            expired.contains("not valid (Expired)") && expired.contains("dates"),
            "{expired}"
        );
        let not_tls = explained(io(Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )))
        .unwrap();
        assert!(not_tls.contains("TLS port"), "{not_tls}");
        // As a cluster reports it: text only.
        let cluster = redis::RedisError::from((
            redis::ErrorKind::Io,
            "Failed to create initial connections",
            io(Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            ))
            .to_string(),
        ));
        let client = explained(cluster).unwrap();
        assert!(client.contains("set REDIS_CLIENT_CERT"), "{client}");
        for line in [untrusted, expired, not_tls, client] {
            assert!(line.starts_with("TLS to Redis failed: ") && !line.contains('\n'));
        }

        // Redis not up (yet) is not a TLS failure: start-up waits for it.
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(explained(refused), None);
    }

    #[test]
    fn only_rediss_urls_use_tls() {
        assert!(uses_tls("rediss://h:6380"));
        assert!(!uses_tls("redis://h:6379") && !uses_tls("redis+unix:///s"));
        assert!(is_insecure("rediss://h:6380/#insecure"));
        assert!(!is_insecure("redis://h:6379/#insecure"));
        assert!(!is_insecure("rediss://h:6380"));
    }
}
