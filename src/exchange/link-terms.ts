/**
 * What a PeerLink (src/exchange/link.ts) shares with its Mesh and tests: the
 * events it reports, the frames each in-stream state accepts, and how a
 * peer's ABORT or REFUSE becomes the error it reports.
 */
import { NetsortError } from "../errors.ts";
import type { ServerEntry } from "../types.ts";
import { MismatchError } from "./handshake.ts";
import { decodeReason, decodeReasonExitCode, FrameType } from "./protocol.ts";
import type { InState } from "./streams.ts";

const abortedPrefix = /^peer \d+ aborted: /;

export function endpoint(s: ServerEntry): string {
  return `${s.host}:${s.port}`;
}

/** An ABORT or REFUSE payload as the error it reports, with the exit code it asks for. */
export function reportedError(payload: Uint8Array, from: number, prefix = ""): NetsortError {
  const text = decodeReason(payload).trim();
  const reason = text === "" ? `peer ${from} stopped without giving a reason` : `${prefix}${text}`;
  return decodeReasonExitCode(payload) === 2 ? new MismatchError(reason) : new NetsortError(reason);
}

/** True when the reason is a peer's own abort (it needs no telling). */
export function isAbortReport(payload: Uint8Array): boolean {
  return abortedPrefix.test(decodeReason(payload));
}

/** What a link reports to its Mesh. */
export interface LinkEvents {
  onRecords(from: number, buf: Uint8Array, offset: number, length: number): void;
  /** A stream moved forward: the mesh re-checks its barriers. */
  onProgress(): void;
  /** Fail the mesh; `told`: the peer already knows (it reported the abort itself). */
  onFail(error: NetsortError, told: boolean): void;
  /** May this link (re)dial now? False once the mesh is finished or failed (unless telling). */
  mayDial(): boolean;
  /** After our failure, the frame to deliver instead of opening a stream; null while healthy. */
  failureFrame(): Uint8Array | null;
  /** We told this peer of our failure. */
  onTold(peerId: number): void;
}

/** Frames the in-stream accepts in each state (ABORT and PING always). */
const inAllowed: Record<InState, FrameType[]> = {
  open: [FrameType.Sample, FrameType.Data, FrameType.Mark, FrameType.Done],
  done: [FrameType.Ready],
  ready: [FrameType.Committed],
  committed: [FrameType.Confirmed],
  confirmed: [],
  lost: [],
};

export function allowedIn(state: InState): Set<FrameType> {
  return new Set([...inAllowed[state], FrameType.Abort, FrameType.Ping]);
}

export function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
