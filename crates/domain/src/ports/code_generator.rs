//! Where one-time codes come from.

use crate::OtpCode;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CodeGenerator: Send + Sync {
    /// A fresh code of `length` decimal digits, unpredictable to anyone. Infallible.
    fn generate(&self, length: u8) -> OtpCode;
}
