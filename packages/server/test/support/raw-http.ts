import { connect as tcpConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

/** What came back on a raw connection: the first response (if any), and whether the server closed. */
export interface RawAnswer {
  /** 0 when no response arrived. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Every byte received, for messages. */
  raw: string;
}

/** Opens a connection to 127.0.0.1:`port`, over TLS (any certificate accepted) when `tls`. */
export function openConnection(port: number, tls = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s: Socket = tls
      ? tlsConnect({ port, host: "127.0.0.1", servername: "localhost", rejectUnauthorized: false }, () => resolve(s))
      : tcpConnect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
  });
}

/** Parses the first HTTP/1.1 response in `raw` (Content-Length or chunked), or status 0. */
export function parseResponse(raw: Buffer): RawAnswer {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (!text.startsWith("HTTP/") || end < 0) return { status: 0, headers: {}, body: "", raw: raw.toString("utf8") };
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  let body: Buffer;
  if (headers["transfer-encoding"] === "chunked") {
    const parts: Buffer[] = [];
    for (;;) {
      const nl = rest.indexOf("\r\n");
      const size = parseInt(rest.subarray(0, nl).toString("latin1"), 16);
      if (!(size > 0)) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  } else {
    body = rest.subarray(0, headers["content-length"] === undefined ? rest.length : Number(headers["content-length"]));
  }
  return { status: Number(statusLine!.split(" ")[1]), headers, body: body.toString("utf8"), raw: raw.toString("utf8") };
}

/**
 * Sends `request` as it is on a fresh connection and collects everything
 * until the server closes it, or `waitMs` passes (then the connection is
 * closed by us). Never rejects: a reset connection answers what arrived.
 */
export async function rawExchange(port: number, request: string | Buffer, opts: { tls?: boolean; waitMs?: number } = {}): Promise<RawAnswer & { closedByServer: boolean }> {
  const s = await openConnection(port, opts.tls);
  return collect(s, opts.waitMs ?? 10_000, () => s.write(request));
}

/** Collects what `s` receives until the server closes it or `waitMs` passes; `start` runs once listening. */
export function collect(s: Socket, waitMs: number, start: () => void = () => {}): Promise<RawAnswer & { closedByServer: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ ...parseResponse(Buffer.concat(chunks)), closedByServer });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("end", () => finish(true));
    s.on("close", () => finish(true));
    s.on("error", () => finish(true));
    start();
  });
}

/** Resolves when `s` is closed by the other side, with what it received; rejects after `waitMs`. */
export function closedWithin(s: Socket, waitMs: number): Promise<RawAnswer> {
  return collect(s, waitMs).then((a) => {
    if (!a.closedByServer) throw new Error(`still open after ${waitMs} ms`);
    return a;
  });
}
