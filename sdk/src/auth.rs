//! The caller's credentials: a bearer token from a file (`--token-file`,
//! `WEIR_TOKEN_FILE`) or the environment (`WEIR_TOKEN`), sent as
//! `authorization: Bearer TOKEN` on every call to a broker that has
//! authentication on (docs/SECURITY.md). The token is never printed:
//! `Debug` hides it and the header is marked sensitive.

use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// A bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token given as text; refused if empty or not a header value.
    pub fn new(value: &str) -> Result<Token, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the token is empty".to_owned());
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token holds characters other than printable ASCII".to_owned());
        }
        Ok(Token(value.to_owned()))
    }

    /// The token in `file` (not readable by group or others), else
    /// `WEIR_TOKEN`, else none.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<Token>, String> {
        if let Some(file) = file {
            let text = weir_net::secret::read_secret_value(file).map_err(|e| e.to_string())?;
            return Token::new(&text).map(Some).map_err(|e| format!("{}: {e}", file.display()));
        }
        match std::env::var("WEIR_TOKEN") {
            Ok(v) if !v.trim().is_empty() => Token::new(&v).map(Some).map_err(|e| format!("WEIR_TOKEN: {e}")),
            _ => Ok(None),
        }
    }

    /// The token itself, for an HTTP client's bearer auth.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn header(&self) -> MetadataValue<Ascii> {
        // `new` let only printable ASCII through, which always parses.
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", self.0).parse().unwrap_or_else(|_| MetadataValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

/// Adds the token (if any) to every call of a tonic client:
/// `OperatorClient::with_interceptor(channel, BearerToken::new(token))`.
#[derive(Clone, Debug, Default)]
pub struct BearerToken(Option<Token>);

impl BearerToken {
    pub fn new(token: Option<Token>) -> BearerToken {
        BearerToken(token)
    }

    /// Puts the header on one request.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.header());
        }
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.apply(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_the_header_and_never_in_debug_output() {
        let token = Token::new(" abcdefghijklmnop1\n").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        let mut request = tonic::Request::new(());
        BearerToken::new(Some(token)).apply(&mut request);
        let header = request.metadata().get("authorization").unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer abcdefghijklmnop1");
        assert!(!format!("{:?}", request.metadata()).contains("abcdefghijklmnop1"));
        assert!(Token::new("two words").is_err());
        assert!(Token::new("  ").is_err());
    }
}
