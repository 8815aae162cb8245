/**
 * The run picture (src/local/svg.ts): a well-formed SVG document (parsed back by
 * this file's own strict XML reader), one row per peer, every bar labelled with
 * its phase and duration, bar widths proportional to durations on one axis,
 * peers lined up by their wall-clock start, and text escaped.
 */
import { describe, expect, test } from "bun:test";
import {
  cBaselineRow,
  escapeXml,
  type PeerSpans,
  peerRows,
  renderTimelineSvg,
  type Timeline,
} from "../../src/local/svg.ts";

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const entities: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(raw: string): string {
  if (/&(?!(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/.test(raw)) throw new Error(`bad entity in ${raw}`);
  return raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (_, e: string) =>
    e.startsWith("#x")
      ? String.fromCodePoint(Number.parseInt(e.slice(2), 16))
      : e.startsWith("#")
        ? String.fromCodePoint(Number(e.slice(1)))
        : entities[e],
  );
}

/**
 * A strict reader for the subset of XML an SVG writer produces: elements,
 * double- or single-quoted attributes, text, comments. Throws on anything
 * malformed: unbalanced tags, a raw `<` or `&` in text, duplicate attributes,
 * content after the root.
 */
function parseXml(source: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  const fail = (why: string): never => {
    throw new Error(`${why} at offset ${i}: ${JSON.stringify(source.slice(i, i + 40))}`);
  };
  source = source.replace(/^<\?xml[^?]*\?>/, "");
  while (i < source.length) {
    if (source.startsWith("<!--", i)) {
      const end = source.indexOf("-->", i);
      if (end < 0) fail("unclosed comment");
      i = end + 3;
    } else if (source.startsWith("</", i)) {
      const m = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(source.slice(i));
      if (m === null) fail("bad end tag");
      const open = stack.pop();
      if (open === undefined || open.name !== m?.[1]) fail(`end tag ${m?.[1]} does not close ${open?.name}`);
      i += m?.[0].length ?? 0;
    } else if (source[i] === "<") {
      const m = /^<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/.exec(
        source.slice(i),
      );
      if (m === null) return fail("bad start tag");
      if (root !== null && stack.length === 0) fail("content after the root element");
      const attrs: Record<string, string> = {};
      for (const a of m[2].matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        if (a[1] in attrs) fail(`duplicate attribute ${a[1]}`);
        attrs[a[1]] = decode(a[2] ?? a[3]);
      }
      const element: XmlElement = { name: m[1], attrs, children: [], text: "" };
      if (stack.length > 0) stack[stack.length - 1].children.push(element);
      else root = element;
      if (m[3] !== "/") stack.push(element);
      i += m[0].length;
    } else {
      const end = source.indexOf("<", i);
      const raw = source.slice(i, end < 0 ? source.length : end);
      if (stack.length === 0 && raw.trim() !== "") fail("text outside the root element");
      if (stack.length > 0) stack[stack.length - 1].text += decode(raw);
      i = end < 0 ? source.length : end;
    }
  }
  if (stack.length > 0) fail(`unclosed ${stack[stack.length - 1].name}`);
  if (root === null) return fail("no root element");
  return root;
}

function all(e: XmlElement, pred: (e: XmlElement) => boolean): XmlElement[] {
  const found = pred(e) ? [e] : [];
  for (const c of e.children) found.push(...all(c, pred));
  return found;
}

const hasClass = (cls: string) => (e: XmlElement) => (e.attrs.class ?? "").split(" ").includes(cls);

/** Every text in an element's subtree, titles included. */
function texts(e: XmlElement): string[] {
  return [e.text, ...e.children.flatMap(texts)].filter((t) => t.trim() !== "");
}

function peer(id: number, startedAtEpochMs: number, readEndMs: number, endMs: number): PeerSpans {
  const exchangeEnd = readEndMs + 100;
  const sortEnd = exchangeEnd + 200;
  const writeEnd = sortEnd + 300;
  return {
    id,
    startedAtEpochMs,
    spans: [
      { phase: "connect", startMs: 0, endMs: 50 },
      { phase: "read", startMs: 0, endMs: readEndMs },
      { phase: "exchange", startMs: readEndMs, endMs: exchangeEnd },
      { phase: "sort", startMs: exchangeEnd, endMs: sortEnd },
      { phase: "write", startMs: sortEnd, endMs: writeEnd },
      { phase: "commit", startMs: writeEnd, endMs },
    ],
  };
}

const peers = [peer(1, 1_000_040, 400, 1100), peer(0, 1_000_000, 500, 1200), peer(2, 1_000_010, 600, 1250)];

function spansOf(row: XmlElement): XmlElement[] {
  return all(row, hasClass("span"));
}

describe("renderTimelineSvg", () => {
  const timeline: Timeline = {
    title: "bench: 3 peers",
    subtitle: "median run",
    rows: [
      ...peerRows(peers),
      cBaselineRow({
        mapMs: 10,
        countMs: 20,
        scatterMs: 30,
        sortMs: 40,
        writeMs: 50,
        fsyncMs: 60,
        peakRssBytes: 123,
      }),
    ],
  };
  const svg = renderTimelineSvg(timeline);
  const doc = parseXml(svg);
  const rows = all(doc, hasClass("row"));

  test("is a well-formed SVG document with one row per peer and one for the C baseline", () => {
    expect(doc.name).toBe("svg");
    expect(doc.attrs.xmlns).toBe("http://www.w3.org/2000/svg");
    expect(Number(doc.attrs.width)).toBeGreaterThan(0);
    expect(Number(doc.attrs.height)).toBeGreaterThan(0);
    expect(rows.map((r) => r.attrs["data-label"])).toEqual(["peer 0", "peer 1", "peer 2", "C baseline"]);
  });

  test("the reader itself refuses malformed XML (so the test above can fail)", () => {
    expect(() => parseXml("<svg><g></svg>")).toThrow();
    expect(() => parseXml("<svg><text>a < b</text></svg>")).toThrow();
    expect(() => parseXml("<svg><text>a & b</text></svg>")).toThrow();
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow();
    expect(() => parseXml("<svg/><svg/>")).toThrow();
  });

  test("every bar is labelled with its row, phase and duration", () => {
    const peer0 = rows[0];
    expect(texts(peer0)).toContain("peer 0");
    const titles = spansOf(peer0).map((s) => texts(s).join(" "));
    expect(titles).toEqual(
      expect.arrayContaining([
        "peer 0: connect 50 ms",
        "peer 0: read+send 500 ms",
        "peer 0: exchange wait 100 ms",
        "peer 0: sort 200 ms",
        "peer 0: write 300 ms",
        "peer 0: commit 100 ms",
      ]),
    );
    // Wide bars carry their label in the picture itself, not only in the tooltip.
    const visible = all(peer0, hasClass("span-label")).map((t) => t.text);
    expect(visible).toContain("read+send 500 ms");
    expect(visible).toContain("write 300 ms");
    // The C row's phases, back to back from 0.
    expect(spansOf(rows[3]).map((s) => s.attrs["data-phase"])).toEqual([
      "map",
      "count",
      "scatter",
      "sort",
      "write",
      "fsync",
    ]);
  });

  test("bar widths are proportional to durations, on one axis for every row", () => {
    const bars = rows.flatMap(spansOf);
    const pxPerMs = bars.map((b) => Number(b.attrs.width) / Number(b.attrs["data-ms"]));
    for (const ratio of pxPerMs) expect(ratio).toBeCloseTo(pxPerMs[0], 2);
    const read0 = spansOf(rows[0]).find((b) => b.attrs["data-phase"] === "read");
    const sort0 = spansOf(rows[0]).find((b) => b.attrs["data-phase"] === "sort");
    expect(Number(read0?.attrs.width) / Number(sort0?.attrs.width)).toBeCloseTo(500 / 200, 2);
  });

  test("peers are lined up by their wall-clock start", () => {
    const x = (row: XmlElement, phase: string) =>
      Number(spansOf(row).find((b) => b.attrs["data-phase"] === phase)?.attrs.x);
    const pxPerMs = Number(spansOf(rows[0])[0].attrs.width) / Number(spansOf(rows[0])[0].attrs["data-ms"]);
    // peer 1 started 40 ms after peer 0, peer 2 10 ms after.
    expect((x(rows[1], "read") - x(rows[0], "read")) / pxPerMs).toBeCloseTo(40, 0);
    expect((x(rows[2], "read") - x(rows[0], "read")) / pxPerMs).toBeCloseTo(10, 0);
    // And the C baseline starts at the axis origin.
    expect(x(rows[3], "map")).toBeCloseTo(x(rows[0], "read"), 2);
  });

  test("the longest row fits inside the picture", () => {
    const right = Math.max(...rows.flatMap(spansOf).map((b) => Number(b.attrs.x) + Number(b.attrs.width)));
    expect(right).toBeLessThanOrEqual(Number(doc.attrs.width));
  });

  test("labels of narrow bars go under the row, inside the picture, without overlapping", () => {
    // Three short phases at the very end of a long row: their labels cannot sit at their bars.
    const out = parseXml(
      renderTimelineSvg({
        title: "narrow",
        rows: [
          {
            label: "p",
            spans: [
              { phase: "read", startMs: 0, endMs: 1000 },
              { phase: "sort", startMs: 1000, endMs: 1004 },
              { phase: "write", startMs: 1004, endMs: 1008 },
              { phase: "commit", startMs: 1008, endMs: 1010 },
            ],
          },
        ],
      }),
    );
    const under = all(out, hasClass("under"));
    expect(under.map((u) => u.text)).toEqual(["sort 4 ms", "write 4 ms", "commit 2 ms"]);
    const widthPx = Number(out.attrs.width);
    // Generous per-character width so that "no overlap" holds for real fonts too.
    const extent = under.map((u) => ({ from: Number(u.attrs.x), to: Number(u.attrs.x) + u.text.length * 6 }));
    for (const e of extent) expect(e.to).toBeLessThanOrEqual(widthPx);
    for (let i = 1; i < extent.length; i++) expect(extent[i].from).toBeGreaterThanOrEqual(extent[i - 1].to);
  });

  test("text from the data is escaped", () => {
    const nasty = `a<b>&"c"'d'`;
    const out = renderTimelineSvg({
      title: nasty,
      subtitle: "</svg>",
      rows: [{ label: nasty, spans: [{ phase: "<x&y>", startMs: 0, endMs: 10 }] }],
    });
    const parsed = parseXml(out);
    expect(all(parsed, hasClass("title"))[0].text).toBe(nasty);
    expect(all(parsed, hasClass("subtitle"))[0].text).toBe("</svg>");
    const row = all(parsed, hasClass("row"))[0];
    expect(row.attrs["data-label"]).toBe(nasty);
    expect(spansOf(row)[0].attrs["data-phase"]).toBe("<x&y>");
    expect(escapeXml(nasty)).toBe("a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;");
  });

  test("an empty picture (no rows, or zero-length spans) is still well-formed", () => {
    expect(parseXml(renderTimelineSvg({ title: "empty", rows: [] })).name).toBe("svg");
    const zero = parseXml(
      renderTimelineSvg({
        title: "zero",
        rows: [{ label: "p", spans: [{ phase: "sort", startMs: 0, endMs: 0 }] }],
      }),
    );
    expect(all(zero, hasClass("span"))[0].attrs.width).toBe("0");
  });
});
