//! Message rendering with minijinja: plain text and HTML (auto-escaped) per kind.

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
    pub fn new(product: impl Into<String>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_template("code.txt", include_str!("../templates/code.txt"))?;
        env.add_template("code.html", include_str!("../templates/code.html"))?;
        env.add_template(
            "registration_attempt.txt",
            include_str!("../templates/registration_attempt.txt"),
        )?;
        env.add_template(
            "registration_attempt.html",
            include_str!("../templates/registration_attempt.html"),
        )?;
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
                };
                let ctx = context! {
                    name => full_name, product => product, purpose => what,
                    code => code.expose(), minutes => valid_for.num_minutes().max(1),
                };
                ("code", subject, ctx)
            }
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
