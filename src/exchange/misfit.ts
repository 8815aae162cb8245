/**
 * A peer started with an id its config does not list cannot take part, but it
 * knows the config: it dials every listed peer with a HELLO that says who
 * it claims to be. Each peer refuses it and, unless its mesh comes up anyway
 * (then the hello was a stranger's), stops within seconds naming the bad id,
 * instead of waiting for its connect timeout (docs/reliability.md).
 */
import { abortDialMs } from "../limits.ts";
import type { SortOptions } from "../types.ts";
import { settledWithin } from "../wait.ts";
import { MeshClock } from "./clock.ts";
import type { LocalIdentity } from "./handshake.ts";
import { fingerprintBytes, helloFlags, outputTag, wireSettings } from "./identity.ts";
import { Redialer } from "./redial.ts";

/** Dial every peer of the config until it answers (retrying as the mesh does), for at most abortDialMs in all. */
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
  const redialers: Redialer[] = [];
  // Each listed peer is dialed until it answers (refused, most likely) or the time is up.
  const heard = config.servers.map(
    (peer) =>
      new Promise<void>((resolve) => {
        const redialer = new Redialer(local, peer, clock, options.helloTimeoutMs, options.retryIntervalMs, {
          // Accepted (cannot happen: its config does not list us) or refused: it has heard us.
          onOpen: (socket) => {
            socket.end();
            resolve();
          },
          onRejected: () => resolve(),
          mayDial: () => performance.now() < deadlineMs,
        });
        redialers.push(redialer);
        redialer.start();
      }),
  );
  await settledWithin(Promise.all(heard), abortDialMs);
  for (const r of redialers) r.stop();
  clock.stop();
}
