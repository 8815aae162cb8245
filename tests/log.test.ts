/** src/log.ts: the line each kind of log call writes (all of them go to stderr). */
import { afterEach, expect, test } from "bun:test";
import { formatLogLine, setLogLevel } from "../src/log.ts";

afterEach(() => setLogLevel("normal"));

test("info and success lines are the message alone; warnings, errors and debug lines are tagged", () => {
  expect(formatLogLine({ type: "info", args: ["mesh up"] })).toBe("mesh up");
  expect(formatLogLine({ type: "success", args: ["validate: VALID"] })).toBe("validate: VALID");
  expect(formatLogLine({ type: "warn", args: ["dropped a connection"] })).toBe(
    "warning: dropped a connection",
  );
  expect(formatLogLine({ type: "error", args: ["config x: cannot read"] })).toBe(
    "error: config x: cannot read",
  );
  expect(formatLogLine({ type: "debug", args: ["retrying"] })).toBe("debug: retrying");
});

test("an Error is its message on one line; --verbose adds the stack", () => {
  const error = new Error("peer 2 at 127.0.0.1:5002: connection refused");
  expect(formatLogLine({ type: "error", args: [error] })).toBe(
    "error: peer 2 at 127.0.0.1:5002: connection refused",
  );
  setLogLevel("verbose");
  const verbose = formatLogLine({ type: "error", args: [error] });
  expect(verbose.split("\n")[0]).toBe("error: Error: peer 2 at 127.0.0.1:5002: connection refused");
  expect(verbose).toMatch(/\n\s+at /);
});

test("the level decides which lines are written: a child process shows it on stderr", () => {
  const script = `
    import { log, setLogLevel } from "${import.meta.dir}/../src/log.ts";
    setLogLevel(process.env.LEVEL);
    log.debug("d"); log.info("i"); log.warn("w"); log.error("e");
  `;
  const run = (level: string) => {
    const r = Bun.spawnSync([process.execPath, "-e", script], {
      env: { ...process.env, LEVEL: level },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.stdout.toString()).toBe("");
    return r.stderr.toString();
  };
  expect(run("quiet")).toBe("warning: w\nerror: e\n");
  expect(run("normal")).toBe("i\nwarning: w\nerror: e\n");
  expect(run("verbose")).toBe("debug: d\ni\nwarning: w\nerror: e\n");
});
