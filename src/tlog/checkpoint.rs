//! c2sp.org/tlog-checkpoint: the note text of a log's signed tree head.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zero>\n
//! <base64 of the 32-byte RFC 6962 root hash>\n
//! [<extension line>\n]...
//! ```
//!
//! Parsed strictly (every line non-empty, one spelling of the size and of
//! the hash) and formatted back to the same bytes. A checkpoint's text is
//! only trusted once its note verified: [`Checkpoint::from_note`].

use super::encoding::{decode_base64, encode_base64, parse_decimal, DecimalError};
use super::note::{NoteError, NoteText, VerifiedNote};

/// Largest checkpoint text accepted, in bytes.
pub const MAX_CHECKPOINT_BYTES: usize = 16 * 1024;

/// Why a checkpoint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Over [`MAX_CHECKPOINT_BYTES`].
    #[error("checkpoint is {len} bytes, over {MAX_CHECKPOINT_BYTES}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// An ASCII control character other than newline.
    #[error("control character at byte {offset}")]
    ControlCharacter {
        /// Byte offset in the text.
        offset: usize,
    },
    /// The text does not end with a newline.
    #[error("checkpoint does not end with a newline")]
    NotTerminated,
    /// Fewer than the three mandatory lines.
    #[error("checkpoint has {lines} lines, fewer than 3")]
    TooFewLines {
        /// How many lines it has.
        lines: usize,
    },
    /// The origin line is empty.
    #[error("origin is empty")]
    EmptyOrigin,
    /// The tree size has a character other than a digit, or is empty.
    #[error("tree size is not decimal")]
    SizeNotDecimal,
    /// The tree size has a leading zero.
    #[error("tree size has a leading zero")]
    SizeLeadingZero,
    /// The tree size is over 2^64 - 1.
    #[error("tree size does not fit 64 bits")]
    SizeOverflow,
    /// The root hash is not canonical base64.
    #[error("root hash is not canonical base64")]
    RootHashBase64,
    /// The root hash is not 32 bytes.
    #[error("root hash is {len} bytes, not 32")]
    RootHashLength {
        /// Its length in bytes.
        len: usize,
    },
    /// An extension line (numbered from 4) is empty.
    #[error("extension line {line} is empty")]
    EmptyExtension {
        /// The line number, counted from 1.
        line: usize,
    },
    /// A field given to [`Checkpoint::new`] or
    /// [`Checkpoint::with_extensions`] holds a newline, which would make it
    /// more than the one line it is (line numbered from 1: origin 1,
    /// extensions from 4).
    #[error("line {line} given to build a checkpoint holds a newline")]
    LineBreak {
        /// The line number the field would have, counted from 1.
        line: usize,
    },
    /// The checkpoint text cannot be a note text.
    #[error("checkpoint is not a note text: {0}")]
    Note(#[from] NoteError),
}

/// A log's tree head: origin, tree size, root hash, extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root_hash: [u8; 32],
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint with no extension lines; the origin must be a
    /// non-empty line with no control character.
    pub fn new(origin: &str, size: u64, root_hash: [u8; 32]) -> Result<Self, CheckpointError> {
        Self::with_extensions(origin, size, root_hash, Vec::new())
    }

    /// A checkpoint with extension lines (non-empty, no control
    /// character; their use is NOT RECOMMENDED by the spec).
    pub fn with_extensions(
        origin: &str,
        size: u64,
        root_hash: [u8; 32],
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        // Each field is one line: a newline would be re-read as other
        // lines (another size, another root), not refused.
        if origin.contains('\n') {
            return Err(CheckpointError::LineBreak { line: 1 });
        }
        if let Some(i) = extensions.iter().position(|l| l.contains('\n')) {
            return Err(CheckpointError::LineBreak { line: i + 4 });
        }
        let c = Self {
            origin: origin.to_owned(),
            size,
            root_hash,
            extensions,
        };
        // One set of rules: what is built is what would be parsed.
        Self::parse(&c.format_unchecked())
    }

    /// Parses a checkpoint text (the note text, final newline included).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        if text.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge { len: text.len() });
        }
        if let Some(offset) = text.bytes().position(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter { offset });
        }
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::NotTerminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_decimal(size).map_err(|e| match e {
            DecimalError::NotDecimal => CheckpointError::SizeNotDecimal,
            DecimalError::LeadingZero => CheckpointError::SizeLeadingZero,
            DecimalError::Overflow => CheckpointError::SizeOverflow,
        })?;
        let root = decode_base64(root).ok_or(CheckpointError::RootHashBase64)?;
        let root_hash: [u8; 32] = root
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::RootHashLength { len: root.len() })?;
        if let Some(i) = extensions.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyExtension { line: i + 4 });
        }
        let extensions = extensions.iter().map(|l| (*l).to_owned()).collect();
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root_hash,
            extensions,
        })
    }

    /// The checkpoint of a verified note.
    pub fn from_note(note: &VerifiedNote) -> Result<Self, CheckpointError> {
        Self::parse(note.text().as_str())
    }

    /// The checkpoint text, ready to be signed as a note.
    pub fn to_note_text(&self) -> Result<NoteText, CheckpointError> {
        Ok(NoteText::new(self.format_unchecked())?)
    }

    /// The checkpoint text (the bytes [`Checkpoint::parse`] read back).
    pub fn format(&self) -> String {
        self.format_unchecked()
    }

    fn format_unchecked(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            encode_base64(&self.root_hash)
        );
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root hash at that size.
    pub fn root_hash(&self) -> &[u8; 32] {
        &self.root_hash
    }

    /// The extension lines, without their newlines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // c2sp.org/tlog-checkpoint's example text.
    const SPEC: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn the_spec_example_round_trips() {
        let c = Checkpoint::parse(SPEC).expect("valid test input");
        assert_eq!(c.origin(), "example.com/behind-the-sofa");
        assert_eq!(c.size(), 20852163);
        assert_eq!(c.root_hash()[..3], [0x0a, 0xc5, 0x18]);
        assert!(c.extensions().is_empty());
        assert_eq!(c.format(), SPEC);
        assert_eq!(c.to_note_text().expect("valid test input").as_str(), SPEC);
        let ext = format!("{SPEC}ext one\n— ext two\n");
        let e = Checkpoint::parse(&ext).expect("valid test input");
        assert_eq!(
            e.extensions(),
            &["ext one".to_owned(), "— ext two".to_owned()]
        );
        assert_eq!(e.format(), ext);
    }

    #[test]
    fn building_applies_the_parse_rules() {
        let c = Checkpoint::new("o", 0, [0; 32]).expect("valid test input");
        assert_eq!(
            c.format(),
            "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
        assert_eq!(
            Checkpoint::new("", 1, [0; 32]),
            Err(CheckpointError::EmptyOrigin)
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, [0; 32]),
            Err(CheckpointError::LineBreak { line: 1 })
        );
        assert_eq!(
            Checkpoint::new("a\tb", 1, [0; 32]),
            Err(CheckpointError::ControlCharacter { offset: 1 })
        );
        let bad = Checkpoint::with_extensions("o", 1, [0; 32], vec![String::new()]);
        assert_eq!(bad, Err(CheckpointError::EmptyExtension { line: 4 }));
        let max = Checkpoint::new("o", u64::MAX, [0; 32]).expect("valid test input");
        assert_eq!(
            Checkpoint::parse(&max.format())
                .expect("valid test input")
                .size(),
            u64::MAX
        );
    }

    #[test]
    fn malformed_checkpoints_are_refused_exactly() {
        use CheckpointError::*;
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases: Vec<(String, CheckpointError)> = vec![
            (String::new(), NotTerminated),
            (SPEC.trim_end().to_owned(), NotTerminated),
            ("\n".into(), TooFewLines { lines: 1 }),
            ("o\n1\n".into(), TooFewLines { lines: 2 }),
            (format!("\n1\n{root}\n"), EmptyOrigin),
            (format!("o\n\n{root}\n"), SizeNotDecimal),
            (format!("o\n01\n{root}\n"), SizeLeadingZero),
            (format!("o\n+1\n{root}\n"), SizeNotDecimal),
            (format!("o\n1 \n{root}\n"), SizeNotDecimal),
            (format!("o\n18446744073709551616\n{root}\n"), SizeOverflow),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".into(),
                RootHashBase64,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n".into(),
                RootHashBase64,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".into(),
                RootHashBase64,
            ),
            ("o\n1\n\n".into(), RootHashLength { len: 0 }),
            ("o\n1\nAAAA\n".into(), RootHashLength { len: 3 }),
            (format!("o\n1\n{root}AA==\n"), RootHashBase64),
            (format!("o\n1\n{root}\n\n"), EmptyExtension { line: 4 }),
            (format!("o\n1\n{root}\nx\n\n"), EmptyExtension { line: 5 }),
            (format!("o\r\n1\n{root}\n"), ControlCharacter { offset: 1 }),
            (
                format!("o\n1\n{}\n", "A".repeat(MAX_CHECKPOINT_BYTES)),
                TooLarge {
                    len: MAX_CHECKPOINT_BYTES + 5,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Checkpoint::parse(&input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn a_newline_in_a_built_field_is_refused_not_reparsed() {
        // Before: the origin "o\n5\n<root>" built a checkpoint of size 5
        // (not the 1 asked for), the asked-for size becoming an extension.
        let root = encode_base64(&[7; 32]);
        let injected = format!("o\n5\n{root}");
        assert_eq!(
            Checkpoint::new(&injected, 1, [0; 32]),
            Err(CheckpointError::LineBreak { line: 1 })
        );
        let ext = vec!["a".to_owned(), "b\nc".to_owned()];
        assert_eq!(
            Checkpoint::with_extensions("o", 1, [0; 32], ext),
            Err(CheckpointError::LineBreak { line: 5 })
        );
    }

    #[test]
    fn spec_permitted_lines_are_accepted() {
        // tlog-checkpoint: an origin SHOULD (not MUST) avoid spaces and
        // plus; signed-note forbids only controls below U+0020, not DEL.
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for origin in ["a b", "a+b", "a\u{7f}b", "\u{2014} o"] {
            let text = format!("{origin}\n1\n{root}\n");
            let c = Checkpoint::parse(&text).expect("valid test input");
            assert_eq!(c.origin(), origin);
            assert_eq!(c.format(), text);
        }
        // A root of 31 or 33 bytes is refused by length.
        for len in [31, 33] {
            let text = format!("o\n1\n{}\n", encode_base64(&vec![1; len]));
            assert_eq!(
                Checkpoint::parse(&text),
                Err(CheckpointError::RootHashLength { len })
            );
        }
    }

    #[test]
    fn truncations_never_panic() {
        let text = format!("{SPEC}ext\n");
        for end in 0..text.len() {
            // The prefix that ends after the root hash is SPEC itself.
            if text.is_char_boundary(end) && end != SPEC.len() {
                assert!(Checkpoint::parse(&text[..end]).is_err());
            }
        }
    }
}
