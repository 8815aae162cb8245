/**
 * A process that spills without end, for the SIGKILL test in spill.test.ts:
 * `bun spill-child.ts <tempDir>`. It adds random records to a SpillingStore at
 * the smallest budget and prints "spilled <n>" after each run; the test kills
 * it while it is spilling and checks that the directory is left empty.
 */
import { RECORD_BYTES } from "../../src/record.ts";
import { minimumStoreBytes, SpillingStore } from "../../src/sort/spill.ts";

const tempDir = process.argv[2];
if (tempDir === undefined) throw new Error("usage: spill-child.ts <tempDir>");
const store = new SpillingStore({
  rangeStart: 0,
  rangeEnd: 2 ** 48,
  expectedRecords: 10_000_000,
  budgetBytes: minimumStoreBytes(),
  tempDir,
  onSpill: (spill) => process.stdout.write(`spilled ${spill.run}\n`),
});
const batch = new Uint8Array(2560 * RECORD_BYTES);
const words = new Uint32Array(batch.buffer);
let x = 0x9e3779b9;
for (;;) {
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  store.add(batch, 0, batch.length);
}
