// loopwise from Node.js: JSON events in, decisions out, and the HMAC check of signed commands.
//
// The wire format is loopwise's default: UTF-8 JSON, one record per message, keyed as
// README.md's topic table says (requests and feedback by request_id). Commands carry an
// HMAC-SHA256 signature over their canonical bytes, computed exactly as schemas/signing.py:
//   canonical = JSON of every field but "signature", keys sorted at every depth, no spaces
//               ("requires_approval" only when true); signature = hex(HMAC-SHA256(key, canonical))
'use strict';

const crypto = require('crypto');

// Fields added after release 1 that the signature covers only when set (schemas/signing.py).
const COVERED_WHEN_SET = new Set(['requires_approval']);

function sortedJson(value) {
  if (Array.isArray(value)) return '[' + value.map(sortedJson).join(',') + ']';
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + sortedJson(value[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

/** The bytes a command's signature covers. */
function canonicalBytes(command) {
  const fields = {};
  for (const [name, value] of Object.entries(command)) {
    if (name === 'signature') continue;
    if (COVERED_WHEN_SET.has(name) && !value) continue;
    fields[name] = value;
  }
  return Buffer.from(sortedJson(fields), 'utf8');
}

/** Throws unless `command` (a decoded Command record) is signed with `key` (a string or Buffer). */
function verifyCommand(command, key) {
  if (!command.signature) throw new Error(`command ${command.command_id}: unsigned`);
  const expected = crypto.createHmac('sha256', key).update(canonicalBytes(command)).digest('hex');
  const given = Buffer.from(String(command.signature), 'utf8');
  if (given.length !== expected.length || !crypto.timingSafeEqual(Buffer.from(expected, 'utf8'), given)) {
    throw new Error(`command ${command.command_id}: forged`);
  }
}

/** A RequestEvent as lw.requests expects it (README.md, schemas/avro/request_event.avsc). */
function requestEvent({ requestId, workflow, version, route, tenant, task, latencyMs, costUsd, tokensIn, tokensOut,
  status = 'ok', variant = null, errorType = null, errorMessage = null, tsMs = Date.now() }) {
  return {
    request_id: requestId, ts_ms: tsMs, workflow, workflow_version: version, route,
    context: { tenant, task, privacy_level: 'public', priority: 1, user_id: null, session_id: null, attributes: {} },
    latency_ms: latencyMs, cost_usd: costUsd, tokens_in: tokensIn, tokens_out: tokensOut, status,
    variant, error_type: errorType, error_message: errorMessage,
  };
}

/** A RouteRequest: ask the worker's route stage which route one request should take. */
function routeRequest({ requestId, workflow, tenant, task, tsMs = Date.now() }) {
  return {
    request_id: requestId, ts_ms: tsMs, workflow,
    context: { tenant, task, privacy_level: 'public', priority: 1, user_id: null, session_id: null, attributes: {} },
  };
}

module.exports = { canonicalBytes, verifyCommand, requestEvent, routeRequest, sortedJson };
