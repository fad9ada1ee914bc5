//! How `sealgate audit verify` reads one audit file into the
//! [`super::verify::Verifier`]: lines split at `\n`, each read through a
//! bound ([`MAX_LINE`]: a longer line is a break, never an allocation),
//! and whether the file ended with a newline (a torn write never does).
//! Shared by the CLI and the `audit_verify` fuzz target, so the fuzzer
//! drives the same reading the CLI does. It never interprets a line; the
//! verifier does.

use std::io::{self, BufRead, Read};

use super::verify::Verifier;

/// Longest line read; a longer one is a break, not an allocation.
pub const MAX_LINE: u64 = 1024 * 1024;

/// Whether verification goes on with the next file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The file was read to its end.
    Next,
    /// A line was longer than [`MAX_LINE`]: the break is recorded, stop.
    Stop,
}

/// Reads the file `name` from `r` into `v`, line by line (`name:N` names
/// line N in the report). An I/O error is returned as is (the CLI names
/// the file); a line over [`MAX_LINE`] is recorded as the break.
pub fn read_file(v: &mut Verifier<'_>, name: &str, r: impl BufRead) -> io::Result<Flow> {
    read_file_with_limit(v, name, r, MAX_LINE)
}

/// [`read_file`] with another line bound than [`MAX_LINE`]: the fuzz
/// target's way to reach the over-long-line break with inputs far under
/// libFuzzer's size limit. The CLI always reads with [`MAX_LINE`].
pub fn read_file_with_limit(
    v: &mut Verifier<'_>,
    name: &str,
    mut r: impl BufRead,
    max_line: u64,
) -> io::Result<Flow> {
    v.start_file(name);
    let mut n = 0u64;
    loop {
        let mut line = Vec::new();
        let read = (&mut r)
            .take(max_line.saturating_add(1))
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(Flow::Next);
        }
        n += 1;
        let at = format!("{name}:{n}");
        let newline = line.last() == Some(&b'\n');
        if newline {
            line.pop();
        } else if line.len() as u64 > max_line {
            v.fail(&at, format!("a line longer than {max_line} bytes"));
            return Ok(Flow::Stop);
        }
        v.line(&at, &line);
        if newline {
            v.newline();
        }
    }
}
