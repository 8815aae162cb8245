/**
 * `netsort secret <file>`: write a fresh random shared secret (256 bits, hex)
 * to a new file with mode 0600. Copy the file to every peer and pass it as
 * `--secret-file`; peers then authenticate each other and seal every frame.
 */
import { log } from "../log.ts";
import { generatedSecretBytes, writeSecretFile } from "../secret.ts";
import { logFlags } from "./args.ts";
import { defineTableCommand } from "./command.ts";

const args = {
  positionals: [{ name: "file", description: "New secret file (never overwritten)" }],
  flags: { ...logFlags },
} as const;

export default defineTableCommand({
  name: "secret",
  summary: "Write a fresh random shared secret to a new file (mode 0600)",
  args,
  run(a) {
    writeSecretFile(a.file);
    log.info(
      `wrote a ${generatedSecretBytes * 8}-bit random secret to ${a.file} (mode 0600); copy it to every peer (keep it 0600) and pass --secret-file ${a.file}`,
    );
    return 0;
  },
});
