//! Model names for common FIDO2 hardware security keys, looked up by AAGUID.
//!
//! An AAGUID (authenticator attestation GUID, 16 bytes) names an
//! authenticator *model and firmware line*, not a single SKU: one AAGUID is
//! shared by every key of that line (for instance the YubiKey 5 NFC and
//! 5C NFC on firmware 5.7), and one key model gets a new AAGUID when its
//! FIDO2 feature set changes. The names below are for display only; an
//! AAGUID that is not in the table is unknown, not untrusted, and a name
//! found here proves nothing about the key (only attestation does).
//!
//! Every entry was copied from, and checked character by character against,
//! one of these public sources:
//!
//! - Yubico's list "YubiKey hardware FIDO2 AAGUIDs"
//!   (<https://support.yubico.com/s/article/YubiKey-hardware-FIDO2-AAGUIDs>,
//!   short link <https://yubi.co/aaguids>),
//!   read through its tabulation by model and firmware in the GitHub
//!   repository `JMarkstrom/aaguids`, file `aaguids.csv` (commit
//!   1e4c8190023b, 2025-11-08). All YubiKey and Security Key entries come
//!   from there, and each AAGUID was also found, with a matching product
//!   line, in the MDS-derived list below. Several models share an AAGUID; a
//!   name lists each model Yubico gives for it at that firmware (CSPN
//!   variants left out of the names).
//! - The community list `passkeydeveloper/passkey-authenticator-aaguids`,
//!   file `combined_aaguid.json` (commit c76c72d69f92, MDS version 179,
//!   2025-07-02; it merges the FIDO Alliance Metadata Service, MDS3, with
//!   hand-added entries), and the same repository's per-AAGUID
//!   `dist/<aaguid>/meta.json` files (commit b976141b732e, 2026-06-12). The
//!   non-Yubico names are that list's names, verbatim (trailing spaces
//!   trimmed).
//! - Nitrokey's firmware repository `Nitrokey/nitrokey-3-firmware`, file
//!   `docs/identifiers.md`, for the Nitrokey 3 xN AAGUID (not in the MDS
//!   list).

/// (AAGUID as lower-case 8-4-4-4-12 hex, model name), one entry per AAGUID.
const KNOWN: &[(&str, &str)] = &[
    // Yubico YubiKey 5 Series (Yubico's AAGUID list; model, firmware).
    (
        "cb69481e-8ff7-4039-93ec-0a2729a154a8",
        "YubiKey 5 / 5 Nano / 5C / 5C Nano (firmware 5.1)",
    ),
    (
        "ee882879-721c-4913-9775-3dfcce97072a",
        "YubiKey 5 / 5 Nano / 5C / 5C Nano (firmware 5.2 / 5.4)",
    ),
    (
        "19083c3d-8383-4b18-bc03-8f1c9ab2fd1b",
        "YubiKey 5 Nano / 5C / 5C Nano (firmware 5.7)",
    ),
    (
        "ff4dac45-ede8-4ec2-aced-cf66103f4335",
        "YubiKey 5 Nano / 5C / 5C Nano (firmware 5.7)",
    ),
    (
        "fa2b99dc-9e39-4257-8f92-4a30d23c4118",
        "YubiKey 5 NFC (firmware 5.1)",
    ),
    (
        "2fc0579f-8113-47ea-b116-bb5a8db9202a",
        "YubiKey 5 NFC / 5C NFC (firmware 5.2 / 5.4)",
    ),
    (
        "a25342c0-3cdc-4414-8e46-f4807fca511c",
        "YubiKey 5 NFC / 5C NFC (firmware 5.7)",
    ),
    (
        "d7781e5d-e353-46aa-afe2-3ca49f13332a",
        "YubiKey 5 NFC / 5C NFC (firmware 5.7)",
    ),
    (
        "662ef48a-95e2-4aaa-a6c1-5b9c40375824",
        "YubiKey 5 NFC / 5C NFC Enhanced PIN (firmware 5.7)",
    ),
    (
        "c5ef55ff-ad9a-4b9f-b580-adebafe026d0",
        "YubiKey 5Ci (firmware 5.2 / 5.4)",
    ),
    (
        "a02167b9-ae71-4ac7-9a07-06432ebb6f1c",
        "YubiKey 5Ci (firmware 5.7)",
    ),
    (
        "24673149-6c86-42e7-98d9-433fb5b73296",
        "YubiKey 5Ci (firmware 5.7)",
    ),
    // Yubico YubiKey 5 FIPS Series.
    (
        "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd",
        "YubiKey 5 NFC FIPS / 5C NFC FIPS (firmware 5.4)",
    ),
    (
        "fcc0118f-cd45-435b-8da1-9782b2da0715",
        "YubiKey 5 NFC FIPS / 5C NFC FIPS (firmware 5.7)",
    ),
    (
        "73bb0cd4-e502-49b8-9c6f-b59445bf720b",
        "YubiKey 5 Nano FIPS / 5C FIPS / 5C Nano FIPS (firmware 5.4)",
    ),
    (
        "57f7de54-c807-4eab-b1c6-1c9be7984e92",
        "YubiKey 5 Nano FIPS / 5C FIPS / 5C Nano FIPS (firmware 5.7)",
    ),
    (
        "85203421-48f9-4355-9bc8-8a53846e5083",
        "YubiKey 5Ci FIPS (firmware 5.4)",
    ),
    (
        "7b96457d-e3cd-432b-9ceb-c9fdd7ef7432",
        "YubiKey 5Ci FIPS (firmware 5.7)",
    ),
    // Yubico YubiKey Bio Series.
    (
        "d8522d9f-575b-4866-88a9-ba99fa02f35b",
        "YubiKey Bio FIDO Edition (firmware 5.5 / 5.6)",
    ),
    (
        "dd86a2da-86a0-4cbe-b462-4bd31f57bc6f",
        "YubiKey Bio FIDO Edition (firmware 5.7)",
    ),
    (
        "7409272d-1ff9-4e10-9fc9-ac0019c124fd",
        "YubiKey Bio FIDO Edition (firmware 5.7)",
    ),
    (
        "7d1351a6-e097-4852-b8bf-c9ac5c9ce4a3",
        "YubiKey Bio Multi-protocol Edition (firmware 5.6)",
    ),
    (
        "90636e1f-ef82-43bf-bdcf-5255f139d12f",
        "YubiKey Bio Multi-protocol Edition (firmware 5.7)",
    ),
    (
        "34744913-4f57-4e6e-a527-e9ec3c4b94e6",
        "YubiKey Bio Multi-protocol Edition (firmware 5.7)",
    ),
    // Yubico Security Key Series (FIDO-only keys).
    (
        "f8a011f3-8c0a-4d15-8006-17111f9edc7d",
        "Security Key by Yubico (firmware 5.1)",
    ),
    (
        "b92c3f9a-c014-4056-887f-140a2501163b",
        "Security Key by Yubico (firmware 5.2 / 5.4)",
    ),
    (
        "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73",
        "Security Key NFC by Yubico (firmware 5.1)",
    ),
    (
        "149a2021-8ef6-4133-96b8-81f8d5b7f1f5",
        "Security Key NFC by Yubico (firmware 5.2 / 5.4)",
    ),
    (
        "a4e9fc6d-4cbe-4758-b8ba-37598bb5bbaa",
        "Security Key NFC by Yubico (firmware 5.4)",
    ),
    (
        "e77e3c64-05e3-428b-8824-0cbeb04b829d",
        "Security Key NFC by Yubico (firmware 5.7)",
    ),
    (
        "b7d3f68e-88a6-471e-9ecf-2df26d041ede",
        "Security Key NFC by Yubico (firmware 5.7)",
    ),
    (
        "0bb43545-fd2c-4185-87dd-feb0b2916ace",
        "Security Key NFC by Yubico - Enterprise Edition (firmware 5.4)",
    ),
    (
        "47ab2fb4-66ac-4184-9ae1-86be814012d5",
        "Security Key NFC by Yubico - Enterprise Edition (firmware 5.7)",
    ),
    (
        "ed042a3a-4b22-4455-bb69-a267b652ae7e",
        "Security Key NFC by Yubico - Enterprise Edition (firmware 5.7)",
    ),
    // Feitian.
    (
        "833b721a-ff5f-4d00-bb2e-bdda3ec01e29",
        "Feitian ePass FIDO2 Authenticator",
    ),
    (
        "ee041bce-25e5-4cdb-8f86-897fd6418464",
        "Feitian ePass FIDO2-NFC Authenticator",
    ),
    (
        "77010bd7-212a-4fc9-b236-d2ca5e9d4084",
        "Feitian BioPass FIDO2 Authenticator",
    ),
    (
        "b6ede29c-3772-412c-8a78-539c1f4c62d2",
        "Feitian BioPass FIDO2 Plus Authenticator",
    ),
    (
        "12ded745-4bed-47d4-abaa-e713f51d6393",
        "Feitian AllinOne FIDO2 Authenticator",
    ),
    // Google.
    (
        "42b4fb4a-2866-43b2-9bf7-6c6669c2e5d3",
        "Google Titan Security Key v2",
    ),
    // Nitrokey.
    ("2cd2f727-f6ca-44da-8f48-5c2e5da000a2", "Nitrokey 3 AM"),
    ("ec99db19-cd1f-4c06-a2a9-940f17a6a30b", "Nitrokey 3 xN"),
    // SoloKeys (Solo 1; no public source for a Solo 2 AAGUID was found).
    (
        "8876631b-d4a0-427f-5773-0ec71c9e0279",
        "Solo Secp256R1 FIDO2 CTAP2 Authenticator",
    ),
    // Token2.
    (
        "ab32f0c6-2239-afbb-c470-d2ef4e254db7",
        "TOKEN2 FIDO2 Security Key",
    ),
    (
        "eabb46cc-e241-80bf-ae9e-96fa6d2975cf",
        "TOKEN2 PIN Plus Security Key Series",
    ),
    // Thales (SafeNet, formerly Gemalto).
    (
        "74820b05-a6c9-40f9-8fb0-9f86aca93998",
        "SafeNet eToken Fusion",
    ),
    (
        "efb96b10-a9ee-4b6c-a4a9-d32125ccd4a4",
        "Safenet eToken FIDO",
    ),
    (
        "4d41190c-7beb-4a84-8018-adf265a6352d",
        "Thales IDPrime FIDO Bio",
    ),
    // uTrust.
    (
        "73402251-f2a8-4f03-873e-3cb6db604b03",
        "uTrust FIDO2 Security Key",
    ),
];

/// The model name for a known hardware security key AAGUID, or `None`.
pub fn model_name(aaguid: &[u8; 16]) -> Option<&'static str> {
    let key = format_aaguid(aaguid);
    KNOWN
        .iter()
        .find(|(known, _)| *known == key)
        .map(|(_, name)| *name)
}

/// Formats an AAGUID as lower-case 8-4-4-4-12 hex, e.g.
/// `cb69481e-8ff7-4039-93ec-0a2729a154a8`.
pub fn format_aaguid(aaguid: &[u8; 16]) -> String {
    let h = hex::encode(aaguid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses an AAGUID written as 8-4-4-4-12 hex with hyphens, or as 32 hex
/// digits without any, in either case. Anything else (other lengths,
/// hyphens elsewhere, non-hex characters, surrounding spaces) is `None`.
pub fn parse_aaguid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    let digits: Vec<u8> = match bytes.len() {
        32 => bytes.to_vec(),
        36 => {
            let hyphens_in_place = bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
            if !hyphens_in_place {
                return None;
            }
            bytes.iter().copied().filter(|&b| b != b'-').collect()
        }
        _ => return None,
    };
    let mut out = [0u8; 16];
    hex::decode_to_slice(&digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const YUBIKEY_5_NFC_57: [u8; 16] = [
        0xa2, 0x53, 0x42, 0xc0, 0x3c, 0xdc, 0x44, 0x14, 0x8e, 0x46, 0xf4, 0x80, 0x7f, 0xca, 0x51,
        0x1c,
    ];

    #[test]
    fn format_is_lower_case_8_4_4_4_12() {
        assert_eq!(
            format_aaguid(&YUBIKEY_5_NFC_57),
            "a25342c0-3cdc-4414-8e46-f4807fca511c"
        );
        assert_eq!(
            format_aaguid(&[0u8; 16]),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            format_aaguid(&[0xff; 16]),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        let samples: [[u8; 16]; 4] = [
            [0u8; 16],
            [0xff; 16],
            YUBIKEY_5_NFC_57,
            std::array::from_fn(|i| (i as u8).wrapping_mul(17).wrapping_add(3)),
        ];
        for aaguid in samples {
            let text = format_aaguid(&aaguid);
            assert_eq!(text.len(), 36);
            assert_eq!(parse_aaguid(&text), Some(aaguid), "{text}");
            assert_eq!(format_aaguid(&parse_aaguid(&text).unwrap()), text);
        }
    }

    #[test]
    fn parse_accepts_compact_and_either_case() {
        let want = Some(YUBIKEY_5_NFC_57);
        assert_eq!(parse_aaguid("a25342c0-3cdc-4414-8e46-f4807fca511c"), want);
        assert_eq!(parse_aaguid("A25342C0-3CDC-4414-8E46-F4807FCA511C"), want);
        assert_eq!(parse_aaguid("a25342C0-3cDc-4414-8e46-F4807fca511c"), want);
        assert_eq!(parse_aaguid("a25342c03cdc44148e46f4807fca511c"), want);
        assert_eq!(parse_aaguid("A25342C03CDC44148E46F4807FCA511C"), want);
    }

    #[test]
    fn parse_rejects_wrong_length() {
        for bad in [
            "",
            "a25342c0",
            "a25342c03cdc44148e46f4807fca511",
            "a25342c03cdc44148e46f4807fca511c0",
            "a25342c0-3cdc-4414-8e46-f4807fca511",
            "a25342c0-3cdc-4414-8e46-f4807fca511c0",
            "a25342c0-3cdc-4414-8e46-f4807fca511c-",
            " a25342c0-3cdc-4414-8e46-f4807fca511c",
            "a25342c0-3cdc-4414-8e46-f4807fca511c\n",
            "{a25342c0-3cdc-4414-8e46-f4807fca511c}",
        ] {
            assert_eq!(parse_aaguid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_rejects_non_hex() {
        for bad in [
            "g25342c0-3cdc-4414-8e46-f4807fca511c",
            "a25342c0-3cdc-4414-8e46-f4807fca511z",
            "a25342c0 3cdc 4414 8e46 f4807fca511c",
            "a25342c0_3cdc_4414_8e46_f4807fca511c",
            "+25342c0-3cdc-4414-8e46-f4807fca511c",
            "a25342c03cdc44148e46f4807fca511g",
            "0xa25342c03cdc44148e46f4807fca51",
            // 32 bytes, but two of them are one non-ASCII character.
            "é25342c03cdc44148e46f4807fca511",
        ] {
            assert_eq!(parse_aaguid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_rejects_misplaced_hyphens() {
        for bad in [
            "a25342c-03cdc-4414-8e46-f4807fca511c",
            "a25342c03-cdc-4414-8e46-f4807fca511c",
            "a25342c0-3cdc4-414-8e46-f4807fca511c",
            "a25342c0-3cdc-44148-e46-f4807fca511c",
            "a25342c0-3cdc-4414-8e46f-4807fca511c",
            "a25342c0--3cdc4414-8e46-f4807fca511c",
            "-a25342c03cdc-4414-8e46-f4807fca511c",
            // 32 characters, so no room for hyphens at all.
            "a25342c-3cd-441-8e4-f4807fca511c",
            "a25342c03cdc44148e46f4807fca511-",
        ] {
            assert_eq!(parse_aaguid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_entry_is_canonical_unique_and_named() {
        let mut seen = HashSet::new();
        for (text, name) in KNOWN {
            let parsed = parse_aaguid(text);
            assert!(parsed.is_some(), "{text} does not parse");
            let aaguid = parsed.unwrap();
            assert_eq!(&format_aaguid(&aaguid), text, "{text} is not canonical");
            assert_eq!(model_name(&aaguid), Some(*name), "{text}");
            assert!(seen.insert(aaguid), "{text} is listed twice");
            assert!(!name.is_empty(), "{text} has no name");
            assert_eq!(name.trim(), *name, "{text} name has stray spaces");
        }
        assert!((25..=50).contains(&KNOWN.len()), "{}", KNOWN.len());
    }

    #[test]
    fn well_known_keys_resolve() {
        assert_eq!(
            model_name(&YUBIKEY_5_NFC_57),
            Some("YubiKey 5 NFC / 5C NFC (firmware 5.7)")
        );
        let five_nfc_52 = parse_aaguid("2fc0579f-8113-47ea-b116-bb5a8db9202a").unwrap();
        assert_eq!(
            model_name(&five_nfc_52),
            Some("YubiKey 5 NFC / 5C NFC (firmware 5.2 / 5.4)")
        );
        let security_key_nfc = parse_aaguid("149A20218EF6413396B881F8D5B7F1F5").unwrap();
        assert_eq!(
            model_name(&security_key_nfc),
            Some("Security Key NFC by Yubico (firmware 5.2 / 5.4)")
        );
        let titan = parse_aaguid("42b4fb4a-2866-43b2-9bf7-6c6669c2e5d3").unwrap();
        assert_eq!(model_name(&titan), Some("Google Titan Security Key v2"));
    }

    #[test]
    fn unknown_and_zero_aaguids_have_no_name() {
        // The all-zero AAGUID carries no model identity.
        assert_eq!(model_name(&[0u8; 16]), None);
        assert_eq!(model_name(&[0xff; 16]), None);
        let mut near_miss = YUBIKEY_5_NFC_57;
        near_miss[15] ^= 1;
        assert_eq!(model_name(&near_miss), None);
    }
}
