//! FNV-1a, 64-bit: the checksum `/sum` reports.
//!
//! Streaming use: start from [`FNV1A64_OFFSET_BASIS`] and feed every piece in order,
//! passing the previous result as `seed_state`:
//! ```
//! use tether_perf::{fnv1a64, FNV1A64_OFFSET_BASIS};
//! let whole = fnv1a64(FNV1A64_OFFSET_BASIS, b"hello world");
//! let split = fnv1a64(fnv1a64(FNV1A64_OFFSET_BASIS, b"hello "), b"world");
//! assert_eq!(whole, split);
//! assert_eq!(format!("{whole:016x}"), "779a65e7023cd2e7");
//! ```

/// FNV-1a 64-bit offset basis: the state before any byte was hashed.
pub const FNV1A64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64-bit prime.
pub const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash from `seed_state` over `data` and returns the new state
/// (which is also the hash of everything fed so far).
#[inline]
pub fn fnv1a64(seed_state: u64, data: &[u8]) -> u64 {
    let mut h = seed_state;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV1A64_PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Reference values of the FNV-1a 64 test suite.
        assert_eq!(fnv1a64(FNV1A64_OFFSET_BASIS, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(FNV1A64_OFFSET_BASIS, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(FNV1A64_OFFSET_BASIS, b"foobar"), 0x85944171f73967e8);
    }
}
