//! Near-duplicate detection: MinHash signatures over word n-gram shingles, LSH banding and
//! union-find clustering. One signature per document, computed in parallel; clustering is a
//! single pass over band keys, the same shuffle a distributed engine would do.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::words::Words;

/// out[j] = min over shingles h of mix(a[j] * h + b[j]); AVX2 when the CPU has it.
fn min_hashes(out: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: guarded by the runtime feature check above.
            unsafe { min_hashes_avx2(out, a, b, shingles) };
            return;
        }
    }
    min_hashes_generic(out, a, b, shingles);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn min_hashes_avx2(out: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    min_hashes_generic(out, a, b, shingles); // inlined here, so compiled with AVX2
}

#[inline(always)]
fn min_hashes_generic(out: &mut [u32], a: &[u32], b: &[u32], shingles: &[u32]) {
    for &h in shingles {
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            let v = a.wrapping_mul(h).wrapping_add(*b);
            *o = (*o).min(v ^ (v >> 15));
        }
    }
}

pub struct MinHasher {
    a: Vec<u32>,
    b: Vec<u32>,
    pub ngram: usize,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize, seed: u64) -> Self {
        let mut state = seed;
        // x -> a*x + b (mod 2^32) with odd a is a permutation of u32; 32-bit lanes let the
        // inner loop vectorize.
        let a = (0..num_perm)
            .map(|_| (splitmix(&mut state) as u32) | 1)
            .collect();
        let b = (0..num_perm).map(|_| splitmix(&mut state) as u32).collect();
        Self { a, b, ngram }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// Signature of one document: per permutation, the minimum over its shingles.
    pub fn signature(&self, text: &str, out: &mut [u32]) {
        self.signature_of_keys(&Words::new(text).keys(), out);
    }

    /// Signature from a document's word keys (see [`Words::keys`]).
    pub fn signature_of_keys(&self, keys: &[(u64, usize)], out: &mut [u32]) {
        let n = self.ngram;
        out.fill(u32::MAX);
        let fold = |h: u64| (h ^ (h >> 32)) as u32;
        let shingles: Vec<u32> = if keys.len() < n {
            vec![fold(keys.iter().fold(0x51_7CC1_B727_220Au64, |acc, w| {
                acc.rotate_left(17) ^ w.0
            }))]
        } else {
            keys.windows(n)
                .map(|window| {
                    let mut h = 0u64;
                    for (i, wh) in window.iter().enumerate() {
                        h = h.rotate_left(17) ^ wh.0.wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ i as u64);
                    }
                    fold(h)
                })
                .collect()
        };
        min_hashes(out, &self.a, &self.b, &shingles);
    }

    /// Signatures of many documents, row-major (doc, perm), in parallel.
    pub fn signatures<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<u32> {
        let p = self.num_perm();
        let mut out = vec![0u32; texts.len() * p];
        out.par_chunks_mut(p)
            .zip(texts.par_iter())
            .for_each(|(sig, t)| self.signature(t.as_ref(), sig));
        out
    }
}

struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// The smaller index becomes the root, so each cluster keeps its earliest document.
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi as usize] = lo;
        }
    }
}

/// Band keys of every signature: `bands` hashes of `rows` consecutive values each.
pub fn band_keys(signatures: &[u32], num_perm: usize, bands: usize, rows: usize) -> Vec<u64> {
    let n = signatures.len() / num_perm;
    let mut keys = vec![0u64; n * bands];
    keys.par_chunks_mut(bands)
        .enumerate()
        .for_each(|(doc, out)| {
            let sig = &signatures[doc * num_perm..(doc + 1) * num_perm];
            for (band, key) in out.iter_mut().enumerate() {
                let vals = &sig[band * rows..(band + 1) * rows];
                let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
                *key = xxh3_64_with_seed(&bytes, band as u64);
            }
        });
    keys
}

/// Cluster documents that share a band bucket and whose signatures agree on at least
/// `threshold` of their positions (estimated Jaccard; 0 accepts every bucket collision).
/// Returns each document's representative (the lowest index in its cluster); a document is
/// a near-duplicate when it is not its own.
pub fn lsh_clusters(
    signatures: &[u32],
    num_perm: usize,
    bands: usize,
    rows: usize,
    threshold: f64,
) -> Vec<u32> {
    let n = signatures.len() / num_perm;
    let keys = band_keys(signatures, num_perm, bands, rows);
    let mut uf = UnionFind::new(n);
    for band in 0..bands {
        let mut first: FxHashMap<u64, u32> = FxHashMap::default();
        for doc in 0..n {
            let key = keys[doc * bands + band];
            match first.get(&key) {
                Some(&other) => {
                    let sig = |d: usize| &signatures[d * num_perm..(d + 1) * num_perm];
                    if threshold <= 0.0
                        || estimated_jaccard(sig(other as usize), sig(doc)) >= threshold
                    {
                        uf.union(other, doc as u32);
                    }
                }
                None => {
                    first.insert(key, doc as u32);
                }
            }
        }
    }
    (0..n as u32).map(|d| uf.find(d)).collect()
}

/// Fraction of equal signature positions: an estimate of Jaccard similarity.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "the committee met on tuesday to discuss the new budget for the city parks \
        and agreed that more money should go to playgrounds and public gardens next year while \
        the library would keep its current funding level until the review is finished in spring";

    #[test]
    fn near_duplicates_cluster_and_others_do_not() {
        let near = BASE.replace("tuesday", "wednesday");
        let other = "a completely different text about cooking pasta with tomatoes garlic and \
            olive oil which takes about twenty minutes and serves four hungry people at dinner";
        let texts = vec![
            BASE.to_string(),
            other.to_string(),
            near,
            BASE.to_uppercase(),
        ];
        let mh = MinHasher::new(112, 5, 42);
        let sigs = mh.signatures(&texts);
        let p = mh.num_perm();
        assert!(estimated_jaccard(&sigs[0..p], &sigs[2 * p..3 * p]) > 0.6);
        assert!(estimated_jaccard(&sigs[0..p], &sigs[p..2 * p]) < 0.1);
        let reps = lsh_clusters(&sigs, p, 14, 8, 0.5);
        assert_eq!(reps, vec![0, 1, 0, 0]);
    }

    #[test]
    fn short_documents_still_get_a_signature() {
        let mh = MinHasher::new(16, 5, 1);
        let sigs = mh.signatures(&["hi there", "hi there", "bye"]);
        assert_eq!(sigs[0..16], sigs[16..32]);
        assert_ne!(sigs[0..16], sigs[32..48]);
    }
}
