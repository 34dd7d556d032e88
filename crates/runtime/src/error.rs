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
    WrongKind {
        path: String,
        expected: FunctionKind,
        actual: FunctionKind,
    },
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
    ///
    /// An empty `message` gets Convex's own rule for `new ConvexError(data)`: the string itself
    /// for string data, else the data's JSON. Data that cannot become a Convex value (a serde
    /// failure) is an internal error: it is a bug in the function, not something to show.
    pub fn with_data(message: impl Into<String>, data: impl serde::Serialize) -> FnError {
        let data = match tickethub_value::to_value(&data) {
            Ok(data) => data,
            Err(e) => {
                return FnError::Internal(format!("ConvexError data is not a Convex value: {e}"))
            }
        };
        let mut message = message.into();
        if message.is_empty() {
            message = match &data {
                Value::String(s) => s.clone(),
                other => other.to_clean_json().to_string(),
            };
        }
        FnError::Convex { message, data }
    }

    /// Stable machine code, ScreamingCamelCase.
    pub fn code(&self) -> &'static str {
        match self {
            FnError::Message(_) | FnError::Convex { .. } => "UserError",
            FnError::ArgumentValidation(_) => "ArgumentValidationError",
            FnError::ReturnsValidation(_) => "ReturnsValidationError",
            FnError::NotFound(_) => "FunctionNotFound",
            FnError::WrongKind { .. } => "WrongFunctionKind",
            FnError::Unauthenticated(_) => "Unauthenticated",
            FnError::Store(e) => e.code(),
            FnError::Internal(_) => "InternalServerError",
        }
    }

    /// Whether the message may be shown to clients. Internal errors and storage failures are not:
    /// callers send a generic message with a request id and log the real one.
    pub fn is_user_visible(&self) -> bool {
        match self {
            FnError::Internal(_) => false,
            FnError::Store(e) => e.is_user_error(),
            FnError::Message(_)
            | FnError::Convex { .. }
            | FnError::ArgumentValidation(_)
            | FnError::ReturnsValidation(_)
            | FnError::NotFound(_)
            | FnError::WrongKind { .. }
            | FnError::Unauthenticated(_) => true,
        }
    }

    /// The ConvexError data, if any (sent to clients as `errorData`).
    pub fn data(&self) -> Option<&Value> {
        match self {
            FnError::Convex { data, .. } => Some(data),
            _ => None,
        }
    }
}

impl From<tickethub_value::IdError> for FnError {
    fn from(e: tickethub_value::IdError) -> Self {
        FnError::Store(StoreError::Id(e))
    }
}
