//! Text files from outside, read a line at a time: ids, item data,
//! exclusion lists. Constant memory for a file of any size, and a bound on
//! each line, so that a file with no newline at all (`/dev/zero`, a binary
//! given by mistake) is refused by name instead of filling memory.

use std::io::{BufRead, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// The longest line read: far above any id, index or item's data.
pub const MAX_LINE: u64 = 64 << 20;

/// Calls `f` with each line of `path` (its number from 1, and its text with
/// the line ending), read through a buffer. A line that is not UTF-8 or is
/// longer than [`MAX_LINE`] bytes is refused by number.
pub fn each_line(path: &Path, mut f: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    for number in 1u64.. {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        if read as u64 > MAX_LINE {
            return Err(Error::BadLine {
                path: path.into(),
                line: number,
                reason: format!(
                    "longer than {} MiB: not a text file of one entry per line",
                    MAX_LINE >> 20
                ),
            });
        }
        let line = std::str::from_utf8(&buf).map_err(|_| Error::BadLine {
            path: path.into(),
            line: number,
            reason: "not UTF-8 text".into(),
        })?;
        f(number, line)?;
    }
    Ok(())
}
