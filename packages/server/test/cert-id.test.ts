import { test } from "node:test";
import assert from "node:assert/strict";
import { UkeyError } from "@ukey/policy";
import { formatCertId, parseCertId } from "../src/cert-id.js";

test("parses the RFC 9773 example certID", () => {
  // RFC 9773 section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
  const id = parseCertId("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  assert.deepEqual(id, { issuerKeyId: "69885b6b87464041e1b37b847ba0ae2cde01c8d4", serial: "87654321" });
  assert.equal(formatCertId(id.issuerKeyId, id.serial), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
});

const malformed: Array<[string, string]> = [
  ["no dot", "aYhba4dGQEHhs3uEe6CuLN4ByNQ"],
  ["two dots", "a.b.c"],
  ["padding", "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE"],
  ["standard base64 characters", "aYhba4dGQEHhs3uEe6CuLN4By+Q.AIdlQyE"],
  ["empty serial", "aYhba4dGQEHhs3uEe6CuLN4ByNQ."],
  ["a negative serial", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ"],
  ["a zero serial", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AA"],
  ["an impossible base64 length", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQ"],
  ["an overlong input", "A".repeat(300) + ".AQ"],
];
for (const [name, input] of malformed) {
  test(`refuses ${name}`, () => {
    assert.throws(() => parseCertId(input), (e: unknown) => e instanceof UkeyError && e.code === "CERT_ID_MALFORMED");
  });
}
