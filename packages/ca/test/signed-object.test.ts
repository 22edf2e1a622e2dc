import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { buildCsr, encodeName, holdsKeyOf, signatureAlgorithmFor, signedBy, sm2GenerateKeyPair, sm2Sign, sm2Spki, verifyCsr, type CaSigner } from "../src/index.js";
import { sm3WithSm2AlgorithmIdentifier } from "../src/sm2.js";

// Signers as a key store hands them out, over real keys made here.
function ecSigner(): CaSigner {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    algorithm: "p256", spki: publicKey.export({ type: "spki", format: "der" }), signatureAlgorithm: signatureAlgorithmFor("p256"),
    sign: async (data) => sign("sha256", data, { key: privateKey, dsaEncoding: "der" }),
  };
}
function rsaSigner(): CaSigner {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    algorithm: "rsa2048", spki: publicKey.export({ type: "spki", format: "der" }), signatureAlgorithm: signatureAlgorithmFor("rsa2048"),
    sign: async (data) => sign("sha256", data, privateKey),
  };
}
function sm2Signer(): CaSigner {
  const key = sm2GenerateKeyPair();
  return { algorithm: "sm2", spki: sm2Spki(key.publicKey), signatureAlgorithm: sm3WithSm2AlgorithmIdentifier, sign: async (data) => sm2Sign(data, key) };
}

const name = encodeName([["C", "CN"], ["O", "Example Bank"], ["CN", "Example Bank Issuing CA"]]);

for (const [alg, make] of [["p256", ecSigner], ["rsa2048", rsaSigner], ["sm2", sm2Signer]] as const) {
  test(`buildCsr (${alg}): a request the CSR verifier accepts, for the signer's key and the given name`, async () => {
    const signer = make();
    const csr = await buildCsr(signer, name);
    const v = verifyCsr(csr);
    assert.deepEqual(v.spki, signer.spki);
    assert.equal(v.requestedSubject, "C=CN, O=Example Bank, CN=Example Bank Issuing CA");
  });

  test(`signedBy (${alg}): true for the signer's key only, false for a changed byte or another key`, async () => {
    const signer = make();
    const csr = await buildCsr(signer, name);
    assert.equal(signedBy(csr, signer.spki), true);
    const changed = Buffer.from(csr);
    changed[40] = changed[40]! ^ 1;
    assert.equal(signedBy(changed, signer.spki), false);
    assert.equal(signedBy(csr, make().spki), false);
    assert.equal(signedBy(Buffer.from("not DER"), signer.spki), false, "never throws");
  });

  test(`holdsKeyOf (${alg}): the key's own public key, not another`, async () => {
    const signer = make();
    assert.equal(await holdsKeyOf(signer, signer.spki), true);
    assert.equal(await holdsKeyOf(signer, make().spki), false);
    // A signer that claims a public key it does not hold: the signature gives it away.
    const target = make().spki;
    assert.equal(await holdsKeyOf({ ...signer, spki: target }, target), false);
  });
}
