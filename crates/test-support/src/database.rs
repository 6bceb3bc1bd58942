//! PostgreSQL for tests: a database of one test's own on the shared test server, and a
//! whole cluster of one test's own that the test may stop and start.

use std::process::Command;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// A new, empty database on the server of `TEST_DATABASE_URL`, dropped (with any
/// connections still open to it) when this value is.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `{prefix}_{unique}`; `prefix` is lower-case letters, digits and `_`.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "test database names are lower-case letters, digits and underscores: {name}"
        );
        let mut conn = connect(&admin_url).await;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL names a database: postgres://USER@HOST:PORT/DB");
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread of its own: the test's runtime may be a current-thread one, and
        // this may run inside it. FORCE ends the connections an app still holds.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = tokio::time::timeout(
                    Duration::from_secs(10),
                    AsyncPgConnection::establish(&admin_url),
                )
                .await
                .map_err(|_| "connecting timed out".to_owned())?
                .map_err(|e| e.to_string())?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the test database {}", self.name),
        }
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run scripts/test.sh (it starts a throwaway PostgreSQL cluster), \
         or set it to postgres://USER@HOST:PORT/DB of a server where tests may create databases",
    )
}

async fn connect(url: &str) -> AsyncPgConnection {
    tokio::time::timeout(Duration::from_secs(10), AsyncPgConnection::establish(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to the test server ({url}) timed out"))
        .unwrap_or_else(|e| panic!("connecting to the test server ({url}): {e}"))
}

/// A PostgreSQL cluster of one test's own, which the test may stop and start; stopped
/// and removed when this value is dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster.sh");

    pub fn start() -> Self {
        let cluster = Self {
            dir: tempfile::Builder::new()
                .prefix("passcode-pg-")
                .tempdir()
                .expect("temporary folder"),
            port: crate::closed_port(),
        };
        cluster.resume();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(Self::SCRIPT)
            .args(args)
            .status()
            .expect("running scripts/pg-cluster.sh");
        assert!(status.success(), "scripts/pg-cluster.sh {args:?} failed");
    }

    /// Starts (or restarts) the server on the same port.
    pub fn resume(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["start", &dir, &self.port.to_string()]);
    }

    pub fn stop(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["stop", &dir]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
