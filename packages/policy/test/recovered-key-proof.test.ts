import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { recipientProofMessage } from "../src/index.js";

const sha256 = (b: Uint8Array): Uint8Array => createHash("sha256").update(b).digest();
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

test("the recovered-key recipient proof message keeps its bytes (issue 15)", () => {
  // The label "ukey-recovered-key-recipient" (ASCII), one NUL, then SHA-256 of the CSR's DER, here the 5 octets 3003020100.
  // Agents and servers of different versions sign and check these bytes: a change here breaks two-code downloads with recovered keys.
  const csrDer = Buffer.from("3003020100", "hex");
  assert.equal(
    hex(recipientProofMessage(csrDer, sha256)),
    "756b65792d7265636f76657265642d6b65792d726563697069656e7400" +
      "b560833d6f787af46113b96aad4dd5b5d1ae00dccc69cf30cc92bed651c56617",
  );
  assert.equal(recipientProofMessage(csrDer, sha256).length, 61);
});

test("the recipient proof message differs with the CSR and refuses a hash that is not SHA-256 sized", () => {
  assert.notEqual(hex(recipientProofMessage(Buffer.from("3003020100", "hex"), sha256)), hex(recipientProofMessage(Buffer.from("3003020101", "hex"), sha256)));
  assert.throws(() => recipientProofMessage(Buffer.from("30", "hex"), (b) => createHash("sha1").update(b).digest()), /32 octets/);
});
