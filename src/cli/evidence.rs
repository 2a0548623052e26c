//! `evidence verify`.

use super::*;
use crate::evidence;

pub(crate) fn verify(a: VerifyArgs) -> u8 {
    match evidence::verify_bundle_all(&a.bundle, a.allowed_signers.as_deref()) {
        Ok(v) => {
            out!(
                "OK: {} files verified; signed by {} ({})",
                v.files.len(),
                v.signer,
                v.fingerprint
            );
            match evidence::read_record(&v) {
                Ok(r) => out!(
                    "record: drill {} run {} for {}: {} (schema {} v{})",
                    r.drill.id,
                    r.run_id,
                    r.drill.account,
                    r.verdict,
                    r.schema,
                    r.schema_version
                ),
                Err(e) => {
                    errln!("FAILED: {e}");
                    return 1;
                }
            }
            if a.allowed_signers.is_none() {
                out!(
                    "note: checked against the bundle's own allowed_signers; pass --allowed-signers with a key you trust to prove who signed"
                );
            }
            0
        }
        Err(errors) => {
            for e in &errors {
                errln!("FAILED: {e}");
            }
            1
        }
    }
}
