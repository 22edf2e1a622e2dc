import { existsSync } from "node:fs";
import { resolve } from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";

/** Where scripts/build-web.sh writes the portal and the console. */
export const defaultWebDist = resolve(import.meta.dirname, "../../web/dist");

/**
 * The content security policy of the portal and the console: scripts and
 * styles only from this origin (no inline script, no eval), no framing,
 * and connections to this server and to the holder's own agent on the
 * loopback address (any port: the agent's port is configurable).
 */
export const webContentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self' http://127.0.0.1:* http://localhost:*",
  "manifest-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

const securityHeaders: Record<string, string> = {
  "content-security-policy": webContentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin-allow-popups",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
};

/**
 * Serves the built portal at `/` (and at `/step-up/{link}`, the approval
 * page of a step-up link) and the operator console at `/console/`
 * from `dist` (default packages/web/dist), with the security headers above
 * on every file. Hashed assets are cached for a year; pages are revalidated
 * each time. When `dist` has not been built, nothing is served and the
 * log says how to build it (the API works without it).
 */
export async function registerWebRoutes(app: FastifyInstance, dist: string = defaultWebDist): Promise<void> {
  if (!existsSync(resolve(dist, "index.html"))) {
    app.log.warn({ dist }, "portal not built: run scripts/build-web.sh");
    return;
  }
  await app.register(async (web) => {
    web.addHook("onSend", async (req, reply, payload) => {
      for (const [k, v] of Object.entries(securityHeaders)) reply.header(k, v);
      reply.header("cache-control", req.url.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache");
      return payload;
    });
    await web.register(fastifyStatic, { root: dist, prefix: "/", index: "index.html", redirect: true, cacheControl: false, dotfiles: "ignore" });
    // The step-up link a holder opens on a second device (renewal-order-service startStepUp) is a portal page.
    web.get<{ Params: { link: string } }>("/step-up/:link", { schema: { hide: true } as Record<string, unknown> }, (_req, reply) => reply.sendFile("index.html"));
  });
}
