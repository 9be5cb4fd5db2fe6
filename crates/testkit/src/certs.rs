//! Certificates made at test time: a CA of the test's own, and server and
//! client certificates it issues, written as PEM files into a directory
//! that is removed when the [`Pki`] is dropped.

use std::path::{Path, PathBuf};

/// Why a certificate or its file could not be made.
pub type CertError = Box<dyn std::error::Error + Send + Sync>;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// The directory the files live in.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority whose certificate is in [`TestCa::ca_file`].
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Pki {
    /// A fresh directory under the temporary directory.
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ordo-pki-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new CA named `name` (its certificate in `<name>-ca.crt`).
    pub fn ca(&self, name: &str) -> Result<TestCa, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_file = self.dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_file, issuer.pem())?;
        Ok(TestCa {
            issuer,
            ca_file,
            dir: self.dir.clone(),
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestCa {
    /// The CA's certificate (PEM).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A certificate for `names` (DNS names or IP addresses), good for a
    /// server and a client, in `<stem>.crt` and `<stem>.key`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Result<CertFiles, CertError> {
        let (cert, key) = self.issue_pem(stem, names)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        write_files(&files, &cert, &key)?;
        Ok(files)
    }

    /// A certificate for `names` as PEM text (certificate, key), for a
    /// test that writes the files itself (a rotation, say).
    pub fn issue_pem(
        &self,
        common_name: &str,
        names: &[&str],
    ) -> Result<(String, String), CertError> {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )?;
        params.distinguished_name = distinguished_name(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a certificate and key, the key readable by its owner only.
pub fn write_files(files: &CertFiles, cert: &str, key: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(&files.cert, cert)?;
    std::fs::write(&files.key, key)?;
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Ordo tests");
    name
}
