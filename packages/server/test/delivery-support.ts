// Real parts for the delivery tests: an SQLite store, an HTTP gateway and an
// SMTP server on 127.0.0.1, and a log that keeps every line it is given.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { randomInt } from "node:crypto";
import type { AddressInfo } from "node:net";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { fixedClock } from "@ukey/policy";
import { openStore, type Store } from "@ukey/store";
import type { DeliveryLog, OutgoingMessage } from "../src/delivery/index.js";
import { tempDir, type TempDir } from "./support/fixtures.js";

export const clock = fixedClock("2026-11-21T10:00:00Z");

/** A store on a fresh data directory, and the directory. */
export async function openTestStore(): Promise<{ store: Store; t: TempDir; close(): Promise<void> }> {
  const t = tempDir("ukey-delivery-");
  const store = await openStore({ dataDir: t.dir });
  return { store, t, close: async () => { await store.close(); t.cleanup(); } };
}

/** A logger that keeps each call as one JSON line, as pino would write it. */
export function captureLog(): { log: DeliveryLog; lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push(JSON.stringify({ level, ...obj, msg })); };
  return { log: { info: keep("info"), warn: keep("warn") }, lines };
}

/** A fresh 6-digit code that occurs nowhere else in the test. */
export function freshCode(): string {
  return String(randomInt(100_000, 1_000_000));
}

/** A one-time code message as the RA composes it: zh-CN first, then en. */
export function codeMessage(code: string, over: Partial<OutgoingMessage> = {}): OutgoingMessage {
  const text = (c: string) => `【示例银行】您的证书更新验证码为 ${c}，5 分钟内有效，请勿告诉他人。 [Demo Bank] Your renewal code is ${c}, valid for 5 minutes. Never share it.`;
  return {
    channel: "sms", to: "+86 158 1234 5675", subject: { "zh-CN": "证书更新验证码", en: "Certificate renewal code" },
    text: text(code), redactedText: text("******"), purpose: "otp", holderId: "H001", ...over,
  };
}

/** What the local gateway does with one request. */
export type GatewayAnswer = number | "hang" | { status: number; body: string; headers?: Record<string, string> };

export interface Gateway {
  url: string;
  requests: { headers: IncomingMessage["headers"]; body: string }[];
  close(): Promise<void>;
}

/**
 * An HTTP gateway on 127.0.0.1 that answers request n with `answers[n]`
 * (the last one repeats). "hang" never answers, for the timeout.
 */
export async function startGateway(answers: readonly GatewayAnswer[]): Promise<Gateway> {
  const requests: Gateway["requests"] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const a = answers[Math.min(requests.length, answers.length) - 1] ?? 200;
      if (a === "hang") { hanging.push(res); return; }
      const { status, body, headers } = typeof a === "number" ? { status: a, body: "", headers: {} } : { headers: {}, ...a };
      res.writeHead(status, { "content-type": "text/plain", ...headers }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/sms`,
    requests,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface MailServer {
  port: number;
  messages: { from: string; to: string[]; raw: string; user: string | undefined }[];
  close(): Promise<void>;
}

/** An SMTP server (the smtp-server package) on 127.0.0.1 that keeps every message it accepts. */
export async function startMailServer(options: SMTPServerOptions): Promise<MailServer> {
  const messages: MailServer["messages"] = [];
  const server = new SMTPServer({
    logger: false,
    ...options,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString("utf8"),
          user: typeof session.user === "string" ? session.user : undefined,
        });
        callback();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.server.address() as AddressInfo;
  return { port, messages, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** The text body of a single-part message, decoded from quoted-printable or base64. */
export function mailBody(raw: string): string {
  const split = raw.indexOf("\r\n\r\n");
  const headers = raw.slice(0, split);
  const body = raw.slice(split + 4);
  const encoding = /^content-transfer-encoding:\s*(\S+)/im.exec(headers)?.[1]?.toLowerCase();
  if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (encoding === "quoted-printable") {
    const bytes = body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_m, h: string) => `%${h}`);
    return decodeURIComponent(bytes.replace(/%(?![0-9A-F]{2})/gi, "%25"));
  }
  return body;
}

/** A port on 127.0.0.1 that nothing listens on (it was just released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
