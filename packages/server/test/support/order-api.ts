import type { FastifyInstance, InjectOptions } from "fastify";
import type { OrderStarted, ProvenOrderView } from "../../src/renewal/renewal-order-service.js";
import { signPossession } from "./fixtures.js";

/** An answer of the renewal API: the body typed as the caller expects, with the problem fields of a refusal. */
export interface ApiAnswer<T> {
  status: number;
  body: T & { code?: string; message?: { en: string; "zh-CN": string }; params?: Record<string, string | number>; credential?: { token: string; expiresAt: string } };
  headers: Record<string, unknown>;
}

type Inject = (opts: InjectOptions) => PromiseLike<{ statusCode: number; headers: Record<string, unknown>; json(): unknown }>;

/**
 * Calls the renewal API as the holder's agent does: remembers the
 * credential each proof of possession answers and sends it as
 * `Authorization: Bearer` on every later request about that order, unless
 * a call says otherwise (`credential: null` sends none, a string sends it).
 */
export class OrderApi {
  readonly credentials = new Map<string, string>();

  constructor(private readonly inject: Inject) {}

  /** One app, or several taken in turn (two instances on one database). */
  static of(apps: FastifyInstance | (() => FastifyInstance)): OrderApi {
    return new OrderApi((o) => (typeof apps === "function" ? apps() : apps).inject(o));
  }

  async call<T = ProvenOrderView>(method: "GET" | "POST", url: string, payload?: unknown, opts: { credential?: string | null; headers?: Record<string, string> } = {}): Promise<ApiAnswer<T>> {
    const id = /^\/api\/v1\/orders\/([0-9a-f-]{36})/.exec(url)?.[1];
    const credential = opts.credential === undefined ? (id ? this.credentials.get(id) : undefined) : opts.credential ?? undefined;
    const res = await this.inject({
      method, url,
      headers: { ...(credential ? { authorization: `Bearer ${credential}` } : {}), ...opts.headers },
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
    const body = res.json() as ApiAnswer<T>["body"];
    if (id && body && typeof body === "object" && body.credential?.token) this.credentials.set(id, body.credential.token);
    return { status: res.statusCode, body, headers: res.headers };
  }

  /** Starts (or resumes) the renewal of `certId`. */
  start(certId: string, channel?: string): Promise<ApiAnswer<OrderStarted>> {
    return this.call<OrderStarted>("POST", "/api/v1/orders", { certId, ...(channel ? { channel } : {}) });
  }

  /** Signs a fresh challenge of order `id` with the key in `keyFile` (PEM) and sends the proof. */
  async prove(id: string, keyFile: string, signer?: "certificate" | "new-key"): Promise<ApiAnswer<ProvenOrderView>> {
    const c = await this.call<{ challenge: { value: string } }>("POST", `/api/v1/orders/${id}/challenge`);
    if (c.status !== 200) throw new Error(`challenge of ${id}: ${c.status} ${JSON.stringify(c.body)}`);
    const value = c.body.challenge.value;
    return this.call("POST", `/api/v1/orders/${id}/possession`, { challenge: value, signature: signPossession(id, value, keyFile), ...(signer ? { signer } : {}) });
  }

  /** Starts the renewal of `certId` and proves possession with the challenge that came with it. */
  async startAndProve(certId: string, keyFile: string, channel?: string): Promise<{ id: string; started: ApiAnswer<OrderStarted>; proved: ApiAnswer<ProvenOrderView> }> {
    const started = await this.start(certId, channel);
    if (started.status >= 300) throw new Error(`start: ${started.status} ${JSON.stringify(started.body)}`);
    const { id, challenge } = started.body;
    const proved = await this.call("POST", `/api/v1/orders/${id}/possession`, { challenge: challenge.value, signature: signPossession(id, challenge.value, keyFile) });
    return { id, started, proved };
  }
}
