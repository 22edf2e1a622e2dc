import { test } from "node:test";
import assert from "node:assert/strict";
import { catalogue, type ErrorCode } from "@ukey/policy";
import { exitCodeFor, exitCodes } from "../src/cli.js";

// The CLI's exit code says what kind of trouble it was (docs/agent-cli.md):
// scripts of an organisation's IT tell "the server refused this holder's
// answer" (3) from "the key" (4) and "the server" (5). Every code the server
// answers to a holder's wrong code, ID number or pairing attempt is a refusal.
test("the server's refusals of a holder's answers exit 3, the key's troubles 4, the server's 5, usage 2", () => {
  const refused: ErrorCode[] = [
    "IDENTITY_MISMATCH", "IDENTITY_ATTEMPTS_EXCEEDED", "DOWNLOAD_CODE_INVALID", "PAIRING_CODE_INVALID",
    "CODE_INVALID", "CODE_EXPIRED", "CODE_ALREADY_USED", "CODE_ATTEMPTS_EXCEEDED", "RENEWAL_LOCKED", "CSR_SM2_ID_EMPTY",
  ];
  for (const code of refused) {
    assert.ok(code in catalogue, `${code} is not in the catalogue`);
    assert.equal(exitCodeFor(code), exitCodes.refused, code);
  }
  assert.equal(exitCodeFor("TOKEN_PIN_INCORRECT"), exitCodes.token);
  assert.equal(exitCodeFor("SERVER_UNREACHABLE"), exitCodes.server);
  // A server that cannot serve for now (a PostgreSQL failover, a full volume, an old instance) is the server's trouble too.
  for (const code of ["DATABASE_UNAVAILABLE", "DATABASE_READ_ONLY", "DATABASE_SCHEMA_NEWER", "STORAGE_FULL", "CA_UNREACHABLE"] as const) assert.equal(exitCodeFor(code), exitCodes.server, code);
  assert.equal(exitCodeFor("TOKEN_STORAGE_FULL"), exitCodes.token, "the key's full storage is the key's");
  assert.equal(exitCodeFor("CLI_USAGE"), exitCodes.usage);
  assert.equal(exitCodeFor("INTERNAL"), exitCodes.other);
  // Issue 14: the institution's files that do not verify are failures, not refusals of an answer; no configuration is usage.
  for (const code of ["DOWNLOAD_SIGNATURE_INVALID", "DOWNLOAD_CHECKSUM_MISMATCH", "INSTITUTION_MISMATCH"] as const) assert.equal(exitCodeFor(code), exitCodes.other, code);
  assert.equal(exitCodeFor("AGENT_NOT_CONFIGURED"), exitCodes.usage);
});
