//! `passcode`: serve (the default) or migrate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use passcode_app::{
    Application, KeysAction, Settings, keys, mail_queue, mail_test, migrate, set_user_active,
    telemetry,
};

/// mimalloc instead of glibc's malloc: see docs/performance.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Email verification with one-time codes, and JWT authentication"
)]
struct Cli {
    /// Folder of default.toml and <APP_ENVIRONMENT>.toml (both optional).
    #[arg(long, env = "APP_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Check or inspect outgoing mail.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the audit trail, newest first.
    Audit {
        /// Only events of this address.
        #[arg(long)]
        email: Option<String>,
        /// From this time on: 2026-12-01T10:00:00Z, 2026-12-01, or an age (90m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every problem in it;
    /// exit 1 if there is any.
    Check,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys: every one verifies, one signs.
    List,
    /// Add a key that verifies (after a restart) but does not sign yet.
    Generate {
        /// EdDSA, ES256 or RS256 (default: jwt.algorithm).
        #[arg(long)]
        algorithm: Option<String>,
    },
    /// Make a key the one that signs (after a restart).
    Activate { kid: String },
    /// Generate a key and make it the one that signs (after a restart).
    Rotate {
        #[arg(long)]
        algorithm: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Refuse the account's logins and refreshes, and revoke its sessions.
    Deactivate { email: String },
    /// Allow the account again.
    Activate { email: String },
    /// Erase the account and everything personal of it (as the user's own delete).
    Delete { email: String },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Send one test message with the configured transport and print the server's answer.
    Test {
        /// Where to send it.
        address: String,
    },
    /// List queued and failed messages (no bodies, no codes).
    Queue {
        /// Queue failed messages that can still be sent again first.
        #[arg(long)]
        retry_failed: bool,
    },
}

fn main() -> ExitCode {
    // The service's log writer, kept until the last line is logged.
    let mut log = None;
    let code = match run(&mut log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "passcode stopped");
            eprintln!("passcode: {error:#}");
            ExitCode::FAILURE
        }
    };
    drop(log);
    code
}

fn run(log: &mut Option<telemetry::LogGuard>) -> anyhow::Result<()> {
    // A missing .env file is normal.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Some(Command::Config(ConfigCommand::Check)) = cli.command {
        return config_check(&cli.config_dir);
    }
    let settings = Settings::load(&cli.config_dir)?;
    passcode_app::check::ensure_valid(&settings)?;
    let command = cli.command.unwrap_or(Command::Serve);
    // The service logs every request: off its request threads. A command's lines stay
    // in order with what it prints.
    if matches!(command, Command::Serve) {
        *log = Some(telemetry::init_off_thread(&settings.log));
    } else {
        telemetry::init(&settings.log);
    }
    // The main runtime (the mail worker, the SQLite statements it runs, a command's
    // work) gets the same cap on blocking threads as each HTTP worker's runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(settings.server.blocking_threads)
        .build()?;
    actix_web::rt::System::with_tokio_rt(|| runtime).block_on(self::command(command, settings))
}

async fn command(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Migrate => {
            let applied = migrate(&settings).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        Command::Keys(command) => {
            let action = match command {
                KeysCommand::List => KeysAction::List,
                KeysCommand::Generate { algorithm } => KeysAction::Generate { algorithm },
                KeysCommand::Activate { kid } => KeysAction::Activate { kid },
                KeysCommand::Rotate { algorithm } => KeysAction::Rotate { algorithm },
            };
            let changes_signer = matches!(
                action,
                KeysAction::Activate { .. } | KeysAction::Rotate { .. }
            );
            println!("{}", keys(&settings, action)?.trim_end());
            // The key files changed already: a database that cannot take the event
            // (not migrated yet, unreachable) must not make the command look failed.
            if changes_signer && let Err(error) = passcode_app::record_keys_rotated(&settings).await
            {
                eprintln!(
                    "passcode: the keys changed, but the audit trail did not record it: {error:#}"
                );
            }
        }
        Command::Users(UsersCommand::Deactivate { email }) => {
            println!("{}", set_user_active(&settings, &email, false).await?);
        }
        Command::Users(UsersCommand::Delete { email }) => {
            println!("{}", passcode_app::delete_user(&settings, &email).await?);
        }
        Command::Users(UsersCommand::Activate { email }) => {
            println!("{}", set_user_active(&settings, &email, true).await?);
        }
        Command::Mail(MailCommand::Test { address }) => {
            println!("{}", mail_test(&settings, &address).await?)
        }
        Command::Mail(MailCommand::Queue { retry_failed }) => {
            print!("{}", mail_queue(&settings, retry_failed).await?)
        }
        Command::Config(ConfigCommand::Check) => unreachable!("handled before loading"),
        Command::Audit {
            email,
            since,
            json,
            limit,
        } => print!(
            "{}",
            passcode_app::audit(&settings, email.as_deref(), since.as_deref(), json, limit).await?
        ),
    }
    Ok(())
}

/// `passcode config check`: the effective configuration and its problems.
fn config_check(config_dir: &std::path::Path) -> anyhow::Result<()> {
    let settings = match Settings::load(config_dir) {
        Ok(settings) => settings,
        // An unknown key type or enum value: nothing more can be checked.
        Err(error) => anyhow::bail!("the configuration cannot be read: {error:#}"),
    };
    println!("{}", serde_json::to_string_pretty(&settings)?);
    let problems = passcode_app::check::problems(&settings);
    if problems.is_empty() {
        println!("no problems found");
        return Ok(());
    }
    for problem in &problems {
        println!("problem: {problem}");
    }
    anyhow::bail!("{} problem(s) in the configuration", problems.len())
}
