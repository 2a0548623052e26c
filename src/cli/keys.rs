//! `keys list`, `keys check`, `keys soft-new`.

use super::*;
use crate::authenticator::Authenticator as _;
use crate::fido::{self, Fido2Key as _, KeyError, KeyInfo};

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// The FIDO security keys attached now: AAGUID and model, firmware,
    /// options, PIN retries (no PIN needed).
    List(KeysListArgs),
    /// Checks a drill's keys with their PINs: the credential for the
    /// drill's RP id and account is there, the AAGUID matches, the PIN
    /// retry counter is at its maximum.
    Check(KeysCheckArgs),
    /// Creates a software key (`soft`) with one credential: for CI and for
    /// trying the bridge; never for a break-glass account.
    SoftNew(SoftNewArgs),
}

/// `keys list` options.
#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `keys check` options.
#[derive(Debug, Args)]
pub struct KeysCheckArgs {
    /// Drill id (from the drills directory) or path to a drill file.
    pub drill: String,
    /// Only this key of the drill [default: every key].
    #[arg(long)]
    pub key: Option<String>,
}

/// `keys soft-new` options.
#[derive(Debug, Args)]
pub struct SoftNewArgs {
    /// The state file to create (mode 0600; never overwritten).
    pub path: std::path::PathBuf,
    /// RP id of its credential.
    #[arg(long)]
    pub rp_id: String,
    /// The account name stored with the credential.
    #[arg(long)]
    pub user_name: String,
    /// The account's user handle, base64url [default: Entra's handle for
    /// --tenant-id and --object-id, else random].
    #[arg(long, conflicts_with_all = ["tenant_id", "object_id"])]
    pub user_handle: Option<String>,
    /// The account's tenant id: with --object-id, the user handle is
    /// Entra's (`ON:` ‖ tenant GUID ‖ SHA-256 of the object GUID, .NET
    /// byte order), as a key registered in Entra holds.
    #[arg(long, requires = "object_id")]
    pub tenant_id: Option<String>,
    /// The account's object id (with --tenant-id).
    #[arg(long, requires = "tenant_id")]
    pub object_id: Option<String>,
    /// The PIN, by reference (`env:NAME`, `file:PATH`, `credential:NAME`).
    #[arg(long)]
    pub pin: String,
}

/// Runs a `keys` subcommand.
pub(crate) async fn keys(host: &HostConfig, cmd: KeysCommand) -> u8 {
    match cmd {
        KeysCommand::List(a) => list(a).await,
        KeysCommand::Check(a) => check(host, a).await,
        KeysCommand::SoftNew(a) => soft_new(&a),
    }
}

async fn list(a: KeysListArgs) -> u8 {
    let found = fido::blocking(
        std::time::Duration::from_secs(30),
        KeyError::Device("the keys did not answer within 30 s".into()),
        || {
            let devices = fido::hid::devices()?;
            Ok(devices
                .into_iter()
                .map(|d| {
                    let path = d.path.clone();
                    (path, fido::hid::HidKey::new(d).info())
                })
                .collect::<Vec<_>>())
        },
    )
    .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            errln!("error: {e}");
            return 1;
        }
    };
    if a.json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|(path, r)| match r {
                Ok(i) => serde_json::to_value(i).unwrap_or_default(),
                Err(e) => serde_json::json!({"path": path, "error": e.to_string()}),
            })
            .collect();
        out!("{}", serde_json::Value::Array(list));
        return 0;
    }
    if found.is_empty() {
        out!(
            "no FIDO security key is attached (none on HID usage page 0xF1D0). Plug the key in; if it is plugged in, check that deploy/70-glassdrill-fido.rules is installed and that this user is in group glassdrill."
        );
        return 0;
    }
    for (path, r) in &found {
        match r {
            Ok(i) => out!("{}", describe(i)),
            Err(e) => out!("{path}: cannot be read: {e}"),
        }
    }
    0
}

/// One key, as `keys list` shows it.
pub(crate) fn describe(i: &KeyInfo) -> String {
    let opt = |n: &str| match i.option(n) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    format!(
        "{}  {}\n  AAGUID    {}\n  model     {}\n  firmware  {}\n  versions  {}\n  options   clientPin={} rk={} uv={} credMgmt={}\n  PIN retries {}",
        i.path,
        i.product,
        i.aaguid,
        i.model.as_deref().unwrap_or("(not in glassdrill's table)"),
        i.firmware.map_or_else(|| "-".to_owned(), |f| f.to_string()),
        i.versions.join(", "),
        opt("clientPin"),
        opt("rk"),
        opt("uv"),
        opt("credMgmt"),
        i.pin_retries
            .map_or_else(|| "- (no PIN set)".to_owned(), |n| n.to_string()),
    )
}

async fn check(host: &HostConfig, a: KeysCheckArgs) -> u8 {
    let drill = match crate::config::find_drill(&host.drills_dir, &a.drill) {
        Ok(d) => d,
        Err(p) => {
            print_problems(&p);
            return EXIT_USAGE;
        }
    };
    let names: Vec<String> = match &a.key {
        Some(k) => vec![k.clone()],
        None => drill.schedule.keys.clone(),
    };
    if names.is_empty() {
        errln!(
            "error: drill {} names no keys: add [[authenticator.keys]] entries (kind `hid` or `soft`)",
            drill.id
        );
        return EXIT_USAGE;
    }
    let mut failed = false;
    for name in names {
        let auth = match crate::runner::key_authenticator(&drill, &name) {
            Ok(a) => a,
            Err(p) => {
                errln!("error: {p}");
                failed = true;
                continue;
            }
        };
        match auth.preflight().await {
            Ok(notes) => out!("key {name}: OK: {}", notes.join("; ")),
            Err(e) => {
                failed = true;
                out!("key {name}: NOT READY: {e}");
            }
        }
        for f in auth.key_evidence().map(|e| e.findings).unwrap_or_default() {
            out!("  finding: {f}");
        }
    }
    u8::from(failed)
}

fn soft_new(a: &SoftNewArgs) -> u8 {
    let pin = match crate::secret::SecretRef::parse(&a.pin).and_then(|r| r.resolve()) {
        Ok(p) => p,
        Err(e) => {
            errln!("error: --pin: {e}");
            return EXIT_USAGE;
        }
    };
    let user_handle = match (&a.user_handle, &a.tenant_id, &a.object_id) {
        (None, Some(t), Some(o)) => match crate::webauthn::entra_user_handle(t, o) {
            Ok(h) => h,
            Err(e) => {
                errln!("error: {e}: pass --tenant-id and --object-id as GUIDs");
                return EXIT_USAGE;
            }
        },
        (None, _, _) => crate::secret::random_bytes(16),
        (Some(u), _, _) => {
            use base64::Engine as _;
            match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(u.trim_end_matches('=')) {
                Ok(b) => b,
                Err(_) => {
                    errln!("error: --user-handle must be base64url");
                    return EXIT_USAGE;
                }
            }
        }
    };
    match fido::soft::SoftKey::create(
        &a.path,
        &fido::soft::NewSoftKey {
            rp_id: &a.rp_id,
            user_handle: &user_handle,
            user_name: &a.user_name,
            pin: &pin,
        },
    ) {
        Ok((key, id, _)) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            out!("soft key {}", key.path().display());
            out!("  aaguid        {}", fido::soft::SOFT_AAGUID);
            out!("  credential_id {}", b64.encode(id));
            out!("  user_handle   {}", b64.encode(&user_handle));
            if let Ok(i) = key.info() {
                out!("  PIN retries   {}", i.pin_retries.unwrap_or(0));
            }
            0
        }
        Err(e) => {
            errln!("error: {e}");
            1
        }
    }
}
