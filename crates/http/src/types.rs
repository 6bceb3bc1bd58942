//! The request and response type of every endpoint, as the OpenAPI document shows them.
//! A request holds its fields raw (`Raw`) and becomes domain input through its one
//! conversion, `try_into_domain`, which reports every bad field at once.

use passcode_domain::service::{
    DeleteConfirmation, LoginInput, RegisterInput, ResetInput, SignInInput, VerifyInput,
};
use passcode_domain::{EmailAddress, FullName, OtpCode, Password, TokenPair};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;
use crate::body::{Fields, Raw, checked};
use crate::client::Caller;

/// `POST /api/accounts/create/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"full_name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct RegisterRequest {
    /// 1 to 150 characters, no control characters.
    #[schema(required = true, value_type = String, max_length = 150)]
    #[serde(default)]
    pub full_name: Raw,
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
    /// 8 to 128 characters, hard to guess (zxcvbn score 3 or more by default).
    #[schema(required = true, value_type = String, format = Password, min_length = 8, max_length = 128)]
    #[serde(default)]
    pub password: Raw,
}

impl RegisterRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<RegisterInput, ApiError> {
        let mut fields = Fields::default();
        let full_name = fields.string("full_name", self.full_name);
        let email = fields.email("email", self.email);
        let password = fields.string("password", self.password);
        let full_name = fields.parse("full_name", full_name, |s| FullName::parse(&s));
        let password = fields.parse("password", password, Password::parse);
        fields.finish()?;
        Ok(RegisterInput {
            email: checked(email)?,
            full_name: checked(full_name)?,
            password: checked(password)?,
            context: caller.context.clone(),
        })
    }
}

/// `POST /api/accounts/validate-otp/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "otp": "123456", "password": "correct horse battery staple"}))]
pub struct ValidateOtpRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
    /// The code from the mail.
    #[schema(required = true, value_type = String, example = "123456")]
    #[serde(default)]
    pub otp: Raw,
    /// Optional: the password the user registered with. When sent, a code of a
    /// registration with another password is refused like a wrong code.
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(default)]
    pub password: Raw,
}

impl ValidateOtpRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<VerifyInput, ApiError> {
        let mut fields = Fields::default();
        let email = fields.email("email", self.email);
        let otp = fields.string("otp", self.otp);
        let password = fields
            .optional_string("password", self.password)
            .and_then(|raw| fields.parse("password", Some(raw), Password::for_login));
        fields.finish()?;
        Ok(VerifyInput {
            email: checked(email)?,
            code: OtpCode::new(checked(otp)?.trim().to_owned()),
            password,
            client: caller.key.clone(),
            context: caller.context.clone(),
        })
    }
}

/// `PATCH` or `POST /api/accounts/resend-otp/`, and `POST /api/accounts/password-reset/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct EmailRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
}

impl EmailRequest {
    pub fn try_into_domain(self) -> Result<EmailAddress, ApiError> {
        let mut fields = Fields::default();
        let email = fields.email("email", self.email);
        fields.finish()?;
        checked(email)
    }
}

/// `POST /api/accounts/token/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
    #[schema(required = true, value_type = String, format = Password)]
    #[serde(default)]
    pub password: Raw,
}

impl LoginRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<LoginInput, ApiError> {
        let mut fields = Fields::default();
        let email = fields.email("email", self.email);
        let password = fields.string("password", self.password);
        let password = fields.parse("password", password, Password::for_login);
        fields.finish()?;
        Ok(LoginInput {
            email: checked(email)?,
            password: checked(password)?,
            client: caller.key.clone(),
            context: caller.context.clone(),
        })
    }
}

/// `POST /api/accounts/token/refresh/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// A refresh token; it is spent by this call.
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub refresh: Raw,
}

impl RefreshRequest {
    pub fn try_into_domain(self) -> Result<String, ApiError> {
        let mut fields = Fields::default();
        let refresh = fields.string("refresh", self.refresh);
        fields.finish()?;
        checked(refresh)
    }
}

/// `POST /api/accounts/token/verify/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenVerifyRequest {
    /// An access token.
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub token: Raw,
}

impl TokenVerifyRequest {
    pub fn try_into_domain(self) -> Result<String, ApiError> {
        let mut fields = Fields::default();
        let token = fields.string("token", self.token);
        fields.finish()?;
        checked(token)
    }
}

/// `POST /api/accounts/logout/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutRequest {
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub refresh: Raw,
    /// Sign out every session of the account, not just this one.
    #[schema(value_type = Option<bool>)]
    #[serde(default)]
    pub all: Raw,
}

impl LogoutRequest {
    pub fn try_into_domain(self) -> Result<(String, bool), ApiError> {
        let mut fields = Fields::default();
        let refresh = fields.string("refresh", self.refresh);
        let all = fields.flag("all", self.all);
        fields.finish()?;
        Ok((checked(refresh)?, all))
    }
}

/// `POST /api/accounts/password-reset/confirm/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "otp": "123456", "new_password": "a brand new passphrase"}))]
pub struct ResetConfirmRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub otp: Raw,
    #[schema(required = true, value_type = String, format = Password, min_length = 8, max_length = 128)]
    #[serde(default)]
    pub new_password: Raw,
}

impl ResetConfirmRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<ResetInput, ApiError> {
        let mut fields = Fields::default();
        let email = fields.email("email", self.email);
        let otp = fields.string("otp", self.otp);
        let new_password = fields.string("new_password", self.new_password);
        let new_password = fields.parse("new_password", new_password, Password::parse);
        fields.finish()?;
        Ok(ResetInput {
            email: checked(email)?,
            code: OtpCode::new(checked(otp)?.trim().to_owned()),
            new_password: checked(new_password)?,
            client: caller.key.clone(),
            context: caller.context.clone(),
        })
    }
}

/// `POST /api/accounts/change-password/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    #[schema(required = true, value_type = String, format = Password)]
    #[serde(default)]
    pub old_password: Raw,
    #[schema(required = true, value_type = String, format = Password, min_length = 8, max_length = 128)]
    #[serde(default)]
    pub new_password: Raw,
}

impl ChangePasswordRequest {
    pub fn try_into_domain(self) -> Result<(Password, Password), ApiError> {
        let mut fields = Fields::default();
        let old = fields.string("old_password", self.old_password);
        let new = fields.string("new_password", self.new_password);
        let old = fields.parse("old_password", old, Password::for_login);
        let new = fields.parse("new_password", new, Password::parse);
        fields.finish()?;
        Ok((checked(old)?, checked(new)?))
    }
}

/// `POST /api/accounts/sign-in/`
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "otp": "123456"}))]
pub struct SignInRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub email: Raw,
    /// The sign-in code from the mail.
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub otp: Raw,
}

impl SignInRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<SignInInput, ApiError> {
        let mut fields = Fields::default();
        let email = fields.email("email", self.email);
        let otp = fields.string("otp", self.otp);
        fields.finish()?;
        Ok(SignInInput {
            email: checked(email)?,
            code: OtpCode::new(checked(otp)?.trim().to_owned()),
            client: caller.key.clone(),
            context: caller.context.clone(),
        })
    }
}

/// `POST /api/accounts/change-email/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeEmailRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub new_email: Raw,
    /// The account's password, to confirm.
    #[schema(required = true, value_type = String, format = Password)]
    #[serde(default)]
    pub password: Raw,
}

impl ChangeEmailRequest {
    pub fn try_into_domain(self) -> Result<(EmailAddress, Password), ApiError> {
        let mut fields = Fields::default();
        let new_email = fields.email("new_email", self.new_email);
        let password = fields.string("password", self.password);
        let password = fields.parse("password", password, Password::for_login);
        fields.finish()?;
        Ok((checked(new_email)?, checked(password)?))
    }
}

/// `POST /api/accounts/change-email/confirm/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmEmailChangeRequest {
    #[schema(required = true, value_type = String, format = Email)]
    #[serde(default)]
    pub new_email: Raw,
    /// The code sent to the new address.
    #[schema(required = true, value_type = String)]
    #[serde(default)]
    pub otp: Raw,
}

impl ConfirmEmailChangeRequest {
    pub fn try_into_domain(self) -> Result<(EmailAddress, OtpCode), ApiError> {
        let mut fields = Fields::default();
        let new_email = fields.email("new_email", self.new_email);
        let otp = fields.string("otp", self.otp);
        fields.finish()?;
        Ok((
            checked(new_email)?,
            OtpCode::new(checked(otp)?.trim().to_owned()),
        ))
    }
}

/// `POST /api/accounts/delete/`
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteAccountRequest {
    /// The account's password, to confirm.
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(default)]
    pub password: Raw,
    /// Instead of the password, for an account without one (signed in by code only):
    /// a fresh code from `sign-in/code`.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub otp: Raw,
}

impl DeleteAccountRequest {
    pub fn try_into_domain(self, caller: &Caller) -> Result<DeleteConfirmation, ApiError> {
        let mut fields = Fields::default();
        let password = fields.optional_string("password", self.password);
        let otp = fields.optional_string("otp", self.otp);
        let confirmation = match (password, otp) {
            (Some(password), None) => fields
                .parse("password", Some(password), Password::for_login)
                .map(DeleteConfirmation::Password),
            (None, Some(otp)) => Some(DeleteConfirmation::Code {
                code: OtpCode::new(otp.trim().to_owned()),
                client: caller.key.clone(),
            }),
            _ => fields.error("password", "Give either password or otp."),
        };
        fields.finish()?;
        checked(confirmation)
    }
}

/// A token pair, as simplejwt answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Refresh token (JWT); spent by its first use on `token/refresh`.
    pub refresh: String,
    /// Access token (JWT) for `Authorization: Bearer`.
    pub access: String,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            refresh: pair.refresh,
            access: pair.access,
        }
    }
}

/// A message for the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

impl MessageResponse {
    pub fn new(message: &str) -> Self {
        Self {
            message: message.to_owned(),
        }
    }
}

/// The account as the registration request gave it (never the stored account).
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredUser {
    pub email: String,
    pub full_name: String,
}

/// The new account (compatibility policy).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub id: String,
    pub email: String,
    pub full_name: String,
}

/// The answer to a registration: pending verification (default policy, the same for
/// any address), or the new account with its first tokens (compatibility policy).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RegisterResponse {
    Pending {
        message: String,
        user: RegisteredUser,
    },
    WithTokens {
        user: CreatedUser,
        token: TokenResponse,
    },
}

/// The address is verified; the first token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifiedResponse {
    pub message: String,
    pub token: TokenResponse,
}

/// The signed-in account.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub full_name: String,
    pub email_verified: bool,
    /// RFC 3339, seconds.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// One session (refresh-token family) of the account.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub id: String,
    /// The session of the token making this request.
    pub current: bool,
    /// RFC 3339, seconds.
    pub created_at: String,
    pub created_client: Option<String>,
    pub created_user_agent: Option<String>,
    /// The last refresh (or the sign-in, if never refreshed).
    pub last_used_at: String,
    pub last_client: Option<String>,
    pub last_user_agent: Option<String>,
}

/// The account's live sessions, newest use first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionResponse>,
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndedResponse {
    pub ended: u64,
}

/// `{}`: the token is valid.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmptyResponse {}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: String,
}

/// A JSON Web Key Set (RFC 7517): every public key that verifies passcode's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwksResponse {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}
