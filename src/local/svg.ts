/**
 * A picture of one run: one row per peer, its phases as bars on a time axis
 * shared by all rows, each bar labelled with its phase and duration. Pure: data
 * in, an SVG document out (no library, no browser); `bench --svg` and
 * `demo --svg` write it (src/local/bench.ts).
 */
import type { PhaseSpan } from "../types.ts";

/** One bar: a phase from startMs to endMs on the picture's shared axis. */
export interface TimelineSpan {
  phase: string;
  startMs: number;
  endMs: number;
  /** 0: the row's main lane; 1, 2, ...: thin lanes above it, for phases that overlap the main ones. */
  lane?: number;
}

export interface TimelineRow {
  label: string;
  spans: TimelineSpan[];
}

export interface Timeline {
  title: string;
  /** A second line under the title: the data, the run chosen, how the rows line up. */
  subtitle?: string;
  rows: TimelineRow[];
}

/** What a peer's `--json` line says about its phases (PhaseTimings), with its id. */
export interface PeerSpans {
  id: number;
  startedAtEpochMs: number;
  spans: PhaseSpan[];
}

/** The phases as the picture names them, in the order they happen. */
const phaseLabels: Record<string, string> = {
  connect: "connect",
  sample: "sample",
  read: "read+send",
  exchange: "exchange wait",
  sort: "sort",
  write: "write",
  commit: "commit",
  map: "map",
  count: "count",
  scatter: "scatter",
  fsync: "fsync",
};

/** One colour per phase (the C baseline's phases reuse the nearest netsort one). */
const phaseColours: Record<string, string> = {
  connect: "#9e9e9e",
  sample: "#76b7b2",
  read: "#4e79a7",
  map: "#86bcb6",
  exchange: "#f2cf5b",
  count: "#499894",
  scatter: "#59a14f",
  sort: "#e15759",
  write: "#b07aa1",
  fsync: "#ff9da7",
  commit: "#f28e2b",
};
const unknownPhaseColour = "#bab0ac";

/** The C baseline's phase durations, in the order it runs them (bench/c/sort.c). */
const cPhases = ["map", "count", "scatter", "sort", "write", "fsync"] as const;

// Layout, in SVG user units (px).
const widthPx = 960;
const labelColumnPx = 110;
const rightMarginPx = 24;
const titleBandPx = 52;
const rowPitchPx = 54;
/** Under the main lane: labels of the bars too narrow to hold their own. */
const underBandPx = 13;
const mainLanePx = 24;
const thinLanePx = 11;
const axisBandPx = 30;
const legendBandPx = 30;
const fontPx = 12;
const smallFontPx = 10;
/** Rough width of one character of the sans-serif font at fontPx, to decide whether a label fits. */
const charWidthPerFontPx = 0.6;
/** Aim for about this many ticks on the time axis. */
const targetTicks = 8;

/**
 * Every peer's spans on one axis: peers are separate processes with their own
 * clocks, so each row is shifted by its startedAtEpochMs against the earliest one.
 * `connect` overlaps `read` by definition, so it gets the thin lane above.
 */
export function peerRows(peers: PeerSpans[]): TimelineRow[] {
  if (peers.length === 0) return [];
  const originMs = Math.min(...peers.map((p) => p.startedAtEpochMs));
  return [...peers]
    .sort((a, b) => a.id - b.id)
    .map((p) => {
      const shiftMs = p.startedAtEpochMs - originMs;
      return {
        label: `peer ${p.id}`,
        spans: p.spans.map((s) => ({
          phase: s.phase,
          startMs: s.startMs + shiftMs,
          endMs: s.endMs + shiftMs,
          lane: s.phase === "connect" ? 1 : 0,
        })),
      };
    });
}

/** The C baseline as one row of back-to-back phases from 0 (its JSON line: mapMs, countMs, ...). */
export function cBaselineRow(phases: Record<string, number>, label = "C baseline"): TimelineRow {
  const spans: TimelineSpan[] = [];
  let atMs = 0;
  for (const phase of cPhases) {
    const ms = phases[`${phase}Ms`];
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) continue;
    spans.push({ phase, startMs: atMs, endMs: atMs + ms });
    atMs += ms;
  }
  return { label, spans };
}

/** Text for an attribute value or element content. */
export function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

export function phaseLabel(phase: string): string {
  return phaseLabels[phase] ?? phase;
}

/** "740 ms" below 10 s, "12.3 s" above. */
export function formatDuration(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A coordinate with at most two decimals. */
function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/** A tick step of 1, 2 or 5 times a power of ten giving about targetTicks ticks. */
function tickStepMs(spanMs: number): number {
  const raw = spanMs / targetTicks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function tickLabel(ms: number, stepMs: number): string {
  if (stepMs >= 1000) return `${n(ms / 1000)} s`;
  return `${Math.round(ms)} ms`;
}

function textWidthPx(text: string, font: number): number {
  return text.length * font * charWidthPerFontPx;
}

/** The rows' phases for the legend: known ones in the order they happen, then others as first seen. */
function phasesInOrder(rows: TimelineRow[]): string[] {
  const seen: string[] = [];
  for (const row of rows) for (const s of row.spans) if (!seen.includes(s.phase)) seen.push(s.phase);
  const known = Object.keys(phaseLabels);
  const rank = (p: string) => (known.includes(p) ? known.indexOf(p) : known.length);
  return seen
    .map((p, i) => ({ p, i }))
    .sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i)
    .map((e) => e.p);
}

/**
 * Under-the-bar labels in bar order: each starts at its bar or after the
 * previous label, then a pass from the right pulls back any that would leave the
 * picture, so that none overlap and all stay inside.
 */
function layOutUnder(labels: Array<{ text: string; x: number; width: number }>) {
  const gapPx = 6;
  const placed = labels.map((l) => ({ ...l }));
  let freeX = 0;
  for (const l of placed) {
    l.x = Math.max(l.x, freeX);
    freeX = l.x + l.width + gapPx;
  }
  let limitX = widthPx - 2;
  for (let i = placed.length - 1; i >= 0; i--) {
    placed[i].x = Math.max(labelColumnPx, Math.min(placed[i].x, limitX - placed[i].width));
    limitX = placed[i].x - gapPx;
  }
  return placed;
}

export function renderTimelineSvg(timeline: Timeline): string {
  const { rows } = timeline;
  const endMs = Math.max(0, ...rows.flatMap((r) => r.spans.map((s) => s.endMs)));
  const axisEndMs = endMs > 0 ? endMs : 1;
  const plotLeft = labelColumnPx;
  const plotWidth = widthPx - labelColumnPx - rightMarginPx;
  const x = (ms: number) => plotLeft + (Math.max(0, ms) / axisEndMs) * plotWidth;
  const rowsTop = titleBandPx;
  const axisTop = rowsTop + rows.length * rowPitchPx;
  const legendTop = axisTop + axisBandPx;
  const heightPx = legendTop + legendBandPx;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${widthPx}" height="${heightPx}" viewBox="0 0 ${widthPx} ${heightPx}" font-family="sans-serif" font-size="${fontPx}">`,
  );
  // A <title> first: what a screen reader (and a browser tab) names the picture by.
  out.push(`<title>${escapeXml(timeline.title)}</title>`);
  out.push(`<rect class="background" x="0" y="0" width="${widthPx}" height="${heightPx}" fill="#ffffff"/>`);
  out.push(
    `<text class="title" x="12" y="20" font-size="15" font-weight="bold">${escapeXml(timeline.title)}</text>`,
  );
  if (timeline.subtitle !== undefined) {
    out.push(`<text class="subtitle" x="12" y="38" fill="#555555">${escapeXml(timeline.subtitle)}</text>`);
  }

  // Grid and axis first, so the bars are drawn over the grid lines.
  const stepMs = tickStepMs(axisEndMs);
  out.push('<g class="axis" stroke="#dddddd">');
  for (let t = 0; t <= axisEndMs + 1e-9; t += stepMs) {
    out.push(`<line x1="${n(x(t))}" y1="${rowsTop - 4}" x2="${n(x(t))}" y2="${axisTop + 4}"/>`);
  }
  out.push("</g>");
  out.push(`<g class="ticks" fill="#555555" font-size="${smallFontPx}" text-anchor="middle">`);
  for (let t = 0; t <= axisEndMs + 1e-9; t += stepMs) {
    out.push(`<text x="${n(x(t))}" y="${axisTop + 16}">${tickLabel(t, stepMs)}</text>`);
  }
  out.push("</g>");

  rows.forEach((row, i) => {
    const rowTop = rowsTop + i * rowPitchPx;
    const mainTop = rowTop + rowPitchPx - underBandPx - mainLanePx;
    /** Labels of bars too narrow to hold them, placed under the row once all are known. */
    const under: Array<{ text: string; x: number; width: number }> = [];
    const rowEndMs = Math.max(0, ...row.spans.map((s) => s.endMs));
    out.push(`<g class="row" data-label="${escapeXml(row.label)}">`);
    out.push(
      `<text class="row-label" x="12" y="${n(mainTop + 10)}" font-weight="bold">${escapeXml(row.label)}</text>`,
    );
    for (const s of [...row.spans].sort((a, b) => a.startMs - b.startMs)) {
      const lane = s.lane ?? 0;
      const laneHeight = lane === 0 ? mainLanePx : thinLanePx;
      const laneTop = lane === 0 ? mainTop : mainTop - lane * (thinLanePx + 1);
      const left = x(s.startMs);
      const width = Math.max(0, x(s.endMs) - left);
      const durationMs = s.endMs - s.startMs;
      const name = phaseLabel(s.phase);
      const full = `${row.label}: ${name} ${formatDuration(durationMs)}`;
      const colour = phaseColours[s.phase] ?? unknownPhaseColour;
      out.push(
        `<rect class="span" data-phase="${escapeXml(s.phase)}" data-ms="${n(durationMs)}" x="${n(left)}" y="${n(laneTop)}" width="${n(width)}" height="${laneHeight}" fill="${colour}" stroke="#ffffff" stroke-width="0.5"><title>${escapeXml(full)}</title></rect>`,
      );
      // Inside the bar: phase and duration when they fit, else the duration alone (the colour
      // names the phase); under the bar when neither fits; the tooltip always has all of it.
      const font = lane === 0 ? fontPx : smallFontPx - 1;
      const text = `${name} ${formatDuration(durationMs)}`;
      const inside = [text, formatDuration(durationMs)].find((c) => textWidthPx(c, font) + 6 <= width);
      if (inside !== undefined) {
        out.push(
          `<text class="span-label" x="${n(left + width / 2)}" y="${n(laneTop + laneHeight / 2 + font * 0.35)}" font-size="${font}" text-anchor="middle" fill="#111111">${escapeXml(inside)}</text>`,
        );
      } else if (lane === 0) {
        under.push({ text, x: left, width: textWidthPx(text, smallFontPx) });
      }
    }
    for (const u of layOutUnder(under)) {
      out.push(
        `<text class="span-label under" x="${n(u.x)}" y="${n(mainTop + mainLanePx + underBandPx - 3)}" font-size="${smallFontPx}" fill="#333333">${escapeXml(u.text)}</text>`,
      );
    }
    if (rowEndMs > 0) {
      out.push(
        `<text class="row-total" x="12" y="${n(mainTop + mainLanePx + 1)}" font-size="${smallFontPx}" fill="#555555">ends at ${escapeXml(formatDuration(rowEndMs))}</text>`,
      );
    }
    out.push("</g>");
  });

  out.push(`<g class="legend" font-size="${smallFontPx + 1}">`);
  let legendX = 12;
  for (const phase of phasesInOrder(rows)) {
    const name = phaseLabel(phase);
    out.push(
      `<rect x="${legendX}" y="${legendTop + 6}" width="12" height="12" fill="${phaseColours[phase] ?? unknownPhaseColour}"/>`,
    );
    out.push(`<text x="${legendX + 16}" y="${legendTop + 16}">${escapeXml(name)}</text>`);
    legendX += 16 + textWidthPx(name, smallFontPx + 1) + 18;
  }
  out.push("</g>");
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
