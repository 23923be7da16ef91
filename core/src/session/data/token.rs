//! A session's one-time data-plane token: made fresh for each session, presented by each
//! of its data connections right after the preface, and compared in constant time so that
//! a wrong guess learns nothing from how long the refusal took.

use std::io;

use crate::wire::protocol::{PREFACE, TOKEN_LEN};

/// A fresh random token.
pub fn new_token() -> io::Result<[u8; TOKEN_LEN]> {
    let mut token = [0u8; TOKEN_LEN];
    let mut filled = 0;
    while filled < TOKEN_LEN {
        filled +=
            rustix::rand::getrandom(&mut token[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(crate::sys::io_err)?;
    }
    Ok(token)
}

/// A fresh random name of `bytes` random bytes, in lower-case hex (job ids, idempotency
/// keys): at most a token's length.
pub fn random_hex(bytes: usize) -> io::Result<String> {
    let token = new_token()?;
    Ok(token[..bytes.min(TOKEN_LEN)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The token a preface presents, if it is one.
pub(super) fn token_of(preface: &[u8; PREFACE.len() + TOKEN_LEN]) -> io::Result<[u8; TOKEN_LEN]> {
    let (magic, token) = preface.split_at(PREFACE.len());
    if magic != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Blit data connection",
        ));
    }
    Ok(token.try_into().expect("TOKEN_LEN bytes"))
}

/// Compares tokens in constant time.
pub fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preface_yields_its_token_and_anything_else_is_refused() {
        let token = new_token().unwrap();
        assert_ne!(token, new_token().unwrap(), "each session its own token");
        let mut preface = [0u8; PREFACE.len() + TOKEN_LEN];
        preface[..PREFACE.len()].copy_from_slice(PREFACE);
        preface[PREFACE.len()..].copy_from_slice(&token);
        assert_eq!(token_of(&preface).unwrap(), token);
        preface[0] ^= 1;
        let err = token_of(&preface).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn tokens_match_only_when_every_byte_does() {
        let token = new_token().unwrap();
        let copy = token;
        assert!(same_token(&token, &copy));
        let mut last = token;
        last[TOKEN_LEN - 1] ^= 0x80;
        assert!(!same_token(&token, &last));
        assert!(
            !same_token(&token, &token[..TOKEN_LEN - 1]),
            "a prefix is not the token"
        );
    }
}
