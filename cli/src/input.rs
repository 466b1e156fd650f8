//! What every command does with the files it is given and the values it echoes: a file is
//! read whole only up to a bound (a configuration, a key file), an unreadable or oversized one
//! is a usage error (exit 2) naming the file, and a value quoted back in a message is cut to
//! a few hundred characters, so that a hostile input cannot fill a terminal or a log.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Characters of a value quoted in a message: its start and its end are kept.
pub const ECHO_HEAD_CHARS: usize = 300;
pub const ECHO_TAIL_CHARS: usize = 100;

/// Why an input file could not be read. Every command exits with [`crate::exit::USAGE`] on it.
#[derive(Debug, Error)]
pub enum InputError {
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {limit} bytes, which is more than {what} can be", path.display())]
    TooLarge {
        path: PathBuf,
        limit: u64,
        what: &'static str,
    },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// The bytes of `path`, at most `limit` of them; `what` names the file's kind for the error.
pub fn read_input(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, InputError> {
    let unreadable = |source| InputError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            path: path.to_owned(),
            limit,
            what,
        });
    }
    Ok(bytes)
}

/// As [`read_input`], as text.
pub fn read_input_text(path: &Path, limit: u64, what: &'static str) -> Result<String, InputError> {
    String::from_utf8(read_input(path, limit, what)?).map_err(|_| InputError::NotText {
        path: path.to_owned(),
    })
}

/// `text` as it may be quoted in a message: whole when short, else its first
/// [`ECHO_HEAD_CHARS`] and last [`ECHO_TAIL_CHARS`] characters around a note of how much was
/// left out.
pub fn echo(text: &str) -> Cow<'_, str> {
    let chars = text.chars().count();
    if chars <= ECHO_HEAD_CHARS + ECHO_TAIL_CHARS {
        return Cow::Borrowed(text);
    }
    let head: String = text.chars().take(ECHO_HEAD_CHARS).collect();
    let tail: String = text.chars().skip(chars - ECHO_TAIL_CHARS).collect();
    Cow::Owned(format!(
        "{head}…[{} characters left out]…{tail}",
        chars - ECHO_HEAD_CHARS - ECHO_TAIL_CHARS
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_echoed_whole_and_long_ones_cut_in_the_middle() {
        assert_eq!(echo("DeleteBucket"), "DeleteBucket");
        let long = format!("start{}end", "x".repeat(10 << 20));
        let cut = echo(&long);
        assert!(cut.len() < 600, "{}", cut.len());
        assert!(cut.starts_with("startxxx"));
        assert!(cut.ends_with("xxxend"));
        assert!(cut.contains(&format!("[{} characters left out]", long.len() - 400)));
    }

    #[test]
    fn a_file_is_read_up_to_its_bound() {
        let dir = std::env::temp_dir().join(format!("trailwatch-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_input(&file, 10, "a test file").unwrap().len(), 10);
        let err = read_input(&file, 9, "a test file").unwrap_err().to_string();
        assert!(
            err.ends_with("larger than 9 bytes, which is more than a test file can be"),
            "{err}"
        );
        let err = read_input(&dir.join("missing.json"), 9, "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json: cannot read: "), "{err}");
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_input_text(&file, 9, "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
