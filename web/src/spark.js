// A sparkline on a small canvas: a few lines of our own rather than a chart per row.
// Drawing never reads layout: the caller measures (all canvases of a frame at once, one layout) and passes
// the CSS size and colour in, so a thousand rows cost one layout rather than one each.

/** The CSS size of a canvas: read in the measuring phase of a frame, before any drawing. */
export function sparkBox(canvas) {
  return { w: canvas.clientWidth || 96, h: canvas.clientHeight || 24 };
}

export function drawSpark(canvas, points, box = sparkBox(canvas), color = "#2a7ae2") {
  const dpr = window.devicePixelRatio || 1;
  const { w, h: hgt } = box;
  const bw = Math.round(w * dpr);
  const bh = Math.round(hgt * dpr);
  if (canvas.width !== bw) canvas.width = bw;
  if (canvas.height !== bh) canvas.height = bh;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const pts = (points || []).filter((p) => Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]));
  if (pts.length < 2) return;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 === x0) return;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = 2;
  ctx.beginPath();
  pts.forEach(([x, y], i) => {
    const px = ((x - x0) / (x1 - x0)) * (w - 2 * pad) + pad;
    const py = hgt - pad - ((y - y0) / (y1 - y0)) * (hgt - 2 * pad);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.25;
  ctx.stroke();
}
