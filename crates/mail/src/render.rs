//! Message rendering with minijinja: plain text and HTML (auto-escaped) for each
//! kind of message. The built-in templates can be replaced, one by one, by files of
//! the same name in a folder named in configuration (`mail.templates_dir`).

use minijinja::{AutoEscape, Environment, context};
use passcode_domain::OtpPurpose;
use passcode_domain::ports::Mail;

/// A message ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    product: String,
}

impl Renderer {
    /// Names of the templates: `<name>.txt` and `<name>.html` each.
    pub const TEMPLATES: [&'static str; 3] =
        ["verify_email", "reset_password", "registration_attempt"];

    pub fn new(product: impl Into<String>) -> anyhow::Result<Self> {
        Self::with_overrides(product, None)
    }

    /// Built-in templates, each replaced by `<dir>/<name>.txt` or `.html` where present.
    /// A template with a syntax error fails here, at start-up, naming the file.
    pub fn with_overrides(
        product: impl Into<String>,
        dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let built_in: [(&str, &str); 18] = [
            (
                "change_email.txt",
                include_str!("../templates/change_email.txt"),
            ),
            (
                "change_email.html",
                include_str!("../templates/change_email.html"),
            ),
            (
                "email_change_requested.txt",
                include_str!("../templates/email_change_requested.txt"),
            ),
            (
                "email_change_requested.html",
                include_str!("../templates/email_change_requested.html"),
            ),
            (
                "email_changed.txt",
                include_str!("../templates/email_changed.txt"),
            ),
            (
                "email_changed.html",
                include_str!("../templates/email_changed.html"),
            ),
            ("sign_in.txt", include_str!("../templates/sign_in.txt")),
            ("sign_in.html", include_str!("../templates/sign_in.html")),
            (
                "account_deleted.txt",
                include_str!("../templates/account_deleted.txt"),
            ),
            (
                "account_deleted.html",
                include_str!("../templates/account_deleted.html"),
            ),
            (
                "password_changed.txt",
                include_str!("../templates/password_changed.txt"),
            ),
            (
                "password_changed.html",
                include_str!("../templates/password_changed.html"),
            ),
            (
                "verify_email.txt",
                include_str!("../templates/verify_email.txt"),
            ),
            (
                "verify_email.html",
                include_str!("../templates/verify_email.html"),
            ),
            (
                "reset_password.txt",
                include_str!("../templates/reset_password.txt"),
            ),
            (
                "reset_password.html",
                include_str!("../templates/reset_password.html"),
            ),
            (
                "registration_attempt.txt",
                include_str!("../templates/registration_attempt.txt"),
            ),
            (
                "registration_attempt.html",
                include_str!("../templates/registration_attempt.html"),
            ),
        ];
        for (name, source) in built_in {
            let path = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            match path {
                Some(path) => {
                    let source = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("reading template {}: {e}", path.display()))?;
                    env.add_template_owned(name.to_owned(), source)
                        .map_err(|e| anyhow::anyhow!("template {}: {e}", path.display()))?;
                }
                None => env.add_template(name, source)?,
            }
        }
        Ok(Self {
            env,
            product: product.into(),
        })
    }

    pub fn render(&self, mail: &Mail) -> anyhow::Result<Rendered> {
        let product = &self.product;
        let (template, subject, ctx) = match mail {
            Mail::Code {
                full_name,
                code,
                purpose,
                valid_for,
                ..
            } => {
                let (what, subject) = match purpose {
                    OtpPurpose::VerifyEmail => (
                        "email verification",
                        format!("Your {product} verification code"),
                    ),
                    OtpPurpose::ResetPassword => (
                        "password reset",
                        format!("Your {product} password reset code"),
                    ),
                    OtpPurpose::SignIn => ("sign-in", format!("Your {product} sign-in code")),
                    OtpPurpose::ChangeEmail => (
                        "address change",
                        format!("Confirm your new {product} address"),
                    ),
                };
                let ctx = context! {
                    name => full_name, product => product, purpose => what,
                    code => code.expose(), minutes => valid_for.num_minutes().max(1),
                };
                let template = match purpose {
                    OtpPurpose::VerifyEmail => "verify_email",
                    OtpPurpose::ResetPassword => "reset_password",
                    OtpPurpose::SignIn => "sign_in",
                    OtpPurpose::ChangeEmail => "change_email",
                };
                (template, subject, ctx)
            }
            Mail::PasswordChanged { full_name, .. } => (
                "password_changed",
                format!("Your {product} password was changed"),
                context! { name => full_name, product => product },
            ),
            Mail::EmailChangeRequested { full_name, .. } => (
                "email_change_requested",
                format!("A change of your {product} address was asked"),
                context! { name => full_name, product => product },
            ),
            Mail::EmailChanged { full_name, .. } => (
                "email_changed",
                format!("Your {product} address was changed"),
                context! { name => full_name, product => product },
            ),
            Mail::AccountDeleted { full_name, .. } => (
                "account_deleted",
                format!("Your {product} account was deleted"),
                context! { name => full_name, product => product },
            ),
            Mail::RegistrationAttempt { full_name, .. } => (
                "registration_attempt",
                format!("Someone tried to register with your {product} address"),
                context! { name => full_name, product => product },
            ),
        };
        Ok(Rendered {
            subject,
            text: self
                .env
                .get_template(&format!("{template}.txt"))?
                .render(&ctx)?,
            html: self
                .env
                .get_template(&format!("{template}.html"))?
                .render(&ctx)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use passcode_domain::{EmailAddress, OtpCode};

    fn code_mail(name: &str) -> Mail {
        Mail::Code {
            to: EmailAddress::parse("ada@example.com").unwrap(),
            full_name: name.into(),
            code: OtpCode::new("042917".into()),
            purpose: OtpPurpose::VerifyEmail,
            valid_for: Duration::minutes(10),
        }
    }

    #[test]
    fn code_mail_states_code_purpose_and_expiry_in_both_parts() {
        let rendered = Renderer::new("Acme")
            .unwrap()
            .render(&code_mail("Ada"))
            .unwrap();
        for part in [&rendered.text, &rendered.html] {
            assert!(part.contains("042917"));
            assert!(part.contains("email verification"));
            assert!(part.contains("10 minutes"));
            assert!(part.contains("Acme"));
        }
        assert_eq!(rendered.subject, "Your Acme verification code");
    }

    #[test]
    fn html_escapes_the_users_name() {
        let rendered = Renderer::new("Acme")
            .unwrap()
            .render(&code_mail("<script>alert(1)</script>"))
            .unwrap();
        assert!(!rendered.html.contains("<script>"));
        assert!(rendered.html.contains("&lt;script&gt;"));
    }

    #[test]
    fn registration_notice_carries_no_code() {
        let mail = Mail::RegistrationAttempt {
            to: EmailAddress::parse("ada@example.com").unwrap(),
            full_name: "Ada".into(),
        };
        let rendered = Renderer::new("Acme").unwrap().render(&mail).unwrap();
        assert!(rendered.text.contains("already has an account"));
        assert!(!rendered.text.chars().any(|c| c.is_ascii_digit()));
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;
    use chrono::Duration;
    use passcode_domain::{EmailAddress, OtpCode};

    fn mail(purpose: OtpPurpose) -> Mail {
        Mail::Code {
            to: EmailAddress::parse("ada@example.com").unwrap(),
            full_name: "Ada".into(),
            code: OtpCode::new("042917".into()),
            purpose,
            valid_for: Duration::minutes(10),
        }
    }

    #[test]
    fn each_purpose_has_its_own_template() {
        let renderer = Renderer::new("Acme").unwrap();
        assert!(
            renderer
                .render(&mail(OtpPurpose::ResetPassword))
                .unwrap()
                .text
                .contains("reset the password")
        );
        assert!(
            renderer
                .render(&mail(OtpPurpose::VerifyEmail))
                .unwrap()
                .text
                .contains("email verification")
        );
    }

    #[test]
    fn a_file_in_the_templates_folder_replaces_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verify_email.txt"),
            "Welcome to {{ product }}! Code: {{ code }}",
        )
        .unwrap();
        let renderer = Renderer::with_overrides("Acme", Some(dir.path())).unwrap();
        let rendered = renderer.render(&mail(OtpPurpose::VerifyEmail)).unwrap();
        assert_eq!(rendered.text, "Welcome to Acme! Code: 042917");
        assert!(
            rendered.html.contains("042917"),
            "the HTML part is still the built-in one"
        );
    }

    #[test]
    fn a_broken_template_file_fails_at_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reset_password.html"), "{{ code ").unwrap();
        let error = Renderer::with_overrides("Acme", Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains("reset_password.html"), "{error}");
    }
}
