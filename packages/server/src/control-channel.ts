import { chmodSync, mkdirSync, realpathSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { isAbsolute, join, resolve } from "node:path";
import { UkeyError } from "@ukey/policy";

/**
 * The operator commands a running server runs for `ukey-server` (see
 * docs/operator-cli.md, "While the server runs"). `init`, `start` and
 * `kmc init` are not among them: they create or replace CA, database or
 * KMC keys and need the data directory to themselves.
 */
export const forwardedCommands: ReadonlySet<string> = new Set(["holder", "issue", "import", "revoke", "hold", "enrol", "operator", "audit", "downloads", "backup", "reload", "ca"]);

/** What the server sends back: the command's exit code and what it printed. */
export interface ControlReply {
  code: number;
  out: string;
  err: string;
}

/** The largest request line the server reads (an argv; files travel as paths). */
const MAX_REQUEST_BYTES = 64 * 1024;
/** A Unix socket path longer than this cannot be bound on Linux (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** The running server's control socket: `run/control.sock` in the data directory (0600, in a 0700 directory). */
export function controlSocketPath(dataDir: string): string {
  return join(resolve(dataDir), "run", "control.sock");
}

/** Flags whose value is a path; they are made absolute before a command travels to the server. */
const PATH_FLAGS = new Set(["data-dir", "id-number-file", "password-file", "csr", "out", "certs", "holders", "chain", "file", "passphrase-file", "hsm-pin-file", "kmc-passphrase-file", "in", "backup-passphrase-file", "root-crl", "issuing-cert", "root-cert"]);

/** `argv` with every path flag's value resolved against `cwd` (the server runs elsewhere). */
export function absolutePathArgs(argv: readonly string[], cwd: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = /^--([a-z0-9-]+)=(.*)$/s.exec(a);
    if (eq && PATH_FLAGS.has(eq[1]!)) {
      out.push(`--${eq[1]}=${absolute(eq[2]!, cwd)}`);
    } else if (a.startsWith("--") && PATH_FLAGS.has(a.slice(2)) && i + 1 < argv.length) {
      out.push(a, absolute(argv[i + 1]!, cwd));
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function absolute(p: string, cwd: string): string {
  return p === "" || isAbsolute(p) ? p : resolve(cwd, p);
}

/** The value of `--data-dir` in `argv`, if any. */
export function dataDirArg(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--data-dir") return argv[i + 1];
    if (a.startsWith("--data-dir=")) return a.slice("--data-dir=".length);
  }
  return undefined;
}

/**
 * Sends one command to the server running on `dataDir` and returns its
 * reply, or undefined when no server answers there (no socket, a stale
 * socket left by a killed server, or one this user may not open): the
 * caller then opens the data directory itself.
 * @throws UkeyError INTERNAL when a server took the command and closed without an answer.
 */
export function askRunningServer(dataDir: string, argv: readonly string[]): Promise<ControlReply | undefined> {
  const path = controlSocketPath(dataDir);
  if (path.length > MAX_SOCKET_PATH) return Promise.resolve(undefined);
  return new Promise((done, fail) => {
    const socket = createConnection(path);
    let connected = false;
    let data = "";
    socket.setEncoding("utf8");
    socket.once("connect", () => {
      connected = true;
      socket.write(JSON.stringify({ argv }) + "\n");
    });
    socket.on("data", (d: string) => { data += d; });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      if (!connected) done(undefined);
      else fail(new UkeyError("INTERNAL", { detail: `control socket ${path}: ${e.message}`, cause: e }));
    });
    socket.once("end", () => {
      try {
        const r = JSON.parse(data) as ControlReply;
        if (typeof r.code !== "number" || typeof r.out !== "string" || typeof r.err !== "string") throw new Error("not a reply");
        done(r);
      } catch (e) {
        fail(new UkeyError("INTERNAL", { detail: `control socket ${path}: the server closed without an answer`, cause: e }));
      }
    });
  });
}

/** A listening control channel. */
export interface ControlChannel {
  path: string;
  close(): Promise<void>;
}

/**
 * Listens on the data directory's control socket and answers each
 * connection's one command with `run(argv)`. Who may connect: the OS user
 * that owns the data directory (the `run` directory is 0700 and the socket
 * 0600), who can already read and write everything in it. Returns
 * undefined, after `warn`, when the socket cannot be made (path too long)
 * or another live server already answers there; a socket left by a killed
 * server is replaced.
 */
export async function listenControlChannel(
  dataDir: string,
  run: (argv: string[]) => Promise<ControlReply>,
  warn: (message: string) => void,
): Promise<ControlChannel | undefined> {
  const path = controlSocketPath(dataDir);
  if (path.length > MAX_SOCKET_PATH) {
    warn(`control socket not opened: ${path} is longer than ${MAX_SOCKET_PATH} bytes; operator commands need the server stopped`);
    return undefined;
  }
  const dir = join(resolve(dataDir), "run");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  if (await askRunningServer(dataDir, ["--ping"]).catch(() => undefined)) {
    warn(`control socket not opened: another server answers on ${path}`);
    return undefined;
  }
  rmSync(path, { force: true });
  const server: Server = createServer((socket) => {
    let buf = "";
    let taken = false;
    socket.setEncoding("utf8");
    socket.on("error", () => socket.destroy());
    socket.on("data", (d: string) => {
      if (taken) return;
      buf += d;
      if (Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
        taken = true;
        socket.end(JSON.stringify({ code: 2, out: "", err: "control request too large\n" }) + "\n");
        return;
      }
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      taken = true;
      let argv: string[];
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { argv?: unknown };
        if (!Array.isArray(req.argv) || !req.argv.every((a) => typeof a === "string")) throw new Error("argv must be an array of strings");
        argv = req.argv as string[];
      } catch (e) {
        socket.end(JSON.stringify({ code: 2, out: "", err: `control request malformed: ${(e as Error).message}\n` }) + "\n");
        return;
      }
      if (argv[0] === "--ping") {
        socket.end(JSON.stringify({ code: 0, out: "", err: "" }) + "\n");
        return;
      }
      run(argv).then(
        (r) => socket.end(JSON.stringify(r) + "\n"),
        (e: unknown) => socket.end(JSON.stringify({ code: 1, out: "", err: `${String(e)}\n` }) + "\n"),
      );
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(path, () => { server.off("error", fail); ok(); });
  });
  // The 0700 directory already keeps other users out while the umask's mode is in force.
  chmodSync(path, 0o600);
  return {
    path,
    close: () => new Promise<void>((ok) => {
      server.close(() => ok());
      rmSync(path, { force: true });
    }),
  };
}

/** Whether `a` and `b` name the same existing directory (symbolic links followed). */
export function sameDirectory(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}
