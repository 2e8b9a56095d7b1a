//! The keys that seal and open session ids: one sealing key and the older keys still accepted.
//!
//! `--session-key-file` holds one key per line, 64 hex digits each (either case). Blank lines and
//! `#` comment lines are allowed. The first key seals and opens; every other key only opens. To
//! rotate: put a new key first, keep the old one below it until the sessions sealed with it are
//! gone, then remove it. Instances that share the file accept each other's ids.
//!
//! Refused, each with the file and the line: a file tether cannot read, a file readable by group
//! or others (the key is the whole secret), a line that is not 64 hex digits (its length is said,
//! never its content), the same key twice, no key at all.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aes_gcm::aead::Generate;
use aes_gcm::{Aes256Gcm, Key, KeyInit};
use zeroize::Zeroizing;

/// Bytes of one key (AES-256).
pub(crate) const KEY_LEN: usize = 32;

/// Hex digits of one key in the file.
pub(crate) const KEY_HEX_LEN: usize = 2 * KEY_LEN;

/// The largest key file read, in bytes; past this the file is refused as unreadable (a key file
/// holds a few keys and comments, not megabytes; this keeps a wrong path such as a log from being
/// read whole).
pub(crate) const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// The ciphers of every accepted key, in the file's order: `ciphers[0]` seals.
///
/// Only the expanded ciphers are kept (the raw keys are wiped once the ciphers are built); each
/// cipher wipes its key schedule when dropped (aes-gcm's `zeroize` feature).
pub(crate) struct SessionKeys {
    /// Never empty: the first seals and opens, the rest only open.
    ciphers: Vec<Aes256Gcm>,
}

impl SessionKeys {
    /// The keys of `--session-key-file`.
    pub(crate) fn from_file(path: &Path) -> Result<SessionKeys, SessionKeyError> {
        let shown = path.display().to_string();
        let unreadable = |e: std::io::Error| SessionKeyError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let file = File::open(path).map_err(unreadable)?;
        // The mode of the file opened, not of the path (which could be swapped in between).
        let mode = file.metadata().map_err(unreadable)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SessionKeyError::OpenToOthers {
                path: shown,
                mode: mode & 0o777,
            });
        }
        // Room for the whole file at once: a buffer that grew would leave copies of the keys behind.
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(SessionKeyError::Unreadable {
                path: shown,
                reason: format!(
                    "longer than {MAX_KEY_FILE_LEN} bytes (a key file holds 64 hex digits a line)"
                ),
            });
        }
        SessionKeys::parse(&text, &shown)
    }

    /// One key from the OS random number generator (no `--session-key-file`): ids live as long as
    /// the process and are accepted by this instance only.
    pub(crate) fn random() -> Result<SessionKeys, SessionKeyError> {
        let key = Zeroizing::new(<[u8; KEY_LEN]>::try_generate().map_err(|e| {
            SessionKeyError::NoRandomness {
                reason: e.to_string(),
            }
        })?);
        Ok(SessionKeys::of_keys(std::iter::once(&*key)))
    }

    /// The keys of a key file's text; `path` names the file in errors.
    fn parse(text: &[u8], path: &str) -> Result<SessionKeys, SessionKeyError> {
        // The raw keys with their line numbers, wiped when this returns.
        let mut keys: Vec<(usize, Zeroizing<[u8; KEY_LEN]>)> = Vec::new();
        for (index, raw_line) in text.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let content = raw_line.trim_ascii();
            if content.is_empty() || content.starts_with(b"#") {
                continue;
            }
            let key = decode_key(content).map_err(|fault| SessionKeyError::BadLine {
                path: path.to_owned(),
                line,
                fault,
            })?;
            // Constant time is not needed here: both keys come from the operator's own file.
            if let Some((first_line, _)) = keys.iter().find(|(_, k)| **k == *key) {
                return Err(SessionKeyError::DuplicateKey {
                    path: path.to_owned(),
                    line,
                    first_line: *first_line,
                });
            }
            keys.push((line, key));
        }
        if keys.is_empty() {
            return Err(SessionKeyError::NoKey {
                path: path.to_owned(),
            });
        }
        Ok(SessionKeys::of_keys(keys.iter().map(|(_, k)| &**k)))
    }

    /// Ciphers for `keys`, the first one sealing.
    fn of_keys<'a>(keys: impl Iterator<Item = &'a [u8; KEY_LEN]>) -> SessionKeys {
        let ciphers: Vec<Aes256Gcm> = keys
            .map(|k| Aes256Gcm::new(<&Key<Aes256Gcm>>::from(k)))
            .collect();
        debug_assert!(!ciphers.is_empty());
        SessionKeys { ciphers }
    }

    /// Keys given directly (tests): the first seals.
    #[cfg(test)]
    pub(super) fn from_raw(keys: &[[u8; KEY_LEN]]) -> SessionKeys {
        assert!(!keys.is_empty());
        SessionKeys::of_keys(keys.iter())
    }

    /// The cipher that seals new ids.
    pub(super) fn sealing(&self) -> &Aes256Gcm {
        &self.ciphers[0]
    }

    /// Every cipher that may open an id, the sealing one first.
    pub(super) fn opening(&self) -> impl Iterator<Item = &Aes256Gcm> {
        self.ciphers.iter()
    }

    /// How many keys open ids (1 plus the older keys kept for rotation).
    pub(crate) fn len(&self) -> usize {
        self.ciphers.len()
    }
}

/// Prints how many keys there are, never a key.
impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.ciphers.len())
            .finish_non_exhaustive()
    }
}

/// 64 hex digits to 32 bytes.
fn decode_key(content: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, LineFault> {
    if content.len() != KEY_HEX_LEN {
        return Err(LineFault::Length {
            chars: String::from_utf8_lossy(content).chars().count(),
        });
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (byte, pair) in key.iter_mut().zip(content.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
            return Err(LineFault::NotHex);
        };
        *byte = hi << 4 | lo;
    }
    Ok(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// What is wrong with a key line (never its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFault {
    /// Not 64 characters long (leading and trailing whitespace not counted).
    Length { chars: usize },
    /// 64 characters, not all hex digits.
    NotHex,
}

/// Why the session keys cannot be had. Every message names the file (and the line) and says what
/// to do; none prints a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKeyError {
    /// The file cannot be opened or read, or is far too long to be a key file.
    Unreadable { path: String, reason: String },
    /// Group or others may read (or write) the file.
    OpenToOthers {
        path: String,
        /// The permission bits (`mode & 0o777`).
        mode: u32,
    },
    /// A line that is neither blank, a `#` comment nor a key.
    BadLine {
        path: String,
        line: usize,
        fault: LineFault,
    },
    /// The same key on two lines (counted from 1).
    DuplicateKey {
        path: String,
        line: usize,
        first_line: usize,
    },
    /// Only blank and comment lines.
    NoKey { path: String },
    /// The OS random number generator failed (no `--session-key-file`).
    NoRandomness { reason: String },
}

impl fmt::Display for SessionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionKeyError::Unreadable { path, reason } => {
                write!(f, "{path}: cannot read the session key file: {reason}")
            }
            SessionKeyError::OpenToOthers { path, mode } => write!(
                f,
                "{path}: the session key file has mode {mode:03o}, readable by group or others: run chmod 600 {path}"
            ),
            SessionKeyError::BadLine {
                path,
                line,
                fault: LineFault::Length { chars },
            } => write!(
                f,
                "{path}:{line}: a key is 64 hex digits, this line has {chars} characters (one key a line; `#` starts a comment line)"
            ),
            SessionKeyError::BadLine {
                path,
                line,
                fault: LineFault::NotHex,
            } => write!(
                f,
                "{path}:{line}: a key is 64 hex digits (0-9, a-f), this line has other characters"
            ),
            SessionKeyError::DuplicateKey {
                path,
                line,
                first_line,
            } => write!(
                f,
                "{path}:{line}: the same key as line {first_line}: list each key once"
            ),
            SessionKeyError::NoKey { path } => write!(
                f,
                "{path}: no key: write a line of 64 hex digits (e.g. the output of `openssl rand -hex 32`)"
            ),
            SessionKeyError::NoRandomness { reason } => write!(
                f,
                "cannot make a session key: the OS random number generator failed: {reason}"
            ),
        }
    }
}

impl std::error::Error for SessionKeyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100";

    /// A file of its own under the temporary directory, removed on drop.
    struct KeyFile(PathBuf);

    impl KeyFile {
        fn new(text: &str, mode: u32) -> KeyFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "tether-session-key-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = File::create(&path).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            KeyFile(path)
        }

        fn load(&self) -> Result<SessionKeys, SessionKeyError> {
            SessionKeys::from_file(&self.0)
        }

        fn shown(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for KeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn message(text: &str) -> String {
        let file = KeyFile::new(text, 0o600);
        let e = file.load().unwrap_err();
        e.to_string().replace(&file.shown(), "FILE")
    }

    #[test]
    fn keys_in_order_with_comments_blank_lines_and_either_case() {
        let file = KeyFile::new(
            &format!("# new key first\n{K1}\n\n  # old, until its sessions end\r\n{K2}\r\n\n"),
            0o600,
        );
        let keys = file.load().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(format!("{keys:?}"), "SessionKeys { keys: 2, .. }");
        let one = KeyFile::new(K1, 0o400).load().unwrap();
        assert_eq!(one.len(), 1, "no trailing newline is fine too");
    }

    #[test]
    fn random_keys_are_one_key() {
        let keys = SessionKeys::random().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(format!("{keys:?}"), "SessionKeys { keys: 1, .. }");
    }

    #[test]
    fn each_refusal_names_the_file_and_line_and_never_the_key() {
        assert_eq!(
            message(&format!("{K1}\n{}\n", &K2[..63])),
            "FILE:2: a key is 64 hex digits, this line has 63 characters (one key a line; `#` starts a comment line)"
        );
        assert_eq!(
            message(&format!("{K1}0\n")),
            "FILE:1: a key is 64 hex digits, this line has 65 characters (one key a line; `#` starts a comment line)"
        );
        let not_hex = format!("{}g", &K2[..63]);
        let m = message(&format!("\n{not_hex}\n"));
        assert_eq!(
            m,
            "FILE:2: a key is 64 hex digits (0-9, a-f), this line has other characters"
        );
        assert!(!m.contains(&not_hex[..20]));
        assert_eq!(
            message(&format!("{K1}\n# again\n{}\n", K1.to_uppercase())),
            "FILE:3: the same key as line 1: list each key once"
        );
        assert_eq!(
            message("# only a comment\n\n"),
            "FILE: no key: write a line of 64 hex digits (e.g. the output of `openssl rand -hex 32`)"
        );
        assert_eq!(
            message(""),
            "FILE: no key: write a line of 64 hex digits (e.g. the output of `openssl rand -hex 32`)"
        );
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        for mode in [0o640, 0o604, 0o644, 0o660] {
            let file = KeyFile::new(K1, mode);
            let shown = file.shown();
            assert_eq!(
                file.load().unwrap_err().to_string(),
                format!("{shown}: the session key file has mode {mode:03o}, readable by group or others: run chmod 600 {shown}")
            );
        }
    }

    #[test]
    fn a_missing_or_huge_file_is_unreadable() {
        let gone = std::env::temp_dir().join("tether-session-key-that-does-not-exist");
        let e = SessionKeys::from_file(&gone).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot read the session key file: No such file or directory (os error 2)",
                gone.display()
            )
        );
        let huge = KeyFile::new(&"#".repeat(MAX_KEY_FILE_LEN as usize + 1), 0o600);
        assert_eq!(
            huge.load().unwrap_err().to_string(),
            format!(
                "{}: cannot read the session key file: longer than 65536 bytes (a key file holds 64 hex digits a line)",
                huge.shown()
            )
        );
    }
}
