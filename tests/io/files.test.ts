import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileErrorReason, processAlive, removeStaleFiles } from "../../src/io/files.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A pid that ran and is gone: a child that exited. */
function deadPid(): number {
  const child = Bun.spawnSync(["true"]);
  expect(child.exitCode).toBe(0);
  return child.pid;
}

describe("removeStaleFiles", () => {
  test("removes files of processes that are gone, keeps ours, live ones and other names", () => {
    const dir = mkdtempSync(join(tmpdir(), "netsort-files-"));
    dirs.push(dir);
    const dead = deadPid();
    expect(processAlive(dead)).toBe(false);
    const names = [
      `.out.dat.netsort-${dead}.tmp`, // stale output temp: removed
      `.netsort-spill-${dead}-3.tmp`, // stale spill file, other prefix: kept here
      `.out.dat.netsort-${process.pid}.tmp`, // ours: kept
      `.out.dat.netsort-1.tmp`, // pid 1 runs: kept
      `.out.dat.netsort-${dead}.txt`, // not a .tmp: kept
      "out.dat",
    ];
    for (const n of names) writeFileSync(join(dir, n), "x");
    removeStaleFiles(dir, ".out.dat.netsort-");
    expect(readdirSync(dir).sort()).toEqual(names.slice(1).sort());
    removeStaleFiles(dir, ".netsort-spill-");
    expect(readdirSync(dir)).not.toContain(`.netsort-spill-${dead}-3.tmp`);
  });

  test("a missing directory is not an error", () => {
    expect(() => removeStaleFiles(join(tmpdir(), "netsort-no-such-dir-x"), ".x-")).not.toThrow();
  });
});

describe("fileErrorReason", () => {
  test("names the common codes in words, and passes others through", () => {
    const coded = (code: string) => Object.assign(new Error(code), { code });
    expect(fileErrorReason(coded("ENOSPC"))).toBe("no space left on device");
    expect(fileErrorReason(coded("EROFS"))).toBe("read-only file system");
    expect(fileErrorReason(coded("EIO"))).toBe("EIO");
  });
});
