// A sparkline: an inline SVG polyline of our own rather than a chart per row. Not a canvas: with a thousand
// rows, every drawn canvas became a compositor resource produced again on each frame (and reading its
// size forced a layout); a polyline is painted with its row, scales with its box (viewBox, nothing to
// measure) and costs one attribute to redraw.

const W = 100; // the viewBox of the template in index.html; stretched to the cell (preserveAspectRatio none)
const H = 24;
const PAD = 2;

let template;

/**
 * A new sparkline element: a clone of the template in index.html (parsed there as SVG, so no namespace
 * has to be written here), or an empty span when a page has no template.
 */
export function makeSpark() {
  if (template === undefined) {
    const t = document.getElementById("spark-template");
    template = (t && t.content && t.content.firstElementChild) || null;
  }
  if (template === null) return document.createElement("span");
  return template.cloneNode(true);
}

/** The polyline's points for [[ts, value], ...]: empty with fewer than two usable points. */
export function sparkPoints(points) {
  const pts = (Array.isArray(points) ? points : []).filter((p) => Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]));
  if (pts.length < 2) return "";
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 === x0) return "";
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  return pts
    .map(([x, y]) => {
      const px = ((x - x0) / (x1 - x0)) * (W - 2 * PAD) + PAD;
      const py = H - PAD - ((y - y0) / (y1 - y0)) * (H - 2 * PAD);
      return `${px.toFixed(2)},${py.toFixed(2)}`;
    })
    .join(" ");
}

export function drawSpark(svg, points) {
  const line = svg.firstElementChild;
  if (!line) return;
  const d = sparkPoints(points);
  if (line.getAttribute("points") !== d) line.setAttribute("points", d);
}
