//! Password hashing with argon2id, stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! The parameters travel inside the PHC string, so raising them later only affects new
//! hashes; old ones keep verifying with the cost they were made with.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::CryptoRngCore;

use super::AuthError;

/// Memory cost in KiB: 19 MiB, the OWASP Password Storage Cheat Sheet minimum for
/// argon2id (m=19 MiB, t=2, p=1). perch targets a Raspberry Pi: 19 MiB per hash keeps
/// even a burst of concurrent logins far below the RAM of a 1 GiB board, and on a
/// Cortex-A72 one hash takes on the order of 100-200 ms, which is unnoticeable for a
/// human logging in but costly for an attacker with a stolen database. More memory
/// would buy little on a single-user server whose real defence against online guessing
/// is the login limiter, and would risk swapping on small boards.
pub const ARGON2_M_COST_KIB: u32 = 19 * 1024;
/// Passes over memory (OWASP minimum pairing with 19 MiB).
pub const ARGON2_T_COST: u32 = 2;
/// Lanes. The argon2 crate computes lanes one after another (no threads here), so
/// more lanes would add time without making the hash any harder to parallelise for
/// an attacker; 1 is what OWASP pairs with these memory/time costs.
pub const ARGON2_P_COST: u32 = 1;

/// Longest password accepted, in bytes. Checked before any hashing so the amount of
/// work per login attempt is fixed by us, not by the request body; 256 bytes is far
/// more than any passphrase or password manager output.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Upper bounds on the costs we agree to run when verifying. Stored hashes come from
/// our own database, but a corrupted or tampered row naming m=4 GiB would otherwise
/// make a single login attempt exhaust the memory of a small board (allocation
/// failure aborts the process). These leave generous room for future tuning.
const MAX_VERIFY_M_COST_KIB: u32 = 256 * 1024;
const MAX_VERIFY_T_COST: u32 = 16;
const MAX_VERIFY_P_COST: u32 = 8;

/// argon2's working memory (one 1 KiB block per KiB of memory cost). A thread that hashes
/// often keeps one and passes it to every call: allocating 19 MiB with 64-byte alignment
/// per hash made glibc's heap grow by most of that each time (RSS went from 18 to 215 MiB
/// over 30 sequential checks on two threads); reused, it stays at one buffer per thread.
pub type Memory = Vec<Block>;

/// Hashes `password` with the production parameters.
pub fn hash_password(password: &str, rng: &mut impl CryptoRngCore) -> Result<String, AuthError> {
    hash_password_in(password, rng, &mut Memory::new())
}

/// [`hash_password`] in the caller's working memory.
pub fn hash_password_in(
    password: &str,
    rng: &mut impl CryptoRngCore,
    memory: &mut Memory,
) -> Result<String, AuthError> {
    hash_with_costs(
        password,
        ARGON2_M_COST_KIB,
        ARGON2_T_COST,
        ARGON2_P_COST,
        rng,
        memory,
    )
}

/// Hashes `password` with explicit argon2id costs (memory in KiB, passes, lanes).
/// Exists so tests can use tiny costs; production code calls [`hash_password`].
pub fn hash_password_with(
    password: &str,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    rng: &mut impl CryptoRngCore,
) -> Result<String, AuthError> {
    hash_with_costs(
        password,
        m_cost_kib,
        t_cost,
        p_cost,
        rng,
        &mut Memory::new(),
    )
}

fn hash_with_costs(
    password: &str,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    rng: &mut impl CryptoRngCore,
    memory: &mut Memory,
) -> Result<String, AuthError> {
    check_length(password)?;
    let err = |e: &dyn std::fmt::Display| AuthError::Hash(e.to_string());
    let params = Params::new(m_cost_kib, t_cost, p_cost, None).map_err(|e| err(&e))?;
    // 16 random bytes of salt (the crate's recommended length), from the caller's RNG.
    let salt = SaltString::generate(rng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| err(&e))?;
    let mut out = [0u8; 32];
    run(params.clone(), password, salt_raw, &mut out, memory).map_err(|e| err(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(phc.to_string())
}

/// argon2id over `memory`, grown to the costs' size if needed.
fn run(
    params: Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Memory,
) -> argon2::Result<()> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        out,
        &mut memory[..blocks],
    )
}

/// Checks a hash given by the owner instead of a password (the SD-card image's
/// `password_hash`): argon2id, costs within what we agree to verify (a 4 GiB memory cost
/// would make every login exhaust a small board), and costs at least ours, so a weak
/// hash does not slip in.
pub fn check_password_hash(phc: &str) -> Result<(), AuthError> {
    let bad = |why: &str| AuthError::Hash(format!("password hash: {why}"));
    let hash = PasswordHash::new(phc).map_err(|e| bad(&e.to_string()))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(bad("only argon2id ($argon2id$…) is accepted"));
    }
    let params = Params::try_from(&hash).map_err(|e| bad(&e.to_string()))?;
    if params.m_cost() > MAX_VERIFY_M_COST_KIB
        || params.t_cost() > MAX_VERIFY_T_COST
        || params.p_cost() > MAX_VERIFY_P_COST
    {
        return Err(bad(&format!(
            "costs above m={MAX_VERIFY_M_COST_KIB},t={MAX_VERIFY_T_COST},p={MAX_VERIFY_P_COST}"
        )));
    }
    if params.m_cost() < ARGON2_M_COST_KIB || params.t_cost() < ARGON2_T_COST {
        return Err(bad(&format!(
            "costs below m={ARGON2_M_COST_KIB},t={ARGON2_T_COST}: make it with e.g. \
             `argon2 SALT -id -m 15 -t 2 -e`"
        )));
    }
    if hash.hash.is_none() {
        return Err(bad("no hash value"));
    }
    Ok(())
}

/// Checks `password` against a stored PHC string. Returns false for a wrong password
/// and for anything it cannot use: a malformed string, another algorithm, or costs
/// beyond the verify bounds. Never panics. The final comparison is constant-time
/// (done by the `password-hash` crate's `Output` equality).
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_password_in(password, phc, &mut Memory::new())
}

/// [`verify_password`] in the caller's working memory.
pub fn verify_password_in(password: &str, phc: &str, memory: &mut Memory) -> bool {
    // A password we would refuse to set can never match; skipping it also keeps the
    // pre-hash work bounded for hostile input.
    if check_length(password).is_err() {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    // Only argon2id is ever written; accepting argon2i/argon2d would let a tampered row
    // downgrade to a weaker variant.
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    if hash.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_M_COST_KIB
        || params.t_cost() > MAX_VERIFY_T_COST
        || params.p_cost() > MAX_VERIFY_P_COST
    {
        return false;
    }
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if run(params, password, salt, &mut out, memory).is_err() {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|got| got == expected)
}

fn check_length(password: &str) -> Result<(), AuthError> {
    if password.is_empty() {
        Err(AuthError::EmptyPassword)
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err(AuthError::PasswordTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{CryptoRng, OsRng, RngCore};

    /// Smallest costs argon2 allows: keeps the tests fast.
    fn tiny(pw: &str) -> String {
        hash_password_with(pw, 8, 1, 1, &mut OsRng).expect("hash")
    }

    #[test]
    fn owner_given_hashes_are_checked() {
        let ours = hash_password("a fine password", &mut OsRng).unwrap();
        check_password_hash(&ours).unwrap();
        let too_cheap = tiny("a fine password");
        assert!(
            check_password_hash(&too_cheap)
                .unwrap_err()
                .to_string()
                .contains("below")
        );
        let too_costly = ours.replace("m=19456", "m=4194304");
        assert!(
            check_password_hash(&too_costly)
                .unwrap_err()
                .to_string()
                .contains("above")
        );
        let other_kind = ours.replace("$argon2id$", "$argon2i$");
        assert!(
            check_password_hash(&other_kind)
                .unwrap_err()
                .to_string()
                .contains("argon2id")
        );
        assert!(check_password_hash("hunter2").is_err());
    }

    /// An RNG that fails the test if touched: hashing draws the salt first, so a
    /// function that returns without using it returned before hashing.
    struct NoRng;
    impl RngCore for NoRng {
        fn next_u32(&mut self) -> u32 {
            panic!("rng used")
        }
        fn next_u64(&mut self) -> u64 {
            panic!("rng used")
        }
        fn fill_bytes(&mut self, _: &mut [u8]) {
            panic!("rng used")
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_core::Error> {
            panic!("rng used")
        }
    }
    impl CryptoRng for NoRng {}

    #[test]
    fn round_trip() {
        let phc = tiny("correct horse battery staple");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"interop", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        let mut mem = Memory::new();
        assert!(verify_password_in("interop", &theirs, &mut mem));
        assert!(!verify_password_in("interoq", &theirs, &mut mem));
        let ours = tiny("interop");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interop", &parsed)
                .is_ok()
        );
        assert!(Argon2::default().verify_password(b"nope", &parsed).is_err());
        // One buffer serves calls of different sizes.
        let big = hash_password_in("interop", &mut OsRng, &mut mem).unwrap();
        assert!(verify_password_in("interop", &big, &mut mem));
        assert!(verify_password_in("interop", &ours, &mut mem));
        assert_eq!(mem.len(), ARGON2_M_COST_KIB as usize);
    }

    #[test]
    fn salts_differ() {
        assert_ne!(tiny("same"), tiny("same"));
    }

    #[test]
    fn production_params_in_phc() {
        // One real-cost hash, to pin the stored parameter string.
        let phc = hash_password("pw", &mut OsRng).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("pw", &phc));
    }

    #[test]
    fn malformed_phc_is_false() {
        let good = tiny("pw");
        let cases = [
            String::new(),
            "not a hash".to_owned(),
            "$argon2id$".to_owned(),
            "$argon2id$v=19$m=8,t=1,p=1$".to_owned(),
            good.replace("argon2id", "argon2i"),
            good.replace("argon2id", "scrypt"),
            good[..good.len() - 4].to_owned(),
            format!("{good}$extra"),
            good.replace("m=8", "m=99999999"),
            good.replace("t=1", "t=1000"),
            good.replace("m=8", "m=x"),
            // Truncated salt (below the 8-byte minimum).
            "$argon2id$v=19$m=8,t=1,p=1$YWJj$YWJjZGVmZ2hpamtsbW5vcA".to_owned(),
        ];
        for phc in &cases {
            assert!(!verify_password("pw", phc), "accepted {phc:?}");
        }
    }

    #[test]
    fn length_checked_before_hashing() {
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        // Costs that would take minutes if hashing started; NoRng proves it did not.
        assert_eq!(
            hash_password_with(&long, 4 * 1024 * 1024, 1000, 1, &mut NoRng),
            Err(AuthError::PasswordTooLong)
        );
        assert_eq!(hash_password("", &mut NoRng), Err(AuthError::EmptyPassword));
        // Exactly at the limit is fine; the limit is in bytes, not characters.
        let max = "a".repeat(MAX_PASSWORD_BYTES);
        assert!(verify_password(&max, &tiny(&max)));
        let multibyte = "é".repeat(MAX_PASSWORD_BYTES / 2 + 1);
        assert_eq!(
            hash_password(&multibyte, &mut NoRng),
            Err(AuthError::PasswordTooLong)
        );
    }

    #[test]
    fn too_long_never_verifies() {
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(!verify_password(&long, &tiny("a")));
    }

    #[test]
    fn bad_params_are_errors_not_panics() {
        assert!(matches!(
            hash_password_with("pw", 0, 0, 0, &mut OsRng),
            Err(AuthError::Hash(_))
        ));
    }
}
