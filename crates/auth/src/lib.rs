//! Authentication for Ticket Hub: who is calling, and did Clerk really send this webhook?
//!
//! Module map:
//! - [`webhook`]: Svix / Standard Webhooks signature verification for Clerk's webhook
//!   deliveries (`svix-*` or `webhook-*` headers, HMAC-SHA256, 5 minute timestamp window).
//! - [`stripe`]: Stripe webhook signature verification (`Stripe-Signature: t=...,v1=...`,
//!   HMAC-SHA256 of `"{t}.{body}"`, any of several `v1`, 300 s window either way).
//! - [`jwt`]: Convex-style auth providers (`auth.config.ts`: OIDC and custom JWT), the
//!   JWKS cache with rotation-aware refetching, token verification, and the Convex
//!   `UserIdentity` JSON shape.
//! - [`admin`]: the deployment admin key (`Authorization: Convex <key>`): generation,
//!   constant-time comparison, load-or-create in the data directory.
//! - [`credential`]: classifying an `Authorization` header value as a user token or an
//!   admin key, before any verification.
//!
//! Invariants:
//! - No HTTP-server code lives here; callers hand in header maps, bodies and strings.
//! - Every error type carries a stable ScreamingCamelCase `code()` and a message a person
//!   can act on; internal details (key material, secrets) never appear in messages.
//! - Key documents are fetched over HTTPS only; plain HTTP is allowed solely for loopback
//!   hosts so that tests can run a local issuer.

pub mod admin;
pub mod credential;
pub mod jwt;
pub mod stripe;
pub mod webhook;

pub use admin::{AdminKey, AdminKeyError, AdminKeyOrigin, LoadedAdminKey};
pub use credential::{parse_authorization_header, Credential};
pub use jwt::{
    Algorithm, AuthConfig, AuthError, ConfigError, JwksSource, ProviderConfig, ProviderKind,
    TokenVerifier, VerifiedToken, VerifierOptions, CLERK_ISSUER_ENV,
};
pub use stripe::{StripeSignatureError, StripeVerifier, VerifiedStripeSignature};
pub use webhook::{VerifiedDelivery, WebhookError, WebhookVerifier};
