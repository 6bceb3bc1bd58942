//! Server databases for tests: a database of one test's own on the shared PostgreSQL
//! or MariaDB test server, and a whole PostgreSQL cluster of one test's own that the
//! test may stop and start.

use std::process::Command;
use std::time::Duration;

/// The server a test database lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    Mariadb,
}

/// A new, empty database on the server of `TEST_DATABASE_URL` (PostgreSQL) or
/// `TEST_MARIADB_URL`, dropped (with any connections still open to it) when this
/// value is.
#[derive(Debug)]
pub struct TestDatabase {
    server: Server,
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `{prefix}_{unique}` on the PostgreSQL test server; `prefix` is
    /// lower-case letters, digits and `_`.
    pub async fn create(prefix: &str) -> Self {
        Self::create_on(Server::Postgres, prefix).await
    }

    /// The same on the MariaDB test server.
    pub async fn mariadb(prefix: &str) -> Self {
        Self::create_on(Server::Mariadb, prefix).await
    }

    async fn create_on(server: Server, prefix: &str) -> Self {
        let admin_url = admin_url(server);
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "test database names are lower-case letters, digits and underscores: {name}"
        );
        execute(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("the test server's URL names a database: SCHEME://USER@HOST:PORT/DB");
        let url = format!("{base}/{name}");
        Self {
            server,
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
        let (server, admin_url, name) = (self.server, self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let drop = match server {
                Server::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                Server::Mariadb => format!("DROP DATABASE IF EXISTS {name}"),
            };
            runtime.block_on(execute(&admin_url, &drop))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the test database {}", self.name),
        }
    }
}

fn admin_url(server: Server) -> String {
    match server {
        Server::Postgres => std::env::var("TEST_DATABASE_URL").expect(
            "TEST_DATABASE_URL is not set: run scripts/test.sh (it starts a throwaway PostgreSQL cluster), \
             or set it to postgres://USER@HOST:PORT/DB of a server where tests may create databases",
        ),
        Server::Mariadb => std::env::var("TEST_MARIADB_URL").expect(
            "TEST_MARIADB_URL is not set: run scripts/test.sh (it starts a throwaway MariaDB server), \
             or set it to mysql://USER@HOST:PORT/DB of a server where tests may create databases",
        ),
    }
}

/// Runs one statement on the test server, within 10 seconds.
async fn execute(url: &str, statement: &str) -> Result<(), String> {
    let run = async {
        crate::DatabaseConnection::connect(url)
            .await?
            .run(statement)
            .await
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| format!("the test server ({url}) did not answer within 10 s"))?
}

/// A database server of one test's own (a PostgreSQL cluster or a MariaDB server,
/// started by its script in `scripts/`), which the test may stop and start again;
/// stopped and removed when this value is dropped.
pub struct OwnServer {
    script: &'static str,
    dir: tempfile::TempDir,
    port: u16,
    /// The URL of its database, from the port.
    url: fn(u16) -> String,
}

impl OwnServer {
    /// A PostgreSQL cluster (`scripts/pg-cluster.sh`).
    pub fn postgres() -> Self {
        Self::start("pg-cluster.sh", |port| {
            format!("postgres://postgres@127.0.0.1:{port}/postgres")
        })
    }

    /// A MariaDB server (`scripts/mariadb-server.sh`), with an empty `passcode` database.
    pub fn mariadb() -> Self {
        Self::start("mariadb-server.sh", |port| {
            format!("mysql://root@127.0.0.1:{port}/passcode")
        })
    }

    fn start(script: &'static str, url: fn(u16) -> String) -> Self {
        let server = Self {
            script,
            dir: tempfile::Builder::new()
                .prefix("passcode-db-")
                .tempdir()
                .expect("temporary folder"),
            port: crate::closed_port(),
            url,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        (self.url)(self.port)
    }

    fn run(&self, args: &[&str]) {
        let script = format!(
            "{}/../../scripts/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.script
        );
        let status = Command::new("bash")
            .arg(&script)
            .args(args)
            .status()
            .unwrap_or_else(|error| panic!("running scripts/{}: {error}", self.script));
        assert!(status.success(), "scripts/{} {args:?} failed", self.script);
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

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}
