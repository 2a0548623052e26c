//! `glassdrill tenant`: the rehearsal tenant on its own, for trying the
//! flow by hand (e.g. with Chromium's DevTools WebAuthn panel) or pointing
//! other tools at its Graph and token endpoints. The session's credential
//! and client secret are written under `<data>/rehearsal/` (mode 0600),
//! never printed; the CLI prints where they are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{Fault, RehearsalTenant, TenantError, TenantOptions};
use crate::authenticator::Credential;
use crate::config::HostConfig;
use crate::support::fs::{Existing, PRIVATE_FILE, write_atomic};
use crate::webauthn::KeyError;

/// The rehearsal account's UPN.
pub const REHEARSAL_UPN: &str = "breakglass1@rehearsal.onmicrosoft.com";

/// Why the stand-alone tenant could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A file under `<data>/rehearsal/` cannot be written.
    #[error("cannot write {}: {source}; check the data directory's owner and free space", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The session credential cannot be made.
    #[error("cannot make the session credential: {0}")]
    Credential(#[from] KeyError),
    /// The tenant cannot listen.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// A running stand-alone tenant and where its secrets were written.
pub struct Console {
    /// The tenant.
    pub tenant: RehearsalTenant,
    /// The session credential.
    pub credential: Credential,
    /// Its PKCS#8 key file.
    pub key_path: PathBuf,
    /// The client-secret file.
    pub secret_path: PathBuf,
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConsoleError> {
    write_atomic(path, bytes, PRIVATE_FILE, Existing::Replace).map_err(|source| {
        ConsoleError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Starts the tenant with a fresh credential and client secret.
pub async fn start(
    host: &HostConfig,
    listen: SocketAddr,
    faults: Vec<Fault>,
    alert_delay: Duration,
    webhook_url: Option<String>,
) -> Result<Console, ConsoleError> {
    let dir = host.data_dir.join("rehearsal");
    crate::support::fs::create_private_dirs(&dir).map_err(|source| ConsoleError::Write {
        path: dir.clone(),
        source,
    })?;
    let credential = Credential::generate(super::RP_ID, super::rehearsal_user_handle())?;
    let account = super::rehearsal_account(REHEARSAL_UPN, &credential)?;
    let client_secret = SecretString::from(crate::secret::random_token(24));
    let key_path = dir.join("credential.pk8");
    let secret_path = dir.join("client-secret");
    write_private(&key_path, credential.pkcs8.expose_secret())?;
    write_private(&secret_path, client_secret.expose_secret().as_bytes())?;
    let tenant = RehearsalTenant::start(TenantOptions {
        account,
        client_id: "glassdrill-rehearsal".into(),
        client_secret,
        faults,
        alert_delay,
        alert_late_delay: alert_delay.saturating_add(Duration::from_secs(60)),
        alert_rules: Vec::new(),
        log_delay: Duration::from_secs(5),
        webhook_url,
        listen,
        allow_list: false,
        lax_session_cookie: false,
        secure_webhook: None,
    })
    .await?;
    Ok(Console {
        tenant,
        credential,
        key_path,
        secret_path,
    })
}
