//! Content hashing behind dataset versions, config hashes and artifact ids.
//!
//! xxh3 is the hash: non-cryptographic, but stable across platforms and versions and several
//! GB/s per core, so hashing a corpus never dominates a data-preparation run.

use rayon::prelude::*;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, Xxh3Default};

/// 128-bit xxh3 of a byte string.
pub fn hash_bytes(data: &[u8]) -> u128 {
    xxh3_128(data)
}

/// 64-bit xxh3 of each text, computed in parallel. One call per batch, never per document.
pub fn hash_texts<S: AsRef<str> + Sync>(texts: &[S]) -> Vec<u64> {
    texts
        .par_iter()
        .map(|t| xxh3_64(t.as_ref().as_bytes()))
        .collect()
}

/// Streaming 128-bit xxh3 of one file plus its size in bytes.
pub fn hash_file(path: &Path) -> io::Result<(u128, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.digest128(), size))
}

/// Hashes many files in parallel. The error names the file that failed.
pub fn hash_files(paths: &[PathBuf]) -> Result<Vec<(u128, u64)>, (PathBuf, io::Error)> {
    paths
        .par_iter()
        .map(|p| hash_file(p).map_err(|e| (p.clone(), e)))
        .collect()
}

/// Lower-case, zero-padded hex of a 128-bit digest (32 characters).
pub fn hex128(value: u128) -> String {
    format!("{value:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn known_vectors() {
        // Reference values from the xxHash test suite.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(hex128(hash_bytes(b"")), "99aa06d3014798d86001c324468d497f");
    }

    #[test]
    fn batch_matches_single() {
        let texts = vec!["a".to_string(), "b".to_string(), "a".to_string()];
        let hashes = hash_texts(&texts);
        assert_eq!(hashes.len(), 3);
        assert_eq!(hashes[0], hashes[2]);
        assert_ne!(hashes[0], hashes[1]);
        assert_eq!(hashes[1], xxh3_64(b"b"));
    }

    #[test]
    fn file_hash_streams_and_matches_bytes() {
        let dir = std::env::temp_dir().join(format!("lmfast-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.bin");
        // Larger than the read buffer, so the streaming path is exercised.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let (digest, size) = hash_file(&path).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(digest, hash_bytes(&data));
        let missing = dir.join("missing.bin");
        let err = hash_files(&[path.clone(), missing.clone()]).unwrap_err();
        assert_eq!(err.0, missing);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
