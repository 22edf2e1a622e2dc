import { join } from "node:path";
import { parseArgs } from "node:util";
import { UkeyError, describeError, describeErrorExample, formatPolicyDate, isUkeyError, lookupError, type ErrorCode, type ErrorProblem } from "@ukey/policy";
import type { KeyStoreBackend } from "./keys/key-store.js";
import { defaultAgentHome, readAgentConfig, readCaFile } from "./local-api/agent-config.js";
import { faultFromEnv } from "./flows/fault.js";
import type { DoctorCheck, FlowContext, ServerConnection, TokenStatus } from "./flows/flow-types.js";
import { TerminalPrompter, readSecretLine, type TerminalIo } from "./terminal-prompter.js";
import { buildInfo } from "./build-info.js";
import { checkForUpdate, loadInstitutionConfig, verifyDownloadedFile } from "./local-api/institution-config.js";

/** Where a `ukey` run reads and writes; the bin passes the process's, tests may pass others. */
export interface UkeyCliIo extends TerminalIo {
  out(text: string): void;
  env: Record<string, string | undefined>;
}

/** Exit codes, as the help text and docs/agent-cli.md document them. */
export const exitCodes = { ok: 0, other: 1, usage: 2, refused: 3, token: 4, server: 5 } as const;

const usage = `ukey: renew, download and manage the certificates on your UKey (or .pfx file)

  ukey status                         certificates on the key, their state, days left and renewal advice
  ukey renew [--cert SERIAL] [--yes]  show the certificate and the new one, confirm, renew (or finish an interrupted renewal)
  ukey download --ref R --code C      download a certificate with a reference number and authorization code
  ukey download --self-service --customer N [--cert SERIAL]
                                      after initialising the key: download your valid certificate again
                                      with your ID number and a text message code (if your institution offers it)
  ukey init [--label L]               initialise the key (erases it; SO PIN, then a new PIN twice)
  ukey pin change                     change the PIN
  ukey clean-up                       remove expired and superseded certificates and orphan keys
  ukey explain CODE                   what an error code means (ours, or a legacy one: 0116, 9002, 403.7 ...)
  ukey doctor                         check the driver, key, PIN, server, trust, clock and pairings
  ukey agent start|pairings|unpair    the local service for your institution's web page (ukey agent --help)
  ukey update [--verify FILE]         is a newer agent published? (the institution's signed manifest);
                                      --verify: is FILE exactly an installer the institution published?
  ukey --version                      version, build and platform of this program

Common options:
  --server URL       the renewal server (default: UKEY_SERVER, or "server" in ~/.ukey/agent.json)
  --ca-file PEM      an extra root certificate to trust for the server's HTTPS
  --module PATH      the key's PKCS#11 driver (default: "module" in ~/.ukey/agent.json)
  --pkcs12 FILE      a .pfx / .p12 certificate file instead of a key (also --file FILE)
  --token SERIAL     which key, when several are connected
  --pin-file F       read the PIN from a file (else it is asked with echo off; never give it as an argument)
  --so-pin-file F    the SO PIN, for init;  --new-pin-file F  the new PIN, for init and pin change
  --yes              do not ask before init erases the key, nor to confirm the certificate a renewal
                     or download will write (it is still shown); without a terminal renew and
                     download need it (else CONFIRMATION_REQUIRED)
  --json             print the result (or the error) as one JSON line on stdout
  --lang zh|en       language (default zh, en when LANG starts with en)

Progress goes to stderr, the result to stdout. Exit codes: 0 done; 1 other failure;
2 wrong usage; 3 refused by the renewal policy or a verification (too early, window
closed, wrong code...); 4 a problem with the key (not present, wrong or locked PIN, full);
5 the server cannot be reached or answers wrongly.`;

const commonOptions = {
  server: { type: "string" }, "ca-file": { type: "string" }, module: { type: "string" }, pkcs12: { type: "string" }, file: { type: "string" },
  token: { type: "string" }, json: { type: "boolean" }, lang: { type: "string" }, help: { type: "boolean" }, version: { type: "boolean" },
  "pin-file": { type: "string" }, "so-pin-file": { type: "string" }, "new-pin-file": { type: "string" }, yes: { type: "boolean" },
  verify: { type: "string" },
  cert: { type: "string" }, ref: { type: "string" }, code: { type: "string" }, "self-service": { type: "boolean" }, customer: { type: "string" }, label: { type: "string" }, algorithm: { type: "string" },
} as const;

/** The exit code for an error: see `exitCodes`. */
export function exitCodeFor(code: ErrorCode): number {
  if (code === "CLI_USAGE" || code === "CONFIRMATION_REQUIRED" || code === "CERT_CHOICE_REQUIRED" || code === "FILE_UNREADABLE" || code === "CONFIG_INVALID" || code === "AGENT_NOT_CONFIGURED") return exitCodes.usage;
  // The institution's published files do not verify: not a refusal of the holder's answer (docs/agent-install.md).
  if (code === "DOWNLOAD_SIGNATURE_INVALID" || code === "DOWNLOAD_CHECKSUM_MISMATCH" || code === "INSTITUTION_MISMATCH") return exitCodes.other;
  // The server cannot serve for now (its database unreachable or read-only during a failover, its storage full, an
  // instance older than the database): a script tries again later, as for an unreachable server.
  if (/^(SERVER_|CA_UNREACHABLE|DATABASE_UNAVAILABLE|DATABASE_READ_ONLY|DATABASE_SCHEMA_NEWER|STORAGE_FULL$)/.test(code)) return exitCodes.server;
  if (/^(TOKEN_|PIN_|PFX_|HSM_MODULE_LOAD_FAILED|NO_CERTIFICATE_FOUND|CERT_NOT_ON_TOKEN|CERT_KEY_MISMATCH)/.test(code)) return exitCodes.token;
  if (/^(RENEWAL_|CERT_|CODE_|CSR_|KEY_|ORDER_|IDENTITY_|DOWNLOAD_CODE_INVALID|PAIRING_|POSSESSION_PROOF_FAILED|CHALLENGE_INVALID|STEP_UP_REQUIRED|ENROLMENT_)/.test(code)) return exitCodes.refused;
  return exitCodes.other;
}

function languageOf(flag: string | undefined, env: Record<string, string | undefined>): "zh" | "en" {
  if (flag !== undefined) {
    if (flag === "zh" || flag === "zh-CN") return "zh";
    if (flag === "en") return "en";
    throw new UkeyError("CLI_USAGE", { params: { reason: `--lang must be zh or en (got ${flag})` } });
  }
  return (env.LANG ?? "").startsWith("en") ? "en" : "zh";
}

/**
 * Runs one `ukey` command and returns its exit code (see `exitCodes`).
 * Errors are printed with their catalogue code, message and remedy in the
 * chosen language (stderr; and as {"error": ...} on stdout with --json).
 */
export async function runUkeyCli(argv: string[], io: UkeyCliIo): Promise<number> {
  const jsonWanted = argv.includes("--json");
  let lang: "zh" | "en" = (io.env.LANG ?? "").startsWith("en") ? "en" : "zh";
  let prompter: TerminalPrompter | undefined;
  let backend: KeyStoreBackend | undefined;
  try {
    if (argv.some((a) => a === "--pin" || a.startsWith("--pin=") || a === "--so-pin" || a.startsWith("--so-pin=") || a === "--new-pin" || a.startsWith("--new-pin="))) {
      throw new UkeyError("CLI_USAGE", { params: { reason: "a PIN given as an argument is visible to other users of this computer (process list, shell history); type it at the prompt or use --pin-file" } });
    }
    if (argv[0] === "agent") {
      // The local service (fastify) loads only for `ukey agent`.
      const { runAgentCommand } = await import("./local-api/agent-command.js");
      return await runAgentCommand(argv.slice(1), { stdout: { write: (s: string) => io.out(s) }, stderr: { write: (s: string) => io.err(s) }, stdin: io.stdin, env: io.env });
    }
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: commonOptions, allowPositionals: true, strict: true });
    } catch (cause) {
      throw new UkeyError("CLI_USAGE", { params: { reason: (cause as Error).message }, cause });
    }
    const v = parsed.values;
    lang = languageOf(v.lang, io.env);
    const [cmd, ...rest] = parsed.positionals;
    if (v.version || cmd === "version") {
      const b = buildInfo();
      io.out(v.json ? `${JSON.stringify(b)}\n` : `ukey ${b.version} (build ${b.build}, ${b.platform}, ${b.kind})\n`);
      return exitCodes.ok;
    }
    if (!cmd || cmd === "help" || v.help) {
      io.out(usage + "\n");
      return cmd || v.help ? exitCodes.ok : exitCodes.usage;
    }
    const print = (human: string, data: unknown) => io.out(v.json ? JSON.stringify(data) + "\n" : human + "\n");
    const t = (zh: string, en: string) => (lang === "zh" ? zh : en);

    if (cmd === "explain") {
      const query = rest.join(" ").trim();
      if (!query) throw new UkeyError("CLI_USAGE", { params: { reason: "ukey explain CODE" } });
      const results = lookupError(query);
      if (results.length === 0) {
        print(t(`没有找到与“${query}”相符的错误码。`, `No error code matches "${query}".`), { query, results: [] });
        return exitCodes.usage;
      }
      print(results.slice(0, 3).map((r) => explainText(r.ours, r.legacy?.legacyCode, r.legacy ? (lang === "zh" ? r.legacy.meaningZh : r.legacy.meaningEn) : undefined, lang)).join("\n\n"), { query, results });
      return exitCodes.ok;
    }

    const home = defaultAgentHome(io.env);
    const cfg = readAgentConfig(home);
    if (cmd === "update") {
      const caFileForUpdate = v["ca-file"] ?? cfg.caFile;
      const b = buildInfo();
      const r = await checkForUpdate(loadInstitutionConfig(io.env, home), b.version, b.platform, caFileForUpdate ? readCaFile(caFileForUpdate) : undefined);
      const verified = v.verify ? verifyDownloadedFile(v.verify, r.allFiles) : undefined;
      const lines = [
        r.updateAvailable
          ? t(`${r.institution} 发布了新版 ukey 代理 ${r.published}（本机为 ${r.running}），请从本机构网站的下载页安装。`, `${r.institution} publishes ukey agent ${r.published} (this one is ${r.running}): install it from your institution's download page.`)
          : t(`本机的 ukey 代理 ${r.running} 已是 ${r.institution} 发布的最新版本。`, `This ukey agent ${r.running} is the latest ${r.institution} publishes.`),
        ...r.files.map((f) => `  ${f.name}  ${f.size} ${t("字节", "bytes")}  SHA-256 ${f.sha256}`),
        ...(verified ? [t(`文件 ${verified.name} 与机构签名的清单一致（大小与 SHA-256 均相符）。`, `${verified.name} matches the institution's signed manifest (size and SHA-256).`)] : []),
      ];
      print(lines.join("\n"), { ...r, ...(verified ? { verified } : {}) });
      return exitCodes.ok;
    }
    // An installed agent knows its institution's server from the signed configuration its installer brought.
    const institutionServer = () => {
      try {
        return loadInstitutionConfig(io.env, home).config.server;
      } catch (e) {
        if (isUkeyError(e) && e.code === "AGENT_NOT_CONFIGURED") return undefined;
        throw e;
      }
    };
    const serverUrl = v.server ?? io.env.UKEY_SERVER ?? cfg.server ?? institutionServer();
    const caFile = v["ca-file"] ?? cfg.caFile;
    const server: ServerConnection = { url: serverUrl ?? "", ...(caFile ? { caPem: readCaFile(caFile) } : {}) };
    const needServer = () => {
      if (!serverUrl) throw new UkeyError("CLI_USAGE", { params: { reason: "no server: give --server URL, set UKEY_SERVER, or put \"server\" in ~/.ukey/agent.json" } });
    };
    // Loaded only for the commands that use a key: --version, explain and update start faster without them.
    const { openInstitutionBackend } = await import("./flows/key-vendor-source.js");
    const { cleanUpFlow, doctorFlow, downloadFlow, changePinFlow, initialiseFlow, renewFlow, statusFlow } = await import("./flows/index.js");
    const { resolveToken } = await import("./flows/token-access.js");
    const modulePath = v.module ?? (v.pkcs12 || v.file ? undefined : cfg.module);
    // --file is the name the catalogue's remedies give holders for a .pfx ("ukey renew --file").
    const pkcs12 = v.pkcs12 ?? v.file ?? (v.module ? undefined : cfg.pkcs12);
    const files = {
      ...(v["pin-file"] ? { pin: readSecretLine(v["pin-file"]) } : {}),
      ...(v["so-pin-file"] ? { soPin: readSecretLine(v["so-pin-file"]) } : {}),
      ...(v["new-pin-file"] ? { newPin: readSecretLine(v["new-pin-file"]) } : {}),
    };
    prompter = new TerminalPrompter(io, lang, files, v.yes === true);
    const fault = faultFromEnv(io.env);
    const open = async (): Promise<KeyStoreBackend> => {
      // The institution's key vendor table, as renew and download log in with; the built-in one without a server.
      const b = await openInstitutionBackend(server, { ...(modulePath ? { module: modulePath } : {}), ...(pkcs12 ? { pkcs12 } : {}), home, env: io.env });
      backend = b;
      return b;
    };

    if (cmd === "doctor") {
      let b: KeyStoreBackend | { error: unknown; location: string };
      try {
        b = await open();
      } catch (error) {
        b = { error, location: modulePath ?? pkcs12 ?? (io.env.UKEY_PKCS11_MODULE?.trim() || io.env.UKEY_SKF_LIBRARY?.trim() || "PKCS#11") };
      }
      if (!serverUrl) server.url = "";
      const fileTokenFallback = !pkcs12 && !("error" in b) && b.kind === "pkcs12";
      const checks = await doctorFlow({ backend: b, server, ...(v.token ? { tokenSerial: v.token } : {}), pairingsFile: join(home, "pairings.json"), fileTokenFallback });
      const failed = checks.filter((c) => !c.ok);
      print(doctorText(checks, lang), { checks: checks.map((c) => ({ ...c, ...(c.code ? { problem: describeError(c.code as ErrorCode, c.params) } : {}) })) });
      const first = failed[0]?.code;
      return first ? exitCodeFor(first as ErrorCode) : exitCodes.ok;
    }

    const b = await open();
    const ctx = (): FlowContext => ({ backend: b, server, prompter: prompter!, channel: "cli", ...(fault ? { fault } : {}) });
    switch (cmd) {
      case "status": {
        if (v.token) await resolveToken(b, v.token);
        const pin = files.pin;
        const status = await statusFlow({ backend: b, server, ...(pin !== undefined ? { pin } : {}), ...(v.token ? { tokenSerial: v.token } : {}) });
        if (status.length === 0) throw new UkeyError("TOKEN_NOT_PRESENT");
        print(statusText(status, lang), { tokens: status });
        return exitCodes.ok;
      }
      case "renew": {
        needServer();
        const token = await resolveToken(b, v.token);
        const r = await renewFlow(ctx(), { tokenSerial: token.serial, ...(v.cert ? { certSerialHex: v.cert } : {}) });
        print(t(
          `更新完成${r.resumed ? "（继续了上次未完成的更新）" : ""}：\n  新证书序列号 ${r.certificate.serialHex}\n  主题 ${r.certificate.subject}\n  有效期 ${formatPolicyDate(Date.parse(r.certificate.notBefore))} 至 ${formatPolicyDate(Date.parse(r.certificate.notAfter))}\n  已清理失效对象 ${r.removed} 个`,
          `Renewed${r.resumed ? " (finished an earlier interrupted renewal)" : ""}:\n  new certificate ${r.certificate.serialHex}\n  subject ${r.certificate.subject}\n  valid ${formatPolicyDate(Date.parse(r.certificate.notBefore))} to ${formatPolicyDate(Date.parse(r.certificate.notAfter))}\n  invalid objects removed: ${r.removed}`), r);
        return exitCodes.ok;
      }
      case "download": {
        needServer();
        const selfService = v["self-service"] === true;
        if (selfService ? !v.customer || v.ref || v.code : !v.ref || !v.code) {
          throw new UkeyError("CLI_USAGE", { params: { reason: "ukey download --ref REFERENCE --code AUTHORIZATION-CODE, or ukey download --self-service --customer CUSTOMER-NUMBER" } });
        }
        const algorithm = v.algorithm as "p256" | "p384" | "rsa2048" | "rsa3072" | undefined;
        if (algorithm !== undefined && !["p256", "p384", "rsa2048", "rsa3072"].includes(algorithm)) throw new UkeyError("CLI_USAGE", { params: { reason: "--algorithm p256, p384, rsa2048 or rsa3072" } });
        const token = await resolveToken(b, v.token);
        // Self-service: the ID number and the SMS code give the two codes (docs/enrolment.md); the download is the same.
        const codes = selfService
          ? await (await import("./flows/redownload-flow.js")).selfServiceAuthorizationFlow(ctx(), { customerNumber: v.customer!, ...(v.cert ? { certSerial: v.cert } : {}) })
          : { referenceNumber: v.ref!, authorizationCode: v.code! };
        const r = await downloadFlow(ctx(), { tokenSerial: token.serial, referenceNumber: codes.referenceNumber, authorizationCode: codes.authorizationCode, ...(algorithm ? { algorithm } : {}) });
        print(t(
          `下载完成：\n  证书序列号 ${r.certificate.serialHex}\n  主题 ${r.certificate.subject}\n  有效期 ${formatPolicyDate(Date.parse(r.certificate.notBefore))} 至 ${formatPolicyDate(Date.parse(r.certificate.notAfter))}`,
          `Downloaded:\n  certificate ${r.certificate.serialHex}\n  subject ${r.certificate.subject}\n  valid ${formatPolicyDate(Date.parse(r.certificate.notBefore))} to ${formatPolicyDate(Date.parse(r.certificate.notAfter))}`), r);
        return exitCodes.ok;
      }
      case "init": {
        const token = await resolveToken(b, v.token);
        const r = await initialiseFlow(ctx(), { tokenSerial: token.serial, ...(v.label ? { label: v.label } : {}) });
        print(t(`UKey ${r.token.label}（${r.token.serial}）已初始化。请用 ukey download 重新下载证书。`, `Key ${r.token.label} (${r.token.serial}) initialised. Download the certificate again with ukey download.`), r);
        return exitCodes.ok;
      }
      case "pin": {
        if (rest[0] !== "change") throw new UkeyError("CLI_USAGE", { params: { reason: "ukey pin change" } });
        const token = await resolveToken(b, v.token);
        await changePinFlow(ctx(), { tokenSerial: token.serial });
        print(t("PIN 已修改。", "PIN changed."), { changed: true });
        return exitCodes.ok;
      }
      case "clean-up": {
        const token = await resolveToken(b, v.token);
        const r = await cleanUpFlow(ctx(), { tokenSerial: token.serial });
        print(t(`已清理失效对象 ${r.removed} 个。`, `Invalid objects removed: ${r.removed}.`), r);
        return exitCodes.ok;
      }
      default:
        throw new UkeyError("CLI_USAGE", { params: { reason: `unknown command ${cmd}; see ukey --help` } });
    }
  } catch (e) {
    const err = isUkeyError(e) ? e : new UkeyError("INTERNAL", { cause: e, detail: e instanceof Error ? e.message : String(e) });
    const problem = err.toProblem();
    io.err(problemText(problem, lang));
    if (jsonWanted) io.out(JSON.stringify({ error: problem }) + "\n");
    return exitCodeFor(err.code);
  } finally {
    prompter?.close();
    await backend?.close().catch(() => undefined);
  }
}

function problemText(p: ErrorProblem, lang: "zh" | "en"): string {
  const l = lang === "zh" ? "zh-CN" : "en";
  return `${lang === "zh" ? "错误" : "Error"} ${p.code}: ${p.message[l]}\n${lang === "zh" ? "怎么办" : "What to do"}: ${p.remedy[l]}\n${p.detail ? `(${p.detail})\n` : ""}`;
}

function explainText(ours: ErrorProblem[], legacyCode: string | undefined, meaning: string | undefined, lang: "zh" | "en"): string {
  const l = lang === "zh" ? "zh-CN" : "en";
  const head = legacyCode ? `${legacyCode}: ${meaning ?? ""}\n` : meaning ? `${meaning}\n` : "";
  // Without a concrete error there are no dates or serials to show: example values stand for them (error-examples.ts).
  return head + ours.map((o) => describeErrorExample(o.code)).map((p) => `${p.code}: ${p.message[l]}\n  ${lang === "zh" ? "怎么办" : "What to do"}: ${p.remedy[l]}`).join("\n");
}

const stateWords: Record<string, { zh: string; en: string }> = {
  valid: { zh: "有效", en: "valid" }, expiring: { zh: "即将到期", en: "expiring soon" }, expired: { zh: "已过期", en: "expired" },
  "not-yet-valid": { zh: "尚未生效", en: "not yet valid" }, revoked: { zh: "已注销", en: "revoked" },
  "on-hold": { zh: "已冻结（暂停使用）", en: "on hold (suspended)" },
  superseded: { zh: "已被新证书替代", en: "superseded by a newer certificate" }, unknown: { zh: "本机构服务器不认识", en: "not known to the server" },
};

function statusText(tokens: TokenStatus[], lang: "zh" | "en"): string {
  const zh = lang === "zh";
  return tokens.map((s) => {
    const lines = [`UKey ${s.token.label} (${zh ? "序列号" : "serial"} ${s.token.serial}, ${s.token.manufacturer} ${s.token.model}${s.vendor ? `, ${zh ? s.vendor.name.zh : s.vendor.name.en}` : ""})`];
    if (s.certificates.length === 0) lines.push(zh ? "  没有证书（文件证书需要 --pin-file 才能读取）" : "  no certificates (a file needs --pin-file to be read)");
    for (const c of s.certificates) {
      const days = c.daysLeft >= 0 ? (zh ? `还有 ${c.daysLeft} 天` : `${c.daysLeft} days left`) : (zh ? `已过期 ${-c.daysLeft} 天` : `expired ${-c.daysLeft} days ago`);
      lines.push(`  ${c.certificate.serialHex}  ${c.certificate.subject}`);
      lines.push(`    ${zh ? stateWords[c.state]!.zh : stateWords[c.state]!.en}, ${zh ? "有效期至" : "valid until"} ${formatPolicyDate(c.certificate.notAfter)} (${days})`);
      if (c.advice?.explanation) lines.push(`    ${zh ? c.advice.explanation.zh : c.advice.explanation.en}`);
      if (c.state === "on-hold") lines.push(zh ? "    冻结期间不能登录、更新或下载；请联系机构了解原因，机构解除冻结后即可照常使用。" : "    While on hold it cannot log in, be renewed or downloaded; ask the institution why. Once it lifts the hold, it works again.");
    }
    lines.push(zh ? `  可清理的失效对象：${s.invalidObjects} 个` : `  invalid objects a clean-up would remove: ${s.invalidObjects}`);
    return lines.join("\n");
  }).join("\n");
}

function doctorText(checks: DoctorCheck[], lang: "zh" | "en"): string {
  return checks.map((c) => {
    const line = `${c.id === "advice" ? "•" : c.ok ? "✓" : "✗"} ${c.id.padEnd(11)} ${lang === "zh" ? c.zh : c.en}`;
    if (c.ok || !c.code) return line;
    const p = describeError(c.code as ErrorCode, c.params);
    return `${line}\n    ${c.code}: ${lang === "zh" ? p.remedy["zh-CN"] : p.remedy.en}`;
  }).join("\n");
}

/** The `ukey` bin's entry: the process's streams and environment. */
export async function main(): Promise<void> {
  const code = await runUkeyCli(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
    stdin: process.stdin,
  });
  process.exitCode = code;
}
