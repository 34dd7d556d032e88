//! Stripe's event JSON mapped to what Ticket Hub does with it. Only the fields we use are
//! typed; everything else Stripe sends is ignored (Stripe adds fields without notice).
//!
//! - `checkout.session.completed`: the session's `metadata` carries `eventId`, `userId` and
//!   `waitingListId` (the original's checkout action put them there); `payment_intent` and
//!   `amount_total` (minor units) become `paymentInfo`.
//! - `charge.refunded`: the charge's `payment_intent` names the ticket; `refunded` is true only
//!   once the whole amount is refunded (Stripe sends this event for partial refunds too).

use serde::Deserialize;

use crate::events::PaymentInfo;

pub const CHECKOUT_SESSION_COMPLETED: &str = "checkout.session.completed";
pub const CHARGE_REFUNDED: &str = "charge.refunded";

/// The envelope of every Stripe event.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeEnvelope {
    /// `evt_...`: the same for every redelivery of one event.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: EnvelopeData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeData {
    /// The object the event is about (a Checkout Session, a Charge, ...).
    pub object: serde_json::Value,
}

/// What an event means to Ticket Hub.
#[derive(Debug, Clone, PartialEq)]
pub enum StripeEvent {
    CheckoutCompleted(CheckoutCompleted),
    ChargeRefunded(ChargeRefunded),
    /// Any other type: acknowledged and logged.
    Other,
}

/// The fields of a Checkout Session that Ticket Hub uses; each may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckoutCompleted {
    pub event_id: Option<String>,
    pub user_id: Option<String>,
    pub waiting_list_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// Minor units (cents).
    pub amount: Option<f64>,
}

/// `events:purchaseTicket`'s arguments, as the original's route built them.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseRequest {
    pub event_id: String,
    pub user_id: String,
    pub waiting_list_id: String,
    pub payment_info: PaymentInfo,
}

/// A Checkout Session that cannot become a purchase: the field it lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingField {
    EventId,
    UserId,
    WaitingListId,
    PaymentIntent,
    AmountTotal,
}

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self {
            MissingField::EventId => "metadata.eventId",
            MissingField::UserId => "metadata.userId",
            MissingField::WaitingListId => "metadata.waitingListId",
            MissingField::PaymentIntent => "payment_intent",
            MissingField::AmountTotal => "amount_total",
        };
        write!(f, "the Checkout Session has no {field}")
    }
}

impl CheckoutCompleted {
    /// The purchase to run, or the first field it lacks.
    pub fn purchase(&self) -> Result<PurchaseRequest, MissingField> {
        let need = |value: &Option<String>, field| value.clone().ok_or(field);
        Ok(PurchaseRequest {
            event_id: need(&self.event_id, MissingField::EventId)?,
            user_id: need(&self.user_id, MissingField::UserId)?,
            waiting_list_id: need(&self.waiting_list_id, MissingField::WaitingListId)?,
            payment_info: PaymentInfo {
                payment_intent_id: need(&self.payment_intent_id, MissingField::PaymentIntent)?,
                amount: self.amount.ok_or(MissingField::AmountTotal)?,
            },
        })
    }
}

/// The fields of a Charge that Ticket Hub uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRefunded {
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// The whole charge is refunded (not only part of it).
    pub fully_refunded: bool,
}

impl StripeEnvelope {
    pub fn event(&self) -> StripeEvent {
        let object = &self.data.object;
        match self.event_type.as_str() {
            CHECKOUT_SESSION_COMPLETED => {
                let metadata = object.get("metadata");
                let meta = |key: &str| non_empty(metadata.and_then(|m| m.get(key)));
                StripeEvent::CheckoutCompleted(CheckoutCompleted {
                    event_id: meta("eventId"),
                    user_id: meta("userId"),
                    waiting_list_id: meta("waitingListId"),
                    payment_intent_id: object_id(object.get("payment_intent")),
                    amount: object
                        .get("amount_total")
                        .and_then(serde_json::Value::as_f64),
                })
            }
            CHARGE_REFUNDED => StripeEvent::ChargeRefunded(ChargeRefunded {
                charge_id: non_empty(object.get("id")),
                payment_intent_id: object_id(object.get("payment_intent")),
                fully_refunded: object.get("refunded").and_then(serde_json::Value::as_bool)
                    == Some(true),
            }),
            _ => StripeEvent::Other,
        }
    }
}

/// A non-empty string field.
fn non_empty(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// An id field that Stripe sends as a string, or as the object itself when expanded.
fn object_id(value: Option<&serde_json::Value>) -> Option<String> {
    let value = value?;
    non_empty(Some(value)).or_else(|| non_empty(value.get("id")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> StripeEvent {
        serde_json::from_value::<StripeEnvelope>(value)
            .expect("a Stripe event envelope")
            .event()
    }

    fn session(object: serde_json::Value) -> serde_json::Value {
        json!({"id": "evt_1", "object": "event", "type": "checkout.session.completed",
               "livemode": false, "data": {"object": object}})
    }

    #[test]
    fn a_completed_checkout_becomes_the_original_purchase_call() {
        let event = parse(session(json!({
            "id": "cs_test_1", "object": "checkout.session", "amount_total": 4999,
            "payment_intent": "pi_1", "payment_status": "paid",
            "metadata": {"eventId": "ev", "userId": "user_1", "waitingListId": "wl"}
        })));
        let StripeEvent::CheckoutCompleted(checkout) = event else {
            panic!("not a checkout: {event:?}")
        };
        let purchase = checkout.purchase().expect("a complete session");
        // Exactly the arguments the original's route passed to `events:purchaseTicket`.
        assert_eq!(
            serde_json::to_value(&purchase).unwrap(),
            json!({"eventId": "ev", "userId": "user_1", "waitingListId": "wl",
                   "paymentInfo": {"paymentIntentId": "pi_1", "amount": 4999.0}})
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let cases = [
            (
                json!({"amount_total": 1, "payment_intent": "pi"}),
                MissingField::EventId,
            ),
            (
                json!({"metadata": {"eventId": "e", "userId": "", "waitingListId": "w"}}),
                MissingField::UserId,
            ),
            (
                json!({"metadata": {"eventId": "e", "userId": "u", "waitingListId": 5}}),
                MissingField::WaitingListId,
            ),
            (
                json!({"metadata": {"eventId": "e", "userId": "u", "waitingListId": "w"},
                       "payment_intent": null, "amount_total": 1}),
                MissingField::PaymentIntent,
            ),
            (
                json!({"metadata": {"eventId": "e", "userId": "u", "waitingListId": "w"},
                       "payment_intent": {"id": "pi_x", "object": "payment_intent"}}),
                MissingField::AmountTotal,
            ),
        ];
        for (object, missing) in cases {
            let StripeEvent::CheckoutCompleted(checkout) = parse(session(object.clone())) else {
                panic!("not a checkout")
            };
            assert_eq!(checkout.purchase().err(), Some(missing), "{object}");
        }
    }

    #[test]
    fn refunds_and_other_types() {
        let refund = |refunded: bool| {
            parse(
                json!({"id": "evt_2", "type": "charge.refunded", "data": {"object": {
                "id": "ch_1", "object": "charge", "payment_intent": "pi_1", "refunded": refunded,
                "amount_refunded": 100}}}),
            )
        };
        assert_eq!(
            refund(true),
            StripeEvent::ChargeRefunded(ChargeRefunded {
                charge_id: Some("ch_1".into()),
                payment_intent_id: Some("pi_1".into()),
                fully_refunded: true,
            })
        );
        assert!(matches!(
            refund(false),
            StripeEvent::ChargeRefunded(ChargeRefunded {
                fully_refunded: false,
                ..
            })
        ));
        assert_eq!(
            parse(
                json!({"id": "evt_3", "type": "payment_intent.succeeded", "data": {"object": {}}})
            ),
            StripeEvent::Other
        );
        assert!(serde_json::from_value::<StripeEnvelope>(json!({"type": "x"})).is_err());
    }
}
