import { mkdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { FastifyInstance } from "fastify";
import { normaliseSerial, derToPem } from "@ukey/ca";
import { UkeyError, isPairProfile, isUkeyError, keyAlgorithms, systemClock, type Clock, type KeyAlgorithm } from "@ukey/policy";
import { prepareEncryptionKey } from "./renewal/renewal-order-service.js";
import { buildApp } from "./app.js";
import { initDataDir } from "./data-dir-init.js";
import { formatCertId } from "./cert-id.js";
import { hashIdNumber, maskIdNumber } from "./holder-identity.js";
import { absolutePathArgs, askRunningServer, dataDirArg, forwardedCommands, listenControlChannel, sameDirectory, type ControlChannel } from "./control-channel.js";
import { openServerContext, databaseUrlFrom, type ServerContext, type ServerEnv } from "./server-context.js";
import { openStore, type Store } from "@ukey/store";
import { loadServerConfig, readSecretFile } from "./server-config.js";
import { createBackup, readBackupPassphrase, restoreBackup, type BackupSource } from "./backup/backup-service.js";
import { issuingCaBinding } from "./ca-runtime.js";
import { dataDirLayout } from "./data-dir.js";
import { schemaGuardFor } from "./schema-guard.js";
import { reloadServerConfig, type ReloadResult } from "./config-reload.js";

// Replaced by scripts/build.mjs (esbuild define) in a built bundle; undefined when running the sources.
declare const __UKEY_BUILD_INFO__: { version: string; build: string } | undefined;

/** The version of this build (the agent's and the server's are released together). */
function builtVersion(): string {
  if (typeof __UKEY_BUILD_INFO__ !== "undefined") return __UKEY_BUILD_INFO__.version;
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "0.0.0";
  }
}

/** Where a CLI run writes; tests pass buffers. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: ServerEnv & Record<string, string | undefined>;
  clock: Clock;
  /** Set when a running server runs the command for the CLI (its control socket): the commands use its context. */
  context?: ServerContext;
  /** Where relative paths are resolved (default the process's working directory). */
  cwd?: string;
}

/**
 * The context a command works with: the running server's when it runs the
 * command (never closed here), else the data directory opened for this
 * command alone (its close releases it).
 * @throws UkeyError DATA_DIR_LOCKED when the command names another data directory than the server's; what openServerContext throws.
 */
async function openContext(io: CliIo, dataDir: string, env: ServerEnv): Promise<ServerContext> {
  if (!io.context) return openServerContext(dataDir, env, io.clock);
  if (!sameDirectory(dataDir, io.context.layout.dir)) {
    throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: dataDir }, detail: `the server on ${io.context.layout.dir} answered for another data directory` });
  }
  return { ...io.context, close: async () => undefined };
}

/** The backup passphrase file: --backup-passphrase-file, else UKEY_BACKUP_PASSPHRASE_FILE. @throws UkeyError SECRET_FILE_REQUIRED. */
function backupPassphraseFile(io: CliIo, v: Record<string, unknown>): string {
  const f = (v["backup-passphrase-file"] as string | undefined) ?? io.env.UKEY_BACKUP_PASSPHRASE_FILE;
  if (!f) throw new UkeyError("SECRET_FILE_REQUIRED", { params: { variable: "UKEY_BACKUP_PASSPHRASE_FILE" } });
  return f;
}

/**
 * A stopped server's data directory, opened for a backup: its config and its
 * database only (no CA key is loaded, so no CA passphrase is needed).
 * @throws UkeyError CA_NOT_INITIALISED, CONFIG_INVALID, BACKUP_ENGINE_UNSUPPORTED (PostgreSQL), and what openStore throws.
 */
async function openBackupSource(dataDir: string, env: ServerEnv, clock: Clock): Promise<BackupSource & { store: Store }> {
  const layout = dataDirLayout(dataDir);
  let config;
  try {
    config = loadServerConfig(layout.config);
  } catch (e) {
    if (e instanceof UkeyError && e.code === "FILE_UNREADABLE") throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: dataDir }, cause: e });
    throw e;
  }
  if (databaseUrlFrom(env)) throw new UkeyError("BACKUP_ENGINE_UNSUPPORTED");
  const store = await openStore({ dataDir, ca: issuingCaBinding(layout), clock });
  return { layout, store, clock, downloadsDir: config.downloads.dir };
}

const usage = `ukey-server: the ukey-renew server and its operator commands

  ukey-server init   --data-dir DIR [--algorithm p256|p384|rsa2048|rsa3072|sm2] [--public-url URL]
                     [--org NAME] [--country CC] [--passphrase-file F]
                     [--hsm-module PATH --hsm-token LABEL|SERIAL [--hsm-pin-file F] [--hsm-label-prefix P]]
                     [--offline-root --issuing-csr-out FILE]   (the issuing key and its CSR only: the root stays offline)
  ukey-server ca import --data-dir DIR --issuing-cert FILE --root-cert FILE --root-crl FILE   (the ceremony's certificates)
  ukey-server ca import-root-crl --data-dir DIR --root-crl FILE   (the offline root's next CRL; also while the server runs)
  ukey-server start  --data-dir DIR [--port N] [--tls-port N] [--client-cert-port N] [--host ADDR]
  ukey-server holder add --data-dir DIR --id ID --name NAME --id-type TYPE --id-number-file F
                     [--kind person|organisation] [--phone P] [--email E] [--organisation ID]
  ukey-server issue  --data-dir DIR --holder ID --profile P --csr FILE [--out FILE] [--token-serial S]
                     [--encryption-out FILE] [--envelope-out FILE]   (a pair profile: the encryption certificate, the GM/T 0016 envelope)
  ukey-server import --data-dir DIR --certs PATH --holders FILE [--chain FILE ...] [--profile P]
  ukey-server revoke --data-dir DIR --serial S --reason R
  ukey-server hold   --data-dir DIR --serial S [--lift]
  ukey-server audit verify --data-dir DIR
  ukey-server backup --data-dir DIR --out FILE [--backup-passphrase-file F]
  ukey-server reload --data-dir DIR   (a running server takes over config.json's profiles and delivery)
  ukey-server restore --data-dir DIR --in FILE [--backup-passphrase-file F]
  ukey-server kmc init --data-dir DIR [--kmc-passphrase-file F]
  ukey-server downloads publish --data-dir DIR [--file INSTALLER ...] [--agent-version V]
  ukey-server enrol  --data-dir DIR --holder ID --profile P [--ttl-days N] [--max-attempts N]
  ukey-server operator add --data-dir DIR --id ID --role admin|operator|auditor --password-file F [--cert-spki-sha256 HEX]

Every command takes --json. Secrets come from files: UKEY_CA_PASSPHRASE_FILE (or --passphrase-file),
UKEY_HSM_PIN_FILE (or --hsm-pin-file), UKEY_KMC_PASSPHRASE_FILE (or --kmc-passphrase-file),
UKEY_BACKUP_PASSPHRASE_FILE (or --backup-passphrase-file);
UKEY_DATABASE_URL selects PostgreSQL.`;

/** The usage lines of one command (with their continuation lines), or the whole usage for an unknown one. */
export function commandUsage(cmd: string): string {
  const lines = usage.split("\n");
  const out: string[] = [];
  let inCmd = false;
  for (const l of lines) {
    if (/^ {2}ukey-server /.test(l)) inCmd = l.startsWith(`  ukey-server ${cmd} `);
    else if (!/^ {20,}/.test(l)) inCmd = false;
    if (inCmd) out.push(l);
  }
  // The closing paragraph (--json, where secrets come from) belongs to every command's help.
  return out.length ? `${out.join("\n")}\n\n${lines.slice(lines.lastIndexOf("") + 1).join("\n")}` : usage;
}

const common = {
  "data-dir": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean" },
  "passphrase-file": { type: "string" },
  "hsm-pin-file": { type: "string" },
} as const;

function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals: false, strict: true }).values;
  } catch (cause) {
    throw new UkeyError("CLI_USAGE", { params: { reason: (cause as Error).message }, cause });
  }
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UkeyError("CLI_USAGE", { params: { reason: `--${name} is required` } });
  return v;
}

function envWithSecretFlags(io: CliIo, values: Record<string, unknown>): ServerEnv {
  return {
    ...io.env,
    UKEY_CA_PASSPHRASE_FILE: (values["passphrase-file"] as string | undefined) ?? io.env.UKEY_CA_PASSPHRASE_FILE,
    UKEY_HSM_PIN_FILE: (values["hsm-pin-file"] as string | undefined) ?? io.env.UKEY_HSM_PIN_FILE,
  };
}

function readInput(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
}

/**
 * Runs one ukey-server command. Returns the exit code: 0 done, 1 refused
 * or failed (a catalogue error was printed), 2 wrong usage. `start`
 * resolves only when the server stops.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const json = argv.includes("--json");
  const print = (human: string, data: unknown) => io.out(json ? JSON.stringify(data) + "\n" : human + "\n");
  try {
    const [cmd, ...rest] = argv;
    if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
      io.out(usage + "\n");
      return cmd ? 0 : 2;
    }
    // `ukey-server holder add --help`: that command's usage (every command's lines when it has none of its own), before anything is required.
    if (rest.includes("--help") || rest.includes("-h")) {
      io.out(commandUsage(cmd) + "\n");
      return 0;
    }
    if (io.context && !forwardedCommands.has(cmd)) {
      // init, start and kmc init create or replace keys and need the data directory to themselves.
      throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: io.context.layout.dir }, detail: `${cmd} cannot run while the server runs` });
    }
    // A command sent to an older server left running after a newer one migrated the database is refused like its requests.
    if (io.context) await schemaGuardFor(io.context).check();
    if (!io.context && cmd === "kmc") {
      // Refused before any secret is read: the running server would not load a new master key until restarted.
      const dataDir = dataDirArg(rest);
      if (dataDir && await askRunningServer(dataDir, ["--ping"])) {
        throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: dataDir }, detail: "kmc init cannot run while the server runs" });
      }
    }
    if (!io.context && forwardedCommands.has(cmd)) {
      // A server running on this data directory runs the command itself (docs/operator-cli.md, "While the server runs").
      const dataDir = dataDirArg(rest);
      // The server has none of this shell's environment: a secret file named there travels as its flag.
      const withSecret = cmd === "backup" && !argv.some((a) => a === "--backup-passphrase-file" || a.startsWith("--backup-passphrase-file=")) && io.env.UKEY_BACKUP_PASSPHRASE_FILE
        ? [...argv, "--backup-passphrase-file", io.env.UKEY_BACKUP_PASSPHRASE_FILE] : argv;
      const reply = dataDir ? await askRunningServer(dataDir, absolutePathArgs(withSecret, io.cwd ?? process.cwd())) : undefined;
      if (reply) {
        io.out(reply.out);
        io.err(reply.err);
        return reply.code;
      }
    }
    switch (cmd) {
      case "init": {
        const v = parse(rest, {
          algorithm: { type: "string" }, "public-url": { type: "string" }, org: { type: "string" }, country: { type: "string" },
          "hsm-module": { type: "string" }, "hsm-token": { type: "string" }, "hsm-label-prefix": { type: "string" },
          "offline-root": { type: "boolean" }, "issuing-csr-out": { type: "string" },
        });
        if (Boolean(v["offline-root"]) !== (v["issuing-csr-out"] !== undefined)) {
          throw new UkeyError("CLI_USAGE", { params: { reason: "--offline-root and --issuing-csr-out FILE go together" } });
        }
        const csrOut = v["issuing-csr-out"] === undefined ? undefined : resolve(io.cwd ?? process.cwd(), v["issuing-csr-out"]);
        const dataDir = required(v, "data-dir");
        const algorithm = (v.algorithm ?? "p256") as KeyAlgorithm;
        if (!keyAlgorithms.includes(algorithm) || algorithm === "rsa4096") {
          throw new UkeyError("CLI_USAGE", { params: { reason: `--algorithm must be one of p256, p384, rsa2048, rsa3072, sm2 (got ${algorithm})` } });
        }
        if (algorithm === "sm2" && v["hsm-module"] !== undefined) {
          // Standard PKCS#11 has no SM2 mechanism (docs/hsm.md); checked before anything is written.
          throw new UkeyError("CLI_USAGE", { params: { reason: "--algorithm sm2 keeps the CA keys in the encrypted key file; it cannot be used with --hsm-module" } });
        }
        const env = envWithSecretFlags(io, v);
        const hsm = v["hsm-module"] !== undefined;
        if (hsm && !v["hsm-token"]) throw new UkeyError("CLI_USAGE", { params: { reason: "--hsm-token is required with --hsm-module" } });
        const secrets = hsm
          ? { hsmPin: readSecretFile("UKEY_HSM_PIN_FILE", env.UKEY_HSM_PIN_FILE) }
          : { passphrase: readSecretFile("UKEY_CA_PASSPHRASE_FILE", env.UKEY_CA_PASSPHRASE_FILE) };
        if (secrets.passphrase !== undefined && secrets.passphrase.length < 12) {
          throw new UkeyError("CONFIG_INVALID", { params: { reason: "the CA passphrase must be at least 12 characters" } });
        }
        const databaseUrl = databaseUrlFrom(env);
        const r = await initDataDir({
          dataDir, algorithm, secrets, clock: io.clock, actor: "cli",
          ...(v["public-url"] ? { publicUrl: v["public-url"] } : {}),
          institution: { ...(v.org ? { name: v.org } : {}), ...(v.country ? { country: v.country } : {}) },
          ...(hsm ? { pkcs11: { module: v["hsm-module"]!, token: v["hsm-token"]!, ...(v["hsm-label-prefix"] ? { labelPrefix: v["hsm-label-prefix"] } : {}) } } : {}),
          ...(databaseUrl ? { databaseUrl } : {}),
          ...(csrOut ? { offlineRoot: { csrOut } } : {}),
        });
        if (r.rootSubject === null) {
          print(`initialised ${dataDir}, waiting for its issuing CA certificate from the offline root\n  issuing CA request: ${r.csrOut} (also ca/issuing.csr.pem)\n  subject:    ${r.issuingSubject}\n  algorithm:  ${algorithm}\n  key store:  ${r.config.ca.keyStore.type}\n  Take the request to the root's key ceremony, then run ukey-server ca import (docs/deployment.md).`,
            { dataDir, root: null, issuing: r.issuingSubject, issuingCsr: r.csrOut, algorithm, keyStore: r.config.ca.keyStore.type, awaiting: "issuing-certificate" });
          return 0;
        }
        print(`initialised ${dataDir}\n  root CA:    ${r.rootSubject}\n  issuing CA: ${r.issuingSubject}\n  algorithm:  ${algorithm}\n  key store:  ${r.config.ca.keyStore.type}`,
          { dataDir, root: r.rootSubject, issuing: r.issuingSubject, algorithm, keyStore: r.config.ca.keyStore.type });
        return 0;
      }
      case "ca": {
        const [sub, ...more] = rest;
        if (sub === "import") {
          const v = parse(more, { "issuing-cert": { type: "string" }, "root-cert": { type: "string" }, "root-crl": { type: "string" } });
          const dataDir = required(v, "data-dir");
          // A server that answers has its issuing certificate already: nothing to import.
          if (io.context) throw new UkeyError("CA_IMPORT_NOT_AWAITED", { params: { dir: dataDir, reason: "a server is running on it with its issuing CA certificate" } });
          const cwd = io.cwd ?? process.cwd();
          const files = {
            issuingCert: readInput(resolve(cwd, required(v, "issuing-cert"))), rootCert: readInput(resolve(cwd, required(v, "root-cert"))),
            rootCrl: readInput(resolve(cwd, required(v, "root-crl"))),
          };
          const env = envWithSecretFlags(io, v);
          const databaseUrl = databaseUrlFrom(env);
          const { importIssuingCertificate } = await import("./offline-root/issuing-import.js");
          const r = await importIssuingCertificate({
            dataDir, files, clock: io.clock, actor: "cli", ...(databaseUrl ? { databaseUrl } : {}),
            secrets: (type) => type === "file" ? { passphrase: readSecretFile("UKEY_CA_PASSPHRASE_FILE", env.UKEY_CA_PASSPHRASE_FILE) } : { hsmPin: readSecretFile("UKEY_HSM_PIN_FILE", env.UKEY_HSM_PIN_FILE) },
          });
          print(`issuing CA certificate imported into ${dataDir}\n  root CA:    ${r.root}\n  issuing CA: ${r.issuing} (serial ${r.issuingSerial}, until ${r.issuingNotAfter})\n  root CRL:   number ${r.rootCrlNumber}, next update ${r.rootCrlNextUpdate}: sign and import the next one before then\n  ukey-server start can now serve.`,
            { dataDir, ...r });
          return 0;
        }
        if (sub === "import-root-crl") {
          const v = parse(more, { "root-crl": { type: "string" } });
          const input = readInput(resolve(io.cwd ?? process.cwd(), required(v, "root-crl")));
          const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
          try {
            const { importRootCrl } = await import("./offline-root/root-crl-import.js");
            const r = await importRootCrl(ctx, input, "cli");
            print(`root CRL replaced: number ${r.number} (was ${r.previousNumber}), next update ${r.nextUpdate}${io.context ? "; the running server serves it now" : ""}`, r);
          } finally {
            await ctx.close();
          }
          return 0;
        }
        throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server ca import ... or ukey-server ca import-root-crl ..." } });
      }
      case "reload": {
        const v = parse(rest, {});
        const dataDir = required(v, "data-dir");
        // Only a running server can reload: the command reached here without one when none answers on the data directory.
        if (!io.context) throw new UkeyError("SERVER_NOT_RUNNING", { params: { dir: dataDir } });
        if (!sameDirectory(dataDir, io.context.layout.dir)) {
          throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: dataDir }, detail: `the server on ${io.context.layout.dir} answered for another data directory` });
        }
        const r = await reloadServerConfig(io.context, "cli");
        print(reloadSummary(r), { reloaded: true, ...r });
        return 0;
      }
      case "start": {
        const v = parse(rest, { port: { type: "string" }, "tls-port": { type: "string" }, "client-cert-port": { type: "string" }, host: { type: "string" } });
        return await startServer(required(v, "data-dir"), v, envWithSecretFlags(io, v), io, print);
      }
      case "holder": {
        const [sub, ...more] = rest;
        if (sub !== "add") throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server holder add ..." } });
        const v = parse(more, {
          id: { type: "string" }, name: { type: "string" }, "id-type": { type: "string" }, "id-number-file": { type: "string" },
          kind: { type: "string" }, phone: { type: "string" }, email: { type: "string" }, organisation: { type: "string" },
        });
        const kind = v.kind ?? "person";
        if (kind !== "person" && kind !== "organisation") throw new UkeyError("CLI_USAGE", { params: { reason: "--kind must be person or organisation" } });
        const idNumber = readInput(required(v, "id-number-file")).toString("utf8").trim();
        if (!/^[0-9A-Za-z-]{4,40}$/.test(idNumber)) throw new UkeyError("CLI_USAGE", { params: { reason: "the ID number file must hold 4-40 letters or digits" } });
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const at = io.clock.now().getTime();
          const idType = required(v, "id-type");
          const holder = {
            id: required(v, "id"), kind: kind as "person" | "organisation", name: required(v, "name"), idType,
            idHash: hashIdNumber(ctx.idKey, idType, idNumber), idMasked: maskIdNumber(idNumber),
            phone: v.phone ?? null, email: v.email ?? null, organisationId: v.organisation ?? null, createdAt: at,
          };
          await ctx.store.transaction(async (r) => {
            await r.holders.insert(holder);
            await r.audit.append({ at, actor: "cli", action: "holder.created", subjectType: "holder", subjectId: holder.id, data: { kind, idMasked: holder.idMasked } });
          });
          print(`holder ${holder.id} added (${holder.name}, ${holder.idMasked})`, { holder: { ...holder, idHash: undefined } });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "issue": {
        const v = parse(rest, {
          holder: { type: "string" }, profile: { type: "string" }, csr: { type: "string" }, out: { type: "string" }, "token-serial": { type: "string" },
          "encryption-out": { type: "string" }, "envelope-out": { type: "string" },
        });
        const csr = readInput(required(v, "csr"));
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const holderId = required(v, "holder");
          const profile = await ctx.store.profiles.get(required(v, "profile"));
          let pair: { pem: string; serial: string; envelope: string; envelopeFormat: string } | undefined;
          const req = { holderId, profileId: required(v, "profile"), actor: "cli", tokenSerial: v["token-serial"] ?? null, auditData: { channel: "counter" } };
          let c;
          if (profile && isPairProfile(profile.profile)) {
            // A pair at the counter: as a download does it (the escrow commits with the intents).
            const verified = ctx.ca.verifyCsr(csr);
            const prepared = await prepareEncryptionKey(ctx.kmc?.kmc, profile.profile, verified, holderId, "cli");
            const kmc = ctx.kmc!.kmc;
            const issued = await ctx.issuance.issuePair({
              ...req, csr: verified, encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
              onIntent: async (r) => { await kmc.recordIn(r, prepared, io.clock.now().getTime()); return undefined; },
            });
            c = issued.signing;
            pair = { pem: derToPem(issued.encryption.der!, "CERTIFICATE"), serial: issued.encryption.serial, envelope: prepared.envelope.toString("base64"), envelopeFormat: prepared.envelopeFormat };
            if (v["encryption-out"]) (await import("node:fs")).writeFileSync(v["encryption-out"], pair.pem);
            if (v["envelope-out"]) (await import("node:fs")).writeFileSync(v["envelope-out"], prepared.envelope);
          } else {
            c = await ctx.issuance.issue({ ...req, csr });
          }
          const pem = derToPem(c.der!, "CERTIFICATE");
          if (v.out) (await import("node:fs")).writeFileSync(v.out, pem);
          const certId = formatCertId(c.issuerKeyId, c.serial);
          print(`issued ${c.serial}\n  subject:  ${c.subjectDn}\n  valid:    ${new Date(c.notBefore).toISOString()} .. ${new Date(c.notAfter).toISOString()}\n  certID:   ${certId}${v.out ? `\n  written:  ${v.out}` : "\n" + pem.trimEnd()}`,
            {
              serial: c.serial, certId, subject: c.subjectDn, notBefore: new Date(c.notBefore).toISOString(), notAfter: new Date(c.notAfter).toISOString(), pem,
              ...(pair ? { encryptionCertificate: { serial: pair.serial, pem: pair.pem }, envelope: { format: pair.envelopeFormat, value: pair.envelope } } : {}),
            });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "import": {
        const v = parse(rest, { certs: { type: "string" }, holders: { type: "string" }, chain: { type: "string", multiple: true }, profile: { type: "string" } });
        const certificates = required(v, "certs");
        const holders = required(v, "holders");
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const { importCertificates } = await import("./import-service.js");
          const r = await importCertificates(
            { store: ctx.store, idKey: ctx.idKey, ownIssuers: [ctx.ca.root, ctx.ca.issuing].map((i) => ({ keyId: i.keyId.toString("hex"), der: i.der })) },
            { certificates, holders, chain: v.chain ?? [], defaultProfile: v.profile ?? "personal", actor: "cli", now: io.clock.now() },
          );
          print(`imported ${r.holders} holders, ${r.certificates} certificates, ${r.issuers} issuers (${r.skippedExisting} already present)`, r);
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "downloads": {
        const [sub, ...more] = rest;
        if (sub !== "publish") throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server downloads publish ..." } });
        const v = parse(more, { file: { type: "string", multiple: true }, "agent-version": { type: "string" } });
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const { publishDownloads } = await import("./distribution/distribution-publisher.js");
          const r = await publishDownloads(ctx, { from: v.file ?? [], version: v["agent-version"] ?? builtVersion(), actor: "cli" });
          print(`published ${r.dir}\n  server:  ${r.config.server}\n  origins: ${[r.config.server, ...r.config.origins].join(", ")}\n  key:     ${r.keyId}\n`
            + r.manifest.files.map((f) => `  ${f.name}  ${f.platform}  ${f.size} bytes  sha256 ${f.sha256}`).join("\n"),
          { dir: r.dir, keyId: r.keyId, config: r.config, manifest: r.manifest });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "revoke": {
        const v = parse(rest, { serial: { type: "string" }, reason: { type: "string" } });
        const serial = normaliseSerial(required(v, "serial"));
        const reason = required(v, "reason");
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const c = await ctx.revocation.revoke(serial, reason, "cli");
          print(`revoked ${c.serial} (${reason}) at ${new Date(c.revokedAt!).toISOString()}`, { serial: c.serial, reason, revokedAt: new Date(c.revokedAt!).toISOString() });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "hold": {
        const v = parse(rest, { serial: { type: "string" }, lift: { type: "boolean" } });
        const serial = normaliseSerial(required(v, "serial"));
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          if (v.lift) {
            const c = await ctx.revocation.releaseHold(serial, "cli");
            print(`hold on ${c.serial} lifted: active again (OCSP good; the next CRL leaves it out)`, { serial: c.serial, status: c.status });
          } else {
            const c = await ctx.revocation.revoke(serial, "certificateHold", "cli");
            print(`${c.serial} put on hold at ${new Date(c.revokedAt!).toISOString()} (lift with --lift)`, { serial: c.serial, status: c.status, reason: "certificateHold", heldAt: new Date(c.revokedAt!).toISOString() });
          }
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "enrol": {
        const v = parse(rest, { holder: { type: "string" }, profile: { type: "string" }, "ttl-days": { type: "string" }, "max-attempts": { type: "string" } });
        const ttlDays = v["ttl-days"] === undefined ? undefined : Number(v["ttl-days"]);
        const maxAttempts = v["max-attempts"] === undefined ? undefined : Number(v["max-attempts"]);
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const { enrolmentServiceFor } = await import("./enrolment-service.js");
          const r = await enrolmentServiceFor(ctx).create({
            holderId: required(v, "holder"), profileId: required(v, "profile"), actor: "cli",
            ...(ttlDays !== undefined ? { ttlDays } : {}), ...(maxAttempts !== undefined ? { maxAttempts } : {}),
          });
          const expires = new Date(r.enrolment.expiresAt).toISOString();
          const hint = "Deliver the two separately and out of band (e.g. reference number by SMS, code on paper or by phone call); the code is shown only now.";
          print(`enrolment ${r.enrolment.id} for ${r.enrolment.holderId} (${r.enrolment.profileId})\n  reference number:   ${r.referenceNumber}\n  authorization code: ${r.authorizationCode}\n  expires:            ${expires} (${r.enrolment.maxAttempts} attempts)\n  ${hint}\n  参考号与授权码请分开、通过不同渠道交给持有人；授权码只显示这一次。`,
            { enrolment: r.enrolment, referenceNumber: r.referenceNumber, authorizationCode: r.authorizationCode, expiresAt: expires, hint });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "operator": {
        const [sub, ...more] = rest;
        if (sub !== "add") throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server operator add ..." } });
        const v = parse(more, { id: { type: "string" }, role: { type: "string" }, "password-file": { type: "string" }, "cert-spki-sha256": { type: "string" } });
        const role = required(v, "role");
        if (!["admin", "operator", "auditor"].includes(role)) throw new UkeyError("CLI_USAGE", { params: { reason: "--role must be admin, operator or auditor" } });
        const password = readInput(required(v, "password-file")).toString("utf8").replace(/\r?\n$/, "");
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const { operatorServiceFor } = await import("./admin/operator-service.js");
          const r = await operatorServiceFor(ctx).create({
            id: required(v, "id"), role: role as "admin" | "operator" | "auditor", password, actor: "cli", certSpkiSha256: v["cert-spki-sha256"] ?? null,
          });
          print(`operator ${r.operator.id} added (${r.operator.role})\n  TOTP secret: ${r.totpSecret}\n  TOTP URI:    ${r.totpUri}\n  Add it to the operator's authenticator app now (scan the URI as a QR code): it is shown only this once.`,
            { operator: r.operator, totpSecret: r.totpSecret, totpUri: r.totpUri });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      case "audit": {
        const [sub, ...more] = rest;
        if (sub !== "verify") throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server audit verify --data-dir DIR" } });
        const v = parse(more, {});
        const ctx = await openContext(io, required(v, "data-dir"), envWithSecretFlags(io, v));
        try {
          const r = await ctx.store.audit.verify();
          if (r.ok) {
            print(`audit log intact: ${r.entries} entries, head ${r.head}`, r);
            return 0;
          }
          throw new UkeyError("AUDIT_CHAIN_BROKEN", { params: { seq: r.firstBadSeq, reason: r.reason } });
        } finally {
          await ctx.close();
        }
      }
      case "backup": {
        const v = parse(rest, { out: { type: "string" }, "backup-passphrase-file": { type: "string" } });
        const out = resolve(io.cwd ?? process.cwd(), required(v, "out"));
        const passphrase = readBackupPassphrase(backupPassphraseFile(io, v));
        const dataDir = required(v, "data-dir");
        const source = io.context
          ? { layout: io.context.layout, store: io.context.store, clock: io.clock, downloadsDir: io.context.config.downloads.dir }
          : await openBackupSource(dataDir, envWithSecretFlags(io, v), io.clock);
        if (io.context && !sameDirectory(dataDir, io.context.layout.dir)) {
          throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: dataDir }, detail: `the server on ${io.context.layout.dir} answered for another data directory` });
        }
        try {
          const r = await createBackup(source, out, passphrase, builtVersion(), "cli");
          print(`backup written: ${r.file} (${r.bytes} bytes)
  taken:        ${r.createdAt}
  certificates: ${r.database.certificates}
  audit log:    ${r.database.auditSeq} entries, head ${r.database.auditHead}
  files:        ${r.files}
  time:         ${r.totalMs} ms (database copy ${r.copyMs} ms)
  Keep the passphrase apart from the backup, and the CA passphrase apart from both.`, r);
        } finally {
          if (!io.context) await source.store.close();
        }
        return 0;
      }
      case "restore": {
        const v = parse(rest, { in: { type: "string" }, "backup-passphrase-file": { type: "string" } });
        const dataDir = resolve(io.cwd ?? process.cwd(), required(v, "data-dir"));
        const file = resolve(io.cwd ?? process.cwd(), required(v, "in"));
        const passphrase = readBackupPassphrase(backupPassphraseFile(io, v));
        if (await askRunningServer(dataDir, ["--ping"]).catch(() => undefined)) {
          throw new UkeyError("DATA_DIR_LOCKED", { params: { dir: dataDir }, detail: "restore cannot run while a server runs on the data directory" });
        }
        const r = await restoreBackup(file, dataDir, passphrase, io.clock, "cli");
        print(`restored ${r.dataDir} from the backup taken ${r.backupCreatedAt}
  certificates: ${r.database.certificates}
  audit log:    ${r.database.auditSeq} entries, verified (the restore is entry ${r.database.auditSeq + 1})
  CRL numbers:  ${Object.entries(r.crlNumbers).map(([s, n]) => `${n} (${s.slice(0, 16)})`).join(", ") || "none signed yet"}, moved forward past any CRL signed after the backup
${r.replaced ? `  the directory that was there is kept in ${r.replaced}\n` : ""}  time:         ${r.totalMs} ms`, r);
        return 0;
      }
      case "kmc": {
        const [sub, ...more] = rest;
        if (sub !== "init") throw new UkeyError("CLI_USAGE", { params: { reason: "use: ukey-server kmc init --data-dir DIR" } });
        const v = parse(more, { "kmc-passphrase-file": { type: "string" } });
        const env = envWithSecretFlags(io, v);
        const kmcPassphrase = readSecretFile("UKEY_KMC_PASSPHRASE_FILE", v["kmc-passphrase-file"] ?? io.env.UKEY_KMC_PASSPHRASE_FILE);
        // Separation of duties: whoever holds the CA passphrase must not thereby read escrowed keys.
        if (env.UKEY_CA_PASSPHRASE_FILE && readSecretFile("UKEY_CA_PASSPHRASE_FILE", env.UKEY_CA_PASSPHRASE_FILE) === kmcPassphrase) {
          throw new UkeyError("CONFIG_INVALID", { params: { reason: "the KMC master key passphrase must not be the CA passphrase" } });
        }
        const dataDir = required(v, "data-dir");
        const ctx = await openServerContext(dataDir, env, io.clock, { kmc: false });
        try {
          const { createKmcMasterKeyFile } = await import("./kmc/kmc-master-key.js");
          mkdirSync(ctx.layout.kmcDir, { recursive: true, mode: 0o700 });
          const master = await createKmcMasterKeyFile(ctx.layout.kmcMasterKey, kmcPassphrase);
          await ctx.store.audit.append({
            at: io.clock.now().getTime(), actor: "cli", action: "kmc.initialised", subjectType: "kmc", subjectId: master.id,
            data: { masterKeyId: master.id },
          });
          print(`key management centre master key created
  file:   ${ctx.layout.kmcMasterKey}
  key id: ${master.id}
  Back up this file and its passphrase apart from the CA's: without both, escrowed encryption keys cannot be recovered.`,
            { path: ctx.layout.kmcMasterKey, masterKeyId: master.id });
        } finally {
          await ctx.close();
        }
        return 0;
      }
      default:
        throw new UkeyError("CLI_USAGE", { params: { reason: `unknown command ${cmd}` } });
    }
  } catch (e) {
    const u = isUkeyError(e) ? e : new UkeyError("INTERNAL", { cause: e });
    if (!isUkeyError(e)) io.err(`${(e as Error)?.stack ?? String(e)}\n`);
    const p = u.toProblem();
    if (json) io.out(JSON.stringify({ error: p }) + "\n");
    else io.err(`错误 ${p.code}：${p.message["zh-CN"]}\n  处理：${p.remedy["zh-CN"]}\nError ${p.code}: ${p.message.en}\n  Remedy: ${p.remedy.en}\n${p.detail ? `  Detail: ${p.detail}\n` : ""}`);
    return u.code === "CLI_USAGE" ? 2 : 1;
  }
}

/**
 * Serves until SIGINT or SIGTERM: plain HTTP, and HTTPS on the TLS port and
 * on the client-certificate port when given (flags over config.json). The
 * client-certificate listener opens first, so that the others can name its
 * port (0 picks a free one) in their refusals. Prints one "listening" line
 * (with --json an event whose ports tests read).
 */
async function startServer(dataDir: string, v: Record<string, unknown>, env: ServerEnv, io: CliIo, print: (h: string, d: unknown) => void): Promise<number> {
  const ctx = await openServerContext(dataDir, env, io.clock);
  const started: FastifyInstance[] = [];
  let control: ControlChannel | undefined;
  let hangup: (() => void) | undefined;
  try {
    const portOf = (flag: string, dflt: number | null): number | null => {
      const raw = v[flag];
      if (raw === undefined) return dflt;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UkeyError("CLI_USAGE", { params: { reason: `--${flag} must be a port number 0-65535` } });
      return n;
    };
    const host = (v.host as string | undefined) ?? ctx.config.listen.host;
    const port = portOf("port", ctx.config.listen.port)!;
    const tlsPort = portOf("tls-port", ctx.config.listen.tlsPort);
    const clientCertPort = portOf("client-cert-port", ctx.config.listen.clientCertPort);
    const tls = tlsPort !== null || clientCertPort !== null ? { key: readFileSync(ctx.layout.tlsKey), cert: readFileSync(ctx.layout.tlsCert) } : undefined;
    const open = async (opts: Parameters<typeof buildApp>[1], listenPort: number, beforeListening?: (app: FastifyInstance) => void): Promise<number> => {
      const app = await buildApp(ctx, { logger: true, ...opts });
      started.push(app);
      beforeListening?.(app);
      try {
        await app.listen({ host, port: listenPort });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EADDRINUSE") throw new UkeyError("PORT_IN_USE", { params: { port: listenPort, host }, cause: e });
        throw e;
      }
      const a = app.server.address();
      return a && typeof a === "object" ? a.port : listenPort;
    };
    const clientCert = clientCertPort === null ? null : await open({ https: tls!, clientCertificates: true }, clientCertPort);
    const http = await open({ clientCertPort: clientCert }, port, (app) => {
      for (const f of ctx.ca.keyFiles.notUpgraded) {
        app.log.warn({ keyFile: `ca/${f.name}.key.pem`, reason: f.reason }, "CA key file left under its earlier, weaker encryption: it could not be rewritten (make ca/ writable for one start)");
      }
    });
    const https = tlsPort === null ? null : await open({ https: tls!, clientCertPort: clientCert }, tlsPort);
    const urls = [`http://${host}:${http}`, ...(https === null ? [] : [`https://${host}:${https}`]),
      ...(clientCert === null ? [] : [`https://${host}:${clientCert} (client certificates)`])];
    control = await listenControlChannel(dataDir, async (argv) => {
      let out = "";
      let err = "";
      const code = await runCli(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, env: {}, clock: io.clock, context: ctx });
      return { code, out, err };
    }, (message) => started[0]?.log.warn(message));
    print(`ukey-server listening on ${urls.slice(0, -1).join(", ")}${urls.length > 1 ? " and " : ""}${urls.at(-1)} (data ${dataDir}, ${ctx.store.db.engine})`
      + (control ? `\n  operator commands (ukey-server holder add, revoke, ...) run through ${control.path}` : ""),
      { event: "listening", http, https, clientCert, engine: ctx.store.db.engine, control: control?.path ?? null });
    // SIGHUP: the same reload as `ukey-server reload`, its outcome in the log (docs/configuration.md, "Reloading").
    hangup = () => {
      const log = started[0]?.log;
      reloadServerConfig(ctx, "signal").then(
        (r) => log?.info({ event: "config.reloaded", ...r }, reloadSummary(r)),
        (e: unknown) => {
          const p = isUkeyError(e) ? e.toProblem() : undefined;
          log?.error({ event: "config.reload-refused", code: p?.code ?? "INTERNAL", reason: p?.message.en ?? String(e) }, "configuration not reloaded; the configuration in force is unchanged");
        },
      );
    };
    process.on("SIGHUP", hangup);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
  } finally {
    if (hangup) process.off("SIGHUP", hangup);
    await control?.close();
    for (const app of started.reverse()) await app.close();
    await ctx.close();
  }
  return 0;
}

/** One line saying what a reload changed. */
function reloadSummary(r: ReloadResult): string {
  return `configuration reloaded: profiles ${r.profiles.length ? `written: ${r.profiles.join(", ")}` : "unchanged"}; delivery ${r.delivery ? "channels rebuilt" : "unchanged"}`;
}

/** Entry point of the `ukey-server` bin. */
export async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2), {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    clock: systemClock,
  });
  process.exitCode = code;
}
