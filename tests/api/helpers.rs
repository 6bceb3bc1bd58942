//! The harness: the shared set-up of `passcode-test-support`, and what needs this
//! package's binary.

pub use passcode_test_support::*;

/// The `passcode` binary built with these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_passcode");

/// The CLI against a running test app's database and data folder.
pub trait Cli {
    /// Runs `passcode users ACTION EMAIL`, asserting it succeeds.
    fn users_cli(&self, action: &str, email: &str);
    /// `passcode ARGS` with this app's database and data folder, logging off.
    fn cli(&self, args: &[&str]) -> std::process::Command;
}

impl Cli for TestApp {
    fn users_cli(&self, action: &str, email: &str) {
        let out = self
            .cli(&["users", action, email])
            .output()
            .expect("passcode users");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn cli(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(BIN);
        command
            .args(args)
            .env("APP__LOG__LEVEL", "off")
            .env("APP__DATABASE__URL", &self.settings.database.url)
            .env("APP__DATA__DIR", self.data_dir.path());
        command
    }
}
