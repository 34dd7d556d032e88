//! Errors of function calls. Each variant has a stable code ([`FnError::code`]).

use tickethub_store::StoreError;
use tickethub_value::Value;

use crate::FunctionKind;

#[derive(Debug, thiserror::Error)]
pub enum FnError {
    /// A plain thrown error: `throw new Error(message)`.
    #[error("{0}")]
    Message(String),
    /// `throw new ConvexError(data)`: the data reaches the client as `errorData`.
    #[error("{message}")]
    Convex { message: String, data: Value },
    #[error("ArgumentValidationError: {0}")]
    ArgumentValidation(String),
    #[error("ReturnsValidationError: {0}")]
    ReturnsValidation(String),
    /// Unknown function, or internal function called without admin rights: same text for both.
    #[error("Could not find public function for '{0}'.")]
    NotFound(String),
    #[error("Trying to execute {path} as {expected}, but it is defined as {actual}.")]
    WrongKind { path: String, expected: FunctionKind, actual: FunctionKind },
    /// `getUserIdentity()` in an HTTP action whose request carried a bad token.
    #[error("{0}")]
    Unauthenticated(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected failure. The message is logged, never sent to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl FnError {
    pub fn msg(message: impl Into<String>) -> FnError {
        FnError::Message(message.into())
    }
    /// A ConvexError carrying `data` (serialized to a Convex value).
    pub fn with_data(message: impl Into<String>, data: impl serde::Serialize) -> FnError {
        let _ = (message, data);
        todo!()
    }
    pub fn code(&self) -> &'static str {
        todo!()
    }
}
