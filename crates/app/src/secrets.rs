//! Secrets generated on first start into the data folder (mode 0600) and reused,
//! so a fresh checkout needs no configuration.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Returns the content of `path`, first creating it with `create()` if it does not
/// exist. Crash-safe: the content is written and flushed to a temporary file beside
/// it, which is then linked into place only if `path` still does not exist, so a kill
/// at any moment leaves either no file or a whole one, and of two instances starting
/// at once one creates and the other reads. An empty file (left by an older version
/// killed while creating it) is replaced.
pub(crate) fn load_or_create(
    path: &Path,
    create: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    match std::fs::read_to_string(path) {
        Ok(content) if !content.trim().is_empty() => return Ok(content),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "replacing an empty secret file");
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let content = create()?;
    // NamedTempFile is created with mode 0600.
    let mut staged = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    staged
        .write_all(content.as_bytes())
        .and_then(|()| staged.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    match staged.persist_noclobber(path) {
        Ok(_) => {
            // The new name must survive a crash too.
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
            tracing::info!(path = %path.display(), "created a new secret file");
            Ok(content)
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another instance created it first: theirs is the one.
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(e.error).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_mode_0600_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret");
        let first = load_or_create(&path, || Ok("one".into())).unwrap();
        let second = load_or_create(&path, || Ok("two".into())).unwrap();
        assert_eq!(first, "one");
        assert_eq!(second, "one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_empty_file_left_by_a_crash_is_replaced_and_no_partial_file_is_ever_visible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            load_or_create(&path, || Ok("fresh".into())).unwrap(),
            "fresh"
        );
        // A creator that fails midway leaves no file behind (nothing blocks the next start).
        let other = dir.path().join("other");
        assert!(load_or_create(&other, || anyhow::bail!("killed")).is_err());
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_creators_agree_on_one_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || load_or_create(&path, || Ok(format!("v{i}"))).unwrap())
            })
            .collect();
        let seen: std::collections::HashSet<String> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            *seen.iter().next().unwrap()
        );
    }
}
