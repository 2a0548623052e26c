//! A real security key over USB HID, through `ctap-hid-fido2`.
//!
//! Devices are listed with `hidapi` directly (FIDO usage page 0xF1D0), so a
//! host without HID access gets an error rather than the driver's panic;
//! every call into the driver runs inside [`super::blocking`], which turns a
//! driver panic into an error. The driver's keep-alive message ("touch the
//! sensor") is switched off: glassdrill raises its own touch-needed event
//! and never writes to stdout from here.

use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use ctap_hid_fido2::fidokey::get_assertion::get_assertion_params::GetAssertionArgsBuilder;
use ctap_hid_fido2::{FidoKeyHid, HidParam, LibCfg};

use super::{AssertionRequest, Fido2Key, HeldCredential, KeyAssertion, KeyError, KeyInfo};

/// FIDO Alliance HID usage page (CTAP 2.1 §11.2.8.1).
const FIDO_USAGE_PAGE: u16 = 0xF1D0;

/// An attached FIDO device, as HID enumerates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The hidraw path.
    pub path: String,
    /// USB vendor and product id.
    pub vid_pid: (u16, u16),
    /// Product string.
    pub product: String,
}

/// The FIDO devices attached now (none is not an error).
pub fn devices() -> Result<Vec<Device>, KeyError> {
    let api = hidapi::HidApi::new()
        .map_err(|e| KeyError::Device(format!("HID devices cannot be listed: {e}")))?;
    let mut out: Vec<Device> = api
        .device_list()
        .filter(|d| d.usage_page() == FIDO_USAGE_PAGE)
        .filter_map(|d| {
            Some(Device {
                path: d.path().to_str().ok()?.to_owned(),
                vid_pid: (d.vendor_id(), d.product_id()),
                product: d.product_string().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn cfg() -> LibCfg {
    let mut cfg = LibCfg::init();
    cfg.enable_log = false;
    cfg.enable_keep_alive_msg = false;
    cfg.keep_alive_msg = String::new();
    cfg
}

/// One attached key, opened by path for each operation (a key unplugged
/// and plugged back in gets a new handle).
#[derive(Debug, Clone)]
pub struct HidKey {
    device: Device,
}

impl HidKey {
    /// The key at `device`.
    pub fn new(device: Device) -> Self {
        Self { device }
    }

    fn open(&self, credential_management: bool) -> Result<FidoKeyHid, KeyError> {
        let mut c = cfg();
        c.use_pre_credential_management = !credential_management;
        FidoKeyHid::new(&[HidParam::Path(self.device.path.clone())], &c)
            .map_err(|e| KeyError::Unplugged(format!("{} cannot be opened: {e}", self.device.path)))
    }
}

/// Maps the driver's errors (anyhow text carrying the CTAP status name) to
/// what a drill reports.
fn classify(e: &anyhow::Error, retries: impl FnOnce() -> Option<u32>) -> KeyError {
    let text = e.to_string();
    if text.contains("CTAP2_ERR_PIN_INVALID") {
        KeyError::PinInvalid {
            retries_left: retries(),
        }
    } else if text.contains("CTAP2_ERR_PIN_BLOCKED") {
        KeyError::PinBlocked
    } else if text.contains("CTAP2_ERR_PIN_AUTH_BLOCKED") {
        KeyError::PinAuthBlocked
    } else if text.contains("CTAP2_ERR_NO_CREDENTIALS") {
        KeyError::NoCredential("the requested RP id".into())
    } else if text.contains("read err") || text.contains("write error") {
        KeyError::Unplugged(text)
    } else {
        KeyError::Device(text)
    }
}

/// The PIN retries a key says are left, for a wrong-PIN message.
fn retries_left(key: &FidoKeyHid) -> Option<u32> {
    key.get_pin_retries()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

impl Fido2Key for HidKey {
    fn needs_touch(&self) -> bool {
        true
    }

    fn info(&self) -> Result<KeyInfo, KeyError> {
        let key = self.open(false)?;
        let info = key.get_info().map_err(|e| classify(&e, || None))?;
        let aaguid_bytes: [u8; 16] = info
            .aaguid
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Device(format!("AAGUID of {} bytes", info.aaguid.len())))?;
        let client_pin = info.options.iter().any(|(n, v)| n == "clientPin" && *v);
        let pin_retries = if client_pin {
            // A key that would not say is an error, not "no PIN": the
            // latter is a finding that holds the drill.
            let n = key.get_pin_retries().map_err(|e| classify(&e, || None))?;
            Some(
                u32::try_from(n)
                    .map_err(|_| KeyError::Device(format!("the key reports {n} PIN retries")))?,
            )
        } else {
            None
        };
        Ok(KeyInfo {
            path: self.device.path.clone(),
            product: self.device.product.clone(),
            aaguid: super::format_aaguid(&aaguid_bytes),
            model: super::aaguid::model_name(&aaguid_bytes).map(str::to_owned),
            firmware: (info.firmware_version != 0).then_some(info.firmware_version),
            versions: info.versions,
            options: info.options,
            pin_retries,
        })
    }

    fn holds(&self, rp_id: &str, id: &[u8]) -> Result<bool, KeyError> {
        let key = self.open(false)?;
        // A silent probe: no PIN, no touch; the client data hash is of a
        // fixed text (the assertion is thrown away).
        let args =
            GetAssertionArgsBuilder::new(rp_id, b"glassdrill: does this key hold the credential?")
                .credential_id(id)
                .without_pin_and_uv()
                .without_up()
                .build();
        match key.get_assertion_with_args(&args) {
            Ok(list) => Ok(list.iter().any(|a| a.credential_id == id)),
            Err(e) => match classify(&e, || None) {
                KeyError::NoCredential(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    fn credentials(
        &self,
        rp_id: &str,
        pin: &SecretString,
    ) -> Result<Vec<HeldCredential>, KeyError> {
        let probe = self.open(false)?;
        let info = probe.get_info().map_err(|e| classify(&e, || None))?;
        let full = info.options.iter().any(|(n, v)| n == "credMgmt" && *v);
        let preview = info
            .options
            .iter()
            .any(|(n, v)| n == "credentialMgmtPreview" && *v);
        if !full && !preview {
            return Err(KeyError::Device(
                "the key does not support credential management (CTAP 2.1 credMgmt), so glassdrill cannot confirm it holds the account's credential".into(),
            ));
        }
        drop(probe);
        let key = self.open(full)?;
        let rp_hash = Sha256::digest(rp_id.as_bytes()).to_vec();
        let retries = || retries_left(&key);
        match key.credential_management_enumerate_credentials(Some(pin.expose_secret()), &rp_hash) {
            Ok(list) => Ok(list
                .into_iter()
                .filter(|c| !c.public_key_credential_descriptor.id.is_empty())
                .map(|c| HeldCredential {
                    id: c.public_key_credential_descriptor.id,
                    user_handle: c.public_key_credential_user_entity.id,
                    user_name: Some(c.public_key_credential_user_entity.name)
                        .filter(|n| !n.is_empty()),
                })
                .collect()),
            Err(e) => match classify(&e, retries) {
                KeyError::NoCredential(_) => Ok(Vec::new()),
                other => Err(other),
            },
        }
    }

    fn get_assertion(&self, req: &AssertionRequest<'_>) -> Result<KeyAssertion, KeyError> {
        let key = self.open(false)?;
        // The driver hashes its "challenge" argument into clientDataHash:
        // handing it the clientDataJSON bytes makes that SHA-256(clientDataJSON).
        let mut b = GetAssertionArgsBuilder::new(req.rp_id, req.client_data_json);
        for id in req.allow {
            b = b.add_credential_id(id);
        }
        if let Some(p) = req.pin {
            b = b.pin(p.expose_secret());
        } else {
            b = b.without_pin_and_uv();
        }
        let args = b.build();
        let retries = || retries_left(&key);
        let mut list = key
            .get_assertion_with_args(&args)
            .map_err(|e| classify(&e, retries))?;
        if list.len() != 1 {
            // Several discoverable credentials for the RP: the page must
            // name one (allowCredentials); never pick one here.
            return Err(KeyError::Device(format!(
                "the key holds {} credentials for {} and the page named none; configure the credential id",
                list.len(),
                req.rp_id
            )));
        }
        let a = list.remove(0);
        Ok(KeyAssertion {
            credential_id: a.credential_id,
            authenticator_data: a.auth_data,
            signature: a.signature,
            user_handle: Some(a.user.id).filter(|u| !u.is_empty()),
        })
    }
}
