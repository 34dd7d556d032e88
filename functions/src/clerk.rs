//! Clerk's user JSON (webhook `data` of `user.created` / `user.updated`) mapped to our `users`
//! row. Only the fields we use are typed; everything else Clerk sends is ignored.
//!
//! Rules (see `spec/clerk-and-svix.md`):
//! - `name` = trim(first + " " + last); if empty, `username`; if empty, the primary email.
//! - The primary email is the entry of `email_addresses` whose `id` equals
//!   `primary_email_address_id`, not simply the first entry. Only when Clerk names no primary
//!   (or names one that is not in the list) do we fall back to the first address, so a user
//!   row never gets an empty email while Clerk holds one.
//! - The phone likewise, from `phone_numbers` / `primary_phone_number_id`, but with no
//!   fallback: a phone is optional.

use serde::Deserialize;

/// The fields of a Clerk user object that Ticket Hub uses.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct ClerkUser {
    pub id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub primary_email_address_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub email_addresses: Vec<ClerkEmailAddress>,
    pub primary_phone_number_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub phone_numbers: Vec<ClerkPhoneNumber>,
    /// Milliseconds since the epoch of the user's last change (orders out-of-order deliveries).
    pub updated_at: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClerkEmailAddress {
    pub id: Option<String>,
    pub email_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClerkPhoneNumber {
    pub id: Option<String>,
    pub phone_number: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// What Clerk owns of a `users` row. `stripeConnectId` is deliberately absent.
#[derive(Debug, Clone, PartialEq)]
pub struct ClerkProfile {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
}

/// Why a Clerk payload cannot become a user row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClerkMappingError {
    MissingUserId,
}

impl std::fmt::Display for ClerkMappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClerkMappingError::MissingUserId => f.write_str("Clerk user payload has no `id`"),
        }
    }
}

impl ClerkUser {
    /// The primary email: by id; the first address only when no primary id matches.
    pub fn primary_email(&self) -> Option<&str> {
        let by_id = self
            .primary_email_address_id
            .as_deref()
            .and_then(|primary| {
                self.email_addresses
                    .iter()
                    .find(|entry| entry.id.as_deref() == Some(primary))
            });
        by_id
            .or_else(|| self.email_addresses.first())
            .and_then(|entry| entry.email_address.as_deref())
            .filter(|email| !email.is_empty())
    }

    /// The primary phone number, by id only.
    pub fn primary_phone(&self) -> Option<&str> {
        let primary = self.primary_phone_number_id.as_deref()?;
        self.phone_numbers
            .iter()
            .find(|entry| entry.id.as_deref() == Some(primary))
            .and_then(|entry| entry.phone_number.as_deref())
            .filter(|phone| !phone.is_empty())
    }

    /// trim(first + " " + last), else username, else the primary email, else "".
    pub fn display_name(&self) -> String {
        let full = format!(
            "{} {}",
            self.first_name.as_deref().unwrap_or(""),
            self.last_name.as_deref().unwrap_or("")
        );
        let full = full.trim();
        if !full.is_empty() {
            return full.to_string();
        }
        if let Some(username) = self
            .username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            return username.to_string();
        }
        self.primary_email().unwrap_or("").to_string()
    }

    pub fn profile(&self) -> Result<ClerkProfile, ClerkMappingError> {
        let user_id = self
            .id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(ClerkMappingError::MissingUserId)?;
        Ok(ClerkProfile {
            user_id,
            name: self.display_name(),
            email: self.primary_email().unwrap_or("").to_string(),
            phone: self.primary_phone().map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> ClerkUser {
        serde_json::from_value(value).expect("valid Clerk user JSON")
    }

    fn check(value: serde_json::Value, expected: ClerkProfile) {
        assert_eq!(parse(value).profile(), Ok(expected));
    }

    fn ada() -> serde_json::Value {
        json!({
            "id": "user_2abcDEF", "object": "user",
            "first_name": "Ada", "last_name": "Lovelace", "username": null,
            "primary_email_address_id": "idn_2email1",
            "email_addresses": [
                {"id": "idn_2email0", "email_address": "old@example.org", "verification": {"status": "verified"}},
                {"id": "idn_2email1", "email_address": "ada@example.org", "linked_to": []}
            ],
            "primary_phone_number_id": "idn_2phone1",
            "phone_numbers": [{"id": "idn_2phone1", "phone_number": "+15555550100", "backup_codes": null}],
            "public_metadata": {}, "created_at": 1764000000000u64, "updated_at": 1764000100000u64
        })
    }

    #[test]
    fn primary_email_is_chosen_by_id_not_position() {
        check(
            ada(),
            ClerkProfile {
                user_id: "user_2abcDEF".into(),
                name: "Ada Lovelace".into(),
                email: "ada@example.org".into(),
                phone: Some("+15555550100".into()),
            },
        );
        assert_eq!(parse(ada()).updated_at, Some(1764000100000.0));
    }

    #[test]
    fn name_falls_back_to_username_then_email() {
        let mut value = ada();
        value["first_name"] = json!(null);
        value["last_name"] = json!("  ");
        value["username"] = json!("ada_l");
        assert_eq!(parse(value.clone()).display_name(), "ada_l");
        value["username"] = json!(null);
        assert_eq!(parse(value.clone()).display_name(), "ada@example.org");
        value["first_name"] = json!(" Ada ");
        value["last_name"] = json!(null);
        assert_eq!(parse(value).display_name(), "Ada");
    }

    #[test]
    fn missing_pieces() {
        let value = json!({"id": "user_x", "first_name": null, "last_name": null, "username": null,
            "primary_email_address_id": null, "email_addresses": [], "primary_phone_number_id": null,
            "phone_numbers": null});
        check(
            value,
            ClerkProfile {
                user_id: "user_x".into(),
                name: "".into(),
                email: "".into(),
                phone: None,
            },
        );
        let mut value = ada();
        value["primary_phone_number_id"] = json!("idn_other");
        assert_eq!(parse(value).primary_phone(), None);
        assert_eq!(
            parse(json!({"object": "user"})).profile(),
            Err(ClerkMappingError::MissingUserId)
        );
    }
}
