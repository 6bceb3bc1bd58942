//! Secrets generated on first start into the data folder (mode 0600) and reused,
//! so a fresh checkout needs no configuration.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Returns the content of `path`, first creating it with `create()` if it does not
/// exist. The file is created exclusively: of two instances starting at once, one
/// writes and the other reads.
pub(crate) fn load_or_create(
    path: &Path,
    create: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            let content = create()?;
            file.write_all(content.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new secret file");
            Ok(content)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A concurrent creator may not have written yet: wait briefly for content.
            for _ in 0..50 {
                let content = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                if !content.trim().is_empty() {
                    return Ok(content);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            anyhow::bail!("{} is empty", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
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
}
