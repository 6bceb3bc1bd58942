//! The `Mailer` adapter: builds the MIME message and hands it to the configured
//! transport (SMTP by `crate::smtp`, files by lettre, the mail hook, the log).

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use passcode_domain::ports::{Clock, Mail, MailError, Mailer};

use crate::smtp::{SmtpError, SmtpPool};
use crate::{MailSettings, Renderer, TransportSettings};

enum Transport {
    Smtp(SmtpPool),
    Http(crate::hook::Hook),
    File(AsyncFileTransport<Tokio1Executor>),
    Log,
}

pub struct LettreMailer {
    from: Mailbox,
    renderer: Renderer,
    transport: Transport,
    /// The time of a hook's signature.
    clock: std::sync::Arc<dyn Clock>,
    /// An overall deadline per send: `mail.smtp.timeout` bounds opening a connection,
    /// lettre has none for the exchange after it.
    deadline: std::time::Duration,
}

impl std::fmt::Debug for LettreMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Http(_) => "http",
            Transport::File(_) => "file",
            Transport::Log => "log",
        };
        f.debug_struct("LettreMailer")
            .field("from", &self.from)
            .field("transport", &kind)
            .finish_non_exhaustive()
    }
}

impl LettreMailer {
    /// Builds the transport. Must run inside a tokio runtime (the SMTP pool spawns on it).
    pub fn new(settings: &MailSettings, clock: std::sync::Arc<dyn Clock>) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .with_context(|| format!("mail.from {:?} is not a valid mailbox", settings.from))?;
        let transport = match &settings.transport {
            TransportSettings::Log => Transport::Log,
            TransportSettings::File { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating mail folder {}", dir.display()))?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            TransportSettings::Smtp(smtp) => Transport::Smtp(SmtpPool::new(smtp)?),
            TransportSettings::Http(hook) => Transport::Http(crate::hook::Hook::new(hook)?),
        };
        let deadline = match &settings.transport {
            TransportSettings::Smtp(smtp) => smtp.timeout * 3,
            _ => std::time::Duration::from_secs(30),
        };
        Ok(Self {
            from,
            renderer: Renderer::with_overrides(
                settings.product_name.clone(),
                settings.templates_dir.as_deref(),
            )?,
            transport,
            clock,
            deadline,
        })
    }

    /// Sends one test message to `to` with the configured transport and returns
    /// what the server answered, or an error that says what to check.
    pub async fn send_test(&self, to: &str) -> anyhow::Result<String> {
        let to_text = to.to_owned();
        let to: Mailbox = to
            .parse()
            .with_context(|| format!("{to:?} is not an email address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("passcode test message")
            .header(ContentType::TEXT_PLAIN)
            .body(String::from(
                "This message was sent by `passcode mail test`: the mail settings work.\n",
            ))?;
        match &self.transport {
            Transport::Smtp(smtp) => match self.send_smtp(smtp, &message).await {
                Ok(response) => Ok(format!(
                    "the server accepted the message: {} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )),
                Err(error) => Err(anyhow::anyhow!("{}: {error}", error.explain())),
            },
            Transport::File(file) => {
                file.send(message).await?;
                Ok("written to the mail folder (file transport)".into())
            }
            Transport::Log => Ok("the log transport prints messages; nothing was sent".into()),
            Transport::Http(hook) => {
                let test = serde_json::json!({
                    "type": "mail.test",
                    "to": to_text,
                    "subject": "passcode test message",
                    "text": "This message was sent by `passcode mail test`: the mail settings work.\n",
                    "html": "<p>This message was sent by <code>passcode mail test</code>: the mail settings work.</p>",
                });
                hook.post(uuid::Uuid::new_v4(), &test, self.clock.now())
                    .await
                    .map_err(|error| match error {
                        MailError::Transient(e) | MailError::Permanent(e) => e,
                    })?;
                Ok("the mail hook accepted the message (2xx)".into())
            }
        }
    }

    fn build(&self, mail: &Mail, rendered: crate::Rendered) -> anyhow::Result<Message> {
        let to: Mailbox = mail
            .recipient()
            .as_str()
            .parse()
            .context("recipient address")?;
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(rendered.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(rendered.html),
                    ),
            )?)
    }
}

#[async_trait]
impl Mailer for LettreMailer {
    async fn send(&self, id: uuid::Uuid, mail: &Mail) -> Result<(), MailError> {
        // A message that cannot be rendered or built never will be.
        let rendered = self.renderer.render(mail).map_err(MailError::Permanent)?;
        if let Transport::Log = self.transport {
            // Development only (warned at start-up): the message, code included, goes to the log.
            tracing::info!(target: "passcode::dev_mail", to = %mail.recipient(), subject = %rendered.subject, "\n{}", rendered.text);
            return Ok(());
        }
        let result = if let Transport::Http(hook) = &self.transport {
            hook.send(id, mail, &rendered, self.clock.now()).await
        } else {
            self.send_mime(mail, rendered).await
        };
        let outcome = match &result {
            Ok(()) => "sent",
            Err(MailError::Transient(_)) => "transient_failure",
            Err(MailError::Permanent(_)) => "permanent_failure",
        };
        metrics::counter!("passcode_mail_sends_total", "result" => outcome).increment(1);
        if let Err(error) = &result {
            tracing::warn!(%error, "mail delivery failed");
        }
        result
    }
}

impl LettreMailer {
    /// Builds the MIME message and hands it to lettre (SMTP or file).
    async fn send_mime(&self, mail: &Mail, rendered: crate::Rendered) -> Result<(), MailError> {
        let message = self.build(mail, rendered).map_err(MailError::Permanent)?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                self.send_smtp(smtp, &message)
                    .await
                    .map(drop)
                    .map_err(|error| {
                        // 5xx answers are final; 4xx, timeouts and connection failures may pass.
                        if error.is_permanent() {
                            MailError::Permanent(error.into())
                        } else {
                            MailError::Transient(error.into())
                        }
                    })
            }
            Transport::File(file) => file
                .send(message)
                .await
                .map(drop)
                .map_err(|error| MailError::Transient(error.into())),
            Transport::Log | Transport::Http(_) => Ok(()),
        }
    }

    /// One SMTP send under the overall deadline.
    async fn send_smtp(
        &self,
        smtp: &SmtpPool,
        message: &Message,
    ) -> Result<lettre::transport::smtp::response::Response, SmtpError> {
        tokio::time::timeout(self.deadline, smtp.send(message))
            .await
            .unwrap_or(Err(SmtpError::Timeout(self.deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SmtpSettings, SmtpTls};
    use chrono::Duration;
    use passcode_domain::{EmailAddress, OtpCode, OtpPurpose};

    struct FixedClock;

    impl Clock for FixedClock {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
        }
    }

    fn clock() -> std::sync::Arc<dyn Clock> {
        std::sync::Arc::new(FixedClock)
    }

    fn code_mail() -> Mail {
        Mail::Code {
            to: EmailAddress::parse("ada@example.com").unwrap(),
            full_name: "Ada".into(),
            code: OtpCode::new("731904".into()),
            purpose: OtpPurpose::VerifyEmail,
            valid_for: Duration::minutes(10),
        }
    }

    #[tokio::test]
    async fn file_transport_writes_a_multipart_eml() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = LettreMailer::new(
            &MailSettings {
                from: "Acme <no-reply@acme.example>".into(),
                product_name: "Acme".into(),
                templates_dir: None,
                transport: TransportSettings::File {
                    dir: dir.path().to_owned(),
                },
            },
            clock(),
        )
        .unwrap();
        mailer.send(uuid::Uuid::nil(), &code_mail()).await.unwrap();

        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let raw = std::fs::read(&files[0]).unwrap();
        let parsed = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
        let types: Vec<_> = parsed
            .subparts
            .iter()
            .map(|p| p.ctype.mimetype.clone())
            .collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        assert!(parsed.subparts[0].get_body().unwrap().contains("731904"));
        let to = parsed
            .headers
            .iter()
            .find(|h| h.get_key() == "To")
            .unwrap()
            .get_value();
        assert_eq!(to, "ada@example.com");
    }

    #[tokio::test]
    async fn unreachable_smtp_server_is_a_delivery_error_not_a_hang() {
        let mailer = LettreMailer::new(
            &MailSettings {
                from: "no-reply@acme.example".into(),
                product_name: "Acme".into(),
                templates_dir: None,
                transport: TransportSettings::Smtp(SmtpSettings {
                    host: "127.0.0.1".into(),
                    port: 1, // nothing listens here
                    tls: SmtpTls::None,
                    username: None,
                    password: None,
                    timeout: std::time::Duration::from_secs(2),
                    ca_file: None,
                    pool_size: 1,
                }),
            },
            clock(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            mailer.send(uuid::Uuid::nil(), &code_mail()).await,
            Err(MailError::Transient(_))
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn invalid_from_is_a_configuration_error() {
        let error = LettreMailer::new(
            &MailSettings {
                from: "not a mailbox".into(),
                product_name: "Acme".into(),
                templates_dir: None,
                transport: TransportSettings::Log,
            },
            clock(),
        );
        assert!(error.is_err());
    }
}
