//! Codes drawn from the operating system's CSPRNG, uniformly over all digit strings.

use rand::RngExt;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;

use super::OtpCode;
use crate::ports::CodeGenerator;

/// The production [`CodeGenerator`]: every digit string of the length is equally likely.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsCodeGenerator;

impl CodeGenerator for OsCodeGenerator {
    fn generate(&self, length: u8) -> OtpCode {
        // The OS CSPRNG; it does not fail on the platforms passcode runs on.
        let mut rng = UnwrapErr(SysRng);
        let digits: String = (0..length)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        OtpCode::new(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_digits_of_the_requested_length() {
        for length in [4u8, 6, 8, 10] {
            let code = OsCodeGenerator.generate(length);
            assert_eq!(code.expose().len(), usize::from(length));
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn every_digit_appears_in_every_position() {
        let mut seen = [[false; 10]; 6];
        for _ in 0..2_000 {
            for (pos, b) in OsCodeGenerator.generate(6).expose().bytes().enumerate() {
                seen[pos][usize::from(b - b'0')] = true;
            }
        }
        assert!(seen.iter().all(|digits| digits.iter().all(|&s| s)));
    }
}
