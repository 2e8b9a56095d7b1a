//! A replica's key in session ids: a stable 64-bit hash of its URL, the same on every instance
//! (and every Rust version) with the same configuration, so any instance routes any id.

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The key of the replica at `url`, as written in the configuration (the caller passes the same
/// text on every instance; `http://a:80` and `http://a` are different keys).
///
/// FNV-1a 64, written out: `std`'s `DefaultHasher` may change algorithm between Rust versions,
/// which would strand every session across an upgrade. Not keyed: replica URLs are the operator's,
/// not an attacker's, and the id's AEAD tag, not this hash, is what a client cannot forge. Two
/// replicas of one configuration whose keys collide (chance about n²/2^65) are for the caller to
/// refuse at start.
pub(crate) fn replica_key(url: &str) -> u64 {
    // for each byte: hash = (hash XOR byte) * prime (mod 2^64)
    url.bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_reference_values() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(replica_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(replica_key("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(replica_key("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn replicas_differ() {
        let a = replica_key("http://10.0.0.1:8080");
        assert_eq!(a, replica_key("http://10.0.0.1:8080"));
        assert_ne!(a, replica_key("http://10.0.0.2:8080"));
        assert_ne!(a, replica_key("http://10.0.0.1:8081"));
    }
}
