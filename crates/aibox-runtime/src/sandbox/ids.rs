//! Random identifiers.

/// 12 lowercase hex characters from the kernel's CSPRNG.
pub fn random_id() -> String {
    let mut b = [0u8; 6];
    let ok = aibox_sys::getrandom(&mut b).is_ok();
    if !ok {
        // getrandom failing is not a reason to fail: fall back to the
        // std hasher's random keys mixed with time and pid.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        b.copy_from_slice(&h.finish().to_le_bytes()[..6]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh secret (API keys, session cookies, CSRF tokens): `aibox_` and
/// 256 random bits in hex, from the kernel's CSPRNG. A weak secret is
/// never an option: if the kernel cannot give randomness, abort.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    if fill_random(&mut b).is_err() {
        // getrandom(2) cannot fail on Linux >= 3.17 once the pool is ready.
        std::process::abort();
    }
    format!(
        "aibox_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Fill `buf` from the kernel's CSPRNG, for secrets (no fallback).
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    aibox_sys::getrandom(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_valid() {
        let a = super::random_id();
        assert_eq!(a.len(), 12);
        assert!(aibox_types::validate_id(&a));
        assert_ne!(a, super::random_id());
    }
}
