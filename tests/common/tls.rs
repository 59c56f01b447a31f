//! Certificates for the TLS tests, made fresh for each test (rcgen) in a
//! temp dir: a CA, a server certificate it signs for `127.0.0.1` and
//! `localhost`, a client certificate it signs, and a second, unrelated CA
//! with a client certificate of its own.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use redis_chat::server::redis_tls::{install_crypto_provider, RedisTls};
use std::path::PathBuf;

pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rc-pki-")
            .tempdir_in("/tmp")
            .unwrap();
        let pki = Self { dir };
        let ca = new_ca("redis-chat test CA");
        pki.write("ca.crt", &ca.pem());
        let other = new_ca("an unrelated CA");
        pki.write("other-ca.crt", &other.pem());
        // A cluster node is also a TLS client of the others (the bus).
        let server_use = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let client_use = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let localhost = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for (name, usages, sans, issuer) in [
            ("server", server_use, localhost, &ca),
            ("client", client_use.clone(), vec![], &ca),
            ("stranger", client_use, vec![], &other),
        ] {
            let mut params = CertificateParams::new(sans).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("redis-chat test {name}"));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = usages;
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            pki.write(&format!("{name}.crt"), &cert.pem());
            pki.write(&format!("{name}.key"), &key.serialize_pem());
        }
        pki
    }

    /// A file of this PKI: `ca.crt`, `other-ca.crt`, `server.crt`,
    /// `server.key`, `client.crt`, `client.key`, and `stranger.crt`,
    /// `stranger.key` (a client certificate of the unrelated CA).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`Self::path`] as a string, for settings.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.path(name), pem).unwrap();
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// How a test `redis-server` serves TLS: with the PKI's server
/// certificate, trusting its CA for client certificates.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `--tls-auth-clients yes`: only clients with a certificate of the CA.
    pub auth_clients: bool,
    /// What the harness's own connections use: the CA and the client
    /// certificate.
    pub harness: RedisTls,
    /// The same for `redis-cli`.
    pub cli_args: Vec<String>,
}

impl TestPki {
    pub fn server(&self, auth_clients: bool) -> ServerTls {
        install_crypto_provider();
        ServerTls {
            cert: self.path("server.crt"),
            key: self.path("server.key"),
            ca: self.path("ca.crt"),
            auth_clients,
            harness: self.tls(true),
            cli_args: [
                "--tls",
                "--cacert",
                "ca.crt",
                "--cert",
                "client.crt",
                "--key",
                "client.key",
            ]
            .iter()
            .map(|a| match a.strip_prefix("--") {
                Some(_) => a.to_string(),
                None => self.file(a),
            })
            .collect(),
        }
    }

    /// The settings `REDIS_CA_CERT` (this PKI's CA) and, `with_client`,
    /// `REDIS_CLIENT_CERT`/`REDIS_CLIENT_KEY` would give.
    pub fn tls(&self, with_client: bool) -> RedisTls {
        let (cert, key) = (self.path("client.crt"), self.path("client.key"));
        RedisTls::load(
            Some(&self.path("ca.crt")),
            with_client.then_some(cert.as_path()),
            with_client.then_some(key.as_path()),
        )
        .unwrap()
    }
}

impl ServerTls {
    /// `redis-server` arguments: TLS only, on `port`; for a cluster node
    /// also on the bus (`--tls-cluster`) and to replicas.
    pub fn args(&self, port: u16, cluster: bool) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(port.to_string());
        for (flag, path) in [
            ("--tls-cert-file", &self.cert),
            ("--tls-key-file", &self.key),
            ("--tls-ca-cert-file", &self.ca),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args.push("--tls-auth-clients".into());
        args.push(if self.auth_clients { "yes" } else { "no" }.into());
        if cluster {
            for flag in ["--tls-cluster", "--tls-replication"] {
                args.push(flag.into());
                args.push("yes".into());
            }
        }
        args
    }
}
