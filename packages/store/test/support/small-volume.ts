// A real small filesystem for the storage-full tests: a tmpfs mounted by
// the test itself. That needs root (CI runs as root) and a kernel that lets
// it mount (a container needs CAP_SYS_ADMIN). There is no skip: without
// them the test fails and says what is missing.
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A mounted tmpfs of `sizeMb` MB; `unmount` removes it with everything on it. */
export interface SmallVolume {
  dir: string;
  /** Bytes still free on the volume. */
  free(): number;
  /** Writes a file of zeros that leaves about `leaveBytes` free (never less than 0); returns its path. */
  fill(name: string, leaveBytes: number): string;
  unmount(): void;
}

export function mountSmallVolume(sizeMb: number): SmallVolume {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new Error(`\n\n*** ROOT IS REQUIRED: this test mounts a ${sizeMb} MB tmpfs to fill a real filesystem, and only root may mount (CI runs the tests as root). Run it as root. ***\n`);
  }
  const dir = mkdtempSync(join(tmpdir(), "ukey-small-volume-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m,mode=0700`, "ukey-test-volume", dir], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    rmdirSync(dir);
    const stderr = String((e as { stderr?: unknown }).stderr ?? "");
    throw new Error(`\n\n*** A SMALL FILESYSTEM IS REQUIRED: mount -t tmpfs failed (${(e as Error).message.split("\n")[0]}): ${stderr.trim()}\n`
      + "*** The test needs root with CAP_SYS_ADMIN (a container started with --privileged or --cap-add SYS_ADMIN) and the mount command. ***\n");
  }
  const free = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  return {
    dir,
    free,
    fill(name, leaveBytes) {
      const path = join(dir, name);
      const fd = openSync(path, "w", 0o600);
      const chunk = Buffer.alloc(64 * 1024);
      try {
        for (let left = free() - leaveBytes; left > 0; left -= chunk.length) {
          try {
            writeSync(fd, chunk, 0, Math.min(chunk.length, left));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
            throw e;
          }
        }
      } finally {
        closeSync(fd);
      }
      return path;
    },
    unmount() {
      try {
        execFileSync("umount", ["-l", dir], { stdio: "ignore" });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
