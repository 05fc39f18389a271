//! One writer per run directory: an exclusive OS file lock on `DIR/.kaizen.lock`, held for the life of the
//! process that trains in `DIR` (`kaizen run` or `kaizen resume`).
//!
//! The lock belongs to the open file, so the operating system releases it when the process ends, however it ends
//! (a `kill -9` leaves no stale lock to clean up). The file also records the holder's process id, so a second
//! process is refused with a message naming it.

use crate::error::CoreError;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".kaizen.lock";

/// The exclusive lock of a run directory; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
    created_dir: bool,
}

impl RunLock {
    /// Lock `dir` (created if absent) for this process; errors naming the holder's pid when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, CoreError> {
        let created_dir = !dir.exists();
        fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CoreError::Invalid(format!(
                    "run directory {} is in use by another kaizen process ({}): wait for it to finish or stop it, \
                     or choose another --out",
                    dir.display(),
                    if holder.is_empty() {
                        "pid unknown".to_string()
                    } else {
                        format!("pid {holder}")
                    }
                )));
            }
            Err(TryLockError::Error(e)) => return Err(CoreError::io(&path, e)),
        }
        file.set_len(0).map_err(|e| CoreError::io(&path, e))?;
        file.rewind().map_err(|e| CoreError::io(&path, e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| CoreError::io(&path, e))?;
        file.flush().map_err(|e| CoreError::io(&path, e))?;
        Ok(Self {
            _file: file,
            path,
            created_dir,
        })
    }

    /// Release the lock after a failure that wrote nothing: removes the lock file, and the directory too when this
    /// lock created it and it is otherwise empty, so a bad input leaves nothing behind.
    pub fn abandon(self) {
        let dir = self.path.parent().map(Path::to_path_buf);
        let _ = fs::remove_file(&self.path);
        if let (true, Some(dir)) = (self.created_dir, dir) {
            let _ = fs::remove_dir(dir); // only succeeds on an empty directory
        }
    }
}

/// Whether `dir` holds anything but the lock file (a run, or files of the user's).
pub fn has_content(dir: &Path) -> Result<bool, CoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(|e| CoreError::io(dir, e))?;
                if e.file_name() != LOCK_FILE {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CoreError::io(dir, e)),
    }
}
