//! The background mail worker: delivers due messages from the outbox until told to
//! stop, then finishes the sends it has started.

use std::time::Duration;

use passcode_domain::service::MailDelivery;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub(crate) struct MailWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MailWorker {
    /// Runs until stopped: delivers what is due, then sleeps until `wake` rings (this
    /// instance queued mail) or `poll` passes (another instance may have). Once woken,
    /// it waits `gather` more so that mail queued meanwhile is claimed, sent and marked
    /// sent with it: under a registration flood, two commits for several mails instead
    /// of two for each.
    pub(crate) fn start(
        delivery: MailDelivery,
        poll: Duration,
        gather: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(delivery, poll, gather, wake, stopped));
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

async fn run(
    delivery: MailDelivery,
    poll: Duration,
    gather: Duration,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut woken = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        if woken && !gather.is_zero() {
            tokio::time::sleep(gather).await;
        }
        let more = match delivery.deliver_due().await {
            // A full batch: there may be more due right away.
            Ok(claimed) => claimed >= delivery.settings().batch as usize,
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "mail delivery round failed");
                false
            }
        };
        woken = false;
        if !more {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = wake.notified() => woken = true,
                _ = stopped.changed() => {}
            }
        }
    }
}
