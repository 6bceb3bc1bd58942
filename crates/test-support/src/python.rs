//! The tests' Python tools, from the venv that `scripts/test.sh` installs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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

/// Starts `tests/support/{script}` with `args` on the tests' Python and waits for its
/// first line, which names its port(s). `what` names it in failure messages.
pub fn spawn_support(script: &str, args: &[&str], what: &str) -> (Child, String) {
    let python = test_python();
    // Its errors, kept to explain a server that did not start.
    let errors = tempfile::tempfile().expect("a temporary file");
    let mut child = Command::new(&python)
        .arg(support_file(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(errors.try_clone().expect("a temporary file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {what} with {python:?}: {e}. Run the tests with scripts/test.sh, which installs the tests' Python tools and sets PASSCODE_TEST_PYTHON.")
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading the first line of {what}: {e}"));
    if !line.contains("port") {
        let _ = child.wait();
        let mut said = String::new();
        let mut errors = errors;
        let _ = std::io::Seek::rewind(&mut errors);
        let _ = std::io::Read::read_to_string(&mut errors, &mut said);
        panic!(
            "{what} did not start (are the tests' Python tools installed? run scripts/test.sh): \
             {line:?}; it said: {said}"
        );
    }
    (child, line)
}
