//! Reading the mail the test SMTP servers captured.

use std::path::{Path, PathBuf};

/// A captured message: headers of interest and the decoded text and HTML parts.
#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub to: String,
    /// The client's address and port as the SMTP server saw them: one per connection.
    pub peer: String,
    pub subject: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
}

impl CapturedMail {
    /// The first standalone run of six digits in the text part.
    pub fn code(&self) -> Option<String> {
        self.text
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .map(str::to_owned)
    }
}

/// Every message for `to` in `maildir`, oldest first.
pub fn mails_in(maildir: &Path, to: &str) -> Vec<CapturedMail> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.metadata().ok()?.modified().ok()?, entry.path()))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, path)| parse_mail(&std::fs::read(path).ok()?))
        .filter(|mail| mail.to.eq_ignore_ascii_case(to))
        .collect()
}

/// One raw message, or `None` if it does not parse.
pub fn parse_mail(raw: &[u8]) -> Option<CapturedMail> {
    let parsed = mailparse::parse_mail(raw).ok()?;
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let part = |mime: &str| {
        parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .and_then(|p| p.get_body().ok())
            .unwrap_or_default()
    };
    Some(CapturedMail {
        to: header("To"),
        peer: header("X-Peer"),
        subject: header("Subject"),
        content_type: parsed.ctype.mimetype.clone(),
        text: part("text/plain"),
        html: part("text/html"),
    })
}
