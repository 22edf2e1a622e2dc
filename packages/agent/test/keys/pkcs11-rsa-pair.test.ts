import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { constants, createHash, generateKeyPairSync, publicEncrypt, type KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCmsEnvelopedKey } from "../../../ca/src/index.js";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import type { TokenSession } from "../../src/keys/key-store.js";
import { OpenSslCa, run, tempDir } from "./support/openssl.js";
import { rejectsWith } from "../support/refusals.js";

// Issue 15, RSA certificate pairs on PKCS#11 keys, on SoftHSM2 (real): the encryption key's envelope
// ("cms-enveloped-data-v2", made by the CA package as the server makes it) is opened on the token with two
// C_UnwrapKey calls, never in this process. pkcs11-tool, a separate PKCS#11 client, checks what the token then holds.
let hsm: SoftHsmToken;
let tmp: { dir: string; cleanup(): void };
let ca: OpenSslCa;

before(() => {
  hsm = createSoftHsmToken("agent-rsa-pair", "123456", "654321");
  tmp = tempDir();
  ca = new OpenSslCa(tmp.dir);
});
after(() => {
  hsm.cleanup();
  tmp.cleanup();
});

async function withSession<T>(fn: (s: TokenSession) => Promise<T>): Promise<T> {
  const backend = new Pkcs11Backend(hsm.module);
  const s = await backend.open(hsm.tokenSerial, "123456");
  try {
    return await fn(s);
  } finally {
    await s.close();
    await backend.close();
  }
}

/** pkcs11-tool's listing of every object on the token (logged in). */
const objects = (): string => run("pkcs11-tool", ["--module", hsm.module, "--token-label", hsm.tokenLabel, "--login", "--pin", "123456", "-O"]);

/** An RSA encryption key made as the KMC makes it, its certificate from the test CA, and its envelope for `signingSpki`. */
let n = 0;
function encryptionHalf(signingSpki: Uint8Array): { key: KeyObject; spki: Buffer; certDer: Buffer; envelope: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyFile = join(tmp.dir, `enc${++n}.key`);
  writeFileSync(keyFile, privateKey.export({ format: "pem", type: "pkcs8" }));
  const csr = run("openssl", ["req", "-new", "-key", keyFile, "-subj", "/CN=enc"]);
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
  return {
    key: publicKey, spki: publicKey.export({ format: "der", type: "spki" }), certDer: ca.issue(csr, `e${n}`),
    envelope: buildCmsEnvelopedKey(pkcs8, Buffer.from(signingSpki)),
  };
}

test("an RSA pair's encryption key is unwrapped on the token beside its signing key, not extractable, and decrypts there (issue 15)", async () => {
  await withSession(async (s) => {
    const signing = await s.generateKeyPair("rsa2048", "ukey-pending:order-1", undefined, { unwrap: true });
    assert.match(objects(), new RegExp(`ID:         ${signing.id}\n  Usage:      sign, unwrap\n`), "made to sign and, until the envelope is open, unwrap");
    const half = encryptionHalf(signing.spki);
    const imported = await s.importRsaEnvelope!(signing.id, half.envelope, half.spki);
    assert.equal(imported.id, `${signing.id}02`, "the encryption objects' CKA_ID is the signing key's followed by 02");
    assert.equal(imported.label, "ukey-pending:order-1");
    assert.deepEqual(Buffer.from(imported.spki), half.spki);
    const cert = await s.installCertificate(half.certDer, imported.id, imported.label);
    assert.equal(cert.hasKey, true);

    // What a separate PKCS#11 client sees: the private key sensitive, never extractable, for decrypt and unwrap, not sign.
    const dump = objects();
    const block = dump.split(/\n(?=\S)/).find((b) => b.startsWith("Private Key Object") && b.includes(`ID:         ${imported.id}`));
    assert.ok(block, dump);
    assert.match(block, /Usage:\s+decrypt, unwrap/);
    assert.doesNotMatch(block, /sign/);
    // Unwrapped, so neither "always sensitive" nor "never extractable" (it existed outside once: at the KMC), but not extractable.
    // (The block ends at the next object, or with the listing's own newline when it is the last one.)
    assert.match(block, /Access:\s+sensitive\s*(?:\n|$)/);
    // The signing key signs and no longer unwraps once the envelope is open.
    const signingBlock = dump.split(/\n(?=\S)/).find((b) => b.startsWith("Private Key Object") && b.includes(`ID:         ${signing.id}\n`));
    assert.ok(signingBlock, dump);
    assert.match(signingBlock, /Usage:\s+sign\n/);

    // The token decrypts what is encrypted to the encryption certificate (pkcs11-tool, RSA-PKCS-OAEP).
    const secret = Buffer.from("只给加密证书 / for the encryption certificate only");
    const cipherFile = join(tmp.dir, "to-enc.bin");
    writeFileSync(cipherFile, publicEncrypt({ key: half.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, secret));
    const plainFile = join(tmp.dir, "from-token.bin");
    run("pkcs11-tool", ["--module", hsm.module, "--token-label", hsm.tokenLabel, "--login", "--pin", "123456", "--decrypt", "--id", imported.id,
      "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA-1", "--input-file", cipherFile, "--output-file", plainFile]);
    assert.deepEqual(run("cat", [plainFile]), secret.toString());

    // Again (an interrupted run): the same key is found, nothing is unwrapped twice.
    const before = objects();
    const again = await s.importRsaEnvelope!(signing.id, half.envelope, half.spki);
    assert.equal(again.id, imported.id);
    assert.equal(objects(), before, "no object added the second time");

    // One label for the pair; deleting the signing half leaves the encryption key and certificate alone.
    await s.relabel(signing.id, "ukey-current:e1");
    assert.ok((await s.listKeys()).filter((k) => k.label === "ukey-current:e1").length === 2);
    await s.deleteObjects([signing.id]);
    const left = await s.listCertificates();
    assert.ok(left.some((c) => c.id === imported.id && c.hasKey), "the encryption certificate and its key stay");
    await s.deleteObjects([imported.id]);
  });
});

test("a bad RSA envelope is refused with a catalogue code and leaves the token as it was", async () => {
  await withSession(async (s) => {
    const signing = await s.generateKeyPair("rsa2048", "ukey-pending:order-2", undefined, { unwrap: true });
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "der", type: "spki" });
    const half = encryptionHalf(signing.spki);
    const start = objects();
    const cases: Array<[string, Buffer, string]> = [
      ["not DER", Buffer.from("not an envelope"), "ENVELOPE_MALFORMED"],
      ["the wrapped key changed", Buffer.concat([half.envelope.subarray(0, -1), Buffer.from([half.envelope.at(-1)! ^ 1])]), "ENVELOPE_MALFORMED"],
      ["for another key (its recipient)", encryptionHalf(other).envelope, "ENVELOPE_MALFORMED"],
    ];
    // For another key but naming this one: the token itself refuses the RSAES-OAEP ciphertext.
    const forOther = encryptionHalf(other).envelope;
    const otherSki = createHash("sha1").update(subjectPublicKeyBits(other)).digest();
    const ownSki = createHash("sha1").update(subjectPublicKeyBits(Buffer.from(signing.spki))).digest();
    const at = forOther.indexOf(otherSki);
    assert.ok(at > 0);
    cases.push(["for another key, relabelled as this one's", Buffer.concat([forOther.subarray(0, at), ownSki, forOther.subarray(at + 20)]), "ENVELOPE_MALFORMED"]);
    for (const [name, envelope, code] of cases) {
      await rejectsWith(s.importRsaEnvelope!(signing.id, envelope, half.spki), code).catch((e: Error) => { throw new Error(`${name}: ${e.message}`); });
      assert.equal(objects(), start, `${name}: nothing left on the token`);
    }
    // The envelope's key is not the certificate's: refused, the unwrapped key destroyed.
    await rejectsWith(s.importRsaEnvelope!(signing.id, half.envelope, other), "CERT_KEY_MISMATCH");
    assert.equal(objects(), start, "nothing left after a mismatch");
    // A signing key made without CKA_UNWRAP (a renewal does not know the profile before the CSR): SoftHSM2 lets
    // CKA_UNWRAP change, so it unwraps for the import alone and signs only afterwards.
    const plain = await s.generateKeyPair("rsa2048", "ukey-pending:order-3");
    assert.match(objects(), new RegExp(`ID:         ${plain.id}\n  Usage:      sign\n`));
    const forPlain = encryptionHalf(plain.spki);
    assert.equal((await s.importRsaEnvelope!(plain.id, forPlain.envelope, forPlain.spki)).id, `${plain.id}02`);
    assert.match(objects(), new RegExp(`ID:         ${plain.id}\n  Usage:      sign\n`));
    // Another key already in the encryption key's place: not overwritten.
    await s.generateKeyPair("rsa2048", "someone else's", `${signing.id}02`);
    await rejectsWith(s.importRsaEnvelope!(signing.id, half.envelope, half.spki), "TOKEN_CONTAINER_FOREIGN");
    await s.deleteObjects([signing.id, `${signing.id}02`, plain.id, `${plain.id}02`]);
  });
});

/** The subjectPublicKey BIT STRING's bits of an RSA SPKI (after the 00 unused-bits octet). */
function subjectPublicKeyBits(spki: Buffer): Buffer {
  // SEQUENCE { AlgorithmIdentifier (15 octets for rsaEncryption with NULL), BIT STRING }.
  const outerHeader = spki[1]! & 0x80 ? 2 + (spki[1]! & 0x7f) : 2;
  const algEnd = outerHeader + 2 + spki[outerHeader + 1]!;
  const bitHeader = spki[algEnd + 1]! & 0x80 ? 2 + (spki[algEnd + 1]! & 0x7f) : 2;
  return spki.subarray(algEnd + bitHeader + 1);
}
