/** How long a ticket offer stays open. */
export const OFFER_MS = 30 * 60 * 1000;
/** Joins of waiting lists allowed per user in one window. */
export const JOINS_PER_WINDOW = 3;
export const JOIN_WINDOW_MS = 30 * 60 * 1000;
