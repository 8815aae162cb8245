import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AT_FDCWD, AT_SYMLINK_FOLLOW, libc } from "../src/libc.ts";

describe("libc", () => {
  test("is loaded on Linux (and only there), once, with a power-of-two page size", () => {
    const c = libc();
    if (process.platform !== "linux") {
      expect(c).toBeNull();
      return;
    }
    expect(c).not.toBeNull();
    expect(libc()).toBe(c);
    const page = c?.pageBytes ?? 0;
    expect(page).toBeGreaterThanOrEqual(4096);
    expect(page & (page - 1)).toBe(0);
  });

  test.skipIf(process.platform !== "linux")(
    "linkat gives an unnamed (O_TMPFILE) file a name; a taken name fails with EEXIST",
    () => {
      const c = libc();
      expect(c).not.toBeNull();
      if (c === null) return;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "netsort-libc-test-"));
      try {
        const fd = fs.openSync(dir, 0o20200000 | fs.constants.O_WRONLY, 0o644);
        fs.writeSync(fd, Buffer.from("unnamed"));
        expect(fs.readdirSync(dir)).toEqual([]);
        const name = path.join(dir, "named");
        expect(c.linkat(AT_FDCWD, `/proc/self/fd/${fd}`, AT_FDCWD, name, AT_SYMLINK_FOLLOW)).toBe(0);
        expect(fs.readFileSync(name, "utf8")).toBe("unnamed");
        expect(c.linkat(AT_FDCWD, `/proc/self/fd/${fd}`, AT_FDCWD, name, AT_SYMLINK_FOLLOW)).toBe(-1);
        expect(c.lastErrorCode()).toBe("EEXIST");
        fs.closeSync(fd);
        expect(c.linkat(AT_FDCWD, path.join(dir, "missing"), AT_FDCWD, `${name}2`, 0)).toBe(-1);
        expect(c.lastErrorCode()).toBe("ENOENT");
        expect(fs.readdirSync(dir)).toEqual(["named"]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
