/** `netsort show <file> [--full] [--limit N]`: records one per line, course showsort layout. */
import { showFile } from "../tools/show.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";

const args = {
  positionals: [{ name: "file", description: "File of 100-byte records" }],
  flags: {
    full: { type: "boolean", description: "Print the whole value in hex, not its first and last 10 bytes" },
    limit: {
      type: "string",
      valueHint: "n",
      description: "Print at most this many records",
      parse: { kind: "int", min: 0, max: Number.MAX_SAFE_INTEGER },
    },
    ...logFlags,
  },
} as const;

export default defineTableCommand({
  name: "show",
  summary: "Print records one per line: key in hex, a tab, then the value",
  args,
  async run(a) {
    // A closed pipe (`| head`) is the reader's choice, not a failure: exit 0.
    await showFile(a.file, { full: a.full, limit: a.limit });
    return 0;
  },
});
