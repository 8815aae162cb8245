/** `netsort show <file> [--full] [--limit N]`: records one per line, course showsort layout. */
import { defineCommand } from "citty";
import { showFile } from "../tools/show.ts";
import { checkArgs, commonArgs, parseIntArg } from "./args.ts";

const args = {
  file: { type: "positional", description: "File of 100-byte records", required: true },
  full: { type: "boolean", description: "Print the whole value in hex, not its first and last 10 bytes" },
  limit: { type: "string", description: "Print at most N records" },
  ...commonArgs,
} as const;

export default defineCommand({
  meta: { name: "show", description: "Print records one per line: key in hex, a tab, then the value" },
  args,
  async run({ args: parsed, rawArgs }) {
    checkArgs("show", rawArgs, args);
    const limit =
      parsed.limit === undefined
        ? undefined
        : parseIntArg("--limit", parsed.limit, 0, Number.MAX_SAFE_INTEGER);
    // A closed pipe (`| head`) is the reader's choice, not a failure: exit 0.
    await showFile(String(parsed.file), { full: parsed.full === true, limit });
    return 0;
  },
});
