// Clerk-shaped webhook payloads and Svix signing with the real `svix` npm package.
//
// Payload shapes follow /work/shared/spec/clerk-and-svix.md: an envelope
// `{data, object: "event", type, timestamp, instance_id, event_attributes}` around a
// full Clerk user object for user.created / user.updated, and `{id, object, deleted}`
// for user.deleted.

import { randomBytes } from "node:crypto";
import { Webhook } from "svix";

/** A fresh Clerk-style webhook secret: `whsec_` + base64 of 24 random bytes. */
export function newWebhookSecret() {
  return `whsec_${randomBytes(24).toString("base64")}`;
}

export function newUserId() {
  return `user_2${randomBytes(12).toString("hex")}`;
}

export function newMsgId() {
  return `msg_2${randomBytes(12).toString("hex")}`;
}

/**
 * A full Clerk user object. `opts`: id, firstName, lastName, username, email (primary),
 * otherEmail (a non-primary address listed FIRST, to catch "first entry" bugs), phone,
 * updatedAt (ms), createdAt (ms). Pass null to make a field null / a list empty.
 */
export function clerkUser(opts = {}) {
  const id = opts.id ?? newUserId();
  const email = opts.email === undefined ? `${id}@example.org` : opts.email;
  const otherEmail = opts.otherEmail === undefined ? `old-${id}@example.org` : opts.otherEmail;
  const phone = opts.phone === undefined ? "+15555550100" : opts.phone;
  const createdAt = opts.createdAt ?? 1764000000000;
  const emails = [];
  if (otherEmail !== null) {
    emails.push({
      id: "idn_2email0",
      object: "email_address",
      email_address: otherEmail,
      verification: { status: "verified", strategy: "email_code" },
      linked_to: [],
    });
  }
  if (email !== null) {
    emails.push({
      id: "idn_2email1",
      object: "email_address",
      email_address: email,
      verification: { status: "verified", strategy: "email_code" },
      linked_to: [],
    });
  }
  const phones =
    phone === null
      ? []
      : [
          {
            id: "idn_2phone1",
            object: "phone_number",
            phone_number: phone,
            verification: { status: "verified", strategy: "phone_code" },
            linked_to: [],
            reserved_for_second_factor: false,
            default_second_factor: false,
            reserved: false,
            backup_codes: null,
          },
        ];
  return {
    id,
    object: "user",
    first_name: opts.firstName === undefined ? "Ada" : opts.firstName,
    last_name: opts.lastName === undefined ? "Lovelace" : opts.lastName,
    username: opts.username === undefined ? null : opts.username,
    image_url: "https://img.example/ada.png",
    has_image: true,
    primary_email_address_id: email === null ? null : "idn_2email1",
    email_addresses: emails,
    primary_phone_number_id: phone === null ? null : "idn_2phone1",
    phone_numbers: phones,
    web3_wallets: [],
    external_accounts: [],
    public_metadata: {},
    private_metadata: {},
    unsafe_metadata: {},
    external_id: null,
    created_at: createdAt,
    updated_at: opts.updatedAt ?? createdAt + 100_000,
    last_sign_in_at: null,
    password_enabled: true,
    two_factor_enabled: false,
    banned: false,
    locked: false,
  };
}

function envelope(type, data, timestampMs) {
  return {
    data,
    object: "event",
    type,
    timestamp: timestampMs ?? Date.now(),
    instance_id: "ins_2testinstance",
    event_attributes: { http_request: { client_ip: "127.0.0.1", user_agent: "e2e-tests" } },
  };
}

export function userCreated(opts = {}) {
  const data = clerkUser(opts);
  return envelope("user.created", data, data.updated_at);
}

export function userUpdated(opts = {}) {
  const data = clerkUser(opts);
  return envelope("user.updated", data, data.updated_at);
}

export function userDeleted(id, timestampMs) {
  return envelope("user.deleted", { id, object: "user", deleted: true }, timestampMs);
}

export function otherEvent(type, data = {}) {
  return envelope(type, { object: type.split(".")[0], id: `x_${randomBytes(6).toString("hex")}`, ...data });
}

/**
 * Signs a payload with the real svix library. Returns the body string and the three
 * headers Clerk sends. `opts`: msgId, date (a Date), body (a raw string overriding the
 * JSON serialization of `payload`).
 */
export function signDelivery(secret, payload, opts = {}) {
  const body = opts.body ?? JSON.stringify(payload);
  const msgId = opts.msgId ?? newMsgId();
  const date = opts.date ?? new Date();
  const signature = new Webhook(secret).sign(msgId, date, body);
  const timestamp = String(Math.floor(date.getTime() / 1000));
  return {
    body,
    msgId,
    timestamp,
    signature,
    headers: {
      "content-type": "application/json",
      "svix-id": msgId,
      "svix-timestamp": timestamp,
      "svix-signature": signature,
    },
  };
}

/** POSTs a delivery to the webhook route on the site port; returns {status, text}. */
export async function deliver(siteUrl, body, headers) {
  const res = await fetch(`${siteUrl}/clerk-users-webhook`, { method: "POST", headers, body });
  return { status: res.status, text: await res.text() };
}

/** Signs and delivers in one step. */
export async function sendSigned(siteUrl, secret, payload, opts = {}) {
  const d = signDelivery(secret, payload, opts);
  const r = await deliver(siteUrl, d.body, d.headers);
  return { ...r, delivery: d };
}
