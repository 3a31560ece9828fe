//! Random values from the operating system: session IDs, one-time passwords, link tokens,
//! form nonces.
//!
//! Owns: the one call to the OS random source.
//! Must never: fall back to a weaker source.

/// Random bytes from the operating system, hex-encoded.
///
/// # Panics
/// Never in practice: `getrandom` fails only on systems without a random source, where no
/// session or password could be made safely anyway.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    hex::encode(buf)
}
