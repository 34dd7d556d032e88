//! Caller checks: may the caller act for the user a function names?
//!
//! The predecessor trusted a client-supplied `userId` everywhere. Ticket Hub checks it: when
//! the server has an auth provider configured (`ctx.auth.enabled()`), a function that reads a
//! user's private data or writes on their behalf requires the caller's identity `subject`
//! (the Clerk user id) to equal that `userId`. The admin key may act for anyone (the Next.js
//! server and Stripe webhooks call with it). With auth off there is nobody to check, so
//! everything is allowed, as in the predecessor.
//!
//! Error messages (stable; the front end may match on them):
//! - no identity: `Not authenticated`
//! - someone else: `Not authorized to act for user <userId>`

use tickethub_runtime::{Auth, FnError, Identity};

/// The message for a call that needs an identity but carries none.
pub const NOT_AUTHENTICATED: &str = "Not authenticated";

/// Who the caller is, as far as acting for users goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Auth is off (no provider): no checks apply.
    Unchecked,
    /// The admin key: may act for anyone.
    Admin,
    /// A signed-in user, by Clerk user id.
    User(String),
    /// No usable identity.
    Anonymous,
}

/// Classify the caller. An HTTP action with a bad token counts as anonymous here (its
/// `get_user_identity` error is reported by the functions that call it directly).
pub fn actor(auth: &Auth) -> Actor {
    if !auth.enabled() {
        return Actor::Unchecked;
    }
    match auth.identity() {
        Identity::Admin => Actor::Admin,
        Identity::User(user) => Actor::User(user.subject.clone()),
        Identity::Anonymous | Identity::InvalidToken(_) => Actor::Anonymous,
    }
}

/// Succeeds when the caller may act for `user_id`.
pub fn ensure_acting_for(auth: &Auth, user_id: &str) -> Result<(), FnError> {
    match actor(auth) {
        Actor::Unchecked | Actor::Admin => Ok(()),
        Actor::User(subject) if subject == user_id => Ok(()),
        Actor::User(_) => Err(not_authorized(user_id)),
        Actor::Anonymous => Err(FnError::msg(NOT_AUTHENTICATED)),
    }
}

/// `Not authorized to act for user <id>`.
pub fn not_authorized(user_id: &str) -> FnError {
    FnError::msg(format!("Not authorized to act for user {user_id}"))
}

/// The caller's Clerk user id, if a user (not the admin, not anonymous) is calling.
pub fn caller_user_id(auth: &Auth) -> Option<String> {
    match auth.identity() {
        Identity::User(user) => Some(user.subject.clone()),
        Identity::Anonymous | Identity::Admin | Identity::InvalidToken(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickethub_runtime::UserIdentity;

    fn user(subject: &str) -> Identity {
        Identity::User(UserIdentity {
            token_identifier: format!("https://issuer.example|{subject}"),
            subject: subject.to_string(),
            issuer: "https://issuer.example".to_string(),
            attributes: Default::default(),
        })
    }

    fn check(identity: Identity, enabled: bool, user_id: &str) -> Result<(), String> {
        ensure_acting_for(&Auth::new(identity, enabled), user_id).map_err(|e| e.to_string())
    }

    #[test]
    fn checks_apply_only_with_auth_enabled() {
        assert_eq!(check(Identity::Anonymous, false, "user_a"), Ok(()));
        assert_eq!(check(user("user_b"), false, "user_a"), Ok(()));
        assert_eq!(
            check(Identity::Anonymous, true, "user_a"),
            Err("Not authenticated".to_string())
        );
        assert_eq!(
            check(Identity::InvalidToken("bad".into()), true, "user_a"),
            Err("Not authenticated".to_string())
        );
        assert_eq!(check(user("user_a"), true, "user_a"), Ok(()));
        assert_eq!(
            check(user("user_b"), true, "user_a"),
            Err("Not authorized to act for user user_a".to_string())
        );
        assert_eq!(check(Identity::Admin, true, "user_a"), Ok(()));
    }
}
