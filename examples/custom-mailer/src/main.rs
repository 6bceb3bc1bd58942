//! Runs passcode with the in-memory `Inbox` as its mailer, printing each delivery
//! (the address and whether it carried a code; never the code itself).

use passcode_example_custom_mailer::{Inbox, app_with};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = passcode_app::Settings::load(std::path::Path::new("config"))?;
    let inbox = Inbox::default();
    let app = app_with(settings, inbox.clone()).await?;
    println!("passcode with a custom mailer on port {}", app.port());
    let watcher = inbox.clone();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let delivered = watcher.delivered();
            for mail in delivered.iter().skip(seen) {
                println!("delivered to {} (code: {})", mail.to, mail.code.is_some());
            }
            seen = delivered.len();
        }
    });
    app.run_until_stopped().await?;
    Ok(())
}
