/**
 * A peer started with an id its config does not list cannot take part, but it
 * knows the config: it dials every listed peer once with a HELLO that says who
 * it claims to be. Each peer refuses it and, unless its mesh comes up anyway
 * (then the hello was a stranger's), stops within seconds naming the bad id,
 * instead of waiting for its connect timeout (docs/reliability.md).
 */
import { abortDialMs } from "../limits.ts";
import type { SortOptions } from "../types.ts";
import { settledWithin } from "../wait.ts";
import { MeshClock } from "./clock.ts";
import { DialHandshake } from "./dial.ts";
import type { LocalIdentity } from "./handshake.ts";
import { fingerprintBytes, helloFlags, outputTag, wireSettings } from "./identity.ts";

/** Each listed peer gets this many attempts to answer (it may not listen yet). */
const misfitDialAttempts = 3;

/** Dial every peer of the config once (a few tries each), bounded by abortDialMs in all. */
export async function tellMisfit(options: SortOptions): Promise<void> {
  const { config, serverId } = options;
  const local: LocalIdentity = {
    serverId,
    peers: config.servers.length,
    secret: options.secret,
    hello: {
      flags: helloFlags(options),
      settings: wireSettings(options),
      inputRecords: 0,
      fingerprint: fingerprintBytes(config.fingerprint),
      outputTag: outputTag(options.outputFile),
    },
  };
  const clock = new MeshClock(options.idleTimeoutMs, () => {});
  const deadlineMs = performance.now() + abortDialMs;
  const tellOne = (peer: (typeof config.servers)[number]) =>
    new Promise<void>((resolve) => {
      let attempts = 0;
      const attempt = () => {
        attempts++;
        const again = () => {
          const late = performance.now() + options.retryIntervalMs >= deadlineMs;
          if (attempts >= misfitDialAttempts || late) resolve();
          else setTimeout(attempt, options.retryIntervalMs);
        };
        new DialHandshake(local, peer, clock, options.helloTimeoutMs, {
          // Accepted (cannot happen: its config does not list us) or refused: it has heard us.
          onOpen: (socket) => {
            socket.end();
            resolve();
          },
          onRejected: () => resolve(),
          onRetry: again,
        }).start();
      };
      attempt();
    });
  await settledWithin(Promise.all(config.servers.map(tellOne)), abortDialMs);
  clock.stop();
}
