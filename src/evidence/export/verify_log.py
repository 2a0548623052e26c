#!/usr/bin/env python3
"""Checks a glassdrill evidence export without glassdrill: recomputes the
evidence log's RFC 6962 Merkle tree from log/entries.jsonl, checks the
checkpoint's Ed25519 signature (C2SP signed-note) against the key in
allowed_signers, and checks that every exported bundle's SHA256SUMS is the
one the log recorded. Python 3 standard library only.

    python3 verify_log.py [EXPORT_DIR] --allowed-signers YOUR_PINNED_FILE [--signer NAME]

Pin your own copy of the drill host's allowed_signers (obtained
independently): the export's own copy proves nothing about who signed.
Exit 0: all good. Exit 1: a finding (printed).
"""
import base64
import hashlib
import json
import os
import struct
import sys

# ---- Ed25519 verification (RFC 8032, section 6 reference code) ----------
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
Q = 2**252 + 27742317777372353535851937790883648493
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x = (a[1] - a[0]) * (b[1] - b[0]) % P
    y = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def ed25519_verify(public, msg, sig):
    if len(public) != 32 or len(sig) != 64:
        return False
    a = _decompress(public)
    r = _decompress(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % Q
    return _equal(_mul(s, G), _add(r, _mul(h, a)))


# ---- RFC 6962 Merkle tree ------------------------------------------------
def leaf_hash(b):
    return hashlib.sha256(b"\x00" + b).digest()


def tree_hash(leaves):
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k << 1 < n:
        k <<= 1
    return hashlib.sha256(b"\x01" + tree_hash(leaves[:k]) + tree_hash(leaves[k:])).digest()


def ssh_ed25519_key(b64):
    blob = base64.b64decode(b64)
    (n,) = struct.unpack(">I", blob[:4])
    kind, rest = blob[4 : 4 + n], blob[4 + n :]
    (m,) = struct.unpack(">I", rest[:4])
    if kind != b"ssh-ed25519" or m != 32:
        raise ValueError("not an ssh-ed25519 key")
    return rest[4 : 4 + 32]


def key_id(name, public):
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def load_keys(path, signer):
    keys = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            principals = parts[0].strip('"').split(",")
            if signer not in principals or "cert-authority" in line:
                continue
            for i, p in enumerate(parts):
                if p == "ssh-ed25519" and i + 1 < len(parts):
                    keys.append(ssh_ed25519_key(parts[i + 1]))
    return keys


def main(root, pinned, signer):
    findings = []
    with open(os.path.join(root, "export.json")) as f:
        meta = json.load(f)
    signer = signer or meta["signer"]
    keys = load_keys(pinned, signer)
    if not keys:
        print(f"FINDING: {pinned} has no ssh-ed25519 key for {signer}")
        return 1
    with open(os.path.join(root, "log", "entries.jsonl"), "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        findings.append("the log ends in a half-written entry")
        data = data[: data.rfind(b"\n") + 1]
    lines = data.split(b"\n")[:-1] if data else []
    leaves = [leaf_hash(l) for l in lines]
    size = 0
    try:
        with open(os.path.join(root, "log", "checkpoint"), encoding="utf-8") as f:
            note = f.read()
        text, _, sigs = note.rpartition("\n\n")
        text += "\n"
        ok = False
        for line in sigs.splitlines():
            if not line.startswith("\u2014 ") or " " not in line[2:]:
                continue
            name, blob = line[2:].split(" ", 1)
            if name != signer:
                continue
            raw = base64.b64decode(blob)
            for k in keys:
                if raw[:4] == key_id(name, k) and ed25519_verify(k, text.encode(), raw[4:]):
                    ok = True
        if not ok:
            findings.append(f"the checkpoint is not signed by {signer}'s key in {pinned}")
        head = text.split("\n")
        origin, size_text, root_b64 = head[0], head[1], head[2]
        if origin != f"glassdrill-evidence-log/{signer}":
            findings.append(f"the checkpoint is of another log: {origin}")
        if not size_text.isdigit():
            raise ValueError("the checkpoint size is not a number")
        size = int(size_text)
        if size > len(leaves):
            findings.append(f"the checkpoint covers {size} entries, the log has {len(leaves)}: entries were removed")
            size = len(leaves)
        elif tree_hash(leaves[:size]) != base64.b64decode(root_b64):
            findings.append("the log entries do not match the checkpoint: altered, reordered or replaced")
        if size < len(lines):
            findings.append(f"log entries {size}..{len(lines) - 1} are not covered by the checkpoint")
    except (OSError, ValueError, IndexError) as e:
        findings.append(f"the checkpoint cannot be read: {e}")
    # Only what the checkpoint covers counts.
    recorded, pruned = {}, set()
    for i, l in enumerate(lines[:size]):
        try:
            e = json.loads(l)
            kind = e.get("kind")
            key = (e.get("drill", ""), e.get("run", ""))
        except (ValueError, AttributeError):
            findings.append(f"log entry {i} is not a JSON object")
            continue
        if kind == "bundle":
            if key in recorded:
                findings.append(f"log entries record bundle {key[0]}/{key[1]} twice")
            recorded[key] = (e.get("manifest_sha256"), e.get("appended", ""))
        elif kind == "pruned":
            pruned.add(key)
    exported = set()
    for b in meta["bundles"]:
        key = (b["drill"], b["run"])
        exported.add(key)
        path = os.path.join(root, "bundles", b["drill"], b["run"], "SHA256SUMS")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        want = recorded.get(key)
        if want is None:
            findings.append(f"bundle {key[0]}/{key[1]} is not in the log")
        elif want[0] != digest:
            findings.append(f"bundle {key[0]}/{key[1]}: SHA256SUMS differs from the log's record")
    # Every bundle the log recorded in the period is here, or was pruned.
    for key, (_, appended) in recorded.items():
        in_period = meta["from"] <= appended < meta["to"] and (meta.get("drill") in (None, key[0]))
        if in_period and key not in exported and key not in pruned:
            findings.append(f"bundle {key[0]}/{key[1]} is in the log for this period but not in the export (deleted?)")
    for f in findings:
        print("FINDING:", f)
    if not findings:
        print(f"OK: log of {len(leaves)} entries matches its signed checkpoint (size {size}); {len(meta['bundles'])} exported bundles recorded in it; keys from {pinned}")
    return 1 if findings else 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--allowed-signers", required=True, help="your own pinned allowed_signers file")
    ap.add_argument("--signer", help="the signer principal (default: export.json's)")
    a = ap.parse_args()
    sys.exit(main(a.export, a.allowed_signers, a.signer))
