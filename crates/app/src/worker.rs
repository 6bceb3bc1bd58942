//! The background mail worker: delivers due messages from the outbox until told to
//! stop, then finishes the sends it has started.

use std::time::Duration;

use passcode_domain::service::MailDelivery;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) struct MailWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MailWorker {
    pub(crate) fn start(delivery: MailDelivery, poll: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(delivery, poll, stopped));
        Self { stop, task }
    }

    /// Asks the worker to stop and waits for the batch in hand.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the mail worker ended abnormally");
        }
    }
}

async fn run(delivery: MailDelivery, poll: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let more = match delivery.deliver_due().await {
            // A full batch: there may be more due right away.
            Ok(claimed) => claimed >= delivery.settings().batch as usize,
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "mail delivery round failed");
                false
            }
        };
        if !more {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}
