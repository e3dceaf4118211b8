/**
 * The package's one private key. A consumer's parts reach a job's lease state through
 * `Job[internal]`; nothing outside the package is meant to.
 *
 * @module
 */

/** Keys the hooks sluice's own parts use on a `Job`; not exported from `mod.ts`. */
export const internal: unique symbol = Symbol("sluice.internal");
