import { readFileSync } from "node:fs";
import { createInterface, type Interface } from "node:readline";
import { UkeyError, type ErrorCode } from "@ukey/policy";
import { previewText } from "./flows/preview-text.js";
import type { Prompter, ProgressEvent } from "./prompter.js";

/** Where the terminal prompter reads and writes; the CLI passes the process's streams, tests may pass others. */
export interface TerminalIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (on: boolean) => unknown };
  /** Prompts and progress (stderr), so stdout carries only the result. */
  err(text: string): void;
}

/** Secrets from files, each read once (the first line, without its line end). */
export interface PinFiles {
  pin?: string;
  soPin?: string;
  newPin?: string;
}

/**
 * Answers a flow's questions at the terminal: the PIN with echo off (or
 * from --pin-file / --so-pin-file / --new-pin-file), the ID number, the
 * one-time code (or "r" to have it sent again), "press Enter" after the
 * step-up approval (with the link as a QR code on a terminal). Reads lines
 * from stdin when it is a pipe, so scripts and tests can answer. Progress
 * goes to stderr in the chosen language.
 */
export class TerminalPrompter implements Prompter {
  private lines: string[] = [];
  private waiting: { resolve: (l: string) => void; reject: (e: Error) => void } | undefined;
  private ended = false;
  private rl: Interface | undefined;

  constructor(private readonly io: TerminalIo, private readonly lang: "zh" | "en", private readonly files: PinFiles = {}, private readonly assumeYes = false) {}

  /** Releases stdin (the process can then exit). */
  close(): void {
    this.rl?.close();
    this.rl = undefined;
  }

  private t(zh: string, en: string): string {
    return this.lang === "zh" ? zh : en;
  }

  private get tty(): boolean {
    return this.io.stdin.isTTY === true;
  }

  /** The next line of stdin; OPERATION_CANCELLED (or `onEnd`) when stdin ends first. From a pipe, lines are queued as they come. */
  private readLine(question: string, onEnd: ErrorCode = "OPERATION_CANCELLED"): Promise<string> {
    this.io.err(question);
    if (this.tty) {
      // One interface per question on a terminal: none may stay attached while a PIN is read in raw mode.
      return new Promise((resolve, reject) => {
        const rl = createInterface({ input: this.io.stdin, terminal: false });
        let answered = false;
        rl.once("line", (l) => { answered = true; rl.close(); resolve(l); });
        rl.once("close", () => { if (!answered) reject(new UkeyError(onEnd, { detail: "no more input" })); });
      });
    }
    if (!this.rl) {
      this.rl = createInterface({ input: this.io.stdin, terminal: false });
      this.rl.on("line", (l) => {
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = undefined;
          w.resolve(l);
        } else this.lines.push(l);
      });
      this.rl.on("close", () => {
        this.ended = true;
        const w = this.waiting;
        this.waiting = undefined;
        w?.reject(new UkeyError(onEnd, { detail: "no more input" }));
      });
    }
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(new UkeyError(onEnd, { detail: "no more input" }));
    return new Promise((resolve, reject) => { this.waiting = { resolve, reject }; });
  }

  /** A line typed with echo off (raw mode on a terminal; a plain line from a pipe). */
  private async readHidden(question: string): Promise<string> {
    const stdin = this.io.stdin;
    if (!this.tty || !stdin.setRawMode) return this.readLine(question, "TOKEN_PIN_PROMPT_FAILED");
    // Echo off before the prompt shows: a PIN typed the moment the prompt appears is never echoed.
    stdin.setRawMode(true);
    this.io.err(question);
    return new Promise((resolve, reject) => {
      let value = "";
      const done = (err?: Error) => {
        stdin.removeListener("data", onData);
        stdin.setRawMode!(false);
        stdin.pause();
        this.io.err("\n");
        if (err) reject(err);
        else resolve(value);
      };
      const onData = (chunk: Buffer | string) => {
        for (const ch of String(chunk)) {
          if (ch === "\r" || ch === "\n") return done();
          if (ch === "\u0003" || ch === "\u0004") return done(new UkeyError("OPERATION_CANCELLED"));
          if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
          else value += ch;
        }
      };
      stdin.resume();
      stdin.on("data", onData);
    });
  }

  async pin(request: Parameters<Prompter["pin"]>[0]): Promise<string> {
    if (request.keyPad) {
      // The key takes the PIN on its own pad: nothing is read here, not even a PIN file.
      this.io.err(this.t(`UKey ${request.tokenLabel}（${request.tokenSerial}）带有密码键盘：PIN 不在电脑上输入，请在 UKey 上输入 PIN 并按确认键。\n`,
        `Key ${request.tokenLabel} (${request.tokenSerial}) has its own PIN pad: the PIN is not typed on the computer; type it on the UKey and press OK.\n`));
      return "";
    }
    const file = request.so ? this.files.soPin : request.newPin ? this.files.newPin : this.files.pin;
    if (file !== undefined) {
      // A file cannot be asked again: a wrong PIN in it ends the command (before the token locks).
      if (request.retry) throw new UkeyError(request.retry.code as ErrorCode, request.retry.triesLeft !== undefined ? { params: { triesLeft: request.retry.triesLeft } } : {});
      return file;
    }
    if (request.retry) {
      const left = request.retry.triesLeft;
      this.io.err(this.t(`PIN 错误${left !== undefined ? `，还可尝试 ${left} 次` : ""}。\n`, `Wrong PIN${left !== undefined ? `; ${left} tries left` : ""}.\n`));
    }
    const what = request.so
      ? this.t(`请输入 UKey ${request.tokenLabel} 的管理员 PIN（SO PIN）：`, `SO PIN of key ${request.tokenLabel}: `)
      : request.newPin
        ? request.reason.endsWith("-again") ? this.t("请再次输入新 PIN：", "New PIN again: ") : this.t("请输入新 PIN（至少 6 位字母或数字）：", "New PIN (at least 6 letters or digits): ")
        : this.t(`请输入 UKey ${request.tokenLabel}（${request.tokenSerial}）的 PIN：`, `PIN of key ${request.tokenLabel} (${request.tokenSerial}): `);
    return this.readHidden(what);
  }

  async idNumber(request: Parameters<Prompter["idNumber"]>[0]): Promise<string> {
    if (request.retry) {
      const left = request.retry.triesLeft;
      this.io.err(left !== undefined
        ? this.t(`证件号码与登记记录不符，请重新输入（还可以再试 ${left} 次）。\n`, `The ID number does not match the record; enter it again (${left} ${left === 1 ? "try" : "tries"} left).\n`)
        : this.t("证件号码与登记记录不符，请重新输入。\n", "The ID number does not match the record; enter it again.\n"));
    }
    return this.readLine(this.t("请输入登记的证件号码：", "ID number on record: "));
  }

  async oneTimeCode(request: Parameters<Prompter["oneTimeCode"]>[0]): Promise<string | "resend"> {
    if (request.retry) this.io.err(this.t(`验证码不正确（${request.retry.code}）。\n`, `The code was not accepted (${request.retry.code}).\n`));
    const line = (await this.readLine(this.t(
      `验证码已发送到 ${request.maskedTo}，请输入 6 位验证码（输入 r 重新发送）：`,
      `A code was sent to ${request.maskedTo}; type the 6 digits (or r to send it again): `))).trim();
    return line === "r" || line === "resend" ? "resend" : line;
  }

  async stepUp(request: Parameters<Prompter["stepUp"]>[0]): Promise<void> {
    let qr = "";
    if (this.tty) qr = await (await import("qrcode")).default.toString(request.approvalUrl, { type: "terminal", small: true });
    this.io.err(`${qr}${this.t("请用另一台设备（例如已登记的手机）打开下面的链接并确认身份：", "Open this link on a second device (such as your registered phone) and confirm who you are:")}\n  ${request.approvalUrl}\n`);
    await this.readLine(this.t("确认完成后按回车键继续：", "Press Enter when it is approved: "));
  }

  /**
   * A preview (renewal, download) is shown in the chosen language and
   * answered y/N, No by default; --yes answers yes after showing it. Without
   * a terminal and without --yes nobody can check it: CONFIRMATION_REQUIRED.
   */
  async confirm(request: Parameters<Prompter["confirm"]>[0]): Promise<boolean> {
    if (request.preview) {
      this.io.err(`${previewText(request.preview, this.lang)}\n`);
      if (this.assumeYes) return true;
      if (!this.tty) throw new UkeyError("CONFIRMATION_REQUIRED");
      const go = request.preview.kind === "renew" ? this.t("确认更新？[y/N] ", "Renew it? [y/N] ") : this.t("确认下载到 UKey？[y/N] ", "Download it onto the key? [y/N] ");
      const answer = (await this.readLine(go)).trim().toLowerCase();
      return answer === "y" || answer === "yes" || answer === "是";
    }
    this.io.err(`${request.question}\n${request.consequences.map((c) => `  - ${c}\n`).join("")}`);
    if (this.assumeYes) return true;
    const answer = (await this.readLine(this.t("输入 yes 继续，其他任意内容取消：", "Type yes to go on, anything else to cancel: "))).trim().toLowerCase();
    return answer === "yes" || answer === "y" || answer === "是";
  }

  progress(event: ProgressEvent): void {
    this.io.err(`· ${this.lang === "zh" ? event.zh : event.en}\n`);
  }
}

/** The first line of a secret file, without its line end. @throws UkeyError FILE_UNREADABLE. */
export function readSecretLine(path: string): string {
  try {
    return readFileSync(path, "utf8").split(/\r?\n/)[0] ?? "";
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
}
