import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createPublicKey, verify, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { objectLabels } from "../../src/keys/key-store.js";
import {
  agentHome, createFileToken, defaultFileTokenPath, fileTokenSerial, Pkcs12Backend,
} from "../../src/keys/pkcs12-backend.js";
import { writeFileAtomic } from "../../src/keys/pkcs12-file.js";
import { OpenSslCa, run, tempDir } from "./support/openssl.js";
import { rejectsWith } from "../support/refusals.js";

let tmp: { dir: string; cleanup(): void };
let ca: OpenSslCa;
const files: Record<string, { path: string; password: string; certPem: string; algorithm: string }> = {};

/** A key, a self-signed certificate and a PKCS#12 file made by openssl with `exportArgs`. */
function opensslPkcs12(name: string, keyArgs: string[], password: string, exportArgs: string[], algorithm: string): void {
  const key = join(tmp.dir, `${name}.key`);
  const cert = join(tmp.dir, `${name}.pem`);
  const path = join(tmp.dir, `${name}.p12`);
  run("openssl", ["req", "-x509", ...keyArgs, "-nodes", "-keyout", key, "-out", cert, "-days", "5", "-subj", `/CN=${name} holder/O=Example Bank`]);
  run("openssl", ["pkcs12", "-export", "-inkey", key, "-in", cert, "-out", path, "-passout", `pass:${password}`, "-name", `${name} cert`, ...exportArgs]);
  files[name] = { path, password, certPem: readFileSync(cert, "utf8"), algorithm };
}

before(() => {
  tmp = tempDir("ukey-pkcs12-");
  ca = new OpenSslCa(tmp.dir);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
  const rsa = ["-newkey", "rsa:2048"];
  opensslPkcs12("ec-aes", ec, "ecpass1", ["-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC"], "p256");
  opensslPkcs12("rsa-aes", rsa, "rsapass1", ["-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC"], "rsa2048");
  opensslPkcs12("rsa-legacy", rsa, "legacy1", ["-legacy"], "rsa2048");
  opensslPkcs12("ec-3des", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "3despass", ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"], "p384");
  opensslPkcs12("ec-chain", ec, "chain12", ["-certfile", join(tmp.dir, "ca.pem")], "p256");
  // Windows and OpenSSL users set passwords in Chinese too.
  opensslPkcs12("utf8-aes", ec, "证书密码Abc1", [], "p256");
  opensslPkcs12("utf8-legacy", rsa, "证书密码Abc1", ["-legacy"], "rsa2048");
  opensslPkcs12("rsa-1024", ["-newkey", "rsa:1024"], "old1024", [], "rsa1024");
});
after(() => tmp.cleanup());

function info(path: string, password: string): string {
  return run("openssl", ["pkcs12", "-info", "-noout", "-in", path, "-passin", `pass:${password}`], { stderr: true });
}

/** openssl's own reading: the private keys and certificates in PEM. */
function opensslDump(path: string, password: string): { keys: string[]; certs: string[] } {
  const out = run("openssl", ["pkcs12", "-in", path, "-nodes", "-passin", `pass:${password}`]);
  return {
    keys: out.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/g) ?? [],
    certs: out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [],
  };
}

describe("PKCS#12 backend", () => {
  test("reads files made by openssl: EC and RSA, AES, 3DES and legacy RC2", async () => {
    for (const name of ["ec-aes", "rsa-aes", "rsa-legacy", "ec-3des", "utf8-aes", "utf8-legacy"]) {
      const f = files[name]!;
      const backend = new Pkcs12Backend(f.path);
      const [token] = await backend.listTokens();
      assert.equal(token?.serial, fileTokenSerial(f.path), name);
      assert.equal(token?.label, `${name}.p12`);
      assert.equal(token?.backend, "pkcs12");
      assert.deepEqual(await backend.listCertificates(token!.serial), [], "certificates are encrypted: none without the password");
      const s = await backend.open(token!.serial, f.password);
      try {
        const [key, ...moreKeys] = await s.listKeys();
        assert.equal(moreKeys.length, 0);
        assert.equal(key?.algorithm, f.algorithm, name);
        const [cert, ...more] = await s.listCertificates();
        assert.equal(more.length, 0);
        const x = new X509Certificate(f.certPem);
        assert.equal(cert!.serialHex, x.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ""), name);
        assert.equal(cert!.subject, `CN=${name} holder, O=Example Bank`);
        assert.equal(cert!.hasKey, true, name);
        assert.equal(cert!.id, key!.id);
        assert.equal(cert!.label, `${name} cert`);
        assert.deepEqual(Buffer.from(cert!.der), x.raw);
        const data = Buffer.from("possession challenge");
        const sig = await s.sign(key!.id, data);
        assert.ok(verify(f.algorithm === "p384" ? "sha384" : "sha256", data, x.publicKey, sig), name);
      } finally {
        await s.close();
      }
    }
  });

  test("a file with a non-ASCII password is rewritten so that openssl and the agent still open it with that password", async () => {
    const f = files["utf8-aes"]!;
    const backend = new Pkcs12Backend(f.path);
    await rejectsWith(backend.open(fileTokenSerial(f.path), "证书密码Abc2"), "PFX_PASSWORD_INCORRECT");
    const s = await backend.open(fileTokenSerial(f.path), f.password);
    const [key] = await s.listKeys();
    await s.relabel(key!.id, "改名");
    await s.close();
    assert.equal(opensslDump(f.path, f.password).keys.length, 1);
    const again = await backend.open(fileTokenSerial(f.path), f.password);
    assert.deepEqual((await again.listCertificates()).map((c) => [c.label, c.hasKey]), [["改名", true]]);
    await again.close();
  });

  test("an old RSA-1024 certificate still proves possession, though its key is not offered for new use", async () => {
    const f = files["rsa-1024"]!;
    const backend = new Pkcs12Backend(f.path);
    const s = await backend.open(fileTokenSerial(f.path), f.password);
    try {
      assert.deepEqual(await s.listKeys(), []);
      const [cert] = await s.listCertificates();
      assert.equal(cert!.hasKey, true);
      const data = Buffer.from("challenge");
      assert.ok(verify("sha256", data, new X509Certificate(f.certPem).publicKey, await s.sign(cert!.id, data)));
      await rejectsWith(s.createCsr(cert!.id), "KEY_ALGORITHM_UNSUPPORTED");
    } finally {
      await s.close();
    }
  });

  test("lists CA certificates of the file without a key", async () => {
    const f = files["ec-chain"]!;
    const backend = new Pkcs12Backend(f.path);
    const certs = await backend.listCertificates(fileTokenSerial(f.path), f.password);
    assert.deepEqual(certs.map((c) => [c.subject, c.hasKey]).sort(), [["CN=Test Agent CA", false], ["CN=ec-chain holder, O=Example Bank", true]]);
    assert.ok(certs.every((c) => /^[0-9a-f]+$/.test(c.id)));
  });

  test("refuses a wrong password, a corrupt file, a missing file and another serial with catalogue codes", async () => {
    const f = files["ec-aes"]!;
    const backend = new Pkcs12Backend(f.path);
    const serial = fileTokenSerial(f.path);
    await rejectsWith(backend.open(serial, "wrong-password"), "PFX_PASSWORD_INCORRECT");
    await rejectsWith(backend.open("0123456789abcdef", f.password), "TOKEN_NOT_PRESENT");
    const original = readFileSync(f.path);
    const cases: [string, Buffer, string][] = [
      ["not-pkcs12.p12", Buffer.from("this is not a certificate file\n"), "PFX_MALFORMED"],
      ["truncated.p12", original.subarray(0, original.length - 40), "PFX_MALFORMED"],
      ["a-certificate.p12", new X509Certificate(f.certPem).raw, "PFX_MALFORMED"],
      // A damaged byte inside the MAC'd content: the MAC fails, as with a wrong password.
      ["flipped.p12", Buffer.from(original.map((b, i) => (i === 200 ? b ^ 0xff : b))), "PFX_PASSWORD_INCORRECT"],
    ];
    for (const [name, bytes, code] of cases) {
      const path = join(tmp.dir, name);
      writeFileSync(path, bytes);
      await assert.rejects(new Pkcs12Backend(path).open(fileTokenSerial(path), f.password), (e: unknown) => {
        assert.ok(isUkeyError(e, code as "PFX_MALFORMED"), `${name}: ${String(e)}`);
        if (code === "PFX_MALFORMED") assert.equal(e.params.path, path, "the message names the file");
        return true;
      });
    }
    const missing = join(tmp.dir, "missing.p12");
    assert.deepEqual(await new Pkcs12Backend(missing).listTokens(), []);
    await rejectsWith(new Pkcs12Backend(missing).open(fileTokenSerial(missing), "abcdef1"), "FILE_UNREADABLE");
    assert.deepEqual(readFileSync(f.path), original, "nothing was changed");
  });

  test("a file token written by the agent is read back by openssl (PBES2 AES-256, HMAC-SHA256 MAC) and by the agent", async () => {
    const path = join(tmp.dir, "agent-token.p12");
    const backend = await createFileToken(path, "first123");
    const serial = fileTokenSerial(path);
    assert.match(info(path, "first123"), /MAC: sha256/);
    const s = await backend.open(serial, "first123");
    const ec = await s.generateKeyPair("p256", objectLabels.pending("order-9"));
    const rsa = await s.generateKeyPair("rsa2048", "second key", "c0ffee");
    for (const [key, subject] of [[ec, "CN=Wang Wu"], [rsa, ""]] as const) {
      const csr = join(tmp.dir, `agent-${key.id}.csr`);
      writeFileSync(csr, await s.createCsr(key.id, subject));
      run("openssl", ["req", "-in", csr, "-verify", "-noout"]);
    }
    for (const bad of ["garbage", "CN=", "XX=1", "C=中国", "serialNumber=身份证", "/CN=a/O"]) await rejectsWith(s.createCsr(ec.id, bad), "REQUEST_INVALID");
    const der = ca.issue(await s.createCsr(ec.id), "5a5a01");
    const installed = await s.installCertificate(der, ec.id, objectLabels.current("5a5a01"));
    assert.equal(installed.hasKey, true);
    assert.equal(installed.serialHex, "5a5a01");
    await s.installCertificate(der, ec.id, objectLabels.current("5a5a01"));
    assert.equal((await s.listCertificates()).length, 1, "installed once");
    // A certificate for another key is refused and the file is not touched.
    const before = readFileSync(path);
    await rejectsWith(s.installCertificate(ca.issue(await s.createCsr(rsa.id), "77"), ec.id, "wrong"), "CERT_KEY_MISMATCH");
    assert.deepEqual(readFileSync(path), before);
    await s.close();

    const text = info(path, "first123");
    assert.match(text, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
    assert.match(text, /PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
    assert.match(text, /MAC: sha256, Iteration 2048/);
    const dump = opensslDump(path, "first123");
    assert.equal(dump.keys.length, 2);
    assert.equal(dump.certs.length, 1);
    assert.deepEqual(new X509Certificate(dump.certs[0]!).raw, der);
    const spkis = dump.keys.map((k) => createPublicKey(k).export({ format: "der", type: "spki" }).toString("hex")).sort();
    assert.deepEqual(spkis, [Buffer.from(ec.spki).toString("hex"), Buffer.from(rsa.spki).toString("hex")].sort());
    assert.match(run("openssl", ["pkcs12", "-in", path, "-nodes", "-passin", "pass:first123"], { stderr: true }), /friendlyName: ukey-renew 5a5a01/);

    const again = await backend.open(serial, "first123");
    assert.deepEqual((await again.listKeys()).map((k) => [k.id, k.label, k.algorithm]).sort(),
      [[ec.id, "ukey-renew pending order-9", "p256"], ["c0ffee", "second key", "rsa2048"]].sort());
    await again.relabel(ec.id, "relabelled");
    assert.deepEqual((await again.listCertificates()).map((c) => c.label), ["relabelled"]);
    await again.deleteObjects([ec.id, "abcdef"]);
    assert.deepEqual((await again.listKeys()).map((k) => k.id), ["c0ffee"]);
    assert.deepEqual(await again.listCertificates(), []);
    await rejectsWith(again.sign(ec.id, Buffer.from("x")), "TOKEN_KEY_NOT_FOUND");
    await again.close();
    assert.equal(opensslDump(path, "first123").keys.length, 1);
    await rejectsWith(createFileToken(path, "other123"), "REQUEST_INVALID");
  });

  test("a change to a legacy file rewrites it in AES with nothing lost", async () => {
    const f = files["rsa-legacy"]!;
    const backend = new Pkcs12Backend(f.path);
    const s = await backend.open(fileTokenSerial(f.path), f.password);
    const [key] = await s.listKeys();
    const [cert] = await s.listCertificates();
    await s.relabel(key!.id, "renewed label");
    await s.close();
    assert.match(info(f.path, f.password), /AES-256-CBC/);
    const dump = opensslDump(f.path, f.password);
    assert.equal(dump.keys.length, 1);
    assert.deepEqual(createPublicKey(dump.keys[0]!).export({ format: "der", type: "spki" }), Buffer.from(key!.spki));
    assert.deepEqual(new X509Certificate(dump.certs[0]!).raw, Buffer.from(cert!.der));
  });

  test("changes the password (re-encrypting the file), refusing weak PINs and a wrong old one", async () => {
    const path = join(tmp.dir, "pin-change.p12");
    const backend = await createFileToken(path, "oldpin12");
    const serial = fileTokenSerial(path);
    const s = await backend.open(serial, "oldpin12");
    await s.generateKeyPair("p256", "k");
    for (const weak of ["short", "with space1", "中文密码123", "pin-123456", ""]) await rejectsWith(s.changePin("oldpin12", weak), "PIN_TOO_WEAK");
    await rejectsWith(s.changePin("notthepin1", "newpin34"), "PFX_PASSWORD_INCORRECT");
    info(path, "oldpin12");
    await s.changePin("oldpin12", "newpin34");
    await s.close();
    await rejectsWith(backend.open(serial, "oldpin12"), "PFX_PASSWORD_INCORRECT");
    assert.equal(opensslDump(path, "newpin34").keys.length, 1);
    assert.ok(!existsSync(`${path}.bak`), "no backup with the old password is left");
  });

  test("initialises the file: an empty file protected by the new PIN", async () => {
    const path = join(tmp.dir, "init.p12");
    const backend = await createFileToken(path, "before12");
    const serial = fileTokenSerial(path);
    const s = await backend.open(serial, "before12");
    await s.generateKeyPair("p256", "old key");
    await s.close();
    const before = readFileSync(path);
    await rejectsWith(backend.initToken(serial, "", "12345"), "PIN_TOO_WEAK");
    assert.deepEqual(readFileSync(path), before);
    const token = await backend.initToken(serial, "ignored", "after123", "ignored label");
    assert.equal(token.serial, serial);
    assert.equal(token.label, "init.p12");
    const s2 = await backend.open(serial, "after123");
    assert.deepEqual(await s2.listKeys(), []);
    await s2.close();
    assert.deepEqual(opensslDump(path, "after123"), { keys: [], certs: [] });
    await rejectsWith(createFileToken(join(tmp.dir, "weak.p12"), "abc"), "PIN_TOO_WEAK");
    assert.ok(!existsSync(join(tmp.dir, "weak.p12")));
  });

  test("the default file token lives under the agent's home", () => {
    assert.equal(agentHome({ UKEY_AGENT_HOME: "/srv/agent" }), "/srv/agent");
    assert.match(agentHome({}), /\.ukey$/);
    assert.equal(defaultFileTokenPath("/srv/agent"), "/srv/agent/file-token.p12");
    assert.equal(fileTokenSerial("/srv/agent/file-token.p12"), fileTokenSerial("/srv/agent/../agent/file-token.p12"));
    assert.match(fileTokenSerial("/a.p12"), /^[0-9a-f]{16}$/);
    assert.notEqual(fileTokenSerial("/a.p12"), fileTokenSerial("/b.p12"));
  });

  test("an interrupted write leaves the previous file readable, with no temporary file or backup behind", async () => {
    const path = join(tmp.dir, "atomic.p12");
    await createFileToken(path, "atomic12");
    const original = readFileSync(path);
    for (const fault of ["afterTempWrite", "beforeRename"] as const) {
      assert.throws(() => writeFileAtomic(path, Buffer.from("new bytes"), { [fault]: () => { throw new Error("crash"); } }),
        (e: unknown) => isUkeyError(e, "PFX_CREATION_FAILED"));
      assert.deepEqual(readFileSync(path), original, fault);
      assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes("atomic")), ["atomic.p12"], fault);
    }
    // Temporary files of a killed writer are removed by the next write; those of a live one are left to it.
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const deadTmp = join(tmp.dir, `.atomic.p12.${dead}.0123456789ab.tmp`);
    const liveTmp = join(tmp.dir, `.atomic.p12.${process.ppid}.0123456789ab.tmp`);
    writeFileSync(deadTmp, "half a file");
    writeFileSync(liveTmp, "being written");
    writeFileAtomic(path, original);
    assert.ok(!existsSync(deadTmp));
    assert.ok(existsSync(liveTmp));
    rmSync(liveTmp);
    // A write cut off after the backup was kept and before the new file was in place leaves only the .bak: it is read.
    renameSync(path, `${path}.bak`);
    const backend = new Pkcs12Backend(path);
    assert.equal((await backend.listTokens()).length, 1);
    await (await backend.open(fileTokenSerial(path), "atomic12")).close();
  });

  test("a writer killed at any moment leaves a file that opens with the old or the new password", async () => {
    const path = join(tmp.dir, "killed.p12");
    const backend = await createFileToken(path, "pinAAA11");
    const s = await backend.open(fileTokenSerial(path), "pinAAA11");
    const key = await s.generateKeyPair("p256", "survivor");
    await s.close();
    const writer = resolve(import.meta.dirname, "support/pkcs12-writer.ts");
    for (const lines of [1, 3, 6]) {
      const child = spawn(process.execPath, ["--import", "tsx", writer, path, "pinAAA11", "pinBBB22"], { stdio: ["ignore", "pipe", "inherit"] });
      let seen = 0;
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_code, signal) => r(signal)));
      await new Promise<void>((r) => {
        child.stdout.on("data", (d: Buffer) => {
          seen += d.toString().split("\n").filter(Boolean).length;
          if (seen >= lines) r();
        });
        child.on("exit", () => r());
      });
      // Killed in the middle of its next writes, wherever that is.
      child.kill("SIGKILL");
      assert.equal(await exited, "SIGKILL", "the writer was killed, not finished");
      let opened = false;
      for (const pin of ["pinAAA11", "pinBBB22"]) {
        try {
          const k = await backend.open(fileTokenSerial(path), pin);
          assert.deepEqual((await k.listKeys()).map((x) => x.id), [key.id]);
          // Leave it with the first password for the next writer.
          if (pin === "pinBBB22") await k.changePin("pinBBB22", "pinAAA11");
          await k.close();
          opened = true;
          break;
        } catch (e) {
          if (!isUkeyError(e, "PFX_PASSWORD_INCORRECT")) throw e;
        }
      }
      assert.ok(opened, `killed after ${seen * 20} writes or more: the file opens with one of the passwords`);
    }
    // The next write clears what the killed writers left behind.
    const k = await backend.open(fileTokenSerial(path), "pinAAA11");
    await k.relabel(key.id, "after the kills");
    await k.close();
    assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes("killed.p12")), ["killed.p12"]);
  });

  test("overlapping changes in one session are applied one after another, and a second open waits", async () => {
    const path = join(tmp.dir, "overlap.p12");
    const backend = await createFileToken(path, "overlap1");
    const serial = fileTokenSerial(path);
    const s = await backend.open(serial, "overlap1");
    const keys = await Promise.all([
      s.generateKeyPair("p256", "a"), s.generateKeyPair("p256", "b"), s.generateKeyPair("p384", "c"), s.generateKeyPair("p256", "d"),
    ]);
    const order: string[] = [];
    const second = backend.open(serial, "overlap1").then((x) => { order.push("second opened"); return x; });
    await new Promise((r) => setImmediate(r));
    order.push("first closing");
    await s.close();
    const s2 = await second;
    assert.deepEqual(order, ["first closing", "second opened"]);
    assert.deepEqual((await s2.listKeys()).map((k) => k.id).sort(), keys.map((k) => k.id).sort(), "no change was lost");
    await s2.close();
    await rejectsWith(s2.listKeys(), "TOKEN_OPERATION_FAILED");
  });
});
