import { createReadStream, realpathSync, statSync } from "node:fs";
import { extname, join, sep } from "node:path";
import type { FastifyInstance } from "fastify";
import { UkeyError } from "@ukey/policy";
import { problemSchema } from "../admin/admin-schemas.js";

const types: Record<string, string> = {
  ".json": "application/json",
  ".pem": "application/x-pem-file",
  ".deb": "application/vnd.debian.binary-package",
  ".msi": "application/x-msi",
  ".exe": "application/vnd.microsoft.portable-executable",
};

/**
 * GET /downloads/{file}: the installers and the signed agent-config.json and
 * manifest.json that `ukey-server downloads publish` wrote into `dir`. Public
 * (what is there is published for anyone to download); only plain file names
 * of the folder itself (no dot files, no sub-folders, no link leading
 * outside), else 404 ROUTE_NOT_FOUND. Installers go as attachments; the JSON
 * documents are not cached, so a new publication reaches agents at once.
 */
export function registerDistributionRoutes(app: FastifyInstance, dir: string): void {
  app.get<{ Params: { file: string } }>("/downloads/:file", {
    schema: {
      tags: ["downloads"],
      summary: "An installer of the agent, or the signed agent-config.json / manifest.json beside them (ukey-server downloads publish)",
      description: "Public. The signed documents are verified by the agent against the institution's key its installer brought; a mirror can withhold them but not alter them unnoticed (docs/security.md).",
      params: { type: "object", properties: { file: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$" } }, required: ["file"] },
      response: { 404: problemSchema },
    },
  }, async (req, reply) => {
    const name = req.params.file;
    let real: string;
    try {
      real = realpathSync(join(dir, name));
      if (!real.startsWith(realpathSync(dir) + sep) || !statSync(real).isFile() || name.endsWith(".tmp")) throw new Error("not a published file");
    } catch {
      throw new UkeyError("ROUTE_NOT_FOUND");
    }
    const ext = extname(name).toLowerCase();
    reply.type(types[ext] ?? "application/octet-stream");
    reply.header("cache-control", ext === ".json" || name === "SHA256SUMS" ? "no-cache" : "public, max-age=300");
    if (!types[ext] || ext === ".deb" || ext === ".msi" || ext === ".exe") reply.header("content-disposition", `attachment; filename="${name}"`);
    return reply.send(createReadStream(real));
  });
}
