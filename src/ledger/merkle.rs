//! RFC 6962 (§2.1) Merkle tree hashes, inclusion and consistency proofs,
//! and their verification (RFC 9162 §2.1.3.2 and §2.1.4.2). Pure functions
//! over leaf hashes.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (`n` > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle Tree Hash of `leaves` (leaf hashes); of no leaves, the hash
/// of the empty string.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The tree hashes of the prefixes of `leaves` of each size in `sizes`, in
/// one pass: RFC 6962's tree of n leaves is its perfect subtrees (the
/// binary digits of n) folded from the right, kept as a stack while the
/// leaves go by.
pub fn prefix_roots(
    leaves: &[Hash],
    sizes: &std::collections::BTreeSet<usize>,
) -> std::collections::HashMap<usize, Hash> {
    let mut out = std::collections::HashMap::new();
    if sizes.contains(&0) {
        out.insert(0, root(&[]));
    }
    // (height, hash) of perfect subtrees, largest first.
    let mut stack: Vec<(u32, Hash)> = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let mut cur = (0u32, *leaf);
        while let Some(&(h, top)) = stack.last() {
            if h != cur.0 {
                break;
            }
            stack.pop();
            cur = (h + 1, node_hash(&top, &cur.1));
        }
        stack.push(cur);
        let n = i + 1;
        if sizes.contains(&n) {
            let mut acc = stack[stack.len() - 1].1;
            for (_, h) in stack.iter().rev().skip(1) {
                acc = node_hash(h, &acc);
            }
            out.insert(n, acc);
        }
    }
    out
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 6962
/// PATH); `None` if `index` is out of range.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(root(&d[..k]));
            p
        }
    }
    Some(path(index, leaves))
}

/// The consistency proof between the first `old` leaves and all of
/// `leaves` (RFC 6962 PROOF); `None` unless 0 < `old` <= `leaves.len()`.
pub fn consistency_proof(old: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if old == 0 || old > leaves.len() {
        return None;
    }
    fn subproof(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if complete { Vec::new() } else { vec![root(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], complete);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(root(&d[..k]));
            p
        }
    }
    Some(subproof(old, leaves, true))
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Sizes or index out of range.
    #[error("the proof's sizes are out of range")]
    Range,
    /// Wrong number of hashes.
    #[error("the proof has the wrong number of hashes")]
    Length,
    /// The computed root differs.
    #[error("the proof does not lead to the expected root")]
    Mismatch,
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::Range);
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::Length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Length);
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the
/// tree of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::Range);
    }
    if size1 == size2 {
        return if proof.is_empty() && root1 == root2 {
            Ok(())
        } else if proof.is_empty() {
            Err(ProofError::Mismatch)
        } else {
            Err(ProofError::Length)
        };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if size1.is_power_of_two() {
        path.insert(0, *root1);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::Length);
    };
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::Length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Length);
    }
    if &f_r == root1 && &s_r == root2 {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("bundle {i}").as_bytes()))
            .collect()
    }

    /// The reference: the tree hash computed directly from RFC 6962's
    /// definition, over a binary tree built bottom-up (an independent
    /// construction from the recursive split used above).
    fn reference_root(l: &[Hash]) -> Hash {
        if l.is_empty() {
            return Sha256::digest([]).into();
        }
        let mut level: Vec<Hash> = l.to_vec();
        while level.len() > 1 {
            let mut next = Vec::new();
            for pair in level.chunks(2) {
                next.push(match pair {
                    [a, b] => node_hash(a, b),
                    [a] => *a,
                    _ => unreachable!(),
                });
            }
            level = next;
        }
        level[0]
    }

    #[test]
    fn known_vectors() {
        // The empty tree and RFC 6962's leaf/node prefixes, as in
        // transparency-dev/merkle's test constants.
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn roots_match_the_bottom_up_reference() {
        for n in 0..=64 {
            let l = leaves(n);
            assert_eq!(root(&l), reference_root(&l), "{n} leaves");
        }
    }

    #[test]
    fn every_inclusion_proof_of_1_to_64_leaves_verifies_and_no_other_does() {
        for n in 1..=64usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(i, &l).unwrap();
                assert_eq!(
                    verify_inclusion(i as u64, n as u64, &l[i], &p, &r),
                    Ok(()),
                    "{i}/{n}"
                );
                let other = l[(i + 1) % n];
                if n > 1 {
                    assert!(verify_inclusion(i as u64, n as u64, &other, &p, &r).is_err());
                }
            }
            assert!(inclusion_proof(n, &l).is_none());
        }
    }

    #[test]
    fn prefix_roots_match_the_recursive_root() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let sizes: std::collections::BTreeSet<usize> = (0..=300).collect();
        let roots = prefix_roots(&leaves, &sizes);
        for n in 0..=300 {
            assert_eq!(roots[&n], root(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn consistency_between_every_pair_of_sizes_1_to_64() {
        let all = leaves(64);
        for n in 1..=64usize {
            let r2 = reference_root(&all[..n]);
            for m in 1..=n {
                let r1 = reference_root(&all[..m]);
                let p = consistency_proof(m, &all[..n]).unwrap();
                assert_eq!(
                    verify_consistency(m as u64, n as u64, &p, &r1, &r2),
                    Ok(()),
                    "{m} -> {n}"
                );
                // A forked history: the old tree had another last leaf.
                let mut forked = all[..m].to_vec();
                forked[m - 1] = leaf_hash(b"rewritten");
                let f1 = reference_root(&forked);
                if m < n {
                    assert!(
                        verify_consistency(m as u64, n as u64, &p, &f1, &r2).is_err(),
                        "a forked {m} -> {n} verified"
                    );
                }
            }
        }
    }
}
