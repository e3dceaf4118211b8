/**
 * The package version, as in deno.json (a test checks they agree): what a worker reports in
 * its heartbeat record.
 *
 * @module
 */

/** This package's version. */
export const VERSION = "0.1.0";
