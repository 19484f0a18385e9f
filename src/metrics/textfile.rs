//! `--textfile PATH`: the file node_exporter's textfile collector reads,
//! replaced atomically so that a scrape never sees half a file: the text
//! goes to a hidden temporary file in the same directory (node_exporter
//! reads only `*.prom`), is flushed to disk, and is renamed over PATH.
//!
//! The file is not one of nfkit's persistent targets (no run lock, no
//! nfkit.toml): the Landlock policy of `metrics --textfile` grants file
//! rights in PATH's directory only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the textfile could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextfileError {
    /// PATH names no file (ends in `/`, or is empty).
    #[error("write metrics to {}: not a file path", .0.display())]
    NotAFile(PathBuf),
    /// A step of the write failed; nothing was replaced.
    #[error("write metrics to {}: {step} {}", path.display(), temp.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        temp: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::error::Hint for TextfileError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            TextfileError::NotAFile(_) => Some(
                "give the file node_exporter should read, e.g. \
                 /var/lib/node_exporter/textfile_collector/nfkit.prom",
            ),
            TextfileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Some("the directory must exist (node_exporter's --collector.textfile.directory)")
            }
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// The directory a textfile is written in (relative paths: the current
/// directory), for the Landlock grant.
pub fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary file's path: hidden, same directory, not `*.prom`.
pub fn temp_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some(directory_of(path).join(format!(".{name}.nfkit-{}.tmp", nix::unistd::getpid())))
}

/// Replaces `path` with `text` atomically (mode 0644).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), TextfileError> {
    let temp = temp_path(path).ok_or_else(|| TextfileError::NotAFile(path.to_path_buf()))?;
    let io = |step: &'static str, source: io::Error| TextfileError::Io {
        path: path.to_path_buf(),
        step,
        temp: temp.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temp)
        .map_err(|e| io("create", e))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| io("rename", e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable once the directory is flushed.
    if let Ok(dir) = File::open(directory_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nfkit.prom");
        fs::write(&path, "old\n").unwrap();
        write_atomic(&path, "new 1\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new 1\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("nfkit.prom")]);
    }

    #[test]
    fn failure_keeps_the_old_file_and_names_the_step() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails, the temp file is removed.
        let path = dir.path().join("nfkit.prom");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        let err = write_atomic(&path, "new\n").unwrap_err();
        assert!(
            matches!(err, TextfileError::Io { step: "rename", .. }),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/x.prom");
        let err = write_atomic(&missing, "x").unwrap_err();
        assert!(crate::error::hint(&err).unwrap().contains("must exist"));
        assert!(matches!(
            write_atomic(Path::new("/"), "x"),
            Err(TextfileError::NotAFile(_))
        ));
    }

    #[test]
    fn temporary_is_hidden_beside_the_target() {
        let t = temp_path(Path::new("/var/lib/tf/nfkit.prom")).unwrap();
        assert_eq!(t.parent(), Some(Path::new("/var/lib/tf")));
        let name = t.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".nfkit.prom.") && !name.ends_with(".prom"));
        assert_eq!(directory_of(Path::new("x.prom")), PathBuf::from("."));
    }
}
