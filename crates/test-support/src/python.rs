//! The tests' Python tools, from the venv that `scripts/test.sh` installs.

use std::path::PathBuf;

/// The Python of the tests' venv (`PASSCODE_TEST_PYTHON`, set by scripts/test.sh).
pub fn test_python() -> PathBuf {
    PathBuf::from(std::env::var("PASSCODE_TEST_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// A command installed in the tests' venv beside its Python (`st`, `openapi-python-client`).
pub fn venv_tool(name: &str) -> PathBuf {
    let tool = test_python().with_file_name(name);
    assert!(
        tool.exists(),
        "{} is missing: run the tests with scripts/test.sh, which installs the tests' Python tools",
        tool.display()
    );
    tool
}

/// A file of `tests/support/` (the Python servers and clients the tests run).
pub fn support_file(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/support")).join(name)
}
