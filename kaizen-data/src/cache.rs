//! The decoded cache: every image of a split decoded once into one file on disk and read back by offset, so a
//! small image folder pays its PNG/JPEG decoding once instead of every epoch, and memory stays flat.
//!
//! File `<dir>/<key>.kzdc`: the magic `KZDC0001`, the image count (u64 LE), the channel count (u64 LE), then
//! per image `(offset u64, height u32, width u32)`, then the pixels (HWC u8). An image that failed to decode
//! while the cache was built ([`BadFiles::Skip`]) is stored as 0x0 and reported as a failure when read.
//!
//! The key is a SHA-256 over the channel count and, per image, its path, length and modification time (files)
//! or its bytes (in-memory items): any change to the dataset gives a new cache file. The file is written to a
//! temporary name and renamed, so an interrupted build never leaves a half cache behind.

use crate::encoded::{BadFiles, EncodedItem, SourceImage};
use crate::error::{DataError, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KZDC0001";
const HEADER: u64 = 24;
const ENTRY: u64 = 16;
/// Images decoded per parallel chunk while building (bounds the memory of a build).
const CHUNK: usize = 256;

/// An open decoded cache (see the module docs).
#[derive(Debug)]
pub struct DecodedCache {
    path: PathBuf,
    reader: Reader,
    index: Vec<(u64, u32, u32)>,
    channels: usize,
}

impl DecodedCache {
    /// Opens the cache of `items` in `dir`, building it first when it does not exist.
    pub fn open_or_build(
        dir: &Path,
        items: &[EncodedItem],
        channels: usize,
        bad_files: BadFiles,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let path = dir.join(format!("{}.kzdc", key(items, channels)?));
        if !path.exists() {
            build(&path, items, channels, bad_files)?;
        }
        Self::open(&path, items.len(), channels)
    }

    fn open(path: &Path, n: usize, channels: usize) -> Result<Self> {
        let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
        let bad = |why: String| {
            DataError::bad(
                path,
                format!("{why}; delete the file and it will be rebuilt"),
            )
        };
        let mut head = [0u8; HEADER as usize];
        f.read_exact(&mut head)
            .map_err(|_| bad("shorter than its header".into()))?;
        let word = |k: usize| u64::from_le_bytes(head[k..k + 8].try_into().unwrap_or([0; 8]));
        if &head[..8] != MAGIC || word(8) != n as u64 || word(16) != channels as u64 {
            return Err(bad("not the decoded cache of this dataset".into()));
        }
        let mut raw = vec![0u8; n * ENTRY as usize];
        f.read_exact(&mut raw)
            .map_err(|_| bad("its index is truncated".into()))?;
        let mut index = Vec::with_capacity(n);
        for e in raw.chunks_exact(ENTRY as usize) {
            let off = u64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
            let h = u32::from_le_bytes(e[8..12].try_into().unwrap_or([0; 4]));
            let w = u32::from_le_bytes(e[12..16].try_into().unwrap_or([0; 4]));
            let end = off + h as u64 * w as u64 * channels as u64;
            if end > len {
                return Err(bad(format!("an entry points past its end ({end} > {len})")));
            }
            index.push((off, h, w));
        }
        Ok(DecodedCache {
            path: path.to_path_buf(),
            reader: Reader::new(f),
            index,
            channels,
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Image `i` (`item` names it in errors).
    pub fn read(&self, i: usize, item: &EncodedItem) -> Result<SourceImage<'static>> {
        let (off, h, w) = self.index[i];
        if h == 0 || w == 0 {
            return Err(DataError::bad(
                PathBuf::from(item.name()),
                "did not decode when the decoded cache was built",
            ));
        }
        let mut px = vec![0u8; h as usize * w as usize * self.channels];
        self.reader
            .read_at(&mut px, off)
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(SourceImage {
            pixels: Cow::Owned(px),
            height: h as usize,
            width: w as usize,
        })
    }
}

fn key(items: &[EncodedItem], channels: usize) -> Result<String> {
    let mut h = Sha256::new();
    h.update((channels as u64).to_le_bytes());
    for it in items {
        match it {
            EncodedItem::File(p) => {
                let m = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                h.update(p.as_os_str().as_encoded_bytes());
                h.update([0]);
                h.update(m.len().to_le_bytes());
                h.update(t.to_le_bytes());
            }
            EncodedItem::Bytes { bytes, .. } => {
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
        }
    }
    Ok(h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn build(path: &Path, items: &[EncodedItem], channels: usize, bad_files: BadFiles) -> Result<()> {
    let tmp = path.with_extension(format!("kzdc.tmp{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let io = |e| DataError::io(&tmp, e);
        let mut off = HEADER + ENTRY * items.len() as u64;
        f.seek(SeekFrom::Start(off)).map_err(io)?;
        let mut index = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            let decoded: Vec<Result<SourceImage<'static>>> =
                chunk.par_iter().map(|it| it.decode(channels)).collect();
            for d in decoded {
                match d {
                    Ok(img) => {
                        f.write_all(&img.pixels).map_err(io)?;
                        index.push((off, img.height as u32, img.width as u32));
                        off += img.pixels.len() as u64;
                    }
                    Err(_) if bad_files == BadFiles::Skip => index.push((off, 0, 0)),
                    Err(e) => return Err(e),
                }
            }
        }
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut head = Vec::with_capacity((HEADER + ENTRY * items.len() as u64) as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(items.len() as u64).to_le_bytes());
        head.extend_from_slice(&(channels as u64).to_le_bytes());
        for (o, h, w) in index {
            head.extend_from_slice(&o.to_le_bytes());
            head.extend_from_slice(&h.to_le_bytes());
            head.extend_from_slice(&w.to_le_bytes());
        }
        f.write_all(&head).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Positioned reads from several threads at once (`pread` on Unix; a locked seek + read elsewhere).
#[derive(Debug)]
struct Reader {
    #[cfg(unix)]
    file: File,
    #[cfg(not(unix))]
    file: std::sync::Mutex<File>,
}

impl Reader {
    fn new(file: File) -> Self {
        #[cfg(unix)]
        return Reader { file };
        #[cfg(not(unix))]
        return Reader {
            file: std::sync::Mutex::new(file),
        };
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, off)
        }
        #[cfg(not(unix))]
        {
            let mut f = self
                .file
                .lock()
                .map_err(|_| std::io::Error::other("cache reader poisoned"))?;
            f.seek(SeekFrom::Start(off))?;
            f.read_exact(buf)
        }
    }
}
