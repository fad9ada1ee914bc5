//! The tree's hashes on disk in the C2SP tlog-tiles layout ([`TileStore`]):
//! `tile/<L>/<N>` holds 256 consecutive hashes of level L (level 0: leaf
//! hashes; level L+1: the roots of full level-L tiles), `tile/<L>/<N>.p/<W>`
//! the W hashes of a tile not yet full, and `tree-size` the committed size.
//!
//! Appends are crash-safe: every file is written to a temporary name,
//! synced and renamed, and `tree-size` is renamed last, so a crash leaves
//! the previous size and its tiles intact (tiles written past it are
//! harmless: their first hashes are the committed ones). Only the
//! rightmost partial tile of each level is kept in memory; a proof reads
//! O(log n) tiles. A size that is not stored is an error, never a panic.
//! One `TileStore` writes a directory at a time: it takes no lock.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::hash::{empty_root, node_hash, Hash, HASH_SIZE};
use super::proof::{self, HashSource, ProofError};

/// Height of a tile: a full tile spans 2^8 hashes of one level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// Levels of tiles a u64 tree size can need (256^8 = 2^64).
const MAX_LEVELS: usize = 8;
/// Name of the committed-size file.
const SIZE_FILE: &str = "tree-size";
/// Longest `tree-size` file accepted: 20 digits and a newline.
const SIZE_FILE_MAX: u64 = 21;

/// Why the tile store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `create` found a store already there.
    #[error("a tile store already exists in {path}")]
    AlreadyExists {
        /// The existing size file.
        path: PathBuf,
    },
    /// The `tree-size` file is not a decimal size and a newline.
    #[error("{path} is not a tree size (decimal digits and a newline)")]
    BadSizeFile {
        /// The size file.
        path: PathBuf,
    },
    /// A tile file does not have the length its name implies.
    #[error("tile {path} has {len} bytes, expected {want}")]
    BadTile {
        /// The tile file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length its width implies.
        want: u64,
    },
    /// A file the store reads is not a regular file (a FIFO or device
    /// would block or never end).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// A tree size beyond what is stored.
    #[error("tree size {size} is not stored (the store has {stored} leaves)")]
    NotStored {
        /// The size asked for.
        size: u64,
        /// The committed size.
        stored: u64,
    },
    /// Appending would overflow the tree size.
    #[error("appending {count} leaves to {stored} overflows the tree size")]
    TooLarge {
        /// Leaves to append.
        count: usize,
        /// The committed size.
        stored: u64,
    },
    /// A proof argument error.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// The tree's hashes in a directory, in C2SP tlog-tiles layout.
#[derive(Debug)]
pub struct TileStore {
    /// The store's directory (holds `tile/` and `tree-size`).
    dir: PathBuf,
    /// The committed tree size.
    size: u64,
    /// `edges[l]`: the hashes of the rightmost, partial tile of level l at
    /// `size` (fewer than 256), so appends never re-read them.
    edges: Vec<Vec<Hash>>,
}

/// The path of tile `n` of level `level`, partial of `width` hashes if
/// `width` is below 256, relative to the store's directory.
fn tile_path(level: usize, n: u64, width: usize) -> PathBuf {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    let mut path = PathBuf::from("tile").join(level.to_string());
    let last = groups.len() - 1;
    for (i, g) in groups.iter().enumerate() {
        if i == last && width < TILE_WIDTH {
            path.push(format!("{g}.p"));
            path.push(width.to_string());
        } else {
            path.push(g);
        }
    }
    path
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TileError + 'a {
    move |source| TileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` crash-safely: a synced temporary file in the
/// same directory, renamed over `path`, then the directory synced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TileError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    // A leftover (crash) or planted temporary name is removed, and the new
    // one created exclusively: `create_new` (O_EXCL) never follows a
    // symlink, so the write cannot be redirected out of the store.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove", &tmp)(e));
        }
        _ => {}
    }
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    let d = fs::File::open(parent).map_err(io("open directory", parent))?;
    d.sync_all().map_err(io("sync directory", parent))
}

/// Opens a file the store reads, refusing anything but a regular file:
/// O_NONBLOCK so a FIFO does not block the open, then the opened file's
/// own type is checked (no window between the check and the open).
fn open_regular(path: &Path) -> Result<fs::File, TileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io("open", path))?;
    if !f.metadata().map_err(io("stat", path))?.is_file() {
        return Err(TileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok(f)
}

/// Reads a tile of exactly `width` hashes (strict: any other length is
/// [`TileError::BadTile`]).
fn read_tile(path: &Path, width: usize) -> Result<Vec<Hash>, TileError> {
    let mut f = open_regular(path)?;
    let len = f.metadata().map_err(io("stat", path))?.len();
    let want = (width * HASH_SIZE) as u64;
    if len != want {
        return Err(TileError::BadTile {
            path: path.to_path_buf(),
            len,
            want,
        });
    }
    let mut bytes = Vec::with_capacity(width * HASH_SIZE);
    std::io::Read::by_ref(&mut f)
        .take(want + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 != want {
        return Err(TileError::BadTile {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            want,
        });
    }
    let mut out = Vec::with_capacity(width);
    for chunk in bytes.chunks_exact(HASH_SIZE) {
        out.push(Hash::from_slice(chunk).map_err(|_| TileError::BadTile {
            path: path.to_path_buf(),
            len,
            want,
        })?);
    }
    Ok(out)
}

/// Parses a `tree-size` file: ASCII decimal without leading zeros and one
/// newline.
fn parse_size(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.strip_suffix(b"\n")?;
    if digits.is_empty()
        || digits.len() > 20
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The root of a power-of-two run of hashes (a full subtree).
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied().unwrap_or_else(empty_root)
}

impl TileStore {
    /// Creates an empty store in `dir` (created if missing); refuses a
    /// directory that already holds one.
    pub fn create(dir: &Path) -> Result<TileStore, TileError> {
        let size_path = dir.join(SIZE_FILE);
        if size_path.exists() {
            return Err(TileError::AlreadyExists { path: size_path });
        }
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        write_atomic(&size_path, b"0\n")?;
        Ok(TileStore {
            dir: dir.to_path_buf(),
            size: 0,
            edges: Vec::new(),
        })
    }

    /// Opens the store in `dir` at its committed size, reading the
    /// rightmost partial tile of each level.
    pub fn open(dir: &Path) -> Result<TileStore, TileError> {
        let size_path = dir.join(SIZE_FILE);
        let f = open_regular(&size_path)?;
        let mut bytes = Vec::new();
        f.take(SIZE_FILE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(io("read", &size_path))?;
        let size = parse_size(&bytes).ok_or(TileError::BadSizeFile {
            path: size_path.clone(),
        })?;
        let mut edges = Vec::new();
        for level in 0..MAX_LEVELS {
            let count = size >> (8 * level);
            if count == 0 {
                break;
            }
            let width = (count % TILE_WIDTH as u64) as usize;
            let hashes = if width == 0 {
                Vec::new()
            } else {
                read_tile(&dir.join(tile_path(level, count / 256, width)), width)?
            };
            edges.push(hashes);
        }
        Ok(TileStore {
            dir: dir.to_path_buf(),
            size,
            edges,
        })
    }

    /// The committed tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a batch of leaf hashes and commits the new size; returns it.
    /// Full tiles are written as they fill, the partial tiles and the size
    /// last.
    pub fn append(&mut self, leaves: &[Hash]) -> Result<u64, TileError> {
        let old = self.size;
        let new = u64::try_from(leaves.len())
            .ok()
            .and_then(|n| old.checked_add(n))
            .ok_or(TileError::TooLarge {
                count: leaves.len(),
                stored: old,
            })?;
        if leaves.is_empty() {
            return Ok(old);
        }
        // Work on a copy: a failed append leaves the store at `old`.
        let mut edges = self.edges.clone();
        let mut filled: Vec<(usize, u64)> = Vec::new();
        let mut size = old;
        for leaf in leaves {
            size += 1;
            let mut hash = *leaf;
            let mut level = 0;
            loop {
                if edges.len() == level {
                    edges.push(Vec::new());
                }
                edges[level].push(hash);
                if edges[level].len() < TILE_WIDTH {
                    break;
                }
                let n = (size >> (8 * level)) / TILE_WIDTH as u64 - 1;
                let tile = std::mem::take(&mut edges[level]);
                self.write_tile(level, n, &tile)?;
                filled.push((level, n));
                hash = subtree_root(&tile);
                level += 1;
            }
        }
        for (level, edge) in edges.iter().enumerate() {
            let shift = 8 * level as u32;
            if edge.is_empty() || old.checked_shr(shift) == new.checked_shr(shift) {
                continue;
            }
            let n = (new >> shift) / TILE_WIDTH as u64;
            self.write_tile(level, n, edge)?;
        }
        write_atomic(&self.dir.join(SIZE_FILE), format!("{new}\n").as_bytes())?;
        self.size = new;
        self.edges = edges;
        // The partial versions of a now-full tile are redundant (C2SP lets a
        // log delete them); a failure here loses nothing.
        for (level, n) in filled {
            let partial = tile_path(level, n, 1);
            if let Some(dir) = partial.parent() {
                let _ = fs::remove_dir_all(self.dir.join(dir));
            }
        }
        Ok(new)
    }

    fn write_tile(&self, level: usize, n: u64, hashes: &[Hash]) -> Result<(), TileError> {
        let mut bytes = Vec::with_capacity(hashes.len() * HASH_SIZE);
        for h in hashes {
            bytes.extend_from_slice(h.as_bytes());
        }
        write_atomic(&self.dir.join(tile_path(level, n, hashes.len())), &bytes)
    }

    fn check_size(&self, size: u64) -> Result<(), TileError> {
        if size > self.size {
            return Err(TileError::NotStored {
                size,
                stored: self.size,
            });
        }
        Ok(())
    }

    /// The root (Merkle Tree Hash) of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, TileError> {
        self.check_size(size)?;
        proof::tree_hash(&self.reader(), size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TileError> {
        self.check_size(size)?;
        proof::inclusion_proof(&self.reader(), index, size)
    }

    /// The consistency proof between the trees of `first` and `second` leaves.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, TileError> {
        self.check_size(second)?;
        proof::consistency_proof(&self.reader(), first, second)
    }

    fn reader(&self) -> TileReader<'_> {
        TileReader {
            store: self,
            cache: RefCell::new(HashMap::new()),
        }
    }
}

/// Reads complete subtree hashes out of a store's tiles for one operation,
/// caching the tiles it has read.
struct TileReader<'a> {
    store: &'a TileStore,
    cache: RefCell<HashMap<(usize, u64), Vec<Hash>>>,
}

impl TileReader<'_> {
    /// Hashes `start..start+count` of tile `n` of `level`, as stored at
    /// the committed size.
    fn hashes(
        &self,
        level: usize,
        n: u64,
        start: usize,
        count: usize,
    ) -> Result<Vec<Hash>, TileError> {
        let store = self.store;
        let not_stored = TileError::NotStored {
            size: n
                .saturating_mul(TILE_WIDTH as u64)
                .saturating_add((start + count) as u64)
                .saturating_mul(1u64 << (8 * level)),
            stored: store.size,
        };
        let on_level = store.size.checked_shr(8 * level as u32).unwrap_or(0);
        let full_tiles = on_level / TILE_WIDTH as u64;
        let width = if n < full_tiles {
            TILE_WIDTH
        } else if n == full_tiles {
            (on_level % TILE_WIDTH as u64) as usize
        } else {
            0
        };
        if start + count > width {
            return Err(not_stored);
        }
        if width < TILE_WIDTH {
            return store
                .edges
                .get(level)
                .and_then(|edge| edge.get(start..start + count))
                .map(<[Hash]>::to_vec)
                .ok_or(not_stored);
        }
        let mut cache = self.cache.borrow_mut();
        let tile = match cache.entry((level, n)) {
            Entry::Occupied(tile) => tile.into_mut(),
            Entry::Vacant(slot) => {
                let path = store.dir.join(tile_path(level, n, TILE_WIDTH));
                slot.insert(read_tile(&path, TILE_WIDTH)?)
            }
        };
        tile.get(start..start + count)
            .map(<[Hash]>::to_vec)
            .ok_or(not_stored)
    }
}

impl HashSource for TileReader<'_> {
    type Error = TileError;

    fn complete_subtree(&self, height: u8, index: u64) -> Result<Hash, TileError> {
        let level = usize::from(height / TILE_HEIGHT);
        let sub = u32::from(height % TILE_HEIGHT);
        let first = index.checked_shl(sub).ok_or(TileError::NotStored {
            size: u64::MAX,
            stored: self.store.size,
        })?;
        let n = first / TILE_WIDTH as u64;
        let start = (first % TILE_WIDTH as u64) as usize;
        let hashes = self.hashes(level, n, start, 1 << sub)?;
        Ok(subtree_root(&hashes))
    }
}

/// A store is a source of its own complete subtrees (one read per call:
/// for a few reads, such as a [`super::Frontier`] rebuilt at start).
impl HashSource for TileStore {
    type Error = TileError;

    fn complete_subtree(&self, height: u8, index: u64) -> Result<Hash, TileError> {
        self.reader().complete_subtree(height, index)
    }
}

#[cfg(test)]
#[path = "tiles_tests.rs"]
mod tests;
